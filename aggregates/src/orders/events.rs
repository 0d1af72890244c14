//! Events of the `Order` aggregate, one struct per Avro record, and the small types they carry.

use std::fmt;

use crate::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku, TimestampMillis};

/// Why an order was cancelled; the customer-facing message depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// A line could not be reserved.
    StockUnavailable,
    /// The payment was declined.
    PaymentDeclined,
    /// The customer asked.
    CustomerRequested,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelReason::StockUnavailable => "stock unavailable",
            CancelReason::PaymentDeclined => "payment declined",
            CancelReason::CustomerRequested => "customer requested",
        })
    }
}

/// A priced line, fixed when the order is placed so later price changes do not alter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// 1-based position.
    pub line_no: LineNo,
    /// Product ordered.
    pub sku: Sku,
    /// Units ordered.
    pub quantity: u32,
    /// Price of one unit at placement.
    pub unit_price: Money,
}

impl OrderLine {
    /// The line as a reference for stock commands.
    pub fn to_ref(&self) -> LineRef {
        LineRef {
            line_no: self.line_no,
            sku: self.sku.clone(),
            quantity: self.quantity,
        }
    }
}

/// Names a line whose stock must be released or committed; carries the sku so the saga can route
/// the command to the right stock without reading the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRef {
    /// 1-based position.
    pub line_no: LineNo,
    /// Stock holding the reservation.
    pub sku: Sku,
    /// Units held.
    pub quantity: u32,
}

/// An order was accepted and priced; the saga now reserves each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPlaced {
    /// Order key.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Priced lines, numbered 1..=n.
    pub lines: Vec<OrderLine>,
    /// Sum of the lines.
    pub total: Money,
    /// Card reference for the payment.
    pub card_token: String,
    /// When the deadline timer fires.
    pub deadline_at: TimestampMillis,
    /// When it was placed.
    pub placed_at: TimestampMillis,
}

/// Stock holds a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLineReserved {
    /// The reserved line.
    pub line_no: LineNo,
}

/// Every line is reserved: the saga asks for the payment, with everything it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderAwaitingPayment {
    /// Amount to authorize.
    pub total: Money,
    /// Card to charge.
    pub card_token: String,
    /// Who pays.
    pub customer_id: CustomerId,
}

/// Stock reserved a line after the order closed; that reservation must be given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLineReleaseRequired {
    /// The late line.
    pub line_no: LineNo,
    /// Stock holding it.
    pub sku: Sku,
    /// Units held.
    pub quantity: u32,
}

/// Stock could not reserve a line; always followed by `OrderCancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLineRejected {
    /// The refused line.
    pub line_no: LineNo,
    /// Units that were available.
    pub available: u64,
}

/// The order was cancelled; `release` lists the reserved lines to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderCancelled {
    /// Why.
    pub reason: CancelReason,
    /// Reserved lines whose stock must be released.
    pub release: Vec<LineRef>,
}

/// The payment was authorized in time; `lines` lists the reservations to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderConfirmed {
    /// The authorized payment.
    pub payment_id: PaymentId,
    /// Every line, all reserved, whose stock must be committed.
    pub lines: Vec<LineRef>,
}

/// A payment was authorized after the order closed; the money must go back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPaymentRefundRequired {
    /// The late payment.
    pub payment_id: PaymentId,
    /// Amount to refund (the order total).
    pub amount: Money,
}

/// The deadline passed before confirmation; `release` lists the reserved lines to give back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderExpired {
    /// Reserved lines whose stock must be released.
    pub release: Vec<LineRef>,
}

/// Every event of the `Order` aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// See [`OrderPlaced`].
    OrderPlaced(OrderPlaced),
    /// See [`OrderLineReserved`].
    OrderLineReserved(OrderLineReserved),
    /// See [`OrderAwaitingPayment`].
    OrderAwaitingPayment(OrderAwaitingPayment),
    /// See [`OrderLineReleaseRequired`].
    OrderLineReleaseRequired(OrderLineReleaseRequired),
    /// See [`OrderLineRejected`].
    OrderLineRejected(OrderLineRejected),
    /// See [`OrderCancelled`].
    OrderCancelled(OrderCancelled),
    /// See [`OrderConfirmed`].
    OrderConfirmed(OrderConfirmed),
    /// See [`OrderPaymentRefundRequired`].
    OrderPaymentRefundRequired(OrderPaymentRefundRequired),
    /// See [`OrderExpired`].
    OrderExpired(OrderExpired),
}

impl OrderEvent {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced(_) => "OrderPlaced",
            OrderEvent::OrderLineReserved(_) => "OrderLineReserved",
            OrderEvent::OrderAwaitingPayment(_) => "OrderAwaitingPayment",
            OrderEvent::OrderLineReleaseRequired(_) => "OrderLineReleaseRequired",
            OrderEvent::OrderLineRejected(_) => "OrderLineRejected",
            OrderEvent::OrderCancelled(_) => "OrderCancelled",
            OrderEvent::OrderConfirmed(_) => "OrderConfirmed",
            OrderEvent::OrderPaymentRefundRequired(_) => "OrderPaymentRefundRequired",
            OrderEvent::OrderExpired(_) => "OrderExpired",
        }
    }
}

crate::into_enum!(
    OrderEvent: OrderPlaced,
    OrderLineReserved,
    OrderAwaitingPayment,
    OrderLineReleaseRequired,
    OrderLineRejected,
    OrderCancelled,
    OrderConfirmed,
    OrderPaymentRefundRequired,
    OrderExpired,
);
