//! `streamcart.orders`: the order's commands, events and snapshot state.

use apache_avro::types::Value;
use streamcart_aggregates::orders::{
    CancelOrder, CancelReason, ConfirmOrder, ExpireOrder, LineRef, LineState, LineStatus,
    OrderAwaitingPayment, OrderCancelled, OrderCommand, OrderConfirmed, OrderEvent, OrderExpired,
    OrderLine, OrderLineRejected, OrderLineReleaseRequired, OrderLineRequest, OrderLineReserved,
    OrderPaymentRefundRequired, OrderPlaced, OrderState, OrderStatus, PlaceOrder, PlacedOrder,
    RecordLineRejected, RecordLineReserved,
};

use super::value::{Fields, array, branch, long_u32, long_u64, optional, record, try_array};
use super::{money, order_id, payload_branch, payment_id, unknown_branch};
use crate::envelope::{AvroPayload, CommandPayload, EventPayload, SnapshotState};
use crate::error::MappingError;
use crate::topics::Context;

fn reason_value(reason: CancelReason) -> Value {
    let (index, symbol) = match reason {
        CancelReason::StockUnavailable => (0, "StockUnavailable"),
        CancelReason::PaymentDeclined => (1, "PaymentDeclined"),
        CancelReason::CustomerRequested => (2, "CustomerRequested"),
    };
    Value::Enum(index, symbol.to_owned())
}

fn reason_of(
    record: &'static str,
    field: &'static str,
    symbol: String,
) -> Result<CancelReason, MappingError> {
    match symbol.as_str() {
        "StockUnavailable" => Ok(CancelReason::StockUnavailable),
        "PaymentDeclined" => Ok(CancelReason::PaymentDeclined),
        "CustomerRequested" => Ok(CancelReason::CustomerRequested),
        _ => Err(MappingError::UnknownSymbol {
            record,
            field,
            symbol,
        }),
    }
}

fn line_ref(r: &LineRef) -> Value {
    record(vec![
        ("line_no", long_u32(r.line_no.get())),
        ("sku", Value::String(r.sku.as_str().to_owned())),
        ("quantity", long_u32(r.quantity)),
    ])
}

fn read_line_refs(f: &mut Fields, field: &'static str) -> Result<Vec<LineRef>, MappingError> {
    f.array(field)?
        .into_iter()
        .map(|item| {
            let mut r = Fields::new("LineRef", item)?;
            Ok(LineRef {
                line_no: r.line_no("line_no")?,
                sku: r.sku("sku")?,
                quantity: r.u32("quantity")?,
            })
        })
        .collect()
}

fn order_line(l: &OrderLine) -> Value {
    record(vec![
        ("line_no", long_u32(l.line_no.get())),
        ("sku", Value::String(l.sku.as_str().to_owned())),
        ("quantity", long_u32(l.quantity)),
        ("unit_price", money(&l.unit_price)),
    ])
}

fn read_order_line(value: Value) -> Result<OrderLine, MappingError> {
    let mut l = Fields::new("OrderLine", value)?;
    Ok(OrderLine {
        line_no: l.line_no("line_no")?,
        sku: l.sku("sku")?,
        quantity: l.u32("quantity")?,
        unit_price: l.money("unit_price")?,
    })
}

impl AvroPayload for OrderCommand {
    const CONTEXT: Context = Context::Orders;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            OrderCommand::PlaceOrder(c) => branch(
                0,
                record(vec![
                    ("order_id", order_id("PlaceOrder", &c.order_id)?),
                    (
                        "customer_id",
                        Value::String(c.customer_id.as_str().to_owned()),
                    ),
                    (
                        "lines",
                        array(&c.lines, |l| {
                            record(vec![
                                ("sku", Value::String(l.sku.as_str().to_owned())),
                                ("quantity", long_u32(l.quantity)),
                            ])
                        }),
                    ),
                    ("card_token", Value::String(c.card_token.clone())),
                    ("deadline_at", Value::TimestampMillis(c.deadline_at)),
                    ("placed_at", Value::TimestampMillis(c.placed_at)),
                ]),
            ),
            OrderCommand::RecordLineReserved(c) => {
                branch(1, record(vec![("line_no", long_u32(c.line_no.get()))]))
            }
            OrderCommand::RecordLineRejected(c) => branch(
                2,
                record(vec![
                    ("line_no", long_u32(c.line_no.get())),
                    (
                        "available",
                        long_u64("RecordLineRejected", "available", c.available)?,
                    ),
                ]),
            ),
            OrderCommand::ConfirmOrder(c) => branch(
                3,
                record(vec![(
                    "payment_id",
                    payment_id("ConfirmOrder", &c.payment_id)?,
                )]),
            ),
            OrderCommand::CancelOrder(c) => {
                branch(4, record(vec![("reason", reason_value(c.reason))]))
            }
            OrderCommand::ExpireOrder(c) => {
                branch(5, record(vec![("now", Value::TimestampMillis(c.now))]))
            }
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("OrderCommandEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("PlaceOrder", value)?;
                let order_id = f.order_id("order_id")?;
                let customer_id = f.customer_id("customer_id")?;
                let lines = f
                    .array("lines")?
                    .into_iter()
                    .map(|item| {
                        let mut l = Fields::new("OrderLineRequest", item)?;
                        Ok(OrderLineRequest {
                            sku: l.sku("sku")?,
                            quantity: l.u32("quantity")?,
                        })
                    })
                    .collect::<Result<_, MappingError>>()?;
                PlaceOrder {
                    order_id,
                    customer_id,
                    lines,
                    card_token: f.string("card_token")?,
                    deadline_at: f.timestamp("deadline_at")?,
                    placed_at: f.timestamp("placed_at")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("RecordLineReserved", value)?;
                RecordLineReserved {
                    line_no: f.line_no("line_no")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("RecordLineRejected", value)?;
                RecordLineRejected {
                    line_no: f.line_no("line_no")?,
                    available: f.u64("available")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("ConfirmOrder", value)?;
                ConfirmOrder {
                    payment_id: f.payment_id("payment_id")?,
                }
                .into()
            }
            4 => {
                let mut f = Fields::new("CancelOrder", value)?;
                CancelOrder {
                    reason: reason_of("CancelOrder", "reason", f.symbol("reason")?)?,
                }
                .into()
            }
            5 => {
                let mut f = Fields::new("ExpireOrder", value)?;
                ExpireOrder {
                    now: f.timestamp("now")?,
                }
                .into()
            }
            other => return Err(unknown_branch("OrderCommandEnvelope", other)),
        })
    }
}
impl CommandPayload for OrderCommand {}

impl AvroPayload for OrderEvent {
    const CONTEXT: Context = Context::Orders;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            OrderEvent::OrderPlaced(e) => branch(
                0,
                record(vec![
                    ("order_id", order_id("OrderPlaced", &e.order_id)?),
                    (
                        "customer_id",
                        Value::String(e.customer_id.as_str().to_owned()),
                    ),
                    ("lines", array(&e.lines, order_line)),
                    ("total", money(&e.total)),
                    ("card_token", Value::String(e.card_token.clone())),
                    ("deadline_at", Value::TimestampMillis(e.deadline_at)),
                    ("placed_at", Value::TimestampMillis(e.placed_at)),
                ]),
            ),
            OrderEvent::OrderLineReserved(e) => {
                branch(1, record(vec![("line_no", long_u32(e.line_no.get()))]))
            }
            OrderEvent::OrderAwaitingPayment(e) => branch(
                2,
                record(vec![
                    ("total", money(&e.total)),
                    ("card_token", Value::String(e.card_token.clone())),
                    (
                        "customer_id",
                        Value::String(e.customer_id.as_str().to_owned()),
                    ),
                ]),
            ),
            OrderEvent::OrderLineReleaseRequired(e) => branch(
                3,
                record(vec![
                    ("line_no", long_u32(e.line_no.get())),
                    ("sku", Value::String(e.sku.as_str().to_owned())),
                    ("quantity", long_u32(e.quantity)),
                ]),
            ),
            OrderEvent::OrderLineRejected(e) => branch(
                4,
                record(vec![
                    ("line_no", long_u32(e.line_no.get())),
                    (
                        "available",
                        long_u64("OrderLineRejected", "available", e.available)?,
                    ),
                ]),
            ),
            OrderEvent::OrderCancelled(e) => branch(
                5,
                record(vec![
                    ("reason", reason_value(e.reason)),
                    ("release", array(&e.release, line_ref)),
                ]),
            ),
            OrderEvent::OrderConfirmed(e) => branch(
                6,
                record(vec![
                    ("payment_id", payment_id("OrderConfirmed", &e.payment_id)?),
                    ("lines", array(&e.lines, line_ref)),
                ]),
            ),
            OrderEvent::OrderPaymentRefundRequired(e) => branch(
                7,
                record(vec![
                    (
                        "payment_id",
                        payment_id("OrderPaymentRefundRequired", &e.payment_id)?,
                    ),
                    ("amount", money(&e.amount)),
                ]),
            ),
            OrderEvent::OrderExpired(e) => {
                branch(8, record(vec![("release", array(&e.release, line_ref))]))
            }
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("OrderEventEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("OrderPlaced", value)?;
                OrderPlaced {
                    order_id: f.order_id("order_id")?,
                    customer_id: f.customer_id("customer_id")?,
                    lines: f
                        .array("lines")?
                        .into_iter()
                        .map(read_order_line)
                        .collect::<Result<_, _>>()?,
                    total: f.money("total")?,
                    card_token: f.string("card_token")?,
                    deadline_at: f.timestamp("deadline_at")?,
                    placed_at: f.timestamp("placed_at")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("OrderLineReserved", value)?;
                OrderLineReserved {
                    line_no: f.line_no("line_no")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("OrderAwaitingPayment", value)?;
                OrderAwaitingPayment {
                    total: f.money("total")?,
                    card_token: f.string("card_token")?,
                    customer_id: f.customer_id("customer_id")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("OrderLineReleaseRequired", value)?;
                OrderLineReleaseRequired {
                    line_no: f.line_no("line_no")?,
                    sku: f.sku("sku")?,
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            4 => {
                let mut f = Fields::new("OrderLineRejected", value)?;
                OrderLineRejected {
                    line_no: f.line_no("line_no")?,
                    available: f.u64("available")?,
                }
                .into()
            }
            5 => {
                let mut f = Fields::new("OrderCancelled", value)?;
                OrderCancelled {
                    reason: reason_of("OrderCancelled", "reason", f.symbol("reason")?)?,
                    release: read_line_refs(&mut f, "release")?,
                }
                .into()
            }
            6 => {
                let mut f = Fields::new("OrderConfirmed", value)?;
                OrderConfirmed {
                    payment_id: f.payment_id("payment_id")?,
                    lines: read_line_refs(&mut f, "lines")?,
                }
                .into()
            }
            7 => {
                let mut f = Fields::new("OrderPaymentRefundRequired", value)?;
                OrderPaymentRefundRequired {
                    payment_id: f.payment_id("payment_id")?,
                    amount: f.money("amount")?,
                }
                .into()
            }
            8 => {
                let mut f = Fields::new("OrderExpired", value)?;
                OrderExpired {
                    release: read_line_refs(&mut f, "release")?,
                }
                .into()
            }
            other => return Err(unknown_branch("OrderEventEnvelope", other)),
        })
    }
}
impl EventPayload for OrderEvent {}

fn line_status_value(status: LineStatus) -> Value {
    let (index, symbol) = match status {
        LineStatus::Pending => (0, "Pending"),
        LineStatus::Reserved => (1, "Reserved"),
        LineStatus::Rejected => (2, "Rejected"),
        LineStatus::Released => (3, "Released"),
        LineStatus::Committed => (4, "Committed"),
    };
    Value::Enum(index, symbol.to_owned())
}

fn line_status_of(symbol: String) -> Result<LineStatus, MappingError> {
    Ok(match symbol.as_str() {
        "Pending" => LineStatus::Pending,
        "Reserved" => LineStatus::Reserved,
        "Rejected" => LineStatus::Rejected,
        "Released" => LineStatus::Released,
        "Committed" => LineStatus::Committed,
        _ => {
            return Err(MappingError::UnknownSymbol {
                record: "LineState",
                field: "status",
                symbol,
            });
        }
    })
}

/// The Avro status enum plus the cancel reason it flattens out of `Cancelled { reason }`.
fn order_status_value(status: OrderStatus) -> (Value, Option<Value>) {
    let (index, symbol, reason) = match status {
        OrderStatus::Reserving => (0, "Reserving", None),
        OrderStatus::AwaitingPayment => (1, "AwaitingPayment", None),
        OrderStatus::Confirmed => (2, "Confirmed", None),
        OrderStatus::Cancelled { reason } => (3, "Cancelled", Some(reason_value(reason))),
        OrderStatus::Expired => (4, "Expired", None),
    };
    (Value::Enum(index, symbol.to_owned()), reason)
}

fn order_status_of(symbol: String, reason: Option<String>) -> Result<OrderStatus, MappingError> {
    Ok(match symbol.as_str() {
        "Reserving" => OrderStatus::Reserving,
        "AwaitingPayment" => OrderStatus::AwaitingPayment,
        "Confirmed" => OrderStatus::Confirmed,
        "Expired" => OrderStatus::Expired,
        "Cancelled" => {
            let reason = reason.ok_or(MappingError::MissingField {
                record: "PlacedOrder",
                field: "cancel_reason",
            })?;
            OrderStatus::Cancelled {
                reason: reason_of("PlacedOrder", "cancel_reason", reason)?,
            }
        }
        _ => {
            return Err(MappingError::UnknownSymbol {
                record: "PlacedOrder",
                field: "status",
                symbol,
            });
        }
    })
}

impl AvroPayload for OrderState {
    const CONTEXT: Context = Context::Orders;

    fn to_avro(&self) -> Result<Value, MappingError> {
        let order = match &self.order {
            None => None,
            Some(o) => {
                let (status, reason) = order_status_value(o.status);
                let payment = o
                    .payment_id
                    .as_ref()
                    .map(|p| payment_id("PlacedOrder", p))
                    .transpose()?;
                Some(record(vec![
                    ("order_id", order_id("PlacedOrder", &o.order_id)?),
                    (
                        "customer_id",
                        Value::String(o.customer_id.as_str().to_owned()),
                    ),
                    (
                        "lines",
                        try_array(&o.lines, |l| {
                            Ok(record(vec![
                                ("line", order_line(&l.line)),
                                ("status", line_status_value(l.status)),
                            ]))
                        })?,
                    ),
                    ("total", money(&o.total)),
                    ("card_token", Value::String(o.card_token.clone())),
                    ("deadline_at", Value::TimestampMillis(o.deadline_at)),
                    ("placed_at", Value::TimestampMillis(o.placed_at)),
                    ("status", status),
                    ("cancel_reason", optional(reason)),
                    ("payment_id", optional(payment)),
                    ("refund_requested", Value::Boolean(o.refund_requested)),
                ]))
            }
        };
        Ok(record(vec![("order", optional(order))]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("OrderState", value)?;
        let order = match f.take("order")? {
            Value::Null => None,
            v => {
                let mut o = Fields::new("PlacedOrder", v)?;
                let order_id = o.order_id("order_id")?;
                let customer_id = o.customer_id("customer_id")?;
                let lines = o
                    .array("lines")?
                    .into_iter()
                    .map(|item| {
                        let mut l = Fields::new("LineState", item)?;
                        Ok(LineState {
                            line: read_order_line(l.take("line")?)?,
                            status: line_status_of(l.symbol("status")?)?,
                        })
                    })
                    .collect::<Result<_, MappingError>>()?;
                let total = o.money("total")?;
                let card_token = o.string("card_token")?;
                let deadline_at = o.timestamp("deadline_at")?;
                let placed_at = o.timestamp("placed_at")?;
                let symbol = o.symbol("status")?;
                let reason = match o.take("cancel_reason")? {
                    Value::Null => None,
                    Value::Enum(_, s) => Some(s),
                    other => {
                        return Err(MappingError::WrongType {
                            record: "PlacedOrder",
                            field: "cancel_reason",
                            expected: "null or enum",
                            found: super::value::kind(&other),
                        });
                    }
                };
                let payment_id = match o.take("payment_id")? {
                    Value::Null => None,
                    other => {
                        let mut tmp = Fields::single("PlacedOrder", "payment_id", other);
                        Some(tmp.payment_id("payment_id")?)
                    }
                };
                Some(PlacedOrder {
                    order_id,
                    customer_id,
                    lines,
                    total,
                    card_token,
                    deadline_at,
                    placed_at,
                    status: order_status_of(symbol, reason)?,
                    payment_id,
                    refund_requested: o.boolean("refund_requested")?,
                })
            }
        };
        Ok(Self { order })
    }
}
impl SnapshotState for OrderState {}
