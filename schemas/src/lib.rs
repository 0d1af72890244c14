//! Avro contract and codec.
pub mod contract;
pub mod error;
pub mod topics;
pub(crate) mod mapping { pub(crate) mod value; }
