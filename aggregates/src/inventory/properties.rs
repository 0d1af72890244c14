//! Random command sequences against `Stock`, checking conservation, non-negativity and the
//! settle-once rule of reservations after every step.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::aggregate::Aggregate;
use crate::values::{LineNo, OrderId};

const ORDERS: [&str; 3] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000002",
    "00000000-0000-4000-8000-000000000003",
];

fn key() -> impl Strategy<Value = (OrderId, LineNo)> {
    (prop::sample::select(ORDERS.to_vec()), 1u32..4).prop_map(|(order, line)| {
        (
            OrderId::new(order).expect("valid order id"),
            LineNo::new(line).expect("valid line"),
        )
    })
}

fn command() -> impl Strategy<Value = StockCommand> {
    prop_oneof![
        (0u32..30).prop_map(|quantity| ReceiveStock { quantity }.into()),
        (key(), 0u32..15).prop_map(|((order_id, line_no), quantity)| ReserveStock {
            order_id,
            line_no,
            quantity
        }
        .into()),
        key().prop_map(|(order_id, line_no)| ReleaseStock { order_id, line_no }.into()),
        key().prop_map(|(order_id, line_no)| CommitStock { order_id, line_no }.into()),
    ]
}

/// What the event history says happened to one line, counted independently of the state.
#[derive(Debug, Default)]
struct LineHistory {
    reserved: u32,
    rejected: u32,
    released: u32,
    committed: u32,
}

fn check_state(state: &StockState) -> Result<(), TestCaseError> {
    prop_assert!(state.is_balanced(), "unbalanced: {state:?}");
    let held: u64 = state
        .reservations
        .values()
        .filter(|r| r.status == ReservationStatus::Reserved)
        .map(|r| u64::from(r.quantity))
        .sum();
    let sold: u64 = state
        .reservations
        .values()
        .filter(|r| r.status == ReservationStatus::Committed)
        .map(|r| u64::from(r.quantity))
        .sum();
    prop_assert_eq!(held, state.reserved);
    prop_assert_eq!(sold, state.sold);
    Ok(())
}

proptest! {
    #[test]
    fn invariants_hold_after_every_step(commands in prop::collection::vec(command(), 1..60)) {
        let mut state = StockState::default();
        let mut history = Vec::new();
        let mut lines: BTreeMap<ReservationKey, LineHistory> = BTreeMap::new();
        for command in &commands {
            let before = state.clone();
            let Ok(events) = Stock::decide(&state, command, &()) else {
                continue;
            };
            for event in &events {
                match event {
                    StockEvent::StockReserved(e) => {
                        let h = lines.entry(ReservationKey::new(e.order_id.clone(), e.line_no)).or_default();
                        h.reserved += 1;
                        prop_assert!(u64::from(e.quantity) <= state.available);
                    }
                    StockEvent::StockReservationRejected(e) => {
                        let h = lines.entry(ReservationKey::new(e.order_id.clone(), e.line_no)).or_default();
                        h.rejected += 1;
                        prop_assert!(u64::from(e.quantity) > e.available);
                    }
                    StockEvent::StockReleased(e) => {
                        let h = lines.entry(ReservationKey::new(e.order_id.clone(), e.line_no)).or_default();
                        h.released += 1;
                    }
                    StockEvent::StockCommitted(e) => {
                        let h = lines.entry(ReservationKey::new(e.order_id.clone(), e.line_no)).or_default();
                        h.committed += 1;
                    }
                    StockEvent::StockReceived(e) => prop_assert!(e.quantity > 0),
                }
                state = Stock::evolve(state, event);
                check_state(&state)?;
            }
            prop_assert!(state.received >= before.received);
            prop_assert!(state.sold >= before.sold);
            history.extend(events);
        }
        for (key, h) in &lines {
            prop_assert!(h.reserved + h.rejected <= 1, "{key:?} asked twice: {h:?}");
            prop_assert!(h.released + h.committed <= h.reserved, "{key:?} settled without holding: {h:?}");
        }
        prop_assert_eq!(Stock::replay(&history), state);
    }
}
