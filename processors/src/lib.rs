//! Command handling, saga reactions and deadlines.
//!
//! # Layout
//! - [`command`]: the command processor — one per aggregate type, single writer per partition.
//!   [`command::table`] holds the pure logic (dedupe, optimistic concurrency, versions, snapshot
//!   policy, roll-back); `command::driver` (tests, or the `testing` feature) runs it in process;
//!   [`command::kafka`] runs it in Kafka transactions on top of `streamcart-kafka-runtime`.
//!   [`command::catalog_copy`] is the orders context's local copy of the catalog, which the
//!   order processor prices from, with its follower on Kafka.
//! - [`bindings`]: which context, topics and decide-context each aggregate type uses.
//! - [`codec`]: encoding and decoding from a loop thread, entering the runtime only when the
//!   registry must be asked; every Kafka handler here goes through it.
//! - [`saga`]: the pure saga reactions (events in, commands out) and the order deadline table;
//!   the Kafka side runs them in transactions.

pub mod bindings;
pub mod codec;
pub mod command;
pub mod saga;

#[cfg(test)]
mod fixtures;
