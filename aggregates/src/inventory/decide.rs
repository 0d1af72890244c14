//! Rules of the `Stock` aggregate; every inventory invariant is checked here.

use super::commands::StockCommand;
use super::errors::StockRejection;
use super::events::{
    StockCommitted, StockEvent, StockReceived, StockReleased, StockReservationRejected,
    StockReserved,
};
use super::state::{Reservation, ReservationStatus, StockState};
use crate::values::{LineNo, OrderId};

fn positive(quantity: u32) -> Result<(), StockRejection> {
    if quantity == 0 {
        Err(StockRejection::InvalidQuantity {
            quantity,
            reason: "must be greater than zero",
        })
    } else {
        Ok(())
    }
}

/// A rejected request held nothing, so it cannot be settled either.
fn not_found(order_id: &OrderId, line_no: LineNo) -> StockRejection {
    StockRejection::ReservationNotFound {
        order_id: order_id.clone(),
        line_no,
    }
}

pub(super) fn decide(
    state: &StockState,
    command: &StockCommand,
) -> Result<Vec<StockEvent>, StockRejection> {
    match command {
        StockCommand::ReceiveStock(c) => {
            positive(c.quantity)?;
            let q = u64::from(c.quantity);
            if state.received.checked_add(q).is_none() || state.available.checked_add(q).is_none() {
                return Err(StockRejection::InvalidQuantity {
                    quantity: c.quantity,
                    reason: "the stock counters would overflow",
                });
            }
            Ok(vec![
                StockReceived {
                    quantity: c.quantity,
                }
                .into(),
            ])
        }
        StockCommand::ReserveStock(c) => {
            positive(c.quantity)?;
            if state.reservation(&c.order_id, c.line_no).is_some() {
                return Ok(vec![]);
            }
            let wanted = u64::from(c.quantity);
            if wanted > state.available {
                return Ok(vec![
                    StockReservationRejected {
                        order_id: c.order_id.clone(),
                        line_no: c.line_no,
                        quantity: c.quantity,
                        available: state.available,
                    }
                    .into(),
                ]);
            }
            Ok(vec![
                StockReserved {
                    order_id: c.order_id.clone(),
                    line_no: c.line_no,
                    quantity: c.quantity,
                }
                .into(),
            ])
        }
        StockCommand::ReleaseStock(c) => match state.reservation(&c.order_id, c.line_no) {
            None
            | Some(Reservation {
                status: ReservationStatus::Rejected,
                ..
            }) => Err(not_found(&c.order_id, c.line_no)),
            Some(Reservation {
                status: ReservationStatus::Released,
                ..
            }) => Ok(vec![]),
            Some(Reservation {
                status: ReservationStatus::Committed,
                ..
            }) => Err(StockRejection::ReservationCommitted {
                order_id: c.order_id.clone(),
                line_no: c.line_no,
            }),
            Some(Reservation {
                status: ReservationStatus::Reserved,
                quantity,
            }) => Ok(vec![
                StockReleased {
                    order_id: c.order_id.clone(),
                    line_no: c.line_no,
                    quantity: *quantity,
                }
                .into(),
            ]),
        },
        StockCommand::CommitStock(c) => match state.reservation(&c.order_id, c.line_no) {
            None
            | Some(Reservation {
                status: ReservationStatus::Rejected,
                ..
            }) => Err(not_found(&c.order_id, c.line_no)),
            Some(Reservation {
                status: ReservationStatus::Committed,
                ..
            }) => Ok(vec![]),
            Some(Reservation {
                status: ReservationStatus::Released,
                ..
            }) => Err(StockRejection::ReservationReleased {
                order_id: c.order_id.clone(),
                line_no: c.line_no,
            }),
            Some(Reservation {
                status: ReservationStatus::Reserved,
                quantity,
            }) => Ok(vec![
                StockCommitted {
                    order_id: c.order_id.clone(),
                    line_no: c.line_no,
                    quantity: *quantity,
                }
                .into(),
            ]),
        },
    }
}
