//! Consumes `OrderCancelled` and `OrderExpired`; emits one `ReleaseStock` per line listed in the
//! event's `release` (the lines stock held when the order closed), to the line's sku.
//!
//! Lines still pending when the order closed are not listed: if stock reserves them later, the
//! order answers with `OrderLineReleaseRequired` (see `release_stock_on_late_reservation`).

use streamcart_aggregates::inventory::ReleaseStock;
use streamcart_aggregates::orders::{OrderCancelled, OrderEvent, OrderExpired};
use streamcart_schemas::envelope::EventEnvelope;

use super::order_of;
use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "release_stock_on_order_closed";

/// `ReleaseStock` for every reserved line of a cancelled or expired order; nothing otherwise.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let release = match &event.payload {
        OrderEvent::OrderCancelled(OrderCancelled { release, .. })
        | OrderEvent::OrderExpired(OrderExpired { release }) => release,
        _ => return Vec::new(),
    };
    let Some(order_id) = order_of(event) else {
        return Vec::new();
    };
    release
        .iter()
        .enumerate()
        .map(|(index, line)| {
            SagaCommand::Stock(envelope(
                event,
                NAME,
                index,
                line.sku.as_str(),
                ReleaseStock {
                    order_id: order_id.clone(),
                    line_no: line.line_no,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::inventory::StockCommand;
    use streamcart_aggregates::orders::CancelReason;

    fn expected(event: &EventEnvelope<OrderEvent>, lines: &[(u32, &str)]) -> Vec<SagaCommand> {
        lines
            .iter()
            .enumerate()
            .map(|(index, (line, sku))| {
                SagaCommand::Stock(expected_envelope(
                    event,
                    NAME,
                    index,
                    sku,
                    StockCommand::ReleaseStock(ReleaseStock {
                        order_id: order_id(),
                        line_no: line_no(*line),
                    }),
                ))
            })
            .collect()
    }

    #[test]
    fn a_cancellation_releases_every_listed_line() {
        let event = order_event(OrderCancelled {
            reason: CancelReason::PaymentDeclined,
            release: vec![line_ref(1, "SKU-A", 2), line_ref(3, "SKU-C", 1)],
        });
        assert_eq!(
            react(&event),
            expected(&event, &[(1, "SKU-A"), (3, "SKU-C")])
        );
    }

    #[test]
    fn an_expiry_releases_every_listed_line() {
        let event = order_event(OrderExpired {
            release: vec![line_ref(2, "SKU-B", 4)],
        });
        assert_eq!(react(&event), expected(&event, &[(2, "SKU-B")]));
    }

    #[test]
    fn nothing_held_nothing_released() {
        let event = order_event(OrderCancelled {
            reason: CancelReason::StockUnavailable,
            release: vec![],
        });
        assert!(react(&event).is_empty());
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| !matches!(e.payload.name(), "OrderCancelled" | "OrderExpired"))
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
