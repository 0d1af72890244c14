//! Dead letters: records that cannot be handled go to `<processor>.dlq` with their original key and
//! bytes, and the reason and origin in headers, inside the same transaction as the rest of the batch.

use std::borrow::Cow;

use crate::headers;
use crate::transactional::{InputRecord, OutRecord};

/// Builds the dead-letter record for `input`.
pub fn dead_letter(
    dlq_topic: &str,
    processor: &str,
    input: &InputRecord<'_>,
    kind: &str,
    reason: &str,
) -> OutRecord {
    let mut out = OutRecord::new(
        dlq_topic,
        input.key.map(<[u8]>::to_vec),
        input.payload.map(<[u8]>::to_vec),
    );
    out.headers = vec![
        (headers::DLQ_KIND.into(), kind.as_bytes().to_vec().into()),
        (
            headers::DLQ_REASON.into(),
            reason.as_bytes().to_vec().into(),
        ),
        (
            headers::DLQ_SOURCE_TOPIC.into(),
            input.topic.as_bytes().to_vec().into(),
        ),
        (
            headers::DLQ_SOURCE_PARTITION.into(),
            input.partition.to_string().into_bytes().into(),
        ),
        (
            headers::DLQ_SOURCE_OFFSET.into(),
            input.offset.to_string().into_bytes().into(),
        ),
        (
            headers::DLQ_PROCESSOR.into(),
            processor.as_bytes().to_vec().into(),
        ),
    ];
    // The original headers (trace context included) stay with the record.
    out.headers.extend(
        input
            .headers
            .iter()
            .map(|(k, v)| (Cow::Owned((*k).to_owned()), Cow::Owned(v.to_vec()))),
    );
    out
}
