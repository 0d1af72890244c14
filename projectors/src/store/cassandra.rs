//! Read models in ScyllaDB (Cassandra locally): products by id and by category, stock by sku,
//! orders by id and by customer.
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

use std::fmt;
use std::sync::Arc;

use futures::{TryStreamExt, stream};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, DeserializeValue, SerializeValue};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::migrations::{self, GENERATION, GLOBAL};
use crate::model::{OrderLineRow, OrderRow, OrderStatus, ProductRow, StockRow};
use crate::project::Mutation;

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

/// Where and how to open the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Keyspace holding every table: a letter, then up to 47 letters, digits or '_'.
    pub keyspace: String,
    /// Replication used if the keyspace has to be created.
    pub replication: Replication,
    /// Generation whose tables this store reads and writes (1 or more).
    pub generation: u32,
}

impl StoreOptions {
    /// The keyspace with the defaults: SimpleStrategy factor 1, generation 1.
    pub fn new(keyspace: impl Into<String>) -> Self {
        Self {
            keyspace: keyspace.into(),
            replication: Replication::default(),
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

/// Position in a customer's newest-first order listing: the last order of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCursor {
    /// Placement time of that order (UTC millis).
    pub placed_at: i64,
    /// Its id, which breaks ties between orders placed in the same millisecond.
    pub order_id: String,
}

impl OrderCursor {
    /// The cursor just after `row` in its customer's listing.
    pub fn after(row: &OrderRow) -> Self {
        Self {
            placed_at: row.placed_at,
            order_id: row.order_id.clone(),
        }
    }
}

/// The read models in one keyspace and generation. Cloning is cheap and shares the session.
#[derive(Clone)]
pub struct CassandraStore {
    session: Arc<Session>,
    keyspace: String,
    generation: u32,
    statements: Arc<Statements>,
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
        let session = SessionBuilder::new()
            .known_nodes(
                nodes
                    .split(',')
                    .map(str::trim)
                    .filter(|node| !node.is_empty()),
            )
            .build()
            .await?;
        let keyspace = options.keyspace;
        migrations::bootstrap(&session, &keyspace, &replication).await?;
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
        let statements = Statements::prepare(&session, &keyspace, &suffix).await?;
        Ok(Self {
            session,
            keyspace,
            generation,
            statements: Arc::new(statements),
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
        let s = &self.statements;
        match mutation {
            Mutation::UpsertProduct(row) => {
                let ts = write_timestamp(row.version)?;
                let version = to_i64("version", row.version)?;
                let updated_at = CqlTimestamp(row.updated_at);
                let by_id = (
                    &row.sku,
                    &row.name,
                    &row.category,
                    row.price_minor,
                    &row.currency,
                    row.discontinued,
                    version,
                    updated_at,
                    ts,
                );
                let by_category = (
                    &row.category,
                    &row.sku,
                    &row.name,
                    row.price_minor,
                    &row.currency,
                    row.discontinued,
                    version,
                    updated_at,
                    ts,
                );
                futures::try_join!(
                    self.session.execute_unpaged(&s.upsert_product, by_id),
                    self.session
                        .execute_unpaged(&s.upsert_product_listing, by_category),
                )?;
            }
            Mutation::RemoveFromCategory {
                category,
                sku,
                version,
            } => {
                let ts = write_timestamp(*version)?;
                self.session
                    .execute_unpaged(&s.remove_product_listing, (ts, category, sku))
                    .await?;
            }
            Mutation::UpsertStock(row) => {
                let values = (
                    &row.sku,
                    row.received,
                    row.available,
                    row.reserved,
                    row.sold,
                    to_i64("version", row.version)?,
                    CqlTimestamp(row.updated_at),
                    write_timestamp(row.version)?,
                );
                self.session
                    .execute_unpaged(&s.upsert_stock, values)
                    .await?;
            }
            Mutation::UpsertOrder(row) => {
                let ts = write_timestamp(row.version)?;
                let version = to_i64("version", row.version)?;
                let lines: Vec<OrderLineUdt> = row.lines.iter().map(OrderLineUdt::from).collect();
                let reason = row.reason.as_deref();
                let status = row.status.as_str();
                let by_id = (
                    &row.order_id,
                    &row.customer_id,
                    status,
                    reason,
                    &lines,
                    row.total_minor,
                    &row.currency,
                    CqlTimestamp(row.placed_at),
                    CqlTimestamp(row.updated_at),
                    version,
                    ts,
                );
                let by_customer = (
                    &row.customer_id,
                    CqlTimestamp(row.placed_at),
                    &row.order_id,
                    status,
                    reason,
                    &lines,
                    row.total_minor,
                    &row.currency,
                    CqlTimestamp(row.updated_at),
                    version,
                    ts,
                );
                futures::try_join!(
                    self.session.execute_unpaged(&s.upsert_order, by_id),
                    self.session
                        .execute_unpaged(&s.upsert_customer_order, by_customer),
                )?;
            }
        }
        Ok(())
    }

    /// The product `sku`, if any event created it.
    pub async fn product(&self, sku: &str) -> Result<Option<ProductRow>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_product, (sku,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("products_by_id", e))?;
        result
            .maybe_first_row::<ProductColumns>()
            .map_err(|e| StoreError::decode("products_by_id", e))?
            .map(ProductRow::try_from)
            .transpose()
    }

    /// Products of `category` in sku order, starting after `after_sku`; at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`]) per page. The cursor of the next page is the last sku of this one.
    pub async fn products_by_category(
        &self,
        category: &str,
        after_sku: Option<&str>,
        limit: u32,
    ) -> Result<Page<ProductRow, String>, StoreError> {
        let (limit, fetch) = page_limits(limit);
        let response = match after_sku {
            None => {
                self.session
                    .execute_unpaged(&self.statements.select_listing_first, (category, fetch))
                    .await?
            }
            Some(after) => {
                self.session
                    .execute_unpaged(
                        &self.statements.select_listing_after,
                        (category, after, fetch),
                    )
                    .await?
            }
        };
        let result = response
            .into_rows_result()
            .map_err(|e| StoreError::decode("products_by_category", e))?;
        let mut items = Vec::new();
        for row in result
            .rows::<ProductColumns>()
            .map_err(|e| StoreError::decode("products_by_category", e))?
        {
            let row = row.map_err(|e| StoreError::decode("products_by_category", e))?;
            items.push(ProductRow::try_from(row)?);
        }
        Ok(paged(items, limit, |row| row.sku.clone()))
    }

    /// Stock levels of `sku`, if any stock event happened to it.
    pub async fn stock(&self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_stock, (sku,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("stock_by_sku", e))?;
        result
            .maybe_first_row::<StockColumns>()
            .map_err(|e| StoreError::decode("stock_by_sku", e))?
            .map(StockRow::try_from)
            .transpose()
    }

    /// The order `order_id`, if it was placed.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_order, (order_id,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("orders_by_id", e))?;
        result
            .maybe_first_row::<OrderColumns>()
            .map_err(|e| StoreError::decode("orders_by_id", e))?
            .map(OrderRow::try_from)
            .transpose()
    }

    /// Orders of `customer_id`, newest first, starting after `before`; at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`]) per page.
    pub async fn orders_by_customer(
        &self,
        customer_id: &str,
        before: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Page<OrderRow, OrderCursor>, StoreError> {
        let (limit, fetch) = page_limits(limit);
        let response = match before {
            None => {
                self.session
                    .execute_unpaged(&self.statements.select_customer_first, (customer_id, fetch))
                    .await?
            }
            Some(cursor) => {
                self.session
                    .execute_unpaged(
                        &self.statements.select_customer_before,
                        (
                            customer_id,
                            CqlTimestamp(cursor.placed_at),
                            &cursor.order_id,
                            fetch,
                        ),
                    )
                    .await?
            }
        };
        let result = response
            .into_rows_result()
            .map_err(|e| StoreError::decode("orders_by_customer", e))?;
        let mut items = Vec::new();
        for row in result
            .rows::<CustomerOrderColumns>()
            .map_err(|e| StoreError::decode("orders_by_customer", e))?
        {
            let row = row.map_err(|e| StoreError::decode("orders_by_customer", e))?;
            items.push(OrderRow::try_from(row)?);
        }
        Ok(paged(items, limit, OrderCursor::after))
    }

    /// The generation readers of projection `name` should use; [`DEFAULT_GENERATION`] until
    /// one is activated.
    pub async fn active_generation(&self, name: &str) -> Result<u32, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.statements.select_generation, (name,))
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
            .execute_unpaged(&self.statements.upsert_generation, (name, g))
            .await?;
        tracing::info!(keyspace = %self.keyspace, name, generation, "projection generation activated");
        Ok(())
    }
}

/// The write timestamp of everything a mutation at `version` writes: the version itself (see
/// the module documentation for why).
fn write_timestamp(version: u64) -> Result<i64, StoreError> {
    to_i64("version", version)
}

fn to_i64(field: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

fn to_u64(field: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

fn to_u32(field: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::OutOfRange {
        field,
        value: value.to_string(),
    })
}

/// The page size to return and the row count to fetch: one more, to know if a next page exists.
fn page_limits(limit: u32) -> (usize, i32) {
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let fetch = i32::try_from(limit.saturating_add(1)).unwrap_or(i32::MAX);
    (usize::try_from(limit).unwrap_or(usize::MAX), fetch)
}

fn paged<T, C>(mut items: Vec<T>, limit: usize, cursor: impl Fn(&T) -> C) -> Page<T, C> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(cursor) } else { None };
    Page { items, next }
}

fn check_keyspace(keyspace: &str) -> Result<(), StoreError> {
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

/// Statements of one generation, prepared once per store.
#[derive(Debug)]
struct Statements {
    upsert_product: PreparedStatement,
    upsert_product_listing: PreparedStatement,
    remove_product_listing: PreparedStatement,
    upsert_stock: PreparedStatement,
    upsert_order: PreparedStatement,
    upsert_customer_order: PreparedStatement,
    select_product: PreparedStatement,
    select_listing_first: PreparedStatement,
    select_listing_after: PreparedStatement,
    select_stock: PreparedStatement,
    select_order: PreparedStatement,
    select_customer_first: PreparedStatement,
    select_customer_before: PreparedStatement,
    select_generation: PreparedStatement,
    upsert_generation: PreparedStatement,
}

const PRODUCT_COLUMNS: &str =
    "sku, name, category, price_minor, currency, discontinued, version, updated_at";
const STOCK_COLUMNS: &str = "sku, received, available, reserved, sold, version, updated_at";
const ORDER_COLUMNS: &str = "order_id, customer_id, status, reason, lines, total_minor, currency, placed_at, updated_at, version";
const CUSTOMER_ORDER_COLUMNS: &str = "customer_id, placed_at, order_id, status, reason, lines, total_minor, currency, updated_at, version";

impl Statements {
    async fn prepare(session: &Session, ks: &str, g: &str) -> Result<Self, StoreError> {
        // Every statement is idempotent (writes are versioned, reads are reads), which lets
        // the driver retry them after a timeout.
        let prepare = |cql: String| async move {
            let mut statement = session.prepare(cql).await?;
            statement.set_is_idempotent(true);
            Ok::<_, StoreError>(statement)
        };
        Ok(Self {
            upsert_product: prepare(format!(
                "INSERT INTO {ks}.products_by_id{g} ({PRODUCT_COLUMNS})
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            upsert_product_listing: prepare(format!(
                "INSERT INTO {ks}.products_by_category{g}
                 (category, sku, name, price_minor, currency, discontinued, version, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            remove_product_listing: prepare(format!(
                "DELETE FROM {ks}.products_by_category{g} USING TIMESTAMP ?
                 WHERE category = ? AND sku = ?"
            ))
            .await?,
            upsert_stock: prepare(format!(
                "INSERT INTO {ks}.stock_by_sku{g} ({STOCK_COLUMNS})
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            upsert_order: prepare(format!(
                "INSERT INTO {ks}.orders_by_id{g} ({ORDER_COLUMNS})
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            upsert_customer_order: prepare(format!(
                "INSERT INTO {ks}.orders_by_customer{g} ({CUSTOMER_ORDER_COLUMNS})
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))
            .await?,
            select_product: prepare(format!(
                "SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_id{g} WHERE sku = ?"
            ))
            .await?,
            select_listing_first: prepare(format!(
                "SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_category{g}
                 WHERE category = ? LIMIT ?"
            ))
            .await?,
            select_listing_after: prepare(format!(
                "SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_category{g}
                 WHERE category = ? AND sku > ? LIMIT ?"
            ))
            .await?,
            select_stock: prepare(format!(
                "SELECT {STOCK_COLUMNS} FROM {ks}.stock_by_sku{g} WHERE sku = ?"
            ))
            .await?,
            select_order: prepare(format!(
                "SELECT {ORDER_COLUMNS} FROM {ks}.orders_by_id{g} WHERE order_id = ?"
            ))
            .await?,
            select_customer_first: prepare(format!(
                "SELECT {CUSTOMER_ORDER_COLUMNS} FROM {ks}.orders_by_customer{g}
                 WHERE customer_id = ? LIMIT ?"
            ))
            .await?,
            select_customer_before: prepare(format!(
                "SELECT {CUSTOMER_ORDER_COLUMNS} FROM {ks}.orders_by_customer{g}
                 WHERE customer_id = ? AND (placed_at, order_id) < (?, ?) LIMIT ?"
            ))
            .await?,
            select_generation: prepare(format!(
                "SELECT generation FROM {ks}.projection_generations WHERE name = ?"
            ))
            .await?,
            // Activations are operator actions in real time, so the server clock orders them.
            upsert_generation: prepare(format!(
                "INSERT INTO {ks}.projection_generations (name, generation, activated_at)
                 VALUES (?, ?, toTimestamp(now()))"
            ))
            .await?,
        })
    }
}

/// The `order_line` user-defined type.
#[derive(Debug, Clone, SerializeValue, DeserializeValue)]
struct OrderLineUdt {
    line_no: i64,
    sku: String,
    quantity: i64,
    unit_price_minor: i64,
}

impl From<&OrderLineRow> for OrderLineUdt {
    fn from(line: &OrderLineRow) -> Self {
        Self {
            line_no: i64::from(line.line_no),
            sku: line.sku.clone(),
            quantity: i64::from(line.quantity),
            unit_price_minor: line.unit_price_minor,
        }
    }
}

impl TryFrom<OrderLineUdt> for OrderLineRow {
    type Error = StoreError;
    fn try_from(line: OrderLineUdt) -> Result<Self, StoreError> {
        Ok(Self {
            line_no: to_u32("line_no", line.line_no)?,
            sku: line.sku,
            quantity: to_u32("quantity", line.quantity)?,
            unit_price_minor: line.unit_price_minor,
        })
    }
}

#[derive(Debug, DeserializeRow)]
struct ProductColumns {
    sku: String,
    name: String,
    category: String,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    version: i64,
    updated_at: CqlTimestamp,
}

impl TryFrom<ProductColumns> for ProductRow {
    type Error = StoreError;
    fn try_from(c: ProductColumns) -> Result<Self, StoreError> {
        Ok(Self {
            sku: c.sku,
            name: c.name,
            category: c.category,
            price_minor: c.price_minor,
            currency: c.currency,
            discontinued: c.discontinued,
            version: to_u64("version", c.version)?,
            updated_at: c.updated_at.0,
        })
    }
}

#[derive(Debug, DeserializeRow)]
struct StockColumns {
    sku: String,
    received: i64,
    available: i64,
    reserved: i64,
    sold: i64,
    version: i64,
    updated_at: CqlTimestamp,
}

impl TryFrom<StockColumns> for StockRow {
    type Error = StoreError;
    fn try_from(c: StockColumns) -> Result<Self, StoreError> {
        Ok(Self {
            sku: c.sku,
            received: c.received,
            available: c.available,
            reserved: c.reserved,
            sold: c.sold,
            version: to_u64("version", c.version)?,
            updated_at: c.updated_at.0,
        })
    }
}

#[derive(Debug, DeserializeRow)]
struct OrderColumns {
    order_id: String,
    customer_id: String,
    status: String,
    reason: Option<String>,
    lines: Option<Vec<OrderLineUdt>>,
    total_minor: i64,
    currency: String,
    placed_at: CqlTimestamp,
    updated_at: CqlTimestamp,
    version: i64,
}

/// The same columns in the order `orders_by_customer` lists them.
#[derive(Debug, DeserializeRow)]
struct CustomerOrderColumns {
    customer_id: String,
    placed_at: CqlTimestamp,
    order_id: String,
    status: String,
    reason: Option<String>,
    lines: Option<Vec<OrderLineUdt>>,
    total_minor: i64,
    currency: String,
    updated_at: CqlTimestamp,
    version: i64,
}

impl From<CustomerOrderColumns> for OrderColumns {
    fn from(c: CustomerOrderColumns) -> Self {
        Self {
            order_id: c.order_id,
            customer_id: c.customer_id,
            status: c.status,
            reason: c.reason,
            lines: c.lines,
            total_minor: c.total_minor,
            currency: c.currency,
            placed_at: c.placed_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

impl TryFrom<OrderColumns> for OrderRow {
    type Error = StoreError;
    fn try_from(c: OrderColumns) -> Result<Self, StoreError> {
        let status = c
            .status
            .parse::<OrderStatus>()
            .map_err(|e| StoreError::decode("orders.status", e))?;
        let lines = c
            .lines
            .unwrap_or_default()
            .into_iter()
            .map(OrderLineRow::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            order_id: c.order_id,
            customer_id: c.customer_id,
            status,
            reason: c.reason,
            lines,
            total_minor: c.total_minor,
            currency: c.currency,
            placed_at: c.placed_at.0,
            updated_at: c.updated_at.0,
            version: to_u64("version", c.version)?,
        })
    }
}

impl TryFrom<CustomerOrderColumns> for OrderRow {
    type Error = StoreError;
    fn try_from(c: CustomerOrderColumns) -> Result<Self, StoreError> {
        OrderRow::try_from(OrderColumns::from(c))
    }
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
