//! Keeps the roles of `streamcart run` alive: a role that fails (returns an error, panics, or
//! ends while nobody asked it to) is restarted after an exponential backoff, and its restarts are
//! counted where an operator sees them.
//!
//! Each attempt runs under its own child of the shutdown token, so a role that cancels its token
//! to stop its own helpers (the saga does) never stops the other roles, and whatever an attempt
//! left running is told to stop before the next one starts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How a failing role is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart after a healthy run.
    pub initial: Duration,
    /// Longest wait between two restarts.
    pub max: Duration,
    /// A run at least this long counts as healthy: the next failure waits `initial` again.
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(120),
        }
    }
}

impl RestartPolicy {
    /// The wait before restart number `consecutive` (1-based) of a failure streak.
    pub fn delay(&self, consecutive: u32) -> Duration {
        let factor = 1u32
            .checked_shl(consecutive.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The failure streak of one role: how long to wait before its next restart.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RestartPolicy,
    consecutive: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            consecutive: 0,
        }
    }

    /// Records a failure of a run that lasted `ran_for` and returns the wait before the restart.
    pub fn on_failure(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.policy.healthy_after {
            self.consecutive = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.policy.delay(self.consecutive)
    }
}

/// Restarts per role since the process started; cheap to clone and share with whatever
/// exposes them (logs today, a metrics endpoint later).
#[derive(Debug, Clone, Default)]
pub struct RestartCounters(Arc<Mutex<BTreeMap<String, u64>>>);

impl RestartCounters {
    /// Restarts of `role` so far (0 for a role never restarted or unknown).
    pub fn get(&self, role: &str) -> u64 {
        self.lock().get(role).copied().unwrap_or(0)
    }

    /// Every supervised role with its restarts, in name order.
    pub fn all(&self) -> Vec<(String, u64)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn register(&self, role: &str) {
        self.lock().entry(role.to_owned()).or_insert(0);
        // Present at 0 from the start, so a scrape can tell "never restarted" from "unknown".
        let _ = restarts_series(role);
    }

    fn increment(&self, role: &str) -> u64 {
        restarts_series(role).inc();
        let mut counts = self.lock();
        let count = counts.entry(role.to_owned()).or_insert(0);
        *count += 1;
        *count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // Counters stay meaningful after a panic elsewhere: every update is one increment.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn restarts_series(role: &str) -> prometheus::IntCounter {
    streamcart_kafka_runtime::metrics::global()
        .role_restarts
        .with_label_values(&[role])
}

/// Why one attempt of a role ended.
#[derive(Debug)]
enum Ended {
    /// Returned while shutting down: the normal end.
    Stopped,
    /// Failed; the text names the cause.
    Failed(String),
}

/// Runs `start` (one attempt of the role `role`) until `shutdown`, restarting it after each
/// failure with the policy's backoff. Returns once shutdown was requested and the current
/// attempt ended.
pub async fn supervise<F, Fut>(
    role: String,
    policy: RestartPolicy,
    counters: RestartCounters,
    shutdown: CancellationToken,
    mut start: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    counters.register(&role);
    let mut backoff = Backoff::new(policy);
    while !shutdown.is_cancelled() {
        let attempt = shutdown.child_token();
        let started = Instant::now();
        let ended = match tokio::spawn(start(attempt.clone())).await {
            Ok(_) if shutdown.is_cancelled() => Ended::Stopped,
            Ok(Ok(())) => Ended::Failed("ended without being asked to stop".to_owned()),
            Ok(Err(e)) => Ended::Failed(format!("{e:#}")),
            Err(join) if join.is_panic() => {
                Ended::Failed(format!("panicked: {}", panic_text(join.into_panic())))
            }
            Err(join) => Ended::Failed(format!("task ended abnormally: {join}")),
        };
        // Helpers the attempt started (threads following a topic, a sibling loop) stop with it.
        attempt.cancel();
        let cause = match ended {
            Ended::Stopped => break,
            Ended::Failed(cause) => cause,
        };
        if shutdown.is_cancelled() {
            tracing::warn!(role = %role, error = %cause, "role failed while shutting down");
            break;
        }
        let ran_for = started.elapsed();
        let wait = backoff.on_failure(ran_for);
        let restarts = counters.increment(&role);
        tracing::error!(
            role = %role,
            error = %cause,
            ran_for_s = ran_for.as_secs_f64(),
            restart_in_ms = wait.as_millis() as u64,
            restarts,
            "role failed; restarting (restart {restarts} of this role)"
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!(role = %role, restarts = counters.get(&role), "role stopped");
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a non-text panic payload".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick() -> RestartPolicy {
        RestartPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            healthy_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_double_up_to_the_bound() {
        let p = RestartPolicy::default();
        let secs: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.delay(u32::MAX), p.max);
    }

    #[test]
    fn a_healthy_run_resets_the_backoff() {
        let policy = quick();
        let mut b = Backoff::new(policy);
        let short = Duration::from_millis(1);
        assert_eq!(b.on_failure(short), Duration::from_millis(20));
        assert_eq!(b.on_failure(short), Duration::from_millis(40));
        assert_eq!(b.on_failure(short), Duration::from_millis(80));
        assert_eq!(
            b.on_failure(policy.healthy_after),
            Duration::from_millis(20)
        );
        assert_eq!(b.on_failure(short), Duration::from_millis(40));
    }

    #[tokio::test]
    async fn a_role_that_fails_twice_then_runs_is_restarted_twice_with_growing_waits() {
        let counters = RestartCounters::default();
        let shutdown = CancellationToken::new();
        let attempts = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (attempts.clone(), starts.clone());
        let supervisor = tokio::spawn(supervise(
            "flaky".into(),
            quick(),
            counters.clone(),
            shutdown.clone(),
            move |token: CancellationToken| {
                let n = a.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = s.lock() {
                    s.push(Instant::now());
                }
                async move {
                    match n {
                        0 => anyhow::bail!("first failure"),
                        1 => panic!("second failure"),
                        _ => {
                            token.cancelled().await;
                            Ok(())
                        }
                    }
                }
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "third attempt never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Running now; it must stay up, not be restarted again.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(counters.get("flaky"), 2);
        assert_eq!(counters.all(), vec![("flaky".to_owned(), 2)]);
        let starts = starts.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(starts[1] - starts[0] >= Duration::from_millis(20));
        assert!(starts[2] - starts[1] >= Duration::from_millis(40));
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("supervisor stops on shutdown")
            .expect("supervisor task");
        assert_eq!(counters.get("flaky"), 2);
    }

    #[tokio::test]
    async fn a_role_that_ends_on_its_own_is_restarted() {
        let counters = RestartCounters::default();
        let shutdown = CancellationToken::new();
        let attempts = Arc::new(AtomicU32::new(0));
        let a = attempts.clone();
        let supervisor = tokio::spawn(supervise(
            "quitter".into(),
            quick(),
            counters.clone(),
            shutdown.clone(),
            move |_token: CancellationToken| {
                a.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("supervisor stops on shutdown")
            .expect("supervisor task");
        assert!(counters.get("quitter") >= 2);
    }

    #[tokio::test]
    async fn shutdown_ends_the_loop_during_a_backoff_wait() {
        let counters = RestartCounters::default();
        let shutdown = CancellationToken::new();
        let attempts = Arc::new(AtomicU32::new(0));
        let a = attempts.clone();
        let slow = RestartPolicy {
            initial: Duration::from_secs(600),
            max: Duration::from_secs(600),
            healthy_after: Duration::from_secs(600),
        };
        let supervisor = tokio::spawn(supervise(
            "broken".into(),
            slow,
            counters.clone(),
            shutdown.clone(),
            move |_token: CancellationToken| {
                a.fetch_add(1, Ordering::SeqCst);
                async { anyhow::bail!("always fails") }
            },
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while counters.get("broken") < 1 {
            assert!(Instant::now() < deadline, "never failed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let asked = Instant::now();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), supervisor)
            .await
            .expect("supervisor stops during its wait")
            .expect("supervisor task");
        assert!(asked.elapsed() < Duration::from_secs(2));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_attempt_token_is_cancelled_when_the_attempt_ends_but_not_the_others() {
        let shutdown = CancellationToken::new();
        let sibling = shutdown.child_token();
        let seen = Arc::new(Mutex::new(None::<CancellationToken>));
        let s = seen.clone();
        let supervisor = tokio::spawn(supervise(
            "self-cancelling".into(),
            quick(),
            RestartCounters::default(),
            shutdown.clone(),
            move |token: CancellationToken| {
                if let Ok(mut s) = s.lock() {
                    s.get_or_insert(token.clone());
                }
                async move {
                    // Like the saga: one loop failing cancels its token to stop the other.
                    token.cancel();
                    anyhow::bail!("loop failed")
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let first = seen.lock().ok().and_then(|s| s.clone());
        assert!(first.is_some_and(|t| t.is_cancelled()));
        assert!(
            !shutdown.is_cancelled(),
            "a role's own cancel stays its own"
        );
        assert!(!sibling.is_cancelled());
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), supervisor)
            .await
            .expect("supervisor stops")
            .expect("supervisor task");
    }
}
