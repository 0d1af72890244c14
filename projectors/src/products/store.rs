//! Products in ScyllaDB: `products_by_id` and `products_by_category` (one partition per
//! category, skus in order), every write `USING TIMESTAMP` the product's version.

use scylla::DeserializeRow;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::model::ProductRow;
use crate::store::cassandra::{Page, page_limits, paged, prepare, to_i64, to_u64, write_timestamp};
use crate::store::{CassandraStore, StoreError};

const PRODUCT_COLUMNS: &str =
    "sku, name, category, price_minor, currency, discontinued, version, updated_at";

/// The product statements of one generation.
#[derive(Debug)]
pub(crate) struct ProductStatements {
    upsert: PreparedStatement,
    upsert_listing: PreparedStatement,
    remove_listing: PreparedStatement,
    select: PreparedStatement,
    select_listing_first: PreparedStatement,
    select_listing_after: PreparedStatement,
}

impl ProductStatements {
    /// Prepares them for keyspace `ks` and table suffix `g`.
    pub(crate) async fn prepare(session: &Session, ks: &str, g: &str) -> Result<Self, StoreError> {
        Ok(Self {
            upsert: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.products_by_id{g} ({PRODUCT_COLUMNS})
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            upsert_listing: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.products_by_category{g}
                     (category, sku, name, price_minor, currency, discontinued, version, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            remove_listing: prepare(
                session,
                format!(
                    "DELETE FROM {ks}.products_by_category{g} USING TIMESTAMP ?
                     WHERE category = ? AND sku = ?"
                ),
            )
            .await?,
            select: prepare(
                session,
                format!("SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_id{g} WHERE sku = ?"),
            )
            .await?,
            select_listing_first: prepare(
                session,
                format!(
                    "SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_category{g}
                     WHERE category = ? LIMIT ?"
                ),
            )
            .await?,
            select_listing_after: prepare(
                session,
                format!(
                    "SELECT {PRODUCT_COLUMNS} FROM {ks}.products_by_category{g}
                     WHERE category = ? AND sku > ? LIMIT ?"
                ),
            )
            .await?,
        })
    }
}

/// Writes the product by id and its entry in its category's listing.
pub(crate) async fn upsert(store: &CassandraStore, row: &ProductRow) -> Result<(), StoreError> {
    let s = &store.tables().products;
    let ts = write_timestamp(row.version)?;
    let version = to_i64("version", row.version)?;
    let updated_at = CqlTimestamp(row.updated_at);
    let by_id = (
        &row.sku,
        &row.name,
        &row.category,
        row.price_minor,
        &row.currency,
        row.discontinued,
        version,
        updated_at,
        ts,
    );
    let by_category = (
        &row.category,
        &row.sku,
        &row.name,
        row.price_minor,
        &row.currency,
        row.discontinued,
        version,
        updated_at,
        ts,
    );
    let session = store.session();
    futures::try_join!(
        session.execute_unpaged(&s.upsert, by_id),
        session.execute_unpaged(&s.upsert_listing, by_category),
    )?;
    Ok(())
}

/// Drops `sku` from the listing of `category`, which it left at `version`.
pub(crate) async fn remove_from_category(
    store: &CassandraStore,
    category: &str,
    sku: &str,
    version: u64,
) -> Result<(), StoreError> {
    let ts = write_timestamp(version)?;
    store
        .session()
        .execute_unpaged(&store.tables().products.remove_listing, (ts, category, sku))
        .await?;
    Ok(())
}

impl CassandraStore {
    /// The product `sku`, if any event created it.
    pub async fn product(&self, sku: &str) -> Result<Option<ProductRow>, StoreError> {
        let result = self
            .session()
            .execute_unpaged(&self.tables().products.select, (sku,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("products_by_id", e))?;
        result
            .maybe_first_row::<ProductColumns>()
            .map_err(|e| StoreError::decode("products_by_id", e))?
            .map(ProductRow::try_from)
            .transpose()
    }

    /// Products of `category` in sku order, starting after `after_sku`; at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE)) per page. The cursor of the next page is
    /// the last sku of this one.
    pub async fn products_by_category(
        &self,
        category: &str,
        after_sku: Option<&str>,
        limit: u32,
    ) -> Result<Page<ProductRow, String>, StoreError> {
        let (limit, fetch) = page_limits(limit);
        let s = &self.tables().products;
        let response = match after_sku {
            None => {
                self.session()
                    .execute_unpaged(&s.select_listing_first, (category, fetch))
                    .await?
            }
            Some(after) => {
                self.session()
                    .execute_unpaged(&s.select_listing_after, (category, after, fetch))
                    .await?
            }
        };
        let result = response
            .into_rows_result()
            .map_err(|e| StoreError::decode("products_by_category", e))?;
        let mut items = Vec::new();
        for row in result
            .rows::<ProductColumns>()
            .map_err(|e| StoreError::decode("products_by_category", e))?
        {
            let row = row.map_err(|e| StoreError::decode("products_by_category", e))?;
            items.push(ProductRow::try_from(row)?);
        }
        Ok(paged(items, limit, |row| row.sku.clone()))
    }
}

#[derive(Debug, DeserializeRow)]
struct ProductColumns {
    sku: String,
    name: String,
    category: String,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    version: i64,
    updated_at: CqlTimestamp,
}

impl TryFrom<ProductColumns> for ProductRow {
    type Error = StoreError;
    fn try_from(c: ProductColumns) -> Result<Self, StoreError> {
        Ok(Self {
            sku: c.sku,
            name: c.name,
            category: c.category,
            price_minor: c.price_minor,
            currency: c.currency,
            discontinued: c.discontinued,
            version: to_u64("version", c.version)?,
            updated_at: c.updated_at.0,
        })
    }
}
