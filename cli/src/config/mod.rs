//! The binary's one typed configuration, in three layers: the defaults, then a TOML file
//! (`--config`, unknown keys refused), then the environment by one rule that covers every key
//! (docs/configuration.md). The values are then checked, each complaint naming its key.
//!
//! The defaults of a section live beside the code that uses it (`KafkaSettings`, `ApiConfig`,
//! `ProcessorTuning`), never repeated here.

mod env;
mod mask;
mod validate;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Format as _, Serialized, Toml};
use figment::{Figment, Profile};
use serde::{Deserialize, Serialize};
use streamcart_api::ApiConfig;
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_kafka_runtime::metrics::MetricsConfig;
use streamcart_kafka_runtime::telemetry::TracingConfig;
use streamcart_processors::command::kafka::ProcessorTuning;
use streamcart_processors::command::table::SnapshotPolicy;
use streamcart_projectors::store::{Replication, StoreConsistency, StoreCredentials, StoreOptions};

use env::ENV_ORIGIN;
pub use env::EnvLayer;

/// Everything a streamcart process needs to know.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Base URL of the registry's Confluent-compatible API.
    pub registry_url: String,
    /// Prefix of every topic and subject name (empty in production; tests isolate runs with it).
    pub topic_prefix: String,
    /// Let producers register a schema missing from its subject (development only). Off, every
    /// subject gets its first version from the start-up registration, under BACKWARD_TRANSITIVE.
    pub auto_register_schemas: bool,
    /// Identity of this instance among the instances of one role; keeps `transactional.id`
    /// stable across restarts so a restarted instance fences its predecessor at once.
    /// Defaults to the host name: stable and distinct per pod of a StatefulSet
    /// (`order-processor-0`, `-1`, ...). Two instances of one role on one host need their own.
    pub instance_id: String,
    /// Partitions of every aggregate topic created by this process (commands, events and
    /// snapshots of one aggregate are co-partitioned).
    pub partitions: i32,
    /// CQL contact points of the read-model store (ScyllaDB; Cassandra locally), comma-separated.
    pub cassandra_nodes: String,
    /// Keyspace of the read models.
    pub keyspace: String,
    /// Redis URL of the product cache.
    pub redis_url: String,
    /// Kafka connection and batching.
    pub kafka: KafkaSettings,
    /// Command processors.
    pub processor: ProcessorConfig,
    /// The fake payment gateway's policy.
    pub payments: PaymentsConfig,
    /// The HTTP edge (`streamcart serve`).
    pub api: ApiConfig,
    /// Where the Kafka Connect JDBC sink writes, for `streamcart demo` to read back.
    pub sink: SinkConfig,
    /// Where every role serves `/metrics`, `/health/live` and `/health/ready`.
    pub metrics: MetricsConfig,
    /// Traces: OTLP endpoint, sampling, service name.
    pub tracing: TracingConfig,
    /// How the process logs.
    pub log: LogConfig,
    /// How the saga runs.
    pub saga: SagaConfig,
    /// How the read-model store is replicated, read and written.
    pub store: StoreConfig,
}

/// The read-model keyspace's replication, the consistency of its statements, and the
/// credentials to reach it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// SimpleStrategy's factor, used while `datacenters` is empty (one datacenter, locally).
    pub replication_factor: u32,
    /// NetworkTopologyStrategy's factors, `dc1:3,dc2:3`; empty for SimpleStrategy.
    pub datacenters: String,
    /// Consistency of every read and write: `one`, `local_one`, `quorum`, `local_quorum`,
    /// `all`.
    pub consistency: StoreConsistency,
    /// User for the cluster's password authentication.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            datacenters: String::new(),
            consistency: StoreConsistency::default(),
            username: None,
            password: None,
        }
    }
}

impl StoreConfig {
    /// `datacenters` as `(name, factor)` pairs, or what is wrong with it.
    pub fn datacenter_factors(&self) -> Result<Vec<(String, u32)>, String> {
        self.datacenters
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (dc, factor) = part
                    .split_once(':')
                    .ok_or_else(|| format!("{part:?} is not datacenter:factor"))?;
                let factor: u32 = factor
                    .trim()
                    .parse()
                    .ok()
                    .filter(|f| *f >= 1)
                    .ok_or_else(|| format!("{part:?}: the factor must be a number ≥ 1"))?;
                Ok((dc.trim().to_owned(), factor))
            })
            .collect()
    }

    /// How to open the store in `keyspace` (the configuration is validated before this is
    /// used, so a bad `datacenters` cannot reach it).
    pub fn options(&self, keyspace: &str) -> StoreOptions {
        let datacenters = self.datacenter_factors().unwrap_or_default();
        let replication = if datacenters.is_empty() {
            Replication::Simple {
                factor: self.replication_factor,
            }
        } else {
            Replication::NetworkTopology { datacenters }
        };
        StoreOptions {
            replication,
            consistency: self.consistency,
            credentials: match (&self.username, &self.password) {
                (Some(username), Some(password)) => Some(StoreCredentials {
                    username: username.clone(),
                    password: password.clone(),
                }),
                _ => None,
            },
            ..StoreOptions::new(keyspace)
        }
    }
}

/// How the saga runs (docs/saga.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaConfig {
    /// Where the choreography's reactions run: `loop` (the `sagas` role's reaction loop
    /// consumes every event topic) or `inline` (each command processor reacts to the events
    /// it appends, in their transaction; the `sagas` role then runs only the deadlines).
    pub reactions: ReactionsPlacement,
}

/// Where the saga's reactions run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReactionsPlacement {
    /// In the `sagas` role's own loop: one more transaction per saga step.
    #[default]
    Loop,
    /// In the command processor that appends the event, in the same transaction.
    Inline,
}

/// How the process writes its log (to standard error).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, for log pipelines).
    pub format: LogFormat,
    /// A `tracing` filter (`info,rdkafka=warn`); `RUST_LOG`, when set, wins.
    pub filter: String,
}

/// The log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, span fields (the trace id) included.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,rdkafka=warn".into(),
        }
    }
}

/// Command processor tuning: the `[processor]` face of [`ProcessorTuning`].
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Longest a partition restore may take, in milliseconds.
    pub restore_timeout_ms: u64,
    /// Longest reading the partition counts of the aggregate's topics may take, in milliseconds.
    pub metadata_timeout_ms: u64,
}

/// Deterministic payment decisions, so tests and demos can force both outcomes. The test card
/// tokens `tok_success` and `tok_decline` ignore both rules (docs/payments.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    /// Decline amounts strictly above this many minor units.
    pub decline_above_minor: Option<i64>,
    /// Decline these card tokens (a TOML array, or comma-separated in the environment).
    #[serde(deserialize_with = "string_list")]
    pub declined_card_tokens: Vec<String>,
}

/// The PostgreSQL database of the Kafka Connect JDBC sink (scripts/connect reads the same
/// variables when it creates the connectors).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `postgres://user:password@host:port/db`.
    pub postgres_url: String,
    /// Prefix of the sink's table names; unset, the topic prefix made SQL-safe.
    pub table_prefix: Option<String>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            postgres_url: "postgres://postgres:streamcart@127.0.0.1:5432/streamcart".into(),
            table_prefix: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            topic_prefix: String::new(),
            auto_register_schemas: false,
            instance_id: host_name(),
            partitions: 8,
            cassandra_nodes: "127.0.0.1:9042".into(),
            keyspace: "streamcart".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            kafka: KafkaSettings::default(),
            processor: ProcessorConfig::default(),
            payments: PaymentsConfig::default(),
            api: ApiConfig::default(),
            sink: SinkConfig::default(),
            metrics: MetricsConfig::default(),
            tracing: TracingConfig::default(),
            log: LogConfig::default(),
            saga: SagaConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        let tuning = ProcessorTuning::default();
        Self {
            snapshot_every_events: tuning.snapshots.every_events,
            checkpoint_every_events: tuning.checkpoint_every_events,
            recent_commands: tuning.snapshots.recent_commands,
            forward_misplaced_commands: tuning.forward_misplaced,
            restore_timeout_ms: millis(tuning.restore_timeout),
            metadata_timeout_ms: millis(tuning.metadata_timeout),
        }
    }
}

impl ProcessorConfig {
    /// The tuning a command processor runs with, under the saga settings `saga`.
    pub fn tuning(&self, saga: &SagaConfig) -> ProcessorTuning {
        ProcessorTuning {
            snapshots: SnapshotPolicy {
                every_events: self.snapshot_every_events,
                recent_commands: self.recent_commands,
            },
            checkpoint_every_events: self.checkpoint_every_events,
            restore_timeout: Duration::from_millis(self.restore_timeout_ms),
            forward_misplaced: self.forward_misplaced_commands,
            metadata_timeout: Duration::from_millis(self.metadata_timeout_ms),
            inline_reactions: saga.reactions == ReactionsPlacement::Inline,
        }
    }
}

/// The host name (Linux's), made safe for a `transactional.id`; `0` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "0".into())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A list given as a sequence (TOML) or as one comma-separated string (the environment, where
/// every value is a string).
fn string_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings, or one comma-separated string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Visitor)
}

/// Why a configuration could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable named by the rule for a key the configuration does not have.
    #[error("{var}: the configuration has no key {key}")]
    UnknownVariable {
        /// The variable.
        var: String,
        /// The key its name stands for.
        key: String,
    },
    /// A layer that could not be read: a missing or malformed file, a key the configuration
    /// does not have, or a value of the wrong type.
    #[error("{}", describe_load(key, message, origin))]
    Load {
        /// The dotted key, when the problem is one key's.
        key: Option<String>,
        /// What is wrong.
        message: String,
        /// Where the value came from: the file, the variable, or the defaults.
        origin: String,
    },
    /// Values of the right type that are out of bounds, all of them.
    #[error("{}", join(.0))]
    Invalid(Vec<Invalid>),
}

/// One key whose value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    /// The dotted key.
    pub key: &'static str,
    /// Why its value is refused.
    pub reason: String,
}

fn describe_load(key: &Option<String>, message: &str, origin: &str) -> String {
    match key {
        Some(key) => format!("{key}: {message} (from {origin})"),
        None => format!("{message} (from {origin})"),
    }
}

fn join(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        let mut path = e.path.clone();
        let message = match &e.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                // Figment puts the unknown field at the end of the path, serde alone does not.
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                format!("unknown key (this section has: {})", expected.join(", "))
            }
            kind => kind.to_string(),
        };
        let origin = match &e.metadata {
            Some(md) if md.name == ENV_ORIGIN => {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                md.interpolate(&Profile::Default, &keys)
            }
            Some(md) => match &md.source {
                Some(source) => source.to_string(),
                None => md.name.to_string(),
            },
            None => "the configuration".to_owned(),
        };
        ConfigError::Load {
            key: (!path.is_empty()).then(|| path.join(".")),
            message,
            origin,
        }
    }
}

impl Config {
    /// Defaults, then the file if given, then the process environment; then the checks.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, EnvLayer::from_process()?)
    }

    /// Defaults, then the file if given, then `env`; then the checks.
    pub fn load_from(file: Option<&Path>, env: EnvLayer) -> Result<Self, ConfigError> {
        let cfg = Self::layered(file, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The three layers merged, unchecked.
    fn layered(file: Option<&Path>, env: EnvLayer) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        Ok(figment.merge(env).extract_lossy()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::tests::layer as env;

    /// A TOML file in the system's temporary directory, removed when dropped.
    struct TempToml(std::path::PathBuf);

    impl Drop for TempToml {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn with_file(text: &str) -> TempToml {
        let path = std::env::temp_dir().join(format!(
            "streamcart-config-{}.toml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempToml(path)
    }

    #[test]
    fn environment_overrides_file_and_file_overrides_defaults() {
        let file = with_file("topic_prefix = \"a.\"\n[kafka]\nbatch_max_records = 7\n");
        let cfg = Config::load_from(Some(&file.0), env(&[("STREAMCART_TOPIC_PREFIX", "b.")]))
            .expect("load");
        assert_eq!(cfg.topic_prefix, "b.");
        assert_eq!(cfg.kafka.batch_max_records, 7);
        assert_eq!(cfg.partitions, Config::default().partitions);
    }

    #[test]
    fn librdkafka_properties_come_from_the_file_and_the_environment() {
        let file = with_file(
            "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
             \"sasl.mechanisms\" = \"PLAIN\"\n\
             [kafka.topics.events]\nreplication_factor = 3\nmin_insync_replicas = 2\n",
        );
        let cfg = Config::load_from(
            Some(&file.0),
            env(&[
                (
                    "STREAMCART_KAFKA__PROPERTIES__SASL_MECHANISMS",
                    "SCRAM-SHA-512",
                ),
                ("STREAMCART_KAFKA__PROPERTIES__SASL_PASSWORD", "pw"),
            ]),
        )
        .expect("load");
        let props: Vec<(&str, &str)> = cfg
            .kafka
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.password", "pw"),
                ("security.protocol", "SASL_SSL"),
            ]
        );
        assert_eq!(cfg.kafka.topics.events.replication_factor, 3);
        assert_eq!(cfg.kafka.topics.events.min_insync_replicas, 2);
        assert_eq!(cfg.kafka.topics.commands.replication_factor, 1);
        let client = cfg.kafka.transactional_producer("t-1");
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("transactional.id"), Some("t-1"));
        let printed = cfg.to_masked_toml().expect("toml");
        assert!(!printed.contains("\"pw\""), "{printed}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused_by_name() {
        let file = with_file("topic_prefx = \"a.\"\n");
        let err = Config::load_from(Some(&file.0), EnvLayer::default()).expect_err("unknown");
        assert!(
            err.to_string().starts_with("topic_prefx: unknown key"),
            "{err}"
        );
        let file = with_file("[kafka]\nbootstrap = \"x\"\n");
        let err = Config::load_from(Some(&file.0), EnvLayer::default()).expect_err("unknown");
        assert!(
            err.to_string().starts_with("kafka.bootstrap: unknown key"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&file.0.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = Config::load_from(
            Some(Path::new("/nonexistent/streamcart.toml")),
            EnvLayer::default(),
        )
        .expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/streamcart.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_names_its_key_and_variable() {
        let err = Config::load_from(None, env(&[("STREAMCART_PARTITIONS", "many")]))
            .expect_err("bad number");
        let text = err.to_string();
        assert!(text.starts_with("partitions: "), "{text}");
        assert!(text.contains("STREAMCART_PARTITIONS"), "{text}");
        let err = Config::load_from(None, env(&[("STREAMCART_API_LISTEN", "localhost")]))
            .expect_err("bad address");
        let text = err.to_string();
        assert!(text.starts_with("api.listen: "), "{text}");
        assert!(text.contains("STREAMCART_API_LISTEN"), "{text}");
        let err = Config::load_from(None, env(&[("STREAMCART_AUTO_REGISTER_SCHEMAS", "maybe")]))
            .expect_err("bad bool");
        assert!(
            err.to_string().starts_with("auto_register_schemas: "),
            "{err}"
        );
    }

    #[test]
    fn processor_defaults_are_the_processors_own() {
        let tuning = ProcessorConfig::default().tuning(&SagaConfig::default());
        let own = ProcessorTuning::default();
        assert_eq!(tuning.snapshots, own.snapshots);
        assert_eq!(tuning.checkpoint_every_events, own.checkpoint_every_events);
        assert_eq!(tuning.restore_timeout, own.restore_timeout);
        assert_eq!(tuning.forward_misplaced, own.forward_misplaced);
        assert_eq!(tuning.metadata_timeout, own.metadata_timeout);
        assert_eq!(tuning.inline_reactions, own.inline_reactions);
    }
}
