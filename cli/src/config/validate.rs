//! The checks on values of the right type: bounds, and what one key requires of another.

use streamcart_api::auth::MIN_HS256_SECRET_BYTES;
use streamcart_projectors::store::cassandra::check_keyspace;

use streamcart_kafka_runtime::admin::TopicClass;

use super::{Config, ConfigError, Invalid};

/// The keys of each topic class's replication settings.
const TOPIC_POLICY_KEYS: [(TopicClass, &str, &str); 6] = [
    (
        TopicClass::Commands,
        "kafka.topics.commands.replication_factor",
        "kafka.topics.commands.min_insync_replicas",
    ),
    (
        TopicClass::Events,
        "kafka.topics.events.replication_factor",
        "kafka.topics.events.min_insync_replicas",
    ),
    (
        TopicClass::Snapshots,
        "kafka.topics.snapshots.replication_factor",
        "kafka.topics.snapshots.min_insync_replicas",
    ),
    (
        TopicClass::Results,
        "kafka.topics.results.replication_factor",
        "kafka.topics.results.min_insync_replicas",
    ),
    (
        TopicClass::Summaries,
        "kafka.topics.summaries.replication_factor",
        "kafka.topics.summaries.min_insync_replicas",
    ),
    (
        TopicClass::DeadLetters,
        "kafka.topics.dead_letters.replication_factor",
        "kafka.topics.dead_letters.min_insync_replicas",
    ),
];

/// The complaints so far.
#[derive(Default)]
struct Checks(Vec<Invalid>);

impl Checks {
    fn require(&mut self, ok: bool, key: &'static str, reason: impl FnOnce() -> String) {
        if !ok {
            self.0.push(Invalid {
                key,
                reason: reason(),
            });
        }
    }

    /// Counts, sizes and timeouts where 0 would mean "never" or "none" and stall the role.
    fn at_least_1(&mut self, keys: &[(bool, &'static str)]) {
        for &(ok, key) in keys {
            self.require(ok, key, || "must be at least 1".into());
        }
    }

    fn url(&mut self, value: &str, key: &'static str, schemes: &[&str]) {
        self.require(
            schemes
                .iter()
                .any(|s| value.starts_with(&format!("{s}://"))),
            key,
            || format!("not a {} URL", schemes.join(":// or ") + "://"),
        );
    }

    fn host_ports(&mut self, value: &str, key: &'static str) {
        self.require(host_ports(value), key, || {
            "not a comma-separated list of host:port".into()
        });
    }
}

impl Config {
    /// Every value out of bounds, each named by its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Checks::default();

        c.url(&self.registry_url, "registry_url", &["http", "https"]);
        c.require(
            !self.instance_id.is_empty() && !self.instance_id.contains(char::is_whitespace),
            "instance_id",
            || "must be non-empty, without spaces (it is part of transactional ids)".into(),
        );
        c.at_least_1(&[(self.partitions >= 1, "partitions")]);
        c.host_ports(&self.cassandra_nodes, "cassandra_nodes");
        if let Err(e) = check_keyspace(&self.keyspace) {
            c.require(false, "keyspace", || e.to_string());
        }
        c.url(
            &self.redis_url,
            "redis_url",
            &["redis", "rediss", "redis+unix", "unix"],
        );

        let k = &self.kafka;
        c.host_ports(&k.bootstrap_servers, "kafka.bootstrap_servers");
        c.at_least_1(&[
            (k.batch_max_records >= 1, "kafka.batch_max_records"),
            (k.stall_after_ms >= 1, "kafka.stall_after_ms"),
            (k.give_up_after_ms >= 1, "kafka.give_up_after_ms"),
        ]);
        // The broker aborts a transaction held open past its timeout, so a batch must close
        // before it.
        c.require(
            k.batch_max_wait_ms >= 1 && k.batch_max_wait_ms < k.transaction_timeout_ms,
            "kafka.batch_max_wait_ms",
            || {
                format!(
                    "must be at least 1 and below kafka.transaction_timeout_ms ({})",
                    k.transaction_timeout_ms
                )
            },
        );
        // 15 minutes is the broker's default transaction.max.timeout.ms: the broker would
        // refuse a longer one only at the first transaction, not at start.
        c.require(
            (1_000..=900_000).contains(&k.transaction_timeout_ms),
            "kafka.transaction_timeout_ms",
            || "must be between 1000 and 900000".into(),
        );
        // librdkafka's own bounds, checked here so the error names the key, not the client.
        c.require(
            (1..=3_600_000).contains(&k.session_timeout_ms),
            "kafka.session_timeout_ms",
            || "must be between 1 and 3600000".into(),
        );
        c.require(
            k.fetch_wait_max_ms <= 300_000,
            "kafka.fetch_wait_max_ms",
            || "must be ≤ 300000".into(),
        );
        // Every commit waits out the linger (see the key), so it adds to every saga hop; past a
        // second it would cost more than a broker blip does.
        c.require(k.linger_ms <= 1_000, "kafka.linger_ms", || {
            "must be ≤ 1000".into()
        });
        // librdkafka's bound of statistics.interval.ms.
        c.require(
            k.statistics_interval_ms <= 86_400_000,
            "kafka.statistics_interval_ms",
            || "must be ≤ 86400000".into(),
        );
        for (class, rf_key, isr_key) in TOPIC_POLICY_KEYS {
            let policy = k.topics.of(class);
            c.require(policy.replication_factor >= 1, rf_key, || {
                "must be at least 1".into()
            });
            // A topic whose min.insync.replicas exceeds its replicas refuses every write.
            c.require(
                policy.min_insync_replicas >= 1
                    && policy.min_insync_replicas <= policy.replication_factor,
                isr_key,
                || {
                    format!(
                        "must be at least 1 and at most {rf_key} ({})",
                        policy.replication_factor
                    )
                },
            );
        }
        let s = &self.store;
        c.require(
            s.replication_factor >= 1,
            "store.replication_factor",
            || "must be at least 1".into(),
        );
        match s.datacenter_factors() {
            Ok(dcs) => {
                let names: Vec<String> = dcs.into_iter().map(|(dc, _)| dc).collect();
                let bad = names.iter().find(|dc| {
                    dc.is_empty()
                        || !dc
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
                });
                c.require(bad.is_none(), "store.datacenters", || {
                    format!(
                        "datacenter {:?}: letters, digits, '_', '-' or '.' only",
                        bad.cloned().unwrap_or_default()
                    )
                });
            }
            Err(reason) => c.require(false, "store.datacenters", || {
                format!("{reason} (expected dc1:3,dc2:3)")
            }),
        }
        c.require(
            s.username.is_some() == s.password.is_some(),
            "store.password",
            || "store.username and store.password go together".into(),
        );
        let reserved = k.reserved_properties();
        c.require(reserved.is_empty(), "kafka.properties", || {
            format!(
                "{} cannot be set here: the runtime's guarantees rest on its own value{}",
                reserved.join(", "),
                " (bootstrap servers, linger, fetch wait, session and transaction timeouts \
                 have their own kafka.* keys)"
            )
        });
        c.require(
            !self.metrics.listen.contains(',') && host_ports(&self.metrics.listen),
            "metrics.listen",
            || "not a host:port (port 0 takes a free one)".into(),
        );
        let t = &self.tracing;
        c.require(
            (0.0..=1.0).contains(&t.sample_ratio),
            "tracing.sample_ratio",
            || "must be between 0.0 and 1.0".into(),
        );
        c.require(
            t.otlp_endpoint.as_deref().is_none_or(|e| {
                e.is_empty() || e.starts_with("http://") || e.starts_with("https://")
            }),
            "tracing.otlp_endpoint",
            || "must be an http:// or https:// URL (the OTLP/HTTP receiver's base)".into(),
        );

        let p = &self.processor;
        c.at_least_1(&[
            (
                p.snapshot_every_events >= 1,
                "processor.snapshot_every_events",
            ),
            (
                p.checkpoint_every_events >= 1,
                "processor.checkpoint_every_events",
            ),
            // Duplicate detection answers from the command ids it keeps.
            (p.recent_commands >= 1, "processor.recent_commands"),
            (p.restore_timeout_ms >= 1, "processor.restore_timeout_ms"),
            (p.metadata_timeout_ms >= 1, "processor.metadata_timeout_ms"),
        ]);

        c.require(
            self.payments.decline_above_minor.is_none_or(|v| v >= 0),
            "payments.decline_above_minor",
            || "must not be negative".into(),
        );
        c.require(
            self.payments
                .declined_card_tokens
                .iter()
                .all(|t| !t.trim().is_empty()),
            "payments.declined_card_tokens",
            || "must not hold an empty token".into(),
        );

        let a = &self.api;
        // Either half alone would start the edge without the TLS its operator asked for.
        let (missing, given) = if a.tls_cert.is_some() {
            ("api.tls_key", "api.tls_cert")
        } else {
            ("api.tls_cert", "api.tls_key")
        };
        c.require(a.tls_cert.is_some() == a.tls_key.is_some(), missing, || {
            format!("must be set when {given} is (TLS needs both)")
        });
        c.require(
            a.jwt
                .hs256_secret
                .as_ref()
                .is_none_or(|s| s.len() >= MIN_HS256_SECRET_BYTES),
            "api.jwt.hs256_secret",
            || format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
        );
        c.at_least_1(&[
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
        ]);

        c.url(
            &self.sink.postgres_url,
            "sink.postgres_url",
            &["postgres", "postgresql"],
        );

        if c.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(c.0))
        }
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
    use crate::config::env::tests::layer as env;

    #[test]
    fn store_replication_and_credentials_are_checked_by_key() {
        let cfg = Config::load_from(
            None,
            env(&[
                ("STREAMCART_STORE__DATACENTERS", "dc1:3, dc2:2"),
                ("STREAMCART_STORE__CONSISTENCY", "local_one"),
            ]),
        )
        .expect("valid");
        let options = cfg.store.options("ks");
        assert_eq!(
            options.replication,
            streamcart_projectors::store::Replication::NetworkTopology {
                datacenters: vec![("dc1".into(), 3), ("dc2".into(), 2)]
            }
        );
        assert_eq!(
            options.consistency,
            streamcart_projectors::store::StoreConsistency::LocalOne
        );
        assert!(options.credentials.is_none());
        let err = Config::load_from(
            None,
            env(&[
                ("STREAMCART_STORE__DATACENTERS", "dc1=3"),
                ("STREAMCART_STORE__USERNAME", "streamcart"),
            ]),
        )
        .expect_err("invalid");
        let ConfigError::Invalid(problems) = &err else {
            panic!("not a validation error: {err}");
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["store.datacenters", "store.password"], "{err}");
    }

    #[test]
    fn reserved_properties_and_impossible_replication_are_refused() {
        let err = Config::load_from(
            None,
            env(&[
                (
                    "STREAMCART_KAFKA__PROPERTIES__ISOLATION_LEVEL",
                    "read_uncommitted",
                ),
                (
                    "STREAMCART_KAFKA__PROPERTIES__SOCKET_KEEPALIVE_ENABLE",
                    "true",
                ),
                ("STREAMCART_KAFKA__TOPICS__EVENTS__MIN_INSYNC_REPLICAS", "2"),
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
                "kafka.topics.events.min_insync_replicas",
                "kafka.properties"
            ]
        );
        assert!(
            problems[1].reason.starts_with("isolation.level cannot"),
            "{err}"
        );
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
    fn addresses_and_urls_are_checked_by_form() {
        assert!(host_ports("k1:9092, k2:9092"));
        assert!(!host_ports("k1"));
        assert!(!host_ports("k1:port"));
        assert!(!host_ports(""));
        let err = Config::load_from(
            None,
            env(&[
                ("STREAMCART_KAFKA_BOOTSTRAP", "broker"),
                ("STREAMCART_REGISTRY_URL", "registry:8081"),
                ("STREAMCART_POSTGRES_URL", "mysql://db"),
            ]),
        )
        .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "registry_url: not a http:// or https:// URL; \
             kafka.bootstrap_servers: not a comma-separated list of host:port; \
             sink.postgres_url: not a postgres:// or postgresql:// URL"
        );
    }
}
