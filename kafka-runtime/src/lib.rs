//! Shared Kafka plumbing for every processor and projector.
//!
//! # Layout
//! - [`settings`]: how to reach Kafka and how to batch, one typed struct.
//! - [`transactional`]: the consume → handle → produce → commit loop in Kafka transactions, with
//!   rebalance handling, roll-back on abort and fencing of zombie instances.
//! - [`at_least_once`]: the consume → apply → commit loop for idempotent effects outside Kafka
//!   (read models), committing offsets only past records whose every effect is durable.
//! - [`hanging`]: finding and aborting transactions no coordinator will ever finish.
//! - [`record`]: a consumed record as every handler sees it.
//! - [`restore`]: reading a partition to its end, for rebuilding state on assignment.
//! - [`admin`]: creating topics with their partition counts and cleanup policies.
//! - [`client_log`]: librdkafka's client reports at the right level (partition ends are no errors).
//! - [`dead_letter`]: records that cannot be handled, kept with their original bytes.
//! - [`telemetry`]: OpenTelemetry spans and the W3C `traceparent` carried in record headers.
//! - [`headers`]: header names used on every record.
//! - [`partitioner`]: murmur2 placement of keys, as the Java client does.
//! - [`health`]: whether each loop makes progress, and why not.
//! - [`metrics`]: the process's Prometheus series and its `/metrics` and `/health/*` listener.
//! - [`shutdown`]: a cancellation token fired by SIGTERM / SIGINT.

pub mod admin;
pub mod at_least_once;
pub mod client_log;
pub mod dead_letter;
pub mod error;
pub mod hanging;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod partitioner;
pub mod record;
pub mod restore;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod transactional;

pub use error::{HandleError, RuntimeError};
pub use settings::KafkaSettings;
pub use tokio_util::sync::CancellationToken;
