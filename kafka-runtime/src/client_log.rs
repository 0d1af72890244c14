//! librdkafka's client-level reports, logged at the level they deserve.
//!
//! rdkafka hands every error event of a client to its context, end-of-partition notices
//! included, and the default context logs each one as an ERROR. A reader that asks for those
//! notices (`enable.partition.eof`, as restores do to know they reached the end) would fill the
//! error log with routine events.

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// True for librdkafka's "reached the end of a partition" notice, however it is wrapped.
pub fn is_partition_eof(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_))
        || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
}

/// True for a lost or refused broker connection: librdkafka reconnects by itself, and the
/// loops recover from what it interrupted, so it is a warning, not an error.
pub fn is_connectivity(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::OperationTimedOut
        )
    )
}

/// Logs one client-level report: an end-of-partition notice at TRACE, a lost broker connection
/// as a warning, anything else as an error.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    if is_partition_eof(error) {
        tracing::trace!(%error, reason, "end of partition");
    } else if is_connectivity(error) {
        tracing::warn!(%error, reason, "librdkafka: broker connection");
    } else {
        tracing::error!(%error, reason, "librdkafka error");
    }
}

/// A consumer context that keeps end-of-partition notices out of the error log.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietEofContext;

impl ClientContext for QuietEofContext {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(&error, reason);
    }
}

impl ConsumerContext for QuietEofContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_partition_is_recognised_in_both_shapes() {
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::PartitionEOF
        )));
        assert!(!is_partition_eof(&KafkaError::Global(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!is_partition_eof(&KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
    }
}
