//! `streamcart project <name>` and `streamcart projector rebuild <name>`.

use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use streamcart_kafka_runtime::admin::{TopicClass, TopicSpec, ensure_topics};
use streamcart_projectors::runner::{self, ProjectorDeps, ProjectorOptions};
use streamcart_projectors::{
    CacheError, CacheOptions, CassandraStore, Orders, ProductCache, Products, Projection, Stocks,
    StoreError,
};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The read models.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProjectionKind {
    /// Products by id and by category, the Redis product cache, `catalog.product.summary`.
    Products,
    /// Stock by sku.
    Stock,
    /// Orders by id and by customer, `orders.order.summary`.
    Orders,
}

impl ProjectionKind {
    /// Every projection, for `streamcart run`.
    pub const ALL: [ProjectionKind; 3] = [
        ProjectionKind::Products,
        ProjectionKind::Stock,
        ProjectionKind::Orders,
    ];

    fn name(self) -> &'static str {
        match self {
            ProjectionKind::Products => Products::NAME,
            ProjectionKind::Stock => Stocks::NAME,
            ProjectionKind::Orders => Orders::NAME,
        }
    }
}

async fn deps(cfg: &Config, with_cache: bool) -> anyhow::Result<ProjectorDeps> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let spec = |name: String, class| TopicSpec::new(name, cfg.partitions, class);
    let mut specs = Vec::new();
    for ctx in [Context::Catalog, Context::Inventory, Context::Orders] {
        specs.push(spec(topics.events(ctx), TopicClass::Events));
    }
    specs.push(spec(topics.order_summary(), TopicClass::Summaries));
    specs.push(spec(topics.product_summary(), TopicClass::Summaries));
    for name in ProjectionKind::ALL {
        let dlq = topics.dlq(&format!("projector.{}", name.name()));
        specs.push(spec(dlq, TopicClass::DeadLetters));
    }
    ensure_topics(&cfg.kafka, &specs)
        .await
        .context("creating topics")?;
    let codec = Arc::new(
        Codec::new(&cfg.registry_url, topics.clone())
            .context("registry client")?
            .with_auto_register(cfg.auto_register_schemas),
    );
    let options = cfg.store.options(&cfg.keyspace);
    let store = with_retries("the read-model store", StoreError::is_transient, || {
        CassandraStore::connect_with(&cfg.cassandra_nodes, options.clone())
    })
    .await
    .context("connecting to the read-model store")?;
    let active = store.active_generation(Products::NAME).await.ok();
    tracing::debug!(?active, "store connected");
    let cache = if with_cache {
        let options = CacheOptions::for_topic_prefix(&cfg.topic_prefix);
        Some(
            with_retries("Redis", CacheError::is_transient, || {
                ProductCache::connect(&cfg.redis_url, options.clone())
            })
            .await
            .context("connecting to Redis")?,
        )
    } else {
        None
    };
    Ok(ProjectorDeps {
        settings: cfg.kafka.clone(),
        topics,
        codec,
        store,
        cache,
    })
}

/// How long a projector keeps trying to reach a store at start-up: a store that is restarting
/// (or not up yet on a fresh deployment) is waited for instead of failing the role.
const STORE_CONNECT_BOUND: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `connect` until it succeeds, with backoff, for at most [`STORE_CONNECT_BOUND`] or
/// until a shutdown signal; then returns its last error. An error `transient` says retrying
/// cannot mend (a keyspace replicated otherwise than configured) is returned at once.
async fn with_retries<T, E, F, Fut>(
    what: &str,
    transient: impl Fn(&E) -> bool,
    mut connect: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let started = std::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(500);
    loop {
        match connect().await {
            Ok(v) => return Ok(v),
            Err(e)
                if transient(&e)
                    && started.elapsed() < STORE_CONNECT_BOUND
                    && !streamcart_kafka_runtime::shutdown::requested() =>
            {
                tracing::warn!(store = what, error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "store not reachable yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs the live projector `kind` until shutdown.
pub async fn run(
    cfg: Config,
    kind: ProjectionKind,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let deps = deps(&cfg, matches!(kind, ProjectionKind::Products)).await?;
    let name = kind.name();
    let store = deps
        .store
        .with_generation(deps.store.active_generation(name).await?)
        .await?;
    let deps = ProjectorDeps { store, ..deps };
    let group = format!("{}projector.{name}", cfg.topic_prefix);
    let mut options = ProjectorOptions::live(group.clone());
    options.instance_id = Some(format!("{group}-{}", cfg.instance_id));
    tracing::info!(projection = name, "starting");
    let read = match kind {
        ProjectionKind::Products => runner::run::<Products>(deps, options, shutdown).await,
        ProjectionKind::Stock => runner::run::<Stocks>(deps, options, shutdown).await,
        ProjectionKind::Orders => runner::run::<Orders>(deps, options, shutdown).await,
    }
    .with_context(|| format!("projector {name}"))?;
    tracing::info!(projection = name, events = read, "stopped");
    Ok(())
}

/// Rebuilds `kind` into a fresh generation and switches readers to it when caught up.
pub async fn rebuild(
    cfg: Config,
    kind: ProjectionKind,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let deps = deps(&cfg, false).await?;
    let generation = match kind {
        ProjectionKind::Products => {
            runner::rebuild::<Products>(deps, &cfg.topic_prefix, shutdown).await
        }
        ProjectionKind::Stock => runner::rebuild::<Stocks>(deps, &cfg.topic_prefix, shutdown).await,
        ProjectionKind::Orders => {
            runner::rebuild::<Orders>(deps, &cfg.topic_prefix, shutdown).await
        }
    }
    .with_context(|| format!("rebuilding {}", kind.name()))?;
    println!(
        "{} rebuilt into generation {generation}; readers switched",
        kind.name()
    );
    Ok(())
}
