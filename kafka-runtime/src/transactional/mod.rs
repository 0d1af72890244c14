//! The transactional loop: consume (read_committed) → handle → produce → send offsets with the
//! consumer group metadata → commit, many input records per transaction.
//!
//! Exactly-once rests on three things: outputs and input offsets commit atomically; a handler's
//! in-memory state is rolled back whenever a transaction is aborted (and the consumer rewound to
//! the batch start); and a zombie instance is fenced, both by the group generation sent with the
//! offsets and by its stable `transactional.id`, which a restarted instance re-initialises, aborting
//! whatever the dead one left open.
//!
//! Commits are pipelined: while one batch's transaction is flushed and committed on a helper
//! thread (broker round trips, tens of milliseconds), the loop already handles the next batch,
//! holding its output until the producer may open the next transaction. That batch commits only
//! after its predecessor did, and is rolled back with it if the predecessor aborts, so handlers
//! keep two layers of undo: the sealed batch and the open one (see [`TxnHandler::on_seal`]).
//!
//! The loop is blocking (rdkafka's transactional API is); run it on a dedicated thread.

mod commit;
mod contexts;
mod engine;
mod recovery;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::LoopHealth;
use crate::{HandleError, KafkaSettings, RuntimeError};

/// One input record as the handler sees it (shared with the at-least-once loop).
pub use crate::record::Record as InputRecord;

/// A record to produce in the current transaction.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Destination topic (shared: handlers write many records to few topics).
    pub topic: Arc<str>,
    /// Explicit partition; `None` lets the murmur2 partitioner place the key.
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value (`None` is a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Headers; names and many values are constants, so they are not copied.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, [u8]>)>,
}

impl OutRecord {
    /// A record for `topic` with no headers, placed by key.
    pub fn new(topic: impl Into<Arc<str>>, key: Option<Vec<u8>>, payload: Option<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key,
            payload,
            headers: Vec::new(),
        }
    }
}

/// The highest offset a committed batch wrote to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Topic written.
    pub topic: String,
    /// Partition written.
    pub partition: i32,
    /// Highest offset written there.
    pub offset: i64,
}

/// The logic a transactional loop runs. All methods are called from the loop's thread.
///
/// A batch goes through: records handled ([`handle`](Self::handle), [`tick`](Self::tick)) →
/// [`on_seal`](Self::on_seal) → its commit runs while the next batch is handled →
/// [`on_delivered`](Self::on_delivered) and [`on_commit`](Self::on_commit), or
/// [`on_abort`](Self::on_abort), which discards the sealed batch *and* the one handled after it.
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
    /// A transaction was just opened, after every earlier batch committed. The state holds the
    /// committed batches plus whatever input of this transaction was already handled (its
    /// records are sent right after these); may add records (e.g. snapshots of that state),
    /// which commit atomically with that input.
    fn on_begin(&mut self, _out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        Ok(())
    }
    /// The batch handled so far is closed and goes to commit; what is handled from now on
    /// belongs to the next batch. Handlers that keep undo state start a new layer here, so that
    /// [`on_commit`](Self::on_commit) can settle the sealed batch alone.
    fn on_seal(&mut self) {}
    /// The highest offset the sealed batch wrote to each partition; called after its commit
    /// succeeded, right before [`on_commit`](Self::on_commit).
    fn on_delivered(&mut self, _delivered: &[Delivered]) {}
    /// The sealed batch committed: its effects are durable. Anything handled after the seal
    /// is still pending.
    fn on_commit(&mut self);
    /// The transaction was aborted: roll in-memory state back to the last commit, discarding
    /// both the sealed batch and anything handled after it (the input is read again).
    fn on_abort(&mut self);
    /// Called on every turn of the loop, input or not: lets time-driven handlers (deadlines)
    /// produce records. Anything produced joins the open batch.
    fn tick(&mut self, _out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        Ok(())
    }
    /// The name of the span around handling one record (`command handled`, `reaction run`).
    fn operation(&self) -> &'static str {
        "record handled"
    }
    /// The name of the root span of a record no input caused (a timer's, a snapshot's).
    fn timer_operation(&self) -> &'static str {
        "timer fired"
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
    /// Times the loop's Kafka clients were rebuilt after a fault it could not recover from
    /// with the same clients.
    pub rebuilds: u64,
}

/// Wall time spent per phase of the loop since the last report, to see where a batch's time goes.
///
/// `flush`, `offsets` and `commit` run on the commit thread, overlapping `poll` and `handle`;
/// `stall` is the time the loop could do nothing but wait for a commit.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    poll: Duration,
    handle: Duration,
    stall: Duration,
    flush: Duration,
    offsets: Duration,
    commit: Duration,
    batches: u64,
    records: u64,
}

impl Phases {
    fn report(&mut self, name: &str) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(loop_name = %name, batches = self.batches, records = self.records,
            poll_ms = ms(self.poll), handle_ms = ms(self.handle), stall_ms = ms(self.stall),
            flush_ms = ms(self.flush), offsets_ms = ms(self.offsets),
            commit_ms = ms(self.commit), "loop phases");
        *self = Self::default();
    }
}

/// Runs the loop until `shutdown` fires; then finishes the open batch, commits and returns.
///
/// Recovers by itself from every class of Kafka error: a retriable transactional call is
/// resumed, an abortable failure rolls the batch back and rewinds, and a fatal one (fenced,
/// epoch bumped, a call that never completes) rebuilds the clients and restores. It returns an
/// error only for what no rebuild can mend (configuration), or after failing to recover for
/// `give_up_after_ms`. Its health is registered under the loop's name (see [`crate::health`]).
pub fn run<H: TxnHandler>(
    settings: &KafkaSettings,
    spec: &LoopSpec,
    handler: &mut H,
    shutdown: &CancellationToken,
) -> Result<LoopStats, RuntimeError> {
    let health = LoopHealth::register(&spec.name);
    engine::run(settings, spec, handler, shutdown, &health)
}

/// [`run`], reporting to a health handle the caller keeps (e.g. to serve readiness).
pub fn run_monitored<H: TxnHandler>(
    settings: &KafkaSettings,
    spec: &LoopSpec,
    handler: &mut H,
    shutdown: &CancellationToken,
    health: &LoopHealth,
) -> Result<LoopStats, RuntimeError> {
    engine::run(settings, spec, handler, shutdown, health)
}
