//! `Idempotency-Key`: one key, one request, one caller, one effect.
//!
//! A key is the command's id, so the command processor answers a repeat as a duplicate. That
//! alone is not enough at the edge:
//!
//! - when the server chooses an id (an order placed without `order_id`), a retry must address
//!   the same aggregate, or the repeat is a new command to a new aggregate and is applied. The id
//!   is therefore derived from the caller and the key ([`order_id_for`]), never drawn at random,
//!   so every edge instance, before or after a restart, chooses the same one;
//! - a key must never fetch someone else's answer, nor the answer to another request. The first
//!   use of a key binds it, in Redis (shared by every edge instance, kept for
//!   [`ApiConfig::idempotency_key_ttl_seconds`]), to the caller and to a fingerprint of the
//!   request (endpoint, addressed aggregate, `If-Match`, body). A later use with another binding
//!   is refused with `idempotency_key_reused` before anything is produced.
//!
//! The binding is written atomically (a Lua script: keep what is there, or store ours), so
//! concurrent first uses on several instances agree on one winner. The first answer the command
//! gets (accepted or rejected) is stored beside the binding, for as long as it lives: a retry on
//! any instance, or after a restart, is answered with it and produces nothing. It also keeps a
//! retry from being applied again once the command id has left the aggregate's duplicate window
//! (a hot stock keeps only its recent command ids). Retries racing the first attempt, before its
//! answer is stored, produce the same command again, which the processor answers as a duplicate.
//!
//! Without Redis the binding cannot be checked, and a keyed command is refused (503) rather than
//! risk answering it with another request's result; commands without a key do not need Redis.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use streamcart_schemas::envelope::{CommandResult, Outcome};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ApiConfig;
use crate::error::ApiError;

/// Namespace of the name-based ids the edge derives from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6c1d_43a8_9f3e_4b7a_a5c1_2f0e_7d94_b318);

/// KEYS[1] the key's binding, KEYS[2] its first answer; ARGV[1] our binding, ARGV[2] TTL in ms.
/// Returns {the binding in force (the one already there, or ours, just stored), the first answer
/// or nil}.
const CLAIM: &str = r"
local held = redis.call('GET', KEYS[1])
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], false}
end
return {held, redis.call('GET', KEYS[2])}
";

/// KEYS[1] the key's binding, KEYS[2] its first answer; ARGV[1] our binding, ARGV[2] the answer.
/// Stores the answer, to expire with the binding, unless one is there or the key is bound to
/// someone else (or no longer bound). Returns 1 when stored.
const RECORD: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl, 'NX') then return 1 end
return 0
";

/// Version tag of the stored bindings: one in any other format is not picked apart field by
/// field, it admits nobody (see [`Binding::admits`]).
const FORMAT: &str = "b1";

/// Why a keyed request cannot go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is bound to another caller; refused (422), never retried by the edge.
    #[error("this Idempotency-Key was already used by another caller; send a fresh key")]
    OtherCaller,
    /// The key is bound to another request of the same caller; refused (422), never retried.
    #[error(
        "this Idempotency-Key was already used for a different request (endpoint, target, \
         If-Match or body); a retry must repeat the request exactly, a new request needs a \
         fresh key"
    )]
    OtherRequest,
    /// Redis did not answer; the caller may retry the same request later (503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::OtherCaller | KeyError::OtherRequest => ApiError::KeyReused(e.to_string()),
            KeyError::Unavailable(reason) => ApiError::Unavailable {
                code: "idempotency_store_unavailable",
                what: "the idempotency-key store",
                reason,
            },
        }
    }
}

/// What a key is bound to: a caller and one request of theirs, both as name-based ids (Redis
/// holds no subject or body in clear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    caller: Uuid,
    request: Uuid,
}

impl Binding {
    /// The binding of `request` (see [`fingerprint`]) sent by `subject`.
    pub fn new(subject: &str, request: Uuid) -> Self {
        Self {
            caller: name_id(&[b"caller", subject.as_bytes()]),
            request,
        }
    }

    fn encode(&self) -> String {
        format!(
            "{FORMAT}:{}:{}",
            self.caller.simple(),
            self.request.simple()
        )
    }

    /// Whether a request with this binding may use a key that holds `held`.
    pub fn admits(&self, held: &str) -> Result<(), KeyError> {
        let mut parts = held.split(':');
        let (Some(FORMAT), Some(caller), Some(request), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            // Unreadable: nobody can be shown to own it, so nobody is answered from it.
            return Err(KeyError::OtherCaller);
        };
        if Uuid::parse_str(caller).ok() != Some(self.caller) {
            return Err(KeyError::OtherCaller);
        }
        if Uuid::parse_str(request).ok() != Some(self.request) {
            return Err(KeyError::OtherRequest);
        }
        Ok(())
    }
}

/// A command's first answer as stored beside its key. Duplicates are not stored: they say less
/// than the answer they repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Stored {
    Accepted {
        aggregate_id: String,
        version: u64,
        event_ids: Vec<Uuid>,
    },
    Rejected {
        aggregate_id: String,
        code: String,
        message: String,
    },
}

impl Stored {
    pub(crate) fn of(result: &CommandResult) -> Option<Self> {
        let aggregate_id = result.aggregate_id.clone();
        match &result.outcome {
            Outcome::Accepted { version, event_ids } => Some(Stored::Accepted {
                aggregate_id,
                version: *version,
                event_ids: event_ids.clone(),
            }),
            Outcome::Rejected { code, message } => Some(Stored::Rejected {
                aggregate_id,
                code: code.clone(),
                message: message.clone(),
            }),
            Outcome::Duplicate { .. } => None,
        }
    }

    pub(crate) fn into_result(self, command_id: Uuid) -> CommandResult {
        let (aggregate_id, outcome) = match self {
            Stored::Accepted {
                aggregate_id,
                version,
                event_ids,
            } => (aggregate_id, Outcome::Accepted { version, event_ids }),
            Stored::Rejected {
                aggregate_id,
                code,
                message,
            } => (aggregate_id, Outcome::Rejected { code, message }),
        };
        CommandResult {
            command_id,
            aggregate_id,
            outcome,
        }
    }
}

/// A name-based id over length-prefixed parts, so no two part lists share a name.
fn name_id(parts: &[&[u8]]) -> Uuid {
    let mut name = Vec::new();
    for part in parts {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    Uuid::new_v5(&NAMESPACE, &name)
}

/// The order id the server chooses for `subject`'s order placed under `key`: the same on every
/// instance and across restarts, distinct for two callers using the same key.
pub fn order_id_for(subject: &str, key: Uuid) -> Uuid {
    name_id(&[b"order", subject.as_bytes(), key.as_bytes()])
}

/// The fingerprint of one request: its endpoint, the aggregate it addresses, its `If-Match`
/// version and its body as parsed (so spacing and member order do not matter, values do).
pub fn fingerprint<B: Serialize>(
    endpoint: &str,
    aggregate_id: &str,
    expected_version: Option<u64>,
    body: &B,
) -> Uuid {
    // Serialising a derived `Serialize` of plain fields cannot fail; an empty body still binds
    // the endpoint and the aggregate.
    let body = serde_json::to_vec(body).unwrap_or_default();
    let version = expected_version.map(u64::to_be_bytes);
    name_id(&[
        b"request",
        endpoint.as_bytes(),
        aggregate_id.as_bytes(),
        version.as_ref().map_or(&[][..], |v| &v[..]),
        &body,
    ])
}

/// The bindings of idempotency keys, in Redis, and the ledger of commands answered 202
/// ([`crate::ledger`]), which shares their connection and lifetime.
#[derive(Debug)]
pub struct IdempotencyKeys {
    connection: RwLock<Option<ConnectionManager>>,
    prefix: String,
    pub(crate) ledger_prefix: String,
    pub(crate) ttl: Duration,
    timeout: Duration,
    claim: Script,
    record: Script,
}

impl IdempotencyKeys {
    /// Key bindings under `topic_prefix` (so deployments and test runs sharing a Redis stay
    /// apart), connecting to `redis_url` in the background until it answers or `shutdown`.
    pub fn start(
        redis_url: String,
        topic_prefix: &str,
        config: &ApiConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let keys = Arc::new(Self {
            connection: RwLock::new(None),
            prefix: format!("{topic_prefix}streamcart:idempotency:"),
            ledger_prefix: format!("{topic_prefix}streamcart:commands:"),
            ttl: Duration::from_secs(config.idempotency_key_ttl_seconds.max(1)),
            timeout: config.idempotency_timeout(),
            claim: Script::new(CLAIM),
            record: Script::new(RECORD),
        });
        tokio::spawn(Arc::clone(&keys).connect(redis_url, shutdown));
        keys
    }

    async fn connect(self: Arc<Self>, url: String, shutdown: CancellationToken) {
        loop {
            let attempt = async {
                let client = redis::Client::open(url.as_str())?;
                ConnectionManager::new(client).await
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(connection)) => {
                    if let Ok(mut slot) = self.connection.write() {
                        *slot = Some(connection);
                    }
                    tracing::info!("idempotency-key store connected");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "idempotency-key store unavailable"),
                Err(_) => tracing::warn!("idempotency-key store connection timed out"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    pub(crate) fn connection(&self) -> Result<ConnectionManager, KeyError> {
        // The manager reconnects by itself once it exists; before that there is nothing to ask.
        self.connection
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| KeyError::Unavailable("not connected to Redis yet".into()))
    }

    /// The Redis keys of `key`'s binding and first answer; the braces put both in one hash slot,
    /// as a script touching both needs on a Redis Cluster.
    fn entries(&self, key: Uuid) -> (String, String) {
        let binding = format!("{}{{{}}}", self.prefix, key.hyphenated());
        let answer = format!("{binding}:answer");
        (binding, answer)
    }

    pub(crate) async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, KeyError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(KeyError::Unavailable(e.to_string())),
            Err(_) => Err(KeyError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// Binds `key` to `binding` unless it is bound already; refuses a key bound otherwise.
    /// Returns the command's first answer when one is stored: the request must not be sent again.
    pub async fn claim(
        &self,
        key: Uuid,
        binding: &Binding,
    ) -> Result<Option<CommandResult>, KeyError> {
        let mut connection = self.connection()?;
        let (entry, answer) = self.entries(key);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let (held, first): (String, Option<String>) = self
            .bounded(async {
                self.claim
                    .key(&entry)
                    .key(&answer)
                    .arg(binding.encode())
                    .arg(ttl_ms)
                    .invoke_async(&mut connection)
                    .await
            })
            .await?;
        binding.admits(&held)?;
        // An unreadable answer is only a lost shortcut: the command goes out again and the
        // processor answers it as a duplicate.
        Ok(first
            .and_then(|json| serde_json::from_str::<Stored>(&json).ok())
            .map(|stored| stored.into_result(key)))
    }

    /// Stores `result` as the first answer of the command sent under `key`, if it is one worth
    /// replaying and none is stored yet. A failure only costs later retries a round trip to the
    /// processor, so it is logged, not returned.
    pub async fn record(&self, key: Uuid, binding: &Binding, result: &CommandResult) {
        let Some(stored) = Stored::of(result) else {
            return;
        };
        let Ok(json) = serde_json::to_string(&stored) else {
            return;
        };
        let stored = async {
            let mut connection = self.connection()?;
            let (entry, answer) = self.entries(key);
            self.bounded(async {
                self.record
                    .key(&entry)
                    .key(&answer)
                    .arg(binding.encode())
                    .arg(&json)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await
        };
        if let Err(e) = stored.await {
            tracing::warn!(error = %e, %key, "the first answer of a keyed command was not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Uuid {
        Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0042)
    }

    #[test]
    fn an_order_id_depends_on_the_caller_and_the_key_alone() {
        assert_eq!(order_id_for("alice", key()), order_id_for("alice", key()));
        assert_ne!(order_id_for("alice", key()), order_id_for("bob", key()));
        assert_ne!(
            order_id_for("alice", key()),
            order_id_for("alice", Uuid::from_u128(7))
        );
        // A subject that ends like a key begins cannot pass for another (subject, key) pair.
        assert_ne!(name_id(&[b"ab", b"c"]), name_id(&[b"a", b"bc"]));
    }

    #[test]
    fn the_same_request_is_admitted_again() {
        let request = fingerprint("place_order", "o-1", None, &serde_json::json!({"a": 1}));
        let ours = Binding::new("alice", request);
        assert_eq!(ours.admits(&ours.encode()), Ok(()));
        assert_eq!(Binding::new("alice", request), ours);
    }

    #[test]
    fn another_caller_is_refused() {
        let request = fingerprint("place_order", "o-1", None, &serde_json::json!({"a": 1}));
        let held = Binding::new("alice", request).encode();
        assert_eq!(
            Binding::new("bob", request).admits(&held),
            Err(KeyError::OtherCaller)
        );
    }

    #[test]
    fn another_body_endpoint_or_aggregate_is_refused() {
        let body = serde_json::json!({"a": 1});
        let held = Binding::new("alice", fingerprint("place_order", "o-1", None, &body)).encode();
        for other in [
            fingerprint("place_order", "o-1", None, &serde_json::json!({"a": 2})),
            fingerprint("cancel_order", "o-1", None, &body),
            fingerprint("place_order", "o-2", None, &body),
            fingerprint("place_order", "o-1", Some(3), &body),
        ] {
            assert_eq!(
                Binding::new("alice", other).admits(&held),
                Err(KeyError::OtherRequest)
            );
        }
    }

    #[test]
    fn an_unreadable_binding_admits_nobody() {
        let ours = Binding::new("alice", fingerprint("x", "y", None, &()));
        for held in [
            "",
            "garbage",
            "b1:zz:zz",
            "b9:a:b",
            &format!("{}:extra", ours.encode()),
        ] {
            assert_eq!(ours.admits(held), Err(KeyError::OtherCaller), "{held}");
        }
    }

    #[test]
    fn first_answers_survive_the_store_and_duplicates_are_not_kept() {
        let id = key();
        for outcome in [
            Outcome::Accepted {
                version: 1,
                event_ids: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
            },
            Outcome::Rejected {
                code: "order.unknown_sku".into(),
                message: "no such sku".into(),
            },
        ] {
            let result = CommandResult {
                command_id: id,
                aggregate_id: "o-1".into(),
                outcome,
            };
            let json = serde_json::to_string(&Stored::of(&result).expect("stored")).expect("json");
            let back: Stored = serde_json::from_str(&json).expect("read back");
            assert_eq!(back.into_result(id), result);
        }
        let duplicate = CommandResult {
            command_id: id,
            aggregate_id: "o-1".into(),
            outcome: Outcome::Duplicate { version: 1 },
        };
        assert_eq!(Stored::of(&duplicate), None);
    }

    #[test]
    fn refusals_are_422_with_one_code_and_outages_503() {
        for e in [KeyError::OtherCaller, KeyError::OtherRequest] {
            let api = ApiError::from(e);
            assert_eq!(api.status().as_u16(), 422);
            assert_eq!(api.code(), "idempotency_key_reused");
        }
        let api = ApiError::from(KeyError::Unavailable("down".into()));
        assert_eq!(api.status().as_u16(), 503);
        assert_eq!(api.code(), "idempotency_store_unavailable");
    }
}
