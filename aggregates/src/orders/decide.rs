//! Rules of the `Order` aggregate and the price book it consults.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::commands::{OrderCommand, PlaceOrder};
use super::errors::OrderRejection;
use super::events::{
    CancelReason, OrderAwaitingPayment, OrderCancelled, OrderConfirmed, OrderEvent, OrderExpired,
    OrderLine, OrderLineRejected, OrderLineReleaseRequired, OrderLineReserved,
    OrderPaymentRefundRequired, OrderPlaced,
};
use super::state::{LineStatus, OrderState, OrderStatus, PlacedOrder};
use crate::values::{LineNo, Money, Sku};

/// Most lines one order may have, so one order cannot fan out into unbounded stock commands.
pub const MAX_LINES: usize = 50;

/// What the orders context knows about a product from catalog events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Current price.
    pub price: Money,
    /// Discontinued products cannot be ordered.
    pub discontinued: bool,
}

/// The orders context's local copy of catalog prices; a local lookup, never a remote call.
pub trait PriceBook {
    /// The entry of one sku, if the catalog ever announced it.
    fn lookup(&self, sku: &Sku) -> Option<CatalogEntry>;
}

impl PriceBook for BTreeMap<Sku, CatalogEntry> {
    fn lookup(&self, sku: &Sku) -> Option<CatalogEntry> {
        self.get(sku).cloned()
    }
}

impl<S: BuildHasher> PriceBook for HashMap<Sku, CatalogEntry, S> {
    fn lookup(&self, sku: &Sku) -> Option<CatalogEntry> {
        self.get(sku).cloned()
    }
}

fn find(order: &PlacedOrder, line_no: LineNo) -> Result<LineStatus, OrderRejection> {
    order
        .line(line_no)
        .map(|l| l.status)
        .ok_or(OrderRejection::UnknownLine { line_no })
}

/// Prices every line; input errors first (quantities), then what the catalog says.
fn place(c: &PlaceOrder, prices: &dyn PriceBook) -> Result<OrderPlaced, OrderRejection> {
    if c.lines.is_empty() {
        return Err(OrderRejection::NoLines);
    }
    if c.lines.len() > MAX_LINES {
        return Err(OrderRejection::TooManyLines {
            count: c.lines.len(),
            max: MAX_LINES,
        });
    }
    let numbered = c
        .lines
        .iter()
        .enumerate()
        .map(|(index, request)| {
            LineNo::from_index(index)
                .map(|line_no| (line_no, request))
                .ok_or(OrderRejection::TooManyLines {
                    count: c.lines.len(),
                    max: MAX_LINES,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((line_no, request)) = numbered.iter().find(|(_, r)| r.quantity == 0) {
        return Err(OrderRejection::InvalidQuantity {
            line_no: *line_no,
            quantity: request.quantity,
            reason: "must be greater than zero",
        });
    }
    if c.deadline_at <= c.placed_at {
        return Err(OrderRejection::InvalidDeadline {
            deadline_at: c.deadline_at,
            placed_at: c.placed_at,
        });
    }
    let mut lines = Vec::with_capacity(numbered.len());
    let mut total: Option<Money> = None;
    for (line_no, request) in numbered {
        let entry = prices
            .lookup(&request.sku)
            .ok_or_else(|| OrderRejection::UnknownSku {
                line_no,
                sku: request.sku.clone(),
            })?;
        if entry.discontinued {
            return Err(OrderRejection::ProductDiscontinued {
                line_no,
                sku: request.sku.clone(),
            });
        }
        if let Some(sum) = &total
            && sum.currency != entry.price.currency
        {
            return Err(OrderRejection::MixedCurrencies {
                line_no,
                expected: sum.currency.clone(),
                found: entry.price.currency.clone(),
            });
        }
        let too_large = OrderRejection::InvalidQuantity {
            line_no,
            quantity: request.quantity,
            reason: "the order total would overflow",
        };
        let line_total = entry
            .price
            .checked_mul(request.quantity)
            .ok_or_else(|| too_large.clone())?;
        total = Some(match total {
            None => line_total,
            Some(sum) => sum.checked_add(&line_total).ok_or(too_large)?,
        });
        lines.push(OrderLine {
            line_no,
            sku: request.sku.clone(),
            quantity: request.quantity,
            unit_price: entry.price,
        });
    }
    let total = total.ok_or(OrderRejection::NoLines)?;
    Ok(OrderPlaced {
        order_id: c.order_id.clone(),
        customer_id: c.customer_id.clone(),
        lines,
        total,
        card_token: c.card_token.clone(),
        deadline_at: c.deadline_at,
        placed_at: c.placed_at,
    })
}

pub(super) fn decide(
    state: &OrderState,
    command: &OrderCommand,
    prices: &dyn PriceBook,
) -> Result<Vec<OrderEvent>, OrderRejection> {
    let order = match (&state.order, command) {
        (Some(_), OrderCommand::PlaceOrder(_)) => return Err(OrderRejection::AlreadyExists),
        (None, OrderCommand::PlaceOrder(c)) => return Ok(vec![place(c, prices)?.into()]),
        (None, _) => return Err(OrderRejection::NotFound),
        (Some(order), _) => order,
    };
    match command {
        OrderCommand::PlaceOrder(_) => Err(OrderRejection::AlreadyExists),
        OrderCommand::RecordLineReserved(c) => {
            let line_status = find(order, c.line_no)?;
            match (order.status, line_status) {
                // Stock answered after the order closed: its units must go back exactly once.
                (status, LineStatus::Pending | LineStatus::Rejected) if status.is_closed() => {
                    let late = order
                        .line(c.line_no)
                        .map(|l| l.line.to_ref())
                        .ok_or(OrderRejection::UnknownLine { line_no: c.line_no })?;
                    Ok(vec![
                        OrderLineReleaseRequired {
                            line_no: late.line_no,
                            sku: late.sku,
                            quantity: late.quantity,
                        }
                        .into(),
                    ])
                }
                (OrderStatus::Reserving, LineStatus::Pending) => {
                    let mut events: Vec<OrderEvent> =
                        vec![OrderLineReserved { line_no: c.line_no }.into()];
                    let rest_reserved = order
                        .lines
                        .iter()
                        .all(|l| l.line.line_no == c.line_no || l.status == LineStatus::Reserved);
                    if rest_reserved {
                        events.push(
                            OrderAwaitingPayment {
                                total: order.total.clone(),
                                card_token: order.card_token.clone(),
                                customer_id: order.customer_id.clone(),
                            }
                            .into(),
                        );
                    }
                    Ok(events)
                }
                _ => Ok(vec![]),
            }
        }
        OrderCommand::RecordLineRejected(c) => {
            let line_status = find(order, c.line_no)?;
            if order.status == OrderStatus::Reserving && line_status == LineStatus::Pending {
                Ok(vec![
                    OrderLineRejected {
                        line_no: c.line_no,
                        available: c.available,
                    }
                    .into(),
                    OrderCancelled {
                        reason: CancelReason::StockUnavailable,
                        release: order.reserved_lines(),
                    }
                    .into(),
                ])
            } else {
                Ok(vec![])
            }
        }
        OrderCommand::ConfirmOrder(c) => match order.status {
            OrderStatus::Reserving => Err(OrderRejection::NotAwaitingPayment),
            OrderStatus::AwaitingPayment => Ok(vec![
                OrderConfirmed {
                    payment_id: c.payment_id.clone(),
                    lines: order.lines.iter().map(|l| l.line.to_ref()).collect(),
                }
                .into(),
            ]),
            OrderStatus::Confirmed => Ok(vec![]),
            OrderStatus::Cancelled { .. } | OrderStatus::Expired => {
                if order.refund_requested {
                    Ok(vec![])
                } else {
                    Ok(vec![
                        OrderPaymentRefundRequired {
                            payment_id: c.payment_id.clone(),
                            amount: order.total.clone(),
                        }
                        .into(),
                    ])
                }
            }
        },
        OrderCommand::CancelOrder(c) => match order.status {
            OrderStatus::Confirmed => Err(OrderRejection::AlreadyConfirmed),
            OrderStatus::Cancelled { .. } | OrderStatus::Expired => Ok(vec![]),
            OrderStatus::Reserving | OrderStatus::AwaitingPayment => Ok(vec![
                OrderCancelled {
                    reason: c.reason,
                    release: order.reserved_lines(),
                }
                .into(),
            ]),
        },
        OrderCommand::ExpireOrder(c) => {
            if !order.status.is_open() {
                return Ok(vec![]);
            }
            if c.now < order.deadline_at {
                return Err(OrderRejection::DeadlineNotReached {
                    deadline_at: order.deadline_at,
                    now: c.now,
                });
            }
            Ok(vec![
                OrderExpired {
                    release: order.reserved_lines(),
                }
                .into(),
            ])
        }
    }
}
