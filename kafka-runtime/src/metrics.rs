//! One Prometheus registry per process, the series every loop records through, and the small
//! HTTP listener every role starts: `/metrics`, `/health/live` and `/health/ready`.
//!
//! The series are created once ([`global`]) and labelled by loop name, so a role that runs
//! several loops (or `streamcart run`, which runs every role) exposes them side by side on one
//! port. Other crates register their own series in the same [`registry`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::health::{self, Phase};

/// Where a role serves its metrics and health probes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the listener; port 0 takes a free port (logged at start). Give each
    /// process of a host its own port for Prometheus to scrape.
    pub listen: String,
    /// A directory Prometheus reads `file_sd` targets from: while the role runs, it keeps a
    /// target file there naming its listener (the local stack sets it).
    pub prometheus_targets_dir: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            prometheus_targets_dir: None,
        }
    }
}

/// This process's Prometheus `file_sd` target file; removed when dropped.
#[derive(Debug)]
pub struct TargetFile {
    path: std::path::PathBuf,
}

impl TargetFile {
    /// Writes `<dir>/streamcart-<pid>.json` naming `addr`, labelled with `role`, `instance`
    /// and `namespace` (the topic prefix: one deployment's series apart), after removing the files of processes that no longer run (a role killed
    /// with SIGKILL leaves its file behind).
    pub fn announce(
        dir: &str,
        addr: SocketAddr,
        role: &str,
        instance: &str,
        namespace: &str,
    ) -> std::io::Result<Self> {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("streamcart-"))
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(pid) = pid
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let host = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        let target = SocketAddr::new(host, addr.port());
        let body = serde_json::json!([{
            "targets": [target.to_string()],
            "labels": {
                "role": role,
                "instance_id": instance,
                "namespace": namespace,
                "pid": std::process::id().to_string(),
            },
        }]);
        let path = dir.join(format!("streamcart-{}.json", std::process::id()));
        // Written whole then renamed: Prometheus never reads half a file.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, &path)?;
        Ok(Self { path })
    }
}

impl Drop for TargetFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address does not parse or cannot be bound.
    #[error("metrics listener on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The series every loop and role records to.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Input records handled and committed, per loop.
    pub records: IntCounterVec,
    /// Batches committed (transactions, or offset commits of at-least-once loops), per loop.
    pub batches: IntCounterVec,
    /// Records per committed batch, per loop.
    pub batch_records: HistogramVec,
    /// Time to commit a batch, per loop.
    pub commit_seconds: HistogramVec,
    /// Batches aborted and rolled back, per loop.
    pub aborts: IntCounterVec,
    /// Partition assignments and revocations seen, per loop and kind.
    pub rebalances: IntCounterVec,
    /// Time to restore the state of newly assigned partitions, per loop.
    pub restore_seconds: HistogramVec,
    /// Records written to a dead-letter topic, per loop.
    pub dead_letters: IntCounterVec,
    /// Consumer lag per partition, from librdkafka's statistics.
    pub consumer_lag: IntGaugeVec,
    /// Time from a record's timestamp (its event's write) to its effects being applied, per loop.
    pub projection_lag_seconds: HistogramVec,
    /// Times a supervised role was restarted after failing.
    pub role_restarts: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry
        .register(Box::new(c.clone()))
        .expect("series registered once");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    registry
        .register(Box::new(h.clone()))
        .expect("series registered once");
    h
}

/// Latency buckets from 1 ms to a minute.
fn seconds_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ]
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "streamcart_consumer_lag",
                "Records between a partition's committed position and its end (librdkafka consumer_lag).",
            ),
            &["group", "topic", "partition"],
        )
        .expect("valid gauge");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("series registered once");
        Self {
            records: counter(
                r,
                "streamcart_loop_records_total",
                "Input records handled in committed batches.",
                &["loop"],
            ),
            batches: counter(
                r,
                "streamcart_loop_batches_committed_total",
                "Batches committed.",
                &["loop"],
            ),
            batch_records: histogram(
                r,
                "streamcart_loop_batch_records",
                "Input records per committed batch.",
                prometheus::exponential_buckets(1.0, 4.0, 9).expect("valid buckets"),
                &["loop"],
            ),
            commit_seconds: histogram(
                r,
                "streamcart_loop_commit_seconds",
                "Time to commit a batch: flush, offsets and commit of its transaction, or the offset commit of an at-least-once batch.",
                seconds_buckets(),
                &["loop"],
            ),
            aborts: counter(
                r,
                "streamcart_loop_aborts_total",
                "Batches aborted and rolled back.",
                &["loop"],
            ),
            rebalances: counter(
                r,
                "streamcart_loop_rebalances_total",
                "Rebalances seen by the loop's consumer, by kind (assign, revoke).",
                &["loop", "kind"],
            ),
            restore_seconds: histogram(
                r,
                "streamcart_loop_restore_seconds",
                "Time to restore the state of newly assigned partitions.",
                seconds_buckets(),
                &["loop"],
            ),
            dead_letters: counter(
                r,
                "streamcart_loop_dead_letters_total",
                "Records written to the loop's dead-letter topic.",
                &["loop"],
            ),
            consumer_lag,
            projection_lag_seconds: histogram(
                r,
                "streamcart_projection_lag_seconds",
                "Time from a record's timestamp (when its event was written) to its effects being applied.",
                seconds_buckets(),
                &["loop"],
            ),
            role_restarts: counter(
                r,
                "streamcart_role_restarts_total",
                "Times a supervised role was restarted after failing.",
                &["role"],
            ),
            registry,
        }
    }

    /// The process's registry, for series defined elsewhere.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records a committed batch of `records` input records that took `commit` to commit.
    pub fn committed(&self, loop_name: &str, records: u64, commit: Duration) {
        self.batches.with_label_values(&[loop_name]).inc();
        self.records.with_label_values(&[loop_name]).inc_by(records);
        self.batch_records
            .with_label_values(&[loop_name])
            .observe(records as f64);
        self.commit_seconds
            .with_label_values(&[loop_name])
            .observe(commit.as_secs_f64());
    }

    /// Records a rebalance of `kind` (`assign` or `revoke`).
    pub fn rebalanced(&self, loop_name: &str, kind: &str) {
        self.rebalances.with_label_values(&[loop_name, kind]).inc();
    }

    /// Takes the consumer lag of every partition from one statistics report (librdkafka's
    /// JSON) of `group`'s consumer. A partition whose lag librdkafka does not know (-1: not
    /// assigned, or no position yet) loses its gauge, so a revoked partition does not report a
    /// stale lag. Read leniently: only the lag fields are needed, and a report that does not
    /// parse leaves the gauges as they were.
    pub fn consumer_stats(&self, group: &str, json: &[u8]) {
        let stats: LagReport = match serde_json::from_slice(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "unreadable librdkafka statistics");
                return;
            }
        };
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // librdkafka lists an internal "unassigned" partition -1 per topic.
                if partition.starts_with('-') {
                    continue;
                }
                let labels = [group, topic.as_str(), partition.as_str()];
                // The stored position is the one a transactional loop committed last (it
                // stores each committed batch's end); librdkafka's `consumer_lag` counts only
                // from offsets the consumer committed or fetched itself, which a transactional
                // commit is not, so it is known only from the next assignment on.
                let lag = if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else {
                    p.consumer_lag
                };
                if lag >= 0 {
                    self.consumer_lag.with_label_values(&labels).set(lag);
                } else {
                    let _ = self.consumer_lag.remove_label_values(&labels);
                }
            }
        }
    }

    /// Every series in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The part of librdkafka's statistics the lag gauges read.
#[derive(Debug, Deserialize)]
struct LagReport {
    #[serde(default)]
    topics: BTreeMap<String, TopicReport>,
}

#[derive(Debug, Deserialize)]
struct TopicReport {
    #[serde(default)]
    partitions: BTreeMap<String, PartitionReport>,
}

#[derive(Debug, Deserialize)]
struct PartitionReport {
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
    #[serde(default = "unknown_lag")]
    consumer_lag_stored: i64,
}

fn unknown_lag() -> i64 {
    -1
}

/// The process's series.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Why the process is not ready, or `None` when every loop runs and makes progress.
/// `expects_loops`: the role runs loops, so none registered yet means it is still starting.
pub fn not_ready(expects_loops: bool) -> Option<String> {
    let reports = health::all();
    if expects_loops && reports.is_empty() {
        return Some("starting: no loop running yet".into());
    }
    let reasons: Vec<String> = reports
        .iter()
        .filter(|r| !(r.healthy && r.phase == Phase::Running))
        .map(|r| match (&r.phase, &r.reason) {
            (Phase::Running, Some(why)) => format!("{}: {why}", r.name),
            (phase, _) => format!("{}: {phase:?}", r.name),
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// `/metrics`, `/health/live` and `/health/ready`, to serve alone or merged into another router.
pub fn router(expects_loops: bool) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    global().render(),
                )
            }),
        )
        .route("/health/live", get(|| async { "live\n" }))
        .route(
            "/health/ready",
            get(move || async move {
                match not_ready(expects_loops) {
                    None => (StatusCode::OK, "ready\n".to_owned()).into_response(),
                    Some(why) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {why}\n"),
                    )
                        .into_response(),
                }
            }),
        )
}

/// Binds `listen` and serves [`router`] until `shutdown`; returns the bound address.
pub async fn serve(
    listen: &str,
    expects_loops: bool,
    shutdown: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
    let bind_err = |source| MetricsError::Bind {
        addr: listen.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    tracing::info!(%addr, "metrics and health listening");
    let app = router(expects_loops);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_file_names_the_listener_clears_dead_processes_and_goes_on_drop() {
        let dir = std::env::temp_dir().join(format!("streamcart-targets-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        // A process that no longer runs left its file; a file of another kind is left alone.
        let dead = dir.join(format!("streamcart-{}.json", u32::MAX - 1));
        std::fs::write(&dead, "[]").expect("dead file");
        let other = dir.join("prometheus-self.json");
        std::fs::write(&other, "[]").expect("other file");
        let addr: SocketAddr = "0.0.0.0:9101".parse().expect("addr");
        let file = TargetFile::announce(
            dir.to_str().expect("utf-8"),
            addr,
            "process stock",
            "pod-1",
            "ns.",
        )
        .expect("announced");
        let own = dir.join(format!("streamcart-{}.json", std::process::id()));
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&own).expect("own file")).expect("json");
        assert_eq!(
            body[0]["targets"][0], "127.0.0.1:9101",
            "a wildcard listener is scraped on loopback"
        );
        assert_eq!(body[0]["labels"]["role"], "process stock");
        assert_eq!(body[0]["labels"]["instance_id"], "pod-1");
        assert_eq!(body[0]["labels"]["namespace"], "ns.");
        assert!(!dead.exists(), "the dead process's file is removed");
        assert!(other.exists());
        drop(file);
        assert!(!own.exists(), "removed when the role stops");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_committed_batch_shows_in_every_series_of_its_loop() {
        let m = global();
        m.committed("metrics-test-loop", 7, Duration::from_millis(3));
        m.committed("metrics-test-loop", 5, Duration::from_millis(4));
        m.rebalanced("metrics-test-loop", "assign");
        let text = m.render();
        assert!(
            text.contains("streamcart_loop_records_total{loop=\"metrics-test-loop\"} 12"),
            "{text}"
        );
        assert!(
            text.contains("streamcart_loop_batches_committed_total{loop=\"metrics-test-loop\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("streamcart_loop_batch_records_count{loop=\"metrics-test-loop\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "streamcart_loop_rebalances_total{kind=\"assign\",loop=\"metrics-test-loop\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn lag_comes_from_statistics_and_unknown_lag_removes_the_gauge() {
        let report = |lag: i64| {
            format!(
                r#"{{"name":"c#consumer-1","type":"consumer","topics":{{"t":{{"topic":"t",
                "partitions":{{"-1":{{"partition":-1,"consumer_lag":-1}},
                "3":{{"partition":3,"consumer_lag":-1,"consumer_lag_stored":{lag},"hi_offset":90}},
                "4":{{"partition":4,"consumer_lag":7}}}}}}}}}}"#
            )
        };
        let m = global();
        m.consumer_stats("metrics-test-group", report(42).as_bytes());
        let series =
            "streamcart_consumer_lag{group=\"metrics-test-group\",partition=\"3\",topic=\"t\"}";
        let text = m.render();
        assert!(text.contains(&format!("{series} 42")), "{text}");
        assert!(!text.contains("partition=\"-1\""), "{text}");
        assert!(text.contains("partition=\"4\",topic=\"t\"} 7"), "{text}");
        m.consumer_stats("metrics-test-group", b"not json");
        assert!(m.render().contains(&format!("{series} 42")));
        m.consumer_stats("metrics-test-group", report(-1).as_bytes());
        assert!(!m.render().contains(series));
    }

    #[test]
    fn readiness_names_a_restoring_loop_until_it_runs() {
        let h = crate::health::LoopHealth::register("metrics-test-restoring");
        h.set_phase(Phase::Restoring);
        let why = not_ready(true).unwrap_or_default();
        assert!(why.contains("metrics-test-restoring: Restoring"), "{why}");
        h.set_phase(Phase::Running);
        h.progress();
        let why = not_ready(true).unwrap_or_default();
        assert!(!why.contains("metrics-test-restoring"), "{why}");
    }
}
