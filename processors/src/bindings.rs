//! Which bounded context each aggregate type belongs to, so one generic processor serves all four.

use streamcart_aggregates::orders::Order;
use streamcart_aggregates::payments::Payment;
use streamcart_aggregates::{Aggregate, Product, Stock};
use streamcart_schemas::envelope::{CommandPayload, EventPayload, SnapshotState};
use streamcart_schemas::topics::Context;

/// An aggregate type the command processor can run: its wire types are mapped in `schemas/`.
pub trait Bound: Aggregate + Send + 'static
where
    Self::Command: CommandPayload + Send,
    Self::Event: EventPayload + Send,
    Self::State: SnapshotState + Send,
{
    /// The context whose topics carry this aggregate.
    const CONTEXT: Context;
}

impl Bound for Product {
    const CONTEXT: Context = Context::Catalog;
}

impl Bound for Stock {
    const CONTEXT: Context = Context::Inventory;
}

impl Bound for Order {
    const CONTEXT: Context = Context::Orders;
}

impl Bound for Payment {
    const CONTEXT: Context = Context::Payments;
}
