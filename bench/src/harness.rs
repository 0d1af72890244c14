//! What every benchmark shares: the stack's addresses, spawning streamcart roles, topics,
//! Kafka's producer performance tool as the ceiling, and percentiles.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

/// Partitions of every benchmark topic.
pub const PARTITIONS: i32 = 4;

/// An environment variable or its default.
pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A numeric environment variable or its default.
pub fn env_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kafka bootstrap servers.
pub fn bootstrap() -> String {
    env_or("STREAMCART_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
}

/// The registry's Confluent API.
pub fn registry() -> String {
    env_or(
        "STREAMCART_REGISTRY_URL",
        "http://127.0.0.1:8081/apis/ccompat/v7",
    )
}

/// A fresh topic prefix for one run.
pub fn prefix(name: &str) -> String {
    format!(
        "bench_{name}_{}.",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Creates topics with [`PARTITIONS`] partitions.
pub async fn create_topics(names: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(topics.iter(), &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// An idempotent producer placing keys with murmur2, like every streamcart client.
pub fn producer() -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Sends one record, waiting while the local queue is full.
pub fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, value: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A streamcart role running beside the benchmark, killed when dropped.
#[derive(Debug)]
pub struct Role(Child);

impl Drop for Role {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `streamcart <args>` (the binary next to this one) under `prefix`.
pub fn spawn_role(args: &[&str], prefix: &str, extra: &[(&str, &str)]) -> anyhow::Result<Role> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("streamcart");
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .env("STREAMCART_TOPIC_PREFIX", prefix)
        .env("STREAMCART_PARTITIONS", PARTITIONS.to_string())
        .env("STREAMCART_KAFKA_BOOTSTRAP", bootstrap())
        .env("STREAMCART_REGISTRY_URL", registry())
        .env("RUST_LOG", env_or("BENCH_ROLE_LOG", "warn"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Ok(Role(
        cmd.spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    ))
}

/// Runs Kafka's own producer performance tool, transactionally, and returns its records/s.
pub fn kafka_producer_perf(topic: &str, records: usize, record_size: usize) -> anyhow::Result<f64> {
    let java = env_or("STREAMCART_JAVA17", "java");
    let cp = std::env::var("STREAMCART_KAFKA_TOOLS_CP")
        .context("STREAMCART_KAFKA_TOOLS_CP (from scripts/stack env)")?;
    let out = Command::new(java)
        .args([
            "-Xmx512m",
            "-cp",
            &cp,
            "org.apache.kafka.tools.ProducerPerformance",
        ])
        .args(["--topic", topic, "--num-records", &records.to_string()])
        .args([
            "--record-size",
            &record_size.max(1).to_string(),
            "--throughput",
            "-1",
        ])
        .args([
            "--transactional-id",
            &format!("{topic}-perf"),
            "--transaction-duration-ms",
            "100",
        ])
        .args([
            "--producer-props",
            &format!("bootstrap.servers={}", bootstrap()),
        ])
        .args([
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "compression.type=lz4",
        ])
        .output()
        .context("running ProducerPerformance")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("records/sec") && l.contains("50th"))
        .with_context(|| {
            format!(
                "no summary in ProducerPerformance output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    // "N records sent, X records/sec (...)"
    let rate = last
        .split(',')
        .nth(1)
        .and_then(|s| s.trim().split(' ').next())
        .and_then(|s| s.parse::<f64>().ok())
        .with_context(|| format!("cannot parse {last:?}"))?;
    Ok(rate)
}

/// The median of a non-empty sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// The p-th percentile (0..=100) of a sample, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
