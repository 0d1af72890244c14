//! Envelopes for the projection tests (tests, or the `testing` feature).
#![allow(clippy::expect_used)]

use streamcart_schemas::EventEnvelope;
use uuid::Uuid;

/// Base time of the test events; event `v` happens `v` seconds later.
pub const T0: i64 = 1_700_000_000_000;

/// An envelope of `aggregate_id` at `version`, with a deterministic time.
pub fn envelope<E>(aggregate_id: &str, version: u64, payload: impl Into<E>) -> EventEnvelope<E> {
    EventEnvelope {
        event_id: Uuid::new_v4(),
        aggregate_id: aggregate_id.to_owned(),
        version,
        occurred_at: at(version),
        causation_id: Uuid::new_v4(),
        correlation_id: "test".to_owned(),
        payload: payload.into(),
    }
}

/// The time of the event at `version`.
pub fn at(version: u64) -> i64 {
    T0 + i64::try_from(version).expect("small version") * 1000
}
