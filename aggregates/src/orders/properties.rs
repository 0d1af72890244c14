//! Random command sequences against `Order`, checking after every step that the status moves
//! only along the state machine and that every line's stock is settled at most once.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::aggregate::{Aggregate, AggregateState};
use crate::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};

const ORDER: &str = "00000000-0000-4000-8000-000000000001";
const SKUS: [&str; 6] = ["A", "B", "OLD", "USD", "HUGE", "MISSING"];

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn book() -> BTreeMap<Sku, CatalogEntry> {
    let entry = |amount, currency: &str, discontinued| CatalogEntry {
        price: Money::new(amount, currency).expect("valid money"),
        discontinued,
    };
    BTreeMap::from([
        (sku("A"), entry(100, "EUR", false)),
        (sku("B"), entry(250, "EUR", false)),
        (sku("OLD"), entry(100, "EUR", true)),
        (sku("USD"), entry(300, "USD", false)),
        (sku("HUGE"), entry(i64::MAX / 3, "EUR", false)),
    ])
}

fn line_no() -> impl Strategy<Value = LineNo> {
    (1u32..5).prop_map(|n| LineNo::new(n).expect("valid line"))
}

fn reason() -> impl Strategy<Value = CancelReason> {
    prop_oneof![
        Just(CancelReason::StockUnavailable),
        Just(CancelReason::PaymentDeclined),
        Just(CancelReason::CustomerRequested),
    ]
}

fn requested_line() -> impl Strategy<Value = OrderLineRequest> {
    (
        prop_oneof![
            8 => prop::sample::select(vec!["A", "B"]),
            1 => prop::sample::select(SKUS.to_vec()),
        ],
        prop_oneof![9 => 1u32..4, 1 => Just(0u32)],
    )
        .prop_map(|(s, quantity)| OrderLineRequest {
            sku: sku(s),
            quantity,
        })
}

fn place() -> impl Strategy<Value = OrderCommand> {
    (
        prop_oneof![9 => prop::collection::vec(requested_line(), 1..5), 1 => Just(vec![])],
        0i64..1000,
        -100i64..1000,
    )
        .prop_map(|(lines, placed_at, window)| {
            PlaceOrder {
                order_id: OrderId::new(ORDER).expect("valid order id"),
                customer_id: CustomerId::new("c-1").expect("valid customer"),
                lines,
                card_token: "tok".to_owned(),
                deadline_at: placed_at + window,
                placed_at,
            }
            .into()
        })
}

fn command() -> impl Strategy<Value = OrderCommand> {
    prop_oneof![
        1 => place(),
        4 => line_no().prop_map(|line_no| RecordLineReserved { line_no }.into()),
        1 => (line_no(), 0u64..5).prop_map(|(line_no, available)| RecordLineRejected { line_no, available }.into()),
        2 => Just(ConfirmOrder {
            payment_id: PaymentId::new(ORDER).expect("valid payment id"),
        }
        .into()),
        1 => reason().prop_map(|reason| CancelOrder { reason }.into()),
        1 => (0i64..2000).prop_map(|now| ExpireOrder { now }.into()),
    ]
}

/// Legal moves of the state machine; staying put is always legal.
fn legal(from: Option<OrderStatus>, to: Option<OrderStatus>) -> bool {
    use OrderStatus::*;
    match (from, to) {
        (a, b) if a == b => true,
        (None, Some(Reserving)) => true,
        (Some(Reserving), Some(AwaitingPayment | Cancelled { .. } | Expired)) => true,
        (Some(AwaitingPayment), Some(Confirmed | Cancelled { .. } | Expired)) => true,
        _ => false,
    }
}

/// What the events said about one line, counted independently of the state.
#[derive(Debug, Default)]
struct LineHistory {
    /// Stock reported units held (recorded, or recorded late and sent back).
    held: u32,
    released: u32,
    committed: u32,
}

proptest! {
    #[test]
    fn state_machine_and_settle_once_hold(commands in prop::collection::vec(command(), 1..40)) {
        let prices = book();
        let mut state = OrderState::default();
        let mut history = Vec::new();
        let mut lines: BTreeMap<LineNo, LineHistory> = BTreeMap::new();
        let mut refunds = 0u32;
        for command in &commands {
            let Ok(events) = Order::decide(&state, command, &prices) else {
                continue;
            };
            for event in &events {
                let before = state.order.as_ref().map(|o| o.status);
                match event {
                    OrderEvent::OrderPlaced(e) => {
                        prop_assert!(state.is_new());
                        prop_assert!(!e.lines.is_empty() && e.lines.len() <= MAX_LINES);
                        prop_assert!(e.total.amount_minor > 0);
                        let sum: i128 = e.lines.iter()
                            .map(|l| i128::from(l.unit_price.amount_minor) * i128::from(l.quantity))
                            .sum();
                        prop_assert_eq!(sum, i128::from(e.total.amount_minor));
                        prop_assert!(e.lines.iter().all(|l| l.unit_price.currency == e.total.currency));
                        prop_assert!(e.deadline_at > e.placed_at);
                    }
                    OrderEvent::OrderLineReserved(e) => {
                        lines.entry(e.line_no).or_default().held += 1;
                    }
                    OrderEvent::OrderLineReleaseRequired(e) => {
                        prop_assert!(before.is_some_and(OrderStatus::is_closed));
                        let h = lines.entry(e.line_no).or_default();
                        h.held += 1;
                        h.released += 1;
                    }
                    OrderEvent::OrderCancelled(OrderCancelled { release, .. })
                    | OrderEvent::OrderExpired(OrderExpired { release }) => {
                        for r in release {
                            lines.entry(r.line_no).or_default().released += 1;
                        }
                    }
                    OrderEvent::OrderConfirmed(e) => {
                        prop_assert!(state.order.as_ref().is_some_and(PlacedOrder::all_reserved));
                        for r in &e.lines {
                            lines.entry(r.line_no).or_default().committed += 1;
                        }
                    }
                    OrderEvent::OrderAwaitingPayment(_) => {
                        // Evolved below; every line must be reserved once this event applies.
                    }
                    OrderEvent::OrderPaymentRefundRequired(e) => {
                        prop_assert!(before.is_some_and(OrderStatus::is_closed));
                        prop_assert_eq!(Some(&e.amount), state.order.as_ref().map(|o| &o.total));
                        refunds += 1;
                    }
                    OrderEvent::OrderLineRejected(_) => {}
                }
                state = Order::evolve(state, event);
                let after = state.order.as_ref().map(|o| o.status);
                prop_assert!(legal(before, after), "illegal move {before:?} -> {after:?} by {event:?}");
                if after == Some(OrderStatus::AwaitingPayment) {
                    prop_assert!(state.order.as_ref().is_some_and(PlacedOrder::all_reserved));
                }
            }
            history.extend(events);
        }
        prop_assert!(refunds <= 1);
        for (line_no, h) in &lines {
            prop_assert!(h.held <= 1, "line {line_no} held twice: {h:?}");
            prop_assert!(h.released + h.committed <= h.held, "line {line_no} settled without being held: {h:?}");
        }
        prop_assert_eq!(Order::replay(&history), state);
    }
}
