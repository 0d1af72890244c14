//! Given / when / then for every command path of `Order`.

use std::collections::BTreeMap;

use super::*;
use crate::aggregate::AggregateState;
use crate::testing::given;
use crate::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};

const ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-123456789abc";
const PLACED_AT: i64 = 1_700_000_000_000;
const DEADLINE_AT: i64 = PLACED_AT + 15 * 60 * 1000;

fn order_id() -> OrderId {
    OrderId::new(ORDER).expect("valid order id")
}

fn payment_id() -> PaymentId {
    PaymentId::for_order(&order_id())
}

fn customer() -> CustomerId {
    CustomerId::new("customer-7").expect("valid customer")
}

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn line(n: u32) -> LineNo {
    LineNo::new(n).expect("valid line")
}

fn money(amount: i64, currency: &str) -> Money {
    Money::new(amount, currency).expect("valid money")
}

fn book() -> BTreeMap<Sku, CatalogEntry> {
    let entry = |amount, currency, discontinued| CatalogEntry {
        price: money(amount, currency),
        discontinued,
    };
    BTreeMap::from([
        (sku("KETTLE"), entry(1999, "EUR", false)),
        (sku("MUG"), entry(450, "EUR", false)),
        (sku("OLD"), entry(100, "EUR", true)),
        (sku("US-ONLY"), entry(700, "USD", false)),
        (sku("GOLD"), entry(i64::MAX / 2, "EUR", false)),
    ])
}

fn place(lines: &[(&str, u32)]) -> OrderCommand {
    PlaceOrder {
        order_id: order_id(),
        customer_id: customer(),
        lines: lines
            .iter()
            .map(|(s, quantity)| OrderLineRequest {
                sku: sku(s),
                quantity: *quantity,
            })
            .collect(),
        card_token: "tok_visa".to_owned(),
        deadline_at: DEADLINE_AT,
        placed_at: PLACED_AT,
    }
    .into()
}

fn priced(n: u32, s: &str, quantity: u32, unit: i64) -> OrderLine {
    OrderLine {
        line_no: line(n),
        sku: sku(s),
        quantity,
        unit_price: money(unit, "EUR"),
    }
}

/// Two lines: 2 kettles and 3 mugs, 2×1999 + 3×450 = 5348 EUR.
fn placed() -> OrderEvent {
    OrderPlaced {
        order_id: order_id(),
        customer_id: customer(),
        lines: vec![priced(1, "KETTLE", 2, 1999), priced(2, "MUG", 3, 450)],
        total: money(5348, "EUR"),
        card_token: "tok_visa".to_owned(),
        deadline_at: DEADLINE_AT,
        placed_at: PLACED_AT,
    }
    .into()
}

fn line_ref(n: u32) -> LineRef {
    match n {
        1 => LineRef {
            line_no: line(1),
            sku: sku("KETTLE"),
            quantity: 2,
        },
        _ => LineRef {
            line_no: line(2),
            sku: sku("MUG"),
            quantity: 3,
        },
    }
}

fn line_reserved(n: u32) -> OrderEvent {
    OrderLineReserved { line_no: line(n) }.into()
}

fn awaiting_payment() -> OrderEvent {
    OrderAwaitingPayment {
        total: money(5348, "EUR"),
        card_token: "tok_visa".to_owned(),
        customer_id: customer(),
    }
    .into()
}

fn confirmed() -> OrderEvent {
    OrderConfirmed {
        payment_id: payment_id(),
        lines: vec![line_ref(1), line_ref(2)],
    }
    .into()
}

fn cancelled(reason: CancelReason, release: Vec<LineRef>) -> OrderEvent {
    OrderCancelled { reason, release }.into()
}

fn expired(release: Vec<LineRef>) -> OrderEvent {
    OrderExpired { release }.into()
}

fn record_reserved(n: u32) -> OrderCommand {
    RecordLineReserved { line_no: line(n) }.into()
}

fn record_rejected(n: u32, available: u64) -> OrderCommand {
    RecordLineRejected {
        line_no: line(n),
        available,
    }
    .into()
}

fn confirm() -> OrderCommand {
    ConfirmOrder {
        payment_id: payment_id(),
    }
    .into()
}

fn cancel(reason: CancelReason) -> OrderCommand {
    CancelOrder { reason }.into()
}

fn expire(now: i64) -> OrderCommand {
    ExpireOrder { now }.into()
}

fn fully_reserved() -> Vec<OrderEvent> {
    vec![
        placed(),
        line_reserved(1),
        line_reserved(2),
        awaiting_payment(),
    ]
}

// --- PlaceOrder ---

#[test]
fn place_prices_lines_from_the_price_book() {
    let state = given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("KETTLE", 2), ("MUG", 3)]))
        .then(&[placed()]);
    let order = state.order.expect("placed");
    assert_eq!(order.status, OrderStatus::Reserving);
    assert!(order.lines.iter().all(|l| l.status == LineStatus::Pending));
}

#[test]
fn place_works_with_a_hash_map_price_book() {
    let prices: std::collections::HashMap<_, _> = book().into_iter().collect();
    given::<Order>(&[])
        .with_context(&prices)
        .when(place(&[("KETTLE", 2), ("MUG", 3)]))
        .then(&[placed()]);
}

#[test]
fn place_twice_is_refused() {
    given::<Order>(&[placed()])
        .with_context(&book())
        .when(place(&[("KETTLE", 2)]))
        .then_rejected("order.already_exists");
}

#[test]
fn place_refuses_no_lines_and_too_many_lines() {
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[]))
        .then_rejected("order.no_lines");
    let fifty_one = vec![("MUG", 1); 51];
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&fifty_one))
        .then_rejected("order.too_many_lines");
    let fifty = vec![("MUG", 1); 50];
    let state = given::<Order>(&[])
        .with_context(&book())
        .when(place(&fifty));
    assert!(matches!(state.outcome(), Ok(events) if events.len() == 1));
}

#[test]
fn place_refuses_zero_quantities() {
    let rejection = given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("KETTLE", 1), ("MUG", 0)]))
        .then_rejected("order.invalid_quantity");
    assert_eq!(
        rejection.to_string(),
        "line 2: invalid quantity 0: must be greater than zero"
    );
}

#[test]
fn place_refuses_totals_that_overflow() {
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("GOLD", 3)]))
        .then_rejected("order.invalid_quantity");
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("GOLD", 1), ("GOLD", 1), ("GOLD", 1)]))
        .then_rejected("order.invalid_quantity");
}

#[test]
fn place_refuses_unknown_and_discontinued_skus() {
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("KETTLE", 1), ("NOPE", 1)]))
        .then_rejected("order.unknown_sku");
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("OLD", 1)]))
        .then_rejected("order.product_discontinued");
}

#[test]
fn place_refuses_mixed_currencies() {
    given::<Order>(&[])
        .with_context(&book())
        .when(place(&[("KETTLE", 1), ("US-ONLY", 1)]))
        .then_rejected("order.mixed_currencies");
}

#[test]
fn place_refuses_a_deadline_not_after_placement() {
    let OrderCommand::PlaceOrder(mut command) = place(&[("KETTLE", 1)]) else {
        unreachable!("place builds a PlaceOrder");
    };
    command.deadline_at = command.placed_at;
    given::<Order>(&[])
        .with_context(&book())
        .when(command.into())
        .then_rejected("order.invalid_deadline");
}

// --- RecordLineReserved ---

#[test]
fn reserving_a_line_records_it() {
    given::<Order>(&[placed()])
        .with_context(&book())
        .when(record_reserved(1))
        .then(&[line_reserved(1)]);
}

#[test]
fn reserving_the_last_line_awaits_payment() {
    let state = given::<Order>(&[placed(), line_reserved(2)])
        .with_context(&book())
        .when(record_reserved(1))
        .then(&[line_reserved(1), awaiting_payment()]);
    assert_eq!(
        state.order.map(|o| o.status),
        Some(OrderStatus::AwaitingPayment)
    );
}

#[test]
fn reserving_a_line_twice_changes_nothing() {
    given::<Order>(&[placed(), line_reserved(1)])
        .with_context(&book())
        .when(record_reserved(1))
        .then_no_events();
    given::<Order>(&fully_reserved())
        .with_context(&book())
        .when(record_reserved(2))
        .then_no_events();
}

#[test]
fn a_reservation_after_cancellation_must_be_released() {
    let history = [
        placed(),
        cancel_event(CancelReason::CustomerRequested, vec![]),
    ];
    let state = given::<Order>(&history)
        .with_context(&book())
        .when(record_reserved(2))
        .then(&[OrderLineReleaseRequired {
            line_no: line(2),
            sku: sku("MUG"),
            quantity: 3,
        }
        .into()]);
    // Once requested, never again.
    let mut history = history.to_vec();
    history.push(
        OrderLineReleaseRequired {
            line_no: line(2),
            sku: sku("MUG"),
            quantity: 3,
        }
        .into(),
    );
    assert!(
        state
            .order
            .is_some_and(|o| o.line(line(2)).map(|l| l.status) == Some(LineStatus::Released))
    );
    given::<Order>(&history)
        .with_context(&book())
        .when(record_reserved(2))
        .then_no_events();
}

fn cancel_event(reason: CancelReason, release: Vec<LineRef>) -> OrderEvent {
    cancelled(reason, release)
}

#[test]
fn a_reservation_after_expiry_must_be_released_but_released_lines_are_not_released_twice() {
    let history = [placed(), line_reserved(1), expired(vec![line_ref(1)])];
    given::<Order>(&history)
        .with_context(&book())
        .when(record_reserved(2))
        .then(&[OrderLineReleaseRequired {
            line_no: line(2),
            sku: sku("MUG"),
            quantity: 3,
        }
        .into()]);
    given::<Order>(&history)
        .with_context(&book())
        .when(record_reserved(1))
        .then_no_events();
}

#[test]
fn recording_a_reservation_needs_an_order_and_a_known_line() {
    given::<Order>(&[])
        .with_context(&book())
        .when(record_reserved(1))
        .then_rejected("order.not_found");
    given::<Order>(&[placed()])
        .with_context(&book())
        .when(record_reserved(3))
        .then_rejected("order.unknown_line");
}

// --- RecordLineRejected ---

#[test]
fn a_rejected_line_cancels_and_releases_the_reserved_ones() {
    let state = given::<Order>(&[placed(), line_reserved(1)])
        .with_context(&book())
        .when(record_rejected(2, 1))
        .then(&[
            OrderLineRejected {
                line_no: line(2),
                available: 1,
            }
            .into(),
            cancelled(CancelReason::StockUnavailable, vec![line_ref(1)]),
        ]);
    assert_eq!(
        state.order.map(|o| o.status),
        Some(OrderStatus::Cancelled {
            reason: CancelReason::StockUnavailable
        })
    );
}

#[test]
fn a_rejected_line_after_closing_changes_nothing() {
    given::<Order>(&[placed(), cancelled(CancelReason::CustomerRequested, vec![])])
        .with_context(&book())
        .when(record_rejected(1, 0))
        .then_no_events();
    given::<Order>(&[placed(), expired(vec![])])
        .with_context(&book())
        .when(record_rejected(1, 0))
        .then_no_events();
}

#[test]
fn recording_a_rejection_needs_an_order_and_a_known_line() {
    given::<Order>(&[])
        .with_context(&book())
        .when(record_rejected(1, 0))
        .then_rejected("order.not_found");
    given::<Order>(&[placed()])
        .with_context(&book())
        .when(record_rejected(9, 0))
        .then_rejected("order.unknown_line");
}

// --- ConfirmOrder ---

#[test]
fn confirming_commits_every_line() {
    let state = given::<Order>(&fully_reserved())
        .with_context(&book())
        .when(confirm())
        .then(&[confirmed()]);
    let order = state.order.expect("placed");
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert!(
        order
            .lines
            .iter()
            .all(|l| l.status == LineStatus::Committed)
    );
}

#[test]
fn confirming_twice_changes_nothing() {
    let mut history = fully_reserved();
    history.push(confirmed());
    given::<Order>(&history)
        .with_context(&book())
        .when(confirm())
        .then_no_events();
}

#[test]
fn confirming_while_reserving_is_refused() {
    given::<Order>(&[placed(), line_reserved(1)])
        .with_context(&book())
        .when(confirm())
        .then_rejected("order.not_awaiting_payment");
}

#[test]
fn confirming_a_missing_order_is_refused() {
    given::<Order>(&[])
        .with_context(&book())
        .when(confirm())
        .then_rejected("order.not_found");
}

#[test]
fn a_payment_after_closing_must_be_refunded_once() {
    let mut history = fully_reserved();
    history.push(expired(vec![line_ref(1), line_ref(2)]));
    let refund: OrderEvent = OrderPaymentRefundRequired {
        payment_id: payment_id(),
        amount: money(5348, "EUR"),
    }
    .into();
    given::<Order>(&history)
        .with_context(&book())
        .when(confirm())
        .then(std::slice::from_ref(&refund));
    history.push(refund);
    given::<Order>(&history)
        .with_context(&book())
        .when(confirm())
        .then_no_events();
}

// --- CancelOrder ---

#[test]
fn cancelling_while_reserving_releases_the_reserved_lines() {
    given::<Order>(&[placed(), line_reserved(2)])
        .with_context(&book())
        .when(cancel(CancelReason::CustomerRequested))
        .then(&[cancelled(
            CancelReason::CustomerRequested,
            vec![line_ref(2)],
        )]);
}

#[test]
fn cancelling_while_awaiting_payment_releases_every_line() {
    given::<Order>(&fully_reserved())
        .with_context(&book())
        .when(cancel(CancelReason::PaymentDeclined))
        .then(&[cancelled(
            CancelReason::PaymentDeclined,
            vec![line_ref(1), line_ref(2)],
        )]);
}

#[test]
fn cancelling_a_closed_order_changes_nothing() {
    given::<Order>(&[placed(), cancelled(CancelReason::CustomerRequested, vec![])])
        .with_context(&book())
        .when(cancel(CancelReason::PaymentDeclined))
        .then_no_events();
    given::<Order>(&[placed(), expired(vec![])])
        .with_context(&book())
        .when(cancel(CancelReason::CustomerRequested))
        .then_no_events();
}

#[test]
fn a_confirmed_order_cannot_be_cancelled() {
    let mut history = fully_reserved();
    history.push(confirmed());
    given::<Order>(&history)
        .with_context(&book())
        .when(cancel(CancelReason::CustomerRequested))
        .then_rejected("order.already_confirmed");
}

#[test]
fn cancelling_a_missing_order_is_refused() {
    given::<Order>(&[])
        .with_context(&book())
        .when(cancel(CancelReason::CustomerRequested))
        .then_rejected("order.not_found");
}

// --- ExpireOrder ---

#[test]
fn expiring_at_the_deadline_releases_the_reserved_lines() {
    let state = given::<Order>(&[placed(), line_reserved(1)])
        .with_context(&book())
        .when(expire(DEADLINE_AT))
        .then(&[expired(vec![line_ref(1)])]);
    assert_eq!(state.order.map(|o| o.status), Some(OrderStatus::Expired));
}

#[test]
fn expiring_before_the_deadline_is_refused() {
    given::<Order>(&[placed()])
        .with_context(&book())
        .when(expire(DEADLINE_AT - 1))
        .then_rejected("order.deadline_not_reached");
}

#[test]
fn expiring_a_confirmed_or_closed_order_changes_nothing() {
    let mut history = fully_reserved();
    history.push(confirmed());
    given::<Order>(&history)
        .with_context(&book())
        .when(expire(DEADLINE_AT))
        .then_no_events();
    given::<Order>(&[placed(), expired(vec![])])
        .with_context(&book())
        .when(expire(DEADLINE_AT + 1))
        .then_no_events();
    given::<Order>(&[placed(), cancelled(CancelReason::CustomerRequested, vec![])])
        .with_context(&book())
        .when(expire(0))
        .then_no_events();
}

#[test]
fn expiring_a_missing_order_is_refused() {
    given::<Order>(&[])
        .with_context(&book())
        .when(expire(DEADLINE_AT))
        .then_rejected("order.not_found");
}

#[test]
fn a_fresh_order_is_new() {
    assert!(OrderState::default().is_new());
    assert!(!given::<Order>(&[placed()]).state().is_new());
}
