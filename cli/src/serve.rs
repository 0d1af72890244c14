//! `streamcart serve`: the HTTP edge (query API and command gateway) until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use streamcart_api::auth::Verifier;
use streamcart_api::gateway::Gateway;
use streamcart_api::idempotency::IdempotencyKeys;
use streamcart_api::metrics::Metrics;
use streamcart_api::state::EdgeReads;
use streamcart_api::{AppState, server};
use streamcart_kafka_runtime::admin::{Retention, TopicSpec, ensure_topics};
use streamcart_projectors::{CacheOptions, CassandraStore, ProductCache};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long start-up waits for the read-model store before giving up.
const STORE_PATIENCE: Duration = Duration::from_secs(90);

/// Runs the edge until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let verifier = Verifier::new(&cfg.api.jwt).context("JWT configuration")?;
    // The edge can serve reads with Kafka down, so topics it writes to are created if it can.
    let specs: Vec<TopicSpec> = [Context::Catalog, Context::Inventory, Context::Orders]
        .into_iter()
        .map(|ctx| topics.commands(ctx))
        .chain([topics.command_results()])
        .map(|name| TopicSpec {
            name,
            partitions: cfg.partitions,
            retention: Retention::Forever,
        })
        .collect();
    match tokio::time::timeout(Duration::from_secs(10), ensure_topics(&cfg.kafka, &specs)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot create the command topics now"),
        Err(_) => tracing::warn!("Kafka did not answer; command topics not checked"),
    }
    let codec = Arc::new(
        Codec::new(&cfg.registry_url, topics.clone())
            .context("registry client")?
            .with_auto_register(cfg.auto_register_schemas),
    );
    let store = connect_store(&cfg, &shutdown).await?;
    let metrics = Metrics::shared();
    let cache_options = CacheOptions::for_topic_prefix(&cfg.topic_prefix);
    let redis_url = cfg.redis_url.clone();
    let connect_cache = move || {
        let (url, options) = (redis_url.clone(), cache_options.clone());
        async move { ProductCache::connect(&url, options).await }
    };
    let reads = EdgeReads::open(
        store,
        connect_cache,
        &cfg.api,
        Arc::clone(&metrics),
        shutdown.clone(),
    )
    .await
    .context("opening the read models")?;
    let gateway = Gateway::start(
        &cfg.kafka,
        codec,
        &cfg.api,
        Arc::clone(&metrics),
        shutdown.clone(),
    )
    .context("starting the command gateway")?;
    let keys = IdempotencyKeys::start(
        cfg.redis_url.clone(),
        &cfg.topic_prefix,
        &cfg.api,
        shutdown.clone(),
    );
    let state = AppState {
        verifier,
        reads,
        gateway: Arc::clone(&gateway),
        keys,
        metrics,
        config: Arc::new(cfg.api.clone()),
    };
    server::serve(state, &cfg.api, shutdown)
        .await
        .context("HTTP server")?;
    let flushed = tokio::task::spawn_blocking(move || gateway.flush(Duration::from_secs(5)));
    let _ = flushed.await;
    tracing::info!("edge stopped");
    Ok(())
}

async fn connect_store(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<CassandraStore> {
    let started = std::time::Instant::now();
    loop {
        match CassandraStore::connect(&cfg.cassandra_nodes, &cfg.keyspace).await {
            Ok(store) => return Ok(store),
            Err(e) if e.is_transient() && started.elapsed() < STORE_PATIENCE => {
                tracing::warn!(error = %e, "read-model store unavailable; retrying");
            }
            Err(e) => return Err(e).context("connecting to the read-model store"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => anyhow::bail!("shut down while waiting for the store"),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
