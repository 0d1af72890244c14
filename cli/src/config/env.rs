//! The environment layer: one rule names a variable for every key, and a short table keeps the
//! flat names scripts and tests used before the rule.

use std::collections::{BTreeMap, BTreeSet};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::{Config, ConfigError};

/// Prefix of every variable the configuration reads.
pub const ENV_PREFIX: &str = "STREAMCART_";
/// What stands for the dot between a section and its key in a variable's name.
pub const ENV_SEPARATOR: &str = "__";
/// The key under which librdkafka properties are passed through. Their names are not known in
/// advance, so `STREAMCART_KAFKA__PROPERTIES__SASL_MECHANISMS` sets the property
/// `sasl.mechanisms`: in the part after the prefix a single underscore stands for a dot
/// (librdkafka's property names have dots, no underscores).
pub const PROPERTIES_KEY: &str = "kafka.properties";

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
    ("STREAMCART_POSTGRES_URL", "sink.postgres_url"),
    ("STREAMCART_TABLE_PREFIX", "sink.table_prefix"),
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

/// The defaults as a value tree.
fn defaults_value() -> Value {
    // Serializing plain structs of strings, numbers, options and lists cannot fail.
    Value::serialize(Config::default()).unwrap_or_else(|_| Value::from(Dict::new()))
}

/// The leaves of a value tree by dotted key; an unset option is a leaf too (`Empty`).
pub(super) fn leaves(value: &Value) -> BTreeMap<String, Value> {
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
    /// librdkafka property → (variable it came from, value), for [`PROPERTIES_KEY`].
    properties: BTreeMap<String, (String, String)>,
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
        let mut properties = BTreeMap::new();
        let properties_prefix = format!("{PROPERTIES_KEY}.");
        for (var, value) in vars {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace(ENV_SEPARATOR, ".");
            if let Some(property) = key.strip_prefix(&properties_prefix) {
                properties.insert(property.replace('_', "."), (var, value));
                continue;
            }
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
        Ok(Self {
            values: by_rule,
            properties,
        })
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
            .chain(
                self.properties
                    .iter()
                    .map(|(p, (var, _))| (format!("{PROPERTIES_KEY}.{p}"), var.clone())),
            )
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
        if !self.properties.is_empty() {
            // One entry per property: its dots are part of its name, not nesting.
            let properties: Dict = self
                .properties
                .iter()
                .map(|(p, (_, value))| (p.clone(), Value::from(value.clone())))
                .collect();
            insert(&mut root, PROPERTIES_KEY, Value::from(properties));
        }
        Ok(Profile::Default.collect(root))
    }
}

/// The name of the environment layer in figment's metadata.
pub(super) const ENV_ORIGIN: &str = "environment";

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The layer of these variables.
    pub(crate) fn layer(vars: &[(&str, &str)]) -> EnvLayer {
        EnvLayer::from_vars(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .expect("environment")
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
            Value::Num(_, figment::value::Num::F64(f)) => (f / 2.0).to_string(),
            Value::Num(_, n) => match n.to_u128() {
                Some(n) => (n + 1).to_string(),
                None => (n.to_i128().expect("integer default") + 1).to_string(),
            },
            Value::String(_, s) if s.parse::<std::net::SocketAddr>().is_ok() => {
                "127.0.0.1:1".into()
            }
            // The log format is one of two words.
            Value::String(_, s) if s == "text" => "json".into(),
            Value::String(_, s) if s == "loop" => "inline".into(),
            Value::String(_, s) if s == "local_quorum" => "quorum".into(),
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
            let cfg = Config::layered(None, layer(&[(var.as_str(), value.as_str())]))
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
            let layer = layer(&[(var, "1")]);
            assert_eq!(layer.var_of(key), Some(*var));
        }
        let cfg = Config::load_from(
            None,
            layer(&[
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
            layer(&[
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
            layer(&[
                ("STREAMCART_INSTANCE_ID", "1"),
                ("STREAMCART_TOPIC_PREFIX", "42"),
            ]),
        )
        .expect("load");
        assert_eq!(cfg.instance_id, "1");
        assert_eq!(cfg.topic_prefix, "42");
    }

    #[test]
    fn empty_variables_and_the_scripts_own_variables_are_left_alone() {
        let cfg = Config::load_from(
            None,
            layer(&[
                ("STREAMCART_PARTITIONS", ""),
                ("STREAMCART_STACK_DIR", "/tmp/stack"),
                ("STREAMCART_CONNECT_URL", "http://127.0.0.1:8083"),
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
    fn booleans_come_from_the_environment() {
        assert!(!Config::default().auto_register_schemas);
        assert!(Config::default().processor.forward_misplaced_commands);
        let cfg = Config::load_from(
            None,
            layer(&[
                ("STREAMCART_AUTO_REGISTER_SCHEMAS", "true"),
                ("STREAMCART_FORWARD_MISPLACED_COMMANDS", "false"),
            ]),
        )
        .expect("load");
        assert!(cfg.auto_register_schemas);
        assert!(!cfg.processor.forward_misplaced_commands);
    }

    #[test]
    fn the_documented_earlier_names_are_this_table() {
        let doc = include_str!("../../../docs/configuration.md");
        for (var, key) in LEGACY_ENV {
            let row = format!("| `{var}` | `{key}` |");
            assert!(doc.contains(&row), "docs/configuration.md lacks {row}");
        }
        let rows = doc
            .lines()
            .filter(|l| l.starts_with("| `STREAMCART_"))
            .count();
        assert_eq!(
            rows,
            LEGACY_ENV.len(),
            "docs/configuration.md has other rows"
        );
    }
}
