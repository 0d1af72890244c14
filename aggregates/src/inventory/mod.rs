//! Inventory context: the `Stock` aggregate, one per [`Sku`](crate::values::Sku).
//!
//! The hot, contended aggregate: every order line reserves here. Counters obey
//! `available + reserved + sold == received` after every event, and each reservation, keyed by
//! (order id, line number), is released or committed at most once, never both.

mod commands;
mod decide;
mod errors;
mod events;
mod state;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use commands::{CommitStock, ReceiveStock, ReleaseStock, ReserveStock, StockCommand};
pub use errors::StockRejection;
pub use events::{
    StockCommitted, StockEvent, StockReceived, StockReleased, StockReservationRejected,
    StockReserved,
};
pub use state::{Reservation, ReservationKey, ReservationStatus, StockState};

use crate::aggregate::Aggregate;

/// The inventory aggregate; a marker type that ties its command, event and state types together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stock;

impl Aggregate for Stock {
    type State = StockState;
    type Command = StockCommand;
    type Event = StockEvent;
    type Rejection = StockRejection;
    type Context = ();
    const NAME: &'static str = "stock";

    fn decide(
        state: &StockState,
        command: &StockCommand,
        _ctx: &(),
    ) -> Result<Vec<StockEvent>, StockRejection> {
        decide::decide(state, command)
    }

    fn evolve(state: StockState, event: &StockEvent) -> StockState {
        state.evolve(event)
    }
}
