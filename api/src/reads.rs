//! The query side: read models in ScyllaDB fronted, for products, by the Redis cache.
//!
//! Products are read Redis first; a miss loads ScyllaDB once per key however many callers miss
//! at the same time (single-flight), fills the cache (version-checked, so a slow load never
//! overwrites a newer row the projector wrote meanwhile) and remembers unknown ids for a short
//! time. Redis failing only costs speed: reads go to ScyllaDB, and Redis is left alone for a
//! moment so a dead cache does not add its timeout to every request. ScyllaDB failing leaves
//! cached products readable and answers everything else 503.
//!
//! Readers follow the generation each projection's readers are switched to (`projector
//! rebuild`), re-checked every few seconds.
//!
//! Everything here goes through the read-model query interface of `streamcart-projectors`
//! ([`ReadModelStore`], [`ProductCacheReads`]); which stores answer is chosen where the edge is
//! put together ([`crate::state::EdgeReads`]).

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use streamcart_projectors::{
    CacheError, CacheLookup, OrderCursor, OrderRow, Orders, Page, ProductCacheReads, ProductRow,
    Products, Projection, ReadModelStore, StockRow, Stocks, StoreError,
};
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::metrics::{Metrics, bump};
use crate::single_flight::SingleFlight;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use streamcart_kafka_runtime::telemetry::WorkSpan;

/// How long Redis is left alone after a failed call.
const CACHE_BACKOFF: Duration = Duration::from_secs(1);
/// How often a read-your-writes wait re-reads the store.
const VERSION_POLL: Duration = Duration::from_millis(20);
/// How long one attempt to connect the read-model store may take before it is tried again.
const STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the active generations are re-checked.
const GENERATION_REFRESH: Duration = Duration::from_secs(5);

/// A ScyllaDB read that failed; cloneable so one collapsed load can answer every waiter.
#[derive(Debug, Clone)]
struct StoreFailure {
    transient: bool,
    reason: String,
}

impl From<StoreFailure> for ApiError {
    fn from(f: StoreFailure) -> Self {
        if f.transient {
            ApiError::Unavailable {
                code: "read_model_unavailable",
                what: "the read-model store",
                reason: f.reason,
            }
        } else {
            ApiError::Internal(f.reason)
        }
    }
}

type ProductLoad = Result<Option<ProductRow>, StoreFailure>;

/// The stores of the three read models, each at its projection's active generation, and the
/// store they were opened from.
#[derive(Debug)]
struct Generations<S> {
    base: S,
    products: RwLock<Arc<S>>,
    stock: RwLock<Arc<S>>,
    orders: RwLock<Arc<S>>,
}

/// Which read model a call reads.
#[derive(Debug, Clone, Copy)]
enum Table {
    Products,
    Stock,
    Orders,
}

impl<S> Generations<S> {
    fn slot(&self, table: Table) -> &RwLock<Arc<S>> {
        match table {
            Table::Products => &self.products,
            Table::Stock => &self.stock,
            Table::Orders => &self.orders,
        }
    }
}

/// Everything a query handler reads: the read-model tables `S`, fronted for products by the
/// cache `C`. Both may connect after the edge starts serving: until the tables do, cached
/// products are still answered and every other read is a 503.
#[derive(Debug)]
pub struct ReadModels<S, C> {
    stores: RwLock<Option<Arc<Generations<S>>>>,
    // Behind an Arc because every read takes a handle, and cloning the cache itself may be
    // costly (the Redis one copies its scripts).
    cache: RwLock<Option<Arc<C>>>,
    cache_resting_until: Mutex<Option<Instant>>,
    flights: Arc<SingleFlight<String, ProductLoad>>,
    store_timeout: Duration,
    cache_timeout: Duration,
    negative_ttl: Duration,
    version_wait: Duration,
    metrics: Arc<Metrics>,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    match lock.read() {
        Ok(v) => v.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut v) => *v = value,
        Err(poisoned) => *poisoned.into_inner() = value,
    }
}

impl<S: ReadModelStore, C: ProductCacheReads> ReadModels<S, C> {
    /// Read models over `store` (any generation: readers switch to the active ones) and, once
    /// `connect_cache` succeeds, the product cache; it is (re)tried in the background until then.
    pub async fn open<F, Fut>(
        store: S,
        connect_cache: F,
        config: &ApiConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StoreError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<C, CacheError>> + Send + 'static,
    {
        let models = Self::unconnected(config, metrics);
        models.install(store, shutdown.clone()).await?;
        tokio::spawn(Arc::clone(&models).connect_cache(connect_cache, shutdown));
        Ok(models)
    }

    /// Read models that answer at once, connecting the tables with `connect_store` and the cache
    /// with `connect_cache` in the background, each retried while it fails transiently. The
    /// returned future ends when the tables are connected (or at `shutdown`), or with the first
    /// error that retrying cannot mend; the caller decides what that error stops.
    pub fn open_connecting<G, GFut, F, Fut>(
        connect_store: G,
        connect_cache: F,
        config: &ApiConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (
        Arc<Self>,
        impl Future<Output = Result<(), StoreError>> + Send + 'static,
    )
    where
        G: Fn() -> GFut + Send + Sync + 'static,
        GFut: Future<Output = Result<S, StoreError>> + Send + 'static,
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<C, CacheError>> + Send + 'static,
    {
        let models = Self::unconnected(config, metrics);
        tokio::spawn(Arc::clone(&models).connect_cache(connect_cache, shutdown.clone()));
        let connecting = Arc::clone(&models).connect_store(connect_store, shutdown);
        (models, connecting)
    }

    fn unconnected(config: &ApiConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            stores: RwLock::new(None),
            cache: RwLock::new(None),
            cache_resting_until: Mutex::new(None),
            flights: Arc::new(SingleFlight::default()),
            store_timeout: config.store_timeout(),
            cache_timeout: config.cache_timeout(),
            negative_ttl: config.negative_cache_ttl(),
            version_wait: config.read_your_writes_timeout(),
            metrics,
        })
    }

    /// Opens each projection's active generation over `store` and starts following switches.
    async fn install(
        self: &Arc<Self>,
        store: S,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError> {
        let at = |name: &'static str| {
            let store = store.clone();
            async move {
                let generation = store.active_generation(name).await?;
                Ok::<_, StoreError>(RwLock::new(Arc::new(
                    store.with_generation(generation).await?,
                )))
            }
        };
        let generations = Generations {
            products: at(Products::NAME).await?,
            stock: at(Stocks::NAME).await?,
            orders: at(Orders::NAME).await?,
            base: store,
        };
        let generations = Arc::new(generations);
        write(&self.stores, Some(Arc::clone(&generations)));
        tokio::spawn(follow_generations(
            generations,
            self.store_timeout,
            shutdown,
        ));
        Ok(())
    }

    async fn connect_store<G, GFut>(
        self: Arc<Self>,
        connect: G,
        shutdown: CancellationToken,
    ) -> Result<(), StoreError>
    where
        G: Fn() -> GFut,
        GFut: Future<Output = Result<S, StoreError>>,
    {
        let mut backoff = Duration::from_millis(250);
        loop {
            let attempt = async {
                let store = connect().await?;
                self.install(store, shutdown.clone()).await
            };
            let attempt = tokio::time::timeout(STORE_CONNECT_TIMEOUT, attempt);
            let failure = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                result = attempt => match result {
                    Ok(Ok(())) => {
                        tracing::info!("read-model store connected");
                        return Ok(());
                    }
                    Ok(Err(e)) if e.is_transient() => e.to_string(),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => format!("no answer within {} s", STORE_CONNECT_TIMEOUT.as_secs()),
                },
            };
            tracing::warn!(error = %failure, "read-model store unavailable; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn connect_cache<F, Fut>(self: Arc<Self>, connect: F, shutdown: CancellationToken)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<C, CacheError>>,
    {
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), connect());
            match attempt.await {
                Ok(Ok(cache)) => {
                    write(&self.cache, Some(Arc::new(cache)));
                    tracing::info!("product cache connected");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "Redis unavailable; retrying"),
                Err(_) => tracing::warn!("Redis connection timed out; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// True when the product cache is connected and not resting after a failure.
    fn usable_cache(&self) -> Option<Arc<C>> {
        let resting = self
            .cache_resting_until
            .lock()
            .ok()
            .and_then(|until| *until)
            .is_some_and(|until| Instant::now() < until);
        if resting { None } else { read(&self.cache) }
    }

    fn cache_failed(&self, what: &str, reason: String) {
        bump(&self.metrics.cache_failures);
        tracing::warn!(what, %reason, "Redis call failed; reading ScyllaDB for a moment");
        if let Ok(mut until) = self.cache_resting_until.lock() {
            *until = Some(Instant::now() + CACHE_BACKOFF);
        }
    }

    async fn cached<T, F>(&self, what: &str, call: F) -> Option<T>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        match tokio::time::timeout(self.cache_timeout, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.cache_failed(what, e.to_string());
                None
            }
            Err(_) => {
                self.cache_failed(what, "timed out".into());
                None
            }
        }
    }

    /// The tables of `table` at their active generation, or why there are none yet.
    fn tables(&self, table: Table) -> Result<Arc<S>, StoreFailure> {
        match read(&self.stores) {
            Some(generations) => Ok(read(generations.slot(table))),
            None => {
                bump(&self.metrics.store_failures);
                Err(StoreFailure {
                    transient: true,
                    reason: "not connected yet".into(),
                })
            }
        }
    }

    async fn stored<T, F>(&self, call: F) -> Result<T, StoreFailure>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let failure = match tokio::time::timeout(self.store_timeout, call).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => StoreFailure {
                transient: e.is_transient() || matches!(e, StoreError::Execute(_)),
                reason: e.to_string(),
            },
            Err(_) => StoreFailure {
                transient: true,
                reason: format!("no answer within {} ms", self.store_timeout.as_millis()),
            },
        };
        bump(&self.metrics.store_failures);
        tracing::warn!(reason = %failure.reason, "read-model store call failed");
        Err(failure)
    }

    /// The product `sku`; with `min_version`, waits (bounded) until the read model holds it.
    pub async fn product(
        self: &Arc<Self>,
        sku: &str,
        min_version: Option<u64>,
    ) -> Result<Option<ProductRow>, ApiError> {
        if let Some(cache) = self.usable_cache() {
            match self.cached("lookup", cache.lookup(sku)).await {
                Some(CacheLookup::Hit(row)) if min_version.is_none_or(|v| row.version >= v) => {
                    self.metrics.product_read(&self.metrics.product_cache_hits);
                    return Ok(Some(row));
                }
                Some(CacheLookup::Missing) if min_version.is_none() => {
                    self.metrics
                        .product_read(&self.metrics.product_negative_hits);
                    return Ok(None);
                }
                Some(_) => self
                    .metrics
                    .product_read(&self.metrics.product_cache_misses),
                None => {}
            }
        }
        // Boxed so the cached path above, the one that must be fast, does not move a future
        // sized for the ScyllaDB load and the version wait on every request.
        Box::pin(self.product_from_store(sku, min_version)).await
    }

    async fn product_from_store(
        self: &Arc<Self>,
        sku: &str,
        min_version: Option<u64>,
    ) -> Result<Option<ProductRow>, ApiError> {
        at_version(
            min_version,
            self.version_wait,
            |r: &ProductRow| r.version,
            || self.load_product(sku),
        )
        .await
    }

    /// One collapsed ScyllaDB load of `sku`, filling the cache with what it finds.
    async fn load_product(self: &Arc<Self>, sku: &str) -> Result<Option<ProductRow>, ApiError> {
        let this = Arc::clone(self);
        let owned = sku.to_owned();
        let span = WorkSpan::start(
            "cache refreshed",
            SpanKind::Internal,
            &opentelemetry::Context::current(),
            vec![KeyValue::new("streamcart.sku", sku.to_owned())],
        );
        let load = async move {
            bump(&this.metrics.product_store_loads);
            let store = this.tables(Table::Products)?;
            let found = this.stored(store.product(&owned)).await;
            if let Err(e) = &found {
                span.fail(&e.reason);
            }
            let found = found?;
            span.set(KeyValue::new("streamcart.found", found.is_some()));
            if let Some(cache) = this.usable_cache() {
                match &found {
                    Some(row) => {
                        this.cached("fill", cache.put_if_newer(row)).await;
                    }
                    None => {
                        this.cached(
                            "negative fill",
                            cache.put_missing(&owned, this.negative_ttl),
                        )
                        .await;
                    }
                }
            }
            Ok(found)
        };
        match self.flights.run(sku.to_owned(), load).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => Err(ApiError::Internal(format!("product load: {e}"))),
        }
    }

    /// One page of the products of `category`, in sku order, after `after_sku`.
    pub async fn products_by_category(
        &self,
        category: &str,
        after_sku: Option<&str>,
        limit: u32,
    ) -> Result<Page<ProductRow, String>, ApiError> {
        let store = self.tables(Table::Products)?;
        Ok(self
            .stored(store.products_by_category(category, after_sku, limit))
            .await?)
    }

    /// Stock levels of `sku`; with `min_version`, waits (bounded) until the read model holds it.
    pub async fn stock(
        &self,
        sku: &str,
        min_version: Option<u64>,
    ) -> Result<Option<StockRow>, ApiError> {
        at_version(
            min_version,
            self.version_wait,
            |r: &StockRow| r.version,
            || async {
                let store = self.tables(Table::Stock)?;
                self.stored(store.stock(sku)).await.map_err(ApiError::from)
            },
        )
        .await
    }

    /// The order `order_id`; with `min_version`, waits (bounded) until the read model holds it.
    pub async fn order(
        &self,
        order_id: &str,
        min_version: Option<u64>,
    ) -> Result<Option<OrderRow>, ApiError> {
        at_version(
            min_version,
            self.version_wait,
            |r: &OrderRow| r.version,
            || async {
                let store = self.tables(Table::Orders)?;
                self.stored(store.order(order_id))
                    .await
                    .map_err(ApiError::from)
            },
        )
        .await
    }

    /// One page of a customer's orders, newest first, after `before`.
    pub async fn orders_by_customer(
        &self,
        customer_id: &str,
        before: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Page<OrderRow, OrderCursor>, ApiError> {
        let store = self.tables(Table::Orders)?;
        Ok(self
            .stored(store.orders_by_customer(customer_id, before, limit))
            .await?)
    }

    /// Whether ScyllaDB and Redis answer now, for `/health`.
    pub async fn probe(self: &Arc<Self>) -> (bool, bool) {
        let scylla = match read(&self.stores) {
            Some(generations) => {
                let store = read(&generations.products);
                tokio::time::timeout(self.store_timeout, store.product("health-probe"))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            None => false,
        };
        let redis = match read(&self.cache) {
            Some(cache) => tokio::time::timeout(self.cache_timeout, cache.lookup("health-probe"))
                .await
                .is_ok_and(|r| r.is_ok()),
            None => false,
        };
        (scylla, redis)
    }
}

/// Re-checks every few seconds which generation each projection's readers are switched to.
async fn follow_generations<S: ReadModelStore>(
    generations: Arc<Generations<S>>,
    store_timeout: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(GENERATION_REFRESH) => {}
        }
        for (name, table) in [
            (Products::NAME, Table::Products),
            (Stocks::NAME, Table::Stock),
            (Orders::NAME, Table::Orders),
        ] {
            let slot = generations.slot(table);
            let Ok(Ok(active)) =
                tokio::time::timeout(store_timeout, generations.base.active_generation(name)).await
            else {
                continue;
            };
            if read(slot).generation() == active {
                continue;
            }
            match generations.base.with_generation(active).await {
                Ok(store) => {
                    tracing::info!(projection = name, generation = active, "readers switched");
                    write(slot, Arc::new(store));
                }
                Err(e) => tracing::warn!(projection = name, error = %e, "generation switch failed"),
            }
        }
    }
}

/// Reads once with `read`; with `min_version`, re-reads until the row reaches it (bounded).
async fn at_version<T, F, Fut>(
    min_version: Option<u64>,
    limit: Duration,
    version: impl Fn(&T) -> u64,
    read: F,
) -> Result<Option<T>, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<T>, ApiError>>,
{
    let first = read().await?;
    match min_version {
        None => Ok(first),
        Some(wanted) => wait_for_version(first, wanted, limit, version, read).await,
    }
}

/// Re-reads with `again` until the row reaches version `wanted`, for at most `limit`.
async fn wait_for_version<T, F, Fut>(
    first: Option<T>,
    wanted: u64,
    limit: Duration,
    version: impl Fn(&T) -> u64,
    again: F,
) -> Result<Option<T>, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<T>, ApiError>>,
{
    let started = Instant::now();
    let mut current = first;
    loop {
        let held = current.as_ref().map_or(0, &version);
        if held >= wanted {
            return Ok(current);
        }
        if started.elapsed() + VERSION_POLL > limit {
            return Err(ApiError::VersionNotReached {
                wanted,
                held,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(VERSION_POLL).await;
        current = again().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use streamcart_projectors::PutOutcome;

    fn row(sku: &str, version: u64) -> ProductRow {
        ProductRow {
            sku: sku.to_owned(),
            name: format!("product {sku}"),
            category: "tools".to_owned(),
            price_minor: 1_000,
            currency: "EUR".to_owned(),
            discontinued: false,
            version,
            updated_at: 0,
        }
    }

    /// Product tables in memory, counting the product reads they answer.
    #[derive(Debug, Clone, Default)]
    struct MemoryStore {
        products: Arc<Mutex<BTreeMap<String, ProductRow>>>,
        product_reads: Arc<AtomicU64>,
    }

    impl ReadModelStore for MemoryStore {
        fn generation(&self) -> u32 {
            1
        }

        async fn active_generation(&self, _name: &str) -> Result<u32, StoreError> {
            Ok(1)
        }

        async fn with_generation(&self, _generation: u32) -> Result<Self, StoreError> {
            Ok(self.clone())
        }

        async fn product(&self, sku: &str) -> Result<Option<ProductRow>, StoreError> {
            self.product_reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.products.lock().expect("lock").get(sku).cloned())
        }

        async fn products_by_category(
            &self,
            _category: &str,
            _after_sku: Option<&str>,
            _limit: u32,
        ) -> Result<Page<ProductRow, String>, StoreError> {
            Ok(Page {
                items: Vec::new(),
                next: None,
            })
        }

        async fn stock(&self, _sku: &str) -> Result<Option<StockRow>, StoreError> {
            Ok(None)
        }

        async fn order(&self, _order_id: &str) -> Result<Option<OrderRow>, StoreError> {
            Ok(None)
        }

        async fn orders_by_customer(
            &self,
            _customer_id: &str,
            _before: Option<&OrderCursor>,
            _limit: u32,
        ) -> Result<Page<OrderRow, OrderCursor>, StoreError> {
            Ok(Page {
                items: Vec::new(),
                next: None,
            })
        }
    }

    /// A product cache in memory: rows and negative entries by sku.
    #[derive(Debug, Clone, Default)]
    struct MemoryCache {
        entries: Arc<Mutex<BTreeMap<String, Option<ProductRow>>>>,
    }

    impl ProductCacheReads for MemoryCache {
        async fn lookup(&self, sku: &str) -> Result<CacheLookup, CacheError> {
            Ok(match self.entries.lock().expect("lock").get(sku) {
                Some(Some(row)) => CacheLookup::Hit(row.clone()),
                Some(None) => CacheLookup::Missing,
                None => CacheLookup::Miss,
            })
        }

        async fn put_if_newer(&self, row: &ProductRow) -> Result<PutOutcome, CacheError> {
            let mut entries = self.entries.lock().expect("lock");
            match entries.get(&row.sku) {
                Some(Some(held)) if held.version > row.version => Ok(PutOutcome::Refused {
                    current: held.version,
                }),
                _ => {
                    entries.insert(row.sku.clone(), Some(row.clone()));
                    Ok(PutOutcome::Stored)
                }
            }
        }

        async fn put_missing(&self, sku: &str, _ttl: Duration) -> Result<bool, CacheError> {
            let mut entries = self.entries.lock().expect("lock");
            if matches!(entries.get(sku), Some(Some(_))) {
                return Ok(false);
            }
            entries.insert(sku.to_owned(), None);
            Ok(true)
        }
    }

    /// Read models over `store` and `cache`, once the cache is connected.
    async fn open(
        store: MemoryStore,
        cache: MemoryCache,
    ) -> (Arc<ReadModels<MemoryStore, MemoryCache>>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let models = ReadModels::open(
            store,
            move || {
                let cache = cache.clone();
                async move { Ok(cache) }
            },
            &ApiConfig::default(),
            Arc::clone(&metrics),
            CancellationToken::new(),
        )
        .await
        .expect("opens");
        while models.usable_cache().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (models, metrics)
    }

    #[tokio::test]
    async fn a_cached_product_is_answered_without_reading_the_store() {
        let store = MemoryStore::default();
        let cache = MemoryCache::default();
        cache
            .entries
            .lock()
            .expect("lock")
            .insert("SKU-1".into(), Some(row("SKU-1", 3)));
        let (models, metrics) = open(store.clone(), cache).await;
        let got = models.product("SKU-1", Some(3)).await.expect("reads");
        assert_eq!(got, Some(row("SKU-1", 3)));
        assert_eq!(store.product_reads.load(Ordering::SeqCst), 0);
        assert_eq!(metrics.product_cache_hits.get(), 1);
    }

    #[tokio::test]
    async fn a_miss_loads_the_store_and_fills_the_cache_for_the_next_read() {
        let store = MemoryStore::default();
        store
            .products
            .lock()
            .expect("lock")
            .insert("SKU-1".into(), row("SKU-1", 2));
        let (models, metrics) = open(store.clone(), MemoryCache::default()).await;
        for _ in 0..3 {
            let got = models.product("SKU-1", None).await.expect("reads");
            assert_eq!(got, Some(row("SKU-1", 2)));
        }
        assert_eq!(store.product_reads.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.product_cache_hits.get(), 2);
    }

    #[tokio::test]
    async fn an_unknown_product_is_remembered_as_unknown() {
        let store = MemoryStore::default();
        let (models, metrics) = open(store.clone(), MemoryCache::default()).await;
        for _ in 0..3 {
            assert_eq!(models.product("SKU-0", None).await.expect("reads"), None);
        }
        assert_eq!(store.product_reads.load(Ordering::SeqCst), 1);
        assert_eq!(metrics.product_negative_hits.get(), 2);
    }

    #[tokio::test]
    async fn before_the_store_connects_cached_products_are_served_and_other_reads_are_503() {
        let store = MemoryStore::default();
        store
            .products
            .lock()
            .expect("lock")
            .insert("SKU-2".into(), row("SKU-2", 1));
        let cache = MemoryCache::default();
        cache
            .entries
            .lock()
            .expect("lock")
            .insert("SKU-1".into(), Some(row("SKU-1", 4)));
        let attempts = Arc::new(AtomicU64::new(0));
        let (tried, reachable) = (Arc::clone(&attempts), store.clone());
        let metrics = Arc::new(Metrics::default());
        let (models, connecting) = ReadModels::open_connecting(
            move || {
                let (tried, store) = (Arc::clone(&tried), reachable.clone());
                async move {
                    // Unreachable for the first three attempts, like a store still starting.
                    if tried.fetch_add(1, Ordering::SeqCst) < 3 {
                        Err(StoreError::Execute(Box::new(
                            scylla::errors::ExecutionError::EmptyPlan,
                        )))
                    } else {
                        Ok(store)
                    }
                }
            },
            move || {
                let cache = cache.clone();
                async move { Ok(cache) }
            },
            &ApiConfig::default(),
            Arc::clone(&metrics),
            CancellationToken::new(),
        );
        while models.usable_cache().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cached = models
            .product("SKU-1", None)
            .await
            .expect("served from the cache");
        assert_eq!(cached, Some(row("SKU-1", 4)));
        match models.stock("SKU-1", None).await {
            Err(ApiError::Unavailable { code, .. }) => assert_eq!(code, "read_model_unavailable"),
            other => panic!("expected a 503 before the store connects, got {other:?}"),
        }
        assert_eq!(models.probe().await, (false, true));
        tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .expect("connects within the bound")
            .expect("connects");
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        let loaded = models
            .product("SKU-2", None)
            .await
            .expect("reads the store");
        assert_eq!(loaded, Some(row("SKU-2", 1)));
        assert_eq!(models.probe().await, (true, true));
    }

    #[tokio::test]
    async fn a_store_error_retrying_cannot_mend_ends_the_connection_attempts() {
        let (_models, connecting) = ReadModels::<MemoryStore, MemoryCache>::open_connecting(
            || async {
                Err(StoreError::InvalidName {
                    kind: "keyspace",
                    value: "bad name".into(),
                    expected: "letters, digits and underscores",
                })
            },
            || async { Ok(MemoryCache::default()) },
            &ApiConfig::default(),
            Arc::new(Metrics::default()),
            CancellationToken::new(),
        );
        let err = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .expect("ends at once")
            .expect_err("not retried");
        assert!(matches!(err, StoreError::InvalidName { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn waiting_returns_once_the_version_arrives() {
        let reads = AtomicU64::new(0);
        let got = wait_for_version(
            Some(1u64),
            3,
            Duration::from_secs(2),
            |v| *v,
            || async { Ok(Some(reads.fetch_add(1, Ordering::SeqCst) + 2)) },
        )
        .await
        .expect("arrives");
        assert_eq!(got, Some(3));
    }

    #[tokio::test]
    async fn waiting_gives_up_with_what_it_holds() {
        let err = wait_for_version(
            None::<u64>,
            5,
            Duration::from_millis(100),
            |v| *v,
            || async { Ok(Some(2)) },
        )
        .await
        .expect_err("never arrives");
        match err {
            ApiError::VersionNotReached { wanted, held, .. } => assert_eq!((wanted, held), (5, 2)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
