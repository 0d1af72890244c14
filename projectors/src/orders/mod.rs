//! The order read model: orders by id and by customer in ScyllaDB, and the public
//! `orders.order.summary` stream.
//!
//! - [`projection`](project_order): `(current row, order event) -> mutations`, pure.
//! - `store`: the statements, writes and reads of `orders_by_id` / `orders_by_customer`.
//! - `summary`: the row as a public summary record.

mod projection;
pub(crate) mod store;
mod summary;

use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};

pub use projection::{Orders, cancel_reason_code, project_order};
pub use store::OrderCursor;
pub use summary::order_summary;

use crate::model::OrderRow;
use crate::projection::Mutation;
use crate::runner::{ProjectionBinding, SummaryError, encode_summary};
use crate::store::{CassandraStore, StoreError};

impl ProjectionBinding for Orders {
    const CONTEXT: Context = Context::Orders;

    fn version(row: &OrderRow) -> u64 {
        row.version
    }

    fn restate(row: &OrderRow) -> Vec<Mutation> {
        vec![Mutation::UpsertOrder(row.clone())]
    }

    async fn load(store: &CassandraStore, id: String) -> Result<Option<OrderRow>, StoreError> {
        store.order(&id).await
    }

    fn summary_topic(topics: &Topics) -> Option<String> {
        Some(topics.order_summary())
    }

    async fn summary(codec: &Codec, row: &OrderRow) -> Result<(String, Vec<u8>), SummaryError> {
        let summary = order_summary(row).ok_or_else(|| {
            SummaryError::Refused(format!("order id {:?} is not a UUID", row.order_id))
        })?;
        let bytes = encode_summary(codec, &summary).await?;
        Ok((row.order_id.clone(), bytes))
    }
}
