//! The catalog copy on Kafka: [`follow_catalog`] reads the catalog events into a
//! [`SharedCatalog`], which the order processor prices from.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use streamcart_aggregates::orders::{CatalogEntry, PriceBook};
use streamcart_aggregates::values::Sku;
use streamcart_kafka_runtime::{KafkaSettings, RuntimeError};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use super::{CatalogCopy, CatalogFollower, RecordOutcome};
use crate::codec::decode_blocking;

/// Every partition of `topic` positioned at its beginning, and each partition's end offset.
fn partition_ends(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<(TopicPartitionList, HashMap<i32, i64>), rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for t in metadata.topics() {
        if let Some(e) = t.error() {
            return Err(rdkafka::error::KafkaError::MetadataFetch(e.into()));
        }
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            ends.insert(p.id(), high);
        }
    }
    if ends.is_empty() {
        return Err(rdkafka::error::KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok((tpl, ends))
}

/// The catalog copy shared between its follower thread and the order processor.
#[derive(Debug, Clone, Default)]
pub struct SharedCatalog(pub Arc<RwLock<CatalogCopy>>);

impl PriceBook for SharedCatalog {
    fn lookup(&self, sku: &Sku) -> Option<CatalogEntry> {
        self.0.read().ok().and_then(|c| c.lookup(sku))
    }
}

/// Reads the catalog events from the beginning into `catalog`, returns once caught up with
/// the end as of the call, then keeps following on a background thread until `shutdown`.
pub fn follow_catalog(
    settings: &KafkaSettings,
    topics: &Topics,
    codec: Arc<Codec>,
    rt: tokio::runtime::Handle,
    catalog: SharedCatalog,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>, RuntimeError> {
    let topic = topics.events(Context::Catalog);
    let mut config = settings.restore_consumer();
    // This reader follows the topic forever; partition ends are not events for it.
    config.set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create()?;
    // Topics created a moment ago may not have leaders yet: retry the look-ups for a while.
    let mut attempt = 0;
    let (tpl, ends) = loop {
        match partition_ends(&consumer, &topic) {
            Ok(found) => break found,
            Err(e) if attempt < 60 => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "catalog topic not ready; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    };
    consumer.assign(&tpl)?;
    // A transient decode failure is retried, never skipped: a skipped price change would price
    // orders from a stale price until the next change of that product.
    let mut follower = CatalogFollower::default();
    let mut apply = move |m: &rdkafka::message::BorrowedMessage<'_>,
                          catalog: &SharedCatalog,
                          stop: &dyn Fn() -> bool| {
        let Some(bytes) = m.payload() else {
            return RecordOutcome::Applied { changed: false };
        };
        let sleep = |wait: Duration| {
            let until = std::time::Instant::now() + wait;
            while !stop() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        follower.apply_record(
            &catalog.0,
            m.offset(),
            || decode_blocking(&rt, &codec, bytes),
            stop,
            sleep,
        )
    };
    // Catch up first, so the first order is priced from a complete copy.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let caught_up = |consumer: &BaseConsumer| {
        consumer.position().is_ok_and(|pos| {
            ends.iter().all(|(p, high)| {
                *high == 0
                    || matches!(pos.find_partition(&topic, *p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= *high)
            })
        })
    };
    while !caught_up(&consumer) {
        if std::time::Instant::now() > deadline {
            return Err(RuntimeError::Config(
                "catalog copy did not catch up within 120 s".into(),
            ));
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let stop = || shutdown.is_cancelled() || std::time::Instant::now() > deadline;
            if apply(&m, &catalog, &stop) == RecordOutcome::Stopped {
                return Err(RuntimeError::Config(format!(
                    "catalog copy did not catch up within 120 s: the catalog event at offset {} \
                     of partition {} could not be decoded",
                    m.offset(),
                    m.partition()
                )));
            }
        }
    }
    tracing::info!(
        products = catalog.0.read().map(|c| c.len()).unwrap_or(0),
        "catalog copy caught up"
    );
    let handle = std::thread::Builder::new()
        .name("catalog-copy".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                    apply(&m, &catalog, &|| shutdown.is_cancelled());
                }
            }
        })
        .map_err(|e| RuntimeError::Config(format!("cannot start the catalog follower: {e}")))?;
    Ok(handle)
}
