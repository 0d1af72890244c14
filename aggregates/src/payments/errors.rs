//! Why the `Payment` aggregate refuses a command.

use crate::aggregate::Rejection;
use crate::values::{MoneyError, OrderId};

/// A refused payment command; codes are stable, messages are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRejection {
    /// Only positive amounts in an ISO-4217 currency can be charged.
    #[error("invalid amount: {0}")]
    InvalidAmount(MoneyError),
    /// A payment is processed once; a different request for it cannot be honoured.
    #[error("payment of order {order_id} was already processed for a different request")]
    AlreadyProcessed {
        /// Order of the existing payment.
        order_id: OrderId,
    },
    /// A refund needs a payment.
    #[error("payment does not exist")]
    NotFound,
    /// Declined payments took no money, so there is nothing to refund.
    #[error("payment of order {order_id} was declined, not authorized")]
    NotAuthorized {
        /// Order of the declined payment.
        order_id: OrderId,
    },
}

impl Rejection for PaymentRejection {
    fn code(&self) -> &'static str {
        match self {
            PaymentRejection::InvalidAmount(_) => "payment.invalid_amount",
            PaymentRejection::AlreadyProcessed { .. } => "payment.already_processed",
            PaymentRejection::NotFound => "payment.not_found",
            PaymentRejection::NotAuthorized { .. } => "payment.not_authorized",
        }
    }
}
