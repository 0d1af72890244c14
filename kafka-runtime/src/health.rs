//! Whether each loop of the process is making progress: a loop that has work and has not
//! committed any for longer than its bound reports itself unhealthy, with the reason.
//!
//! Every loop registers its [`LoopHealth`] in a process-wide list ([`all`]), so whatever
//! reports health (logs, a probe endpoint, a supervisor) sees every loop without wiring.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What a loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Building its clients and waiting for its input topics.
    Starting,
    /// Restoring state for newly assigned partitions.
    Restoring,
    /// Consuming and committing.
    Running,
    /// Rebuilding its clients after a fault.
    Recovering,
    /// Ended (cleanly or not).
    Stopped,
}

/// A point-in-time view of one loop's health.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The loop's name.
    pub name: String,
    /// What it is doing.
    pub phase: Phase,
    /// False while it has work it has not been able to commit for longer than its bound.
    pub healthy: bool,
    /// Why it is unhealthy, or the last fault it recovered from.
    pub reason: Option<String>,
    /// Time since its last progress (a committed batch, or being caught up).
    pub since_progress: Duration,
    /// Times its clients were rebuilt after a fault.
    pub rebuilds: u64,
}

#[derive(Debug)]
struct State {
    name: String,
    phase: Phase,
    last_progress: Instant,
    stalled: Option<String>,
    last_fault: Option<String>,
    rebuilds: u64,
}

/// The health of one loop, shared between the loop and whoever reports it.
#[derive(Debug, Clone)]
pub struct LoopHealth {
    state: Arc<Mutex<State>>,
}

fn registry() -> &'static Mutex<Vec<LoopHealth>> {
    static REGISTRY: OnceLock<Mutex<Vec<LoopHealth>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// The health of every loop started in this process.
pub fn all() -> Vec<HealthReport> {
    registry()
        .lock()
        .map(|r| r.iter().map(LoopHealth::report).collect())
        .unwrap_or_default()
}

impl LoopHealth {
    /// A new loop's health, registered in the process-wide list.
    pub fn register(name: &str) -> Self {
        let h = Self {
            state: Arc::new(Mutex::new(State {
                name: name.to_owned(),
                phase: Phase::Starting,
                last_progress: Instant::now(),
                stalled: None,
                last_fault: None,
                rebuilds: 0,
            })),
        };
        if let Ok(mut r) = registry().lock() {
            // A restarted role registers again under the same name: keep only the newest.
            r.retain(|o| o.report().name != name || o.phase() != Phase::Stopped);
            r.push(h.clone());
        }
        h
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    /// What the loop is doing now.
    pub fn phase(&self) -> Phase {
        self.with(|s| s.phase).unwrap_or(Phase::Stopped)
    }

    /// The loop's current report.
    pub fn report(&self) -> HealthReport {
        self.with(|s| HealthReport {
            name: s.name.clone(),
            phase: s.phase,
            healthy: s.stalled.is_none() && s.phase != Phase::Stopped,
            reason: s.stalled.clone().or_else(|| s.last_fault.clone()),
            since_progress: s.last_progress.elapsed(),
            rebuilds: s.rebuilds,
        })
        .unwrap_or(HealthReport {
            name: String::new(),
            phase: Phase::Stopped,
            healthy: false,
            reason: Some("health state poisoned".into()),
            since_progress: Duration::ZERO,
            rebuilds: 0,
        })
    }

    /// Ready for traffic: running and healthy.
    pub fn is_ready(&self) -> bool {
        let r = self.report();
        r.healthy && r.phase == Phase::Running
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.with(|s| s.phase = phase);
    }

    /// The loop committed a batch, or has nothing to do.
    pub(crate) fn progress(&self) {
        self.with(|s| {
            s.last_progress = Instant::now();
            if let Some(why) = s.stalled.take() {
                tracing::info!(loop_name = %s.name, was = %why, "loop is making progress again");
            }
        });
    }

    /// A fault the loop is recovering from (kept as the reason if it then stalls).
    pub(crate) fn fault(&self, reason: &str) {
        self.with(|s| s.last_fault = Some(reason.to_owned()));
    }

    pub(crate) fn rebuilt(&self) {
        self.with(|s| s.rebuilds += 1);
    }

    /// Marks the loop unhealthy once it has gone `bound` without progress; `work` describes
    /// what is waiting. Logs the transition once.
    pub(crate) fn check(&self, bound: Duration, work: impl FnOnce() -> String) {
        self.with(|s| {
            let idle = s.last_progress.elapsed();
            if idle < bound || s.stalled.is_some() {
                return;
            }
            let why = format!(
                "no progress for {} s while {:?} ({}){}",
                idle.as_secs(),
                s.phase,
                work(),
                s.last_fault
                    .as_deref()
                    .map(|f| format!("; last fault: {f}"))
                    .unwrap_or_default()
            );
            tracing::error!(loop_name = %s.name, reason = %why, "loop is stuck");
            s.stalled = Some(why);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_without_progress_past_its_bound_is_unhealthy_until_it_moves() {
        let h = LoopHealth::register("health-test-stall");
        h.set_phase(Phase::Running);
        assert!(h.is_ready());
        h.fault("commit_transaction: timed out");
        h.check(Duration::ZERO, || "12 records uncommitted".into());
        let r = h.report();
        assert!(!r.healthy);
        let reason = r.reason.unwrap_or_default();
        assert!(reason.contains("12 records uncommitted"), "{reason}");
        assert!(reason.contains("timed out"), "{reason}");
        assert!(!h.is_ready());
        h.progress();
        assert!(h.is_ready());
    }

    #[test]
    fn a_loop_within_its_bound_stays_healthy() {
        let h = LoopHealth::register("health-test-ok");
        h.set_phase(Phase::Restoring);
        h.check(Duration::from_secs(60), || unreachable!());
        assert!(h.report().healthy);
        assert!(!h.is_ready(), "not ready while restoring");
        assert!(all().iter().any(|r| r.name == "health-test-ok"));
    }
}
