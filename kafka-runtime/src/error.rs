//! Errors of the Kafka runtime, split by what the caller does about them.

use rdkafka::error::KafkaError;

/// Errors that stop a loop: the process should exit (and be restarted by its supervisor).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Kafka refused an operation that cannot be retried (e.g. this instance was fenced).
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// Restoring state for newly assigned partitions failed.
    #[error("restore of {topic}[{partition}] failed: {reason}")]
    Restore {
        /// Topic being restored.
        topic: String,
        /// Partition being restored.
        partition: i32,
        /// What went wrong.
        reason: String,
    },
    /// Invalid configuration, or the loop's own bookkeeping failed.
    #[error("configuration: {0}")]
    Config(String),
    /// A thread the loop needs could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// The loop kept failing to recover (rebuilding its clients) for longer than its bound.
    #[error("loop {loop_name} could not recover for {seconds} s: {reason}")]
    Unrecoverable {
        /// The loop's name.
        loop_name: String,
        /// How long it tried.
        seconds: u64,
        /// The last fault.
        reason: String,
    },
}

/// How handling one input record failed, which decides between dead-letter and retry.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The record itself is bad (undecodable, wrong type, ...): it goes to the dead-letter topic
    /// with its original bytes, and processing carries on.
    #[error("{kind}: {reason}")]
    Permanent {
        /// Stable machine-readable kind, e.g. `decode.unknown_schema_id`.
        kind: &'static str,
        /// Human-readable reason.
        reason: String,
    },
    /// Something outside the record failed (registry unreachable, ...): the batch is aborted and
    /// retried after a pause.
    #[error("transient: {0}")]
    Transient(String),
}

impl HandleError {
    /// A permanent error of the given kind.
    pub fn permanent(kind: &'static str, reason: impl Into<String>) -> Self {
        Self::Permanent {
            kind,
            reason: reason.into(),
        }
    }
}
