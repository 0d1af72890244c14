//! Command handling, saga reactions and deadlines.
//!
//! # Layout
//! - [`command`]: the command processor — one per aggregate type, single writer per partition.
//!   [`command::table`] holds the pure logic (dedupe, optimistic concurrency, versions, snapshot
//!   policy, roll-back); [`command::driver`] runs it in process for tests; [`command::kafka`] runs it
//!   in Kafka transactions on top of `streamcart-kafka-runtime`.
//! - [`bindings`]: which context, topics and decide-context each aggregate type uses.
//! - [`saga`]: the pure saga reactions (events in, commands out), the order deadline table and
//!   the orders context's local catalog copy; the Kafka side runs them in transactions.

pub mod bindings;
pub mod command;
pub mod saga;
