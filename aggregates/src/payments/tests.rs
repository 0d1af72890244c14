//! Given / when / then for every command path of `Payment`.

use super::*;
use crate::aggregate::AggregateState;
use crate::testing::given;
use crate::values::{CustomerId, Money, OrderId};

const ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-123456789abc";
const OTHER_ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-000000000000";

fn order_id() -> OrderId {
    OrderId::new(ORDER).expect("valid order id")
}

fn eur(amount: i64) -> Money {
    Money {
        amount_minor: amount,
        currency: "EUR".to_owned(),
    }
}

fn policy() -> PaymentPolicy {
    PaymentPolicy::approve_all()
        .with_limit(100_000)
        .with_declined_card("tok_stolen")
}

fn authorize(amount: Money, card_token: &str) -> PaymentCommand {
    AuthorizePayment {
        order_id: order_id(),
        customer_id: CustomerId::new("customer-7").expect("valid customer"),
        amount,
        card_token: card_token.to_owned(),
    }
    .into()
}

fn authorized(amount: i64) -> PaymentEvent {
    PaymentAuthorized {
        order_id: order_id(),
        amount: eur(amount),
        authorization_code: authorization_code(&order_id()),
    }
    .into()
}

fn declined(amount: i64, reason: DeclineReason) -> PaymentEvent {
    PaymentDeclined {
        order_id: order_id(),
        amount: eur(amount),
        reason,
    }
    .into()
}

fn refund(reason: &str) -> PaymentCommand {
    RefundPayment {
        reason: reason.to_owned(),
    }
    .into()
}

fn refunded(amount: i64, reason: &str) -> PaymentEvent {
    PaymentRefunded {
        order_id: order_id(),
        amount: eur(amount),
        reason: reason.to_owned(),
    }
    .into()
}

#[test]
fn authorize_within_policy_is_authorized() {
    let state = given::<Payment>(&[])
        .with_context(&policy())
        .when(authorize(eur(5348), "tok_visa"))
        .then(&[authorized(5348)]);
    assert!(!state.is_new());
}

#[test]
fn authorize_at_the_limit_is_authorized() {
    given::<Payment>(&[])
        .with_context(&policy())
        .when(authorize(eur(100_000), "tok_visa"))
        .then(&[authorized(100_000)]);
}

#[test]
fn authorize_above_the_limit_is_declined() {
    given::<Payment>(&[])
        .with_context(&policy())
        .when(authorize(eur(100_001), "tok_visa"))
        .then(&[declined(100_001, DeclineReason::AmountOverLimit)]);
}

#[test]
fn authorize_with_a_declined_card_is_declined_first() {
    given::<Payment>(&[])
        .with_context(&policy())
        .when(authorize(eur(100_001), "tok_stolen"))
        .then(&[declined(100_001, DeclineReason::CardDeclined)]);
}

#[test]
fn authorize_refuses_invalid_amounts() {
    for amount in [
        eur(0),
        eur(-5),
        Money {
            amount_minor: 10,
            currency: "eu".to_owned(),
        },
    ] {
        given::<Payment>(&[])
            .with_context(&policy())
            .when(authorize(amount, "tok_visa"))
            .then_rejected("payment.invalid_amount");
    }
}

#[test]
fn authorize_again_with_the_same_request_changes_nothing() {
    given::<Payment>(&[authorized(5348)])
        .with_context(&policy())
        .when(authorize(eur(5348), "tok_visa"))
        .then_no_events();
    given::<Payment>(&[declined(5348, DeclineReason::CardDeclined)])
        .with_context(&PaymentPolicy::approve_all())
        .when(authorize(eur(5348), "tok_other"))
        .then_no_events();
}

#[test]
fn authorize_again_with_another_request_is_refused() {
    given::<Payment>(&[authorized(5348)])
        .with_context(&policy())
        .when(authorize(eur(1), "tok_visa"))
        .then_rejected("payment.already_processed");
    let other = AuthorizePayment {
        order_id: OrderId::new(OTHER_ORDER).expect("valid order id"),
        customer_id: CustomerId::new("customer-7").expect("valid customer"),
        amount: eur(5348),
        card_token: "tok_visa".to_owned(),
    };
    given::<Payment>(&[authorized(5348)])
        .with_context(&policy())
        .when(other.into())
        .then_rejected("payment.already_processed");
}

#[test]
fn refund_after_authorization_refunds_the_whole_amount() {
    let state = given::<Payment>(&[authorized(5348)])
        .with_context(&policy())
        .when(refund("order expired"))
        .then(&[refunded(5348, "order expired")]);
    assert!(matches!(
        state.payment.map(|p| p.status),
        Some(PaymentStatus::Refunded { .. })
    ));
}

#[test]
fn refund_twice_changes_nothing() {
    given::<Payment>(&[authorized(5348), refunded(5348, "order expired")])
        .with_context(&policy())
        .when(refund("again"))
        .then_no_events();
}

#[test]
fn refund_without_payment_or_after_decline_is_refused() {
    given::<Payment>(&[])
        .with_context(&policy())
        .when(refund("x"))
        .then_rejected("payment.not_found");
    given::<Payment>(&[declined(5348, DeclineReason::AmountOverLimit)])
        .with_context(&policy())
        .when(refund("x"))
        .then_rejected("payment.not_authorized");
}

#[test]
fn authorization_codes_are_stable_and_distinct() {
    let code = authorization_code(&order_id());
    assert_eq!(code, authorization_code(&order_id()));
    assert_eq!(code.len(), "AUTH-".len() + 16);
    assert_ne!(
        code,
        authorization_code(&OrderId::new(OTHER_ORDER).expect("valid order id"))
    );
}

#[test]
fn test_card_success_is_authorized_over_the_limit_and_the_decline_list() {
    let strict = policy().with_limit(1).with_declined_card(TEST_CARD_SUCCESS);
    given::<Payment>(&[])
        .with_context(&strict)
        .when(authorize(eur(100_001), TEST_CARD_SUCCESS))
        .then(&[authorized(100_001)]);
}

#[test]
fn test_card_decline_is_declined_even_when_everything_is_approved() {
    given::<Payment>(&[])
        .with_context(&PaymentPolicy::approve_all())
        .when(authorize(eur(1), TEST_CARD_DECLINE))
        .then(&[declined(1, DeclineReason::CardDeclined)]);
}

#[test]
fn other_tokens_still_follow_the_amount_rule() {
    given::<Payment>(&[])
        .with_context(&PaymentPolicy::approve_all().with_limit(500))
        .when(authorize(eur(501), "tok_visa"))
        .then(&[declined(501, DeclineReason::AmountOverLimit)]);
    given::<Payment>(&[])
        .with_context(&PaymentPolicy::approve_all().with_limit(500))
        .when(authorize(eur(500), "tok_visa"))
        .then(&[authorized(500)]);
}
