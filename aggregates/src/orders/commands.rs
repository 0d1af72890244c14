//! Commands of the `Order` aggregate, one struct per Avro record.

use super::events::CancelReason;
use crate::values::{CustomerId, LineNo, OrderId, PaymentId, Sku, TimestampMillis};

/// One line as the customer asks for it; the price is looked up, never trusted from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineRequest {
    /// Product wanted.
    pub sku: Sku,
    /// Units wanted; must be positive.
    pub quantity: u32,
}

/// Places an order; lines are priced from the orders context's local catalog copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    /// New order's key.
    pub order_id: OrderId,
    /// Who orders.
    pub customer_id: CustomerId,
    /// 1..=50 lines; their positions become the line numbers.
    pub lines: Vec<OrderLineRequest>,
    /// Opaque card reference handed to the payment gateway.
    pub card_token: String,
    /// When the order expires if not confirmed; must be after `placed_at`.
    pub deadline_at: TimestampMillis,
    /// When the customer placed it; passed in because aggregates read no clock.
    pub placed_at: TimestampMillis,
}

/// Stock reserved a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLineReserved {
    /// The reserved line.
    pub line_no: LineNo,
}

/// Stock could not reserve a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLineRejected {
    /// The refused line.
    pub line_no: LineNo,
    /// Units that were available, for the customer's message.
    pub available: u64,
}

/// The payment was authorized; confirms an order awaiting payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmOrder {
    /// The authorized payment (equal to the order id).
    pub payment_id: PaymentId,
}

/// Cancels an open order and releases what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelOrder {
    /// Why.
    pub reason: CancelReason,
}

/// Sent by the deadline timer; expires the order if it is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpireOrder {
    /// The timer's notion of now; aggregates read no clock.
    pub now: TimestampMillis,
}

/// Every command the `Order` aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// See [`PlaceOrder`].
    PlaceOrder(PlaceOrder),
    /// See [`RecordLineReserved`].
    RecordLineReserved(RecordLineReserved),
    /// See [`RecordLineRejected`].
    RecordLineRejected(RecordLineRejected),
    /// See [`ConfirmOrder`].
    ConfirmOrder(ConfirmOrder),
    /// See [`CancelOrder`].
    CancelOrder(CancelOrder),
    /// See [`ExpireOrder`].
    ExpireOrder(ExpireOrder),
}

impl OrderCommand {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            OrderCommand::PlaceOrder(_) => "PlaceOrder",
            OrderCommand::RecordLineReserved(_) => "RecordLineReserved",
            OrderCommand::RecordLineRejected(_) => "RecordLineRejected",
            OrderCommand::ConfirmOrder(_) => "ConfirmOrder",
            OrderCommand::CancelOrder(_) => "CancelOrder",
            OrderCommand::ExpireOrder(_) => "ExpireOrder",
        }
    }
}

crate::into_enum!(OrderCommand: PlaceOrder, RecordLineReserved, RecordLineRejected, ConfirmOrder, CancelOrder, ExpireOrder);
