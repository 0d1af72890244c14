//! Consumes `PaymentAuthorized`; emits `ConfirmOrder` to the paid order. An order that closed in
//! the meantime answers with `OrderPaymentRefundRequired` instead of confirming.

use streamcart_aggregates::orders::ConfirmOrder;
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_aggregates::values::PaymentId;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "confirm_order_on_payment_authorized";

/// `ConfirmOrder` for an authorized payment; nothing for other events.
pub fn react(event: &EventEnvelope<PaymentEvent>) -> Vec<SagaCommand> {
    let PaymentEvent::PaymentAuthorized(authorized) = &event.payload else {
        return Vec::new();
    };
    vec![SagaCommand::Order(envelope(
        event,
        NAME,
        0,
        authorized.order_id.as_str(),
        ConfirmOrder {
            payment_id: PaymentId::for_order(&authorized.order_id),
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::orders::OrderCommand;
    use streamcart_aggregates::payments::PaymentAuthorized;

    #[test]
    fn the_paid_order_is_confirmed() {
        let event = payment_event(PaymentAuthorized {
            order_id: order_id(),
            amount: eur(900),
            authorization_code: "AUTH-1".into(),
        });
        let expected = SagaCommand::Order(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            OrderCommand::ConfirmOrder(ConfirmOrder {
                payment_id: PaymentId::for_order(&order_id()),
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_payment_event()
            .into_iter()
            .filter(|e| e.payload.name() != "PaymentAuthorized")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
