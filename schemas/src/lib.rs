//! The Avro contract of streamcart and its Confluent wire-format codec.
//!
//! # Layout
//!
//! - `avro/<context>/*.avsc`: one file per envelope, payload record, state record and enum,
//!   namespaced `streamcart.<context>` (shared types in `streamcart.common`).
//! - [`topics`]: every topic and subject name, with a prefix for test isolation.
//! - [`contract`]: the `.avsc` files assembled into one self-contained schema per stream.
//! - [`codes`]: the rejection codes the command processor answers itself.
//! - [`envelope`]: [`CommandEnvelope`], [`EventEnvelope`], [`CommandResult`], [`Snapshot`] and the
//!   [`WireRecord`] trait that ties each to its stream.
//! - `mapping`: domain ⇄ Avro `Value` for every command, event and state of the aggregates.
//! - `avro_binary`: Avro binary written straight from a mapped value (checked against the
//!   schema-driven writer in debug builds).
//! - [`codec`]: [`Codec`] (registry-backed encode/decode) over pure header and body functions.
//! - [`summary`]: the flat public summary records (`orders.order.summary`,
//!   `catalog.product.summary`) that Kafka Connect sinks read.
//! - [`register`]: [`register_all`], which registers every subject with BACKWARD_TRANSITIVE.
//! - [`error`]: mapping, encode and decode errors; decode errors say retry or dead-letter.
//! - `samples` (tests, or the `testing` feature): one value of every variant, for tests here
//!   and in `tests/`.

mod avro_binary;
pub mod codec;
pub mod codes;
pub mod contract;
pub mod envelope;
pub mod error;
pub(crate) mod mapping;
pub mod register;
#[cfg(any(test, feature = "testing"))]
pub mod samples;
pub mod summary;
pub mod topics;

pub use codec::Codec;
pub use envelope::{CommandEnvelope, CommandResult, EventEnvelope, Outcome, Snapshot, WireRecord};
pub use error::{DecodeError, Disposition, EncodeError, MappingError};
pub use register::{RegisterError, RegistrationReport, register_all};
pub use topics::{Context, Stream, StreamKind, Topics};

#[cfg(test)]
mod tests;
