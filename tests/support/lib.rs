//! What the integration tests (and the benchmarks) share, in one place:
//!
//! - [`stack`]: where the stack's servers are, unique names, topics, stopping servers;
//! - [`process`]: `streamcart` roles as child processes, and their logs;
//! - [`kafka`]: producing records and reading topics, always with the count expected;
//! - [`clock`]: wall-clock times as the contract carries them;
//! - [`commands`]: command envelopes and the commands tests seed with (products, stock, orders);
//! - [`world`]: one test's own streamcart (topics, keyspace, clients) and its roles;
//! - [`read_models`], [`ledger`], [`pipelines`]: what a run is checked against.
//!
//! Servers are found through the same environment variables `scripts/stack env` prints, with the
//! stack's defaults when unset. Tests run side by side on one stack: each has its own topics,
//! subjects and keyspace under a unique name.

pub mod clock;
pub mod commands;
pub mod kafka;
pub mod ledger;
pub mod pipelines;
pub mod process;
pub mod read_models;
pub mod stack;
pub mod world;

pub use kafka::read_topic;
pub use process::{Child, log_path, spawn_streamcart, streamcart_bin};
pub use stack::{
    cassandra_node, connect_url, create_topics, create_topics_with, free_port, kafka_bootstrap,
    postgres_url, redis_url, registry_url, stack, unique,
};
