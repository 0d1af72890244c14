//! The loop itself: polls input, hands records to the handler, sends what it produces, and
//! closes batches — sealing one for the commit thread while the next one fills.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::commit::{CommitFailure, Committer, DELIVERY_WAIT, LoopProducer, wait_acknowledged};
use super::contexts::{DeliveryLog, LoopContext, ProduceContext, RebalanceLog};
use super::{InputRecord, LoopSpec, LoopStats, OutRecord, Phases, TxnHandler};
use crate::dead_letter::dead_letter;
use crate::{HandleError, KafkaSettings, RuntimeError};

/// How long the loop waits for a running commit when no input is waiting.
const COMMIT_WAIT: Duration = Duration::from_millis(1);
/// First pause after a transient failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(super) fn run<H: TxnHandler>(
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
    let producer: Arc<LoopProducer> = Arc::new(
        settings
            .transactional_producer(&spec.transactional_id)
            .create_with_context(ProduceContext {
                log: deliveries.clone(),
            })?,
    );
    let txn_timeout = Duration::from_millis(settings.transaction_timeout_ms.max(5_000));
    // Aborts whatever a previous incarnation with this id left open, and fences it.
    producer.init_transactions(txn_timeout)?;
    let committer = Committer::spawn(
        &spec.name,
        producer.clone(),
        deliveries.clone(),
        txn_timeout,
    )
    .map_err(RuntimeError::Thread)?;
    let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;

    let mut engine = Engine {
        settings,
        spec,
        consumer: &consumer,
        producer,
        deliveries,
        rebalances,
        committer,
        txn_timeout,
        batch: None,
        sealed: None,
        stats: LoopStats::default(),
        owned: BTreeSet::new(),
        backoff: MIN_BACKOFF,
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

/// Input handled since a transaction boundary, and what it produced.
struct Batch {
    started: Instant,
    records: usize,
    /// First offset handled per partition in this batch: where to rewind on abort.
    start: BTreeMap<(String, i32), i64>,
    /// Next offset to consume per partition: what to commit.
    next: BTreeMap<(String, i32), i64>,
    /// Output held back because the previous batch's commit still holds the producer.
    held: Vec<OutRecord>,
    /// The batch's transaction is open: its output goes straight to the producer.
    in_txn: bool,
}

impl Batch {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            records: 0,
            start: BTreeMap::new(),
            next: BTreeMap::new(),
            held: Vec::new(),
            in_txn: false,
        }
    }
}

struct Engine<'a> {
    settings: &'a KafkaSettings,
    spec: &'a LoopSpec,
    consumer: &'a BaseConsumer<LoopContext>,
    producer: Arc<LoopProducer>,
    deliveries: DeliveryLog,
    rebalances: Arc<Mutex<RebalanceLog>>,
    committer: Committer,
    txn_timeout: Duration,
    /// The batch being filled.
    batch: Option<Batch>,
    /// The batch whose commit runs on the commit thread.
    sealed: Option<Batch>,
    stats: LoopStats,
    /// Partitions assigned and restored, kept here because asking librdkafka costs a copy.
    owned: BTreeSet<(String, i32)>,
    backoff: Duration,
    phases: Phases,
    phases_since: Instant,
}

impl Engine<'_> {
    fn run<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        shutdown: &CancellationToken,
    ) -> Result<(), RuntimeError> {
        loop {
            if shutdown.is_cancelled() {
                self.finish(handler)?;
                self.phases.report(&self.spec.name);
                tracing::info!(loop_name = %self.spec.name, ?self.stats, "stopped cleanly");
                return Ok(());
            }
            // Delivery reports are served here and by the commit thread: there is no
            // background producer thread.
            self.producer.poll(Duration::ZERO);
            // A full batch cannot grow while its predecessor commits: wait for that commit.
            let full = self
                .batch
                .as_ref()
                .is_some_and(|b| b.records >= self.settings.batch_max_records);
            self.settle(handler, (!full).then_some(Duration::ZERO))?;
            // With a batch open or committing, only take what has already arrived.
            let wait = if self.batch.is_some() || self.committer.busy() {
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
                    if let Err(e) = handled {
                        tracing::warn!(loop_name = %self.spec.name, error = %e, "transient failure; retrying the batch");
                        self.abort(handler)?;
                        self.pause();
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
                self.pause();
                continue;
            }
            // One clock reading per turn serves the phase times and the batch's age.
            let now = Instant::now();
            self.phases.handle += now - t1;
            // Group commit: a batch closes as soon as the input runs dry, so a lightly loaded
            // loop commits small batches quickly, while input that piles up during a commit
            // makes the next batch larger, up to the size and time bounds.
            let due = self.batch.as_ref().is_some_and(|b| {
                drained
                    || b.records >= self.settings.batch_max_records
                    || now - b.started >= self.settings.batch_max_wait()
            });
            if due && !self.committer.busy() {
                self.seal(handler)?;
            } else if drained && self.committer.busy() {
                // Nothing to handle: wait for the commit instead of spinning.
                self.settle(handler, Some(COMMIT_WAIT))?;
            }
            if now - self.phases_since >= Duration::from_secs(1) {
                self.phases.report(&self.spec.name);
                self.phases_since = now;
            }
        }
    }

    fn pause(&mut self) {
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Opens a batch if none is open; no Kafka call.
    fn open_batch(&mut self) {
        if self.batch.is_none() {
            self.batch = Some(Batch::new());
        }
    }

    /// Begins the open batch's transaction unless a commit still holds the producer, then
    /// sends what the batch held back.
    fn join_txn<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), String> {
        if self.committer.busy() || self.batch.as_ref().is_none_or(|b| b.in_txn) {
            return Ok(());
        }
        self.producer
            .begin_transaction()
            .map_err(|e| e.to_string())?;
        let held = match self.batch.as_mut() {
            Some(b) => {
                b.in_txn = true;
                std::mem::take(&mut b.held)
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        handler.on_begin(&mut out).map_err(|e| e.to_string())?;
        for r in out.into_iter().chain(held) {
            self.send(r)?;
        }
        Ok(())
    }

    /// Sends a record of the open batch, or holds it until the batch's transaction begins.
    fn emit(&mut self, r: OutRecord) -> Result<(), String> {
        match self.batch.as_mut() {
            Some(b) if !b.in_txn => {
                b.held.push(r);
                Ok(())
            }
            _ => self.send(r),
        }
    }

    fn tick<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), String> {
        let mut out = Vec::new();
        handler.tick(&mut out).map_err(|e| e.to_string())?;
        if out.is_empty() {
            return Ok(());
        }
        self.open_batch();
        self.join_txn(handler)?;
        for r in out {
            self.emit(r)?;
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
            // open batch cannot commit either: give it back. A sealed batch's commit either
            // lands (its offsets were sent with the old generation) or fails and is rolled back.
            self.abort(handler)?;
            tracing::info!(loop_name = %self.spec.name, ?revoked, "partitions revoked");
            for tp in &revoked {
                self.owned.remove(tp);
            }
            handler.on_revoked(&revoked);
        }
        if !assigned.is_empty() {
            // Restoring can take longer than the transaction timeout: close the open batch first.
            self.finish(handler)?;
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
        self.open_batch();
        if let Some(b) = self.batch.as_mut() {
            // Noted before anything can fail, so that a failure on this very record (even to
            // begin the transaction) rewinds to it.
            b.start.entry(tp.clone()).or_insert(m.offset());
        }
        self.join_txn(handler)?;
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
            self.emit(r)?;
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
                value: Some(v.as_ref()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&r.topic).headers(headers);
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

    /// Closes the open batch and hands its commit to the commit thread.
    fn seal<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        if let Err(e) = self.join_txn(handler) {
            tracing::warn!(loop_name = %self.spec.name, reason = %e, "aborting batch");
            return self.abort(handler);
        }
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in &batch.next {
            if let Err(e) = offsets.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "aborting batch");
                return self.rollback(handler, [Some(batch), None]);
            }
        }
        let metadata = if offsets.count() > 0 {
            self.consumer.group_metadata()
        } else {
            None
        };
        handler.on_seal();
        self.committer
            .start(offsets, metadata)
            .map_err(RuntimeError::Config)?;
        self.sealed = Some(batch);
        Ok(())
    }

    /// Takes the outcome of the running commit, if any: at once (`Some(ZERO)`), waiting up to
    /// a time, or as long as it takes (`None`). A commit lets the open batch begin its
    /// transaction; a failure rolls back the sealed batch and the open one.
    fn settle<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        wait: Option<Duration>,
    ) -> Result<(), RuntimeError> {
        let blocking = wait != Some(Duration::ZERO);
        let t0 = blocking.then(Instant::now);
        let report = self.committer.report(wait);
        if let Some(t0) = t0 {
            self.phases.stall += t0.elapsed();
        }
        let Some(report) = report else {
            return Ok(());
        };
        self.phases.flush += report.flush;
        self.phases.offsets += report.offsets;
        self.phases.commit += report.commit;
        let sealed = self.sealed.take();
        match report.result {
            Ok(()) => {
                let delivered = self.deliveries.take().unwrap_or_else(|e| {
                    tracing::warn!(loop_name = %self.spec.name, error = %e, "committed despite a delivery report");
                    Vec::new()
                });
                handler.on_delivered(&delivered);
                handler.on_commit();
                self.stats.commits += 1;
                self.backoff = MIN_BACKOFF;
                if let Some(b) = sealed {
                    self.stats.records += b.records as u64;
                    self.phases.records += b.records as u64;
                    self.phases.batches += 1;
                    tracing::debug!(loop_name = %self.spec.name, records = b.records,
                        open_ms = b.started.elapsed().as_millis() as u64, "batch committed");
                }
                if let Err(e) = self.join_txn(handler) {
                    tracing::warn!(loop_name = %self.spec.name, reason = %e, "aborting batch");
                    let open = self.batch.take();
                    return self.rollback(handler, [open, None]);
                }
                Ok(())
            }
            Err(failure) => {
                let reason = match failure {
                    CommitFailure::Kafka(e) if is_fatal(&e) => {
                        // Fenced or otherwise unusable producer: this instance must stop.
                        return Err(e.into());
                    }
                    CommitFailure::Kafka(e) => e.to_string(),
                    CommitFailure::Abort(reason) => reason,
                };
                tracing::warn!(loop_name = %self.spec.name, %reason, "aborting batch");
                // The open batch was decided on top of the sealed one: both go.
                let open = self.batch.take();
                self.rollback(handler, [sealed, open])
            }
        }
    }

    /// Commits everything handled so far and waits for it.
    fn finish<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        self.settle(handler, None)?;
        if self.batch.is_some() {
            self.seal(handler)?;
            self.settle(handler, None)?;
        }
        Ok(())
    }

    /// Gives back the open batch (after the sealed one's commit has settled either way).
    fn abort<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        self.settle(handler, None)?;
        match self.batch.take() {
            Some(batch) => self.rollback(handler, [Some(batch), None]),
            None => Ok(()),
        }
    }

    /// Aborts the producer's transaction, rolls the handler back to the last commit and
    /// rewinds the consumer, on every partition it still owns, to the first record of the
    /// oldest batch given.
    fn rollback<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        batches: [Option<Batch>; 2],
    ) -> Result<(), RuntimeError> {
        let began = batches.iter().flatten().any(|b| b.in_txn);
        if began {
            // librdkafka's abort waits for the report of every outstanding record, and only a
            // poll serves reports: drop what is still queued and drain the rest first, so the
            // abort cannot time out on reports nobody reads (as after Kafka stalled).
            self.producer.purge(PurgeConfig::default().queue());
            if let Err(e) = wait_acknowledged(&self.producer, self.txn_timeout) {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "records outstanding at abort");
            }
            if let Err(e) = self.producer.abort_transaction(self.txn_timeout) {
                if is_fatal(&e) {
                    return Err(e.into());
                }
                tracing::warn!(loop_name = %self.spec.name, error = %e, "abort failed");
            }
        }
        let _ = self.deliveries.take();
        self.stats.aborts += 1;
        handler.on_abort();
        let mut rewind: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for b in batches.into_iter().flatten() {
            for (tp, offset) in b.start {
                let at = rewind.entry(tp).or_insert(offset);
                *at = (*at).min(offset);
            }
        }
        for ((topic, partition), offset) in &rewind {
            if !self.owned(topic, *partition) {
                continue;
            }
            let sought = self.consumer.seek(
                topic,
                *partition,
                Offset::Offset(*offset),
                Duration::from_secs(10),
            );
            if let Err(e) = sought {
                // A partition lost with an expired session cannot be rewound, and need not be:
                // its next owner (this instance too, after the rebalance) restores and starts
                // from the committed offsets. One still assigned must be rewound, or input
                // would be skipped.
                let assigned = self
                    .consumer
                    .assignment()
                    .map_or(true, |a| a.find_partition(topic, *partition).is_some());
                if assigned {
                    return Err(e.into());
                }
                tracing::warn!(loop_name = %self.spec.name, topic, partition, error = %e,
                    "partition lost before it could be rewound");
            }
        }
        Ok(())
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.is_fatal(),
        _ => false,
    }
}
