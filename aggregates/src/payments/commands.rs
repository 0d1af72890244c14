//! Commands of the `Payment` aggregate, one struct per Avro record.

use crate::values::{CustomerId, Money, OrderId};

/// Asks the gateway policy to authorize an order's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizePayment {
    /// Order paid (also the payment key).
    pub order_id: OrderId,
    /// Who pays.
    pub customer_id: CustomerId,
    /// Amount to authorize; positive, ISO-4217 currency.
    pub amount: Money,
    /// Card reference.
    pub card_token: String,
}

/// Gives an authorized amount back (a saga compensation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPayment {
    /// Free-form reason kept with the refund, e.g. "order expired before payment".
    pub reason: String,
}

/// Every command the `Payment` aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// See [`AuthorizePayment`].
    AuthorizePayment(AuthorizePayment),
    /// See [`RefundPayment`].
    RefundPayment(RefundPayment),
}

impl PaymentCommand {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            PaymentCommand::AuthorizePayment(_) => "AuthorizePayment",
            PaymentCommand::RefundPayment(_) => "RefundPayment",
        }
    }
}

crate::into_enum!(PaymentCommand: AuthorizePayment, RefundPayment);
