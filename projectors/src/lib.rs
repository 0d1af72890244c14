//! streamcart projectors: the query side, built from events.
//!
//! # Layout
//!
//! - [`model`]: the read-model rows ([`ProductRow`], [`StockRow`], [`OrderRow`]) served from
//!   ScyllaDB, the Redis cache and JSON.
//! - [`projection`]: what every projection shares: [`Mutation`], the [`Projection`] trait,
//!   [`fold`] for a run of events.
//! - One folder per read model, each its pure projection, its store statements (writes and
//!   reads of its tables) and its public summary mapping: [`products`] ([`project_product`]),
//!   [`stock`] ([`project_stock`]), [`orders`] ([`project_order`]). Projections do no I/O, so
//!   every rule is unit-tested on its own.
//! - [`store`]: where mutations land. [`CassandraStore`] holds the ScyllaDB session, runs the
//!   versioned migrations, switches generations for rebuilds and applies mutations through each
//!   read model's statements; [`ProductCache`] keeps the Redis product cache in step with a
//!   version check done inside Redis.
//! - [`query`]: the read-model query interface readers go through ([`ReadModelStore`],
//!   [`ProductCacheReads`]), implemented by the ScyllaDB store and the Redis cache.
//! - [`runner`]: a read model on the shared at-least-once Kafka loop (consume, project, write,
//!   then commit) and rebuilds into a fresh generation of the tables.
//! - `testing` (tests, or the `testing` feature): event envelopes for projection tests.
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
pub mod orders;
pub mod products;
pub mod projection;
pub mod query;
pub mod runner;
pub mod stock;
pub mod store;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use model::{OrderLineRow, OrderRow, OrderStatus, ProductRow, StockRow};
pub use orders::{Orders, cancel_reason_code, order_summary, project_order};
pub use products::{Products, product_summary, project_product};
pub use projection::{Mutation, Projection, fold, fold_iter};
pub use query::{ProductCacheReads, ReadModelStore};
pub use stock::{Stocks, project_stock};
pub use store::{
    CacheError, CacheLookup, CacheOptions, CassandraStore, InvalidateOutcome, OrderCursor, Page,
    ProductCache, PutOutcome, Replication, StoreError, StoreOptions,
};
