//! Header names carried on records.

/// W3C trace context (`00-<trace id>-<span id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";
/// Media type of the value, e.g. `application/vnd.confluent.avro`.
pub const CONTENT_TYPE: &str = "content-type";
/// Content type of every Avro value in Confluent wire format.
pub const AVRO_CONTENT_TYPE: &str = "application/vnd.confluent.avro";
/// Dead letters: why the record could not be handled (human-readable).
pub const DLQ_REASON: &str = "dlq.reason";
/// Dead letters: stable machine-readable error kind.
pub const DLQ_KIND: &str = "dlq.kind";
/// Dead letters: topic the record came from.
pub const DLQ_SOURCE_TOPIC: &str = "dlq.source.topic";
/// Dead letters: partition the record came from.
pub const DLQ_SOURCE_PARTITION: &str = "dlq.source.partition";
/// Dead letters: offset of the record in its source partition.
pub const DLQ_SOURCE_OFFSET: &str = "dlq.source.offset";
/// Dead letters: the processor that gave up on it.
pub const DLQ_PROCESSOR: &str = "dlq.processor";
