//! The binary's one typed configuration: defaults, then a TOML file (`--config`), then
//! environment variables (`STREAMCART_*`). Unknown keys in the file are refused.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;
use streamcart_api::ApiConfig;
use streamcart_kafka_runtime::KafkaSettings;

/// Everything a streamcart process needs to know.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Kafka connection and batching.
    pub kafka: KafkaSettings,
    /// Base URL of the registry's Confluent-compatible API.
    pub registry_url: String,
    /// Prefix of every topic and subject name (empty in production; tests isolate runs with it).
    pub topic_prefix: String,
    /// Let producers register a schema missing from its subject (development only). Off, every
    /// subject gets its first version from the start-up registration, under BACKWARD_TRANSITIVE.
    pub auto_register_schemas: bool,
    /// Identity of this instance among the instances of one role; keeps `transactional.id`
    /// stable across restarts so a restarted instance fences its predecessor at once.
    pub instance_id: String,
    /// Partitions of every aggregate topic created by this process (commands, events and
    /// snapshots of one aggregate are co-partitioned).
    pub partitions: i32,
    /// Command processors.
    pub processor: ProcessorConfig,
    /// The fake payment gateway's policy.
    pub payments: PaymentsConfig,
    /// CQL contact points of the read-model store (ScyllaDB; Cassandra locally), comma-separated.
    pub cassandra_nodes: String,
    /// Keyspace of the read models.
    pub keyspace: String,
    /// Redis URL of the product cache.
    pub redis_url: String,
    /// The HTTP edge (`streamcart serve`).
    pub api: ApiConfig,
}

/// Command processor tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessorConfig {
    /// Snapshot an aggregate every this many events.
    pub snapshot_every_events: u32,
    /// Write a partition checkpoint every this many events in the partition.
    pub checkpoint_every_events: u64,
    /// Command ids remembered per aggregate for duplicate detection.
    pub recent_commands: usize,
    /// Forward a command found on another partition than murmur2 gives its key to its owner
    /// partition (true), or answer it `command.misplaced` (false).
    pub forward_misplaced_commands: bool,
}

/// Deterministic payment decisions, so tests and demos can force both outcomes. The test card
/// tokens `tok_success` and `tok_decline` ignore both rules (docs/payments.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Decline amounts strictly above this many minor units.
    pub decline_above_minor: Option<i64>,
    /// Decline these card tokens.
    pub declined_card_tokens: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            topic_prefix: String::new(),
            auto_register_schemas: false,
            instance_id: "0".into(),
            partitions: 8,
            processor: ProcessorConfig::default(),
            payments: PaymentsConfig::default(),
            cassandra_nodes: "127.0.0.1:9042".into(),
            keyspace: "streamcart".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            api: ApiConfig::default(),
        }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            // A snapshot carries the aggregate's recent command ids (kilobytes), so frequent
            // ones outweigh the events themselves; replay on restore is bounded by the
            // partition checkpoint instead.
            snapshot_every_events: 1_000,
            checkpoint_every_events: 20_000,
            recent_commands: 256,
            forward_misplaced_commands: true,
        }
    }
}

impl Config {
    /// Defaults, then the file if given, then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> anyhow::Result<T>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| anyhow::anyhow!("{key}={v:?}: {e}"))
        }
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        if let Some(v) = var("STREAMCART_KAFKA_BOOTSTRAP") {
            self.kafka.bootstrap_servers = v;
        }
        if let Some(v) = var("STREAMCART_REGISTRY_URL") {
            self.registry_url = v;
        }
        if let Some(v) = var("STREAMCART_TOPIC_PREFIX") {
            self.topic_prefix = v;
        }
        if let Some(v) = var("STREAMCART_AUTO_REGISTER_SCHEMAS") {
            self.auto_register_schemas = parse("STREAMCART_AUTO_REGISTER_SCHEMAS", &v)?;
        }
        if let Some(v) = var("STREAMCART_CASSANDRA_NODES") {
            self.cassandra_nodes = v;
        }
        if let Some(v) = var("STREAMCART_KEYSPACE") {
            self.keyspace = v;
        }
        if let Some(v) = var("STREAMCART_REDIS_URL") {
            self.redis_url = v;
        }
        if let Some(v) = var("STREAMCART_INSTANCE_ID") {
            self.instance_id = v;
        }
        if let Some(v) = var("STREAMCART_PARTITIONS") {
            self.partitions = parse("STREAMCART_PARTITIONS", &v)?;
        }
        if let Some(v) = var("STREAMCART_BATCH_MAX_RECORDS") {
            self.kafka.batch_max_records = parse("STREAMCART_BATCH_MAX_RECORDS", &v)?;
        }
        if let Some(v) = var("STREAMCART_FETCH_WAIT_MAX_MS") {
            self.kafka.fetch_wait_max_ms = parse("STREAMCART_FETCH_WAIT_MAX_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_LINGER_MS") {
            self.kafka.linger_ms = parse("STREAMCART_LINGER_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_BATCH_MAX_WAIT_MS") {
            self.kafka.batch_max_wait_ms = parse("STREAMCART_BATCH_MAX_WAIT_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_SNAPSHOT_EVERY_EVENTS") {
            self.processor.snapshot_every_events = parse("STREAMCART_SNAPSHOT_EVERY_EVENTS", &v)?;
        }
        if let Some(v) = var("STREAMCART_CHECKPOINT_EVERY_EVENTS") {
            self.processor.checkpoint_every_events =
                parse("STREAMCART_CHECKPOINT_EVERY_EVENTS", &v)?;
        }
        if let Some(v) = var("STREAMCART_FORWARD_MISPLACED_COMMANDS") {
            self.processor.forward_misplaced_commands =
                parse("STREAMCART_FORWARD_MISPLACED_COMMANDS", &v)?;
        }
        if let Some(v) = var("STREAMCART_PAYMENTS_DECLINE_ABOVE_MINOR") {
            self.payments.decline_above_minor =
                Some(parse("STREAMCART_PAYMENTS_DECLINE_ABOVE_MINOR", &v)?);
        }
        if let Some(v) = var("STREAMCART_API_LISTEN") {
            self.api.listen = parse("STREAMCART_API_LISTEN", &v)?;
        }
        if let Some(v) = var("STREAMCART_API_TLS_CERT") {
            self.api.tls_cert = Some(v.into());
        }
        if let Some(v) = var("STREAMCART_API_TLS_KEY") {
            self.api.tls_key = Some(v.into());
        }
        if let Some(v) = var("STREAMCART_JWT_HS256_SECRET") {
            self.api.jwt.hs256_secret = Some(v);
        }
        if let Some(v) = var("STREAMCART_JWT_RS256_PUBLIC_KEY_FILE") {
            self.api.jwt.rs256_public_key_file = Some(v.into());
        }
        if let Some(v) = var("STREAMCART_JWT_ISSUER") {
            self.api.jwt.issuer = Some(v);
        }
        if let Some(v) = var("STREAMCART_JWT_AUDIENCE") {
            self.api.jwt.audience = Some(v);
        }
        if let Some(v) = var("STREAMCART_API_COMMAND_TIMEOUT_MS") {
            self.api.command_timeout_ms = parse("STREAMCART_API_COMMAND_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_API_READ_YOUR_WRITES_TIMEOUT_MS") {
            self.api.read_your_writes_timeout_ms =
                parse("STREAMCART_API_READ_YOUR_WRITES_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_API_NEGATIVE_CACHE_TTL_MS") {
            self.api.negative_cache_ttl_ms = parse("STREAMCART_API_NEGATIVE_CACHE_TTL_MS", &v)?;
        }
        if let Some(v) = var("STREAMCART_PAYMENTS_DECLINED_CARDS") {
            self.payments.declined_card_tokens =
                v.split(',').map(|s| s.trim().to_owned()).collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_and_defaults() {
        let mut cfg: Config =
            toml::from_str("topic_prefix = \"a.\"\n[kafka]\nbatch_max_records = 7\n")
                .expect("toml");
        assert_eq!(cfg.kafka.batch_max_records, 7);
        cfg.apply_env(|k| (k == "STREAMCART_TOPIC_PREFIX").then(|| "b.".to_owned()))
            .expect("env");
        assert_eq!(cfg.topic_prefix, "b.");
        assert_eq!(cfg.partitions, 8);
    }

    #[test]
    fn auto_registration_is_off_unless_asked_for() {
        let mut cfg = Config::default();
        assert!(!cfg.auto_register_schemas);
        cfg.apply_env(|k| (k == "STREAMCART_AUTO_REGISTER_SCHEMAS").then(|| "true".to_owned()))
            .expect("env");
        assert!(cfg.auto_register_schemas);
        let err =
            cfg.apply_env(|k| (k == "STREAMCART_AUTO_REGISTER_SCHEMAS").then(|| "yes".to_owned()));
        assert!(err.is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("topic_prefx = \"a.\"").is_err());
        assert!(toml::from_str::<Config>("[kafka]\nbootstrap = \"x\"").is_err());
    }

    #[test]
    fn forwarding_of_misplaced_commands_is_on_unless_turned_off() {
        assert!(Config::default().processor.forward_misplaced_commands);
        let cfg: Config =
            toml::from_str("[processor]\nforward_misplaced_commands = false\n").expect("toml");
        assert!(!cfg.processor.forward_misplaced_commands);
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "STREAMCART_FORWARD_MISPLACED_COMMANDS").then(|| "false".into()))
            .expect("env");
        assert!(!cfg.processor.forward_misplaced_commands);
        let err = cfg
            .apply_env(|k| (k == "STREAMCART_FORWARD_MISPLACED_COMMANDS").then(|| "nope".into()));
        assert!(err.is_err());
    }

    #[test]
    fn bad_numbers_in_the_environment_are_errors() {
        let mut cfg = Config::default();
        let err = cfg.apply_env(|k| (k == "STREAMCART_PARTITIONS").then(|| "many".to_owned()));
        assert!(err.is_err());
    }
}
