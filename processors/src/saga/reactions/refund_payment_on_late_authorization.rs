//! Consumes `OrderPaymentRefundRequired` (a payment was authorized after the order had closed);
//! emits `RefundPayment` to that payment, so the customer gets the money back.

use streamcart_aggregates::orders::OrderEvent;
use streamcart_aggregates::payments::RefundPayment;
use streamcart_schemas::envelope::EventEnvelope;

use crate::saga::{SagaCommand, envelope};

/// The reaction's name, part of every command id it derives.
pub const NAME: &str = "refund_payment_on_late_authorization";

/// Kept with the refund so the payment's history says why the money went back.
pub const REASON: &str = "order closed before the payment was authorized";

/// `RefundPayment` for a late authorization; nothing for other events.
pub fn react(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    let OrderEvent::OrderPaymentRefundRequired(late) = &event.payload else {
        return Vec::new();
    };
    vec![SagaCommand::Payment(envelope(
        event,
        NAME,
        0,
        late.payment_id.as_str(),
        RefundPayment {
            reason: REASON.to_owned(),
        },
    ))]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::orders::OrderPaymentRefundRequired;
    use streamcart_aggregates::payments::PaymentCommand;
    use streamcart_aggregates::values::PaymentId;

    #[test]
    fn the_late_payment_is_refunded() {
        let event = order_event(OrderPaymentRefundRequired {
            payment_id: PaymentId::for_order(&order_id()),
            amount: eur(700),
        });
        let expected = SagaCommand::Payment(expected_envelope(
            &event,
            NAME,
            0,
            ORDER,
            PaymentCommand::RefundPayment(RefundPayment {
                reason: REASON.to_owned(),
            }),
        ));
        assert_eq!(react(&event), vec![expected]);
    }

    #[test]
    fn other_events_emit_nothing() {
        for event in every_order_event()
            .into_iter()
            .filter(|e| e.payload.name() != "OrderPaymentRefundRequired")
        {
            assert!(react(&event).is_empty(), "{}", event.payload.name());
        }
    }
}
