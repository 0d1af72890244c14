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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::Message;
use streamcart_kafka_runtime::headers;
use streamcart_kafka_runtime::restore::read_partition;
use streamcart_kafka_runtime::trace::TraceContext;
use streamcart_kafka_runtime::transactional::{Delivered, InputRecord, OutRecord, TxnHandler};
use streamcart_kafka_runtime::{HandleError, KafkaSettings, RuntimeError};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope, Snapshot};
use streamcart_schemas::error::{DecodeError, Disposition};
use streamcart_schemas::topics::Topics;

use super::table::{AggregateTable, SnapshotPolicy};
use crate::bindings::Bound;

/// Tuning of one command processor.
#[derive(Debug, Clone)]
pub struct ProcessorTuning {
    /// Per-aggregate snapshot policy.
    pub snapshots: SnapshotPolicy,
    /// Write a partition checkpoint after this many events in the partition.
    pub checkpoint_every_events: u64,
    /// Longest a partition restore may take.
    pub restore_timeout: Duration,
}

impl Default for ProcessorTuning {
    fn default() -> Self {
        Self {
            snapshots: SnapshotPolicy::default(),
            checkpoint_every_events: 20_000,
            restore_timeout: Duration::from_secs(120),
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
    /// Topic names, built once: they are needed for every output record.
    events_topic: Arc<str>,
    results_topic: Arc<str>,
    snapshots_topic: Arc<str>,
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

/// A stable machine-readable kind for a decode failure, for dead-letter headers.
pub fn decode_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::TooShort { .. } => "decode.too_short",
        DecodeError::WrongMagicByte { .. } => "decode.wrong_magic_byte",
        DecodeError::UnknownSchemaId { .. } => "decode.unknown_schema_id",
        DecodeError::RegistryUnavailable { .. } => "decode.registry_unavailable",
        DecodeError::RegistryRefused { .. } => "decode.registry_refused",
        DecodeError::UnexpectedSchema { .. } => "decode.unexpected_schema",
        DecodeError::CorruptBody { .. } => "decode.corrupt_body",
        DecodeError::TrailingBytes { .. } => "decode.trailing_bytes",
        DecodeError::Mapping { .. } => "decode.mapping",
        DecodeError::Schema(_) => "decode.schema",
    }
}

/// Encodes a record from a loop thread; a registry that cannot be reached is a retry, anything
/// else about the record a dead letter.
pub fn encode_blocking<T: streamcart_schemas::envelope::WireRecord>(
    rt: &tokio::runtime::Handle,
    codec: &Codec,
    record: &T,
) -> Result<Vec<u8>, HandleError> {
    let encoded = match codec.encode_known(record) {
        Some(done) => done,
        None => rt.block_on(codec.encode(record)),
    };
    encoded.map_err(|e| {
        if e.is_transient() {
            HandleError::Transient(e.to_string())
        } else {
            HandleError::permanent("encode.failed", e.to_string())
        }
    })
}

/// Decodes a record from a loop thread, entering the runtime only when the registry must be asked.
pub fn decode_blocking<T: streamcart_schemas::envelope::WireRecord>(
    rt: &tokio::runtime::Handle,
    codec: &Codec,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    match codec.decode_known(bytes) {
        Some(done) => done,
        None => rt.block_on(codec.decode(bytes)),
    }
}

/// Maps a decode failure to retry (registry unreachable) or dead letter (bad bytes).
pub fn decode_failure(e: DecodeError) -> HandleError {
    match e.disposition() {
        Disposition::Retry => HandleError::Transient(e.to_string()),
        Disposition::DeadLetter => HandleError::permanent(decode_kind(&e), e.to_string()),
    }
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
        Self {
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
        }
    }

    fn restore(&self, partition: i32) -> Result<PartitionState<A>, RuntimeError> {
        let mut table = AggregateTable::<A>::new(self.tuning.snapshots);
        let snapshots = self.topics.snapshots(A::CONTEXT);
        let events = self.topics.events(A::CONTEXT);
        let mut checkpoint: Option<i64> = None;
        read_partition(
            &self.settings,
            &snapshots,
            partition,
            0,
            self.tuning.restore_timeout,
            |m| {
                let Some(bytes) = m.payload() else {
                    return Ok(());
                };
                let snap: Snapshot<A::State> =
                    decode_blocking(&self.rt, &self.codec, bytes).map_err(|e| e.to_string())?;
                if snap.aggregate_id.is_empty() {
                    checkpoint = snap.event_offset;
                } else {
                    table.load_snapshot(
                        snap.aggregate_id,
                        snap.version,
                        snap.state,
                        snap.recent_command_ids,
                    );
                }
                Ok(())
            },
        )?;
        let from = checkpoint.map_or(0, |o| o + 1);
        let mut last_event_offset = checkpoint;
        let mut replayed = 0u64;
        read_partition(
            &self.settings,
            &events,
            partition,
            from,
            self.tuning.restore_timeout,
            |m| {
                let Some(bytes) = m.payload() else {
                    return Ok(());
                };
                let event: EventEnvelope<A::Event> =
                    decode_blocking(&self.rt, &self.codec, bytes).map_err(|e| e.to_string())?;
                table.replay(&event).map_err(|e| e.to_string())?;
                last_event_offset = Some(m.offset());
                replayed += 1;
                Ok(())
            },
        )?;
        table.commit();
        tracing::info!(
            aggregate = A::NAME,
            partition,
            aggregates = table.len(),
            replayed,
            ?checkpoint,
            "partition restored"
        );
        Ok(PartitionState {
            table,
            last_event_offset,
            events_since_checkpoint: replayed,
            sealed_since_checkpoint: replayed,
            committed: (last_event_offset, replayed),
        })
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
    fn on_assigned(&mut self, partitions: &[(String, i32)]) -> Result<(), RuntimeError> {
        for (_, p) in partitions {
            let state = self.restore(*p)?;
            self.partitions.insert(*p, state);
        }
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
        let trace = record
            .header(headers::TRACEPARENT)
            .and_then(TraceContext::parse)
            .unwrap_or_else(TraceContext::new_root)
            .child();
        let ctx = self.ctx.clone();
        let Some(part) = self.partitions.get_mut(&record.partition) else {
            return Err(HandleError::Transient(format!(
                "partition {} not restored",
                record.partition
            )));
        };
        let decided = part.table.handle(&command, &ctx, now_millis());
        part.events_since_checkpoint += decided.events.len() as u64;
        let tp = trace.to_header();
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
            r.headers = vec![
                (headers::TRACEPARENT.into(), tp.clone().into()),
                (headers::CONTENT_TYPE.into(), content_type.into()),
            ];
            out.push(r);
        }
        let bytes = self.encode(&decided.result)?;
        let mut r = OutRecord::new(
            self.results_topic.clone(),
            Some(command.command_id.to_string().into_bytes()),
            Some(bytes),
        );
        r.headers = vec![
            (headers::TRACEPARENT.into(), tp.into()),
            (headers::CONTENT_TYPE.into(), content_type.into()),
        ];
        out.push(r);
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
    }

    fn on_commit(&mut self) {
        for part in self.partitions.values_mut() {
            part.table.commit_sealed();
            part.committed = (part.last_event_offset, part.sealed_since_checkpoint);
        }
    }

    fn on_abort(&mut self) {
        for part in self.partitions.values_mut() {
            part.table.rollback();
            (part.last_event_offset, part.events_since_checkpoint) = part.committed;
        }
    }
}
