//! Consumes `OrderPlaced`; emits one `ReserveStock` per order line, to the line's sku.
//!
//! Stock answers each line on its own (`StockReserved` or `StockReservationRejected`), so lines
//! over several skus are reserved in parallel; the order collects the answers.

use streamcart_aggregates::inventory::ReserveStock;
use streamcart_aggregates::orders::OrderEvent;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "reserve_stock_on_order_placed";

/// `ReserveStock` for every line of a placed order; nothing for other events.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let OrderEvent::OrderPlaced(placed) = &event.payload else {
        return Vec::new();
    };
    placed
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            SagaCommand::Stock(envelope(
                event,
                NAME,
                index,
                line.sku.as_str(),
                ReserveStock {
                    order_id: placed.order_id.clone(),
                    line_no: line.line_no,
                    quantity: line.quantity,
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

    #[test]
    fn every_line_is_reserved_at_its_sku() {
        let event = order_event(placed(&[("SKU-A", 2), ("SKU-B", 1), ("SKU-A", 3)]));
        let commands = react(&event);
        let expected: Vec<SagaCommand> = [("SKU-A", 1, 2), ("SKU-B", 2, 1), ("SKU-A", 3, 3)]
            .iter()
            .enumerate()
            .map(|(index, (sku, line, quantity))| {
                SagaCommand::Stock(expected_envelope(
                    &event,
                    NAME,
                    index,
                    sku,
                    StockCommand::ReserveStock(ReserveStock {
                        order_id: order_id(),
                        line_no: line_no(*line),
                        quantity: *quantity,
                    }),
                ))
            })
            .collect();
        assert_eq!(commands, expected);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| e.payload.name() != "OrderPlaced")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
