//! Orders context: the `Order` aggregate, keyed by [`OrderId`](crate::values::OrderId).
//!
//! The order is the saga's memory: it records what stock and payments answered and emits the
//! events the saga reacts to (reserve, authorize, commit, release, refund). Its status moves
//! `Reserving → AwaitingPayment → Confirmed`, or to `Cancelled{reason}` / `Expired` from either
//! open status; a confirmed order cannot be cancelled.

mod commands;
mod decide;
mod errors;
mod events;
mod state;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use commands::{
    CancelOrder, ConfirmOrder, ExpireOrder, OrderCommand, OrderLineRequest, PlaceOrder,
    RecordLineRejected, RecordLineReserved,
};
pub use decide::{CatalogEntry, MAX_LINES, PriceBook};
pub use errors::OrderRejection;
pub use events::{
    CancelReason, LineRef, OrderAwaitingPayment, OrderCancelled, OrderConfirmed, OrderEvent,
    OrderExpired, OrderLine, OrderLineRejected, OrderLineReleaseRequired, OrderLineReserved,
    OrderPaymentRefundRequired, OrderPlaced,
};
pub use state::{LineState, LineStatus, OrderState, OrderStatus, PlacedOrder};

use crate::aggregate::Aggregate;

/// The orders aggregate; a marker type that ties its command, event and state types together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order;

impl Aggregate for Order {
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Rejection = OrderRejection;
    type Context = dyn PriceBook;
    const NAME: &'static str = "order";

    fn decide(
        state: &OrderState,
        command: &OrderCommand,
        prices: &dyn PriceBook,
    ) -> Result<Vec<OrderEvent>, OrderRejection> {
        decide::decide(state, command, prices)
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        state.evolve(event)
    }
}
