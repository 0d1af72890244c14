//! Commands of the `Stock` aggregate, one struct per Avro record.

use crate::values::{LineNo, OrderId};

/// Adds delivered units to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveStock {
    /// Units delivered; must be positive.
    pub quantity: u32,
}

/// Holds units for one order line; asking again for the same line changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveStock {
    /// Order that wants the units.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
    /// Units wanted; must be positive.
    pub quantity: u32,
}

/// Gives a line's reserved units back (a saga compensation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStock {
    /// Order holding the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
}

/// Turns a line's reserved units into sold units once the order is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStock {
    /// Order holding the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
}

/// Every command the `Stock` aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockCommand {
    /// See [`ReceiveStock`].
    ReceiveStock(ReceiveStock),
    /// See [`ReserveStock`].
    ReserveStock(ReserveStock),
    /// See [`ReleaseStock`].
    ReleaseStock(ReleaseStock),
    /// See [`CommitStock`].
    CommitStock(CommitStock),
}

impl StockCommand {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            StockCommand::ReceiveStock(_) => "ReceiveStock",
            StockCommand::ReserveStock(_) => "ReserveStock",
            StockCommand::ReleaseStock(_) => "ReleaseStock",
            StockCommand::CommitStock(_) => "CommitStock",
        }
    }
}

crate::into_enum!(StockCommand: ReceiveStock, ReserveStock, ReleaseStock, CommitStock);
