//! Producing records as any Kafka client would, and reading topics back.
//!
//! A read always says how many records it expects: it returns once at least that many arrived
//! and it has reached the end of every partition, and fails naming what did arrive when fewer
//! came within its bound. So a comparison can never pass against a read that saw nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};

use crate::stack::{kafka_bootstrap, unique};

/// An idempotent producer placing keys with murmur2, like every streamcart client.
pub fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Enqueues one record, waiting while the producer's local queue is full.
pub fn produce(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    value: &[u8],
) {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, back)) => {
                assert!(
                    Instant::now() < deadline,
                    "producing to {topic}: the local queue did not drain for 60 s ({e})"
                );
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Reads the committed records of `topic` (all partitions, from the beginning): returns once at
/// least `expected` arrived and the read reached the end of every partition, or, when `timeout`
/// passes, what arrived if that is at least `expected`. Fails naming what arrived when fewer
/// did; `expected == 0` (a topic that must be empty) fails unless the end was reached.
pub fn read_topic(topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique("reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut quiet = 0;
    let mut reached_end = false;
    let mut errors = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet = 0;
                out.push(m.detach());
            }
            Some(Err(e)) => errors.push(e.to_string()),
            None => {
                quiet += 1;
                // Quiet alone proves nothing before the group has its assignment: also require
                // the end of every assigned partition to be reached.
                if quiet >= 5 && caught_up(&consumer) {
                    reached_end = true;
                    if out.len() >= expected {
                        return out;
                    }
                }
            }
        }
    }
    let short = out.len() < expected || (expected == 0 && !reached_end);
    assert!(
        !short,
        "{topic}: {} of {expected} records within {timeout:?} ({}){}",
        out.len(),
        describe(&out, reached_end),
        if errors.is_empty() {
            String::new()
        } else {
            format!("; consumer errors: {:?}", &errors[..errors.len().min(3)])
        }
    );
    out
}

/// What a read got: records per partition, the first keys, and whether it saw the end.
fn describe(records: &[OwnedMessage], reached_end: bool) -> String {
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for m in records {
        *per_partition.entry(m.partition()).or_default() += 1;
    }
    let keys: Vec<String> = records
        .iter()
        .take(5)
        .map(|m| String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned())
        .collect();
    format!(
        "per partition {per_partition:?}, first keys {keys:?}, {}",
        if reached_end {
            "every partition read to its end"
        } else {
            "the end of some partition never reached"
        }
    )
}

/// True once the consumer has partitions assigned and its position on each is at the end a
/// read_committed reader may see.
fn caught_up<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    let Ok(assigned) = consumer.assignment() else {
        return false;
    };
    if assigned.count() == 0 {
        return false;
    }
    let Ok(positions) = consumer.position() else {
        return false;
    };
    assigned.elements().iter().all(|e| {
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
        else {
            return false;
        };
        let position = positions
            .find_partition(e.topic(), e.partition())
            .and_then(|p| match p.offset() {
                rdkafka::Offset::Offset(o) => Some(o),
                _ => None,
            });
        // Nothing delivered yet from a partition: caught up only if it holds nothing.
        // A transaction marker may sit at the very end without anything to deliver.
        match position {
            Some(p) => p + 1 >= high,
            None => high <= low,
        }
    })
}
