//! State of the `Payment` aggregate, folded from its events.

use super::events::{DeclineReason, PaymentEvent};
use crate::aggregate::AggregateState;
use crate::values::{Money, OrderId};

/// Where a payment stands; every status is reached at most once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Money is reserved on the card.
    Authorized {
        /// Gateway reference.
        authorization_code: String,
    },
    /// The policy refused; terminal.
    Declined {
        /// Why.
        reason: DeclineReason,
    },
    /// The authorization was given back; terminal.
    Refunded {
        /// Gateway reference of the refunded authorization.
        authorization_code: String,
        /// Why.
        reason: String,
    },
}

/// A payment as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// Order paid.
    pub order_id: OrderId,
    /// Amount authorized or declined.
    pub amount: Money,
    /// Where it stands.
    pub status: PaymentStatus,
}

/// `None` until authorized or declined.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaymentState {
    /// The payment, once processed.
    pub payment: Option<PaymentRecord>,
}

impl AggregateState for PaymentState {
    fn is_new(&self) -> bool {
        self.payment.is_none()
    }
}

impl PaymentState {
    /// Applies one event; a refund of a payment never processed is ignored.
    pub fn evolve(mut self, event: &PaymentEvent) -> Self {
        match event {
            PaymentEvent::PaymentAuthorized(e) => {
                self.payment = Some(PaymentRecord {
                    order_id: e.order_id.clone(),
                    amount: e.amount.clone(),
                    status: PaymentStatus::Authorized {
                        authorization_code: e.authorization_code.clone(),
                    },
                });
            }
            PaymentEvent::PaymentDeclined(e) => {
                self.payment = Some(PaymentRecord {
                    order_id: e.order_id.clone(),
                    amount: e.amount.clone(),
                    status: PaymentStatus::Declined { reason: e.reason },
                });
            }
            PaymentEvent::PaymentRefunded(e) => {
                if let Some(payment) = self.payment.as_mut() {
                    let authorization_code = match &payment.status {
                        PaymentStatus::Authorized { authorization_code }
                        | PaymentStatus::Refunded {
                            authorization_code, ..
                        } => authorization_code.clone(),
                        PaymentStatus::Declined { .. } => String::new(),
                    };
                    payment.status = PaymentStatus::Refunded {
                        authorization_code,
                        reason: e.reason.clone(),
                    };
                }
            }
        }
        self
    }
}
