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
use streamcart_kafka_runtime::admin::{TopicClass, TopicSpec, ensure_topics};
use streamcart_projectors::{CacheOptions, CassandraStore, ProductCache};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How long start-up waits for the read-model store before serving without it.
const STORE_START_WAIT: Duration = Duration::from_secs(20);

/// Runs the edge until `shutdown`.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let verifier = Verifier::new(&cfg.api.jwt).context("JWT configuration")?;
    // The edge can serve reads with Kafka down, so topics it writes to are created if it can.
    let specs: Vec<TopicSpec> = [Context::Catalog, Context::Inventory, Context::Orders]
        .into_iter()
        .map(|ctx| TopicSpec::new(topics.commands(ctx), cfg.partitions, TopicClass::Commands))
        .chain([TopicSpec::new(
            topics.command_results(),
            cfg.partitions,
            TopicClass::Results,
        )])
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
    let metrics = Metrics::shared();
    let cache_options = CacheOptions::for_topic_prefix(&cfg.topic_prefix);
    let redis_url = cfg.redis_url.clone();
    let connect_cache = move || {
        let (url, options) = (redis_url.clone(), cache_options.clone());
        async move { ProductCache::connect(&url, options).await }
    };
    let (nodes, options) = (
        cfg.cassandra_nodes.clone(),
        cfg.store.options(&cfg.keyspace),
    );
    let connect_store = move || {
        let (nodes, options) = (nodes.clone(), options.clone());
        async move { CassandraStore::connect_with(&nodes, options).await }
    };
    // Commands and cached products do not need ScyllaDB, so an edge (re)started while it is
    // unreachable serves them rather than failing the role.
    let (reads, connecting) = EdgeReads::open_connecting(
        connect_store,
        connect_cache,
        &cfg.api,
        Arc::clone(&metrics),
        shutdown.clone(),
    );
    // A store that is merely starting is waited for, so a normal start serves every read from
    // its first request; one still unreachable after that is connected in the background.
    let mut connecting = tokio::spawn(connecting);
    let mut connecting = match tokio::time::timeout(STORE_START_WAIT, &mut connecting).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => return Err(e).context("connecting to the read-model store"),
        Ok(Err(e)) => return Err(e).context("connecting to the read-model store"),
        Err(_) => {
            tracing::warn!(
                waited_s = STORE_START_WAIT.as_secs(),
                "read-model store still unreachable; serving commands and cached products \
                 while it connects"
            );
            Some(connecting)
        }
    };
    let keys = IdempotencyKeys::start(
        cfg.redis_url.clone(),
        &cfg.topic_prefix,
        &cfg.api,
        shutdown.clone(),
    );
    let gateway = Gateway::start(
        &cfg.kafka,
        codec,
        &cfg.api,
        Arc::clone(&metrics),
        Some(Arc::clone(&keys)),
        shutdown.clone(),
    )
    .context("starting the command gateway")?;
    let state = AppState {
        verifier,
        reads,
        gateway: Arc::clone(&gateway),
        keys,
        metrics,
        config: Arc::new(cfg.api.clone()),
    };
    // Only an error that retrying cannot mend (a bad keyspace name, say) ends the store's
    // connection attempts early; it stops the edge.
    let store_refused = async {
        match connecting.as_mut() {
            Some(handle) => match handle.await {
                Ok(Err(e)) => anyhow::Error::new(e),
                Err(e) => anyhow::Error::new(e),
                Ok(Ok(())) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = server::serve(state, &cfg.api, shutdown.clone()) => served.context("HTTP server")?,
        e = store_refused => {
            shutdown.cancel();
            return Err(e).context("connecting to the read-model store");
        }
    }
    let flushed = tokio::task::spawn_blocking(move || gateway.flush(Duration::from_secs(5)));
    let _ = flushed.await;
    tracing::info!("edge stopped");
    Ok(())
}
