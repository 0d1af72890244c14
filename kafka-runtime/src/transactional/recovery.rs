//! What to do when a transactional call fails, as librdkafka's transactional API prescribes:
//! a retriable error means *call the same function again* (a timed-out commit or abort keeps
//! running in the background and blocks every other transactional call until it is resumed);
//! an abortable one means abort and rewind; anything else means the producer is unusable and
//! must be rebuilt (fenced, epoch bumped by a broker that timed our transaction out, ...).

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;

/// Longest one blocking transactional call may take before it is called again. Short, so that
/// a stalled broker never keeps the loop away from the consumer (and from SIGTERM) for long;
/// librdkafka resumes the same operation on the next call, so nothing is lost by retrying.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a loop still tries to finish its work after SIGTERM before it gives up on it
/// (the next owner of its partitions redoes whatever did not commit).
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a failed transactional call is recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Abort the transaction, roll back and rewind, then carry on with the same clients.
    Abort(String),
    /// The producer (or the consumer) can no longer be used: rebuild the clients and restore.
    Rebuild(String),
}

impl Recovery {
    /// The reason, for logs.
    pub(super) fn reason(&self) -> &str {
        match self {
            Self::Abort(r) | Self::Rebuild(r) => r,
        }
    }
}

/// What librdkafka says about one failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Call the same function again.
    Retry,
    /// Abort the transaction.
    Abort,
    /// Rebuild the producer.
    Fatal,
}

/// Classifies the error of a transactional call from the attributes librdkafka attaches to it
/// (not from its code, as librdkafka advises).
pub(super) fn classify(e: &KafkaError) -> Class {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => Class::Fatal,
        KafkaError::Transaction(t) if t.is_retriable() => Class::Retry,
        KafkaError::Transaction(t) if t.txn_requires_abort() => Class::Abort,
        // rdkafka flushes before committing; a flush that timed out is resumed by calling
        // commit again.
        KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => Class::Retry,
        // Neither retriable nor abortable: librdkafka gives no way to continue with this
        // producer (e.g. an illegal state after a conflicting call). A new one fences the old.
        _ => Class::Fatal,
    }
}

/// Starts the reason of a rebuild caused by another producer with the same `transactional.id`.
pub(super) const FENCED: &str = "fenced by another instance";

/// True when a newer producer with this `transactional.id` took over: the same id is in use
/// elsewhere (or this process was a zombie).
pub(super) fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
    )
}

/// Bounds a call's retries: until `deadline`, or the shutdown grace once SIGTERM fired.
#[derive(Debug)]
pub(super) struct Bound<'a> {
    deadline: Instant,
    shutdown: &'a CancellationToken,
    cancelled_at: Option<Instant>,
}

impl<'a> Bound<'a> {
    /// Retries allowed for `budget` from now, cut short by shutdown.
    pub(super) fn new(budget: Duration, shutdown: &'a CancellationToken) -> Self {
        Self {
            deadline: Instant::now() + budget,
            shutdown,
            cancelled_at: None,
        }
    }

    /// Time left for the next attempt, or `None` when the bound is spent.
    pub(super) fn left(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut deadline = self.deadline;
        if self.shutdown.is_cancelled() {
            let at = *self.cancelled_at.get_or_insert(now);
            deadline = deadline.min(at + SHUTDOWN_GRACE);
        }
        deadline
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }
}

/// Runs `call` (given its timeout) until it succeeds, retrying it for as long as librdkafka
/// says the same call may be resumed and `bound` allows. `what` names the call in logs.
pub(super) fn resume<F>(what: &str, bound: &mut Bound<'_>, mut call: F) -> Result<(), Recovery>
where
    F: FnMut(Duration) -> Result<(), KafkaError>,
{
    let mut attempts = 0u32;
    loop {
        let Some(left) = bound.left() else {
            return Err(Recovery::Rebuild(format!(
                "{what} did not complete within its bound after {attempts} attempts"
            )));
        };
        attempts += 1;
        let e = match call(left.min(CALL_TIMEOUT)) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match classify(&e) {
            Class::Retry => {
                tracing::debug!(what, attempts, error = %e, "retrying the same transactional call");
                // A retriable error that returns at once (not a timeout) must not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
            Class::Abort => return Err(Recovery::Abort(format!("{what}: {e}"))),
            Class::Fatal if is_fenced(&e) => {
                return Err(Recovery::Rebuild(format!("{FENCED}: {what}: {e}")));
            }
            Class::Fatal => return Err(Recovery::Rebuild(format!("{what}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_timeout_resumes_the_commit() {
        let e = KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(classify(&e), Class::Retry);
    }

    #[test]
    fn an_error_without_transaction_attributes_rebuilds() {
        let e = KafkaError::Flush(RDKafkaErrorCode::Fail);
        assert_eq!(classify(&e), Class::Fatal);
        assert_eq!(classify(&KafkaError::Canceled), Class::Fatal);
    }

    #[test]
    fn retries_until_success_within_the_bound() {
        let token = CancellationToken::new();
        let mut bound = Bound::new(Duration::from_secs(5), &token);
        let mut calls = 0;
        let r = resume("commit", &mut bound, |_| {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Ok(()));
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_spent_bound_asks_for_a_rebuild() {
        let token = CancellationToken::new();
        let mut bound = Bound::new(Duration::from_millis(120), &token);
        let mut calls = 0;
        let r = resume("abort", &mut bound, |t| {
            calls += 1;
            assert!(t <= Duration::from_millis(120));
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
        });
        assert!(matches!(r, Err(Recovery::Rebuild(_))), "{r:?}");
        assert!(calls >= 1);
    }

    #[test]
    fn shutdown_caps_the_bound_at_the_grace() {
        let token = CancellationToken::new();
        let mut bound = Bound::new(Duration::from_secs(3_600), &token);
        assert!(bound.left().is_some_and(|l| l > SHUTDOWN_GRACE));
        token.cancel();
        assert!(bound.left().is_some_and(|l| l <= SHUTDOWN_GRACE));
    }

    #[test]
    fn fatal_errors_are_not_retried() {
        let token = CancellationToken::new();
        let mut bound = Bound::new(Duration::from_secs(5), &token);
        let mut calls = 0;
        let r = resume("commit", &mut bound, |_| {
            calls += 1;
            Err(KafkaError::Canceled)
        });
        assert!(matches!(r, Err(Recovery::Rebuild(_))));
        assert_eq!(calls, 1);
    }
}
