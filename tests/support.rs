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
