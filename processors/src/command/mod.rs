//! The command processor: commands in, events and results out, exactly once.

pub mod catalog_copy;
#[cfg(any(test, feature = "testing"))]
pub mod driver;
pub mod entries;
pub mod kafka;
pub mod table;
