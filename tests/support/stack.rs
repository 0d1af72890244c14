//! The shared stack: its servers' addresses, names unique to one run, topics, and stopping and
//! starting servers for outage tests.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

/// An environment variable, or `default` when it is unset or empty.
pub fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

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

/// A name unique to this test run, safe for topics, subjects and CQL identifiers.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// Creates topics (idempotently) with the given partition count and waits until they exist.
pub async fn create_topics(names: &[&str], partitions: i32) {
    create_topics_with(names, partitions, &[]).await;
}

/// Like [`create_topics`], with these topic configs (`min.insync.replicas`, …).
pub async fn create_topics_with(names: &[&str], partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()
        .expect("admin client");
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            configs.iter().fold(
                NewTopic::new(n, partitions, TopicReplication::Fixed(1)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
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

/// Jaeger's query API (`/api/traces/{id}`).
pub fn jaeger_query_url() -> String {
    env_or("JAEGER_QUERY_URL", "http://127.0.0.1:16686")
}

/// Prometheus' HTTP API (`/api/v1/query`).
pub fn prometheus_url() -> String {
    env_or("PROMETHEUS_URL", "http://127.0.0.1:9090")
}

/// Base URL of Jaeger's OTLP/HTTP receiver, which roles export their spans to.
pub fn otlp_endpoint() -> String {
    env_or("STREAMCART_OTLP_ENDPOINT", "http://127.0.0.1:4318")
}
