//! Which bounded context each aggregate type belongs to, so one generic processor serves all four.

use streamcart_aggregates::orders::{Order, OrderEvent};
use streamcart_aggregates::payments::Payment;
use streamcart_aggregates::{Aggregate, Product, Stock};
use streamcart_schemas::envelope::{CommandPayload, EventEnvelope, EventPayload, SnapshotState};
use streamcart_schemas::topics::Context;

use crate::saga::{self, SagaCommand};

/// An aggregate type the command processor can run: its wire types are mapped in `schemas/`.
pub trait Bound: Aggregate + Send + 'static
where
    Self::Command: CommandPayload + Send,
    Self::Event: EventPayload + Send,
    Self::State: SnapshotState + Send,
{
    /// The context whose topics carry this aggregate.
    const CONTEXT: Context;

    /// The commands the saga's reactions emit for one of this aggregate's events (none for
    /// an aggregate the saga does not follow).
    fn react(_event: &EventEnvelope<Self::Event>) -> Vec<SagaCommand> {
        Vec::new()
    }

    /// How an order ended, as `(outcome, reason)` labels, if `event` ends one.
    fn settled(_event: &Self::Event) -> Option<(&'static str, &'static str)> {
        None
    }
}

impl Bound for Product {
    const CONTEXT: Context = Context::Catalog;
}

impl Bound for Stock {
    const CONTEXT: Context = Context::Inventory;

    fn react(event: &EventEnvelope<Self::Event>) -> Vec<SagaCommand> {
        saga::react_to_stock_event(event)
    }
}

impl Bound for Order {
    const CONTEXT: Context = Context::Orders;

    fn react(event: &EventEnvelope<Self::Event>) -> Vec<SagaCommand> {
        saga::react_to_order_event(event)
    }

    fn settled(event: &OrderEvent) -> Option<(&'static str, &'static str)> {
        saga::kafka::settled(event)
    }
}

impl Bound for Payment {
    const CONTEXT: Context = Context::Payments;

    fn react(event: &EventEnvelope<Self::Event>) -> Vec<SagaCommand> {
        saga::react_to_payment_event(event)
    }
}
