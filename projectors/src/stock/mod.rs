//! The stock read model: stock levels by sku in ScyllaDB. It publishes no summary stream.
//!
//! - [`projection`](project_stock): `(current row, stock event) -> mutations`, pure.
//! - `store`: the statements, writes and reads of `stock_by_sku`.

mod projection;
pub(crate) mod store;

use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};

pub use projection::{Stocks, project_stock};

use crate::model::StockRow;
use crate::projection::Mutation;
use crate::runner::{ProjectionBinding, SummaryError};
use crate::store::{CassandraStore, StoreError};

impl ProjectionBinding for Stocks {
    const CONTEXT: Context = Context::Inventory;

    fn version(row: &StockRow) -> u64 {
        row.version
    }

    fn restate(row: &StockRow) -> Vec<Mutation> {
        vec![Mutation::UpsertStock(row.clone())]
    }

    async fn load(store: &CassandraStore, id: String) -> Result<Option<StockRow>, StoreError> {
        store.stock(&id).await
    }

    fn summary_topic(_topics: &Topics) -> Option<String> {
        None
    }

    async fn summary(_codec: &Codec, row: &StockRow) -> Result<(String, Vec<u8>), SummaryError> {
        Err(SummaryError::Refused(format!(
            "stock of {} has no summary stream",
            row.sku
        )))
    }
}
