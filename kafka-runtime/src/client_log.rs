//! librdkafka's client-level reports, logged at the level they deserve.
//!
//! rdkafka hands every error event of a client to its context, end-of-partition notices
//! included, and the default context logs each one as an ERROR. A reader that asks for those
//! notices (`enable.partition.eof`, as restores do to know they reached the end) would fill the
//! error log with routine events.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Lets one report through per interval and counts those held back, so that a burst of the same
/// report (thousands in a millisecond while a broker is away) becomes one line per interval.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// One report per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when a report at `now` is to be logged, `n` being how many were held back since
    /// the last one logged; `None` when it is held back.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// Lost-connection reports of every client of the process: one line a second is enough to see
/// that the broker is away.
static CONNECTIVITY: Mutex<Throttle> = Mutex::new(Throttle::new(Duration::from_secs(1)));

/// Logs one client-level report: an end-of-partition notice at TRACE, a lost broker connection
/// as a warning (at most one a second), anything else as an error.
pub fn log_client_error(error: &KafkaError, reason: &str) {
    if is_partition_eof(error) {
        tracing::trace!(%error, reason, "end of partition");
    } else if is_connectivity(error) {
        let admitted = CONNECTIVITY
            .lock()
            .map_or(Some(0), |mut t| t.admit(Instant::now()));
        if let Some(held_back) = admitted {
            tracing::warn!(%error, reason, held_back, "librdkafka: broker connection");
        }
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
    fn a_burst_is_logged_once_per_interval_with_the_count_held_back() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=999 {
            assert_eq!(t.admit(t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_millis(999)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(1)), Some(1_000));
        assert_eq!(t.admit(t0 + Duration::from_secs(5)), Some(0));
    }

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
