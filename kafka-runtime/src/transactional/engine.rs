//! The loop itself: polls input, hands records to the handler, sends what it produces, and
//! closes batches — sealing one for the commit thread while the next one fills.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::commit::{Committer, DELIVERY_WAIT, LoopProducer, wait_acknowledged};
use super::contexts::{DeliveryLog, LoopContext, ProduceContext, RebalanceLog};
use super::recovery::{Bound, CALL_TIMEOUT, FENCED, Recovery, is_fenced, resume};
use super::{InputRecord, LoopSpec, LoopStats, OutRecord, Phases, TxnHandler};
use crate::client_log::Throttle;
use crate::dead_letter::dead_letter;
use crate::headers::TRACEPARENT;
use crate::health::{LoopHealth, Phase};
use crate::telemetry::{self, WorkSpan};
use crate::{HandleError, KafkaSettings, RuntimeError};
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanKind};

/// How long the loop waits for a running commit when no input is waiting.
const COMMIT_WAIT: Duration = Duration::from_millis(1);
/// First pause after a transient failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a loop whose batch is full waits for the running commit before it serves the
/// consumer and the shutdown signal again.
const COMMIT_STALL_WAIT: Duration = Duration::from_millis(100);
/// Fencings within [`FENCING_WINDOW`] that stop the loop instead of rebuilding it again.
const MAX_FENCINGS: usize = 3;
const FENCING_WINDOW: Duration = Duration::from_secs(300);
/// Offsets between a partition's next offset and its end that may hold nothing to deliver.
const UNDELIVERED_SLACK: i64 = 10;
/// How often an idle loop checks for input waiting that its consumer does not deliver.
const LAG_CHECK: Duration = Duration::from_secs(5);
/// Longest a new session waits for its input topics to exist with leaders.
const TOPIC_WAIT: Duration = Duration::from_secs(60);

/// Why a session of the loop ended early.
#[derive(Debug)]
enum Fault {
    /// The clients can no longer be used (fenced, epoch bumped, a call that never completes,
    /// a fatal consumer error, a restore that failed): build new ones and restore.
    Rebuild(String),
    /// Nothing a new session would do differently (configuration, threads).
    Stop(RuntimeError),
}

impl From<RuntimeError> for Fault {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Config(_)
            | RuntimeError::Thread(_)
            | RuntimeError::Unrecoverable { .. } => Self::Stop(e),
            RuntimeError::Kafka(_) | RuntimeError::Restore { .. } => Self::Rebuild(e.to_string()),
        }
    }
}

impl From<KafkaError> for Fault {
    fn from(e: KafkaError) -> Self {
        Self::Rebuild(e.to_string())
    }
}

/// Runs sessions of the loop until shutdown: each session owns a consumer and a producer; a
/// session that fails in a way those clients cannot recover from is torn down, the handler is
/// rolled back and drops its state, and a new session rebuilds the clients and restores.
pub(super) fn run<H: TxnHandler>(
    settings: &KafkaSettings,
    spec: &LoopSpec,
    handler: &mut H,
    shutdown: &CancellationToken,
    health: &LoopHealth,
) -> Result<LoopStats, RuntimeError> {
    let mut stats = LoopStats::default();
    let mut backoff = MIN_BACKOFF;
    let give_up_after = Duration::from_millis(settings.give_up_after_ms);
    let mut failing_since: Option<Instant> = None;
    // Fencings by another producer with our transactional id: one is a zombie's fate (or a
    // broker that timed us out); several in a row mean two live instances share the id and
    // would fence each other forever.
    let mut fencings: Vec<Instant> = Vec::new();
    loop {
        health.set_phase(Phase::Starting);
        let commits_before = stats.commits;
        let (result, owned) = match new_consumer(settings, spec) {
            Ok((consumer, log)) => {
                let outcome = match Engine::open(settings, spec, shutdown, health, &consumer, log) {
                    Ok(mut engine) => {
                        engine.stats = stats;
                        let result = engine.run(handler, shutdown);
                        stats = engine.stats;
                        let owned: Vec<(String, i32)> =
                            std::mem::take(&mut engine.owned).into_iter().collect();
                        engine.close();
                        (result, owned)
                    }
                    Err(f) => (Err(f), Vec::new()),
                };
                consumer.unsubscribe();
                outcome
            }
            Err(f) => (Err(f), Vec::new()),
        };
        let reason = match result {
            Ok(()) => {
                health.set_phase(Phase::Stopped);
                return Ok(stats);
            }
            Err(Fault::Stop(e)) => {
                health.set_phase(Phase::Stopped);
                tracing::error!(loop_name = %spec.name, error = %e, "transactional loop stopped");
                return Err(e);
            }
            Err(Fault::Rebuild(reason)) => reason,
        };
        // Whatever was not committed is given back; the partitions' next owner (this loop's
        // next session, usually) restores them from Kafka.
        handler.on_abort();
        if !owned.is_empty() {
            handler.on_revoked(&owned);
        }
        if reason.starts_with(FENCED) {
            fencings.retain(|t| t.elapsed() < FENCING_WINDOW);
            fencings.push(Instant::now());
            if fencings.len() >= MAX_FENCINGS {
                health.set_phase(Phase::Stopped);
                let e = RuntimeError::Config(format!(
                    "loop {} was fenced {} times in {} s: another instance uses transactional id {:?}; \
                     give every instance its own STREAMCART_INSTANCE_ID",
                    spec.name,
                    fencings.len(),
                    FENCING_WINDOW.as_secs(),
                    spec.transactional_id
                ));
                tracing::error!(loop_name = %spec.name, error = %e, "transactional loop stopped");
                return Err(e);
            }
        }
        stats.rebuilds += 1;
        health.rebuilt();
        health.fault(&reason);
        if shutdown.is_cancelled() {
            tracing::warn!(loop_name = %spec.name, %reason,
                "stopping without committing the last batch; its input will be handled again by the next owner");
            health.set_phase(Phase::Stopped);
            return Ok(stats);
        }
        if stats.commits > commits_before {
            failing_since = None;
            backoff = MIN_BACKOFF;
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= give_up_after {
            health.set_phase(Phase::Stopped);
            let e = RuntimeError::Unrecoverable {
                loop_name: spec.name.clone(),
                seconds: since.elapsed().as_secs(),
                reason,
            };
            tracing::error!(loop_name = %spec.name, error = %e, "transactional loop gives up");
            return Err(e);
        }
        health.set_phase(Phase::Recovering);
        tracing::warn!(loop_name = %spec.name, %reason, backoff_ms = backoff.as_millis() as u64,
            rebuilds = stats.rebuilds, "rebuilding the loop's Kafka clients");
        sleep_unless(shutdown, backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The session's consumer, with the log its rebalance callbacks write to.
fn new_consumer(
    settings: &KafkaSettings,
    spec: &LoopSpec,
) -> Result<(BaseConsumer<LoopContext>, Arc<Mutex<RebalanceLog>>), Fault> {
    let log = Arc::new(Mutex::new(RebalanceLog::default()));
    let consumer = settings
        .transactional_consumer(&spec.group_id, Some(&spec.transactional_id))
        .create_with_context(LoopContext {
            log: log.clone(),
            group: spec.group_id.clone(),
        })
        .map_err(|e| Fault::Stop(e.into()))?;
    Ok((consumer, log))
}

/// Sleeps for `d`, or less if shutdown fires.
fn sleep_unless(shutdown: &CancellationToken, d: Duration) {
    let until = Instant::now() + d;
    while !shutdown.is_cancelled() {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Waits until every topic exists and each of its partitions has a leader: a subscription to
/// a missing topic is only noticed at a later metadata refresh, minutes away.
fn wait_for_topics(
    consumer: &BaseConsumer<LoopContext>,
    spec: &LoopSpec,
    shutdown: &CancellationToken,
) -> Result<(), Fault> {
    let t0 = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let mut missing = Vec::new();
        for topic in &spec.input_topics {
            match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
                Ok(md) => {
                    let ready = md.topics().iter().any(|t| {
                        t.name() == topic
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    });
                    if !ready {
                        missing.push(topic.as_str());
                    }
                }
                Err(e) => {
                    tracing::debug!(loop_name = %spec.name, topic, error = %e, "metadata request failed");
                    missing.push(topic.as_str());
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if shutdown.is_cancelled() {
            return Err(Fault::Rebuild(
                "shutdown while waiting for input topics".into(),
            ));
        }
        if t0.elapsed() >= TOPIC_WAIT {
            return Err(Fault::Rebuild(format!(
                "input topics without leaders after {} s: {}",
                TOPIC_WAIT.as_secs(),
                missing.join(", ")
            )));
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(loop_name = %spec.name, ?missing, "waiting for input topics to exist with leaders");
            last_log = Instant::now();
        }
        sleep_unless(shutdown, Duration::from_millis(250));
    }
}

/// Input handled since a transaction boundary, and what it produced.
struct Batch {
    started: Instant,
    records: usize,
    /// Records of this batch sent to the dead-letter topic: counted once the batch commits.
    dead_letters: u64,
    /// First offset handled per partition in this batch: where to rewind on abort.
    start: BTreeMap<(String, i32), i64>,
    /// Next offset to consume per partition: what to commit.
    next: BTreeMap<(String, i32), i64>,
    /// Output held back because the previous batch's commit still holds the producer.
    held: Vec<OutRecord>,
    /// The batch's transaction is open: its output goes straight to the producer.
    in_txn: bool,
    /// The first record's `traceparent`, for output no single record caused (snapshots).
    first_trace: Option<String>,
    /// The sampled spans of the batch's records, which its commit span links.
    spans: Vec<SpanContext>,
}

impl Batch {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            records: 0,
            dead_letters: 0,
            start: BTreeMap::new(),
            next: BTreeMap::new(),
            held: Vec::new(),
            in_txn: false,
            first_trace: None,
            spans: Vec::new(),
        }
    }
}

struct Engine<'a> {
    settings: &'a KafkaSettings,
    spec: &'a LoopSpec,
    health: &'a LoopHealth,
    shutdown: &'a CancellationToken,
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
    /// Consumer errors come in bursts while a broker is away: one line a second.
    consumer_errors: Throttle,
    /// Since when the loop has had nothing to handle, and when it last looked for input that
    /// is waiting but not delivered.
    idle: Option<(Instant, Instant)>,
}

impl<'a> Engine<'a> {
    /// Builds the session's clients: a producer whose `init_transactions` fences any earlier
    /// instance with the same id (and settles what it left open), its commit thread, and a
    /// consumer subscribed once every input topic has leaders.
    fn open(
        settings: &'a KafkaSettings,
        spec: &'a LoopSpec,
        shutdown: &'a CancellationToken,
        health: &'a LoopHealth,
        consumer: &'a BaseConsumer<LoopContext>,
        rebalances: Arc<Mutex<RebalanceLog>>,
    ) -> Result<Self, Fault> {
        let txn_timeout = Duration::from_millis(settings.transaction_timeout_ms.max(5_000));
        let deliveries = DeliveryLog::default();
        let producer: Arc<LoopProducer> = Arc::new(
            settings
                .transactional_producer(&spec.transactional_id)
                .create_with_context(ProduceContext {
                    log: deliveries.clone(),
                })
                .map_err(|e| Fault::Stop(e.into()))?,
        );
        let mut bound = Bound::new(call_budget(txn_timeout), shutdown);
        resume("init_transactions", &mut bound, |t| {
            producer.init_transactions(t)
        })
        .map_err(|r| Fault::Rebuild(r.reason().to_owned()))?;
        let committer = Committer::spawn(
            &spec.name,
            producer.clone(),
            deliveries.clone(),
            txn_timeout,
            shutdown.clone(),
        )
        .map_err(|e| Fault::Stop(RuntimeError::Thread(e)))?;
        wait_for_topics(consumer, spec, shutdown)?;
        let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        health.set_phase(Phase::Running);
        Ok(Self {
            settings,
            spec,
            health,
            shutdown,
            consumer,
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
            consumer_errors: Throttle::new(Duration::from_secs(1)),
            idle: None,
        })
    }

    /// Ends the session's producer side: the commit thread first (it shares the producer).
    fn close(self) {
        let Self {
            producer,
            committer,
            ..
        } = self;
        drop(committer);
        drop(producer);
    }

    fn run<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        shutdown: &CancellationToken,
    ) -> Result<(), Fault> {
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
            self.settle(
                handler,
                Some(if full {
                    COMMIT_STALL_WAIT
                } else {
                    Duration::ZERO
                }),
            )?;
            if full && self.committer.busy() {
                // Still committing (a bounded call): look at SIGTERM and the loop's health meanwhile.
                self.watch();
                continue;
            }
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
                    if let Err(r) = handled {
                        self.recover(handler, r, "handling a record")?;
                        continue;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                        return Err(Fault::Rebuild(format!("fatal consumer error: {e}")));
                    }
                    if let Some(held_back) = self.consumer_errors.admit(Instant::now()) {
                        tracing::warn!(loop_name = %self.spec.name, error = %e, held_back, "consumer error")
                    }
                }
            }
            if let Err(r) = self.tick(handler) {
                self.recover(handler, r, "a timer")?;
                continue;
            }
            // One clock reading per turn serves the phase times and the batch's age.
            let now = Instant::now();
            self.phases.handle += now - t1;
            if drained && self.batch.is_none() && !self.committer.busy() {
                self.idle()?;
            } else {
                self.idle = None;
            }
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
                self.watch();
                if self.batch.is_none() && !self.committer.busy() {
                    self.store_consumed();
                }
            }
        }
    }

    /// Nothing to handle: progress if the loop is caught up. If input is waiting on an owned
    /// partition that the consumer does not deliver (a fetch that never resumes after a broker
    /// fault), that is no progress, and past the stall bound the session is rebuilt.
    fn idle(&mut self) -> Result<(), Fault> {
        let now = Instant::now();
        let (since, checked) = *self.idle.get_or_insert((now, now));
        if now - checked < LAG_CHECK {
            return Ok(());
        }
        self.idle = Some((since, now));
        let waiting = self.undelivered();
        if waiting.is_empty() {
            self.health.progress();
            return Ok(());
        }
        let stalled = now - since;
        self.watch();
        if stalled >= Duration::from_millis(self.settings.stall_after_ms) {
            return Err(Fault::Rebuild(format!(
                "input waiting but not delivered for {} s: {}",
                stalled.as_secs(),
                waiting.join(", ")
            )));
        }
        Ok(())
    }

    /// Owned partitions whose next offset is behind the end a read_committed reader may see,
    /// as `topic[partition] next/end`; empty when caught up or when Kafka cannot say. The next
    /// offset is the consumer's position, or, for a partition nothing was delivered from since
    /// its assignment (librdkafka has no position for it then), the group's committed offset.
    fn undelivered(&self) -> Vec<String> {
        let Ok(positions) = self.consumer.position() else {
            return Vec::new();
        };
        let offset_of = |list: &TopicPartitionList, topic: &str, partition: i32| {
            list.find_partition(topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
        };
        let mut unknown = TopicPartitionList::new();
        for (topic, partition) in &self.owned {
            if offset_of(&positions, topic, *partition).is_none() {
                unknown.add_partition(topic, *partition);
            }
        }
        // A committed offset that cannot be read leaves the partition's start unknown: with input
        // waiting, that is no progress either (a pending transactional offset commit that never
        // gets its marker answers "unstable offset commit" to every fetch of it).
        let committed = if unknown.count() > 0 {
            self.consumer
                .committed_offsets(unknown, Duration::from_secs(1))
                .ok()
        } else {
            None
        };
        let mut out = Vec::new();
        for (topic, partition) in &self.owned {
            let next = offset_of(&positions, topic, *partition).or_else(|| {
                committed
                    .as_ref()
                    .and_then(|c| offset_of(c, topic, *partition))
            });
            let Ok((low, end)) =
                self.consumer
                    .fetch_watermarks(topic, *partition, Duration::from_secs(1))
            else {
                continue;
            };
            // No position and no committed offset: a partition never consumed by the group,
            // read from its start. Transaction markers (one per transaction) and a short aborted
            // tail sit between the last record and the end without anything to deliver, hence
            // the slack.
            if end - next.unwrap_or(low) > UNDELIVERED_SLACK {
                out.push(format!("{topic}[{partition}] {next:?}/{end}"));
            }
        }
        out
    }

    /// Reports the loop unhealthy when it has had work and no progress for too long.
    fn watch(&self) {
        let bound = Duration::from_millis(self.settings.stall_after_ms);
        self.health.check(bound, || {
            format!(
                "{} records handled and not committed, commit {}",
                self.batch.as_ref().map_or(0, |b| b.records)
                    + self.sealed.as_ref().map_or(0, |b| b.records),
                if self.committer.busy() {
                    "running"
                } else {
                    "idle"
                }
            )
        });
    }

    /// Handles a failure of the turn: an abortable one rolls the batch back and pauses; one
    /// the clients cannot recover from ends the session.
    fn recover<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        r: Recovery,
        during: &str,
    ) -> Result<(), Fault> {
        match r {
            Recovery::Abort(reason) => {
                tracing::warn!(loop_name = %self.spec.name, %reason, during, "transient failure; retrying the batch");
                self.health.fault(&reason);
                self.abort(handler)?;
                self.pause();
                Ok(())
            }
            Recovery::Rebuild(reason) => Err(Fault::Rebuild(reason)),
        }
    }

    fn pause(&mut self) {
        sleep_unless(self.shutdown, self.backoff);
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
    fn join_txn<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Recovery> {
        if self.committer.busy() || self.batch.as_ref().is_none_or(|b| b.in_txn) {
            return Ok(());
        }
        // begin_transaction is local: it fails only when the producer's state is wrong, which
        // no retry of it can mend.
        self.producer.begin_transaction().map_err(|e| {
            if is_fenced(&e) {
                Recovery::Rebuild(format!("{FENCED}: begin_transaction: {e}"))
            } else {
                Recovery::Rebuild(format!("begin_transaction: {e}"))
            }
        })?;
        let held = match self.batch.as_mut() {
            Some(b) => {
                b.in_txn = true;
                std::mem::take(&mut b.held)
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        handler
            .on_begin(&mut out)
            .map_err(|e| Recovery::Abort(e.to_string()))?;
        if !out.is_empty() {
            let first = self.batch.as_ref().and_then(|b| b.first_trace.clone());
            for r in &mut out {
                trace_untraced(r, first.as_deref(), handler.timer_operation());
            }
        }
        for r in out.into_iter().chain(held) {
            self.send(r)?;
        }
        Ok(())
    }

    /// Sends a record of the open batch, or holds it until the batch's transaction begins.
    fn emit(&mut self, r: OutRecord) -> Result<(), Recovery> {
        match self.batch.as_mut() {
            Some(b) if !b.in_txn => {
                b.held.push(r);
                Ok(())
            }
            _ => self.send(r),
        }
    }

    fn tick<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Recovery> {
        let mut out = Vec::new();
        handler
            .tick(&mut out)
            .map_err(|e| Recovery::Abort(e.to_string()))?;
        if out.is_empty() {
            return Ok(());
        }
        for r in &mut out {
            trace_untraced(r, None, handler.timer_operation());
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

    fn apply_rebalances<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Fault> {
        let (assigned, revoked) = match self.rebalances.lock() {
            Ok(mut log) => (
                std::mem::take(&mut log.assigned),
                std::mem::take(&mut log.revoked),
            ),
            Err(_) => {
                return Err(Fault::Stop(RuntimeError::Config(
                    "rebalance log poisoned".into(),
                )));
            }
        };
        if !revoked.is_empty() {
            // Offsets of revoked partitions can no longer be committed by this instance, so the
            // open batch cannot commit either: give it back. A sealed batch's commit either
            // lands (its offsets were sent with the old generation) or fails and is rolled back.
            self.abort(handler)?;
            crate::metrics::global().rebalanced(&self.spec.name, "revoke");
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
            self.health.set_phase(Phase::Restoring);
            let span = WorkSpan::start(
                "restore",
                SpanKind::Internal,
                &Context::new(),
                vec![
                    opentelemetry::KeyValue::new("streamcart.loop", self.spec.name.clone()),
                    opentelemetry::KeyValue::new("streamcart.partitions", assigned.len() as i64),
                ],
            );
            let restored = handler.on_assigned(&assigned);
            if let Err(e) = &restored {
                span.fail(&e.to_string());
            }
            drop(span);
            restored?;
            self.health.set_phase(Phase::Running);
            // A restore is work done: the stall bound counts from its end, not from the last
            // commit before it (a long restore was reported as a stuck loop the moment it ended).
            self.health.progress();
            self.owned.extend(assigned.iter().cloned());
            let metrics = crate::metrics::global();
            metrics.rebalanced(&self.spec.name, "assign");
            metrics
                .restore_seconds
                .with_label_values(&[self.spec.name.as_str()])
                .observe(t0.elapsed().as_secs_f64());
            tracing::info!(loop_name = %self.spec.name, elapsed_ms = t0.elapsed().as_millis() as u64, "restored");
        }
        Ok(())
    }

    fn handle<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), Recovery> {
        let tp = (m.topic().to_owned(), m.partition());
        self.open_batch();
        if let Some(b) = self.batch.as_mut() {
            // Noted before anything can fail, so that a failure on this very record (even to
            // begin the transaction) rewinds to it.
            b.start.entry(tp.clone()).or_insert(m.offset());
        }
        self.join_txn(handler)?;
        let input = InputRecord::of(m);
        let span = WorkSpan::for_record(handler.operation(), &self.spec.name, &input);
        // Logs written while handling carry the trace id, when traces are exported.
        let _log = span.recording().then(|| {
            tracing::info_span!("record", trace_id = %telemetry::trace_id(span.context())).entered()
        });
        let mut out = Vec::new();
        match handler.handle(&input, &mut out) {
            Ok(()) => {}
            Err(HandleError::Permanent { kind, reason }) => {
                span.fail(&reason);
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
                if let Some(b) = self.batch.as_mut() {
                    b.dead_letters += 1;
                }
            }
            Err(HandleError::Transient(reason)) => {
                span.fail(&reason);
                return Err(Recovery::Abort(reason));
            }
        }
        // What the handling produced continues its span; a record that already carries a
        // trace keeps it (a forwarded command and a dead letter are the record itself).
        let traceparent = span.traceparent();
        if let Some(tp) = &traceparent {
            for r in &mut out {
                if !r.headers.iter().any(|(k, _)| k == TRACEPARENT) {
                    r.headers
                        .push((TRACEPARENT.into(), tp.clone().into_bytes().into()));
                }
            }
        }
        for r in out {
            self.emit(r)?;
        }
        if let Some(b) = self.batch.as_mut() {
            b.next.insert(tp, input.offset + 1);
            b.records += 1;
            if b.first_trace.is_none() {
                b.first_trace = traceparent;
            }
            if span.recording() {
                b.spans.push(span.span_context());
            }
        }
        Ok(())
    }

    fn send(&mut self, r: OutRecord) -> Result<(), Recovery> {
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
        // A full local queue is back-pressure, not failure: wait for room, bounded by the
        // records' own delivery timeout.
        let deadline = Instant::now() + self.txn_timeout;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if Instant::now() > deadline {
                        return Err(Recovery::Abort(format!(
                            "produce to {}: local queue full for {} s",
                            r.topic,
                            self.txn_timeout.as_secs()
                        )));
                    }
                    record = back;
                    self.producer.poll(Duration::ZERO);
                    std::thread::sleep(DELIVERY_WAIT);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::Fatal), _)) => {
                    return Err(Recovery::Rebuild(format!(
                        "produce to {}: fatal producer error",
                        r.topic
                    )));
                }
                Err((e, _)) => return Err(Recovery::Abort(format!("produce to {}: {e}", r.topic))),
            }
        }
    }

    /// Closes the open batch and hands its commit to the commit thread.
    fn seal<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Fault> {
        if let Err(r) = self.join_txn(handler) {
            return self.recover(handler, r, "opening the transaction");
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
            .start(offsets, metadata, batch.spans.clone())
            .map_err(Fault::Rebuild)?;
        self.sealed = Some(batch);
        Ok(())
    }

    /// Takes the outcome of the running commit, if any: at once (`Some(ZERO)`), waiting up to
    /// a time, or as long as it takes (`None`; the commit itself is bounded). A commit lets the
    /// open batch begin its transaction; a failure rolls back the sealed batch and the open one.
    fn settle<H: TxnHandler>(
        &mut self,
        handler: &mut H,
        wait: Option<Duration>,
    ) -> Result<(), Fault> {
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
                self.health.progress();
                if let Some(b) = sealed {
                    let metrics = crate::metrics::global();
                    metrics.committed(
                        &self.spec.name,
                        b.records as u64,
                        report.flush + report.offsets + report.commit,
                    );
                    if b.dead_letters > 0 {
                        metrics
                            .dead_letters
                            .with_label_values(&[self.spec.name.as_str()])
                            .inc_by(b.dead_letters);
                    }
                    self.store_positions(&b.next);
                    self.stats.records += b.records as u64;
                    self.phases.records += b.records as u64;
                    self.phases.batches += 1;
                    tracing::debug!(loop_name = %self.spec.name, records = b.records,
                        open_ms = b.started.elapsed().as_millis() as u64, "batch committed");
                }
                if let Err(r) = self.join_txn(handler) {
                    return match r {
                        Recovery::Abort(reason) => {
                            tracing::warn!(loop_name = %self.spec.name, %reason, "aborting batch");
                            let open = self.batch.take();
                            self.rollback(handler, [open, None])
                        }
                        Recovery::Rebuild(reason) => Err(Fault::Rebuild(reason)),
                    };
                }
                Ok(())
            }
            Err(Recovery::Rebuild(reason)) => Err(Fault::Rebuild(reason)),
            Err(Recovery::Abort(reason)) => {
                tracing::warn!(loop_name = %self.spec.name, %reason, "aborting batch");
                self.health.fault(&reason);
                // The open batch was decided on top of the sealed one: both go.
                let open = self.batch.take();
                self.rollback(handler, [sealed, open])
            }
        }
    }

    /// Tells the consumer where the committed batch ended. The offsets went to the group
    /// through the transaction, which librdkafka's consumer does not see; without this its
    /// statistics would never know a position, and the lag gauges would stay empty. Storing
    /// commits nothing (auto commit is off).
    fn store_positions(&self, next: &BTreeMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if self.owned(topic, *partition) {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.store_offsets(&tpl)
        {
            tracing::debug!(loop_name = %self.spec.name, error = %e, "positions not stored for the lag statistics");
        }
    }

    /// With nothing open and nothing committing, everything delivered is committed: stores the
    /// consumer's positions for the lag statistics. They step over the commit markers after
    /// the last records, which the offsets a batch commits stop at, so a caught-up loop whose
    /// input is written transactionally reports a lag of 0, not 1.
    fn store_consumed(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for e in positions.elements() {
            if let Offset::Offset(o) = e.offset()
                && self.owned(e.topic(), e.partition())
            {
                let _ = tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.store_offsets(&tpl)
        {
            tracing::debug!(loop_name = %self.spec.name, error = %e, "positions not stored for the lag statistics");
        }
    }

    /// Commits everything handled so far and waits for it.
    fn finish<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Fault> {
        self.settle(handler, None)?;
        if self.batch.is_some() {
            self.seal(handler)?;
            self.settle(handler, None)?;
        }
        Ok(())
    }

    /// Gives back the open batch (after the sealed one's commit has settled either way).
    fn abort<H: TxnHandler>(&mut self, handler: &mut H) -> Result<(), Fault> {
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
    ) -> Result<(), Fault> {
        let began = batches.iter().flatten().any(|b| b.in_txn);
        if began {
            // librdkafka's abort waits for the report of every outstanding record, and only a
            // poll serves reports: drop what is still queued and drain the rest first, so the
            // abort cannot time out on reports nobody reads (as after Kafka stalled).
            self.producer.purge(PurgeConfig::default().queue());
            if let Err(e) = wait_acknowledged(&self.producer, CALL_TIMEOUT) {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "records outstanding at abort");
            }
            // A timed-out abort keeps running inside librdkafka and must be resumed by calling
            // it again; until it completes no transaction can begin.
            let mut bound = Bound::new(call_budget(self.txn_timeout), self.shutdown);
            let producer = self.producer.clone();
            resume("abort_transaction", &mut bound, |t| {
                producer.poll(Duration::ZERO);
                producer.abort_transaction(t)
            })
            .map_err(|r| Fault::Rebuild(r.reason().to_owned()))?;
        }
        let _ = self.deliveries.take();
        self.stats.aborts += 1;
        crate::metrics::global()
            .aborts
            .with_label_values(&[self.spec.name.as_str()])
            .inc();
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
            let sought =
                self.consumer
                    .seek(topic, *partition, Offset::Offset(*offset), CALL_TIMEOUT);
            if let Err(e) = sought {
                // A partition lost with an expired session cannot be rewound, and need not be:
                // its next owner (this instance too, after the rebalance) restores and starts
                // from the committed offsets. One still assigned must be rewound, or input
                // would be skipped: a new session starts from the committed offsets.
                let assigned = self
                    .consumer
                    .assignment()
                    .map_or(true, |a| a.find_partition(topic, *partition).is_some());
                if assigned {
                    return Err(Fault::Rebuild(format!("rewind {topic}[{partition}]: {e}")));
                }
                tracing::warn!(loop_name = %self.spec.name, topic, partition, error = %e,
                    "partition lost before it could be rewound");
            }
        }
        Ok(())
    }
}

/// How long a resumable transactional call (init, commit, abort) may keep being retried
/// before the session is rebuilt: past the transaction timeout the broker aborts the
/// transaction anyway, and the consumer must not go unpolled for long.
pub(super) fn call_budget(txn_timeout: Duration) -> Duration {
    (txn_timeout * 2).clamp(Duration::from_secs(10), Duration::from_secs(60))
}

/// Gives a record no input caused (a snapshot, a timer's command) a trace: the batch's first
/// record's when there is one, else a new root span called `operation`.
fn trace_untraced(r: &mut OutRecord, first: Option<&str>, operation: &'static str) {
    if r.headers.iter().any(|(k, _)| k == TRACEPARENT) {
        return;
    }
    let tp = match first {
        Some(tp) => Some(tp.to_owned()),
        None => WorkSpan::start(operation, SpanKind::Producer, &Context::new(), Vec::new())
            .traceparent(),
    };
    if let Some(tp) = tp {
        r.headers.push((TRACEPARENT.into(), tp.into_bytes().into()));
    }
}
