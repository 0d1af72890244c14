//! Shared Kafka plumbing.
