//! The read-model query interface: what a reader of the read models (the HTTP edge) may ask of
//! them, without naming the stores that answer.
//!
//! [`ReadModelStore`] is the tables of every read model at one generation, [`ProductCacheReads`]
//! the product cache in front of them. [`CassandraStore`] and [`ProductCache`] implement them;
//! a reader is generic over both, so the cached-product path, the one that must be fast, is
//! dispatched statically and costs no boxed future.

use std::future::Future;
use std::time::Duration;

use crate::model::{OrderRow, ProductRow, StockRow};
use crate::orders::OrderCursor;
use crate::store::{
    CacheError, CacheLookup, CassandraStore, Page, ProductCache, PutOutcome, StoreError,
};

/// Reads of the read-model tables at one generation, and the switch to another generation; a
/// cheap handle, cloned by every reader that keeps one.
pub trait ReadModelStore: Clone + Send + Sync + 'static {
    /// The generation whose tables this reads.
    fn generation(&self) -> u32;

    /// The generation readers of projection `name` should use.
    fn active_generation(&self, name: &str)
    -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// The same store reading the tables of `generation`.
    fn with_generation(
        &self,
        generation: u32,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send;

    /// The product `sku`, if any event created it.
    fn product(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Option<ProductRow>, StoreError>> + Send;

    /// One page of the products of `category` in sku order, after `after_sku`.
    fn products_by_category(
        &self,
        category: &str,
        after_sku: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<ProductRow, String>, StoreError>> + Send;

    /// The stock levels of `sku`, if any stock event named it.
    fn stock(&self, sku: &str)
    -> impl Future<Output = Result<Option<StockRow>, StoreError>> + Send;

    /// The order `order_id`, if it was placed.
    fn order(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderRow>, StoreError>> + Send;

    /// One page of a customer's orders, newest first, after `before`.
    fn orders_by_customer(
        &self,
        customer_id: &str,
        before: Option<&OrderCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<OrderRow, OrderCursor>, StoreError>> + Send;
}

/// Reads of the product cache, and the fills a reader makes after loading from the store.
pub trait ProductCacheReads: Send + Sync + 'static {
    /// Everything the cache knows about `sku`: a row, a negative entry, or nothing.
    fn lookup(&self, sku: &str) -> impl Future<Output = Result<CacheLookup, CacheError>> + Send;

    /// Caches `row` unless the entry already reflects a newer version.
    fn put_if_newer(
        &self,
        row: &ProductRow,
    ) -> impl Future<Output = Result<PutOutcome, CacheError>> + Send;

    /// Remembers for `ttl` that `sku` does not exist, unless some version of it is known.
    fn put_missing(
        &self,
        sku: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;
}

impl ReadModelStore for CassandraStore {
    fn generation(&self) -> u32 {
        CassandraStore::generation(self)
    }

    fn active_generation(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send {
        CassandraStore::active_generation(self, name)
    }

    fn with_generation(
        &self,
        generation: u32,
    ) -> impl Future<Output = Result<Self, StoreError>> + Send {
        CassandraStore::with_generation(self, generation)
    }

    fn product(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Option<ProductRow>, StoreError>> + Send {
        CassandraStore::product(self, sku)
    }

    fn products_by_category(
        &self,
        category: &str,
        after_sku: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<ProductRow, String>, StoreError>> + Send {
        CassandraStore::products_by_category(self, category, after_sku, limit)
    }

    fn stock(
        &self,
        sku: &str,
    ) -> impl Future<Output = Result<Option<StockRow>, StoreError>> + Send {
        CassandraStore::stock(self, sku)
    }

    fn order(
        &self,
        order_id: &str,
    ) -> impl Future<Output = Result<Option<OrderRow>, StoreError>> + Send {
        CassandraStore::order(self, order_id)
    }

    fn orders_by_customer(
        &self,
        customer_id: &str,
        before: Option<&OrderCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<OrderRow, OrderCursor>, StoreError>> + Send {
        CassandraStore::orders_by_customer(self, customer_id, before, limit)
    }
}

impl ProductCacheReads for ProductCache {
    fn lookup(&self, sku: &str) -> impl Future<Output = Result<CacheLookup, CacheError>> + Send {
        ProductCache::lookup(self, sku)
    }

    fn put_if_newer(
        &self,
        row: &ProductRow,
    ) -> impl Future<Output = Result<PutOutcome, CacheError>> + Send {
        ProductCache::put_if_newer(self, row)
    }

    fn put_missing(
        &self,
        sku: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send {
        ProductCache::put_missing(self, sku, ttl)
    }
}
