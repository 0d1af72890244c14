//! Consumes `PaymentDeclined`; emits `CancelOrder{PaymentDeclined}` to the order, which then lists
//! its reserved lines for release.

use streamcart_aggregates::orders::{CancelOrder, CancelReason};
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "cancel_order_on_payment_declined";

/// `CancelOrder` with reason `PaymentDeclined` for a declined payment; nothing for other events.
pub fn react(event: &EventEnvelope<PaymentEvent>) -> Vec<SagaCommand> {
    let PaymentEvent::PaymentDeclined(declined) = &event.payload else {
        return Vec::new();
    };
    vec![SagaCommand::Order(envelope(
        event,
        NAME,
        0,
        declined.order_id.as_str(),
        CancelOrder {
            reason: CancelReason::PaymentDeclined,
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::orders::OrderCommand;
    use streamcart_aggregates::payments::{DeclineReason, PaymentDeclined};

    #[test]
    fn the_order_is_cancelled_for_a_declined_payment() {
        let event = payment_event(PaymentDeclined {
            order_id: order_id(),
            amount: eur(900),
            reason: DeclineReason::CardDeclined,
        });
        let expected = SagaCommand::Order(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            OrderCommand::CancelOrder(CancelOrder {
                reason: CancelReason::PaymentDeclined,
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_payment_event()
            .into_iter()
            .filter(|e| e.payload.name() != "PaymentDeclined")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
