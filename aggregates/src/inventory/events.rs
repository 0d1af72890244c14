//! Events of the `Stock` aggregate, one struct per Avro record.

use crate::values::{LineNo, OrderId};

/// Units were delivered and are now available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockReceived {
    /// Units delivered.
    pub quantity: u32,
}

/// Units moved from available to reserved for one order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReserved {
    /// Order holding the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
    /// Units reserved.
    pub quantity: u32,
}

/// Not enough units: an event rather than a rejection, because the order saga must react to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReservationRejected {
    /// Order that asked.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
    /// Units asked for.
    pub quantity: u32,
    /// Units that were available at the time.
    pub available: u64,
}

/// A reservation's units went back to available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReleased {
    /// Order that held the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
    /// Units released.
    pub quantity: u32,
}

/// A reservation's units were sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockCommitted {
    /// Order that held the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
    /// Units sold.
    pub quantity: u32,
}

/// Every event of the `Stock` aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockEvent {
    /// See [`StockReceived`].
    StockReceived(StockReceived),
    /// See [`StockReserved`].
    StockReserved(StockReserved),
    /// See [`StockReservationRejected`].
    StockReservationRejected(StockReservationRejected),
    /// See [`StockReleased`].
    StockReleased(StockReleased),
    /// See [`StockCommitted`].
    StockCommitted(StockCommitted),
}

impl StockEvent {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            StockEvent::StockReceived(_) => "StockReceived",
            StockEvent::StockReserved(_) => "StockReserved",
            StockEvent::StockReservationRejected(_) => "StockReservationRejected",
            StockEvent::StockReleased(_) => "StockReleased",
            StockEvent::StockCommitted(_) => "StockCommitted",
        }
    }
}

crate::into_enum!(StockEvent: StockReceived, StockReserved, StockReservationRejected, StockReleased, StockCommitted);
