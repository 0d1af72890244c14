//! Why the `Stock` aggregate refuses a command.

use crate::aggregate::Rejection;
use crate::values::{LineNo, OrderId};

/// A refused stock command; codes are stable, messages are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockRejection {
    /// Zero units is never meant; too many would overflow the counters.
    #[error("invalid quantity {quantity}: {reason}")]
    InvalidQuantity {
        /// The refused quantity.
        quantity: u32,
        /// Why.
        reason: &'static str,
    },
    /// Only a line that reserved can be released or committed.
    #[error("no reservation for order {order_id} line {line_no}")]
    ReservationNotFound {
        /// Order named by the command.
        order_id: OrderId,
        /// Line named by the command.
        line_no: LineNo,
    },
    /// Sold units cannot come back through a release.
    #[error("the reservation of order {order_id} line {line_no} was already committed")]
    ReservationCommitted {
        /// Order named by the command.
        order_id: OrderId,
        /// Line named by the command.
        line_no: LineNo,
    },
    /// Released units may already be held by someone else.
    #[error("the reservation of order {order_id} line {line_no} was already released")]
    ReservationReleased {
        /// Order named by the command.
        order_id: OrderId,
        /// Line named by the command.
        line_no: LineNo,
    },
}

impl Rejection for StockRejection {
    fn code(&self) -> &'static str {
        match self {
            StockRejection::InvalidQuantity { .. } => "stock.invalid_quantity",
            StockRejection::ReservationNotFound { .. } => "stock.reservation_not_found",
            StockRejection::ReservationCommitted { .. } => "stock.reservation_committed",
            StockRejection::ReservationReleased { .. } => "stock.reservation_released",
        }
    }
}
