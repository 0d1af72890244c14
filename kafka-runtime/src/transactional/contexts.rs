//! librdkafka callbacks of the loop's clients: rebalances seen by the consumer and delivery
//! reports of the producer, recorded for the loop to act on outside the callbacks.

use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};

use super::Delivered;

/// Partitions assigned and revoked since the loop last looked.
#[derive(Default)]
pub(super) struct RebalanceLog {
    pub(super) assigned: Vec<(String, i32)>,
    pub(super) revoked: Vec<(String, i32)>,
}

/// The consumer's context.
pub(super) struct LoopContext {
    pub(super) log: Arc<Mutex<RebalanceLog>>,
    /// The consumer group, labelling the lag gauges its statistics feed.
    pub(super) group: String,
}

impl ClientContext for LoopContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::client_log::log_client_error(&error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        crate::metrics::global().consumer_stats(&self.group, statistics);
    }
}

impl ConsumerContext for LoopContext {
    // Only records what happened; the loop acts on it right after `poll` returns, outside
    // librdkafka's callback, where it may block (restore) and touch the producer.
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance
            && let Ok(mut log) = self.log.lock()
        {
            log.revoked.extend(tpl_pairs(tpl));
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance
            && let Ok(mut log) = self.log.lock()
        {
            log.assigned.extend(tpl_pairs(tpl));
        }
    }
}

fn tpl_pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Delivery reports not yet taken by the loop, folded into the highest offset per partition
/// (one entry per partition written, not one per record), shared with the commit thread.
#[derive(Clone, Default)]
pub(super) struct DeliveryLog {
    pub(super) delivered: Arc<Mutex<Vec<Delivered>>>,
    pub(super) failures: Arc<Mutex<Vec<String>>>,
}

/// The producer's context.
pub(super) struct ProduceContext {
    pub(super) log: DeliveryLog,
}

impl ClientContext for ProduceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        crate::client_log::log_client_error(&error, reason);
    }
}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(m) => {
                if let Ok(mut d) = self.log.delivered.lock() {
                    let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
                    match d
                        .iter_mut()
                        .find(|w| w.partition == partition && w.topic == topic)
                    {
                        Some(w) => w.offset = w.offset.max(offset),
                        None => d.push(Delivered {
                            topic: topic.to_owned(),
                            partition,
                            offset,
                        }),
                    }
                }
            }
            Err((e, _)) => {
                if let Ok(mut f) = self.log.failures.lock() {
                    f.push(e.to_string());
                }
            }
        }
    }
}

impl DeliveryLog {
    /// The first delivery failure since the last call, as an error; else what was delivered.
    pub(super) fn take(&self) -> Result<Vec<Delivered>, String> {
        if let Ok(mut f) = self.failures.lock()
            && !f.is_empty()
        {
            let errors = std::mem::take(&mut *f);
            return Err(format!("delivery failed: {}", errors.join("; ")));
        }
        Ok(self
            .delivered
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default())
    }

    /// True when a delivery failed since the last [`take`](Self::take).
    pub(super) fn has_failures(&self) -> bool {
        self.failures.lock().map(|f| !f.is_empty()).unwrap_or(true)
    }
}
