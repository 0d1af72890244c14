//! The saga on Kafka: the pure reactions and the deadline timer, driven by the shared
//! transactional loop.
//!
//! - [`ReactionsHandler`] consumes the order, stock and payment event topics and produces the
//!   commands the reactions emit, in the same transaction as its input offsets.
//! - [`DeadlinesHandler`] consumes the order events, keeps every open order's deadline, and fires
//!   `ExpireOrder` when one passes. Its state is rebuilt from the order events topic on assignment,
//!   never taken from memory, so a restart neither loses a deadline nor fires one twice to effect
//!   (the command id of an expiry depends only on the order).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::Message;
use streamcart_aggregates::orders::{CancelReason, OrderEvent};
use streamcart_aggregates::values::OrderId;
use streamcart_kafka_runtime::headers;
use streamcart_kafka_runtime::restore::Restorer;
use streamcart_kafka_runtime::transactional::{InputRecord, OutRecord, TxnHandler};
use streamcart_kafka_runtime::{HandleError, KafkaSettings, RuntimeError};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{EventEnvelope, WireRecord};
use streamcart_schemas::topics::{Context, Stream, StreamKind, Topics};

use super::deadlines::DeadlineTable;
use super::{SagaCommand, react_to_order_event, react_to_payment_event, react_to_stock_event};
use crate::codec::{decode_blocking, decode_failure, encode_blocking};

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encodes commands for their topics; shared by both saga handlers and by command processors
/// that run the reactions inline.
pub(crate) struct CommandWriter {
    pub(crate) topics: Topics,
    pub(crate) codec: Arc<Codec>,
    pub(crate) rt: tokio::runtime::Handle,
}

impl CommandWriter {
    fn encode<T: WireRecord>(&self, record: &T) -> Result<Vec<u8>, HandleError> {
        encode_blocking(&self.rt, &self.codec, record)
    }

    /// The record of `command`; the runtime gives it the `traceparent` of the span that
    /// decided it.
    pub(crate) fn record(&self, command: &SagaCommand) -> Result<OutRecord, HandleError> {
        let (context, bytes) = match command {
            SagaCommand::Stock(c) => (Context::Inventory, self.encode(c)?),
            SagaCommand::Order(c) => (Context::Orders, self.encode(c)?),
            SagaCommand::Payment(c) => (Context::Payments, self.encode(c)?),
        };
        let mut r = OutRecord::new(
            self.topics.commands(context),
            Some(command.aggregate_id().as_bytes().to_vec()),
            Some(bytes),
        );
        r.headers = vec![(
            headers::CONTENT_TYPE.into(),
            headers::AVRO_CONTENT_TYPE.as_bytes().into(),
        )];
        Ok(r)
    }
}

/// Runs every saga reaction on the events it consumes.
pub struct ReactionsHandler {
    writer: CommandWriter,
    settled: SettledOrders,
}

/// Orders settled by the events of the open batch and of the sealed one, counted in
/// `streamcart_saga_orders_settled_total` once their batch commits, so that a batch handled
/// again after an abort counts once.
#[derive(Debug, Default)]
pub(crate) struct SettledOrders {
    open: Vec<(&'static str, &'static str)>,
    sealed: Vec<(&'static str, &'static str)>,
}

impl SettledOrders {
    /// Notes an order ending in the open batch.
    pub(crate) fn note(&mut self, outcome: Option<(&'static str, &'static str)>) {
        self.open.extend(outcome);
    }

    /// The open batch was sealed.
    pub(crate) fn seal(&mut self) {
        self.sealed.append(&mut self.open);
    }

    /// The sealed batch committed: its orders are counted.
    pub(crate) fn commit(&mut self) {
        let counter = settled_counter();
        for (outcome, reason) in self.sealed.drain(..) {
            counter.with_label_values(&[outcome, reason]).inc();
        }
    }

    /// Both batches were rolled back.
    pub(crate) fn abort(&mut self) {
        self.open.clear();
        self.sealed.clear();
    }
}

/// How an order ended, as `(outcome, reason)` labels, for a terminal order event.
pub(crate) fn settled(event: &OrderEvent) -> Option<(&'static str, &'static str)> {
    match event {
        OrderEvent::OrderConfirmed(_) => Some(("confirmed", "")),
        OrderEvent::OrderExpired(_) => Some(("expired", "deadline")),
        OrderEvent::OrderCancelled(c) => Some((
            "cancelled",
            match c.reason {
                CancelReason::StockUnavailable => "stock_unavailable",
                CancelReason::PaymentDeclined => "payment_declined",
                CancelReason::CustomerRequested => "customer_requested",
            },
        )),
        _ => None,
    }
}

/// `streamcart_saga_orders_settled_total`: orders the saga saw end, by outcome and reason.
fn settled_counter() -> &'static prometheus::IntCounterVec {
    static COUNTER: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    COUNTER.get_or_init(|| {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "streamcart_saga_orders_settled_total",
                "Orders whose saga ended (confirmed, cancelled or expired), by outcome and reason; counted when the reaction's batch commits.",
            ),
            &["outcome", "reason"],
        )
        .expect("valid counter");
        if let Err(e) = streamcart_kafka_runtime::metrics::global()
            .registry()
            .register(Box::new(c.clone()))
        {
            tracing::warn!(error = %e, "saga outcome series not registered");
        }
        c
    })
}

impl std::fmt::Debug for ReactionsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactionsHandler").finish_non_exhaustive()
    }
}

impl ReactionsHandler {
    /// A handler producing to the command topics named by `topics`.
    pub fn new(topics: Topics, codec: Arc<Codec>, rt: tokio::runtime::Handle) -> Self {
        Self {
            writer: CommandWriter { topics, codec, rt },
            settled: SettledOrders::default(),
        }
    }

    /// The event topics the reactions consume.
    pub fn input_topics(topics: &Topics) -> Vec<String> {
        vec![
            topics.events(Context::Orders),
            topics.events(Context::Inventory),
            topics.events(Context::Payments),
        ]
    }
}

impl TxnHandler for ReactionsHandler {
    fn operation(&self) -> &'static str {
        "reaction run"
    }

    fn on_assigned(&mut self, _partitions: &[(String, i32)]) -> Result<(), RuntimeError> {
        // Stateless: every reaction is a function of one event.
        Ok(())
    }

    fn on_revoked(&mut self, _partitions: &[(String, i32)]) {}

    fn handle(
        &mut self,
        record: &InputRecord<'_>,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError> {
        let Some(bytes) = record.payload else {
            return Err(HandleError::permanent(
                "decode.empty",
                "event record has no value",
            ));
        };
        let w = &self.writer;
        let commands = match w.topics.stream_of(record.topic) {
            Some(Stream::Aggregate(Context::Orders, StreamKind::Events)) => {
                let e: EventEnvelope<OrderEvent> =
                    decode_blocking(&w.rt, &w.codec, bytes).map_err(decode_failure)?;
                self.settled.note(settled(&e.payload));
                react_to_order_event(&e)
            }
            Some(Stream::Aggregate(Context::Inventory, StreamKind::Events)) => {
                let e = decode_blocking(&w.rt, &w.codec, bytes).map_err(decode_failure)?;
                react_to_stock_event(&e)
            }
            Some(Stream::Aggregate(Context::Payments, StreamKind::Events)) => {
                let e = decode_blocking(&w.rt, &w.codec, bytes).map_err(decode_failure)?;
                react_to_payment_event(&e)
            }
            _ => {
                return Err(HandleError::permanent(
                    "saga.unexpected_topic",
                    format!("no reaction consumes {}", record.topic),
                ));
            }
        };
        for c in &commands {
            out.push(w.record(c)?);
        }
        Ok(())
    }

    fn on_seal(&mut self) {
        self.settled.seal();
    }

    fn on_commit(&mut self) {
        self.settled.commit();
    }

    fn on_abort(&mut self) {
        self.settled.abort();
    }
}

/// Fires `ExpireOrder` for open orders whose deadline passed.
pub struct DeadlinesHandler {
    writer: CommandWriter,
    settings: KafkaSettings,
    restore_timeout: Duration,
    tables: HashMap<i32, DeadlineTable>,
    /// Deadlines fired in the open batch, put back if it aborts.
    fired: Vec<(i32, OrderId, i64)>,
    /// Deadlines fired in the batch under commit, put back if it aborts.
    fired_sealed: Vec<(i32, OrderId, i64)>,
    /// Deadlines fire no earlier than this many milliseconds after they pass, in batches.
    resolution: Duration,
    last_scan: std::time::Instant,
}

impl std::fmt::Debug for DeadlinesHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlinesHandler")
            .field("partitions", &self.tables.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DeadlinesHandler {
    /// A handler reading and writing the topics named by `topics`.
    pub fn new(
        settings: KafkaSettings,
        topics: Topics,
        codec: Arc<Codec>,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            writer: CommandWriter { topics, codec, rt },
            settings,
            restore_timeout: Duration::from_secs(120),
            tables: HashMap::new(),
            fired: Vec::new(),
            fired_sealed: Vec::new(),
            resolution: Duration::from_millis(100),
            last_scan: std::time::Instant::now(),
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<EventEnvelope<OrderEvent>, HandleError> {
        let w = &self.writer;
        decode_blocking(&w.rt, &w.codec, bytes).map_err(decode_failure)
    }
}

impl TxnHandler for DeadlinesHandler {
    fn operation(&self) -> &'static str {
        "deadline tracked"
    }

    fn timer_operation(&self) -> &'static str {
        "deadline fired"
    }

    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), RuntimeError> {
        // The whole partition is read to its end: events the loop then consumes again (those
        // after the committed offset) only re-add or re-remove the same entries.
        let restorer = Restorer::new(&self.settings)?;
        let mut topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            // Every partition of the topic in one read.
            let mut tables: HashMap<i32, DeadlineTable> = partitions
                .iter()
                .filter(|(t, _)| t == topic)
                .map(|(_, p)| (*p, DeadlineTable::new()))
                .collect();
            let starts: Vec<(i32, i64)> = tables.keys().map(|p| (*p, 0)).collect();
            restorer.read_partitions(topic, &starts, self.restore_timeout, |m| {
                let Some(bytes) = m.payload() else {
                    return Ok(());
                };
                let Some(table) = tables.get_mut(&m.partition()) else {
                    return Ok(());
                };
                let event = self.decode(bytes).map_err(|e| e.to_string())?;
                table.on_order_event(&event);
                Ok(())
            })?;
            for (p, table) in tables {
                tracing::info!(
                    partition = p,
                    open_deadlines = table.len(),
                    "deadlines restored"
                );
                self.tables.insert(p, table);
            }
        }
        Ok(())
    }

    fn on_revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, p) in partitions {
            self.tables.remove(p);
        }
    }

    fn handle(
        &mut self,
        record: &InputRecord<'_>,
        _out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError> {
        let Some(bytes) = record.payload else {
            return Err(HandleError::permanent(
                "decode.empty",
                "event record has no value",
            ));
        };
        let event = self.decode(bytes)?;
        if let Some(table) = self.tables.get_mut(&record.partition) {
            table.on_order_event(&event);
        }
        Ok(())
    }

    fn tick(&mut self, out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        if self.last_scan.elapsed() < self.resolution {
            return Ok(());
        }
        self.last_scan = std::time::Instant::now();
        let now = now_millis();
        let mut due = Vec::new();
        for (p, table) in &self.tables {
            for (order, deadline) in table.due(now) {
                due.push((*p, order, deadline));
            }
        }
        for (p, order, deadline) in due {
            let command = SagaCommand::Order(DeadlineTable::expire_command(&order, deadline));
            out.push(self.writer.record(&command)?);
            if let Some(table) = self.tables.get_mut(&p) {
                table.remove(&order);
            }
            self.fired.push((p, order, deadline));
        }
        Ok(())
    }

    fn on_seal(&mut self) {
        self.fired_sealed.append(&mut self.fired);
    }

    fn on_commit(&mut self) {
        self.fired_sealed.clear();
    }

    fn on_abort(&mut self) {
        let fired: Vec<_> = self
            .fired_sealed
            .drain(..)
            .chain(self.fired.drain(..))
            .collect();
        for (p, order, deadline) in fired {
            if let Some(table) = self.tables.get_mut(&p) {
                table.insert(order, deadline);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use streamcart_aggregates::orders::{OrderCancelled, OrderEvent};

    use super::*;

    #[test]
    fn terminal_order_events_name_their_outcome_and_others_none() {
        let cancelled = |reason| {
            settled(&OrderEvent::OrderCancelled(OrderCancelled {
                reason,
                release: Vec::new(),
            }))
        };
        assert_eq!(
            cancelled(CancelReason::PaymentDeclined),
            Some(("cancelled", "payment_declined"))
        );
        assert_eq!(
            cancelled(CancelReason::StockUnavailable),
            Some(("cancelled", "stock_unavailable"))
        );
        assert_eq!(
            cancelled(CancelReason::CustomerRequested),
            Some(("cancelled", "customer_requested"))
        );
    }
}
