//! The projector loop on Kafka: consume one context's events (`read_committed`), project them on
//! top of the rows the store holds, write ScyllaDB, then the Redis cache and the public summary
//! stream, and only then commit the offsets. At-least-once delivery is enough: projections are
//! idempotent and every write is version-stamped, so a redelivered batch changes nothing.
//!
//! Rebuilds: `rebuild` fills a fresh generation of the tables from offset zero while the live
//! loop keeps serving; the live loop also writes every new change into the generation being
//! built, so when the rebuild has caught up it can switch readers over with nothing missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use streamcart_kafka_runtime::{KafkaSettings, headers};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{EventEnvelope, EventPayload, WireRecord};
use streamcart_schemas::summary::{OrderSummary, ProductSummary};
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::model::{OrderRow, ProductRow, StockRow};
use crate::project::{Mutation, Orders, Products, Projection, Stocks, fold};
use crate::store::{CacheError, CassandraStore, ProductCache, StoreError};

/// Why a projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Kafka refused an operation.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The read-model store failed in a way retrying cannot fix.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The projector was asked for something that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// What differs between the three projections: their events, how to read a row, and the
/// public summary they publish (if any).
pub trait ProjectionBinding: Projection + Send + Sync + 'static
where
    Self::Event: EventPayload + Send + Sync,
    Self::Row: Send + Sync,
{
    /// Context whose events this projection consumes.
    const CONTEXT: Context;
    /// Reads the row the store holds for `id`.
    fn load(
        store: &CassandraStore,
        id: String,
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send;
    /// Key and encoded public summary of a row, for the summary topic.
    fn summary(
        codec: &Codec,
        row: &Self::Row,
    ) -> impl Future<Output = Option<Result<(String, Vec<u8>), String>>> + Send;
    /// The summary topic, if this projection publishes one.
    fn summary_topic(topics: &Topics) -> Option<String>;
}

impl ProjectionBinding for Products {
    const CONTEXT: Context = Context::Catalog;

    async fn load(store: &CassandraStore, id: String) -> Result<Option<ProductRow>, StoreError> {
        store.product(&id).await
    }

    async fn summary(codec: &Codec, row: &ProductRow) -> Option<Result<(String, Vec<u8>), String>> {
        let summary = ProductSummary {
            sku: row.sku.clone(),
            name: row.name.clone(),
            category: row.category.clone(),
            price_minor: row.price_minor,
            currency: row.currency.clone(),
            discontinued: row.discontinued,
            updated_at: row.updated_at,
            version: i64::try_from(row.version).unwrap_or(i64::MAX),
        };
        Some(encode(codec, &summary).await.map(|b| (row.sku.clone(), b)))
    }

    fn summary_topic(topics: &Topics) -> Option<String> {
        Some(topics.product_summary())
    }
}

impl ProjectionBinding for Stocks {
    const CONTEXT: Context = Context::Inventory;

    async fn load(store: &CassandraStore, id: String) -> Result<Option<StockRow>, StoreError> {
        store.stock(&id).await
    }

    async fn summary(_codec: &Codec, _row: &StockRow) -> Option<Result<(String, Vec<u8>), String>> {
        None
    }

    fn summary_topic(_topics: &Topics) -> Option<String> {
        None
    }
}

impl ProjectionBinding for Orders {
    const CONTEXT: Context = Context::Orders;

    async fn load(store: &CassandraStore, id: String) -> Result<Option<OrderRow>, StoreError> {
        store.order(&id).await
    }

    async fn summary(codec: &Codec, row: &OrderRow) -> Option<Result<(String, Vec<u8>), String>> {
        let order_id = match uuid::Uuid::parse_str(&row.order_id) {
            Ok(id) => id,
            Err(e) => return Some(Err(format!("order id {:?}: {e}", row.order_id))),
        };
        let summary = OrderSummary {
            order_id,
            customer_id: row.customer_id.clone(),
            status: row.status.as_str().to_owned(),
            reason: row.reason.clone(),
            total_minor: row.total_minor,
            currency: row.currency.clone(),
            line_count: i32::try_from(row.lines.len()).unwrap_or(i32::MAX),
            placed_at: row.placed_at,
            updated_at: row.updated_at,
            version: i64::try_from(row.version).unwrap_or(i64::MAX),
        };
        Some(
            encode(codec, &summary)
                .await
                .map(|b| (row.order_id.clone(), b)),
        )
    }

    fn summary_topic(topics: &Topics) -> Option<String> {
        Some(topics.order_summary())
    }
}

async fn encode<T: WireRecord>(codec: &Codec, record: &T) -> Result<Vec<u8>, String> {
    codec.encode(record).await.map_err(|e| e.to_string())
}

struct RebalanceFlag(Arc<AtomicBool>);

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn post_rebalance(&self, _c: &rdkafka::consumer::BaseConsumer<Self>, _r: &Rebalance<'_>) {
        // Rows cached for partitions that moved may be stale when they come back.
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How one projector instance runs.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Consumer group; a rebuild uses a group of its own.
    pub group_id: String,
    /// Most events handled per write batch.
    pub batch_max: usize,
    /// Longest a batch waits for more events.
    pub batch_wait: Duration,
    /// Keep the Redis product cache in step (live projectors only).
    pub update_cache: bool,
    /// Publish the public summary stream (live projectors only).
    pub publish_summary: bool,
    /// Stop once caught up with the end the topic had at start (rebuilds).
    pub stop_when_caught_up: bool,
    /// Follow generation switches made by rebuilds (live projectors).
    pub follow_generations: bool,
}

impl ProjectorOptions {
    /// The live projector of `name`: cache, summaries, generation following.
    pub fn live(group_id: String) -> Self {
        Self {
            group_id,
            batch_max: 2_000,
            batch_wait: Duration::from_millis(20),
            update_cache: true,
            publish_summary: true,
            stop_when_caught_up: false,
            follow_generations: true,
        }
    }
}

/// Name of the marker row holding the generation a rebuild is filling.
pub fn building_marker(name: &str) -> String {
    format!("{name}#building")
}

/// Everything a projector loop needs.
#[derive(Clone)]
pub struct ProjectorDeps {
    /// Kafka settings.
    pub settings: KafkaSettings,
    /// Topic names.
    pub topics: Topics,
    /// Registry codec.
    pub codec: Arc<Codec>,
    /// The store at the generation to start from.
    pub store: CassandraStore,
    /// The Redis product cache, when this projection has one.
    pub cache: Option<ProductCache>,
}

impl std::fmt::Debug for ProjectorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectorDeps")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Runs projection `P` until `shutdown` (or, for a rebuild, until caught up). Returns the number
/// of events read.
pub async fn run<P>(
    deps: ProjectorDeps,
    options: ProjectorOptions,
    shutdown: CancellationToken,
) -> Result<u64, ProjectorError>
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    let topic = deps.topics.events(P::CONTEXT);
    let rebalanced = Arc::new(AtomicBool::new(false));
    let mut cfg = deps.settings.transactional_consumer(&options.group_id);
    cfg.set("partition.assignment.strategy", "cooperative-sticky");
    let consumer: StreamConsumer<RebalanceFlag> =
        cfg.create_with_context(RebalanceFlag(rebalanced.clone()))?;
    consumer.subscribe(&[&topic])?;
    let producer: FutureProducer = deps.settings.producer().create()?;
    let dlq = deps.topics.dlq(&format!("projector.{}", P::NAME));
    let ends = if options.stop_when_caught_up {
        end_offsets(&consumer, &topic)?
    } else {
        BTreeMap::new()
    };

    let mut base = deps.store.clone();
    let mut targets = vec![deps.store.clone()];
    let mut seen_generations = (deps.store.generation(), None);
    let mut last_generation_check = Instant::now() - Duration::from_secs(60);
    let mut rows: HashMap<String, P::Row> = HashMap::new();
    let mut pending_cache: Vec<Mutation> = Vec::new();
    let mut read = 0u64;

    loop {
        if options.follow_generations && last_generation_check.elapsed() > Duration::from_secs(2) {
            last_generation_check = Instant::now();
            match generations(&deps.store, P::NAME, seen_generations).await {
                Ok(Some((b, t, seen))) => {
                    tracing::info!(
                        projection = P::NAME,
                        from = base.generation(),
                        to = b.generation(),
                        "following generation change"
                    );
                    base = b;
                    targets = t;
                    seen_generations = seen;
                    rows.clear();
                }
                Ok(None) => {}
                // The store being away is waited out by the writes below; check again later.
                Err(ProjectorError::Store(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot check generations now");
                }
                Err(e) => return Err(e),
            }
        }
        if options.stop_when_caught_up && caught_up(&ends, &consumer, &topic) {
            return Ok(read);
        }
        // Collect a batch.
        let mut batch = Vec::new();
        let deadline = tokio::time::Instant::now() + options.batch_wait;
        while batch.len() < options.batch_max {
            let wait = if batch.is_empty() {
                Duration::from_millis(200)
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(wait, consumer.recv()) => match r {
                    Ok(Ok(m)) => batch.push(m.detach()),
                    Ok(Err(e)) => { tracing::warn!(error = %e, "consumer error"); break; }
                    Err(_) => break,
                }
            }
        }
        if rebalanced.swap(false, Ordering::Relaxed) {
            rows.clear();
        }
        if batch.is_empty() {
            if shutdown.is_cancelled() {
                return Ok(read);
            }
            // A failed cache refresh is retried while no events come, too: the last batch
            // before a quiet spell would otherwise leave the cache behind until the next one.
            if !pending_cache.is_empty()
                && let Some(cache) = &deps.cache
            {
                match cache.apply(&pending_cache).await {
                    Ok(()) => pending_cache.clear(),
                    Err(e) => log_cache_failure(&e, pending_cache.len()),
                }
            }
            continue;
        }
        read += batch.len() as u64;

        // Decode; poison goes to the dead-letter topic with its original bytes.
        let mut by_aggregate: BTreeMap<String, Vec<EventEnvelope<P::Event>>> = BTreeMap::new();
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &batch {
            next.insert(m.partition(), m.offset() + 1);
            let decoded = match m.payload() {
                Some(bytes) => deps.codec.decode::<EventEnvelope<P::Event>>(bytes).await,
                None => {
                    dead_letter(&producer, &dlq, m, "decode.empty", "event has no value").await;
                    continue;
                }
            };
            match decoded {
                Ok(e) => by_aggregate
                    .entry(e.aggregate_id.clone())
                    .or_default()
                    .push(e),
                Err(e) if e.is_transient() => {
                    // Registry unreachable: retry the whole batch from its first offsets.
                    tracing::warn!(error = %e, "transient decode failure; retrying");
                    rewind(&consumer, &batch)?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    rows.clear();
                    continue;
                }
                Err(e) => dead_letter(&producer, &dlq, m, "decode.failed", &e.to_string()).await,
            }
        }

        // Project every aggregate on top of its current row.
        let mut mutations = Vec::new();
        let mut changed: HashSet<String> = HashSet::new();
        for (id, events) in by_aggregate {
            let current = match rows.get(&id) {
                Some(r) => Some(r.clone()),
                None => retry_store(&shutdown, || P::load(&base, id.clone())).await?,
            };
            let (row, produced) = fold::<P>(current, &events);
            if !produced.is_empty() {
                changed.insert(id.clone());
            }
            mutations.extend(produced);
            if let Some(row) = row {
                if rows.len() > 200_000 {
                    rows.clear();
                }
                rows.insert(id, row);
            }
        }
        for store in &targets {
            retry_store(&shutdown, || store.apply(&mutations)).await?;
        }

        // The cache never blocks the read model: failed refreshes are retried with the next batch.
        if options.update_cache
            && let Some(cache) = &deps.cache
        {
            pending_cache.extend(
                mutations
                    .iter()
                    .filter(|m| matches!(m, Mutation::UpsertProduct(_)))
                    .cloned(),
            );
            if !pending_cache.is_empty() {
                match cache.apply(&pending_cache).await {
                    Ok(()) => pending_cache.clear(),
                    Err(e) => log_cache_failure(&e, pending_cache.len()),
                }
            }
        }

        if options.publish_summary
            && let Some(summary_topic) = P::summary_topic(&deps.topics)
        {
            let mut sends = Vec::new();
            for id in &changed {
                let Some(row) = rows.get(id) else { continue };
                match P::summary(&deps.codec, row).await {
                    Some(Ok((key, bytes))) => sends.push((key, bytes)),
                    Some(Err(e)) => tracing::warn!(error = %e, "summary not encodable"),
                    None => {}
                }
            }
            for (key, bytes) in &sends {
                let record = FutureRecord::to(&summary_topic)
                    .key(key)
                    .payload(bytes)
                    .headers(content_type());
                if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
                    return Err(ProjectorError::Kafka(e));
                }
            }
        }

        // Everything the batch covers is written: now its offsets may be committed.
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &next {
            tpl.add_partition_offset(&topic, *p, Offset::Offset(*o))?;
        }
        consumer.commit(&tpl, CommitMode::Async)?;
    }
}

fn content_type() -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: headers::CONTENT_TYPE,
        value: Some(headers::AVRO_CONTENT_TYPE),
    })
}

fn log_cache_failure(e: &CacheError, pending: usize) {
    tracing::warn!(error = %e, pending, "product cache refresh failed; will retry");
}

async fn dead_letter(
    producer: &FutureProducer,
    dlq: &str,
    m: &rdkafka::message::OwnedMessage,
    kind: &str,
    reason: &str,
) {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let hs = OwnedHeaders::new()
        .insert(Header {
            key: headers::DLQ_KIND,
            value: Some(kind),
        })
        .insert(Header {
            key: headers::DLQ_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_TOPIC,
            value: Some(m.topic()),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_OFFSET,
            value: Some(&offset),
        });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq).headers(hs);
    if let Some(k) = m.key() {
        record = record.key(k);
    }
    if let Some(p) = m.payload() {
        record = record.payload(p);
    }
    tracing::warn!(kind, reason, offset = m.offset(), "dead-lettering event");
    if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
        tracing::error!(error = %e, "dead letter could not be written");
    }
}

fn rewind(
    consumer: &StreamConsumer<RebalanceFlag>,
    batch: &[rdkafka::message::OwnedMessage],
) -> Result<(), ProjectorError> {
    let mut first: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        first
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset());
    }
    for ((t, p), o) in first {
        consumer.seek(&t, p, Offset::Offset(o), Duration::from_secs(10))?;
    }
    Ok(())
}

/// Retries a store call while its error is transient (node down, timeouts), until shutdown.
async fn retry_store<T, F, Fut>(
    shutdown: &CancellationToken,
    mut call: F,
) -> Result<T, ProjectorError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && !shutdown.is_cancelled() => {
                tracing::warn!(error = %e, ?backoff, "read model store unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Stores to read from and write to when the active or building generation moved; `None` when
/// nothing changed since the last check.
async fn generations(
    store: &CassandraStore,
    name: &str,
    current: (u32, Option<u32>),
) -> Result<Option<(CassandraStore, Vec<CassandraStore>, (u32, Option<u32>))>, ProjectorError> {
    let active = store.active_generation(name).await?;
    let building = store.active_generation(&building_marker(name)).await?;
    let seen = (active, (building > active).then_some(building));
    if seen == current {
        return Ok(None);
    }
    let base = store.with_generation(active).await?;
    let mut targets = vec![base.clone()];
    if let Some(b) = seen.1 {
        targets.push(store.with_generation(b).await?);
    }
    Ok(Some((base, targets, seen)))
}

fn end_offsets(
    consumer: &StreamConsumer<RebalanceFlag>,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, ProjectorError> {
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut ends = BTreeMap::new();
    for t in meta.topics() {
        for p in t.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            ends.insert(p.id(), high);
        }
    }
    Ok(ends)
}

/// True once the consumer's position passed the end each partition had at start. Positions,
/// not the offsets of handled records: the last offset of a partition is often a transaction
/// marker, which is never delivered.
fn caught_up(
    ends: &BTreeMap<i32, i64>,
    consumer: &StreamConsumer<RebalanceFlag>,
    topic: &str,
) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    ends.iter().all(|(p, high)| {
        *high == 0
            || matches!(
                positions.find_partition(topic, *p).map(|e| e.offset()),
                Some(Offset::Offset(o)) if o >= *high
            )
    })
}

/// Rebuilds projection `P` into the next generation and switches readers to it once caught up.
/// The live projector writes every new change into the generation being built meanwhile.
pub async fn rebuild<P>(
    deps: ProjectorDeps,
    group_prefix: &str,
    shutdown: CancellationToken,
) -> Result<u32, ProjectorError>
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    let active = deps.store.active_generation(P::NAME).await?;
    let building = deps
        .store
        .active_generation(&building_marker(P::NAME))
        .await?;
    let next = active.max(building) + 1;
    let fresh = deps.store.with_generation(next).await?;
    fresh.activate(&building_marker(P::NAME), next).await?;
    // Give live projectors time to notice the new generation before the replay starts, so no
    // change falls between the replay's end and the switch.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let options = ProjectorOptions {
        group_id: format!("{group_prefix}projector.{}.g{next}", P::NAME),
        update_cache: false,
        publish_summary: false,
        stop_when_caught_up: true,
        follow_generations: false,
        ..ProjectorOptions::live(String::new())
    };
    let read = run::<P>(
        ProjectorDeps {
            store: fresh.clone(),
            ..deps
        },
        options,
        shutdown.clone(),
    )
    .await?;
    if shutdown.is_cancelled() {
        return Err(ProjectorError::Invalid(
            "rebuild interrupted before it caught up".into(),
        ));
    }
    fresh.activate(P::NAME, next).await?;
    tracing::info!(
        projection = P::NAME,
        generation = next,
        events = read,
        "rebuild caught up; readers switched"
    );
    Ok(next)
}
