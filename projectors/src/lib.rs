//! streamcart projectors: the query side, built from events.
//!
//! # Layout
//!
//! - [`model`]: the read-model rows ([`ProductRow`], [`StockRow`], [`OrderRow`]) served from
//!   ScyllaDB, the Redis cache and JSON.
//! - [`project`]: pure projections, `(current row, event envelope) -> Vec<Mutation>`, one per
//!   aggregate ([`project_product`], [`project_stock`], [`project_order`]), plus [`fold`] for a
//!   run of events. No I/O, so every rule is unit-tested on its own.
//! - [`store`]: where mutations land. [`CassandraStore`] applies them to ScyllaDB tables (CQL,
//!   versioned migrations, generations for rebuilds) and reads them back; [`ProductCache`]
//!   keeps the Redis product cache in step with a version check done inside Redis.
//! - [`runner`]: the Kafka loop (consume, project, write, then commit) and rebuilds into a fresh
//!   generation of the tables.
//!
//! Order safety has two layers: projections refuse events at or below the row's version, and
//! every write carries a timestamp derived from the aggregate version, so even mutations that
//! race or arrive out of order can never move a row backwards.
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod model;
pub mod project;
pub mod runner;
pub mod store;

pub use model::{OrderLineRow, OrderRow, OrderStatus, ProductRow, StockRow};
pub use project::{
    Freshness, Mutation, Orders, Products, Projection, Stocks, fold, freshness, project_order,
    project_product, project_stock,
};
pub use store::{
    CacheError, CacheLookup, CacheOptions, CassandraStore, InvalidateOutcome, OrderCursor, Page,
    ProductCache, PutOutcome, Replication, StoreError, StoreOptions,
};
