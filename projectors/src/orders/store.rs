//! Orders in ScyllaDB: `orders_by_id` and `orders_by_customer` (one partition per customer,
//! newest first), every write `USING TIMESTAMP` the order's version.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use scylla::{DeserializeRow, DeserializeValue, SerializeValue};
use serde::{Deserialize, Serialize};

use crate::model::{OrderLineRow, OrderRow, OrderStatus};
use crate::store::cassandra::{
    Page, page_limits, paged, prepare, to_i64, to_u32, to_u64, write_timestamp,
};
use crate::store::{CassandraStore, StoreError};

const ORDER_COLUMNS: &str = "order_id, customer_id, status, reason, lines, total_minor, currency, placed_at, updated_at, version";
const CUSTOMER_ORDER_COLUMNS: &str = "customer_id, placed_at, order_id, status, reason, lines, total_minor, currency, updated_at, version";

/// Position in a customer's newest-first order listing: the last order of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCursor {
    /// Placement time of that order (UTC millis).
    pub placed_at: i64,
    /// Its id, which breaks ties between orders placed in the same millisecond.
    pub order_id: String,
}

impl OrderCursor {
    /// The cursor just after `row` in its customer's listing.
    pub fn after(row: &OrderRow) -> Self {
        Self {
            placed_at: row.placed_at,
            order_id: row.order_id.clone(),
        }
    }
}

/// The order statements of one generation.
#[derive(Debug)]
pub(crate) struct OrderStatements {
    upsert: PreparedStatement,
    upsert_customer: PreparedStatement,
    select: PreparedStatement,
    select_customer_first: PreparedStatement,
    select_customer_before: PreparedStatement,
}

impl OrderStatements {
    /// Prepares them for keyspace `ks` and table suffix `g`.
    pub(crate) async fn prepare(session: &Session, ks: &str, g: &str) -> Result<Self, StoreError> {
        Ok(Self {
            upsert: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.orders_by_id{g} ({ORDER_COLUMNS})
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            upsert_customer: prepare(
                session,
                format!(
                    "INSERT INTO {ks}.orders_by_customer{g} ({CUSTOMER_ORDER_COLUMNS})
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
                ),
            )
            .await?,
            select: prepare(
                session,
                format!("SELECT {ORDER_COLUMNS} FROM {ks}.orders_by_id{g} WHERE order_id = ?"),
            )
            .await?,
            select_customer_first: prepare(
                session,
                format!(
                    "SELECT {CUSTOMER_ORDER_COLUMNS} FROM {ks}.orders_by_customer{g}
                     WHERE customer_id = ? LIMIT ?"
                ),
            )
            .await?,
            select_customer_before: prepare(
                session,
                format!(
                    "SELECT {CUSTOMER_ORDER_COLUMNS} FROM {ks}.orders_by_customer{g}
                     WHERE customer_id = ? AND (placed_at, order_id) < (?, ?) LIMIT ?"
                ),
            )
            .await?,
        })
    }
}

/// Writes the order by id and in its customer's listing.
pub(crate) async fn upsert(store: &CassandraStore, row: &OrderRow) -> Result<(), StoreError> {
    let s = &store.tables().orders;
    let ts = write_timestamp(row.version)?;
    let version = to_i64("version", row.version)?;
    let lines: Vec<OrderLineUdt> = row.lines.iter().map(OrderLineUdt::from).collect();
    let reason = row.reason.as_deref();
    let status = row.status.as_str();
    let by_id = (
        &row.order_id,
        &row.customer_id,
        status,
        reason,
        &lines,
        row.total_minor,
        &row.currency,
        CqlTimestamp(row.placed_at),
        CqlTimestamp(row.updated_at),
        version,
        ts,
    );
    let by_customer = (
        &row.customer_id,
        CqlTimestamp(row.placed_at),
        &row.order_id,
        status,
        reason,
        &lines,
        row.total_minor,
        &row.currency,
        CqlTimestamp(row.updated_at),
        version,
        ts,
    );
    let session = store.session();
    futures::try_join!(
        session.execute_unpaged(&s.upsert, by_id),
        session.execute_unpaged(&s.upsert_customer, by_customer),
    )?;
    Ok(())
}

impl CassandraStore {
    /// The order `order_id`, if it was placed.
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let result = self
            .session()
            .execute_unpaged(&self.tables().orders.select, (order_id,))
            .await?
            .into_rows_result()
            .map_err(|e| StoreError::decode("orders_by_id", e))?;
        result
            .maybe_first_row::<OrderColumns>()
            .map_err(|e| StoreError::decode("orders_by_id", e))?
            .map(OrderRow::try_from)
            .transpose()
    }

    /// Orders of `customer_id`, newest first, starting after `before`; at most `limit` (1 to
    /// [`MAX_PAGE_SIZE`](crate::store::MAX_PAGE_SIZE)) per page.
    pub async fn orders_by_customer(
        &self,
        customer_id: &str,
        before: Option<&OrderCursor>,
        limit: u32,
    ) -> Result<Page<OrderRow, OrderCursor>, StoreError> {
        let (limit, fetch) = page_limits(limit);
        let s = &self.tables().orders;
        let response = match before {
            None => {
                self.session()
                    .execute_unpaged(&s.select_customer_first, (customer_id, fetch))
                    .await?
            }
            Some(cursor) => {
                self.session()
                    .execute_unpaged(
                        &s.select_customer_before,
                        (
                            customer_id,
                            CqlTimestamp(cursor.placed_at),
                            &cursor.order_id,
                            fetch,
                        ),
                    )
                    .await?
            }
        };
        let result = response
            .into_rows_result()
            .map_err(|e| StoreError::decode("orders_by_customer", e))?;
        let mut items = Vec::new();
        for row in result
            .rows::<CustomerOrderColumns>()
            .map_err(|e| StoreError::decode("orders_by_customer", e))?
        {
            let row = row.map_err(|e| StoreError::decode("orders_by_customer", e))?;
            items.push(OrderRow::try_from(row)?);
        }
        Ok(paged(items, limit, OrderCursor::after))
    }
}

/// The `order_line` user-defined type.
#[derive(Debug, Clone, SerializeValue, DeserializeValue)]
struct OrderLineUdt {
    line_no: i64,
    sku: String,
    quantity: i64,
    unit_price_minor: i64,
}

impl From<&OrderLineRow> for OrderLineUdt {
    fn from(line: &OrderLineRow) -> Self {
        Self {
            line_no: i64::from(line.line_no),
            sku: line.sku.clone(),
            quantity: i64::from(line.quantity),
            unit_price_minor: line.unit_price_minor,
        }
    }
}

impl TryFrom<OrderLineUdt> for OrderLineRow {
    type Error = StoreError;
    fn try_from(line: OrderLineUdt) -> Result<Self, StoreError> {
        Ok(Self {
            line_no: to_u32("line_no", line.line_no)?,
            sku: line.sku,
            quantity: to_u32("quantity", line.quantity)?,
            unit_price_minor: line.unit_price_minor,
        })
    }
}

#[derive(Debug, DeserializeRow)]
struct OrderColumns {
    order_id: String,
    customer_id: String,
    status: String,
    reason: Option<String>,
    lines: Option<Vec<OrderLineUdt>>,
    total_minor: i64,
    currency: String,
    placed_at: CqlTimestamp,
    updated_at: CqlTimestamp,
    version: i64,
}

/// The same columns in the order `orders_by_customer` lists them.
#[derive(Debug, DeserializeRow)]
struct CustomerOrderColumns {
    customer_id: String,
    placed_at: CqlTimestamp,
    order_id: String,
    status: String,
    reason: Option<String>,
    lines: Option<Vec<OrderLineUdt>>,
    total_minor: i64,
    currency: String,
    updated_at: CqlTimestamp,
    version: i64,
}

impl From<CustomerOrderColumns> for OrderColumns {
    fn from(c: CustomerOrderColumns) -> Self {
        Self {
            order_id: c.order_id,
            customer_id: c.customer_id,
            status: c.status,
            reason: c.reason,
            lines: c.lines,
            total_minor: c.total_minor,
            currency: c.currency,
            placed_at: c.placed_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

impl TryFrom<OrderColumns> for OrderRow {
    type Error = StoreError;
    fn try_from(c: OrderColumns) -> Result<Self, StoreError> {
        let status = c
            .status
            .parse::<OrderStatus>()
            .map_err(|e| StoreError::decode("orders.status", e))?;
        let lines = c
            .lines
            .unwrap_or_default()
            .into_iter()
            .map(OrderLineRow::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            order_id: c.order_id,
            customer_id: c.customer_id,
            status,
            reason: c.reason,
            lines,
            total_minor: c.total_minor,
            currency: c.currency,
            placed_at: c.placed_at.0,
            updated_at: c.updated_at.0,
            version: to_u64("version", c.version)?,
        })
    }
}

impl TryFrom<CustomerOrderColumns> for OrderRow {
    type Error = StoreError;
    fn try_from(c: CustomerOrderColumns) -> Result<Self, StoreError> {
        OrderRow::try_from(OrderColumns::from(c))
    }
}
