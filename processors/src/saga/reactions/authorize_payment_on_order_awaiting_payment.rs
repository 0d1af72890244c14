//! Consumes `OrderAwaitingPayment` (every line reserved); emits `AuthorizePayment` for the order
//! total to the order's payment (payment id = order id).

use streamcart_aggregates::orders::OrderEvent;
use streamcart_aggregates::payments::AuthorizePayment;
use streamcart_aggregates::values::PaymentId;
use streamcart_schemas::envelope::EventEnvelope;

use super::order_of;
use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "authorize_payment_on_order_awaiting_payment";

/// `AuthorizePayment` once an order awaits payment; nothing for other events.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let OrderEvent::OrderAwaitingPayment(awaiting) = &event.payload else {
        return Vec::new();
    };
    let Some(order_id) = order_of(event) else {
        return Vec::new();
    };
    let payment_id = PaymentId::for_order(&order_id);
    vec![SagaCommand::Payment(envelope(
        event,
        NAME,
        0,
        payment_id.as_str(),
        AuthorizePayment {
            order_id,
            customer_id: awaiting.customer_id.clone(),
            amount: awaiting.total.clone(),
            card_token: awaiting.card_token.clone(),
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::orders::OrderAwaitingPayment;
    use streamcart_aggregates::payments::PaymentCommand;

    #[test]
    fn the_total_is_authorized_on_the_orders_payment() {
        let event = order_event(OrderAwaitingPayment {
            total: eur(1_500),
            card_token: "card-ok".into(),
            customer_id: customer(),
        });
        let expected = SagaCommand::Payment(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            PaymentCommand::AuthorizePayment(AuthorizePayment {
                order_id: order_id(),
                customer_id: customer(),
                amount: eur(1_500),
                card_token: "card-ok".into(),
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn a_key_that_is_no_order_id_is_ignored() {
        let mut event = order_event(OrderAwaitingPayment {
            total: eur(1),
            card_token: "c".into(),
            customer_id: customer(),
        });
        event.aggregate_id = "not-an-order".into();
        assert!(react(&event).is_empty());
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| e.payload.name() != "OrderAwaitingPayment")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
