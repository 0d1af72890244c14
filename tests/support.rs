//! Helpers shared by the integration tests: where the stack's servers are, and unique names so
//! tests can run side by side on one stack (each its own topics, subjects and keyspace).
//!
//! Servers are found through the same environment variables `scripts/stack env` prints, with the
//! stack's defaults when unset.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// Kafka bootstrap servers.
pub fn kafka_bootstrap() -> String {
    env_or("STREAMCART_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

/// Base URL of the registry's Confluent-compatible API.
pub fn registry_url() -> String {
    env_or(
        "STREAMCART_REGISTRY_URL",
        "http://127.0.0.1:8081/apis/ccompat/v7",
    )
}

/// Kafka Connect REST API.
pub fn connect_url() -> String {
    env_or("STREAMCART_CONNECT_URL", "http://127.0.0.1:8083")
}

/// CQL contact point (Cassandra locally, ScyllaDB in production).
pub fn cassandra_node() -> String {
    env_or("STREAMCART_CASSANDRA_NODES", "127.0.0.1:9042")
}

/// Redis URL.
pub fn redis_url() -> String {
    env_or("STREAMCART_REDIS_URL", "redis://127.0.0.1:6379")
}

/// PostgreSQL URL.
pub fn postgres_url() -> String {
    env_or(
        "STREAMCART_POSTGRES_URL",
        "postgres://postgres:streamcart@127.0.0.1:5432/streamcart",
    )
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A name unique to this test run, safe for topics, subjects and CQL identifiers.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Creates topics (idempotently) with the given partition count and waits until they exist.
pub async fn create_topics(names: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(topics.iter(), &opts)
        .await
        .expect("create topics");
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, e)) => panic!("creating topic {name}: {e}"),
        }
    }
}

/// Path of the `streamcart` binary built beside the test executables.
pub fn streamcart_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/streamcart
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("streamcart");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        bin.display()
    );
    bin
}

/// Reads every committed record of `topic` (all partitions, from the beginning) until at least
/// `at_least` were read and the topic has been quiet for a moment, or `timeout` passes.
pub fn read_topic(
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + timeout;
    let mut out = Vec::new();
    let mut quiet = 0;
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet = 0;
                out.push(m.detach());
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {
                quiet += 1;
                // Quiet alone proves nothing before the group has its assignment: also require
                // the end of every assigned partition to be reached.
                if out.len() >= at_least && quiet >= 5 && caught_up(&consumer) {
                    break;
                }
            }
        }
    }
    out
}

/// True once the consumer has partitions assigned and its position on each is at the end a
/// read_committed reader may see.
fn caught_up<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
) -> bool {
    use rdkafka::consumer::Consumer;
    let Ok(assigned) = consumer.assignment() else {
        return false;
    };
    if assigned.count() == 0 {
        return false;
    }
    let Ok(positions) = consumer.position() else {
        return false;
    };
    assigned.elements().iter().all(|e| {
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        let position = positions
            .find_partition(e.topic(), e.partition())
            .and_then(|p| match p.offset() {
                rdkafka::Offset::Offset(o) => Some(o),
                _ => None,
            });
        // Nothing delivered yet from a partition: caught up only if it holds nothing.
        // A transaction marker may sit at the very end without anything to deliver.
        match position {
            Some(p) => p + 1 >= high,
            None => high <= low,
        }
    })
}

/// A child process that is killed when dropped.
#[derive(Debug)]
pub struct Child(pub std::process::Child);

impl Child {
    /// Kills the process without warning (SIGKILL) and reaps it.
    pub fn kill_hard(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill_hard();
        false
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Starts `streamcart <args>` with the stack's connection settings and `env` on top; its log goes
/// to `<target>/test-logs/<log_name>.log`.
pub fn spawn_streamcart(args: &[&str], env: &[(&str, String)], log_name: &str) -> Child {
    let bin = streamcart_bin();
    let logs = bin.parent().expect("target dir").join("test-logs");
    std::fs::create_dir_all(&logs).expect("log dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{log_name}.log")))
        .expect("log file");
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args)
        .env("STREAMCART_KAFKA_BOOTSTRAP", kafka_bootstrap())
        .env("STREAMCART_REGISTRY_URL", registry_url())
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Child(cmd.spawn().expect("spawn streamcart"))
}

pub mod ledger;
pub mod pipelines;
pub mod read_models;

/// Runs `scripts/stack ARGS` (e.g. `stop registry`) and fails the test if it fails: for tests
/// that stop and start servers of the shared stack.
pub fn stack(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .expect("scripts/stack");
    assert!(status.success(), "scripts/stack {args:?} failed");
}

/// A TCP port nothing listens on right now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
