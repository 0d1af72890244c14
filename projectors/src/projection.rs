//! What every projection shares: `(current row, event) -> mutations`, no I/O. The projections
//! themselves live with their read model (`products/`, `stock/`, `orders/`).
//!
//! Each projection reads the row as the store holds it and one event envelope, and answers the
//! writes that bring the read model up to that event. The rules every projection follows:
//!
//! - An event whose version is not above the row's version yields nothing, so duplicates,
//!   redeliveries and replays are harmless before they reach the store.
//! - Every accepted event yields a full-row upsert carrying the event's version, even when no
//!   visible field changes, so a reader waiting for "version ≥ n" is released.
//! - Every [`Mutation`] carries the version it reflects; the store turns it into the write
//!   timestamp, which is what keeps rows from moving backwards when mutations race.
//!
//! [`fold`] applies a run of one aggregate's events on top of a row, which is how a consumer
//! projects a batch with a single read of the current row.

use streamcart_schemas::EventEnvelope;

use crate::model::{OrderRow, ProductRow, StockRow};

/// One write to the read models, always tagged with the aggregate version it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Writes the product by id and its entry in its category's listing.
    UpsertProduct(ProductRow),
    /// Drops a product from a category listing it left.
    RemoveFromCategory {
        /// The category it left.
        category: String,
        /// The product.
        sku: String,
        /// Version of the event that moved it.
        version: u64,
    },
    /// Writes the stock levels of a SKU.
    UpsertStock(StockRow),
    /// Writes the order by id and in its customer's listing.
    UpsertOrder(OrderRow),
}

impl Mutation {
    /// The aggregate version this write reflects.
    pub fn version(&self) -> u64 {
        match self {
            Mutation::UpsertProduct(row) => row.version,
            Mutation::RemoveFromCategory { version, .. } => *version,
            Mutation::UpsertStock(row) => row.version,
            Mutation::UpsertOrder(row) => row.version,
        }
    }

    /// Key of the aggregate the write belongs to (sku or order id).
    pub fn aggregate_id(&self) -> &str {
        match self {
            Mutation::UpsertProduct(row) => &row.sku,
            Mutation::RemoveFromCategory { sku, .. } => sku,
            Mutation::UpsertStock(row) => &row.sku,
            Mutation::UpsertOrder(row) => &row.order_id,
        }
    }
}

/// A read model built from one aggregate's events.
pub trait Projection {
    /// Stable name, also the key of the projection's active generation in the store.
    const NAME: &'static str;
    /// The aggregate's event enum.
    type Event;
    /// The row one aggregate projects into.
    type Row: Clone;

    /// The writes that bring `current` up to `event`; empty when the event is not newer.
    fn project(current: Option<&Self::Row>, event: &EventEnvelope<Self::Event>) -> Vec<Mutation>;

    /// The row an upsert of this projection writes, if `mutation` is one.
    fn upserted(mutation: &Mutation) -> Option<&Self::Row>;
}

/// Projects `events` of one aggregate, in order, on top of `current`; returns the resulting row
/// and every mutation to apply. Events at or below the row's version are skipped.
pub fn fold<P: Projection>(
    current: Option<P::Row>,
    events: &[EventEnvelope<P::Event>],
) -> (Option<P::Row>, Vec<Mutation>) {
    fold_iter::<P, _>(current, events)
}

/// [`fold`] over borrowed events, e.g. one aggregate's events picked out of a batch.
pub fn fold_iter<'a, P, I>(current: Option<P::Row>, events: I) -> (Option<P::Row>, Vec<Mutation>)
where
    P: Projection,
    P::Event: 'a,
    I: IntoIterator<Item = &'a EventEnvelope<P::Event>>,
{
    let mut row = current;
    let mut mutations = Vec::new();
    for event in events {
        let produced = P::project(row.as_ref(), event);
        if let Some(next) = produced.iter().rev().find_map(P::upserted) {
            row = Some(next.clone());
        }
        mutations.extend(produced);
    }
    (row, mutations)
}

/// True when `event_version` is newer than the row's (`None`: no row yet); the guard every
/// projection starts with.
///
/// A newer event is applied even when versions in between were never seen (a store that lost
/// writes, or events consumed out of partition order): last writer wins, and the timestamps
/// derived from versions keep the row from ever moving backwards.
pub(crate) fn is_newer(current_version: Option<u64>, event_version: u64) -> bool {
    event_version > current_version.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_newer_versions_apply_gaps_included() {
        assert!(is_newer(None, 1));
        assert!(is_newer(None, 3));
        assert!(!is_newer(Some(3), 3));
        assert!(!is_newer(Some(3), 2));
        assert!(is_newer(Some(3), 4));
        assert!(is_newer(Some(3), 9));
        assert!(!is_newer(None, 0));
    }
}
