//! The product read model: products by id and by category in ScyllaDB, the Redis product cache
//! (kept by the runner) and the public `catalog.product.summary` stream.
//!
//! - [`projection`](project_product): `(current row, product event) -> mutations`, pure.
//! - `store`: the statements, writes and reads of `products_by_id` / `products_by_category`.
//! - `summary`: the row as a public summary record.

mod projection;
pub(crate) mod store;
mod summary;

use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};

pub use projection::{Products, project_product};
pub use summary::product_summary;

use crate::model::ProductRow;
use crate::projection::Mutation;
use crate::runner::{ProjectionBinding, SummaryError, encode_summary};
use crate::store::{CassandraStore, StoreError};

impl ProjectionBinding for Products {
    const CONTEXT: Context = Context::Catalog;

    fn version(row: &ProductRow) -> u64 {
        row.version
    }

    fn restate(row: &ProductRow) -> Vec<Mutation> {
        vec![Mutation::UpsertProduct(row.clone())]
    }

    async fn load(store: &CassandraStore, id: String) -> Result<Option<ProductRow>, StoreError> {
        store.product(&id).await
    }

    fn summary_topic(topics: &Topics) -> Option<String> {
        Some(topics.product_summary())
    }

    async fn summary(codec: &Codec, row: &ProductRow) -> Result<(String, Vec<u8>), SummaryError> {
        let bytes = encode_summary(codec, &product_summary(row)).await?;
        Ok((row.sku.clone(), bytes))
    }
}
