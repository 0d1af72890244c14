//! The loop itself: collects a batch, settles its records (decode, dead letters, apply,
//! outputs), commits the settled prefix, rewinds to the rest, and rebuilds clients that died.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::ledger::{Backoff, Ledger, PartitionKey, RecordId, Settlement};
use super::{Handler, Output, Record, Spec, Stats};
use crate::dead_letter::{self, Origin, RecordHeaders};
use crate::headers::TRACEPARENT;
use crate::health::{LoopHealth, Phase};
use crate::telemetry::{self, WorkSpan};
use crate::{HandleError, KafkaSettings, RuntimeError};

/// Longest an empty batch waits for its first record, so ticks and shutdown run regularly.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Bound of the blocking client calls made off the runtime (seek, final commit, metadata).
const CLIENT_CALL: Duration = Duration::from_secs(10);

type LoopConsumer = StreamConsumer<LoopContext>;

/// Records what librdkafka reports from its callbacks, for the loop to act on between batches.
struct LoopContext {
    name: String,
    /// The consumer group, labelling the lag gauges its statistics feed.
    group: String,
    reassigned: AtomicBool,
    commit_failed: AtomicBool,
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
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let kind = match rebalance {
            Rebalance::Assign(_) => "assign",
            Rebalance::Revoke(_) => "revoke",
            Rebalance::Error(_) => return,
        };
        crate::metrics::global().rebalanced(&self.name, kind);
        self.reassigned.store(true, Ordering::Relaxed);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(loop_name = %self.name, error = %e, "offset commit failed; will repeat it");
                self.commit_failed.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// How far a batch got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Everything attempted is settled.
    Done,
    /// The retry budget ran out: commit the settled prefix, rewind to the rest.
    OutOfTime,
    /// Shutdown: commit the settled prefix and return.
    Stopped,
}

/// Result of one bounded handler call.
enum Call<T> {
    Done(T),
    TimedOut,
    Stopped,
}

/// Result of applying items with retries.
enum Applied {
    Flow(Flow),
    Refused(&'static str, String),
}

/// What the consumer loop asks of its caller.
enum Next {
    Finish,
    Rebuild,
}

struct Engine<'a> {
    settings: &'a KafkaSettings,
    spec: &'a Spec,
    shutdown: &'a CancellationToken,
    producer: FutureProducer,
    stats: Stats,
    /// Progress as readiness probes see it.
    health: LoopHealth,
    /// Positions asked to be committed for partitions of the current consumer.
    committed: BTreeMap<PartitionKey, i64>,
    /// When an idle loop last committed past the commit markers after its input.
    markers_stepped: Instant,
}

pub(super) async fn run<H: Handler>(
    settings: &KafkaSettings,
    spec: &Spec,
    handler: &mut H,
    shutdown: &CancellationToken,
) -> Result<Stats, RuntimeError> {
    if spec.input_topics.is_empty() || spec.batch_max == 0 {
        return Err(RuntimeError::Config(format!(
            "loop {}: needs input topics and a batch size above zero",
            spec.name
        )));
    }
    let mut engine = Engine {
        settings,
        spec,
        shutdown,
        producer: settings.producer().create()?,
        stats: Stats::default(),
        health: LoopHealth::register(&spec.name),
        committed: BTreeMap::new(),
        markers_stepped: Instant::now(),
    };
    let mut ends: Option<BTreeMap<PartitionKey, i64>> = None;
    let mut backoff = engine.backoff();
    loop {
        let consumer = Arc::new(engine.consumer()?);
        engine.health.set_phase(Phase::Running);
        engine.committed.clear();
        handler.on_reassigned();
        match engine.consume(&consumer, handler, &mut ends).await {
            Next::Finish => {
                engine.final_commit(&consumer).await;
                release(consumer).await;
                engine.health.set_phase(Phase::Stopped);
                tracing::info!(loop_name = %spec.name, stats = ?engine.stats, "stopped");
                return Ok(engine.stats);
            }
            Next::Rebuild => {
                engine.stats.consumer_rebuilds += 1;
                engine.health.set_phase(Phase::Recovering);
                engine.health.rebuilt();
                engine
                    .health
                    .fault("the consumer hit a fatal error and is rebuilt");
                release(consumer).await;
                let pause = backoff.next_pause();
                tracing::warn!(loop_name = %spec.name, ?pause, "rebuilding the consumer; it resumes from the committed offsets");
                if !engine.sleep(pause).await {
                    engine.health.set_phase(Phase::Stopped);
                    return Ok(engine.stats);
                }
            }
        }
    }
}

/// Closes a consumer off the runtime: leaving the group blocks for a round trip or more.
async fn release(consumer: Arc<LoopConsumer>) {
    let job = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(CLIENT_CALL, job).await.is_err() {
        tracing::warn!("closing a consumer took too long; left to finish in the background");
    }
}

impl Engine<'_> {
    fn backoff(&self) -> Backoff {
        Backoff::new(self.spec.min_backoff, self.spec.max_backoff)
    }

    fn consumer(&self) -> Result<LoopConsumer, RuntimeError> {
        let context = LoopContext {
            name: self.spec.name.clone(),
            group: self.spec.group_id.clone(),
            reassigned: AtomicBool::new(false),
            commit_failed: AtomicBool::new(false),
        };
        let consumer: LoopConsumer = self
            .settings
            .transactional_consumer(&self.spec.group_id, self.spec.instance_id.as_deref())
            .create_with_context(context)?;
        let topics: Vec<&str> = self.spec.input_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(consumer)
    }

    /// Sleeps `pause` unless shutdown comes first; false on shutdown.
    async fn sleep(&self, pause: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Runs one handler call within the call timeout; after shutdown, within the grace period.
    async fn call<T>(&self, fut: impl Future<Output = T>) -> Call<T> {
        let grace = self.spec.shutdown_grace;
        let shutdown = self.shutdown;
        tokio::select! {
            r = tokio::time::timeout(self.spec.call_timeout, fut) => match r {
                Ok(v) => Call::Done(v),
                Err(_) => Call::TimedOut,
            },
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => Call::Stopped,
        }
    }

    /// Waits before retrying a failed step; says whether to retry (`Done`) or give up.
    async fn pause(&mut self, backoff: &mut Backoff, deadline: Instant) -> Flow {
        if self.shutdown.is_cancelled() {
            return Flow::Stopped;
        }
        let now = Instant::now();
        if now >= deadline {
            return Flow::OutOfTime;
        }
        self.stats.retries += 1;
        let pause = backoff.next_pause().min(deadline - now);
        if self.sleep(pause).await {
            Flow::Done
        } else {
            Flow::Stopped
        }
    }

    async fn consume<H: Handler>(
        &mut self,
        consumer: &Arc<LoopConsumer>,
        handler: &mut H,
        ends: &mut Option<BTreeMap<PartitionKey, i64>>,
    ) -> Next {
        let mut backoff = self.backoff();
        loop {
            if self.shutdown.is_cancelled() {
                return Next::Finish;
            }
            if self.spec.stop_at_end {
                if ends.is_none() {
                    match self.end_offsets(consumer).await {
                        Ok(e) => *ends = Some(e),
                        Err(e) => {
                            let pause = backoff.next_pause();
                            tracing::warn!(loop_name = %self.spec.name, error = %e, ?pause, "cannot read the end offsets yet");
                            if !self.sleep(pause).await {
                                return Next::Finish;
                            }
                            continue;
                        }
                    }
                }
                if let Some(ends) = ends.as_ref()
                    && caught_up(ends, consumer)
                {
                    return Next::Finish;
                }
            }
            if consumer
                .context()
                .commit_failed
                .swap(false, Ordering::Relaxed)
            {
                self.recommit(consumer);
            }
            if let Call::Stopped = self.call(handler.tick()).await {
                return Next::Finish;
            }
            let batch = match self.collect(consumer).await {
                Some(batch) => batch,
                None => return Next::Rebuild,
            };
            if consumer.context().reassigned.swap(false, Ordering::Relaxed) {
                self.forget_revoked(consumer);
                handler.on_reassigned();
            }
            if self.shutdown.is_cancelled() {
                // Whatever was collected is read again by the next owner of its partitions.
                return Next::Finish;
            }
            if batch.is_empty() {
                // Nothing waiting is progress too: an idle loop is not a stuck one.
                self.health.progress();
                self.step_over_markers(consumer);
                continue;
            }
            self.stats.read += batch.len() as u64;
            self.stats.batches += 1;
            let t0 = Instant::now();
            let (ledger, flow) = self.process(handler, &batch).await;
            let (applied, dead) = ledger.counts();
            let positions = ledger.commit_positions();
            let committing = !positions.is_empty();
            self.commit(consumer, positions);
            self.stats.applied += applied;
            self.stats.dead_letters += dead;
            if committing {
                self.record_batch(&batch, applied, dead, t0.elapsed());
            }
            match flow {
                Flow::Done => {
                    backoff.reset();
                    self.health.progress();
                }
                Flow::Stopped => return Next::Finish,
                Flow::OutOfTime => {
                    self.stats.rewinds += 1;
                    let positions = ledger.rewind_positions();
                    self.health
                        .fault("a batch ran out of its retry budget and was rewound");
                    let bound = Duration::from_millis(self.settings.stall_after_ms);
                    self.health
                        .check(bound, || format!("{} records not applied", batch.len()));
                    tracing::warn!(loop_name = %self.spec.name, ?positions, "batch out of retry budget; rewinding to its first unsettled records");
                    // The handler keeps its state: the partitions are still this instance's,
                    // and the records read again are the ones it has not applied.
                    if !self.rewind(consumer, positions).await {
                        return Next::Rebuild;
                    }
                }
            }
        }
    }

    /// Collects a batch: waits up to [`IDLE_POLL`] for its first record, then takes only what
    /// has already arrived, so the batch closes as soon as the input runs dry. `None` when the
    /// consumer hit a fatal error and must be rebuilt.
    async fn collect(&mut self, consumer: &LoopConsumer) -> Option<Vec<OwnedMessage>> {
        let mut batch = Vec::new();
        let opened = Instant::now();
        while batch.len() < self.spec.batch_max
            && (batch.is_empty() || opened.elapsed() < self.spec.batch_wait)
        {
            let wait = if batch.is_empty() {
                IDLE_POLL
            } else {
                Duration::ZERO
            };
            let polled = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                r = tokio::time::timeout(wait, consumer.recv()) => r,
            };
            match polled {
                Err(_) => break,
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        tracing::error!(loop_name = %self.spec.name, ?code, %reason, "fatal consumer error");
                        return None;
                    }
                    tracing::warn!(loop_name = %self.spec.name, error = %e, "consumer error; polling on");
                    break;
                }
            }
        }
        Some(batch)
    }

    /// Settles as many records of `batch` as it can, in order.
    async fn process<H: Handler>(
        &mut self,
        handler: &mut H,
        batch: &[OwnedMessage],
    ) -> (Ledger, Flow) {
        let mut ledger = Ledger::new();
        let ids: Vec<RecordId> = batch
            .iter()
            .map(|m| ledger.track(m.topic(), m.partition(), m.offset()))
            .collect();
        let deadline = Instant::now() + self.spec.retry_budget;
        let mut items = Vec::with_capacity(batch.len());
        let mut item_ids = Vec::with_capacity(batch.len());
        // One span per record, from its decoding until its batch is applied.
        let mut spans = Vec::with_capacity(batch.len());
        let mut flow = Flow::Done;
        'records: for (m, id) in batch.iter().zip(&ids) {
            let record = Record::of(m);
            let span = WorkSpan::for_record(handler.operation(), &self.spec.name, &record);
            let mut backoff = self.backoff();
            loop {
                match self.call(handler.decode(&record)).await {
                    Call::Done(Ok(item)) => {
                        items.push(item);
                        item_ids.push(*id);
                        spans.push(span);
                        break;
                    }
                    Call::Done(Err(HandleError::Permanent { kind, reason })) => {
                        span.fail(&reason);
                        match self.dead_letter(&record, kind, &reason, deadline).await {
                            Flow::Done => ledger.settle(*id, Settlement::DeadLettered),
                            f => {
                                flow = f;
                                break 'records;
                            }
                        }
                        break;
                    }
                    Call::Done(Err(HandleError::Transient(reason))) => {
                        tracing::warn!(loop_name = %self.spec.name, offset = record.offset, %reason, "transient decode failure; retrying the same record");
                    }
                    Call::TimedOut => {
                        tracing::warn!(loop_name = %self.spec.name, offset = record.offset, "decode timed out; retrying the same record");
                    }
                    Call::Stopped => {
                        flow = Flow::Stopped;
                        break 'records;
                    }
                }
                match self.pause(&mut backoff, deadline).await {
                    Flow::Done => {}
                    f => {
                        flow = f;
                        break 'records;
                    }
                }
            }
        }
        // Items decoded before a stop are still applied: their records may come before the
        // stop in their partitions, and applying them again later is harmless.
        if flow != Flow::Stopped && !items.is_empty() {
            let decoded = Items {
                items: &items,
                ids: &item_ids,
                spans: &spans,
            };
            let applied = self
                .apply(handler, batch, decoded, &mut ledger, deadline)
                .await;
            if flow == Flow::Done {
                flow = applied;
            }
        }
        (ledger, flow)
    }

    /// Applies `items` together; when that fails permanently, one by one, dead-lettering each
    /// item refused on its own.
    async fn apply<H: Handler>(
        &mut self,
        handler: &mut H,
        batch: &[OwnedMessage],
        decoded: Items<'_, H::Item>,
        ledger: &mut Ledger,
        deadline: Instant,
    ) -> Flow {
        let Items { items, ids, spans } = decoded;
        let (kind, reason) = match self.try_apply(handler, decoded, ledger, deadline).await {
            Applied::Flow(flow) => return flow,
            Applied::Refused(kind, reason) => (kind, reason),
        };
        if let ([_], [id]) = (items, ids) {
            if let Some(span) = spans.first() {
                span.fail(&reason);
            }
            return self
                .dead_letter_id(batch, *id, kind, &reason, ledger, deadline)
                .await;
        }
        tracing::warn!(loop_name = %self.spec.name, items = items.len(), kind, %reason, "batch refused; applying its records one by one");
        for ((item, id), span) in items.iter().zip(ids).zip(spans) {
            let one = Items {
                items: std::slice::from_ref(item),
                ids: std::slice::from_ref(id),
                spans: std::slice::from_ref(span),
            };
            let flow = match self.try_apply(handler, one, ledger, deadline).await {
                Applied::Flow(flow) => flow,
                Applied::Refused(kind, reason) => {
                    span.fail(&reason);
                    self.dead_letter_id(batch, *id, kind, &reason, ledger, deadline)
                        .await
                }
            };
            if flow != Flow::Done {
                return flow;
            }
        }
        Flow::Done
    }

    /// Applies `items`, retrying transient failures; on success produces the outputs and, once
    /// they are acknowledged, settles the items' records.
    async fn try_apply<H: Handler>(
        &mut self,
        handler: &mut H,
        decoded: Items<'_, H::Item>,
        ledger: &mut Ledger,
        deadline: Instant,
    ) -> Applied {
        let Items { items, ids, spans } = decoded;
        let mut backoff = self.backoff();
        loop {
            match self.call(handler.apply(items)).await {
                Call::Done(Ok(mut outputs)) => {
                    trace_outputs(&mut outputs, spans);
                    let flow = self.produce(outputs, deadline).await;
                    if flow == Flow::Done {
                        for id in ids {
                            ledger.settle(*id, Settlement::Applied);
                        }
                    }
                    return Applied::Flow(flow);
                }
                Call::Done(Err(HandleError::Permanent { kind, reason })) => {
                    return Applied::Refused(kind, reason);
                }
                Call::Done(Err(HandleError::Transient(reason))) => {
                    tracing::warn!(loop_name = %self.spec.name, items = items.len(), %reason, "transient failure applying; retrying the same records");
                }
                Call::TimedOut => {
                    tracing::warn!(loop_name = %self.spec.name, items = items.len(), "applying timed out; retrying the same records");
                }
                Call::Stopped => return Applied::Flow(Flow::Stopped),
            }
            match self.pause(&mut backoff, deadline).await {
                Flow::Done => {}
                f => return Applied::Flow(f),
            }
        }
    }

    async fn dead_letter_id(
        &mut self,
        batch: &[OwnedMessage],
        id: RecordId,
        kind: &str,
        reason: &str,
        ledger: &mut Ledger,
        deadline: Instant,
    ) -> Flow {
        let Some(m) = batch.get(id.index()) else {
            return Flow::Done;
        };
        let flow = self
            .dead_letter(&Record::of(m), kind, reason, deadline)
            .await;
        if flow == Flow::Done {
            ledger.settle(id, Settlement::DeadLettered);
        }
        flow
    }

    /// Writes `record` to the dead-letter topic and waits for the acknowledgement.
    async fn dead_letter(
        &mut self,
        record: &Record<'_>,
        kind: &str,
        reason: &str,
        deadline: Instant,
    ) -> Flow {
        tracing::warn!(loop_name = %self.spec.name, topic = record.topic, partition = record.partition,
            offset = record.offset, kind, reason, "dead-lettering a record");
        let origin = Origin {
            topic: record.topic,
            partition: record.partition,
            offset: record.offset,
            key: record.key,
            payload: record.payload,
            headers: &record.headers,
        };
        let letter =
            dead_letter::build(&self.spec.dlq_topic, &self.spec.name, &origin, kind, reason);
        self.produce(vec![letter.into()], deadline).await
    }

    /// Produces `outputs` and waits until every one is acknowledged, retrying the failed ones.
    async fn produce(&mut self, outputs: Vec<Output>, deadline: Instant) -> Flow {
        let mut pending = outputs;
        let mut backoff = self.backoff();
        while !pending.is_empty() {
            let mut in_flight = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            let mut last_error = None;
            for out in pending.drain(..) {
                let sent = {
                    let mut record: FutureRecord<'_, [u8], [u8]> =
                        FutureRecord::to(&out.topic).headers(owned_headers(&out.headers));
                    if let Some(k) = &out.key {
                        record = record.key(k.as_slice());
                    }
                    if let Some(p) = &out.payload {
                        record = record.payload(p.as_slice());
                    }
                    self.producer.send_result(record).map_err(|(e, _)| e)
                };
                match sent {
                    Ok(delivery) => in_flight.push((out, delivery)),
                    Err(e) => {
                        last_error = Some(e.to_string());
                        failed.push(out);
                    }
                }
            }
            for (out, delivery) in in_flight {
                // Deliveries are bounded by `message.timeout.ms`; shutdown bounds them further.
                let shutdown = self.shutdown;
                let grace = self.spec.shutdown_grace;
                let result = tokio::select! {
                    r = delivery => r,
                    _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => return Flow::Stopped,
                };
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        last_error = Some(e.to_string());
                        failed.push(out);
                    }
                    Err(_) => {
                        last_error = Some("delivery report lost".into());
                        failed.push(out);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            tracing::warn!(loop_name = %self.spec.name, failed = failed.len(), error = ?last_error, "records not acknowledged; producing them again");
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                tracing::error!(loop_name = %self.spec.name, ?code, %reason, "fatal producer error; rebuilding the producer");
                match self.settings.producer().create() {
                    Ok(p) => {
                        self.producer = p;
                        self.stats.producer_rebuilds += 1;
                    }
                    Err(e) => {
                        tracing::error!(loop_name = %self.spec.name, error = %e, "cannot rebuild the producer")
                    }
                }
            }
            pending = failed;
            match self.pause(&mut backoff, deadline).await {
                Flow::Done => {}
                f => return f,
            }
        }
        Flow::Done
    }

    /// Records a batch whose settled records were committed: `applied` and `dead` of them,
    /// `took` from the batch's start to its commit being sent.
    fn record_batch(&self, batch: &[OwnedMessage], applied: u64, dead: u64, took: Duration) {
        let metrics = crate::metrics::global();
        let name = self.spec.name.as_str();
        metrics.committed(name, applied + dead, took);
        if dead > 0 {
            metrics.dead_letters.with_label_values(&[name]).inc_by(dead);
        }
        // The record's timestamp is when its event was written (producer create time), so
        // this is the event's age once its effects are durable.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lag = metrics.projection_lag_seconds.with_label_values(&[name]);
        for m in batch {
            if let Some(ts) = m.timestamp().to_millis() {
                lag.observe((now_ms - ts).max(0) as f64 / 1000.0);
            }
        }
    }

    fn commit(&mut self, consumer: &LoopConsumer, positions: Vec<(PartitionKey, i64)>) {
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in positions {
            if tpl
                .add_partition_offset(&topic, partition, Offset::Offset(offset))
                .is_ok()
            {
                self.committed.insert((topic, partition), offset);
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(loop_name = %self.spec.name, error = %e, "offset commit not sent; will repeat it");
            consumer
                .context()
                .commit_failed
                .store(true, Ordering::Relaxed);
        }
    }

    /// An idle loop has settled everything delivered, so where the consumer stands is done:
    /// past the last records it committed there may be only transaction markers, which the
    /// consumer steps over and a record's offset never reaches. Committing its position there
    /// (at most once a second) makes a caught-up group's lag 0 instead of 1.
    fn step_over_markers(&mut self, consumer: &LoopConsumer) {
        if self.markers_stepped.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.markers_stepped = Instant::now();
        let Ok(positions) = consumer.position() else {
            return;
        };
        let ahead: Vec<(PartitionKey, i64)> = positions
            .elements()
            .iter()
            .filter_map(|e| {
                let Offset::Offset(at) = e.offset() else {
                    return None;
                };
                let key = (e.topic().to_owned(), e.partition());
                self.committed
                    .get(&key)
                    .is_some_and(|c| *c < at)
                    .then_some((key, at))
            })
            .collect();
        self.commit(consumer, ahead);
    }

    /// Sends the latest positions again after a failed commit; later commits would carry them
    /// anyway, but a quiet partition may see no later commit.
    fn recommit(&mut self, consumer: &LoopConsumer) {
        let positions: Vec<(PartitionKey, i64)> = self
            .committed
            .iter()
            .map(|(k, o)| (k.clone(), *o))
            .collect();
        self.commit(consumer, positions);
    }

    /// Drops positions of partitions this consumer no longer owns, so they are not committed.
    fn forget_revoked(&mut self, consumer: &LoopConsumer) {
        if let Ok(assignment) = consumer.assignment() {
            self.committed.retain(|(topic, partition), _| {
                assignment.find_partition(topic, *partition).is_some()
            });
        }
    }

    /// Commits the latest positions synchronously before the consumer goes, bounded.
    async fn final_commit(&mut self, consumer: &Arc<LoopConsumer>) {
        self.forget_revoked(consumer);
        if self.committed.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.committed {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                continue;
            }
        }
        let c = Arc::clone(consumer);
        let job = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync));
        match tokio::time::timeout(CLIENT_CALL, job).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "final offset commit failed; the next owner re-reads from the previous one")
            }
            _ => {
                tracing::warn!(loop_name = %self.spec.name, "final offset commit did not finish in time")
            }
        }
    }

    /// Seeks each partition back to its first unsettled record; false when that could not be
    /// done, in which case the consumer must be rebuilt (it resumes from committed offsets,
    /// which never pass an unsettled record).
    async fn rewind(
        &mut self,
        consumer: &Arc<LoopConsumer>,
        positions: Vec<(PartitionKey, i64)>,
    ) -> bool {
        let c = Arc::clone(consumer);
        let job = tokio::task::spawn_blocking(move || {
            for ((topic, partition), offset) in positions {
                c.seek(&topic, partition, Offset::Offset(offset), CLIENT_CALL)?;
            }
            Ok::<(), KafkaError>(())
        });
        match tokio::time::timeout(CLIENT_CALL * 2, job).await {
            Ok(Ok(Ok(()))) => true,
            Ok(Ok(Err(e))) => {
                tracing::warn!(loop_name = %self.spec.name, error = %e, "rewind failed");
                false
            }
            _ => {
                tracing::warn!(loop_name = %self.spec.name, "rewind did not finish in time");
                false
            }
        }
    }

    /// The high watermark of every partition of the input topics.
    async fn end_offsets(
        &self,
        consumer: &Arc<LoopConsumer>,
    ) -> Result<BTreeMap<PartitionKey, i64>, KafkaError> {
        let c = Arc::clone(consumer);
        let topics = self.spec.input_topics.clone();
        let job = tokio::task::spawn_blocking(move || {
            let mut ends = BTreeMap::new();
            for topic in topics {
                let meta = c.fetch_metadata(Some(&topic), CLIENT_CALL)?;
                for t in meta.topics() {
                    if let Some(e) = t.error() {
                        return Err(KafkaError::MetadataFetch(e.into()));
                    }
                    for p in t.partitions() {
                        let (_, high) = c.fetch_watermarks(&topic, p.id(), CLIENT_CALL)?;
                        ends.insert((topic.clone(), p.id()), high);
                    }
                }
            }
            Ok(ends)
        });
        match tokio::time::timeout(CLIENT_CALL * 4, job).await {
            Ok(Ok(result)) => result,
            _ => Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::OperationTimedOut,
            )),
        }
    }
}

/// True once the consumer's position passed the end each partition had at start. Positions,
/// not the offsets of handled records: the last offset of a partition is often a transaction
/// marker, which is never delivered. Every polled record is settled when this is asked.
fn caught_up(ends: &BTreeMap<PartitionKey, i64>, consumer: &LoopConsumer) -> bool {
    let Ok(positions) = consumer.position() else {
        return false;
    };
    ends.iter().all(|((topic, partition), high)| {
        *high == 0
            || matches!(
                positions.find_partition(topic, *partition).map(|e| e.offset()),
                Some(Offset::Offset(o)) if o >= *high
            )
    })
}

fn owned_headers(headers: &RecordHeaders) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |hs, (k, v)| {
            hs.insert(Header {
                key: k.as_ref(),
                value: Some(v.as_ref()),
            })
        },
    )
}

/// Gives each output the `traceparent` of the record span that caused it (the first
/// record's when it names none).
fn trace_outputs(outputs: &mut [Output], spans: &[WorkSpan]) {
    for o in outputs {
        let Some(span) = spans.get(o.cause.unwrap_or(0)) else {
            continue;
        };
        if let Some(tp) = span.traceparent() {
            telemetry::set_header(&mut o.headers, TRACEPARENT.into(), tp.into_bytes().into());
        }
    }
}

/// Decoded items with their records' ids and spans, index for index.
struct Items<'a, I> {
    items: &'a [I],
    ids: &'a [RecordId],
    spans: &'a [WorkSpan],
}

impl<I> Clone for Items<'_, I> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I> Copy for Items<'_, I> {}
