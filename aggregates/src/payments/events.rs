//! Events of the `Payment` aggregate, one struct per Avro record.

use std::fmt;

use crate::values::{Money, OrderId};

/// Why the gateway policy declined, so the customer can be told what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeclineReason {
    /// The amount is above the policy's limit.
    AmountOverLimit,
    /// The card is on the policy's decline list.
    CardDeclined,
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeclineReason::AmountOverLimit => "amount over limit",
            DeclineReason::CardDeclined => "card declined",
        })
    }
}

/// The amount is reserved on the card; the saga confirms the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAuthorized {
    /// Order paid.
    pub order_id: OrderId,
    /// Amount authorized.
    pub amount: Money,
    /// Gateway reference, derived from the order id so replays agree.
    pub authorization_code: String,
}

/// The gateway policy refused; the saga cancels the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDeclined {
    /// Order that was to be paid.
    pub order_id: OrderId,
    /// Amount refused.
    pub amount: Money,
    /// Why.
    pub reason: DeclineReason,
}

/// The authorized amount went back to the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRefunded {
    /// Order that was paid.
    pub order_id: OrderId,
    /// Amount refunded (the whole authorization).
    pub amount: Money,
    /// Why, as given by the caller.
    pub reason: String,
}

/// Every event of the `Payment` aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEvent {
    /// See [`PaymentAuthorized`].
    PaymentAuthorized(PaymentAuthorized),
    /// See [`PaymentDeclined`].
    PaymentDeclined(PaymentDeclined),
    /// See [`PaymentRefunded`].
    PaymentRefunded(PaymentRefunded),
}

impl PaymentEvent {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            PaymentEvent::PaymentAuthorized(_) => "PaymentAuthorized",
            PaymentEvent::PaymentDeclined(_) => "PaymentDeclined",
            PaymentEvent::PaymentRefunded(_) => "PaymentRefunded",
        }
    }
}

crate::into_enum!(PaymentEvent: PaymentAuthorized, PaymentDeclined, PaymentRefunded);
