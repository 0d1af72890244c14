//! The public order summary (`orders.order.summary`, compacted, keyed by order id): the flat
//! shape Kafka Connect sinks copy into other systems.

use streamcart_schemas::summary::OrderSummary;

use crate::model::OrderRow;

/// The summary record of an order row; `None` when the row's id is not a UUID (order ids are
/// checked by the aggregate, so only a corrupt history gets here).
pub fn order_summary(row: &OrderRow) -> Option<OrderSummary> {
    let order_id = uuid::Uuid::parse_str(&row.order_id).ok()?;
    Some(OrderSummary {
        order_id,
        customer_id: row.customer_id.clone(),
        status: row.status.as_str().to_owned(),
        reason: row.reason.clone(),
        total_minor: row.total_minor,
        currency: row.currency.clone(),
        line_count: i32::try_from(row.lines.len()).unwrap_or(i32::MAX),
        placed_at: row.placed_at,
        updated_at: row.updated_at,
        version: i64::try_from(row.version).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderLineRow, OrderStatus};

    fn row(order_id: &str) -> OrderRow {
        OrderRow {
            order_id: order_id.into(),
            customer_id: "alice".into(),
            status: OrderStatus::Cancelled,
            reason: Some("payment_declined".into()),
            lines: vec![
                OrderLineRow {
                    line_no: 1,
                    sku: "A".into(),
                    quantity: 2,
                    unit_price_minor: 100,
                },
                OrderLineRow {
                    line_no: 2,
                    sku: "B".into(),
                    quantity: 1,
                    unit_price_minor: 50,
                },
            ],
            total_minor: 250,
            currency: "EUR".into(),
            placed_at: 1,
            updated_at: 2,
            version: 5,
        }
    }

    #[test]
    fn summaries_flatten_the_row() {
        let s = order_summary(&row("0190c7a2-1b2c-7d3e-8f40-123456789abc")).expect("summary");
        assert_eq!(
            s.order_id.to_string(),
            "0190c7a2-1b2c-7d3e-8f40-123456789abc"
        );
        assert_eq!(
            (s.status.as_str(), s.reason.as_deref()),
            ("cancelled", Some("payment_declined"))
        );
        assert_eq!((s.line_count, s.total_minor, s.version), (2, 250, 5));
        assert_eq!((s.placed_at, s.updated_at), (1, 2));
    }

    #[test]
    fn an_id_that_is_no_uuid_has_no_summary() {
        assert!(order_summary(&row("not-a-uuid")).is_none());
    }
}
