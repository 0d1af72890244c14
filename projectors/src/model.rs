//! Read-model rows: what the query side serves, in ScyllaDB tables, the Redis cache and JSON.
//!
//! Rows are flat and self-describing on purpose: money in integer minor units beside its
//! ISO-4217 code, times in UTC milliseconds since the epoch, ids as plain strings (they were
//! validated by the aggregates before any event existed). Every row carries the aggregate
//! `version` it reflects, so readers can wait for a version (read-your-writes) and writers can
//! refuse anything older.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use streamcart_aggregates::values::TimestampMillis;

/// One product, as listed by id and by category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRow {
    /// Product key.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category the product is listed under.
    pub category: String,
    /// Price in minor units of `currency`.
    pub price_minor: i64,
    /// ISO-4217 code of the price.
    pub currency: String,
    /// True once the product can no longer be ordered.
    pub discontinued: bool,
    /// Version of the last product event folded into this row.
    pub version: u64,
    /// When that event happened (UTC millis).
    pub updated_at: TimestampMillis,
}

/// Stock levels of one SKU; `available + reserved + sold == received` always holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRow {
    /// Stock key (the product's sku).
    pub sku: String,
    /// Units ever delivered.
    pub received: i64,
    /// Units free to reserve.
    pub available: i64,
    /// Units held for orders not yet confirmed.
    pub reserved: i64,
    /// Units sold to confirmed orders.
    pub sold: i64,
    /// Version of the last stock event folded into this row.
    pub version: u64,
    /// When that event happened (UTC millis).
    pub updated_at: TimestampMillis,
}

/// Where an order stands, as customers and operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and priced; no line reserved yet.
    Placed,
    /// Some lines reserved, others still waiting for stock.
    Reserving,
    /// Every line reserved; waiting for the payment.
    AwaitingPayment,
    /// Paid; stock is committed.
    Confirmed,
    /// Cancelled; `reason` says why.
    Cancelled,
    /// The deadline passed before confirmation.
    Expired,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Placed,
        OrderStatus::Reserving,
        OrderStatus::AwaitingPayment,
        OrderStatus::Confirmed,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ];

    /// The stable code stored in tables and sent in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Reserving => "reserving",
            OrderStatus::AwaitingPayment => "awaiting_payment",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
        }
    }

    /// True once nothing but late compensations can happen to the order.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderStatus::Confirmed | OrderStatus::Cancelled | OrderStatus::Expired
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status code that is not one of [`OrderStatus`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// One priced line of an order, fixed at placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineRow {
    /// 1-based position in the order.
    pub line_no: u32,
    /// Product ordered.
    pub sku: String,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit at placement, in minor units of the order's currency.
    pub unit_price_minor: i64,
}

/// One order, as listed by id and by customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    /// Order key.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// Why it was cancelled (`stock_unavailable`, `payment_declined`, `customer_requested`).
    pub reason: Option<String>,
    /// Priced lines, by line number.
    pub lines: Vec<OrderLineRow>,
    /// Sum of the lines, in minor units of `currency`.
    pub total_minor: i64,
    /// ISO-4217 code of every amount of the order.
    pub currency: String,
    /// When the order was placed (UTC millis); it orders a customer's listing.
    pub placed_at: TimestampMillis,
    /// When the last event folded into this row happened (UTC millis).
    pub updated_at: TimestampMillis,
    /// Version of the last order event folded into this row.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_through_text_and_json() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            let json = serde_json::to_string(&status).expect("serialize");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("shipped".parse::<OrderStatus>().is_err());
    }
}
