//! The command processor on Kafka: [`AggregateTable`]s driven by the shared transactional loop.
//!
//! Consumes `<context>.<aggregate>.commands` (read_committed); for each command produces its
//! events to the same partition of `<context>.<aggregate>.events`, its result to
//! `command.results`, and snapshots to `<context>.<aggregate>.snapshots` — all in the batch's
//! transaction, with the consumer offsets.
//!
//! Restore on assignment: the partition's snapshots (latest per aggregate) and its latest
//! *checkpoint* — a snapshot record with an empty aggregate id whose `event_offset` says that
//! every event up to it is covered by a snapshot — then the events after the checkpoint.
//!
//! Ownership: one writer per aggregate rests on every command of an aggregate reaching the
//! partition murmur2 gives its key, but clients we do not control may place records with another
//! partitioner (librdkafka's default hashes with CRC32). So the partition of every command is
//! checked against murmur2 of its key, with the partition count the topics have (read at start
//! and on every assignment, which also refuses topics that are not co-partitioned). A misplaced
//! command is never applied: it is forwarded to its owner partition in the same transaction as
//! its input offset (key, value and headers unchanged, so it is answered once, by the owner),
//! or, with forwarding turned off, answered [`COMMAND_MISPLACED`].
//!
//! Inline reactions (`saga.reactions = "inline"`): the saga's reactions to each event the
//! processor appends run in the processor itself, and the commands they emit join the events'
//! transaction. An order then skips one transactional hop per saga step; see docs/saga.md.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::Message;
use streamcart_kafka_runtime::admin::{CoPartitionError, co_partitioned};
use streamcart_kafka_runtime::headers;
use streamcart_kafka_runtime::partitioner::partition_for;
use streamcart_kafka_runtime::restore::Restorer;
use streamcart_kafka_runtime::transactional::{Delivered, InputRecord, OutRecord, TxnHandler};
use streamcart_kafka_runtime::{HandleError, KafkaSettings, RuntimeError};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::codes::COMMAND_MISPLACED;
use streamcart_schemas::envelope::{
    CommandEnvelope, CommandResult, EventEnvelope, Outcome, Snapshot,
};
use streamcart_schemas::topics::Topics;

use super::table::{AggregateTable, SnapshotPolicy};
use crate::bindings::Bound;
use crate::codec::{decode_blocking, decode_failure, encode_blocking};
use crate::saga::kafka::{CommandWriter, SettledOrders};

/// Snapshot records handed to the decoding thread at a time during a restore.
const RESTORE_BATCH: usize = 1024;

/// Record values copied out of the consumer for the decoding thread, back to back in one buffer:
/// one allocation per batch instead of one per record, freed on the other thread.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each record's partition and the end of its value in `bytes`.
    ends: Vec<(i32, usize)>,
}

impl Batch {
    fn push(&mut self, partition: i32, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.ends.push((partition, self.bytes.len()));
    }

    fn records(&self) -> impl Iterator<Item = (i32, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(partition, end)| {
            let value = &self.bytes[start..end];
            start = end;
            (partition, value)
        })
    }
}

/// Tuning of one command processor.
#[derive(Debug, Clone)]
pub struct ProcessorTuning {
    /// Per-aggregate snapshot policy.
    pub snapshots: SnapshotPolicy,
    /// Write a partition checkpoint after this many events in the partition.
    pub checkpoint_every_events: u64,
    /// Longest a partition restore may take.
    pub restore_timeout: Duration,
    /// Forward a command that arrived on another partition than its key's murmur2 partition to
    /// that partition (true), or answer it [`COMMAND_MISPLACED`] (false).
    pub forward_misplaced: bool,
    /// Longest the partition counts of the aggregate's topics may take to read.
    pub metadata_timeout: Duration,
    /// Run the saga's reactions to the appended events here, in the events' transaction,
    /// instead of leaving them to the `sagas` role's reaction loop.
    pub inline_reactions: bool,
}

/// The defaults of `[processor]` in the binary's configuration come from here.
impl Default for ProcessorTuning {
    fn default() -> Self {
        Self {
            snapshots: SnapshotPolicy::default(),
            checkpoint_every_events: 20_000,
            restore_timeout: Duration::from_secs(120),
            forward_misplaced: true,
            metadata_timeout: Duration::from_secs(30),
            inline_reactions: false,
        }
    }
}

struct PartitionState<A: Bound>
where
    A::Command: streamcart_schemas::envelope::CommandPayload + Send,
    A::Event: streamcart_schemas::envelope::EventPayload + Send,
    A::State: streamcart_schemas::envelope::SnapshotState + Send,
{
    table: AggregateTable<A>,
    /// Offset of the last event written to this partition (committed view).
    last_event_offset: Option<i64>,
    events_since_checkpoint: u64,
    /// `events_since_checkpoint` when the batch under commit was sealed.
    sealed_since_checkpoint: u64,
    /// Values at the last commit, restored on abort.
    committed: (Option<i64>, u64),
}

/// The [`TxnHandler`] of a command processor for aggregate type `A`.
pub struct CommandHandler<A: Bound>
where
    A::Command: streamcart_schemas::envelope::CommandPayload + Send,
    A::Event: streamcart_schemas::envelope::EventPayload + Send,
    A::State: streamcart_schemas::envelope::SnapshotState + Send,
{
    settings: KafkaSettings,
    topics: Topics,
    codec: Arc<Codec>,
    rt: tokio::runtime::Handle,
    ctx: Arc<A::Context>,
    tuning: ProcessorTuning,
    partitions: HashMap<i32, PartitionState<A>>,
    /// Partition count of the (co-partitioned) commands, events and snapshots topics, read
    /// from the cluster: the modulus of command ownership.
    partition_count: Option<i32>,
    /// Misplaced commands handled so far (forwarded or refused), for the logs.
    misplaced: u64,
    /// The restore's clients, kept across assignments: a new librdkafka client takes most of a
    /// second to connect and start fetching. Made when the topics are first checked, so they
    /// connect while the group is being joined; dropped after a failed restore.
    restorer: Option<Restorer>,
    /// Topic names, built once: they are needed for every output record.
    commands_topic: Arc<str>,
    events_topic: Arc<str>,
    results_topic: Arc<str>,
    snapshots_topic: Arc<str>,
    /// Encodes the saga's commands, when the reactions run inline.
    reactions: Option<CommandWriter>,
    /// Orders the inline reactions saw end, counted on commit.
    settled: SettledOrders,
}

impl<A: Bound> std::fmt::Debug for CommandHandler<A>
where
    A::Command: streamcart_schemas::envelope::CommandPayload + Send,
    A::Event: streamcart_schemas::envelope::EventPayload + Send,
    A::State: streamcart_schemas::envelope::SnapshotState + Send,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandHandler")
            .field("aggregate", &A::NAME)
            .field("partitions", &self.partitions.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether a command found on a partition belongs there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// murmur2 gives its key the partition it arrived on: this partition's writer applies it.
    Owned,
    /// Its key belongs to partition `owner`.
    Misplaced {
        /// The partition murmur2 gives the key.
        owner: i32,
    },
    /// The topic has no partitions (metadata not usable): nothing can be decided.
    NoPartitions,
}

/// Where the command keyed `key`, found on partition `arrived` of a topic with `partitions`
/// partitions, belongs.
pub fn placement(key: &[u8], arrived: i32, partitions: i32) -> Placement {
    match partition_for(key, partitions) {
        Some(owner) if owner == arrived => Placement::Owned,
        Some(owner) => Placement::Misplaced { owner },
        None => Placement::NoPartitions,
    }
}

/// The forward of a misplaced command to partition `owner` of `topic`: the very key, value
/// bytes and headers it arrived with, so its owner sees what the client sent.
pub fn forward_to(
    topic: Arc<str>,
    record: &InputRecord<'_>,
    bytes: &[u8],
    owner: i32,
) -> OutRecord {
    let mut r = OutRecord::new(topic, record.key.map(<[u8]>::to_vec), Some(bytes.to_vec()));
    r.partition = Some(owner);
    r.headers = record
        .headers
        .iter()
        .map(|(k, v)| (Cow::Owned((*k).to_owned()), Cow::Owned(v.to_vec())))
        .collect();
    r
}

impl<A: Bound> CommandHandler<A>
where
    A::Command: streamcart_schemas::envelope::CommandPayload + Send,
    A::Event: streamcart_schemas::envelope::EventPayload + Send,
    A::State: streamcart_schemas::envelope::SnapshotState + Send,
{
    /// A handler; `rt` runs the registry calls of the codec (cached after the first use).
    pub fn new(
        settings: KafkaSettings,
        topics: Topics,
        codec: Arc<Codec>,
        rt: tokio::runtime::Handle,
        ctx: Arc<A::Context>,
        tuning: ProcessorTuning,
    ) -> Self {
        let reactions = tuning.inline_reactions.then(|| CommandWriter {
            topics: topics.clone(),
            codec: codec.clone(),
            rt: rt.clone(),
        });
        Self {
            reactions,
            settled: SettledOrders::default(),
            commands_topic: topics.commands(A::CONTEXT).into(),
            events_topic: topics.events(A::CONTEXT).into(),
            results_topic: topics.command_results().into(),
            snapshots_topic: topics.snapshots(A::CONTEXT).into(),
            settings,
            topics,
            codec,
            rt,
            ctx,
            tuning,
            partitions: HashMap::new(),
            partition_count: None,
            misplaced: 0,
            restorer: None,
        }
    }

    /// Reads the partition counts of the aggregate's commands, events and snapshots topics and
    /// keeps their common count for ownership checks; fails, naming each topic's count, when
    /// they are not co-partitioned (or cannot be read within the metadata timeout).
    pub fn check_topics(&mut self) -> Result<i32, RuntimeError> {
        let count = self.read_partition_count()?;
        if self.restorer.is_none() {
            self.restorer = Some(Restorer::new(&self.settings)?);
        }
        Ok(count)
    }

    fn read_partition_count(&mut self) -> Result<i32, CoPartitionError> {
        let count = co_partitioned(
            &self.settings,
            &[
                &self.commands_topic,
                &self.events_topic,
                &self.snapshots_topic,
            ],
            self.tuning.metadata_timeout,
        )?;
        if self.partition_count != Some(count) {
            tracing::info!(
                aggregate = A::NAME,
                partitions = count,
                "topics co-partitioned"
            );
        }
        self.partition_count = Some(count);
        Ok(count)
    }

    /// Answers a command that belongs to partition `owner`, not to the one it arrived on:
    /// forwards it there untouched, or refuses it, depending on the tuning. Nothing is applied.
    fn misplaced(
        &mut self,
        record: &InputRecord<'_>,
        bytes: &[u8],
        command: &CommandEnvelope<A::Command>,
        owner: i32,
        count: i32,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError> {
        self.misplaced += 1;
        if self.misplaced == 1 || self.misplaced.is_power_of_two() {
            tracing::warn!(
                aggregate = A::NAME,
                misplaced = self.misplaced,
                forwarding = self.tuning.forward_misplaced,
                example_key = %command.aggregate_id,
                arrived_on = record.partition,
                owner,
                "commands written by a producer that does not place keys with murmur2"
            );
        }
        if self.tuning.forward_misplaced {
            out.push(forward_to(
                self.commands_topic.clone(),
                record,
                bytes,
                owner,
            ));
            return Ok(());
        }
        let result = CommandResult {
            command_id: command.command_id,
            aggregate_id: command.aggregate_id.clone(),
            outcome: Outcome::Rejected {
                code: COMMAND_MISPLACED.into(),
                message: format!(
                    "command for {:?} arrived on partition {} of {}, but its key belongs to \
                     partition {owner} of {count} (murmur2); nothing was applied: produce \
                     with the murmur2 partitioner (librdkafka: partitioner=murmur2_random)",
                    command.aggregate_id, record.partition, self.commands_topic
                ),
            },
        };
        out.push(self.result_record(&result)?);
        Ok(())
    }

    // Every record out of a handled command gets its `traceparent` from the runtime: the span
    // of that command's handling.
    fn result_record(&self, result: &CommandResult) -> Result<OutRecord, HandleError> {
        let bytes = self.encode(result)?;
        let mut r = OutRecord::new(
            self.results_topic.clone(),
            Some(result.command_id.to_string().into_bytes()),
            Some(bytes),
        );
        r.headers = vec![(
            headers::CONTENT_TYPE.into(),
            headers::AVRO_CONTENT_TYPE.as_bytes().into(),
        )];
        Ok(r)
    }

    /// Rebuilds the tables of `partitions` from Kafka: every partition's snapshots, then from
    /// each partition's latest checkpoint the events after it. Each topic is read for all the
    /// partitions at once, so a restore costs about one read of the data, not one per partition.
    fn restore(
        &self,
        restorer: &Restorer,
        partitions: &[i32],
    ) -> Result<HashMap<i32, PartitionState<A>>, RuntimeError> {
        struct Restoring<A: streamcart_aggregates::Aggregate> {
            table: AggregateTable<A>,
            checkpoint: Option<i64>,
            last_event_offset: Option<i64>,
            replayed: u64,
        }
        let restoring: HashMap<i32, Restoring<A>> = partitions
            .iter()
            .map(|p| {
                (
                    *p,
                    Restoring {
                        table: AggregateTable::<A>::new(self.tuning.snapshots),
                        checkpoint: None,
                        last_event_offset: None,
                        replayed: 0,
                    },
                )
            })
            .collect();
        let snapshots = self.topics.snapshots(A::CONTEXT);
        let events = self.topics.events(A::CONTEXT);
        let from_start: Vec<(i32, i64)> = partitions.iter().map(|p| (*p, 0)).collect();
        // Snapshots are decoded and installed on threads of their own while this one polls:
        // decoding costs several times what reading does. Each decoding thread owns the tables
        // of some of the partitions, so they share nothing.
        let codec = &*self.codec;
        let rt = &self.rt;
        let started = std::time::Instant::now();
        let decoders = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(partitions.len())
            .max(1);
        let shard_of: HashMap<i32, usize> = partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i % decoders))
            .collect();
        let mut shards: Vec<HashMap<i32, Restoring<A>>> =
            (0..decoders).map(|_| HashMap::new()).collect();
        for (p, part) in restoring {
            let shard = shard_of.get(&p).copied().unwrap_or_default();
            shards[shard].insert(p, part);
        }
        let decode_shard = |incoming: std::sync::mpsc::Receiver<Batch>,
                            mut shard: HashMap<i32, Restoring<A>>|
         -> Result<HashMap<i32, Restoring<A>>, String> {
            for batch in incoming {
                for (partition, bytes) in batch.records() {
                    let Some(part) = shard.get_mut(&partition) else {
                        continue;
                    };
                    let snap: Snapshot<A::State> = decode_blocking(rt, codec, bytes)
                        .map_err(|e| format!("partition {partition}: {e}"))?;
                    if snap.aggregate_id.is_empty() {
                        part.checkpoint = snap.event_offset;
                    } else {
                        part.table.load_snapshot(
                            snap.aggregate_id,
                            snap.version,
                            snap.state,
                            snap.recent_command_ids,
                        );
                    }
                }
            }
            Ok(shard)
        };
        let decode_shard = &decode_shard;
        let decoded = std::thread::scope(|scope| {
            let mut senders = Vec::with_capacity(decoders);
            let mut workers = Vec::with_capacity(decoders);
            for shard in shards {
                let (batches, incoming) = std::sync::mpsc::sync_channel::<Batch>(8);
                senders.push(batches);
                workers.push(scope.spawn(move || decode_shard(incoming, shard)));
            }
            let mut open: Vec<Batch> = (0..decoders).map(|_| Batch::default()).collect();
            let read = restorer.read_partitions(
                &snapshots,
                &from_start,
                self.tuning.restore_timeout,
                |m| {
                    let Some(&shard) = shard_of.get(&m.partition()) else {
                        return Ok(());
                    };
                    if let Some(bytes) = m.payload() {
                        open[shard].push(m.partition(), bytes);
                    }
                    if open[shard].ends.len() >= RESTORE_BATCH {
                        let full = std::mem::take(&mut open[shard]);
                        // A decoder that stopped has its reason, reported below.
                        senders[shard]
                            .send(full)
                            .map_err(|_| "snapshot decoding stopped".to_owned())?;
                    }
                    Ok(())
                },
            );
            let mut flushed = read.is_ok();
            for (batches, rest) in senders.into_iter().zip(open) {
                flushed = flushed && batches.send(rest).is_ok();
            }
            let mut restored = HashMap::new();
            let mut failed = None;
            for worker in workers {
                match worker.join() {
                    Ok(Ok(shard)) => restored.extend(shard),
                    Ok(Err(reason)) => {
                        failed.get_or_insert(reason);
                    }
                    Err(_) => {
                        failed.get_or_insert_with(|| "snapshot decoding panicked".to_owned());
                    }
                }
            }
            let fail = |reason: String| RuntimeError::Restore {
                topic: snapshots.clone(),
                partition: partitions.first().copied().unwrap_or_default(),
                reason,
            };
            match (read, failed) {
                (_, Some(reason)) => Err(fail(reason)),
                (Err(e), None) => Err(e),
                (Ok(_), None) if !flushed => Err(fail("snapshot decoding stopped".to_owned())),
                (Ok(read), None) => Ok((restored, read)),
            }
        });
        let (mut restoring, snapshot_records) = decoded?;
        let snapshots_read = started.elapsed();
        let after_checkpoints: Vec<(i32, i64)> = restoring
            .iter_mut()
            .map(|(p, part)| {
                part.last_event_offset = part.checkpoint;
                (*p, part.checkpoint.map_or(0, |o| o + 1))
            })
            .collect();
        let event_records = restorer.read_partitions(
            &events,
            &after_checkpoints,
            self.tuning.restore_timeout,
            |m| {
                let Some(bytes) = m.payload() else {
                    return Ok(());
                };
                let Some(part) = restoring.get_mut(&m.partition()) else {
                    return Ok(());
                };
                let event: EventEnvelope<A::Event> =
                    decode_blocking(&self.rt, &self.codec, bytes).map_err(|e| e.to_string())?;
                part.table.replay(&event).map_err(|e| e.to_string())?;
                part.last_event_offset = Some(m.offset());
                part.replayed += 1;
                Ok(())
            },
        )?;
        tracing::info!(
            aggregate = A::NAME,
            partitions = ?partitions,
            snapshot_records,
            snapshots_ms = snapshots_read.as_millis() as u64,
            event_records,
            events_ms = (started.elapsed() - snapshots_read).as_millis() as u64,
            "assignment restored"
        );
        Ok(restoring
            .into_iter()
            .map(|(partition, mut part)| {
                part.table.commit();
                tracing::info!(
                    aggregate = A::NAME,
                    partition,
                    aggregates = part.table.len(),
                    replayed = part.replayed,
                    checkpoint = ?part.checkpoint,
                    "partition restored"
                );
                let replayed = part.replayed;
                (
                    partition,
                    PartitionState {
                        table: part.table,
                        last_event_offset: part.last_event_offset,
                        events_since_checkpoint: replayed,
                        sealed_since_checkpoint: replayed,
                        committed: (part.last_event_offset, replayed),
                    },
                )
            })
            .collect())
    }

    fn encode<T: streamcart_schemas::envelope::WireRecord>(
        &self,
        record: &T,
    ) -> Result<Vec<u8>, HandleError> {
        encode_blocking(&self.rt, &self.codec, record)
    }

    fn snapshot_record(
        &self,
        partition: i32,
        snapshot: &Snapshot<A::State>,
    ) -> Result<OutRecord, HandleError> {
        let bytes = self.encode(snapshot)?;
        let mut r = OutRecord::new(
            self.snapshots_topic.clone(),
            Some(snapshot.aggregate_id.as_bytes().to_vec()),
            Some(bytes),
        );
        // Snapshots live in the same partition number as their events: restore reads one partition.
        r.partition = Some(partition);
        r.headers.push((
            headers::CONTENT_TYPE.into(),
            headers::AVRO_CONTENT_TYPE.as_bytes().into(),
        ));
        Ok(r)
    }
}

impl<A: Bound> TxnHandler for CommandHandler<A>
where
    A::Command: streamcart_schemas::envelope::CommandPayload + Send,
    A::Event: streamcart_schemas::envelope::EventPayload + Send,
    A::State: streamcart_schemas::envelope::SnapshotState + Send,
{
    fn operation(&self) -> &'static str {
        "command handled"
    }

    fn timer_operation(&self) -> &'static str {
        "snapshot taken"
    }

    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), RuntimeError> {
        // Partitions added to a topic trigger an assignment: the count is read again, so
        // ownership follows it, and topics no longer co-partitioned stop the loop.
        match self.read_partition_count() {
            Ok(_) => {}
            // A broker that cannot answer now is a blip the restore below waits out as well;
            // the count read before stays right unless partitions were added meanwhile, which
            // the assignment of the new partitions checks again.
            Err(e @ CoPartitionError::Metadata { .. }) if self.partition_count.is_some() => {
                tracing::warn!(aggregate = A::NAME, error = %e,
                    "partition counts not re-read; keeping the known count");
            }
            Err(e) => return Err(e.into()),
        }
        // One pair of clients for every partition and every assignment: a new librdkafka client
        // takes about a second to connect and start fetching, which per partition made a
        // four-partition restore take five seconds.
        let restorer = match self.restorer.take() {
            Some(r) => r,
            None => Restorer::new(&self.settings)?,
        };
        let assigned: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        let restored = self.restore(&restorer, &assigned)?;
        // Kept only after a restore that worked: clients that just failed are not trusted again.
        self.restorer = Some(restorer);
        self.partitions.extend(restored);
        Ok(())
    }

    fn on_revoked(&mut self, partitions: &[(String, i32)]) {
        for (_, p) in partitions {
            self.partitions.remove(p);
        }
    }

    fn handle(
        &mut self,
        record: &InputRecord<'_>,
        out: &mut Vec<OutRecord>,
    ) -> Result<(), HandleError> {
        let Some(bytes) = record.payload else {
            return Err(HandleError::permanent(
                "decode.empty",
                "command record has no value",
            ));
        };
        let command: CommandEnvelope<A::Command> =
            decode_blocking(&self.rt, &self.codec, bytes).map_err(decode_failure)?;
        if record.key != Some(command.aggregate_id.as_bytes()) {
            return Err(HandleError::permanent(
                "command.key_mismatch",
                format!(
                    "record key does not equal aggregate id {:?}",
                    command.aggregate_id
                ),
            ));
        }
        let count = match self.partition_count {
            Some(n) => n,
            None => self
                .check_topics()
                .map_err(|e| HandleError::Transient(e.to_string()))?,
        };
        match placement(command.aggregate_id.as_bytes(), record.partition, count) {
            Placement::Owned => {}
            Placement::Misplaced { owner } => {
                return self.misplaced(record, bytes, &command, owner, count, out);
            }
            Placement::NoPartitions => {
                return Err(HandleError::Transient(format!(
                    "topics report {count} partitions"
                )));
            }
        }
        let ctx = self.ctx.clone();
        let Some(part) = self.partitions.get_mut(&record.partition) else {
            return Err(HandleError::Transient(format!(
                "partition {} not restored",
                record.partition
            )));
        };
        let decided = part.table.handle(&command, &ctx, now_millis());
        part.events_since_checkpoint += decided.events.len() as u64;
        let content_type = headers::AVRO_CONTENT_TYPE.as_bytes();
        for event in &decided.events {
            let bytes = self.encode(event)?;
            let mut r = OutRecord::new(
                self.events_topic.clone(),
                Some(event.aggregate_id.as_bytes().to_vec()),
                Some(bytes),
            );
            // Events stay in their command's partition (co-partitioned topics).
            r.partition = Some(record.partition);
            r.headers = vec![(headers::CONTENT_TYPE.into(), content_type.into())];
            out.push(r);
            if let Some(w) = &self.reactions {
                self.settled.note(A::settled(&event.payload));
                for c in A::react(event) {
                    out.push(w.record(&c)?);
                }
            }
        }
        out.push(self.result_record(&decided.result)?);
        Ok(())
    }

    fn on_delivered(&mut self, delivered: &[Delivered]) {
        for d in delivered {
            if *d.topic == *self.events_topic
                && let Some(part) = self.partitions.get_mut(&d.partition)
            {
                part.last_event_offset =
                    Some(part.last_event_offset.map_or(d.offset, |o| o.max(d.offset)));
            }
        }
    }

    // Snapshots and checkpoints are written at the start of the next transaction rather than
    // at the end of this one: the offsets of the committed events are known by then, so they
    // can be produced while the batch is handled instead of costing an extra round of
    // acknowledgements before every commit. The state may already include input of the new
    // transaction (handled while the previous one committed); a snapshot of it commits
    // atomically with the events it covers. If that transaction aborts, the rollback marks
    // them due again.
    fn on_begin(&mut self, out: &mut Vec<OutRecord>) -> Result<(), HandleError> {
        let now = now_millis();
        let every = self.tuning.checkpoint_every_events;
        let mut records = Vec::new();
        for (p, part) in &self.partitions {
            let checkpoint = part.events_since_checkpoint >= every;
            let ids = if checkpoint {
                part.table.dirty()
            } else {
                part.table.due_snapshots()
            };
            for id in ids {
                let Some(entry) = part.table.get(&id) else {
                    continue;
                };
                let snapshot = Snapshot {
                    aggregate_id: id.clone(),
                    version: entry.version,
                    taken_at: now,
                    event_offset: part.last_event_offset,
                    state: entry.state.clone(),
                    recent_command_ids: part.table.recent_ids(&id),
                };
                records.push((*p, snapshot, Some(id)));
            }
            if checkpoint {
                records.push((
                    *p,
                    Snapshot {
                        aggregate_id: String::new(),
                        version: 0,
                        taken_at: now,
                        event_offset: part.last_event_offset,
                        state: A::State::default(),
                        recent_command_ids: Vec::new(),
                    },
                    None,
                ));
            }
        }
        for (p, snapshot, id) in records {
            out.push(self.snapshot_record(p, &snapshot)?);
            if let Some(part) = self.partitions.get_mut(&p) {
                match id {
                    Some(id) => part.table.mark_snapshotted(&id),
                    None => part.events_since_checkpoint = 0,
                }
            }
        }
        Ok(())
    }

    fn on_seal(&mut self) {
        for part in self.partitions.values_mut() {
            part.table.seal();
            part.sealed_since_checkpoint = part.events_since_checkpoint;
        }
        self.settled.seal();
    }

    fn on_commit(&mut self) {
        for part in self.partitions.values_mut() {
            part.table.commit_sealed();
            part.committed = (part.last_event_offset, part.sealed_since_checkpoint);
        }
        self.settled.commit();
    }

    fn on_abort(&mut self) {
        for part in self.partitions.values_mut() {
            part.table.rollback();
            (part.last_event_offset, part.events_since_checkpoint) = part.committed;
        }
        self.settled.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_belongs_to_the_murmur2_partition_of_its_key() {
        let owner = partition_for(b"SKU-042", 8).expect("partitions");
        assert_eq!(placement(b"SKU-042", owner, 8), Placement::Owned);
        let elsewhere = (owner + 3) % 8;
        assert_eq!(
            placement(b"SKU-042", elsewhere, 8),
            Placement::Misplaced { owner }
        );
        assert_eq!(placement(b"SKU-042", 0, 0), Placement::NoPartitions);
        // One partition: everything is owned.
        assert_eq!(placement(b"SKU-042", 0, 1), Placement::Owned);
    }

    #[test]
    fn a_forward_keeps_key_value_and_every_header_and_names_the_owner() {
        let record = InputRecord {
            topic: "inventory.stock.commands",
            partition: 1,
            offset: 17,
            key: Some(b"SKU-042"),
            payload: Some(b"\0\0\0\0\x07avro"),
            headers: vec![
                (
                    "traceparent",
                    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".as_slice(),
                ),
                (
                    "content-type",
                    b"application/vnd.apache.avro+binary".as_slice(),
                ),
                ("x-empty", b"".as_slice()),
                ("traceparent", b"second".as_slice()),
            ],
        };
        let out = forward_to(
            "inventory.stock.commands".into(),
            &record,
            b"\0\0\0\0\x07avro",
            5,
        );
        assert_eq!(&*out.topic, "inventory.stock.commands");
        assert_eq!(out.partition, Some(5));
        assert_eq!(out.key.as_deref(), Some(b"SKU-042".as_slice()));
        assert_eq!(out.payload.as_deref(), Some(b"\0\0\0\0\x07avro".as_slice()));
        let headers: Vec<(&str, &[u8])> = out
            .headers
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(
            headers, record.headers,
            "same headers, same order, repeats kept"
        );
    }
}
