//! Projectors on Kafka: a read model's pure projection and its store, run on the shared
//! at-least-once loop (`streamcart_kafka_runtime::at_least_once`). The loop consumes one
//! context's events (`read_committed`); the handler here decodes them, projects them on top of
//! the rows the store holds, writes ScyllaDB, then the Redis cache, and hands back the public
//! summary records; only once all of that (and any dead letter) is acknowledged does the loop
//! commit the offsets. At-least-once delivery is enough: projections are idempotent and every
//! write is version-stamped, so a redelivered batch changes nothing.
//!
//! Rebuilds: `rebuild` fills a fresh generation of the tables from offset zero while the live
//! loop keeps serving; the live loop also writes every new change into the generation being
//! built, so when the rebuild has caught up it can switch readers over with nothing missing.

mod handler;
mod progress;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use streamcart_kafka_runtime::at_least_once::{self, Spec};
use streamcart_kafka_runtime::{KafkaSettings, RuntimeError};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{EventEnvelope, EventPayload, WireRecord};
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::projection::{Mutation, Projection};
use crate::store::{CassandraStore, ProductCache, StoreError};
use handler::ProjectorHandler;
use progress::Progress;

/// Why a projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The Kafka loop could not run (its configuration cannot work).
    #[error("kafka loop: {0}")]
    Runtime(#[from] RuntimeError),
    /// The read-model store failed in a way retrying cannot fix.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The projector was asked for something that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// Why a row's public summary could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The registry could not be reached: retried with the batch.
    #[error("summary cannot be encoded now: {0}")]
    Unavailable(String),
    /// The row cannot become a summary: its event is dead-lettered.
    #[error("summary refused: {0}")]
    Refused(String),
}

/// What one read model adds to its pure projection to run on Kafka: the context whose events it
/// consumes, how to read a row back, and the public summary it publishes (if any).
pub trait ProjectionBinding: Projection + Send + Sync + 'static
where
    Self::Event: EventPayload + Send + Sync,
    Self::Row: Send + Sync,
{
    /// Context whose events this projection consumes.
    const CONTEXT: Context;
    /// The aggregate version a row reflects.
    fn version(row: &Self::Row) -> u64;
    /// The writes that put `row` into every table of the read model as it is, at its version.
    fn restate(row: &Self::Row) -> Vec<Mutation>;
    /// Reads the row the store holds for `id`.
    fn load(
        store: &CassandraStore,
        id: String,
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send;
    /// The summary topic, if this projection publishes one.
    fn summary_topic(topics: &Topics) -> Option<String>;
    /// Key and encoded public summary of a row, for the summary topic.
    fn summary(
        codec: &Codec,
        row: &Self::Row,
    ) -> impl Future<Output = Result<(String, Vec<u8>), SummaryError>> + Send;
}

/// Encodes a summary record in the registry's wire format.
pub async fn encode_summary<T: WireRecord>(
    codec: &Codec,
    record: &T,
) -> Result<Vec<u8>, SummaryError> {
    codec.encode(record).await.map_err(|e| {
        if e.is_transient() {
            SummaryError::Unavailable(e.to_string())
        } else {
            SummaryError::Refused(e.to_string())
        }
    })
}

/// How one projector instance runs.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Consumer group; a rebuild uses a group of its own.
    pub group_id: String,
    /// Static membership id of a live projector instance (see `KafkaSettings::transactional_consumer`).
    pub instance_id: Option<String>,
    /// Most events handled per write batch.
    pub batch_max: usize,
    /// Longest a batch waits for more events.
    pub batch_wait: Duration,
    /// Keep the Redis product cache in step (live projectors only).
    pub update_cache: bool,
    /// Publish the public summary stream (live projectors only).
    pub publish_summary: bool,
    /// Stop once caught up with the end the topic had at start (rebuilds).
    pub stop_when_caught_up: bool,
    /// Follow generation switches made by rebuilds (live projectors).
    pub follow_generations: bool,
}

impl ProjectorOptions {
    /// The live projector of `name`: cache, summaries, generation following.
    pub fn live(group_id: String) -> Self {
        Self {
            group_id,
            instance_id: None,
            batch_max: 2_000,
            batch_wait: Duration::from_millis(20),
            update_cache: true,
            publish_summary: true,
            stop_when_caught_up: false,
            follow_generations: true,
        }
    }
}

/// Name of the marker row holding the generation a rebuild is filling.
pub fn building_marker(name: &str) -> String {
    format!("{name}#building")
}

/// Everything a projector loop needs.
#[derive(Clone)]
pub struct ProjectorDeps {
    /// Kafka settings.
    pub settings: KafkaSettings,
    /// Topic names.
    pub topics: Topics,
    /// Registry codec.
    pub codec: Arc<Codec>,
    /// The store at the generation to start from.
    pub store: CassandraStore,
    /// The Redis product cache, when this projection has one.
    pub cache: Option<ProductCache>,
}

impl std::fmt::Debug for ProjectorDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectorDeps")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Runs projection `P` until `shutdown` (or, for a rebuild, until caught up) on the shared
/// at-least-once loop. Returns the number of events read.
pub async fn run<P>(
    deps: ProjectorDeps,
    options: ProjectorOptions,
    shutdown: CancellationToken,
) -> Result<u64, ProjectorError>
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    run_tracked::<P>(deps, options, shutdown, None).await
}

/// [`run`], noting in `progress` every record the loop reads.
async fn run_tracked<P>(
    deps: ProjectorDeps,
    options: ProjectorOptions,
    shutdown: CancellationToken,
    progress: Option<Progress>,
) -> Result<u64, ProjectorError>
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    let name = format!("projector.{}", P::NAME);
    let mut spec = Spec::new(
        name.clone(),
        vec![deps.topics.events(P::CONTEXT)],
        options.group_id.clone(),
        deps.topics.dlq(&name),
    );
    spec.instance_id = options.instance_id.clone();
    spec.batch_max = options.batch_max;
    spec.batch_wait = options.batch_wait;
    spec.stop_at_end = options.stop_when_caught_up;
    let settings: KafkaSettings = deps.settings.clone();
    let mut handler = ProjectorHandler::<P>::new(deps, options, progress);
    let stats = at_least_once::run(&settings, &spec, &mut handler, &shutdown).await?;
    tracing::info!(projection = P::NAME, ?stats, "projector loop ended");
    Ok(stats.read)
}

/// Stores to read from and write to when the active or building generation moved; `None` when
/// nothing changed since the last check.
pub(crate) async fn generations(
    store: &CassandraStore,
    name: &str,
    current: (u32, Option<u32>),
) -> Result<Option<(CassandraStore, Vec<CassandraStore>, (u32, Option<u32>))>, ProjectorError> {
    let active = store.active_generation(name).await?;
    let building = store.active_generation(&building_marker(name)).await?;
    let seen = (active, (building > active).then_some(building));
    if seen == current {
        return Ok(None);
    }
    let base = store.with_generation(active).await?;
    let mut targets = vec![base.clone()];
    if let Some(b) = seen.1 {
        targets.push(store.with_generation(b).await?);
    }
    Ok(Some((base, targets, seen)))
}

/// Rebuilds projection `P` into the next generation and switches readers to it once caught up.
/// The live projector writes every new change into the generation being built meanwhile.
pub async fn rebuild<P>(
    deps: ProjectorDeps,
    group_prefix: &str,
    shutdown: CancellationToken,
) -> Result<u32, ProjectorError>
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    let active = deps.store.active_generation(P::NAME).await?;
    let building = deps
        .store
        .active_generation(&building_marker(P::NAME))
        .await?;
    let next = active.max(building) + 1;
    let fresh = deps.store.with_generation(next).await?;
    fresh.activate(&building_marker(P::NAME), next).await?;
    // Give live projectors time to notice the new generation before the replay starts, so no
    // change falls between the replay's end and the switch.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        _ = shutdown.cancelled() => {}
    }
    let options = ProjectorOptions {
        group_id: format!("{group_prefix}projector.{}.g{next}", P::NAME),
        update_cache: false,
        publish_summary: false,
        stop_when_caught_up: true,
        follow_generations: false,
        ..ProjectorOptions::live(String::new())
    };
    // The ends the replay reads to are fixed when it starts (`stop_when_caught_up`): progress is
    // measured against the same ends, read now.
    let progress = Progress::default();
    let reported = CancellationToken::new();
    let input = deps.topics.events(P::CONTEXT);
    let bounds = match progress::bounds(&deps.settings, &input).await {
        Ok(bounds) => {
            let (_, total) = progress.replayed(&bounds);
            tracing::info!(
                projection = P::NAME,
                generation = next,
                total,
                "rebuild replaying {total} events of {input} (counted in offsets, transaction markers included)"
            );
            tokio::spawn(progress::report(
                P::NAME,
                progress.clone(),
                bounds.clone(),
                reported.clone(),
            ));
            Some(bounds)
        }
        // Progress is for the operator; the rebuild itself does not need it.
        Err(e) => {
            tracing::warn!(projection = P::NAME, error = %e, "rebuild progress unknown");
            None
        }
    };
    let _stop_reporting = reported.drop_guard();
    let read = run_tracked::<P>(
        ProjectorDeps {
            store: fresh.clone(),
            ..deps
        },
        options,
        shutdown.clone(),
        Some(progress.clone()),
    )
    .await?;
    let (replayed, total) = bounds.map_or((read, read), |b| progress.replayed(&b));
    if shutdown.is_cancelled() {
        return Err(ProjectorError::Invalid(
            "rebuild interrupted before it caught up".into(),
        ));
    }
    fresh.activate(P::NAME, next).await?;
    tracing::info!(
        projection = P::NAME,
        generation = next,
        events = read,
        replayed,
        total,
        "rebuild caught up ({replayed} of {total} events replayed); readers switched"
    );
    Ok(next)
}
