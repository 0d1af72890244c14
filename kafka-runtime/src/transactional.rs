//! The transactional loop: consume (read_committed) → handle → produce → send offsets with the
//! consumer group metadata → commit, many input records per transaction.
//!
//! Exactly-once rests on three things: outputs and input offsets commit atomically; a handler's
//! in-memory state is rolled back whenever a transaction is aborted (and the consumer rewound to
//! the batch start); and a zombie instance is fenced, both by the group generation sent with the
//! offsets and by its stable `transactional.id`, which a restarted instance re-initialises, aborting
//! whatever the dead one left open.
//!
//! The loop is blocking (rdkafka's transactional API is); run it on a dedicated thread.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::dead_letter;
use crate::{HandleError, KafkaSettings, RuntimeError};

/// One input record as the handler sees it.
#[derive(Debug)]
pub struct InputRecord<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub payload: Option<&'a [u8]>,
    /// Record headers, in order, borrowed from the consumer (a header without value is empty).
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl<'a> InputRecord<'a> {
    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

/// A record to produce in the current transaction.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: String,
    /// Explicit partition; `None` lets the murmur2 partitioner place the key.
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value (`None` is a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Headers; names are mostly constants, so they are not copied.
    pub headers: Vec<(Cow<'static, str>, Vec<u8>)>,
    /// Handler-chosen tag, echoed in [`Delivered`] so the handler can learn where it landed.
    pub tag: u64,
}

impl OutRecord {
    /// A record for `topic` with no headers, placed by key.
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, payload: Option<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key,
            payload,
            headers: Vec::new(),
            tag: 0,
        }
    }
}

/// Where a tagged output record landed (known once the batch is flushed, before commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The tag given in [`OutRecord::tag`].
    pub tag: u64,
    /// Topic written.
    pub topic: String,
    /// Partition written.
    pub partition: i32,
    /// Offset written.
    pub offset: i64,
}

/// The logic a transactional loop runs. All methods are called from the loop's thread.
pub trait TxnHandler {
    /// Rebuilds state for newly assigned input partitions before any of their records is handled.
    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), RuntimeError>;
    /// Drops state of partitions this instance no longer owns.
    fn on_revoked(&mut self, partitions: &[(String, i32)]);
    /// Handles one input record, appending what it produces to `out`.
    fn handle(
        &mut self,
        record: &InputRecord<'_>,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError>;
    /// A transaction was just opened and none of its input is handled yet, so the handler's
    /// state is exactly the last committed one; may add records (e.g. snapshots of that state),
    /// which then travel with the batch instead of delaying its commit.
    fn on_begin(&mut self, _out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        Ok(())
    }
    /// Called once the batch's outputs are written (their offsets known) and before the commit;
    /// may add records (e.g. snapshots that point at event offsets).
    fn before_commit(
        &mut self,
        _delivered: &[Delivered],
        _out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError> {
        Ok(())
    }
    /// The batch committed: its effects are durable.
    fn on_commit(&mut self);
    /// The batch was aborted: roll in-memory state back to the last commit.
    fn on_abort(&mut self);
    /// Called on every turn of the loop, input or not: lets time-driven handlers (deadlines)
    /// produce records. Anything produced joins the open batch's transaction.
    fn tick(&mut self, _out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        Ok(())
    }
}

/// Static description of one loop.
#[derive(Debug, Clone)]
pub struct LoopSpec {
    /// Name used in logs, dead letters and the default ids.
    pub name: String,
    /// Topics to consume.
    pub input_topics: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Stable per instance slot, so a restarted instance fences its predecessor at once.
    pub transactional_id: String,
    /// Where undecodable or unhandleable records go.
    pub dlq_topic: String,
}

#[derive(Default)]
struct RebalanceLog {
    assigned: Vec<(String, i32)>,
    revoked: Vec<(String, i32)>,
}

struct LoopContext {
    log: Arc<Mutex<RebalanceLog>>,
}

impl ClientContext for LoopContext {}

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

#[derive(Clone, Default)]
struct DeliveryLog {
    delivered: Arc<Mutex<Vec<Delivered>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

struct ProduceContext {
    log: DeliveryLog,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Self::DeliveryOpaque) {
        match result {
            Ok(m) => {
                if let Ok(mut d) = self.log.delivered.lock() {
                    d.push(Delivered {
                        tag: *tag,
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                    });
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

/// Counters of one loop, for logs and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopStats {
    /// Transactions committed.
    pub commits: u64,
    /// Transactions aborted.
    pub aborts: u64,
    /// Input records committed.
    pub records: u64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: u64,
}

/// Wall time spent per phase of the loop since the last report, to see where a batch's time goes.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    poll: Duration,
    handle: Duration,
    flush: Duration,
    before_commit: Duration,
    offsets: Duration,
    commit: Duration,
    batches: u64,
    records: u64,
}

impl Phases {
    fn report(&mut self, name: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(loop_name = %name, batches = self.batches, records = self.records,
            poll_ms = ms(self.poll), handle_ms = ms(self.handle), flush_ms = ms(self.flush),
            before_commit_ms = ms(self.before_commit), offsets_ms = ms(self.offsets),
            commit_ms = ms(self.commit), "loop phases");
        *self = Self::default();
    }
}

/// Runs the loop until `shutdown` fires; then finishes the open batch, commits and returns.
pub fn run<H: TxnHandler>(
    settings: &KafkaSettings,
    spec: &LoopSpec,
    handler: &mut H,
    shutdown: &CancellationToken,
) -> Result<LoopStats, RuntimeError> {
    let rebalances = Arc::new(Mutex::new(RebalanceLog::default()));
    let consumer: BaseConsumer<LoopContext> = settings
        .transactional_consumer(&spec.group_id)
        .create_with_context(LoopContext {
            log: rebalances.clone(),
        })?;
    let deliveries = DeliveryLog::default();
    let producer: BaseProducer<ProduceContext> = settings
        .transactional_producer(&spec.transactional_id)
        .create_with_context(ProduceContext {
            log: deliveries.clone(),
        })?;
    let txn_timeout = Duration::from_millis(settings.transaction_timeout_ms.max(5_000));
    // Aborts whatever a previous incarnation with this id left open, and fences it.
    producer.init_transactions(txn_timeout)?;
    let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let mut engine = Engine {
        settings,
        spec,
        consumer: &consumer,
        producer: &producer,
        deliveries,
        rebalances,
        txn_timeout,
        batch: None,
        stats: LoopStats::default(),
        tag: 0,
        owned: BTreeSet::new(),
        phases: Phases::default(),
        phases_since: Instant::now(),
    };
    let result = engine.run(handler, shutdown);
    if let Err(e) = &result {
        tracing::error!(loop_name = %spec.name, error = %e, "transactional loop stopped");
    }
    consumer.unsubscribe();
    result.map(|()| engine.stats)
}

/// How long to sleep while waiting for delivery reports: well below a produce round trip.
const DELIVERY_WAIT: Duration = Duration::from_micros(200);

struct Batch {
    started: Instant,
    records: usize,
    /// First offset handled per partition in this batch: where to rewind on abort.
    start: BTreeMap<(String, i32), i64>,
    /// Next offset to consume per partition: what to commit.
    next: BTreeMap<(String, i32), i64>,
}

struct Engine<'a> {
    settings: &'a KafkaSettings,
    spec: &'a LoopSpec,
    consumer: &'a BaseConsumer<LoopContext>,
    producer: &'a BaseProducer<ProduceContext>,
    deliveries: DeliveryLog,
    rebalances: Arc<Mutex<RebalanceLog>>,
    txn_timeout: Duration,
    batch: Option<Batch>,
    stats: LoopStats,
    tag: u64,
    /// Partitions assigned and restored, kept here because asking librdkafka costs a copy.
    owned: BTreeSet<(String, i32)>,
    phases: Phases,
    phases_since: Instant,
}

enum Outcome {
    Committed,
    Aborted,
}

impl Engine<'_> {
    fn run<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        shutdown: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                if self.batch.is_some() {
                    self.finish(handler)?;
                }
                self.phases.report(&self.spec.name);
                tracing::info!(loop_name = %self.spec.name, ?self.stats, "stopped cleanly");
                return Ok(());
            }
            // Delivery reports are served here: there is no background producer thread.
            self.producer.poll(Duration::ZERO);
            // With a batch open, only take what has already arrived: an empty queue closes it.
            let wait = if self.batch.is_some() {
                Duration::ZERO
            } else {
                Duration::from_millis(20)
            };
            let t0 = Instant::now();
            let polled = self.consumer.poll(wait);
            let drained = polled.is_none();
            let t1 = Instant::now();
            self.phases.poll += t1 - t0;
            self.apply_rebalances(handler)?;
            match polled {
                Some(Ok(m)) => {
                    // A rebalance that just revoked this record's partition makes it stale.
                    let handled = if self.owned(m.topic(), m.partition()) {
                        self.handle(handler, &m)
                    } else {
                        Ok(())
                    };
                    self.phases.handle += t1.elapsed();
                    if let Err(e) = handled {
                        tracing::warn!(loop_name = %self.spec.name, error = %e, "transient failure; retrying the batch");
                        self.abort(handler)?;
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    tracing::warn!(loop_name = %self.spec.name, error = %e, "consumer error")
                }
            }
            if let Err(e) = self.tick(handler) {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "tick failed; retrying the batch");
                self.abort(handler)?;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            // Group commit: a batch closes as soon as the input runs dry, so a lightly loaded
            // loop commits small batches quickly, while input that piles up during a commit
            // makes the next batch larger, up to the size and time bounds.
            let due = self.batch.as_ref().is_some_and(|b| {
                drained
                    || b.records >= self.settings.batch_max_records
                    || b.started.elapsed() >= self.settings.batch_max_wait()
            });
            if due && let Outcome::Committed = self.finish(handler)? {
                backoff = Duration::from_millis(100);
            }
            if self.phases_since.elapsed() >= Duration::from_secs(1) {
                self.phases.report(&self.spec.name);
                self.phases_since = Instant::now();
            }
        }
    }

    fn begin_if_needed<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), String> {
        if self.batch.is_none() {
            self.producer
                .begin_transaction()
                .map_err(|e| e.to_string())?;
            self.batch = Some(Batch {
                started: Instant::now(),
                records: 0,
                start: BTreeMap::new(),
                next: BTreeMap::new(),
            });
            let mut out = Vec::new();
            handler.on_begin(&mut out).map_err(|e| e.to_string())?;
            for r in out {
                self.send(r)?;
            }
        }
        Ok(())
    }

    fn tick<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), String> {
        let mut out = Vec::new();
        handler.tick(&mut out).map_err(|e| e.to_string())?;
        if out.is_empty() {
            return Ok(());
        }
        self.begin_if_needed(handler)?;
        for r in out {
            self.send(r)?;
        }
        if let Some(b) = self.batch.as_mut() {
            // Time-driven output counts toward the batch size like input does.
            b.records += 1;
        }
        Ok(())
    }

    fn owned(&self, topic: &str, partition: i32) -> bool {
        self.owned.contains(&(topic.to_owned(), partition))
    }

    fn apply_rebalances<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        let (assigned, revoked) = match self.rebalances.lock() {
            Ok(mut log) => (
                std::mem::take(&mut log.assigned),
                std::mem::take(&mut log.revoked),
            ),
            Err(_) => return Err(RuntimeError::Config("rebalance log poisoned".into())),
        };
        if !revoked.is_empty() {
            // Offsets of revoked partitions can no longer be committed by this instance, so the
            // open batch cannot commit either: give it back.
            if self.batch.is_some() {
                self.abort(handler)?;
            }
            tracing::info!(loop_name = %self.spec.name, ?revoked, "partitions revoked");
            for tp in &revoked {
                self.owned.remove(tp);
            }
            handler.on_revoked(&revoked);
        }
        if !assigned.is_empty() {
            // Restoring can take longer than the transaction timeout: close the open batch first.
            if self.batch.is_some() {
                self.finish(handler)?;
            }
            tracing::info!(loop_name = %self.spec.name, ?assigned, "partitions assigned; restoring");
            let t0 = Instant::now();
            handler.on_assigned(&assigned)?;
            self.owned.extend(assigned.iter().cloned());
            tracing::info!(loop_name = %self.spec.name, elapsed_ms = t0.elapsed().as_millis() as u64, "restored");
        }
        Ok(())
    }

    fn handle<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), String> {
        let tp = (m.topic().to_owned(), m.partition());
        if let Err(e) = self.begin_if_needed(handler) {
            // Nothing of this record was handled and the batch may not know its partition:
            // make sure it is read again when the work is retried.
            self.consumer
                .seek(
                    m.topic(),
                    m.partition(),
                    Offset::Offset(m.offset()),
                    Duration::from_secs(10),
                )
                .map_err(|se| format!("{e}; rewinding failed: {se}"))?;
            return Err(e);
        }
        if let Some(b) = self.batch.as_mut() {
            // Noted before handling, so that a failure on this very record rewinds to it.
            b.start.entry(tp.clone()).or_insert(m.offset());
        }
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let input = InputRecord {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            headers,
        };
        let mut out = Vec::new();
        match handler.handle(&input, &mut out) {
            Ok(()) => {}
            Err(HandleError::Permanent { kind, reason }) => {
                tracing::warn!(loop_name = %self.spec.name, topic = input.topic, partition = input.partition,
                    offset = input.offset, kind, %reason, "dead-lettering record");
                out.clear();
                out.push(dead_letter(
                    &self.spec.dlq_topic,
                    &self.spec.name,
                    &input,
                    kind,
                    &reason,
                ));
                self.stats.dead_letters += 1;
            }
            Err(HandleError::Transient(reason)) => return Err(reason),
        }
        for r in out {
            self.send(r)?;
        }
        if let Some(b) = self.batch.as_mut() {
            b.next.insert(tp, input.offset + 1);
            b.records += 1;
        }
        Ok(())
    }

    fn send(&mut self, r: OutRecord) -> Result<(), String> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k.as_ref(),
                value: Some(v.as_slice()),
            });
        }
        let tag = if r.tag == 0 {
            self.tag += 1;
            self.tag
        } else {
            r.tag
        };
        let mut record: BaseRecord<'_, [u8], [u8], Box<u64>> =
            BaseRecord::with_opaque_to(&r.topic, Box::new(tag)).headers(headers);
        if let Some(k) = r.key.as_deref() {
            record = record.key(k);
        }
        if let Some(p) = r.payload.as_deref() {
            record = record.payload(p);
        }
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        let mut record = record;
        // A full local queue is back-pressure, not failure: wait for room.
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::ZERO);
                    std::thread::sleep(DELIVERY_WAIT);
                }
                Err((e, _)) => return Err(format!("produce to {}: {e}", r.topic)),
            }
        }
    }

    /// Waits until every record sent is acknowledged, serving delivery reports as they come.
    ///
    /// rdkafka's own `flush` sleeps up to 100 ms between checks, which would cap a loop at about
    /// ten transactions a second; polling the producer directly returns as soon as the last
    /// report is in.
    ///
    /// It never asks rdkafka to poll with a timeout: its poll keeps calling librdkafka until the
    /// deadline passes, and rounds the time left down to whole milliseconds, so the last
    /// millisecond of every wait is a busy loop that starves the broker on a small machine.
    /// Serving what is ready and sleeping briefly when nothing moved costs no CPU.
    fn flush(&self) -> Result<(), String> {
        let deadline = Instant::now() + self.txn_timeout;
        let mut left = i32::MAX;
        loop {
            self.producer.poll(Duration::ZERO);
            let now_left = self.producer.in_flight_count();
            if now_left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{now_left} records not acknowledged in time"));
            }
            // A served report may have more behind it: keep draining while the count falls.
            if now_left >= left {
                std::thread::sleep(DELIVERY_WAIT);
            }
            left = now_left;
        }
    }

    fn take_deliveries(&self) -> Result<Vec<Delivered>, String> {
        if let Ok(mut f) = self.deliveries.failures.lock()
            && !f.is_empty()
        {
            let errors = std::mem::take(&mut *f);
            return Err(format!("delivery failed: {}", errors.join("; ")));
        }
        Ok(self
            .deliveries
            .delivered
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default())
    }

    /// Flushes, lets the handler add its last records, sends offsets and commits; aborts on failure.
    fn finish<H: TxnHandler>(&mut self, handler: &mut H) -> Result<Outcome, RuntimeError> {
        match self.try_commit(handler) {
            Ok(()) => {
                if let Some(b) = self.batch.take() {
                    self.stats.records += b.records as u64;
                    self.phases.records += b.records as u64;
                    self.phases.batches += 1;
                    tracing::debug!(loop_name = %self.spec.name, records = b.records,
                        open_ms = b.started.elapsed().as_millis() as u64, "batch committed");
                }
                self.stats.commits += 1;
                handler.on_commit();
                Ok(Outcome::Committed)
            }
            Err(CommitError::Fatal(e)) => Err(e),
            Err(CommitError::Abort(reason)) => {
                tracing::warn!(loop_name = %self.spec.name, %reason, "aborting batch");
                self.abort(handler)?;
                Ok(Outcome::Aborted)
            }
        }
    }

    fn try_commit<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), CommitError> {
        let t0 = Instant::now();
        self.flush().map_err(CommitError::Abort)?;
        let t_flushed = Instant::now();
        self.phases.flush += t_flushed - t0;
        let delivered = self.take_deliveries().map_err(CommitError::Abort)?;
        let mut extra = Vec::new();
        handler
            .before_commit(&delivered, &mut extra)
            .map_err(|e| CommitError::Abort(e.to_string()))?;
        if !extra.is_empty() {
            for r in extra {
                self.send(r).map_err(CommitError::Abort)?;
            }
            // rdkafka's commit flushes whatever is still in flight by polling in steps of a
            // full 100 ms; draining the late records here keeps the commit itself a round trip.
            self.flush().map_err(CommitError::Abort)?;
        }
        let t_before = Instant::now();
        self.phases.before_commit += t_before - t_flushed;
        let Some(batch) = self.batch.as_ref() else {
            return Ok(());
        };
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next {
            offsets
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(classify)?;
        }
        if offsets.count() > 0 {
            let metadata = self
                .consumer
                .group_metadata()
                .ok_or_else(|| CommitError::Abort("no consumer group metadata yet".into()))?;
            self.producer
                .send_offsets_to_transaction(&offsets, &metadata, self.txn_timeout)
                .map_err(classify)?;
        }
        let t1 = Instant::now();
        self.phases.offsets += t1 - t_before;
        self.producer
            .commit_transaction(self.txn_timeout)
            .map_err(classify)?;
        self.phases.commit += t1.elapsed();
        self.take_deliveries().map_err(CommitError::Abort)?;
        Ok(())
    }

    /// Aborts the open transaction, rolls the handler back and rewinds the consumer to the
    /// first record of the batch on every partition it still owns.
    fn abort<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        if let Err(e) = self.producer.abort_transaction(self.txn_timeout) {
            if is_fatal(&e) {
                return Err(e.into());
            }
            tracing::warn!(loop_name = %self.spec.name, error = %e, "abort failed");
        }
        let _ = self.take_deliveries();
        self.stats.aborts += 1;
        handler.on_abort();
        for ((topic, partition), offset) in &batch.start {
            if self.owned(topic, *partition)
                && let Err(e) = self.consumer.seek(
                    topic,
                    *partition,
                    Offset::Offset(*offset),
                    Duration::from_secs(10),
                )
            {
                return Err(e.into());
            }
        }
        Ok(())
    }
}

enum CommitError {
    Abort(String),
    Fatal(RuntimeError),
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}

fn classify(e: KafkaError) -> CommitError {
    if is_fatal(&e) {
        // Fenced or otherwise unusable producer: this instance must stop.
        CommitError::Fatal(e.into())
    } else {
        CommitError::Abort(e.to_string())
    }
}
