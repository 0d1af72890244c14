//! The Redis product cache, kept in step with the product events.
//!
//! Each SKU has one hash, `<prefix><sku>`, with fields `v` (the version the entry reflects),
//! `row` (the [`ProductRow`] as JSON) and `missing` (negative cache). Every write goes through
//! a Lua script that compares `v` inside Redis, atomically, so a late or replayed event, or a
//! reader that loaded an older row from ScyllaDB, can never overwrite a newer entry:
//!
//! - [`ProductCache::put_if_newer`] stores a row unless the entry is newer;
//! - [`ProductCache::invalidate_if_not_newer`] drops the row but keeps `v` as a floor, so a
//!   reader that read ScyllaDB just before the write cannot put the older row back;
//! - [`ProductCache::put_missing`] marks a SKU unknown (`v = 0`), unless any version is known.
//!
//! Scripts run with EVALSHA and are loaded on a `NOSCRIPT` answer (after a restart or a flush).
//! Every entry expires, so a lost invalidation heals by itself.

use std::fmt;
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::model::ProductRow;
use crate::projection::Mutation;

/// Compares two decimal versions exactly, without Lua's float numbers.
const NEWER: &str = r"
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
";

/// KEYS[1] entry; ARGV[1] version, ARGV[2] row JSON, ARGV[3] TTL in ms.
/// Returns {0, v} stored, {1, v} same version already cached, {2, v} a newer entry kept.
const PUT_IF_NEWER: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur then
  if newer(cur, ARGV[1]) then return {2, cur} end
  if cur == ARGV[1] and redis.call('HEXISTS', KEYS[1], 'row') == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {1, cur}
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'row', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {0, ARGV[1]}
";

/// KEYS[1] entry; ARGV[1] version, ARGV[2] TTL in ms.
/// Returns {0, v} invalidated (floor set to v), {2, v} a newer entry kept.
const INVALIDATE_IF_NOT_NEWER: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and newer(cur, ARGV[1]) then return {2, cur} end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {0, ARGV[1]}
";

/// KEYS[1] entry; ARGV[1] TTL in ms. Returns 1 when marked missing, 0 when a version is known.
const PUT_MISSING: &str = r"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and cur ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'v', '0', 'missing', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis could not be reached or refused the command; see [`CacheError::is_transient`].
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A row could not be turned into JSON; permanent.
    #[error("cannot encode the row of {sku}: {source}")]
    Encode {
        /// The product.
        sku: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A cached entry is not what this build writes; permanent for that entry (treat as a miss).
    #[error("cannot decode the cache entry {key}: {reason}")]
    Decode {
        /// The Redis key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

impl CacheError {
    /// True when Redis was unreachable, timed out or dropped the connection: retry later,
    /// meanwhile readers fall back to ScyllaDB.
    pub fn is_transient(&self) -> bool {
        match self {
            CacheError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
            }
            CacheError::Encode { .. } | CacheError::Decode { .. } => false,
        }
    }
}

/// Key layout and lifetime of the cache entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// Prepended to the SKU to make the key; tests use a unique one.
    pub prefix: String,
    /// Lifetime of an entry (and of an invalidation floor) after its last write.
    pub ttl: Duration,
}

impl CacheOptions {
    /// The default options with keys under `topic_prefix`, so deployments (and test runs)
    /// sharing one Redis keep apart exactly as their topics do.
    pub fn for_topic_prefix(topic_prefix: &str) -> Self {
        Self {
            prefix: format!("{topic_prefix}{}", Self::default().prefix),
            ..Self::default()
        }
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            prefix: "streamcart:product:".to_owned(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// What [`ProductCache::put_if_newer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The row is now cached.
    Stored,
    /// That version was already cached; only its lifetime was renewed.
    Unchanged,
    /// A newer version is cached (or was invalidated) and was kept.
    Refused {
        /// The version the entry holds.
        current: u64,
    },
}

/// What [`ProductCache::invalidate_if_not_newer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidateOutcome {
    /// The row is gone; rows older than the given version are refused until the entry expires.
    Invalidated,
    /// A newer version is cached and was kept.
    KeptNewer {
        /// The version the entry holds.
        current: u64,
    },
}

/// What the cache knows about a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// The cached row.
    Hit(ProductRow),
    /// Recently looked up and not found in ScyllaDB.
    Missing,
    /// Nothing cached: read ScyllaDB.
    Miss,
}

/// The product cache over a shared, self-reconnecting Redis connection. Cloning is cheap.
#[derive(Clone)]
pub struct ProductCache {
    connection: ConnectionManager,
    options: CacheOptions,
    put: Script,
    invalidate: Script,
    missing: Script,
}

impl fmt::Debug for ProductCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductCache")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ProductCache {
    /// Opens a connection manager on `url` (e.g. `redis://127.0.0.1:6379`).
    pub async fn connect(url: &str, options: CacheOptions) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self::new(connection, options))
    }

    /// A cache over an existing connection manager.
    pub fn new(connection: ConnectionManager, options: CacheOptions) -> Self {
        Self {
            connection,
            options,
            put: Script::new(&format!("{NEWER}{PUT_IF_NEWER}")),
            invalidate: Script::new(&format!("{NEWER}{INVALIDATE_IF_NOT_NEWER}")),
            missing: Script::new(PUT_MISSING),
        }
    }

    /// The options in use.
    pub fn options(&self) -> &CacheOptions {
        &self.options
    }

    /// The Redis key of `sku`.
    pub fn key(&self, sku: &str) -> String {
        format!("{}{sku}", self.options.prefix)
    }

    /// Caches `row` unless the entry already reflects a newer version.
    pub async fn put_if_newer(&self, row: &ProductRow) -> Result<PutOutcome, CacheError> {
        let json = serde_json::to_string(row).map_err(|source| CacheError::Encode {
            sku: row.sku.clone(),
            source,
        })?;
        let key = self.key(&row.sku);
        let (code, current): (i64, String) = self
            .put
            .key(&key)
            .arg(row.version.to_string())
            .arg(json)
            .arg(millis(self.options.ttl))
            .invoke_async(&mut self.connection.clone())
            .await?;
        match code {
            0 => Ok(PutOutcome::Stored),
            1 => Ok(PutOutcome::Unchanged),
            _ => Ok(PutOutcome::Refused {
                current: parse_version(&key, &current)?,
            }),
        }
    }

    /// Drops the cached row of `sku` unless it is newer than `version`, and refuses rows older
    /// than `version` until the entry expires.
    pub async fn invalidate_if_not_newer(
        &self,
        sku: &str,
        version: u64,
    ) -> Result<InvalidateOutcome, CacheError> {
        let key = self.key(sku);
        let (code, current): (i64, String) = self
            .invalidate
            .key(&key)
            .arg(version.to_string())
            .arg(millis(self.options.ttl))
            .invoke_async(&mut self.connection.clone())
            .await?;
        match code {
            0 => Ok(InvalidateOutcome::Invalidated),
            _ => Ok(InvalidateOutcome::KeptNewer {
                current: parse_version(&key, &current)?,
            }),
        }
    }

    /// The cached row of `sku`, if any.
    pub async fn get(&self, sku: &str) -> Result<Option<ProductRow>, CacheError> {
        match self.lookup(sku).await? {
            CacheLookup::Hit(row) => Ok(Some(row)),
            CacheLookup::Missing | CacheLookup::Miss => Ok(None),
        }
    }

    /// Everything the cache knows about `sku`: a row, a negative entry, or nothing.
    pub async fn lookup(&self, sku: &str) -> Result<CacheLookup, CacheError> {
        let key = self.key(sku);
        let (row, missing): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("row")
            .arg("missing")
            .query_async(&mut self.connection.clone())
            .await?;
        match (row, missing) {
            (Some(json), _) => serde_json::from_str(&json)
                .map(CacheLookup::Hit)
                .map_err(|e| CacheError::Decode {
                    key,
                    reason: e.to_string(),
                }),
            (None, Some(_)) => Ok(CacheLookup::Missing),
            (None, None) => Ok(CacheLookup::Miss),
        }
    }

    /// Remembers for `ttl` that `sku` does not exist; refused (returns false) when any version
    /// of it is known, since the product exists then.
    pub async fn put_missing(&self, sku: &str, ttl: Duration) -> Result<bool, CacheError> {
        let marked: i64 = self
            .missing
            .key(self.key(sku))
            .arg(millis(ttl))
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(marked == 1)
    }

    /// True when `sku` was recently found not to exist.
    pub async fn is_missing(&self, sku: &str) -> Result<bool, CacheError> {
        Ok(matches!(self.lookup(sku).await?, CacheLookup::Missing))
    }

    /// Refreshes the entries of every product upsert in `mutations` (other mutations are not
    /// cached). Call it after the same mutations were applied to ScyllaDB, so the cache never
    /// runs ahead of the store it fronts.
    pub async fn apply(&self, mutations: &[Mutation]) -> Result<(), CacheError> {
        for mutation in mutations {
            if let Mutation::UpsertProduct(row) = mutation {
                self.put_if_newer(row).await?;
            }
        }
        Ok(())
    }
}

/// A TTL in whole milliseconds, at least 1 (`PEXPIRE 0` would delete the entry at once).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_version(key: &str, text: &str) -> Result<u64, CacheError> {
    text.parse().map_err(|_| CacheError::Decode {
        key: key.to_owned(),
        reason: format!("version {text:?} is not a number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_whole_positive_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn versions_from_redis_are_checked() {
        assert_eq!(parse_version("k", "42").expect("number"), 42);
        assert!(parse_version("k", "4x").is_err());
    }
}
