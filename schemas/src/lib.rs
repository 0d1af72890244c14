//! Avro contract and codec.
pub mod codec;
pub mod contract;
pub mod envelope;
pub mod error;
pub(crate) mod mapping;
pub mod topics;
