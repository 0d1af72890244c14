//! Stock levels in ScyllaDB: `stock_by_sku`, every write `USING TIMESTAMP` the stock's version.

use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::model::StockRow;
use crate::store::cassandra::{prepare, to_i64, to_u64, write_timestamp};
use crate::store::{CassandraStore, StoreError};

const STOCK_COLUMNS: &str = "sku, received, available, reserved, sold, version, updated_at";

/// The stock statements of one generation.
#[derive(Debug)]
pub(crate) struct StockStatements {
    upsert: PreparedStatement,
    select: PreparedStatement,
}

impl StockStatements {
    /// Prepares them for keyspace `ks` and table suffix `g`.
    pub(crate) async fn prepare(session: &Session, ks: &str, g: &str) -> Result<Self, StoreError> {
        Ok(Self {
            upsert: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.stock_by_sku{g} ({STOCK_COLUMNS})
                     VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            select: prepare(
                session,
                format!("SELECT {STOCK_COLUMNS} FROM {ks}.stock_by_sku{g} WHERE sku = ?"),
            )
            .await?,
        })
    }
}

/// Writes the stock levels of a SKU.
pub(crate) async fn upsert(store: &CassandraStore, row: &StockRow) -> Result<(), StoreError> {
    let values = (
        &row.sku,
        row.received,
        row.available,
        row.reserved,
        row.sold,
        to_i64("version", row.version)?,
        CqlTimestamp(row.updated_at),
        write_timestamp(row.version)?,
    );
    store
        .session()
        .execute_unpaged(&store.tables().stock.upsert, values)
        .await?;
    Ok(())
}

impl CassandraStore {
    /// Stock levels of `sku`, if any stock event happened to it.
    pub async fn stock(&self, sku: &str) -> Result<Option<StockRow>, StoreError> {
        let result = self
            .session()
            .execute_unpaged(&self.tables().stock.select, (sku,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("stock_by_sku", e))?;
        result
            .maybe_first_row::<StockColumns>()
            .map_err(|e| StoreError::decode("stock_by_sku", e))?
            .map(StockRow::try_from)
            .transpose()
    }
}

#[derive(Debug, DeserializeRow)]
struct StockColumns {
    sku: String,
    received: i64,
    available: i64,
    reserved: i64,
    sold: i64,
    version: i64,
    updated_at: CqlTimestamp,
}

impl TryFrom<StockColumns> for StockRow {
    type Error = StoreError;
    fn try_from(c: StockColumns) -> Result<Self, StoreError> {
        Ok(Self {
            sku: c.sku,
            received: c.received,
            available: c.available,
            reserved: c.reserved,
            sold: c.sold,
            version: to_u64("version", c.version)?,
            updated_at: c.updated_at.0,
        })
    }
}
