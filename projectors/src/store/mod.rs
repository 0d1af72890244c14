//! Where mutations land: the ScyllaDB store (sessions, generations, migrations) and the Redis
//! product cache.

pub mod cassandra;
mod error;
mod migrations;
pub mod redis_cache;

pub use crate::orders::OrderCursor;
pub use cassandra::{
    CassandraStore, DEFAULT_GENERATION, MAX_PAGE_SIZE, Page, Replication, StoreConsistency,
    StoreCredentials, StoreOptions,
};
pub use error::{DecodeSource, StoreError};
pub use redis_cache::{
    CacheError, CacheLookup, CacheOptions, InvalidateOutcome, ProductCache, PutOutcome,
};
