//! State of the `Order` aggregate, folded from its events.

use super::events::{CancelReason, LineRef, OrderEvent, OrderLine};
use crate::aggregate::AggregateState;
use crate::values::{CustomerId, LineNo, Money, OrderId, PaymentId, TimestampMillis};

/// Where an order stands in its saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Placed; waiting for stock to answer for every line.
    Reserving,
    /// Every line reserved; waiting for the payment.
    AwaitingPayment,
    /// Paid; terminal and never cancelled.
    Confirmed,
    /// Cancelled before confirmation; terminal.
    Cancelled {
        /// Why.
        reason: CancelReason,
    },
    /// Deadline passed before confirmation; terminal.
    Expired,
}

impl OrderStatus {
    /// Cancelled or expired: nothing more happens except compensations for late answers.
    pub fn is_closed(self) -> bool {
        matches!(self, OrderStatus::Cancelled { .. } | OrderStatus::Expired)
    }

    /// Reserving or awaiting payment: may still be confirmed, cancelled or expired.
    pub fn is_open(self) -> bool {
        matches!(self, OrderStatus::Reserving | OrderStatus::AwaitingPayment)
    }
}

/// What the order knows about one line's stock, so each reservation is settled exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineStatus {
    /// Stock has not answered yet.
    Pending,
    /// Stock holds the units.
    Reserved,
    /// Stock refused.
    Rejected,
    /// A release was requested (cancel, expiry or late reservation); terminal.
    Released,
    /// A commit was requested on confirmation; terminal.
    Committed,
}

/// A priced line and where its reservation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineState {
    /// The line as placed.
    pub line: OrderLine,
    /// Its reservation.
    pub status: LineStatus,
}

/// An order as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// Order key.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Lines in position order.
    pub lines: Vec<LineState>,
    /// Sum of the lines.
    pub total: Money,
    /// Card reference for the payment.
    pub card_token: String,
    /// When the deadline timer fires.
    pub deadline_at: TimestampMillis,
    /// When it was placed.
    pub placed_at: TimestampMillis,
    /// Saga position.
    pub status: OrderStatus,
    /// The payment that confirmed it, or that arrived too late.
    pub payment_id: Option<PaymentId>,
    /// A late payment's refund was already requested, so it is requested only once.
    pub refund_requested: bool,
}

impl PlacedOrder {
    /// One line by number.
    pub fn line(&self, line_no: LineNo) -> Option<&LineState> {
        self.lines.iter().find(|l| l.line.line_no == line_no)
    }

    /// Lines whose stock is currently held, i.e. what a cancellation must release.
    pub fn reserved_lines(&self) -> Vec<LineRef> {
        self.lines
            .iter()
            .filter(|l| l.status == LineStatus::Reserved)
            .map(|l| l.line.to_ref())
            .collect()
    }

    /// True once stock holds every line.
    pub fn all_reserved(&self) -> bool {
        self.lines.iter().all(|l| l.status == LineStatus::Reserved)
    }

    fn mark(&mut self, line_no: LineNo, status: LineStatus) {
        if let Some(line) = self.lines.iter_mut().find(|l| l.line.line_no == line_no) {
            line.status = status;
        }
    }

    fn mark_all(&mut self, refs: &[LineRef], status: LineStatus) {
        for r in refs {
            self.mark(r.line_no, status);
        }
    }
}

/// `None` until `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderState {
    /// The order, once placed.
    pub order: Option<PlacedOrder>,
}

impl AggregateState for OrderState {
    fn is_new(&self) -> bool {
        self.order.is_none()
    }
}

impl OrderState {
    /// Applies one event; events for an order that was never placed are ignored.
    pub fn evolve(mut self, event: &OrderEvent) -> Self {
        if let OrderEvent::OrderPlaced(e) = event {
            self.order = Some(PlacedOrder {
                order_id: e.order_id.clone(),
                customer_id: e.customer_id.clone(),
                lines: e
                    .lines
                    .iter()
                    .map(|line| LineState {
                        line: line.clone(),
                        status: LineStatus::Pending,
                    })
                    .collect(),
                total: e.total.clone(),
                card_token: e.card_token.clone(),
                deadline_at: e.deadline_at,
                placed_at: e.placed_at,
                status: OrderStatus::Reserving,
                payment_id: None,
                refund_requested: false,
            });
            return self;
        }
        let Some(order) = self.order.as_mut() else {
            return self;
        };
        match event {
            OrderEvent::OrderPlaced(_) => {}
            OrderEvent::OrderLineReserved(e) => order.mark(e.line_no, LineStatus::Reserved),
            OrderEvent::OrderAwaitingPayment(_) => order.status = OrderStatus::AwaitingPayment,
            OrderEvent::OrderLineReleaseRequired(e) => order.mark(e.line_no, LineStatus::Released),
            OrderEvent::OrderLineRejected(e) => order.mark(e.line_no, LineStatus::Rejected),
            OrderEvent::OrderCancelled(e) => {
                order.status = OrderStatus::Cancelled { reason: e.reason };
                order.mark_all(&e.release, LineStatus::Released);
            }
            OrderEvent::OrderConfirmed(e) => {
                order.status = OrderStatus::Confirmed;
                order.payment_id = Some(e.payment_id.clone());
                order.mark_all(&e.lines, LineStatus::Committed);
            }
            OrderEvent::OrderPaymentRefundRequired(e) => {
                order.payment_id = Some(e.payment_id.clone());
                order.refund_requested = true;
            }
            OrderEvent::OrderExpired(e) => {
                order.status = OrderStatus::Expired;
                order.mark_all(&e.release, LineStatus::Released);
            }
        }
        self
    }
}
