//! `streamcart.inventory`: the stock's commands, events and snapshot state.

use apache_avro::types::Value;
use streamcart_aggregates::inventory::{
    CommitStock, ReceiveStock, ReleaseStock, Reservation, ReservationKey, ReservationStatus,
    ReserveStock, StockCommand, StockCommitted, StockEvent, StockReceived, StockReleased,
    StockReservationRejected, StockReserved, StockState,
};
use streamcart_aggregates::values::{LineNo, OrderId};

use super::value::{Fields, branch, long_u32, long_u64, record, try_array};
use super::{order_id, payload_branch, unknown_branch};
use crate::envelope::{AvroPayload, CommandPayload, EventPayload, SnapshotState};
use crate::error::MappingError;
use crate::topics::Context;

/// The `order_id` + `line_no` pair most stock records start with.
fn line(
    record_name: &'static str,
    order: &OrderId,
    line_no: LineNo,
) -> Result<Vec<(&'static str, Value)>, MappingError> {
    Ok(vec![
        ("order_id", order_id(record_name, order)?),
        ("line_no", long_u32(line_no.get())),
    ])
}

fn with(mut fields: Vec<(&'static str, Value)>, extra: Vec<(&'static str, Value)>) -> Value {
    fields.extend(extra);
    record(fields)
}

impl AvroPayload for StockCommand {
    const CONTEXT: Context = Context::Inventory;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            StockCommand::ReceiveStock(c) => {
                branch(0, record(vec![("quantity", long_u32(c.quantity))]))
            }
            StockCommand::ReserveStock(c) => branch(
                1,
                with(
                    line("ReserveStock", &c.order_id, c.line_no)?,
                    vec![("quantity", long_u32(c.quantity))],
                ),
            ),
            StockCommand::ReleaseStock(c) => {
                branch(2, record(line("ReleaseStock", &c.order_id, c.line_no)?))
            }
            StockCommand::CommitStock(c) => {
                branch(3, record(line("CommitStock", &c.order_id, c.line_no)?))
            }
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("StockCommandEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("ReceiveStock", value)?;
                ReceiveStock {
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("ReserveStock", value)?;
                ReserveStock {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("ReleaseStock", value)?;
                ReleaseStock {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("CommitStock", value)?;
                CommitStock {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                }
                .into()
            }
            other => return Err(unknown_branch("StockCommandEnvelope", other)),
        })
    }
}
impl CommandPayload for StockCommand {}

impl AvroPayload for StockEvent {
    const CONTEXT: Context = Context::Inventory;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            StockEvent::StockReceived(e) => {
                branch(0, record(vec![("quantity", long_u32(e.quantity))]))
            }
            StockEvent::StockReserved(e) => branch(
                1,
                with(
                    line("StockReserved", &e.order_id, e.line_no)?,
                    vec![("quantity", long_u32(e.quantity))],
                ),
            ),
            StockEvent::StockReservationRejected(e) => branch(
                2,
                with(
                    line("StockReservationRejected", &e.order_id, e.line_no)?,
                    vec![
                        ("quantity", long_u32(e.quantity)),
                        (
                            "available",
                            long_u64("StockReservationRejected", "available", e.available)?,
                        ),
                    ],
                ),
            ),
            StockEvent::StockReleased(e) => branch(
                3,
                with(
                    line("StockReleased", &e.order_id, e.line_no)?,
                    vec![("quantity", long_u32(e.quantity))],
                ),
            ),
            StockEvent::StockCommitted(e) => branch(
                4,
                with(
                    line("StockCommitted", &e.order_id, e.line_no)?,
                    vec![("quantity", long_u32(e.quantity))],
                ),
            ),
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("StockEventEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("StockReceived", value)?;
                StockReceived {
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("StockReserved", value)?;
                StockReserved {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("StockReservationRejected", value)?;
                StockReservationRejected {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                    quantity: f.u32("quantity")?,
                    available: f.u64("available")?,
                }
                .into()
            }
            3 => {
                let mut f = Fields::new("StockReleased", value)?;
                StockReleased {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            4 => {
                let mut f = Fields::new("StockCommitted", value)?;
                StockCommitted {
                    order_id: f.order_id("order_id")?,
                    line_no: f.line_no("line_no")?,
                    quantity: f.u32("quantity")?,
                }
                .into()
            }
            other => return Err(unknown_branch("StockEventEnvelope", other)),
        })
    }
}
impl EventPayload for StockEvent {}

fn status_value(status: ReservationStatus) -> Value {
    let (index, symbol) = match status {
        ReservationStatus::Reserved => (0, "Reserved"),
        ReservationStatus::Released => (1, "Released"),
        ReservationStatus::Committed => (2, "Committed"),
        ReservationStatus::Rejected => (3, "Rejected"),
    };
    Value::Enum(index, symbol.to_owned())
}

fn status_of(symbol: &str) -> Option<ReservationStatus> {
    Some(match symbol {
        "Reserved" => ReservationStatus::Reserved,
        "Released" => ReservationStatus::Released,
        "Committed" => ReservationStatus::Committed,
        "Rejected" => ReservationStatus::Rejected,
        _ => return None,
    })
}

impl AvroPayload for StockState {
    const CONTEXT: Context = Context::Inventory;

    fn to_avro(&self) -> Result<Value, MappingError> {
        let reservations = try_array(&self.reservations, |(key, r)| {
            Ok(with(
                line("Reservation", &key.order_id, key.line_no)?,
                vec![
                    ("quantity", long_u32(r.quantity)),
                    ("status", status_value(r.status)),
                ],
            ))
        })?;
        Ok(record(vec![
            ("exists", Value::Boolean(self.exists)),
            (
                "received",
                long_u64("StockState", "received", self.received)?,
            ),
            (
                "available",
                long_u64("StockState", "available", self.available)?,
            ),
            (
                "reserved",
                long_u64("StockState", "reserved", self.reserved)?,
            ),
            ("sold", long_u64("StockState", "sold", self.sold)?),
            ("reservations", reservations),
        ]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("StockState", value)?;
        let mut state = StockState {
            exists: f.boolean("exists")?,
            received: f.u64("received")?,
            available: f.u64("available")?,
            reserved: f.u64("reserved")?,
            sold: f.u64("sold")?,
            reservations: Default::default(),
        };
        for item in f.array("reservations")? {
            let mut r = Fields::new("Reservation", item)?;
            let key = ReservationKey::new(r.order_id("order_id")?, r.line_no("line_no")?);
            let quantity = r.u32("quantity")?;
            let symbol = r.symbol("status")?;
            let status = status_of(&symbol).ok_or(MappingError::UnknownSymbol {
                record: "Reservation",
                field: "status",
                symbol,
            })?;
            state
                .reservations
                .insert(key, Reservation { quantity, status });
        }
        Ok(state)
    }
}
impl SnapshotState for StockState {}
