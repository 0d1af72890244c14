//! Random command sequences against `Payment`, checking that it is processed once and refunded at
//! most once, and only after an authorization.

use proptest::prelude::*;

use super::*;
use crate::aggregate::{Aggregate, AggregateState};
use crate::values::{CustomerId, Money, OrderId};

const ORDERS: [&str; 2] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
];

fn command() -> impl Strategy<Value = PaymentCommand> {
    prop_oneof![
        (
            prop::sample::select(ORDERS.to_vec()),
            prop_oneof![Just(-1i64), Just(0), 1i64..3000],
            prop_oneof![Just("EUR"), Just("usd")],
            prop_oneof![Just("tok_ok"), Just("tok_bad")],
        )
            .prop_map(|(order, amount_minor, currency, card)| AuthorizePayment {
                order_id: OrderId::new(order).expect("valid order id"),
                customer_id: CustomerId::new("c-1").expect("valid customer"),
                amount: Money {
                    amount_minor,
                    currency: currency.to_owned(),
                },
                card_token: card.to_owned(),
            }
            .into()),
        "[a-z ]{0,12}".prop_map(|reason| RefundPayment { reason }.into()),
    ]
}

fn policy() -> impl Strategy<Value = PaymentPolicy> {
    (prop::option::of(0i64..3000), any::<bool>()).prop_map(|(limit, block)| {
        let policy = PaymentPolicy {
            decline_above_minor: limit,
            ..PaymentPolicy::default()
        };
        if block {
            policy.with_declined_card("tok_bad")
        } else {
            policy
        }
    })
}

proptest! {
    #[test]
    fn processed_once_and_refunded_only_after_authorization(
        policy in policy(),
        commands in prop::collection::vec(command(), 1..30),
    ) {
        let mut state = PaymentState::default();
        let mut history = Vec::new();
        let (mut outcomes, mut refunds) = (0u32, 0u32);
        for command in &commands {
            let Ok(events) = Payment::decide(&state, command, &policy) else {
                continue;
            };
            for event in &events {
                match event {
                    PaymentEvent::PaymentAuthorized(e) => {
                        prop_assert!(state.is_new());
                        prop_assert!(e.amount.amount_minor > 0);
                        prop_assert_eq!(&e.authorization_code, &authorization_code(&e.order_id));
                        outcomes += 1;
                    }
                    PaymentEvent::PaymentDeclined(e) => {
                        prop_assert!(state.is_new());
                        prop_assert!(e.amount.amount_minor > 0);
                        outcomes += 1;
                    }
                    PaymentEvent::PaymentRefunded(e) => {
                        let authorized = state.payment.as_ref().filter(|p| {
                            matches!(p.status, PaymentStatus::Authorized { .. })
                        });
                        prop_assert!(authorized.is_some(), "refund without authorization");
                        prop_assert_eq!(Some(&e.amount), authorized.map(|p| &p.amount));
                        refunds += 1;
                    }
                }
                state = Payment::evolve(state, event);
            }
            history.extend(events);
        }
        prop_assert!(outcomes <= 1);
        prop_assert!(refunds <= 1);
        prop_assert_eq!(Payment::replay(&history), state);
    }
}
