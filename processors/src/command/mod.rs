//! The command processor: commands in, events and results out, exactly once.

pub mod driver;
pub mod entries;
pub mod kafka;
pub mod table;
