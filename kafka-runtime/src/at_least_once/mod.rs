//! The at-least-once loop: consume (read_committed) → decode → apply → produce the outputs and
//! dead letters → commit offsets, many records per batch. For consumers whose effects live outside
//! Kafka (read-model stores, caches) and are idempotent, so a redelivered record changes nothing.
//!
//! What it guarantees:
//!
//! - **No record is skipped.** A partition's offset is committed only up to its first record
//!   that is not settled, a record being settled once every effect of its batch is durable (the
//!   handler's writes done, its output records acknowledged) or once its dead letter is
//!   acknowledged. See [`ledger`].
//! - **The error decides the route.** [`HandleError::Transient`] retries the *same* record (or
//!   the same batch) with bounded exponential backoff; [`HandleError::Permanent`] sends the
//!   record to the dead-letter topic with its original key, value and headers and the reason in
//!   headers. When applying a whole batch fails permanently, its items are applied one by one to
//!   find the record at fault, so one bad record never takes good ones with it.
//! - **Retries never starve the consumer.** A batch is retried in place for at most
//!   [`Spec::retry_budget`]; then the settled prefix is committed, the consumer is rewound to the
//!   first unsettled record of each partition and polled again (keeping its group membership),
//!   and the batch is read again.
//! - **Every Kafka error recovers by itself.** Consumer errors are logged and polled past; a
//!   fatal consumer error (or a rewind that cannot be done) rebuilds the consumer, which resumes
//!   from the committed offsets; a fatal producer error rebuilds the producer; a failed commit is
//!   repeated with the next one.
//! - **Every wait is bounded**, and the shutdown token is honoured in every state: retries and
//!   backoffs stop at once, a handler call in flight gets [`Spec::shutdown_grace`], then the
//!   settled prefix is committed and the loop returns.
//! - **Latency stays low**: a batch closes as soon as the input runs dry, or at
//!   [`Spec::batch_max`] records or [`Spec::batch_wait`] under load.

mod engine;
pub mod ledger;

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::dead_letter::{DeadLetter, RecordHeaders};
use crate::{HandleError, KafkaSettings, RuntimeError};

/// One consumed record as a handler sees it (shared with the transactional loop).
pub use crate::record::Record;

/// A record a batch produces; the batch's offsets are committed only once it is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Destination topic.
    pub topic: String,
    /// Record key (placed by the murmur2 partitioner).
    pub key: Option<Vec<u8>>,
    /// Record value (`None` is a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: RecordHeaders,
    /// Index, in the items applied, of the one whose record caused this output: the output
    /// continues that record's trace (unset: the batch's first record's).
    pub cause: Option<usize>,
}

impl Output {
    /// A record for `topic` with no headers.
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>, payload: Option<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key,
            payload,
            headers: Vec::new(),
            cause: None,
        }
    }

    /// Names the item (its index in the applied slice) whose record caused this output.
    pub fn caused_by(mut self, index: usize) -> Self {
        self.cause = Some(index);
        self
    }

    /// Adds a header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<DeadLetter> for Output {
    fn from(d: DeadLetter) -> Self {
        Self {
            topic: d.topic,
            key: d.key,
            payload: d.payload,
            headers: d.headers,
            cause: None,
        }
    }
}

/// The logic an at-least-once loop runs. Effects must be idempotent: after a crash, a failed
/// commit or a rewind, the same records are decoded and applied again.
pub trait Handler: Send {
    /// What one record decodes to.
    type Item: Send + Sync;

    /// Decodes one record. `Permanent`: the record goes to the dead-letter topic; `Transient`:
    /// the same record is decoded again after a pause.
    fn decode(
        &mut self,
        record: &Record<'_>,
    ) -> impl Future<Output = Result<Self::Item, HandleError>> + Send;

    /// Applies decoded items, in consumption order, and answers the records to produce before
    /// their offsets may be committed. After a failure, `apply` is called again with the same
    /// items (a failed call must leave the handler able to redo them: it must not treat them as
    /// applied); after a `Permanent` failure of several items, with each item alone, and an
    /// item that fails permanently on its own is dead-lettered.
    fn apply(
        &mut self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Output>, HandleError>> + Send;

    /// Called on every turn of the loop, input or not, before a batch is collected: periodic
    /// work (configuration that moves, housekeeping). Failures are the handler's to log.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The name of the span around applying one record (`projection applied`).
    fn operation(&self) -> &'static str {
        "record applied"
    }

    /// The partitions this instance owns changed (a rebalance, or the consumer was rebuilt):
    /// drop state that only holds while partitions stay put.
    fn on_reassigned(&mut self) {}
}

/// Static description of one loop.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Name used in logs and in dead letters' `dlq.processor` header.
    pub name: String,
    /// Topics to consume.
    pub input_topics: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Static membership id (`group.instance.id`), unique per running instance; `None` for a
    /// dynamic member.
    pub instance_id: Option<String>,
    /// Where records that cannot be handled go.
    pub dlq_topic: String,
    /// Most records per batch.
    pub batch_max: usize,
    /// Longest a batch stays open while records keep coming.
    pub batch_wait: Duration,
    /// Return once every partition's position reached the end it had at start (replays).
    pub stop_at_end: bool,
    /// Longest a batch is retried in place before its settled prefix is committed and the
    /// consumer rewound to the rest; well below `max.poll.interval.ms`.
    pub retry_budget: Duration,
    /// Longest one handler call may take; a call that takes longer counts as transient.
    pub call_timeout: Duration,
    /// Longest a handler call or produce in flight may go on after shutdown was asked for.
    pub shutdown_grace: Duration,
    /// First pause after a transient failure; it doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
}

impl Spec {
    /// A loop with the default bounds: batches of up to 2,000 records or 100 ms, retries from
    /// 100 ms to 5 s for up to 30 s in place, handler calls of up to 30 s, 5 s of grace.
    pub fn new(
        name: impl Into<String>,
        input_topics: Vec<String>,
        group_id: impl Into<String>,
        dlq_topic: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            input_topics,
            group_id: group_id.into(),
            instance_id: None,
            dlq_topic: dlq_topic.into(),
            batch_max: 2_000,
            batch_wait: Duration::from_millis(100),
            stop_at_end: false,
            retry_budget: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Counters of one loop, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Records read (redeliveries after a rewind count again).
    pub read: u64,
    /// Records applied and committed.
    pub applied: u64,
    /// Records sent to the dead-letter topic and committed.
    pub dead_letters: u64,
    /// Batches handled.
    pub batches: u64,
    /// Retries after transient failures (decode, apply or produce).
    pub retries: u64,
    /// Rewinds after a batch ran out of retry budget.
    pub rewinds: u64,
    /// Consumers rebuilt after fatal errors.
    pub consumer_rebuilds: u64,
    /// Producers rebuilt after fatal errors.
    pub producer_rebuilds: u64,
}

/// Runs the loop until `shutdown` fires (or, with [`Spec::stop_at_end`], until caught up); then
/// commits what is settled and returns. Errors only when the configuration cannot work.
pub async fn run<H: Handler>(
    settings: &KafkaSettings,
    spec: &Spec,
    handler: &mut H,
    shutdown: &CancellationToken,
) -> Result<Stats, RuntimeError> {
    engine::run(settings, spec, handler, shutdown).await
}
