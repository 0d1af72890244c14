//! Dead letters: records that cannot be handled go to `<processor>.dlq` with their original key,
//! bytes and headers, plus the reason and origin in headers. The transactional loop writes them
//! inside the batch's transaction; the at-least-once loop waits for their acknowledgement before
//! it commits past them. Both build them here, so a dead letter looks the same whoever wrote it.

use std::borrow::Cow;

use crate::headers;
use crate::transactional::{InputRecord, OutRecord};

/// Header list of produced records: names and many values are constants, so they are not copied.
pub type RecordHeaders = Vec<(Cow<'static, str>, Cow<'static, [u8]>)>;

/// The record that could not be handled, as it was read.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// Original key.
    pub key: Option<&'a [u8]>,
    /// Original value.
    pub payload: Option<&'a [u8]>,
    /// Original headers, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// A dead-letter record ready to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter topic.
    pub topic: String,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value, byte for byte.
    pub payload: Option<Vec<u8>>,
    /// Reason and origin headers first, then the original headers.
    pub headers: RecordHeaders,
}

/// Builds the dead-letter record of `origin`, refused by `processor` with `kind` and `reason`.
pub fn build(
    dlq_topic: &str,
    processor: &str,
    origin: &Origin<'_>,
    kind: &str,
    reason: &str,
) -> DeadLetter {
    let mut headers: RecordHeaders = vec![
        (headers::DLQ_KIND.into(), kind.as_bytes().to_vec().into()),
        (
            headers::DLQ_REASON.into(),
            reason.as_bytes().to_vec().into(),
        ),
        (
            headers::DLQ_SOURCE_TOPIC.into(),
            origin.topic.as_bytes().to_vec().into(),
        ),
        (
            headers::DLQ_SOURCE_PARTITION.into(),
            origin.partition.to_string().into_bytes().into(),
        ),
        (
            headers::DLQ_SOURCE_OFFSET.into(),
            origin.offset.to_string().into_bytes().into(),
        ),
        (
            headers::DLQ_PROCESSOR.into(),
            processor.as_bytes().to_vec().into(),
        ),
    ];
    // The original headers (trace context included) stay with the record.
    headers.extend(
        origin
            .headers
            .iter()
            .map(|(k, v)| (Cow::Owned((*k).to_owned()), Cow::Owned(v.to_vec()))),
    );
    DeadLetter {
        topic: dlq_topic.to_owned(),
        key: origin.key.map(<[u8]>::to_vec),
        payload: origin.payload.map(<[u8]>::to_vec),
        headers,
    }
}

/// Builds the dead-letter record for `input` of a transactional loop.
pub fn dead_letter(
    dlq_topic: &str,
    processor: &str,
    input: &InputRecord<'_>,
    kind: &str,
    reason: &str,
) -> OutRecord {
    let origin = Origin {
        topic: input.topic,
        partition: input.partition,
        offset: input.offset,
        key: input.key,
        payload: input.payload,
        headers: &input.headers,
    };
    let letter = build(dlq_topic, processor, &origin, kind, reason);
    let mut out = OutRecord::new(letter.topic, letter.key, letter.payload);
    out.headers = letter.headers;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_the_original_bytes_and_headers_after_the_reason() {
        let original = [("traceparent", &b"00-abc-def-01"[..]), ("x", &b""[..])];
        let origin = Origin {
            topic: "in",
            partition: 3,
            offset: 42,
            key: Some(b"k"),
            payload: Some(&[0, 1, 2, 255]),
            headers: &original,
        };
        let d = build("p.dlq", "p", &origin, "decode.failed", "bad bytes");
        assert_eq!(d.topic, "p.dlq");
        assert_eq!(d.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(d.payload.as_deref(), Some(&[0u8, 1, 2, 255][..]));
        let find = |name: &str| {
            d.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_vec())
        };
        assert_eq!(find(headers::DLQ_KIND), Some(b"decode.failed".to_vec()));
        assert_eq!(find(headers::DLQ_SOURCE_PARTITION), Some(b"3".to_vec()));
        assert_eq!(find(headers::DLQ_SOURCE_OFFSET), Some(b"42".to_vec()));
        assert_eq!(find(headers::DLQ_PROCESSOR), Some(b"p".to_vec()));
        let tail: Vec<(&str, &[u8])> = d.headers[6..]
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        assert_eq!(tail, original.to_vec());
    }
}
