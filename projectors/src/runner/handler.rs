//! A projection as a handler of the at-least-once loop: decode an event, fold a batch's events
//! per aggregate on top of the rows the store holds, write every target generation, refresh the
//! cache, and answer the summary records.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use streamcart_kafka_runtime::at_least_once::{Handler, Output, Record};
use streamcart_kafka_runtime::{HandleError, headers};
use streamcart_schemas::DecodeError;
use streamcart_schemas::envelope::{EventEnvelope, EventPayload, WireRecord};

use super::{ProjectionBinding, ProjectorDeps, ProjectorOptions, SummaryError, generations};
use crate::projection::{Mutation, fold_iter};
use crate::store::{CacheError, CassandraStore, StoreError};

/// How often a live projector looks for generation switches made by rebuilds.
const GENERATION_CHECK: Duration = Duration::from_secs(2);
/// Rows kept in memory between batches before the map is dropped and reloaded on demand.
const MAX_ROWS: usize = 200_000;

/// The state of one projector between batches.
pub(super) struct ProjectorHandler<P: ProjectionBinding>
where
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
{
    deps: ProjectorDeps,
    options: ProjectorOptions,
    summary_topic: Option<String>,
    /// The store rows are read from (the active generation).
    base: CassandraStore,
    /// Every store written: the active generation, and the one a rebuild is filling.
    targets: Vec<CassandraStore>,
    seen_generations: (u32, Option<u32>),
    last_generation_check: Option<Instant>,
    /// The row of each aggregate as of the last applied batch (`None`: known to have no row).
    /// Only a batch that was applied in full updates it, so a batch applied again after a
    /// failure folds on top of the same rows and yields the same writes, whatever part of the
    /// failed attempt reached the store.
    rows: HashMap<String, Option<P::Row>>,
}

impl<P: ProjectionBinding> ProjectorHandler<P>
where
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
{
    pub(super) fn new(deps: ProjectorDeps, options: ProjectorOptions) -> Self {
        let summary_topic = if options.publish_summary {
            P::summary_topic(&deps.topics)
        } else {
            None
        };
        Self {
            base: deps.store.clone(),
            targets: vec![deps.store.clone()],
            seen_generations: (deps.store.generation(), None),
            last_generation_check: None,
            rows: HashMap::new(),
            summary_topic,
            deps,
            options,
        }
    }

    /// The row of `id` before the batch: from memory, else from the store (remembered, so a
    /// retry starts from the same row).
    async fn current(&mut self, id: &str) -> Result<Option<P::Row>, HandleError> {
        if let Some(row) = self.rows.get(id) {
            return Ok(row.clone());
        }
        let row = P::load(&self.base, id.to_owned())
            .await
            .map_err(|e| store_error(&e))?;
        self.rows.insert(id.to_owned(), row.clone());
        Ok(row)
    }
}

impl<P: ProjectionBinding> Handler for ProjectorHandler<P>
where
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    type Item = EventEnvelope<P::Event>;

    async fn decode(&mut self, record: &Record<'_>) -> Result<Self::Item, HandleError> {
        let Some(bytes) = record.payload else {
            return Err(HandleError::permanent("decode.empty", "event has no value"));
        };
        self.deps
            .codec
            .decode::<EventEnvelope<P::Event>>(bytes)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    HandleError::Transient(e.to_string())
                } else {
                    HandleError::permanent(decode_kind(&e), e.to_string())
                }
            })
    }

    async fn apply(&mut self, items: &[Self::Item]) -> Result<Vec<Output>, HandleError> {
        let mut by_aggregate: BTreeMap<&str, Vec<&Self::Item>> = BTreeMap::new();
        for event in items {
            by_aggregate
                .entry(event.aggregate_id.as_str())
                .or_default()
                .push(event);
        }
        let mut mutations = Vec::new();
        let mut changed: Vec<(String, Option<P::Row>)> = Vec::new();
        for (id, events) in by_aggregate {
            let current = self.current(id).await?;
            let (row, produced) = fold_iter::<P, _>(current, events);
            if !produced.is_empty() {
                mutations.extend(produced);
                changed.push((id.to_owned(), row));
            }
        }
        for store in &self.targets {
            store.apply(&mutations).await.map_err(|e| store_error(&e))?;
        }
        if self.options.update_cache
            && let Some(cache) = &self.deps.cache
            && mutations
                .iter()
                .any(|m| matches!(m, Mutation::UpsertProduct(_)))
        {
            cache.apply(&mutations).await.map_err(|e| cache_error(&e))?;
        }
        let mut outputs = Vec::new();
        if let Some(topic) = &self.summary_topic {
            for row in changed.iter().filter_map(|(_, row)| row.as_ref()) {
                let (key, bytes) =
                    P::summary(&self.deps.codec, row)
                        .await
                        .map_err(|e| match e {
                            SummaryError::Unavailable(reason) => HandleError::Transient(reason),
                            SummaryError::Refused(reason) => {
                                HandleError::permanent("summary.refused", reason)
                            }
                        })?;
                outputs.push(
                    Output::new(topic.clone(), Some(key.into_bytes()), Some(bytes))
                        .with_header(headers::CONTENT_TYPE, headers::AVRO_CONTENT_TYPE.as_bytes()),
                );
            }
        }
        // Everything above succeeded: the batch's rows are now what the store holds.
        if self.rows.len() + changed.len() > MAX_ROWS {
            self.rows.clear();
        }
        self.rows.extend(changed);
        Ok(outputs)
    }

    async fn tick(&mut self) {
        if !self.options.follow_generations
            || self
                .last_generation_check
                .is_some_and(|t| t.elapsed() < GENERATION_CHECK)
        {
            return;
        }
        self.last_generation_check = Some(Instant::now());
        match generations(&self.deps.store, P::NAME, self.seen_generations).await {
            Ok(Some((base, targets, seen))) => {
                tracing::info!(
                    projection = P::NAME,
                    from = self.base.generation(),
                    to = base.generation(),
                    "following generation change"
                );
                self.base = base;
                self.targets = targets;
                self.seen_generations = seen;
                self.rows.clear();
            }
            Ok(None) => {}
            // Checked again on a later tick; writes keep going to the generations known so far.
            Err(e) => {
                tracing::warn!(projection = P::NAME, error = %e, "cannot check generations now")
            }
        }
    }

    fn on_reassigned(&mut self) {
        // Rows of partitions that moved away and back may have been changed by another owner.
        self.rows.clear();
    }
}

fn store_error(e: &StoreError) -> HandleError {
    if e.is_transient() {
        HandleError::Transient(format!("read-model store: {e}"))
    } else {
        HandleError::permanent("store.refused", e.to_string())
    }
}

fn cache_error(e: &CacheError) -> HandleError {
    match e {
        // Whatever Redis answers (down, loading, out of memory) is about Redis, not the event.
        CacheError::Redis(_) => HandleError::Transient(format!("product cache: {e}")),
        CacheError::Encode { .. } | CacheError::Decode { .. } => {
            HandleError::permanent("cache.refused", e.to_string())
        }
    }
}

/// A stable machine-readable kind for a decode failure, for dead-letter headers.
fn decode_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::TooShort { .. } => "decode.too_short",
        DecodeError::WrongMagicByte { .. } => "decode.wrong_magic_byte",
        DecodeError::UnknownSchemaId { .. } => "decode.unknown_schema_id",
        DecodeError::RegistryUnavailable { .. } => "decode.registry_unavailable",
        DecodeError::RegistryRefused { .. } => "decode.registry_refused",
        DecodeError::UnexpectedSchema { .. } => "decode.unexpected_schema",
        DecodeError::CorruptBody { .. } => "decode.corrupt_body",
        DecodeError::TrailingBytes { .. } => "decode.trailing_bytes",
        DecodeError::Mapping { .. } => "decode.mapping",
        DecodeError::Schema(_) => "decode.schema",
    }
}
