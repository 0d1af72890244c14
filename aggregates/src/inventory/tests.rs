//! Given / when / then for every command path of `Stock`.

use super::*;
use crate::aggregate::{Aggregate, AggregateState};
use crate::testing::given;
use crate::values::{LineNo, OrderId};

const ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-123456789abc";

fn order() -> OrderId {
    OrderId::new(ORDER).expect("valid order id")
}

fn line(n: u32) -> LineNo {
    LineNo::new(n).expect("valid line")
}

fn received(quantity: u32) -> StockEvent {
    StockReceived { quantity }.into()
}

fn reserve(n: u32, quantity: u32) -> StockCommand {
    ReserveStock {
        order_id: order(),
        line_no: line(n),
        quantity,
    }
    .into()
}

fn reserved(n: u32, quantity: u32) -> StockEvent {
    StockReserved {
        order_id: order(),
        line_no: line(n),
        quantity,
    }
    .into()
}

fn rejected(n: u32, quantity: u32, available: u64) -> StockEvent {
    StockReservationRejected {
        order_id: order(),
        line_no: line(n),
        quantity,
        available,
    }
    .into()
}

fn release(n: u32) -> StockCommand {
    ReleaseStock {
        order_id: order(),
        line_no: line(n),
    }
    .into()
}

fn released(n: u32, quantity: u32) -> StockEvent {
    StockReleased {
        order_id: order(),
        line_no: line(n),
        quantity,
    }
    .into()
}

fn commit(n: u32) -> StockCommand {
    CommitStock {
        order_id: order(),
        line_no: line(n),
    }
    .into()
}

fn committed(n: u32, quantity: u32) -> StockEvent {
    StockCommitted {
        order_id: order(),
        line_no: line(n),
        quantity,
    }
    .into()
}

#[test]
fn receive_adds_available_units() {
    let state = given::<Stock>(&[received(5)])
        .when(ReceiveStock { quantity: 7 }.into())
        .then(&[received(7)]);
    assert_eq!((state.received, state.available), (12, 12));
    assert!(state.is_balanced());
}

#[test]
fn receive_refuses_zero() {
    given::<Stock>(&[])
        .when(ReceiveStock { quantity: 0 }.into())
        .then_rejected("stock.invalid_quantity");
}

#[test]
fn receive_refuses_counter_overflow() {
    let mut state = StockState {
        exists: true,
        received: u64::MAX,
        available: u64::MAX,
        ..StockState::default()
    };
    let outcome = Stock::decide(&state, &ReceiveStock { quantity: 1 }.into(), &());
    assert!(matches!(
        outcome,
        Err(StockRejection::InvalidQuantity { .. })
    ));
    state.available = 0;
    state.sold = u64::MAX;
    let outcome = Stock::decide(&state, &ReceiveStock { quantity: 1 }.into(), &());
    assert!(matches!(
        outcome,
        Err(StockRejection::InvalidQuantity { .. })
    ));
}

#[test]
fn reserve_holds_units_for_a_line() {
    let state = given::<Stock>(&[received(10)])
        .when(reserve(1, 4))
        .then(&[reserved(1, 4)]);
    assert_eq!((state.available, state.reserved, state.sold), (6, 4, 0));
    assert!(state.is_balanced());
}

#[test]
fn reserve_everything_that_is_available() {
    given::<Stock>(&[received(3)])
        .when(reserve(1, 3))
        .then(&[reserved(1, 3)]);
}

#[test]
fn reserve_more_than_available_is_a_rejection_event() {
    let state = given::<Stock>(&[received(3), reserved(1, 2)])
        .when(reserve(2, 2))
        .then(&[rejected(2, 2, 1)]);
    assert_eq!(state.available, 1);
}

#[test]
fn reserve_on_a_never_received_sku_is_rejected_with_zero_available() {
    let state = given::<Stock>(&[])
        .when(reserve(1, 1))
        .then(&[rejected(1, 1, 0)]);
    assert!(!state.is_new());
}

#[test]
fn reserve_refuses_zero() {
    given::<Stock>(&[received(3)])
        .when(reserve(1, 0))
        .then_rejected("stock.invalid_quantity");
}

#[test]
fn reserve_same_line_again_changes_nothing() {
    given::<Stock>(&[received(10), reserved(1, 4)])
        .when(reserve(1, 4))
        .then_no_events();
    given::<Stock>(&[rejected(1, 4, 0), received(10)])
        .when(reserve(1, 4))
        .then_no_events();
    given::<Stock>(&[received(10), reserved(1, 4), released(1, 4)])
        .when(reserve(1, 4))
        .then_no_events();
}

#[test]
fn same_order_may_reserve_on_several_lines() {
    given::<Stock>(&[received(10), reserved(1, 4)])
        .when(reserve(2, 4))
        .then(&[reserved(2, 4)]);
}

#[test]
fn release_gives_units_back() {
    let state = given::<Stock>(&[received(10), reserved(1, 4)])
        .when(release(1))
        .then(&[released(1, 4)]);
    assert_eq!((state.available, state.reserved), (10, 0));
    assert_eq!(
        state.reservation(&order(), line(1)).map(|r| r.status),
        Some(ReservationStatus::Released)
    );
}

#[test]
fn release_twice_changes_nothing() {
    given::<Stock>(&[received(10), reserved(1, 4), released(1, 4)])
        .when(release(1))
        .then_no_events();
}

#[test]
fn release_unknown_or_rejected_line_is_not_found() {
    given::<Stock>(&[received(10)])
        .when(release(1))
        .then_rejected("stock.reservation_not_found");
    given::<Stock>(&[rejected(1, 4, 0)])
        .when(release(1))
        .then_rejected("stock.reservation_not_found");
}

#[test]
fn release_after_commit_is_refused() {
    given::<Stock>(&[received(10), reserved(1, 4), committed(1, 4)])
        .when(release(1))
        .then_rejected("stock.reservation_committed");
}

#[test]
fn commit_sells_the_reserved_units() {
    let state = given::<Stock>(&[received(10), reserved(1, 4)])
        .when(commit(1))
        .then(&[committed(1, 4)]);
    assert_eq!((state.available, state.reserved, state.sold), (6, 0, 4));
    assert!(state.is_balanced());
}

#[test]
fn commit_twice_changes_nothing() {
    given::<Stock>(&[received(10), reserved(1, 4), committed(1, 4)])
        .when(commit(1))
        .then_no_events();
}

#[test]
fn commit_unknown_or_rejected_line_is_not_found() {
    given::<Stock>(&[])
        .when(commit(1))
        .then_rejected("stock.reservation_not_found");
    given::<Stock>(&[rejected(1, 4, 0)])
        .when(commit(1))
        .then_rejected("stock.reservation_not_found");
}

#[test]
fn commit_after_release_is_refused() {
    let rejection = given::<Stock>(&[received(10), reserved(1, 4), released(1, 4)])
        .when(commit(1))
        .then_rejected("stock.reservation_released");
    assert_eq!(
        rejection.to_string(),
        format!("the reservation of order {ORDER} line 1 was already released")
    );
}

#[test]
fn a_fresh_stock_is_new() {
    assert!(StockState::default().is_new());
    assert!(!Stock::replay(&[received(1)]).is_new());
}
