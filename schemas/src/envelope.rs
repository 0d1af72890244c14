//! The records every topic carries: command and event envelopes around a context's payload,
//! command results, and snapshots. Ids are UUIDs; times are milliseconds since the epoch (UTC).

use apache_avro::types::Value;
use streamcart_aggregates::values::TimestampMillis;
use uuid::Uuid;

use crate::error::MappingError;
use crate::mapping::value::{Fields, branch, long_u64, optional, record};
use crate::topics::{Context, Stream, StreamKind};

/// A context's payload (its command union, event union or snapshot state) mapped to Avro.
pub trait AvroPayload: Sized {
    /// The context whose schemas describe this payload.
    const CONTEXT: Context;
    /// The Avro value of this payload, shaped like its `.avsc` (a union branch for commands and events).
    fn to_avro(&self) -> Result<Value, MappingError>;
    /// Reads the payload back from a value resolved against this build's schema.
    fn from_avro(value: Value) -> Result<Self, MappingError>;
}

/// Marks a context's command enum, the payload of [`CommandEnvelope`].
pub trait CommandPayload: AvroPayload {}
/// Marks a context's event enum, the payload of [`EventEnvelope`].
pub trait EventPayload: AvroPayload {}
/// Marks an aggregate state, the payload of [`Snapshot`].
pub trait SnapshotState: AvroPayload {}

/// A top-level record with its own topic and registry subject.
pub trait WireRecord: Sized {
    /// The stream (topic and subject) that carries this record.
    const STREAM: Stream;
    /// The Avro value of the whole record.
    fn to_avro(&self) -> Result<Value, MappingError>;
    /// Reads the record back from a value resolved against this build's schema.
    fn from_avro(value: Value) -> Result<Self, MappingError>;
}

/// A command addressed to one aggregate; the value of `<context>.<aggregate>.commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandEnvelope<C> {
    /// Unique per command; a repeated id is answered with [`Outcome::Duplicate`].
    pub command_id: Uuid,
    /// Key of the addressed aggregate (also the Kafka key).
    pub aggregate_id: String,
    /// Optimistic concurrency check; `None` skips it.
    pub expected_version: Option<u64>,
    /// When the command was issued.
    pub issued_at: TimestampMillis,
    /// Ties together every message of one business flow (e.g. the order id of a saga).
    pub correlation_id: String,
    /// The command itself.
    pub payload: C,
}

/// An event of one aggregate; the value of `<context>.<aggregate>.events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope<E> {
    /// Unique per event.
    pub event_id: Uuid,
    /// Key of the aggregate (also the Kafka key).
    pub aggregate_id: String,
    /// 1-based, gap-free per aggregate.
    pub version: u64,
    /// When the event was recorded.
    pub occurred_at: TimestampMillis,
    /// Id of the command that caused the event.
    pub causation_id: Uuid,
    /// Copied from the causing command.
    pub correlation_id: String,
    /// The event itself.
    pub payload: E,
}

/// The answer to one command; the value of `command.results`, keyed by command id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The command this answers.
    pub command_id: Uuid,
    /// The aggregate the command addressed.
    pub aggregate_id: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; `event_ids` may be empty when the command changed nothing.
    Accepted {
        /// Aggregate version after the command.
        version: u64,
        /// Ids of the events produced, in order.
        event_ids: Vec<Uuid>,
    },
    /// Refused by the aggregate with a stable code.
    Rejected {
        /// Stable machine-readable code, e.g. `stock.invalid_quantity`.
        code: String,
        /// Human-readable explanation.
        message: String,
    },
    /// The command id was seen before; not applied again.
    Duplicate {
        /// Aggregate version when the duplicate was detected.
        version: u64,
    },
}

/// An aggregate's state at a version; the value of `<context>.<aggregate>.snapshots` (compacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<S> {
    /// Key of the aggregate (also the Kafka key).
    pub aggregate_id: String,
    /// Version of the last event folded into `state` (0 = none).
    pub version: u64,
    /// When the snapshot was taken.
    pub taken_at: TimestampMillis,
    /// Offset of the last folded event in the events partition, when the writer knows it.
    pub event_offset: Option<i64>,
    /// The state.
    pub state: S,
    /// Recently handled command ids, oldest first, kept for duplicate detection across restores.
    pub recent_command_ids: Vec<Uuid>,
}

impl<C: CommandPayload> WireRecord for CommandEnvelope<C> {
    const STREAM: Stream = Stream::Aggregate(C::CONTEXT, StreamKind::Commands);

    fn to_avro(&self) -> Result<Value, MappingError> {
        let expected = self
            .expected_version
            .map(|v| long_u64("CommandEnvelope", "expected_version", v))
            .transpose()?;
        Ok(record(vec![
            ("command_id", Value::Uuid(self.command_id)),
            ("aggregate_id", Value::String(self.aggregate_id.clone())),
            ("expected_version", optional(expected)),
            ("issued_at", Value::TimestampMillis(self.issued_at)),
            ("correlation_id", Value::String(self.correlation_id.clone())),
            ("payload", self.payload.to_avro()?),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("CommandEnvelope", value)?;
        Ok(Self {
            command_id: f.uuid("command_id")?,
            aggregate_id: f.string("aggregate_id")?,
            expected_version: f.optional_u64("expected_version")?,
            issued_at: f.timestamp("issued_at")?,
            correlation_id: f.string("correlation_id")?,
            payload: C::from_avro(f.take_raw("payload")?)?,
        })
    }
}

impl<E: EventPayload> WireRecord for EventEnvelope<E> {
    const STREAM: Stream = Stream::Aggregate(E::CONTEXT, StreamKind::Events);

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(record(vec![
            ("event_id", Value::Uuid(self.event_id)),
            ("aggregate_id", Value::String(self.aggregate_id.clone())),
            (
                "version",
                long_u64("EventEnvelope", "version", self.version)?,
            ),
            ("occurred_at", Value::TimestampMillis(self.occurred_at)),
            ("causation_id", Value::Uuid(self.causation_id)),
            ("correlation_id", Value::String(self.correlation_id.clone())),
            ("payload", self.payload.to_avro()?),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("EventEnvelope", value)?;
        Ok(Self {
            event_id: f.uuid("event_id")?,
            aggregate_id: f.string("aggregate_id")?,
            version: f.u64("version")?,
            occurred_at: f.timestamp("occurred_at")?,
            causation_id: f.uuid("causation_id")?,
            correlation_id: f.string("correlation_id")?,
            payload: E::from_avro(f.take_raw("payload")?)?,
        })
    }
}

impl WireRecord for CommandResult {
    const STREAM: Stream = Stream::CommandResults;

    fn to_avro(&self) -> Result<Value, MappingError> {
        let outcome = match &self.outcome {
            Outcome::Accepted { version, event_ids } => branch(
                0,
                record(vec![
                    ("version", long_u64("Accepted", "version", *version)?),
                    (
                        "event_ids",
                        Value::Array(event_ids.iter().map(|id| Value::Uuid(*id)).collect()),
                    ),
                ]),
            ),
            Outcome::Rejected { code, message } => branch(
                1,
                record(vec![
                    ("code", Value::String(code.clone())),
                    ("message", Value::String(message.clone())),
                ]),
            ),
            Outcome::Duplicate { version } => branch(
                2,
                record(vec![(
                    "version",
                    long_u64("Duplicate", "version", *version)?,
                )]),
            ),
        };
        Ok(record(vec![
            ("command_id", Value::Uuid(self.command_id)),
            ("aggregate_id", Value::String(self.aggregate_id.clone())),
            ("outcome", outcome),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("CommandResult", value)?;
        let command_id = f.uuid("command_id")?;
        let aggregate_id = f.string("aggregate_id")?;
        let outcome = match f.union("outcome")? {
            (0, v) => {
                let mut a = Fields::new("Accepted", v)?;
                let version = a.u64("version")?;
                let event_ids = a
                    .array("event_ids")?
                    .into_iter()
                    .map(|id| match id {
                        Value::Uuid(u) => Ok(u),
                        Value::String(s) => {
                            Uuid::parse_str(&s).map_err(|_| MappingError::InvalidUuid {
                                record: "Accepted",
                                field: "event_ids",
                            })
                        }
                        _ => Err(MappingError::InvalidUuid {
                            record: "Accepted",
                            field: "event_ids",
                        }),
                    })
                    .collect::<Result<_, _>>()?;
                Outcome::Accepted { version, event_ids }
            }
            (1, v) => {
                let mut r = Fields::new("Rejected", v)?;
                Outcome::Rejected {
                    code: r.string("code")?,
                    message: r.string("message")?,
                }
            }
            (2, v) => {
                let mut d = Fields::new("Duplicate", v)?;
                Outcome::Duplicate {
                    version: d.u64("version")?,
                }
            }
            (index, _) => {
                return Err(MappingError::UnknownBranch {
                    record: "CommandResult",
                    field: "outcome",
                    index,
                });
            }
        };
        Ok(Self {
            command_id,
            aggregate_id,
            outcome,
        })
    }
}

impl<S: SnapshotState> WireRecord for Snapshot<S> {
    const STREAM: Stream = Stream::Aggregate(S::CONTEXT, StreamKind::Snapshots);

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(record(vec![
            ("aggregate_id", Value::String(self.aggregate_id.clone())),
            ("version", long_u64("Snapshot", "version", self.version)?),
            ("taken_at", Value::TimestampMillis(self.taken_at)),
            ("event_offset", optional(self.event_offset.map(Value::Long))),
            ("state", self.state.to_avro()?),
            (
                "recent_command_ids",
                Value::Array(
                    self.recent_command_ids
                        .iter()
                        .map(|id| Value::Uuid(*id))
                        .collect(),
                ),
            ),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("Snapshot", value)?;
        Ok(Self {
            aggregate_id: f.string("aggregate_id")?,
            version: f.u64("version")?,
            taken_at: f.timestamp("taken_at")?,
            event_offset: f.optional_long("event_offset")?,
            state: S::from_avro(f.take("state")?)?,
            recent_command_ids: f
                .array("recent_command_ids")?
                .into_iter()
                .map(|v| match v {
                    Value::Uuid(id) => Ok(id),
                    Value::String(s) => {
                        Uuid::parse_str(&s).map_err(|_| MappingError::InvalidUuid {
                            record: "Snapshot",
                            field: "recent_command_ids",
                        })
                    }
                    other => Err(MappingError::WrongType {
                        record: "Snapshot",
                        field: "recent_command_ids",
                        expected: "uuid",
                        found: crate::mapping::value::kind(&other),
                    }),
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

macro_rules! value_conversions {
    ($ty:ident < $p:ident : $bound:ident >) => {
        impl<$p: $bound> TryFrom<&$ty<$p>> for Value {
            type Error = MappingError;
            fn try_from(record: &$ty<$p>) -> Result<Value, MappingError> {
                WireRecord::to_avro(record)
            }
        }
        impl<$p: $bound> TryFrom<Value> for $ty<$p> {
            type Error = MappingError;
            fn try_from(value: Value) -> Result<Self, MappingError> {
                <Self as WireRecord>::from_avro(value)
            }
        }
    };
}

value_conversions!(CommandEnvelope<C: CommandPayload>);
value_conversions!(EventEnvelope<E: EventPayload>);
value_conversions!(Snapshot<S: SnapshotState>);

impl TryFrom<&CommandResult> for Value {
    type Error = MappingError;
    fn try_from(record: &CommandResult) -> Result<Value, MappingError> {
        WireRecord::to_avro(record)
    }
}

impl TryFrom<Value> for CommandResult {
    type Error = MappingError;
    fn try_from(value: Value) -> Result<Self, MappingError> {
        <Self as WireRecord>::from_avro(value)
    }
}
