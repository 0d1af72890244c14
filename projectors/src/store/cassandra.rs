//! The ScyllaDB store (Cassandra locally): sessions, keyspace and migrations, generations, and
//! applying mutations. Each read model's statements, writes and reads live with it
//! (`products/store.rs`, `stock/store.rs`, `orders/store.rs`).
//!
//! # Order safety: write timestamps are aggregate versions
//!
//! ScyllaDB and Cassandra settle concurrent writes to a cell by write timestamp: the highest
//! wins, whatever order writes arrive in; on a tie a tombstone beats a value. Every row of
//! these tables belongs to exactly one aggregate, whose versions are 1-based, gap-free and
//! increasing, so every write here is made `USING TIMESTAMP <aggregate version>`:
//!
//! - a replayed or redelivered event rewrites the same values at the same timestamp: no change;
//! - an older event applied after a newer one loses, cell by cell, so a row never moves back;
//! - a listing entry removed at version `v` (`DELETE ... USING TIMESTAMP v`) shadows every
//!   upsert up to `v` and yields to a later one (a product that moves back to a category).
//!
//! The event time is not used instead because clocks of different producers skew and two
//! events can share a millisecond; the version is exact. The price of the scheme: nothing else
//! may write these tables with wall-clock timestamps (such a write would win forever), so
//! corrections go through a rebuild into a fresh generation. Tombstones are purged after
//! `gc_grace_seconds`, after which an upsert older than a purged delete could come back; the
//! projections' own guard (events at or below the row's version yield nothing) covers that
//! case, as long as the consumer projects on top of the row it reads here.
//!
//! # Generations
//!
//! Tables carry a generation suffix (`products_by_id_g1`, ...). A rebuild connects to a new
//! generation (its migrations create fresh tables), replays from offset zero, then
//! [`CassandraStore::activate`]s it; readers look up [`CassandraStore::active_generation`] and
//! switch with [`CassandraStore::with_generation`], which shares the session.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::{TryStreamExt, stream};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::migrations::{self, GENERATION, GLOBAL};
use crate::orders::store::OrderStatements;
use crate::products::store::ProductStatements;
use crate::projection::Mutation;
use crate::stock::store::StockStatements;
use crate::{orders, products, stock};

/// The generation readers use until another one is activated.
pub const DEFAULT_GENERATION: u32 = 1;

/// Largest page a listing returns, whatever the caller asks for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Mutations applied at once; they commute (timestamps decide), so order is irrelevant.
const APPLY_CONCURRENCY: usize = 32;

/// How the keyspace is replicated when it is created (an existing keyspace is left as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// One replica set for the whole cluster; the local default with factor 1.
    Simple {
        /// Replicas per row.
        factor: u32,
    },
    /// Replicas per datacenter, for production clusters.
    NetworkTopology {
        /// `(datacenter, replicas)` pairs.
        datacenters: Vec<(String, u32)>,
    },
}

impl Default for Replication {
    fn default() -> Self {
        Replication::Simple { factor: 1 }
    }
}

impl Replication {
    /// Whether the keyspace's `replication` map, as `system_schema.keyspaces` holds it, is
    /// this replication.
    fn matches(&self, found: &BTreeMap<String, String>) -> bool {
        let class = found.get("class").map(String::as_str).unwrap_or_default();
        let factor = |key: &str| found.get(key).and_then(|v| v.parse::<u32>().ok());
        match self {
            Replication::Simple { factor: wanted } => {
                class.ends_with("SimpleStrategy") && factor("replication_factor") == Some(*wanted)
            }
            Replication::NetworkTopology { datacenters } => {
                let listed = found.keys().filter(|k| k.as_str() != "class").count();
                class.ends_with("NetworkTopologyStrategy")
                    && listed == datacenters.len()
                    && datacenters
                        .iter()
                        .all(|(dc, wanted)| factor(dc) == Some(*wanted))
            }
        }
    }

    /// The `replication = {...}` map of `CREATE KEYSPACE`.
    fn to_cql(&self) -> Result<String, StoreError> {
        match self {
            Replication::Simple { factor } => Ok(format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}"
            )),
            Replication::NetworkTopology { datacenters } => {
                let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_owned()];
                for (dc, factor) in datacenters {
                    if dc.is_empty()
                        || !dc
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    {
                        return Err(StoreError::InvalidName {
                            kind: "datacenter",
                            value: dc.clone(),
                            expected: "letters, digits, '_', '-' or '.'",
                        });
                    }
                    parts.push(format!("'{dc}': {factor}"));
                }
                Ok(format!("{{{}}}", parts.join(", ")))
            }
        }
    }
}

/// The consistency level of every read and write of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreConsistency {
    /// One replica anywhere.
    One,
    /// One replica in the local datacenter.
    LocalOne,
    /// A majority of all replicas.
    Quorum,
    /// A majority of the local datacenter's replicas: with writes at the same level, a read
    /// sees every acknowledged write, and one node per datacenter can be down.
    #[default]
    LocalQuorum,
    /// Every replica.
    All,
}

impl StoreConsistency {
    fn driver(self) -> Consistency {
        match self {
            StoreConsistency::One => Consistency::One,
            StoreConsistency::LocalOne => Consistency::LocalOne,
            StoreConsistency::Quorum => Consistency::Quorum,
            StoreConsistency::LocalQuorum => Consistency::LocalQuorum,
            StoreConsistency::All => Consistency::All,
        }
    }
}

/// A user and password for the CQL cluster's `PasswordAuthenticator`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreCredentials {
    /// The role's name.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where and how to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Keyspace holding every table: a letter, then up to 47 letters, digits or '_'.
    pub keyspace: String,
    /// Replication of the keyspace: used to create it, and required of it when it exists.
    pub replication: Replication,
    /// Consistency of every statement.
    pub consistency: StoreConsistency,
    /// Credentials, when the cluster authenticates.
    pub credentials: Option<StoreCredentials>,
    /// Generation whose tables this store reads and writes (1 or more).
    pub generation: u32,
}

impl StoreOptions {
    /// The keyspace with the defaults: SimpleStrategy factor 1, LOCAL_QUORUM, no credentials,
    /// generation 1.
    pub fn new(keyspace: impl Into<String>) -> Self {
        Self {
            keyspace: keyspace.into(),
            replication: Replication::default(),
            consistency: StoreConsistency::default(),
            credentials: None,
            generation: DEFAULT_GENERATION,
        }
    }
}

/// One page of a listing, and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T, C> {
    /// Rows in listing order.
    pub items: Vec<T>,
    /// Cursor to pass for the next page.
    pub next: Option<C>,
}

/// The read models in one keyspace and generation. Cloning is cheap and shares the session.
#[derive(Clone)]
pub struct CassandraStore {
    session: Arc<Session>,
    keyspace: String,
    generation: u32,
    tables: Arc<Tables>,
    applied_at_connect: Vec<String>,
}

impl fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.keyspace)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CassandraStore {
    /// Connects to `nodes` (comma-separated `host:port`), creates the keyspace if needed (SimpleStrategy,
    /// factor 1) and runs pending migrations, for generation 1.
    pub async fn connect(nodes: &str, keyspace: &str) -> Result<Self, StoreError> {
        Self::connect_with(nodes, StoreOptions::new(keyspace)).await
    }

    /// Like [`CassandraStore::connect`], for the tables of `generation`.
    pub async fn connect_generation(
        nodes: &str,
        keyspace: &str,
        generation: u32,
    ) -> Result<Self, StoreError> {
        Self::connect_with(
            nodes,
            StoreOptions {
                generation,
                ..StoreOptions::new(keyspace)
            },
        )
        .await
    }

    /// Connects with explicit options; see [`StoreOptions`].
    pub async fn connect_with(nodes: &str, options: StoreOptions) -> Result<Self, StoreError> {
        check_keyspace(&options.keyspace)?;
        check_generation(options.generation)?;
        let replication = options.replication.to_cql()?;
        let profile = ExecutionProfile::builder()
            .consistency(options.consistency.driver())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(
                nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|node| !node.is_empty()),
            )
            .default_execution_profile_handle(profile.into_handle());
        if let Some(c) = &options.credentials {
            builder = builder.user(&c.username, &c.password);
        }
        let session = builder.build().await?;
        let keyspace = options.keyspace;
        migrations::bootstrap(&session, &keyspace, &replication).await?;
        let found = migrations::keyspace_replication(&session, &keyspace).await?;
        if !options.replication.matches(&found) {
            let found: Vec<String> = found.iter().map(|(k, v)| format!("'{k}': '{v}'")).collect();
            return Err(StoreError::ReplicationDiffers {
                keyspace,
                found: format!("{{{}}}", found.join(", ")),
                wanted: replication,
            });
        }
        let global = migrations::migrate(&session, &keyspace, "global", "", GLOBAL).await?;
        let mut store = Self::open(Arc::new(session), keyspace, options.generation).await?;
        let mut applied: Vec<String> = global.iter().map(|id| format!("global/{id}")).collect();
        applied.append(&mut store.applied_at_connect);
        store.applied_at_connect = applied;
        Ok(store)
    }

    /// A store over the tables of another generation, sharing this one's session; creates those
    /// tables if needed. Readers switch generations this way without reconnecting.
    pub async fn with_generation(&self, generation: u32) -> Result<Self, StoreError> {
        check_generation(generation)?;
        Self::open(Arc::clone(&self.session), self.keyspace.clone(), generation).await
    }

    async fn open(
        session: Arc<Session>,
        keyspace: String,
        generation: u32,
    ) -> Result<Self, StoreError> {
        let scope = migrations::generation_scope(generation);
        let suffix = migrations::generation_suffix(generation);
        let applied = migrations::migrate(&session, &keyspace, &scope, &suffix, GENERATION).await?;
        let tables = Tables::prepare(&session, &keyspace, &suffix).await?;
        Ok(Self {
            session,
            keyspace,
            generation,
            tables: Arc::new(tables),
            applied_at_connect: applied.iter().map(|id| format!("{scope}/{id}")).collect(),
        })
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.keyspace
    }

    /// The generation whose tables this store uses.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Migrations applied while this store was opened, as `scope/id` (`global/1`, `g1/3`);
    /// empty when the schema was already up to date.
    pub fn applied_at_connect(&self) -> &[String] {
        &self.applied_at_connect
    }

    /// The underlying session, for health checks and ad-hoc reads.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Applies mutations, concurrently; each write carries its version as its timestamp, so the
    /// outcome does not depend on order or on repetition. On error some mutations may have been
    /// applied: applying the whole slice again is safe.
    pub async fn apply(&self, mutations: &[Mutation]) -> Result<(), StoreError> {
        stream::iter(mutations.iter().map(Ok))
            .try_for_each_concurrent(APPLY_CONCURRENCY, |m| self.apply_one(m))
            .await
    }

    async fn apply_one(&self, mutation: &Mutation) -> Result<(), StoreError> {
        match mutation {
            Mutation::UpsertProduct(row) => products::store::upsert(self, row).await,
            Mutation::RemoveFromCategory {
                category,
                sku,
                version,
            } => products::store::remove_from_category(self, category, sku, *version).await,
            Mutation::UpsertStock(row) => stock::store::upsert(self, row).await,
            Mutation::UpsertOrder(row) => orders::store::upsert(self, row).await,
        }
    }

    /// The prepared statements of this store's generation.
    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The generation readers of projection `name` should use; [`DEFAULT_GENERATION`] until
    /// one is activated.
    pub async fn active_generation(&self, name: &str) -> Result<u32, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.tables.select_generation, (name,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("projection_generations", e))?;
        let generation = result
            .maybe_first_row::<(Option<i32>,)>()
            .map_err(|e| StoreError::decode("projection_generations", e))?
            .and_then(|(generation,)| generation);
        match generation {
            None => Ok(DEFAULT_GENERATION),
            Some(g) => u32::try_from(g).map_err(|_| StoreError::OutOfRange {
                field: "generation",
                value: g.to_string(),
            }),
        }
    }

    /// Makes `generation` the one readers of projection `name` use. Refused until that
    /// generation's tables exist (a store was opened on it).
    pub async fn activate(&self, name: &str, generation: u32) -> Result<(), StoreError> {
        check_projection_name(name)?;
        check_generation(generation)?;
        let scope = migrations::generation_scope(generation);
        let done = migrations::applied(&self.session, &self.keyspace, &scope).await?;
        if GENERATION.iter().any(|m| !done.contains_key(&m.id)) {
            return Err(StoreError::GenerationNotReady { generation });
        }
        let g = i32::try_from(generation).map_err(|_| StoreError::OutOfRange {
            field: "generation",
            value: generation.to_string(),
        })?;
        self.session
            .execute_unpaged(&self.tables.upsert_generation, (name, g))
            .await?;
        tracing::info!(keyspace = %self.keyspace, name, generation, "projection generation activated");
        Ok(())
    }
}

/// The write timestamp of everything a mutation at `version` writes: the version itself (see
/// the module documentation for why).
pub(crate) fn write_timestamp(version: u64) -> Result<i64, StoreError> {
    to_i64("version", version)
}

pub(crate) fn to_i64(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

pub(crate) fn to_u64(field: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

pub(crate) fn to_u32(field: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

/// The page size to return and the row count to fetch: one more, to know if a next page exists.
pub(crate) fn page_limits(limit: u32) -> (usize, i32) {
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
    (usize::try_from(limit).unwrap_or(usize::MAX), fetch)
}

pub(crate) fn paged<T, C>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> C) -> Page<T, C> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(cursor) } else { None };
    Page { items, next }
}

/// Refuses a keyspace name that is not a plain CQL identifier (it is spliced into statements).
pub fn check_keyspace(keyspace: &str) -> Result<(), StoreError> {
    let mut chars = keyspace.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok && keyspace.len() <= 48 {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind: "keyspace",
            value: keyspace.to_owned(),
            expected: "a letter, then up to 47 letters, digits or '_'",
        })
    }
}

fn check_generation(generation: u32) -> Result<(), StoreError> {
    if generation >= 1 && i32::try_from(generation).is_ok() {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind: "generation",
            value: generation.to_string(),
            expected: "a number from 1 to 2^31 - 1",
        })
    }
}

fn check_projection_name(name: &str) -> Result<(), StoreError> {
    if !name.is_empty() && name.len() <= 64 {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            kind: "projection name",
            value: name.to_owned(),
            expected: "1 to 64 bytes",
        })
    }
}

/// Statements of one generation, prepared once per store: each read model's own, and the
/// generation switch shared by all.
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) products: ProductStatements,
    pub(crate) stock: StockStatements,
    pub(crate) orders: OrderStatements,
    select_generation: PreparedStatement,
    upsert_generation: PreparedStatement,
}

impl Tables {
    async fn prepare(session: &Session, ks: &str, g: &str) -> Result<Self, StoreError> {
        Ok(Self {
            products: ProductStatements::prepare(session, ks, g).await?,
            stock: StockStatements::prepare(session, ks, g).await?,
            orders: OrderStatements::prepare(session, ks, g).await?,
            select_generation: prepare(
                session,
                format!("SELECT generation FROM {ks}.projection_generations WHERE name = ?"),
            )
            .await?,
            // Activations are operator actions in real time, so the server clock orders them.
            upsert_generation: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.projection_generations (name, generation, activated_at)
                     VALUES (?, ?, toTimestamp(now()))"
                ),
            )
            .await?,
        })
    }
}

/// Prepares `cql`, marked idempotent: every statement of the store is (writes are versioned,
/// reads are reads), which lets the driver retry them after a timeout.
pub(crate) async fn prepare(
    session: &Session,
    cql: String,
) -> Result<PreparedStatement, StoreError> {
    let mut statement = session.prepare(cql).await?;
    statement.set_is_idempotent(true);
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_names_are_plain_identifiers() {
        assert!(check_keyspace("streamcart_read").is_ok());
        assert!(check_keyspace("a").is_ok());
        for bad in ["", "1ks", "ks-x", "ks;drop", "ks.x", &"k".repeat(49)] {
            assert!(check_keyspace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generations_start_at_one() {
        assert!(check_generation(0).is_err());
        assert!(check_generation(1).is_ok());
        assert!(check_generation(u32::MAX).is_err());
    }

    #[test]
    fn replication_maps_to_cql() {
        assert_eq!(
            Replication::default().to_cql().expect("cql"),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let nts = Replication::NetworkTopology {
            datacenters: vec![("dc1".into(), 3), ("dc2".into(), 2)],
        };
        assert_eq!(
            nts.to_cql().expect("cql"),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        let bad = Replication::NetworkTopology {
            datacenters: vec![("dc'1".into(), 3)],
        };
        assert!(bad.to_cql().is_err());
    }

    #[test]
    fn an_existing_keyspace_is_compared_with_the_configured_replication() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let simple = map(&[
            ("class", "org.apache.cassandra.locator.SimpleStrategy"),
            ("replication_factor", "1"),
        ]);
        assert!(Replication::default().matches(&simple));
        assert!(!Replication::Simple { factor: 3 }.matches(&simple));
        let nts = Replication::NetworkTopology {
            datacenters: vec![("dc1".into(), 3), ("dc2".into(), 3)],
        };
        assert!(!nts.matches(&simple));
        let found = map(&[
            (
                "class",
                "org.apache.cassandra.locator.NetworkTopologyStrategy",
            ),
            ("dc1", "3"),
            ("dc2", "3"),
        ]);
        assert!(nts.matches(&found));
        let one_dc = map(&[("class", "NetworkTopologyStrategy"), ("dc1", "3")]);
        assert!(!nts.matches(&one_dc), "a datacenter missing");
        let extra = Replication::NetworkTopology {
            datacenters: vec![("dc1".into(), 3)],
        };
        assert!(!extra.matches(&found), "a datacenter more than configured");
    }

    #[test]
    fn pages_fetch_one_more_row_and_cut_it() {
        assert_eq!(page_limits(0), (1, 2));
        assert_eq!(page_limits(10), (10, 11));
        assert_eq!(page_limits(u32::MAX), (1000, 1001));
        let page = paged(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, Some(2));
        let last = paged(vec![1, 2], 2, |n| *n);
        assert_eq!(last.next, None);
    }

    #[test]
    fn write_timestamps_are_versions() {
        assert_eq!(write_timestamp(7).expect("ts"), 7);
        assert!(write_timestamp(u64::MAX).is_err());
    }
}
