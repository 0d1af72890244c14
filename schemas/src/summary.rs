//! The public, flat summary records that Kafka Connect sinks read: one per read model,
//! on compacted topics, keyed by aggregate id. Flat on purpose: a JDBC sink maps each field to a
//! column without any transform.

use apache_avro::types::Value;
use uuid::Uuid;

use crate::envelope::WireRecord;
use crate::error::MappingError;
use crate::mapping::value::{Fields, optional, record};
use crate::topics::Stream;

/// One order as sinks see it; the value of `orders.order.summary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    /// Order id.
    pub order_id: Uuid,
    /// Customer who placed it.
    pub customer_id: String,
    /// `reserving`, `awaiting_payment`, `confirmed`, `cancelled` or `expired`.
    pub status: String,
    /// Why a cancelled order was cancelled.
    pub reason: Option<String>,
    /// Total in integer minor units.
    pub total_minor: i64,
    /// ISO-4217 code of the total.
    pub currency: String,
    /// Number of lines.
    pub line_count: i32,
    /// When it was placed, ms since the epoch (UTC).
    pub placed_at: i64,
    /// When the event behind this version occurred, ms since the epoch (UTC).
    pub updated_at: i64,
    /// Aggregate version reflected.
    pub version: i64,
}

impl WireRecord for OrderSummary {
    const STREAM: Stream = Stream::OrderSummary;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(record(vec![
            ("order_id", Value::Uuid(self.order_id)),
            ("customer_id", Value::String(self.customer_id.clone())),
            ("status", Value::String(self.status.clone())),
            ("reason", optional(self.reason.clone().map(Value::String))),
            ("total_minor", Value::Long(self.total_minor)),
            ("currency", Value::String(self.currency.clone())),
            ("line_count", Value::Int(self.line_count)),
            ("placed_at", Value::TimestampMillis(self.placed_at)),
            ("updated_at", Value::TimestampMillis(self.updated_at)),
            ("version", Value::Long(self.version)),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("OrderSummary", value)?;
        Ok(Self {
            order_id: f.uuid("order_id")?,
            customer_id: f.string("customer_id")?,
            status: f.string("status")?,
            reason: f.optional_string("reason")?,
            total_minor: f.long("total_minor")?,
            currency: f.string("currency")?,
            line_count: i32::try_from(f.long("line_count")?).map_err(|_| {
                MappingError::OutOfRange {
                    record: "OrderSummary",
                    field: "line_count",
                    value: "out of i32".into(),
                }
            })?,
            placed_at: f.timestamp("placed_at")?,
            updated_at: f.timestamp("updated_at")?,
            version: f.long("version")?,
        })
    }
}

/// One product as sinks see it; the value of `catalog.product.summary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSummary {
    /// Sku.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Current category.
    pub category: String,
    /// Price in integer minor units.
    pub price_minor: i64,
    /// ISO-4217 code of the price.
    pub currency: String,
    /// True once discontinued.
    pub discontinued: bool,
    /// When the event behind this version occurred, ms since the epoch (UTC).
    pub updated_at: i64,
    /// Aggregate version reflected.
    pub version: i64,
}

impl WireRecord for ProductSummary {
    const STREAM: Stream = Stream::ProductSummary;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(record(vec![
            ("sku", Value::String(self.sku.clone())),
            ("name", Value::String(self.name.clone())),
            ("category", Value::String(self.category.clone())),
            ("price_minor", Value::Long(self.price_minor)),
            ("currency", Value::String(self.currency.clone())),
            ("discontinued", Value::Boolean(self.discontinued)),
            ("updated_at", Value::TimestampMillis(self.updated_at)),
            ("version", Value::Long(self.version)),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("ProductSummary", value)?;
        Ok(Self {
            sku: f.string("sku")?,
            name: f.string("name")?,
            category: f.string("category")?,
            price_minor: f.long("price_minor")?,
            currency: f.string("currency")?,
            discontinued: f.boolean("discontinued")?,
            updated_at: f.timestamp("updated_at")?,
            version: f.long("version")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{WriterSchema, decode_body, encode_with_id, split_header};

    #[test]
    fn summaries_round_trip_through_their_schemas() {
        let order = OrderSummary {
            order_id: Uuid::from_u128(5),
            customer_id: "c-1".into(),
            status: "cancelled".into(),
            reason: Some("payment_declined".into()),
            total_minor: 4_200,
            currency: "EUR".into(),
            line_count: 2,
            placed_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_500,
            version: 7,
        };
        let writer = WriterSchema::local(9, Stream::OrderSummary).expect("schema");
        let bytes = encode_with_id(9, &order).expect("encode");
        let (_, body) = split_header(&bytes).expect("header");
        assert_eq!(
            decode_body::<OrderSummary>(&writer, body).expect("decode"),
            order
        );

        let product = ProductSummary {
            sku: "SKU-1".into(),
            name: "Lamp".into(),
            category: "home".into(),
            price_minor: 1_999,
            currency: "EUR".into(),
            discontinued: false,
            updated_at: 1_700_000_000_000,
            version: 3,
        };
        let writer = WriterSchema::local(10, Stream::ProductSummary).expect("schema");
        let bytes = encode_with_id(10, &product).expect("encode");
        let (_, body) = split_header(&bytes).expect("header");
        assert_eq!(
            decode_body::<ProductSummary>(&writer, body).expect("decode"),
            product
        );
    }
}
