//! The command gateway's Idempotency-Key: one key, one effect.
