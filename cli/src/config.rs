//! The binary's one typed configuration, in three layers: the defaults, then a TOML file
//! (`--config`, unknown keys refused), then the environment by one rule that covers every key
//! (docs/configuration.md). The values are then checked, each complaint naming its key.
//!
//! The defaults of a section live beside the code that uses it (`KafkaSettings`, `ApiConfig`,
//! `ProcessorTuning`), never repeated here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};
use streamcart_api::ApiConfig;
use streamcart_api::auth::MIN_HS256_SECRET_BYTES;
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_processors::command::kafka::ProcessorTuning;
use streamcart_processors::command::table::SnapshotPolicy;

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

impl Default for Config {
    fn default() -> Self {
        Self {
            registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
            topic_prefix: String::new(),
            auto_register_schemas: false,
            instance_id: "0".into(),
            partitions: 8,
            cassandra_nodes: "127.0.0.1:9042".into(),
            keyspace: "streamcart".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            kafka: KafkaSettings::default(),
            processor: ProcessorConfig::default(),
            payments: PaymentsConfig::default(),
            api: ApiConfig::default(),
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
    /// The tuning a command processor runs with.
    pub fn tuning(&self) -> ProcessorTuning {
        ProcessorTuning {
            snapshots: SnapshotPolicy {
                every_events: self.snapshot_every_events,
                recent_commands: self.recent_commands,
            },
            checkpoint_every_events: self.checkpoint_every_events,
            restore_timeout: Duration::from_millis(self.restore_timeout_ms),
            forward_misplaced: self.forward_misplaced_commands,
            metadata_timeout: Duration::from_millis(self.metadata_timeout_ms),
        }
    }
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

/// Prefix of every variable the configuration reads.
pub const ENV_PREFIX: &str = "STREAMCART_";
/// What stands for the dot between a section and its key in a variable's name.
pub const ENV_SEPARATOR: &str = "__";

/// The flat names the configuration was read from before the rule, still documented and used by
/// scripts and tests; each stands for one key. The rule's own name wins when both are set.
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("STREAMCART_KAFKA_BOOTSTRAP", "kafka.bootstrap_servers"),
    ("STREAMCART_BATCH_MAX_RECORDS", "kafka.batch_max_records"),
    ("STREAMCART_BATCH_MAX_WAIT_MS", "kafka.batch_max_wait_ms"),
    ("STREAMCART_FETCH_WAIT_MAX_MS", "kafka.fetch_wait_max_ms"),
    ("STREAMCART_LINGER_MS", "kafka.linger_ms"),
    (
        "STREAMCART_SNAPSHOT_EVERY_EVENTS",
        "processor.snapshot_every_events",
    ),
    (
        "STREAMCART_CHECKPOINT_EVERY_EVENTS",
        "processor.checkpoint_every_events",
    ),
    (
        "STREAMCART_FORWARD_MISPLACED_COMMANDS",
        "processor.forward_misplaced_commands",
    ),
    (
        "STREAMCART_PAYMENTS_DECLINE_ABOVE_MINOR",
        "payments.decline_above_minor",
    ),
    (
        "STREAMCART_PAYMENTS_DECLINED_CARDS",
        "payments.declined_card_tokens",
    ),
    ("STREAMCART_API_LISTEN", "api.listen"),
    ("STREAMCART_API_TLS_CERT", "api.tls_cert"),
    ("STREAMCART_API_TLS_KEY", "api.tls_key"),
    (
        "STREAMCART_API_COMMAND_TIMEOUT_MS",
        "api.command_timeout_ms",
    ),
    (
        "STREAMCART_API_READ_YOUR_WRITES_TIMEOUT_MS",
        "api.read_your_writes_timeout_ms",
    ),
    (
        "STREAMCART_API_NEGATIVE_CACHE_TTL_MS",
        "api.negative_cache_ttl_ms",
    ),
    ("STREAMCART_JWT_HS256_SECRET", "api.jwt.hs256_secret"),
    (
        "STREAMCART_JWT_RS256_PUBLIC_KEY_FILE",
        "api.jwt.rs256_public_key_file",
    ),
    ("STREAMCART_JWT_ISSUER", "api.jwt.issuer"),
    ("STREAMCART_JWT_AUDIENCE", "api.jwt.audience"),
];

/// The variable the rule gives a key: `kafka.linger_ms` is `STREAMCART_KAFKA__LINGER_MS`,
/// `topic_prefix` is `STREAMCART_TOPIC_PREFIX`.
pub fn env_var_for(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', ENV_SEPARATOR)
    )
}

/// Every key of the configuration (dotted, leaves only), including those unset by default.
pub fn keys() -> BTreeSet<String> {
    leaves(&defaults_value()).into_keys().collect()
}

fn defaults_value() -> Value {
    // Serializing plain structs of strings, numbers, options and lists cannot fail.
    Value::serialize(Config::default()).unwrap_or_else(|_| Value::from(Dict::new()))
}

/// The leaves of a value tree by dotted key; an unset option is a leaf too (`Empty`).
fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Dict(_, dict) => {
                for (k, v) in dict {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// The environment layer: the variables of the rule and of [`LEGACY_ENV`], each value kept as
/// the string it is. Figment's own `Env` provider parses values, so `STREAMCART_INSTANCE_ID=1`
/// would be a number that a string key refuses; here a string becomes a number or a boolean
/// only where the key asks for one (`extract_lossy`).
#[derive(Debug, Clone, Default)]
pub struct EnvLayer {
    /// Key → (variable it came from, value).
    values: BTreeMap<String, (String, String)>,
}

impl EnvLayer {
    /// The layer of the process environment.
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// The layer of these variables. Variables with the prefix that the rule does not name (the
    /// scripts' own, such as `STREAMCART_STACK_DIR`) are left alone, but a nested name
    /// (`STREAMCART_<SECTION>__<KEY>`) for a key the configuration does not have is an error,
    /// like an unknown key in the file. An empty variable counts as unset.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let known = keys();
        let legacy: BTreeMap<&str, &str> = LEGACY_ENV.iter().copied().collect();
        let mut by_rule = BTreeMap::new();
        let mut by_alias = BTreeMap::new();
        for (var, value) in vars {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace(ENV_SEPARATOR, ".");
            if known.contains(&key) {
                by_rule.insert(key, (var, value));
            } else if let Some(key) = legacy.get(var.as_str()) {
                by_alias.insert((*key).to_owned(), (var, value));
            } else if rest.contains(ENV_SEPARATOR) {
                return Err(ConfigError::UnknownVariable { var, key });
            }
        }
        for (key, entry) in by_alias {
            by_rule.entry(key).or_insert(entry);
        }
        Ok(Self { values: by_rule })
    }

    /// The variable that set `key`, if one did.
    #[cfg(test)]
    fn var_of(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(var, _)| var.as_str())
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        let vars: BTreeMap<String, String> = self
            .values
            .iter()
            .map(|(k, (var, _))| (k.clone(), var.clone()))
            .collect();
        Metadata::named(ENV_ORIGIN).interpolater(move |_: &Profile, path: &[&str]| {
            let key = path.join(".");
            vars.get(&key).cloned().unwrap_or_else(|| env_var_for(&key))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, (_, value)) in &self.values {
            insert(&mut root, key, Value::from(value.clone()));
        }
        Ok(Profile::Default.collect(root))
    }
}

const ENV_ORIGIN: &str = "environment";

fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, child) = child {
                insert(child, rest, value);
            }
        }
    }
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

    /// Every value out of bounds, each named by its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &'static str, reason: &dyn Fn() -> String| {
            if !ok {
                problems.push(Invalid {
                    key,
                    reason: reason(),
                });
            }
        };
        let at_least_1 = || "must be at least 1".to_owned();

        check(
            self.registry_url.starts_with("http://") || self.registry_url.starts_with("https://"),
            "registry_url",
            &|| "not an http:// or https:// URL".into(),
        );
        check(
            !self.instance_id.is_empty() && !self.instance_id.contains(char::is_whitespace),
            "instance_id",
            &|| "must be non-empty, without spaces (it is part of transactional ids)".into(),
        );
        check(self.partitions >= 1, "partitions", &at_least_1);
        check(
            host_ports(&self.cassandra_nodes),
            "cassandra_nodes",
            &|| "not a comma-separated list of host:port".into(),
        );
        let keyspace = streamcart_projectors::store::cassandra::check_keyspace(&self.keyspace);
        check(keyspace.is_ok(), "keyspace", &|| {
            keyspace
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        });
        check(
            ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|scheme| self.redis_url.starts_with(scheme)),
            "redis_url",
            &|| "not a redis://, rediss:// or unix:// URL".into(),
        );

        let k = &self.kafka;
        check(
            host_ports(&k.bootstrap_servers),
            "kafka.bootstrap_servers",
            &|| "not a comma-separated list of host:port".into(),
        );
        check(
            k.batch_max_records >= 1,
            "kafka.batch_max_records",
            &at_least_1,
        );
        // The broker aborts a transaction held open past its timeout, so a batch must close
        // well before.
        check(
            k.batch_max_wait_ms >= 1 && k.batch_max_wait_ms < k.transaction_timeout_ms,
            "kafka.batch_max_wait_ms",
            &|| {
                format!(
                    "must be at least 1 and below kafka.transaction_timeout_ms ({})",
                    k.transaction_timeout_ms
                )
            },
        );
        // 15 minutes is the broker's default transaction.max.timeout.ms; longer is refused by
        // the broker at the first transaction, not at start.
        check(
            (1_000..=900_000).contains(&k.transaction_timeout_ms),
            "kafka.transaction_timeout_ms",
            &|| "must be between 1000 and 900000".into(),
        );
        check(
            (1..=3_600_000).contains(&k.session_timeout_ms),
            "kafka.session_timeout_ms",
            &|| "must be between 1 and 3600000".into(),
        );
        check(k.stall_after_ms >= 1, "kafka.stall_after_ms", &at_least_1);
        check(
            k.give_up_after_ms >= 1,
            "kafka.give_up_after_ms",
            &at_least_1,
        );
        check(
            k.fetch_wait_max_ms <= 300_000,
            "kafka.fetch_wait_max_ms",
            &|| "must be ≤ 300000".into(),
        );
        // Every commit waits out the linger (see the key), so it adds to every saga hop; past a
        // second it would cost more than a broker blip does.
        check(k.linger_ms <= 1_000, "kafka.linger_ms", &|| {
            "must be ≤ 1000".into()
        });

        let p = &self.processor;
        check(
            p.snapshot_every_events >= 1,
            "processor.snapshot_every_events",
            &at_least_1,
        );
        check(
            p.checkpoint_every_events >= 1,
            "processor.checkpoint_every_events",
            &at_least_1,
        );
        // Duplicate detection needs the command ids it answers from.
        check(
            p.recent_commands >= 1,
            "processor.recent_commands",
            &at_least_1,
        );
        check(
            p.restore_timeout_ms >= 1,
            "processor.restore_timeout_ms",
            &at_least_1,
        );
        check(
            p.metadata_timeout_ms >= 1,
            "processor.metadata_timeout_ms",
            &at_least_1,
        );

        check(
            self.payments.decline_above_minor.is_none_or(|v| v >= 0),
            "payments.decline_above_minor",
            &|| "must not be negative".into(),
        );
        check(
            self.payments
                .declined_card_tokens
                .iter()
                .all(|t| !t.trim().is_empty()),
            "payments.declined_card_tokens",
            &|| "must not hold an empty token".into(),
        );

        let a = &self.api;
        // Either half alone would start the edge without the TLS its operator asked for.
        let (missing, given) = if a.tls_cert.is_some() {
            ("api.tls_key", "api.tls_cert")
        } else {
            ("api.tls_cert", "api.tls_key")
        };
        check(
            a.tls_cert.is_some() == a.tls_key.is_some(),
            missing,
            &|| format!("must be set when {given} is (TLS needs both)"),
        );
        check(
            a.jwt
                .hs256_secret
                .as_ref()
                .is_none_or(|s| s.len() >= MIN_HS256_SECRET_BYTES),
            "api.jwt.hs256_secret",
            &|| format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
        );
        for (ok, key) in [
            (
                a.read_your_writes_timeout_ms >= 1,
                "api.read_your_writes_timeout_ms",
            ),
            (a.command_timeout_ms >= 1, "api.command_timeout_ms"),
            (a.produce_timeout_ms >= 1, "api.produce_timeout_ms"),
            (a.cache_timeout_ms >= 1, "api.cache_timeout_ms"),
            (a.store_timeout_ms >= 1, "api.store_timeout_ms"),
            (a.max_body_bytes >= 1, "api.max_body_bytes"),
            (a.remembered_results >= 1, "api.remembered_results"),
            (
                a.default_order_deadline_seconds >= 1,
                "api.default_order_deadline_seconds",
            ),
            (
                a.idempotency_key_ttl_seconds >= 1,
                "api.idempotency_key_ttl_seconds",
            ),
            (a.idempotency_timeout_ms >= 1, "api.idempotency_timeout_ms"),
        ] {
            check(ok, key, &at_least_1);
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The configuration as TOML with every secret masked, for `streamcart config`; keys that
    /// are unset are listed in a closing comment, TOML having no way to say "unset".
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        mask(None, &mut value);
        let mut out = toml::to_string(&value)?;
        let unset: Vec<String> =
            leaves(&Value::serialize(self).unwrap_or_else(|_| defaults_value()))
                .into_iter()
                .filter(|(_, v)| matches!(v, Value::Empty(..)))
                .map(|(k, _)| k)
                .collect();
        if !unset.is_empty() {
            out.push_str(&format!("\n# unset: {}\n", unset.join(", ")));
        }
        Ok(out)
    }
}

/// Shown instead of a secret.
pub const MASK: &str = "********";

/// Whether a key's value is a secret by its name, whatever section it is in.
fn is_secret_key(name: &str) -> bool {
    ["secret", "password", "credential", "private_key"]
        .iter()
        .any(|word| name.contains(word))
}

fn mask(name: Option<&str>, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                mask(Some(k), v);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                mask(name, item);
            }
        }
        toml::Value::String(s) => {
            if name.is_some_and(is_secret_key) {
                *s = MASK.to_owned();
            } else {
                *s = mask_url_password(s);
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host/...` with the password masked; any other text unchanged.
fn mask_url_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{MASK}@{host}{tail}"),
        None => text.to_owned(),
    }
}

/// `host:port[,host:port...]` with a numeric port on every entry.
fn host_ports(list: &str) -> bool {
    !list.trim().is_empty()
        && list.split(',').all(|entry| {
            entry
                .trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> EnvLayer {
        EnvLayer::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .expect("environment")
    }

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

    /// A leaf's value as the environment would spell it.
    fn env_text(value: &Value) -> String {
        match value {
            Value::String(_, s) => s.clone(),
            Value::Char(_, c) => c.to_string(),
            Value::Bool(_, b) => b.to_string(),
            Value::Num(_, n) => n
                .to_u128()
                .map(|n| n.to_string())
                .or_else(|| n.to_i128().map(|n| n.to_string()))
                .or_else(|| n.to_f64().map(|f| f.to_string()))
                .unwrap_or_default(),
            Value::Array(_, items) => items.iter().map(env_text).collect::<Vec<_>>().join(","),
            Value::Empty(..) => String::new(),
            Value::Dict(..) => "<dict>".into(),
        }
    }

    /// A value for `key` that differs from its default and that its type accepts.
    fn other_value(key: &str, default: &Value) -> String {
        match default {
            Value::Bool(_, b) => (!b).to_string(),
            Value::Num(_, n) => match n.to_u128() {
                Some(n) => (n + 1).to_string(),
                None => (n.to_i128().expect("integer default") + 1).to_string(),
            },
            Value::String(_, s) if s.parse::<std::net::SocketAddr>().is_ok() => {
                "127.0.0.1:1".into()
            }
            Value::String(_, s) => format!("{s}x"),
            // Unset options (strings, paths, numbers) and lists both take "7".
            Value::Empty(..) | Value::Array(..) => "7".into(),
            other => panic!("{key}: no test value for {other:?}"),
        }
    }

    #[test]
    fn every_key_is_settable_from_the_environment_by_the_rule() {
        let defaults = leaves(&defaults_value());
        // Not vacuous: the sections' keys are all there, unset options included.
        assert!(defaults.len() > 40, "{} keys", defaults.len());
        for key in [
            "kafka.linger_ms",
            "api.jwt.hs256_secret",
            "api.tls_cert",
            "topic_prefix",
        ] {
            assert!(defaults.contains_key(key), "{key} missing");
        }
        for (key, default) in &defaults {
            let var = env_var_for(key);
            let value = other_value(key, default);
            let cfg = Config::layered(None, env(&[(var.as_str(), value.as_str())]))
                .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
            let loaded = Value::serialize(&cfg)
                .expect("serialize")
                .find(key)
                .unwrap_or_else(|| panic!("{key} not in the loaded configuration"));
            assert_eq!(env_text(&loaded), value, "{var} did not set {key}");
            assert_ne!(env_text(&loaded), env_text(default), "{key} unchanged");
        }
    }

    #[test]
    fn the_rule_nests_with_double_underscores() {
        assert_eq!(
            env_var_for("kafka.linger_ms"),
            "STREAMCART_KAFKA__LINGER_MS"
        );
        assert_eq!(
            env_var_for("api.jwt.hs256_secret"),
            "STREAMCART_API__JWT__HS256_SECRET"
        );
        assert_eq!(env_var_for("topic_prefix"), "STREAMCART_TOPIC_PREFIX");
    }

    #[test]
    fn every_legacy_name_stands_for_a_key_and_sets_it() {
        let known = keys();
        for (var, key) in LEGACY_ENV {
            assert!(known.contains(*key), "{var} stands for unknown {key}");
            assert_ne!(*var, env_var_for(key), "{var} is the rule's own name");
            let layer = env(&[(var, "1")]);
            assert_eq!(layer.var_of(key), Some(*var));
        }
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_KAFKA_BOOTSTRAP", "k1:9092,k2:9092"),
                ("STREAMCART_LINGER_MS", "5"),
                ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "5"),
                ("STREAMCART_PAYMENTS_DECLINED_CARDS", "tok_a, tok_b"),
                ("STREAMCART_API_LISTEN", "127.0.0.1:9999"),
                ("STREAMCART_JWT_HS256_SECRET", &"s".repeat(32)),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.kafka.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(cfg.kafka.linger_ms, 5);
        assert_eq!(cfg.processor.snapshot_every_events, 5);
        assert_eq!(cfg.payments.declined_card_tokens, ["tok_a", "tok_b"]);
        assert_eq!(cfg.api.listen.port(), 9999);
        assert_eq!(cfg.api.jwt.hs256_secret.as_deref(), Some(&*"s".repeat(32)));
    }

    #[test]
    fn the_rule_wins_over_a_legacy_name() {
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_LINGER_MS", "7"),
                ("STREAMCART_KAFKA__LINGER_MS", "3"),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.kafka.linger_ms, 3);
    }

    #[test]
    fn strings_that_look_like_numbers_stay_strings() {
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_INSTANCE_ID", "1"),
                ("STREAMCART_TOPIC_PREFIX", "42"),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.instance_id, "1");
        assert_eq!(cfg.topic_prefix, "42");
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
    fn empty_variables_and_the_scripts_own_variables_are_left_alone() {
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_PARTITIONS", ""),
                ("STREAMCART_STACK_DIR", "/tmp/stack"),
                ("STREAMCART_POSTGRES_URL", "postgres://x"),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.partitions, Config::default().partitions);
    }

    #[test]
    fn a_nested_variable_for_no_key_is_refused() {
        let err = EnvLayer::from_vars([("STREAMCART_KAFKA__LINGR_MS".to_owned(), "1".to_owned())])
            .expect_err("typo");
        assert_eq!(
            err.to_string(),
            "STREAMCART_KAFKA__LINGR_MS: the configuration has no key kafka.lingr_ms"
        );
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
    fn booleans_come_from_the_environment() {
        assert!(!Config::default().auto_register_schemas);
        assert!(Config::default().processor.forward_misplaced_commands);
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_AUTO_REGISTER_SCHEMAS", "true"),
                ("STREAMCART_FORWARD_MISPLACED_COMMANDS", "false"),
            ]),
        )
        .expect("load");
        assert!(cfg.auto_register_schemas);
        assert!(!cfg.processor.forward_misplaced_commands);
    }

    #[test]
    fn out_of_bounds_values_are_all_reported_by_key() {
        let err = Config::load_from(
            None,
            env(&[
                ("STREAMCART_KAFKA__LINGER_MS", "1001"),
                ("STREAMCART_PARTITIONS", "0"),
                ("STREAMCART_JWT_HS256_SECRET", "short"),
                ("STREAMCART_API_TLS_CERT", "/etc/cert.pem"),
                ("STREAMCART_KEYSPACE", "a-b"),
            ]),
        )
        .expect_err("invalid");
        let ConfigError::Invalid(problems) = &err else {
            panic!("not a validation error: {err}");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "partitions",
                "keyspace",
                "kafka.linger_ms",
                "api.tls_key",
                "api.jwt.hs256_secret"
            ]
        );
        let text = err.to_string();
        assert!(text.contains("kafka.linger_ms: must be ≤ 1000"), "{text}");
        assert!(
            text.contains(&format!(
                "api.jwt.hs256_secret: must be at least {MIN_HS256_SECRET_BYTES} bytes"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_defaults_pass_the_checks() {
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn processor_defaults_are_the_processors_own() {
        let tuning = ProcessorConfig::default().tuning();
        let own = ProcessorTuning::default();
        assert_eq!(tuning.snapshots, own.snapshots);
        assert_eq!(tuning.checkpoint_every_events, own.checkpoint_every_events);
        assert_eq!(tuning.restore_timeout, own.restore_timeout);
        assert_eq!(tuning.forward_misplaced, own.forward_misplaced);
        assert_eq!(tuning.metadata_timeout, own.metadata_timeout);
    }

    #[test]
    fn printing_masks_secrets_and_url_passwords() {
        let secret = "a-very-long-shared-secret-of-40-bytes!!!";
        let mut cfg = Config::default();
        cfg.api.jwt.hs256_secret = Some(secret.into());
        cfg.redis_url = "redis://cache:hunter2@10.0.0.5:6379/0".into();
        cfg.registry_url = "https://reg:pa55@registry.example/apis/ccompat/v7".into();
        let text = cfg.to_masked_toml().expect("toml");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("pa55"), "{text}");
        let printed: toml::Table = toml::from_str(&text).expect("printed TOML parses");
        assert_eq!(printed["api"]["jwt"]["hs256_secret"].as_str(), Some(MASK));
        assert_eq!(
            printed["redis_url"].as_str(),
            Some(&*format!("redis://cache:{MASK}@10.0.0.5:6379/0"))
        );
        assert_eq!(
            printed["registry_url"].as_str(),
            Some(&*format!(
                "https://reg:{MASK}@registry.example/apis/ccompat/v7"
            ))
        );
        // What is not secret is printed as it is.
        assert_eq!(
            printed["kafka"]["bootstrap_servers"].as_str(),
            Some("127.0.0.1:9092")
        );
        assert!(text.contains("# unset: "), "{text}");
        assert!(text.contains("api.tls_cert"), "{text}");
    }

    #[test]
    fn secret_keys_are_known_by_name() {
        for name in [
            "hs256_secret",
            "password",
            "sasl_password",
            "credentials",
            "tls_private_key",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in [
            "declined_card_tokens",
            "tls_key",
            "rs256_public_key_file",
            "redis_url",
        ] {
            assert!(!is_secret_key(name), "{name}");
        }
        assert_eq!(
            mask_url_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            mask_url_password("redis://user@host:1"),
            "redis://user@host:1"
        );
        assert_eq!(mask_url_password("not a url"), "not a url");
    }
}
