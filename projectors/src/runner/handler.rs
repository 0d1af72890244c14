//! A projection as a handler of the at-least-once loop: decode an event, fold a batch's events
//! per aggregate on top of the rows the store holds, write every target generation, refresh the
//! cache, and answer the summary records.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use streamcart_kafka_runtime::at_least_once::{Handler, Output, Record};
use streamcart_kafka_runtime::{HandleError, headers};
use streamcart_schemas::envelope::{EventEnvelope, EventPayload, WireRecord};

use super::progress::Progress;
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
    /// The row of each aggregate as of the last applied batch. Only a batch that was applied
    /// in full updates it, so a batch applied again after a failure folds on top of the same
    /// rows and yields the same writes, whatever part of the failed attempt reached the store.
    rows: HashMap<String, Known<P::Row>>,
    /// Where a rebuild notes each record it reads.
    progress: Option<Progress>,
}

impl<P: ProjectionBinding> ProjectorHandler<P>
where
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
{
    pub(super) fn new(
        deps: ProjectorDeps,
        options: ProjectorOptions,
        progress: Option<Progress>,
    ) -> Self {
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
            progress,
            summary_topic,
            deps,
            options,
        }
    }

    /// The row of `id` before the batch: from memory, else from the store (remembered, so a
    /// retry starts from the same row).
    async fn current(&mut self, id: &str) -> Result<Known<P::Row>, HandleError> {
        if let Some(known) = self.rows.get(id) {
            return Ok(known.clone());
        }
        let row = P::load(&self.base, id.to_owned())
            .await
            .map_err(|e| store_error(&e))?;
        let known = Known {
            row,
            from_store: true,
        };
        self.rows.insert(id.to_owned(), known.clone());
        Ok(known)
    }
}

/// A row as the projector knows it.
#[derive(Debug, Clone)]
pub(crate) struct Known<R> {
    /// The row; `None`: the aggregate has none.
    pub(crate) row: Option<R>,
    /// Read back from the store rather than written by this instance: a write cut short by a
    /// crash may have reached some of the read model's tables and not others.
    pub(crate) from_store: bool,
}

/// The writes one aggregate's events of a batch need on top of `known`, and its row after them.
///
/// Events at or below a row's version yield nothing, which is right for a row this instance
/// wrote. A row read back from the store may be the remains of an interrupted write (one
/// table written, the other not), redelivered because its offsets were never committed: when
/// the batch starts at or below that row's version, the row is written again as it is, at its
/// own version, which completes every table and changes nothing else.
pub(crate) fn project_aggregate<'a, P>(
    known: Known<P::Row>,
    events: &[&'a EventEnvelope<P::Event>],
) -> (Option<P::Row>, Vec<Mutation>)
where
    P: ProjectionBinding,
    P::Event: EventPayload + Send + Sync + 'a,
    P::Row: Send + Sync,
{
    let mut mutations = Vec::new();
    if known.from_store
        && let (Some(row), Some(first)) = (&known.row, events.first())
        && first.version <= P::version(row)
    {
        mutations.extend(P::restate(row));
    }
    let (row, produced) = fold_iter::<P, _>(known.row, events.iter().copied());
    mutations.extend(produced);
    (row, mutations)
}

impl<P: ProjectionBinding> Handler for ProjectorHandler<P>
where
    P::Event: EventPayload + Send + Sync,
    P::Row: Send + Sync,
    EventEnvelope<P::Event>: WireRecord,
{
    type Item = EventEnvelope<P::Event>;

    async fn decode(&mut self, record: &Record<'_>) -> Result<Self::Item, HandleError> {
        if let Some(progress) = &self.progress {
            progress.reached(record.partition, record.offset);
        }
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
                    HandleError::permanent(e.kind(), e.to_string())
                }
            })
    }

    fn operation(&self) -> &'static str {
        "projection applied"
    }

    async fn apply(&mut self, items: &[Self::Item]) -> Result<Vec<Output>, HandleError> {
        // Per aggregate: its events, and the index of the last (a summary continues its trace).
        let mut by_aggregate: BTreeMap<&str, (Vec<&Self::Item>, usize)> = BTreeMap::new();
        for (i, event) in items.iter().enumerate() {
            let entry = by_aggregate.entry(event.aggregate_id.as_str()).or_default();
            entry.0.push(event);
            entry.1 = i;
        }
        let mut mutations = Vec::new();
        let mut changed: Vec<(String, Option<P::Row>, usize)> = Vec::new();
        for (id, (events, last)) in by_aggregate {
            let known = self.current(id).await?;
            let (row, produced) = project_aggregate::<P>(known, &events);
            if !produced.is_empty() {
                mutations.extend(produced);
                changed.push((id.to_owned(), row, last));
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
            for (row, cause) in changed
                .iter()
                .filter_map(|(_, row, last)| row.as_ref().map(|r| (r, *last)))
            {
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
                        .with_header(headers::CONTENT_TYPE, headers::AVRO_CONTENT_TYPE.as_bytes())
                        .caused_by(cause),
                );
            }
        }
        // Everything above succeeded: the batch's rows are now what the store holds.
        if self.rows.len() + changed.len() > MAX_ROWS {
            self.rows.clear();
        }
        self.rows.extend(changed.into_iter().map(|(id, row, _)| {
            (
                id,
                Known {
                    row,
                    from_store: false,
                },
            )
        }));
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

#[cfg(test)]
mod tests {
    use streamcart_aggregates::catalog::{ProductCreated, ProductEvent, ProductRenamed};
    use streamcart_aggregates::values::{Money, Sku};

    use super::*;
    use crate::model::ProductRow;
    use crate::products::Products;
    use crate::testing::envelope;

    fn history() -> Vec<EventEnvelope<ProductEvent>> {
        vec![
            envelope(
                "SKU-1",
                1,
                ProductCreated {
                    sku: Sku::new("SKU-1").expect("sku"),
                    name: "Mug".into(),
                    category: "kitchen".into(),
                    price: Money::positive(1299, "EUR").expect("money"),
                },
            ),
            envelope("SKU-1", 2, ProductRenamed { name: "Cup".into() }),
        ]
    }

    fn row_after(events: &[EventEnvelope<ProductEvent>]) -> ProductRow {
        crate::projection::fold::<Products>(None, events)
            .0
            .expect("row")
    }

    #[test]
    fn a_redelivered_batch_on_a_row_read_back_from_the_store_writes_that_row_again() {
        let events = history();
        let refs: Vec<&EventEnvelope<ProductEvent>> = events.iter().collect();
        let stored = row_after(&events);
        let known = Known {
            row: Some(stored.clone()),
            from_store: true,
        };
        let (row, mutations) = project_aggregate::<Products>(known, &refs);
        assert_eq!(row.as_ref(), Some(&stored));
        assert_eq!(mutations, vec![Mutation::UpsertProduct(stored)]);
    }

    #[test]
    fn a_row_this_instance_wrote_is_not_written_again_for_old_events() {
        let events = history();
        let refs: Vec<&EventEnvelope<ProductEvent>> = events.iter().collect();
        let known = Known {
            row: Some(row_after(&events)),
            from_store: false,
        };
        let (_, mutations) = project_aggregate::<Products>(known, &refs);
        assert!(mutations.is_empty());
    }

    #[test]
    fn newer_events_on_a_stored_row_are_projected_without_a_restatement() {
        let events = history();
        let known = Known {
            row: Some(row_after(&events[..1])),
            from_store: true,
        };
        let newer: Vec<&EventEnvelope<ProductEvent>> = events[1..].iter().collect();
        let (row, mutations) = project_aggregate::<Products>(known, &newer);
        assert_eq!(
            row.map(|r| (r.name, r.version)),
            Some(("Cup".to_owned(), 2))
        );
        assert_eq!(mutations.len(), 1);
    }
}
