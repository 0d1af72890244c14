//! Consumes `OrderLineReleaseRequired` (stock reserved a line after the order had closed); emits
//! `ReleaseStock` for that line, to its sku, so the late reservation is given back.

use streamcart_aggregates::inventory::ReleaseStock;
use streamcart_aggregates::orders::OrderEvent;
use streamcart_schemas::envelope::EventEnvelope;

use super::order_of;
use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "release_stock_on_late_reservation";

/// `ReleaseStock` for a line reserved too late; nothing for other events.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let OrderEvent::OrderLineReleaseRequired(late) = &event.payload else {
        return Vec::new();
    };
    let Some(order_id) = order_of(event) else {
        return Vec::new();
    };
    vec![SagaCommand::Stock(envelope(
        event,
        NAME,
        0,
        late.sku.as_str(),
        ReleaseStock {
            order_id,
            line_no: late.line_no,
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::inventory::StockCommand;
    use streamcart_aggregates::orders::OrderLineReleaseRequired;

    #[test]
    fn the_late_line_is_released_at_its_sku() {
        let event = order_event(OrderLineReleaseRequired {
            line_no: line_no(2),
            sku: sku("SKU-B"),
            quantity: 3,
        });
        let expected = SagaCommand::Stock(expected_envelope(
            &event,
            NAME,
            0,
            "SKU-B",
            StockCommand::ReleaseStock(ReleaseStock {
                order_id: order_id(),
                line_no: line_no(2),
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| e.payload.name() != "OrderLineReleaseRequired")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
