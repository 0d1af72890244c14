//! Wall-clock times as the contract carries them.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (UTC).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the epoch (UTC), as JWT claims carry them.
pub fn epoch_seconds() -> i64 {
    now_ms() / 1_000
}
