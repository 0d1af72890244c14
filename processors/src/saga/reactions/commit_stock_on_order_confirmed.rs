//! Consumes `OrderConfirmed`; emits one `CommitStock` per confirmed line, to the line's sku, so
//! the reserved units become sold units.

use streamcart_aggregates::inventory::CommitStock;
use streamcart_aggregates::orders::OrderEvent;
use streamcart_schemas::envelope::EventEnvelope;

use super::order_of;
use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "commit_stock_on_order_confirmed";

/// `CommitStock` for every line of a confirmed order; nothing for other events.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let OrderEvent::OrderConfirmed(confirmed) = &event.payload else {
        return Vec::new();
    };
    let Some(order_id) = order_of(event) else {
        return Vec::new();
    };
    confirmed
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            SagaCommand::Stock(envelope(
                event,
                NAME,
                index,
                line.sku.as_str(),
                CommitStock {
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
    use streamcart_aggregates::orders::OrderConfirmed;
    use streamcart_aggregates::values::PaymentId;

    #[test]
    fn every_line_is_committed_at_its_sku() {
        let event = order_event(OrderConfirmed {
            payment_id: PaymentId::for_order(&order_id()),
            lines: vec![line_ref(1, "SKU-A", 2), line_ref(2, "SKU-B", 1)],
        });
        let expected: Vec<SagaCommand> = [(1, "SKU-A"), (2, "SKU-B")]
            .iter()
            .enumerate()
            .map(|(index, (line, sku))| {
                SagaCommand::Stock(expected_envelope(
                    &event,
                    NAME,
                    index,
                    sku,
                    StockCommand::CommitStock(CommitStock {
                        order_id: order_id(),
                        line_no: line_no(*line),
                    }),
                ))
            })
            .collect();
        assert_eq!(react(&event), expected);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| e.payload.name() != "OrderConfirmed")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
