//! Consumes `StockReservationRejected`; emits `RecordLineRejected` to the order, which cancels
//! itself (reason `StockUnavailable`) and lists the lines already reserved for release.

use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::RecordLineRejected;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "record_rejection_on_stock_rejected";

/// `RecordLineRejected` for a refused line; nothing for other events.
pub fn react(event: &EventEnvelope<StockEvent>) -> Vec<SagaCommand> {
    let StockEvent::StockReservationRejected(rejected) = &event.payload else {
        return Vec::new();
    };
    vec![SagaCommand::Order(envelope(
        event,
        NAME,
        0,
        rejected.order_id.as_str(),
        RecordLineRejected {
            line_no: rejected.line_no,
            available: rejected.available,
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::inventory::StockReservationRejected;
    use streamcart_aggregates::orders::OrderCommand;

    #[test]
    fn the_rejection_is_recorded_on_its_order_with_what_was_available() {
        let event = stock_event(
            "SKU-A",
            StockReservationRejected {
                order_id: order_id(),
                line_no: line_no(1),
                quantity: 5,
                available: 2,
            },
        );
        let expected = SagaCommand::Order(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            OrderCommand::RecordLineRejected(RecordLineRejected {
                line_no: line_no(1),
                available: 2,
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_stock_event()
            .into_iter()
            .filter(|e| e.payload.name() != "StockReservationRejected")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
