//! What every handler shares.

use std::sync::Arc;

use streamcart_projectors::{CassandraStore, ProductCache};

use crate::auth::Verifier;
use crate::config::ApiConfig;
use crate::gateway::Gateway;
use crate::idempotency::IdempotencyKeys;
use crate::metrics::Metrics;
use crate::reads::ReadModels;

/// The read models the edge serves: the ScyllaDB tables fronted by the Redis product cache.
pub type EdgeReads = ReadModels<CassandraStore, ProductCache>;

/// The edge's shared state; cloning is cheap.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Bearer token verification.
    pub verifier: Verifier,
    /// The query side.
    pub reads: Arc<EdgeReads>,
    /// The command side.
    pub gateway: Arc<Gateway>,
    /// Bindings of idempotency keys.
    pub keys: Arc<IdempotencyKeys>,
    /// Counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The settings.
    pub config: Arc<ApiConfig>,
}
