//! The command processor: commands in, events and results out, exactly once.

pub mod catalog_copy;
pub mod driver;
pub mod kafka;
pub mod table;
