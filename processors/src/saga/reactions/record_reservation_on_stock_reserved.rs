//! Consumes `StockReserved`; emits `RecordLineReserved` to the reserving order, which moves on to
//! payment once every line is reserved (or asks for the units back if it has already closed).

use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::RecordLineReserved;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "record_reservation_on_stock_reserved";

/// `RecordLineReserved` for a reserved line; nothing for other events.
pub fn react(event: &EventEnvelope<StockEvent>) -> Vec<SagaCommand> {
    let StockEvent::StockReserved(reserved) = &event.payload else {
        return Vec::new();
    };
    vec![SagaCommand::Order(envelope(
        event,
        NAME,
        0,
        reserved.order_id.as_str(),
        RecordLineReserved {
            line_no: reserved.line_no,
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::inventory::StockReserved;
    use streamcart_aggregates::orders::OrderCommand;

    #[test]
    fn the_reservation_is_recorded_on_its_order() {
        let event = stock_event(
            "SKU-A",
            StockReserved {
                order_id: order_id(),
                line_no: line_no(2),
                quantity: 5,
            },
        );
        let expected = SagaCommand::Order(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            OrderCommand::RecordLineReserved(RecordLineReserved {
                line_no: line_no(2),
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_stock_event()
            .into_iter()
            .filter(|e| e.payload.name() != "StockReserved")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
