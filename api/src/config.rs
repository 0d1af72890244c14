//! The edge's settings, one section (`[api]`) of the binary's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything `streamcart serve` needs beyond the connections it shares with the other roles.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key` it turns TLS on.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How bearer tokens are verified.
    pub jwt: JwtConfig,
    /// Longest a read waits for the version a caller asked for (read-your-writes).
    pub read_your_writes_timeout_ms: u64,
    /// Longest a command waits for its result before the gateway answers 202.
    pub command_timeout_ms: u64,
    /// Longest a command waits for Kafka to take it before the gateway answers 503.
    pub produce_timeout_ms: u64,
    /// How long an unknown product id is remembered as unknown.
    pub negative_cache_ttl_ms: u64,
    /// Bound on one Redis call; past it the read goes to ScyllaDB.
    pub cache_timeout_ms: u64,
    /// Bound on one ScyllaDB call; past it the read answers 503.
    pub store_timeout_ms: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Command results kept for polling (`GET /v1/commands/{id}`).
    pub remembered_results: usize,
    /// How long a command's deadline lies ahead when an order does not say.
    pub default_order_deadline_seconds: u32,
    /// How long an `Idempotency-Key` stays bound to its caller and request.
    pub idempotency_key_ttl_seconds: u64,
    /// Bound on binding an `Idempotency-Key` in Redis; past it the command answers 503.
    pub idempotency_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            jwt: JwtConfig::default(),
            read_your_writes_timeout_ms: 3_000,
            command_timeout_ms: 5_000,
            produce_timeout_ms: 3_000,
            negative_cache_ttl_ms: 5_000,
            cache_timeout_ms: 250,
            store_timeout_ms: 2_000,
            max_body_bytes: 64 * 1024,
            remembered_results: 100_000,
            default_order_deadline_seconds: 900,
            idempotency_key_ttl_seconds: 24 * 3600,
            idempotency_timeout_ms: 1_000,
        }
    }
}

impl ApiConfig {
    /// See [`ApiConfig::read_your_writes_timeout_ms`].
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }
    /// See [`ApiConfig::command_timeout_ms`].
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
    /// See [`ApiConfig::produce_timeout_ms`].
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }
    /// See [`ApiConfig::negative_cache_ttl_ms`].
    pub fn negative_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.negative_cache_ttl_ms)
    }
    /// See [`ApiConfig::cache_timeout_ms`].
    pub fn cache_timeout(&self) -> Duration {
        Duration::from_millis(self.cache_timeout_ms)
    }
    /// See [`ApiConfig::idempotency_timeout_ms`].
    pub fn idempotency_timeout(&self) -> Duration {
        Duration::from_millis(self.idempotency_timeout_ms)
    }
    /// See [`ApiConfig::store_timeout_ms`].
    pub fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.store_timeout_ms)
    }
}

/// Bearer token verification: an HS256 secret, an RS256 public key, or both (a token is checked
/// against the key of the algorithm its header names, and no other).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Shared secret for HS256 tokens.
    pub hs256_secret: Option<String>,
    /// PEM file holding the RSA public key for RS256 tokens.
    pub rs256_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}
