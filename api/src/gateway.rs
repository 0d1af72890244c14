//! The command gateway: request–reply over Kafka.
//!
//! A command is produced to its aggregate's command topic like any client would, then the
//! gateway waits for its answer on `command.results`, which one reader per gateway follows from
//! the moment the gateway started. A waiter is registered before the command is produced, so a
//! fast answer cannot slip past it. Results of commands this instance sent are remembered
//! (bounded) so a caller told 202 can poll for them.
//!
//! Kafka being down must never hang a request: delivery is bounded by `produce_timeout_ms`, and
//! once librdkafka reports every broker down the gateway refuses at once (503) until a metadata
//! probe or a delivery succeeds again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_kafka_runtime::headers::{AVRO_CONTENT_TYPE, CONTENT_TYPE, TRACEPARENT};
use streamcart_kafka_runtime::partitioner::partition_for;
use streamcart_kafka_runtime::telemetry::{self, WorkSpan};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandPayload, CommandResult};
use streamcart_schemas::topics::Topics;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::idempotency::IdempotencyKeys;
use crate::metrics::{Metrics, bump};

/// Notices librdkafka's "all brokers down" so requests fail fast instead of waiting it out.
#[derive(Debug, Clone, Default)]
pub struct KafkaHealth {
    down: Arc<AtomicBool>,
}

impl KafkaHealth {
    /// True while every broker is believed unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    fn set_down(&self, down: bool) {
        if self.down.swap(down, Ordering::Relaxed) != down {
            if down {
                tracing::warn!("Kafka unreachable: commands are refused until it is back");
            } else {
                tracing::info!("Kafka reachable again");
            }
        }
    }
}

impl ClientContext for KafkaHealth {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.set_down(true);
        }
        tracing::debug!(%error, reason, "kafka client error");
    }
}

impl rdkafka::producer::ProducerContext for KafkaHealth {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// What the caller learns about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The processor answered in time.
    Answered(CommandResult),
    /// The command is in Kafka but its answer is late; poll for it.
    Pending,
}

/// Options of one command.
#[derive(Debug, Clone)]
pub struct Send {
    /// The command's id: the caller's `Idempotency-Key` (bound to this caller and request
    /// beforehand), or a fresh one.
    pub command_id: Uuid,
    /// Optimistic concurrency check (`If-Match`).
    pub expected_version: Option<u64>,
    /// The caller, who alone may poll for the result.
    pub owner: String,
    /// The `traceparent` of the span the command continues (the HTTP request's).
    pub traceparent: Option<String>,
}

#[derive(Debug)]
struct Sent {
    owner: String,
    aggregate_id: String,
    result: Option<CommandResult>,
}

#[derive(Debug, Default)]
struct Tables {
    waiters: HashMap<Uuid, Vec<oneshot::Sender<CommandResult>>>,
    sent: HashMap<Uuid, Sent>,
    order: VecDeque<Uuid>,
}

impl Tables {
    /// Adds `waiter` for command `id`, sent by `owner` to `aggregate_id`; answers it at once when
    /// the first answer to that very command is already known.
    fn register(
        &mut self,
        id: Uuid,
        owner: &str,
        aggregate_id: &str,
        waiter: oneshot::Sender<CommandResult>,
        remembered: usize,
    ) {
        let same = |s: &Sent| s.owner == owner && s.aggregate_id == aggregate_id;
        if let Some(done) = self
            .sent
            .get(&id)
            .filter(|s| same(s))
            .and_then(|s| s.result.clone())
        {
            // A retried command whose answer is already here: the processor will answer the
            // repeat as a duplicate, but the first answer says more. Only its sender gets it,
            // and only for the aggregate it was sent to.
            let _ = waiter.send(done);
            return;
        }
        self.waiters.entry(id).or_default().push(waiter);
        let mine = Sent {
            owner: owner.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            result: None,
        };
        match self.sent.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                if !same(slot.get()) {
                    slot.insert(mine);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(mine);
                self.order.push_back(id);
                while self.order.len() > remembered {
                    if let Some(old) = self.order.pop_front() {
                        self.sent.remove(&old);
                    }
                }
            }
        }
    }

    /// Records `result` for the command it answers, if this gateway sent that command to that
    /// aggregate, and wakes its waiters with the first answer. Returns that first answer when it
    /// has just arrived and nobody was waiting for it any more: its sender was told 202.
    fn answered(&mut self, result: CommandResult) -> Option<CommandResult> {
        let id = result.command_id;
        // Command ids are chosen by clients: a result for the same id at another aggregate
        // answers someone else's command.
        let sent = self
            .sent
            .get_mut(&id)
            .filter(|s| s.aggregate_id == result.aggregate_id)?;
        // The first answer is the one that applied (or refused) the command; a later one for a
        // repeat of the same id is a duplicate and must not hide it.
        let arrived = sent.result.is_none();
        if arrived {
            sent.result = Some(result.clone());
        }
        let first = sent.result.clone().unwrap_or(result);
        let mut delivered = false;
        for waiter in self.waiters.remove(&id).unwrap_or_default() {
            delivered |= waiter.send(first.clone()).is_ok();
        }
        (arrived && !delivered).then_some(first)
    }
}

/// What a poll finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// The result.
    Done(CommandResult),
    /// Sent by this caller to this aggregate, not answered yet.
    Waiting(String),
    /// Not a command this caller sent through this instance (or forgotten since).
    Unknown,
}

/// Produces commands and matches their results.
pub struct Gateway {
    producer: FutureProducer<KafkaHealth>,
    codec: Arc<Codec>,
    topics: Topics,
    tables: Mutex<Tables>,
    health: KafkaHealth,
    remembered: usize,
    produce_timeout: Duration,
    answer_timeout: Duration,
    metrics: Arc<Metrics>,
    settings: KafkaSettings,
    ledger: Option<Arc<IdempotencyKeys>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("kafka_down", &self.health.is_down())
            .finish_non_exhaustive()
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A Kafka client could not be created (bad configuration).
    #[error("creating a Kafka client: {0}")]
    Client(#[from] KafkaError),
}

impl Gateway {
    /// A gateway producing with `settings`, and its results reader running until `shutdown`.
    /// With a `ledger`, answers that arrive after their sender was told 202 are stored there,
    /// for polls on any instance.
    pub fn start(
        settings: &KafkaSettings,
        codec: Arc<Codec>,
        config: &ApiConfig,
        metrics: Arc<Metrics>,
        ledger: Option<Arc<IdempotencyKeys>>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, GatewayError> {
        let health = KafkaHealth::default();
        let mut producer_config = settings.producer();
        producer_config
            .set("message.timeout.ms", config.produce_timeout_ms.to_string())
            .set("linger.ms", "1");
        let producer: FutureProducer<KafkaHealth> =
            producer_config.create_with_context(health.clone())?;
        let mut reader_config = settings.restore_consumer();
        reader_config
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10");
        let reader: StreamConsumer = reader_config.create()?;
        let topics = codec.topics().clone();
        let gateway = Arc::new(Self {
            producer,
            codec,
            topics,
            tables: Mutex::new(Tables::default()),
            health,
            remembered: config.remembered_results.max(1),
            produce_timeout: config.produce_timeout(),
            answer_timeout: config.command_timeout(),
            metrics,
            settings: settings.clone(),
            ledger,
        });
        tokio::spawn(Arc::clone(&gateway).read_results(reader, shutdown.clone()));
        tokio::spawn(Arc::clone(&gateway).probe_while_down(shutdown));
        Ok(gateway)
    }

    /// True while Kafka is believed down.
    pub fn kafka_down(&self) -> bool {
        self.health.is_down()
    }

    /// Produces `payload` for `aggregate_id` and waits, bounded, for its result.
    pub async fn send<C: CommandPayload>(
        &self,
        aggregate_id: &str,
        payload: C,
        options: Send,
    ) -> Result<Reply, ApiError> {
        if self.health.is_down() {
            bump(&self.metrics.kafka_failures);
            return Err(kafka_unavailable("every broker is unreachable"));
        }
        let envelope = CommandEnvelope {
            command_id: options.command_id,
            aggregate_id: aggregate_id.to_owned(),
            expected_version: options.expected_version,
            issued_at: now_ms(),
            correlation_id: aggregate_id.to_owned(),
            payload,
        };
        let bytes = self.codec.encode(&envelope).await.map_err(|e| {
            if e.is_transient() {
                ApiError::Unavailable {
                    code: "registry_unavailable",
                    what: "the schema registry",
                    reason: e.to_string(),
                }
            } else {
                ApiError::Internal(format!("encoding a command: {e}"))
            }
        })?;
        let answer = self.register(options.command_id, &options.owner, aggregate_id);
        let topic = self.topics.commands(C::CONTEXT);
        let parent = options
            .traceparent
            .as_deref()
            .map(telemetry::extract_traceparent)
            .unwrap_or_default();
        let span = WorkSpan::start(
            "command sent",
            SpanKind::Producer,
            &parent,
            if telemetry::exporting() {
                vec![
                    KeyValue::new("messaging.system", "kafka"),
                    KeyValue::new("messaging.operation.type", "send"),
                    KeyValue::new("messaging.destination.name", topic.clone()),
                    KeyValue::new("streamcart.command_id", options.command_id.to_string()),
                ]
            } else {
                Vec::new()
            },
        );
        let mut headers = OwnedHeaders::new();
        let traceparent = span.traceparent();
        if let Some(tp) = &traceparent {
            headers = headers.insert(Header {
                key: TRACEPARENT,
                value: Some(tp.as_bytes()),
            });
        }
        let headers = headers.insert(Header {
            key: CONTENT_TYPE,
            value: Some(AVRO_CONTENT_TYPE.as_bytes()),
        });
        let record = FutureRecord::to(&topic)
            .key(aggregate_id)
            .payload(&bytes)
            .headers(headers);
        let delivery = tokio::time::timeout(
            self.produce_timeout + Duration::from_millis(500),
            self.producer
                .send(record, Timeout::After(self.produce_timeout)),
        )
        .await;
        match delivery {
            Ok(Ok(_)) => {
                self.health.set_down(false);
                bump(&self.metrics.commands_sent);
            }
            Ok(Err((e, _))) => {
                span.fail(&e.to_string());
                self.forget(options.command_id);
                bump(&self.metrics.kafka_failures);
                return Err(kafka_unavailable(&e.to_string()));
            }
            Err(_) => {
                span.fail("delivery timed out");
                self.forget(options.command_id);
                bump(&self.metrics.kafka_failures);
                return Err(kafka_unavailable("delivery timed out"));
            }
        }
        drop(span);
        match tokio::time::timeout(self.answer_timeout, answer).await {
            Ok(Ok(result)) => {
                bump(&self.metrics.commands_answered);
                Ok(Reply::Answered(result))
            }
            _ => {
                bump(&self.metrics.commands_pending);
                Ok(Reply::Pending)
            }
        }
    }

    /// What is known of command `id`, for `caller`.
    pub fn poll(&self, id: Uuid, caller: &str) -> Poll {
        let Ok(tables) = self.tables.lock() else {
            return Poll::Unknown;
        };
        match tables.sent.get(&id) {
            Some(sent) if sent.owner == caller => match &sent.result {
                Some(result) => Poll::Done(result.clone()),
                None => Poll::Waiting(sent.aggregate_id.clone()),
            },
            _ => Poll::Unknown,
        }
    }

    fn register(
        &self,
        id: Uuid,
        owner: &str,
        aggregate_id: &str,
    ) -> oneshot::Receiver<CommandResult> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut tables) = self.tables.lock() {
            tables.register(id, owner, aggregate_id, tx, self.remembered);
        }
        rx
    }

    /// True when this gateway sent `id` and has no answer for it yet.
    fn is_waiting(&self, id: Uuid) -> bool {
        self.tables
            .lock()
            .is_ok_and(|t| t.sent.get(&id).is_some_and(|s| s.result.is_none()))
    }

    fn forget(&self, id: Uuid) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.waiters.remove(&id);
            if tables.sent.get(&id).is_some_and(|s| s.result.is_none()) {
                tables.sent.remove(&id);
            }
        }
    }

    fn answered(&self, result: CommandResult) {
        let late = match self.tables.lock() {
            Ok(mut tables) => tables.answered(result),
            Err(_) => None,
        };
        if let (Some(late), Some(ledger)) = (late, &self.ledger) {
            let ledger = Arc::clone(ledger);
            tokio::spawn(async move {
                if let Err(e) = ledger.remember_result(&late).await {
                    tracing::warn!(error = %e, command_id = %late.command_id,
                        "a late answer is not shared with the other edge instances");
                }
            });
        }
    }

    /// The first answer to command `id` at `aggregate_id` in `command.results`, read from the
    /// time it was sent (`sent_at_ms`, less [`CLOCK_SKEW`]), for a command this instance did not
    /// send; `None` when it has no answer yet. Reads at most [`SCAN_BOUND`] of records.
    pub async fn find_result(
        &self,
        id: Uuid,
        aggregate_id: &str,
        sent_at_ms: i64,
    ) -> Result<Option<CommandResult>, ApiError> {
        let (settings, topic) = (self.settings.clone(), self.topics.command_results());
        let since = sent_at_ms - CLOCK_SKEW.as_millis() as i64;
        let found = tokio::task::spawn_blocking(move || scan_results(&settings, &topic, id, since))
            .await
            .map_err(|e| ApiError::Internal(format!("results scan: {e}")))?
            .map_err(|e| kafka_unavailable(&e.to_string()))?;
        for bytes in found {
            match self.codec.decode::<CommandResult>(&bytes).await {
                Ok(result) if result.aggregate_id == aggregate_id && result.command_id == id => {
                    return Ok(Some(result));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable command result skipped"),
            }
        }
        Ok(None)
    }

    /// Follows `command.results` from its end at start-up; retries until Kafka answers.
    async fn read_results(self: Arc<Self>, reader: StreamConsumer, shutdown: CancellationToken) {
        let topic = self.topics.command_results();
        let reader = Arc::new(reader);
        loop {
            let positioned = {
                let (reader, topic) = (Arc::clone(&reader), topic.clone());
                tokio::task::spawn_blocking(move || position_at_end(&reader, &topic)).await
            };
            match positioned {
                Ok(Ok(partitions)) => {
                    tracing::info!(partitions, "following command results");
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot follow command results yet"),
                Err(e) => tracing::warn!(error = %e, "positioning task failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = reader.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "results reader");
                    continue;
                }
            };
            let Some(bytes) = message.payload() else {
                continue;
            };
            // Results are keyed by command id: most belong to other clients (and to the saga),
            // so only the ones this gateway waits for are decoded.
            let ours = message
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| Uuid::parse_str(k).ok())
                .is_none_or(|id| self.is_waiting(id));
            if !ours {
                continue;
            }
            match self.codec.decode::<CommandResult>(bytes).await {
                Ok(result) => self.answered(result),
                Err(e) => tracing::warn!(
                    error = %e,
                    partition = message.partition(),
                    offset = message.offset(),
                    "undecodable command result skipped"
                ),
            }
        }
    }

    /// While Kafka is believed down, asks for metadata every second to notice its return.
    async fn probe_while_down(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if !self.health.is_down() {
                continue;
            }
            let this = Arc::clone(&self);
            let up = tokio::task::spawn_blocking(move || {
                this.producer
                    .client()
                    .fetch_metadata(None, Duration::from_millis(800))
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            if up {
                self.health.set_down(false);
            }
        }
    }

    /// Waits for the messages still queued in the producer, for shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "commands still queued at shutdown");
        }
    }
}

/// How far before a command's send time its answer is looked for: the processor stamps its
/// result with its own clock.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);
/// Longest one scan of `command.results` for a command's answer may read.
pub const SCAN_BOUND: Duration = Duration::from_secs(3);

/// The values of the records keyed `id` in its partition of `topic` from time `since_ms` to the
/// last committed record (or [`SCAN_BOUND`]), in offset order.
fn scan_results(
    settings: &KafkaSettings,
    topic: &str,
    id: Uuid,
    since_ms: i64,
) -> Result<Vec<Vec<u8>>, KafkaError> {
    let timeout = Duration::from_secs(5);
    let reader: BaseConsumer = settings.restore_consumer().create()?;
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len() as i32);
    let key = id.to_string();
    // Results are keyed by command id and placed with murmur2, like every record of ours.
    let Some(partition) = partition_for(key.as_bytes(), count) else {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    };
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(topic, partition, Offset::Offset(since_ms.max(0)))?;
    let start = reader
        .offsets_for_times(at, timeout)?
        .find_partition(topic, partition)
        .map(|p| p.offset());
    let Some(Offset::Offset(start)) = start else {
        // Nothing written since then.
        return Ok(Vec::new());
    };
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    reader.assign(&assignment)?;
    let deadline = std::time::Instant::now() + SCAN_BOUND;
    let mut found = Vec::new();
    while std::time::Instant::now() < deadline {
        match reader.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                if m.key() == Some(key.as_bytes())
                    && let Some(v) = m.payload()
                {
                    found.push(v.to_vec());
                }
            }
        }
    }
    Ok(found)
}

/// Assigns every partition of `topic` at its current end; returns the partition count.
fn position_at_end(reader: &StreamConsumer, topic: &str) -> Result<usize, KafkaError> {
    let timeout = Duration::from_secs(5);
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        let (_, high) = reader.fetch_watermarks(topic, *p, timeout)?;
        assignment.add_partition_offset(topic, *p, Offset::Offset(high))?;
    }
    reader.assign(&assignment)?;
    Ok(partitions.len())
}

fn kafka_unavailable(reason: &str) -> ApiError {
    ApiError::Unavailable {
        code: "kafka_unavailable",
        what: "Kafka",
        reason: format!("{reason}; the command may be retried with the same Idempotency-Key"),
    }
}

/// Milliseconds since the epoch (UTC): the edge's only clock, for command times.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamcart_schemas::envelope::Outcome;

    fn accepted(id: Uuid, aggregate_id: &str, version: u64) -> CommandResult {
        CommandResult {
            command_id: id,
            aggregate_id: aggregate_id.into(),
            outcome: Outcome::Accepted {
                version,
                event_ids: vec![Uuid::from_u128(u128::from(version))],
            },
        }
    }

    fn wait(
        tables: &mut Tables,
        id: Uuid,
        owner: &str,
        aggregate: &str,
    ) -> oneshot::Receiver<CommandResult> {
        let (tx, rx) = oneshot::channel();
        tables.register(id, owner, aggregate, tx, 100);
        rx
    }

    #[test]
    fn a_known_answer_is_replayed_to_its_sender_for_its_aggregate_only() {
        let mut tables = Tables::default();
        let id = Uuid::from_u128(42);
        let mut first = wait(&mut tables, id, "alice", "order-1");
        tables.answered(accepted(id, "order-1", 1));
        assert_eq!(first.try_recv(), Ok(accepted(id, "order-1", 1)));

        let mut again = wait(&mut tables, id, "alice", "order-1");
        assert_eq!(again.try_recv(), Ok(accepted(id, "order-1", 1)));
        let mut other_caller = wait(&mut tables, id, "bob", "order-1");
        assert!(other_caller.try_recv().is_err(), "bob gets alice's answer");
        let mut other_aggregate = wait(&mut tables, id, "alice", "order-2");
        assert!(
            other_aggregate.try_recv().is_err(),
            "an answer for order-1 given for order-2"
        );
    }

    #[test]
    fn a_result_at_another_aggregate_answers_nobody_here() {
        let mut tables = Tables::default();
        let id = Uuid::from_u128(7);
        let mut waiting = wait(&mut tables, id, "alice", "SKU-1");
        tables.answered(accepted(id, "SKU-2", 3));
        assert!(waiting.try_recv().is_err());
        tables.answered(accepted(id, "SKU-1", 1));
        assert_eq!(waiting.try_recv(), Ok(accepted(id, "SKU-1", 1)));
    }

    #[test]
    fn an_answer_nobody_waits_for_any_more_is_reported_once_as_late() {
        let mut tables = Tables::default();
        let id = Uuid::from_u128(11);
        let waiting = wait(&mut tables, id, "alice", "SKU-1");
        // The caller was told 202: its wait ended.
        drop(waiting);
        assert_eq!(
            tables.answered(accepted(id, "SKU-1", 1)),
            Some(accepted(id, "SKU-1", 1))
        );
        assert_eq!(
            tables.answered(accepted(id, "SKU-1", 1)),
            None,
            "reported once"
        );
        let id = Uuid::from_u128(12);
        let mut live = wait(&mut tables, id, "alice", "SKU-1");
        assert_eq!(
            tables.answered(accepted(id, "SKU-1", 1)),
            None,
            "answered in time"
        );
        assert_eq!(live.try_recv(), Ok(accepted(id, "SKU-1", 1)));
    }

    #[test]
    fn the_first_answer_outlives_a_later_duplicate() {
        let mut tables = Tables::default();
        let id = Uuid::from_u128(9);
        let mut a = wait(&mut tables, id, "alice", "order-1");
        let mut b = wait(&mut tables, id, "alice", "order-1");
        tables.answered(accepted(id, "order-1", 1));
        tables.answered(CommandResult {
            command_id: id,
            aggregate_id: "order-1".into(),
            outcome: Outcome::Duplicate { version: 1 },
        });
        assert_eq!(a.try_recv(), Ok(accepted(id, "order-1", 1)));
        assert_eq!(b.try_recv(), Ok(accepted(id, "order-1", 1)));
        let mut later = wait(&mut tables, id, "alice", "order-1");
        assert_eq!(later.try_recv(), Ok(accepted(id, "order-1", 1)));
    }
}
