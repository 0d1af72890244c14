//! Saga choreography: the pure reactions that turn one aggregate's events into another's commands,
//! and the order deadline timer.
//!
//! No orchestrator holds state: the order aggregate is the saga's memory, and every reaction is a
//! function of one event alone. Command ids are name-based UUIDs derived from the event id and the
//! reaction, so a reaction re-run after an aborted transaction (or on a redelivered event) emits
//! the very same commands and the target processor answers them as duplicates.
//!
//! # Layout
//! - [`reactions`]: one module per row of the saga routing table, each named for what it does and
//!   on what; [`react_to_order_event`], [`react_to_stock_event`] and [`react_to_payment_event`]
//!   run every reaction interested in one source.
//! - [`deadlines`]: pending order deadlines and the `ExpireOrder` commands they fire.
//! - `driver` (tests, or the `testing` feature): the saga's processors in process, joined by
//!   the reactions, with delivery order, redelivery and aborts left to the caller.
//!   `properties` drives it with random interleavings.

pub mod deadlines;
#[cfg(any(test, feature = "testing"))]
pub mod driver;
pub mod kafka;
pub mod reactions;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

use streamcart_aggregates::inventory::{StockCommand, StockEvent};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent};
use streamcart_aggregates::payments::{PaymentCommand, PaymentEvent};
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope};
use uuid::Uuid;

pub use deadlines::{DeadlineChange, DeadlineTable};
pub use reactions::{ORDER_REACTIONS, PAYMENT_REACTIONS, Reaction, STOCK_REACTIONS};

/// A command a reaction emits, addressed to one aggregate type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaCommand {
    /// For the inventory context's `Stock` aggregate, keyed by sku.
    Stock(CommandEnvelope<StockCommand>),
    /// For the orders context's `Order` aggregate, keyed by order id.
    Order(CommandEnvelope<OrderCommand>),
    /// For the payments context's `Payment` aggregate, keyed by payment id (= order id).
    Payment(CommandEnvelope<PaymentCommand>),
}

impl SagaCommand {
    /// The command's id, whatever its target.
    pub fn command_id(&self) -> Uuid {
        match self {
            SagaCommand::Stock(c) => c.command_id,
            SagaCommand::Order(c) => c.command_id,
            SagaCommand::Payment(c) => c.command_id,
        }
    }

    /// The key of the addressed aggregate (also the Kafka key of the command record).
    pub fn aggregate_id(&self) -> &str {
        match self {
            SagaCommand::Stock(c) => &c.aggregate_id,
            SagaCommand::Order(c) => &c.aggregate_id,
            SagaCommand::Payment(c) => &c.aggregate_id,
        }
    }

    /// The payload's record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            SagaCommand::Stock(c) => c.payload.name(),
            SagaCommand::Order(c) => c.payload.name(),
            SagaCommand::Payment(c) => c.payload.name(),
        }
    }
}

/// Every command the saga emits for one order event, in reaction order.
pub fn react_to_order_event(event: &EventEnvelope<OrderEvent>) -> Vec<SagaCommand> {
    run(&ORDER_REACTIONS, event)
}

/// Every command the saga emits for one stock event, in reaction order.
pub fn react_to_stock_event(event: &EventEnvelope<StockEvent>) -> Vec<SagaCommand> {
    run(&STOCK_REACTIONS, event)
}

/// Every command the saga emits for one payment event, in reaction order.
pub fn react_to_payment_event(event: &EventEnvelope<PaymentEvent>) -> Vec<SagaCommand> {
    run(&PAYMENT_REACTIONS, event)
}

fn run<E>(reactions: &[Reaction<E>], event: &EventEnvelope<E>) -> Vec<SagaCommand> {
    reactions.iter().flat_map(|r| (r.react)(event)).collect()
}

/// The id of the `index`-th command `reaction` emits for one event, addressed to `aggregate_id`:
/// a name-based UUID, so a re-run yields the same id, and two reactions to one event, or two
/// commands of one reaction, never collide.
///
/// Event ids are unique across aggregates, and the target is part of the name as well: duplicates
/// are detected per target aggregate, so an id must never be shared by two commands that could
/// reach the same one.
pub fn command_id(event_id: &Uuid, reaction: &str, index: usize, aggregate_id: &str) -> Uuid {
    let mut name = Vec::with_capacity(reaction.len() + aggregate_id.len() + 24);
    // Length prefixes keep the parts apart whatever bytes they hold.
    for part in [reaction.as_bytes(), aggregate_id.as_bytes()] {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    name.extend_from_slice(&(index as u64).to_be_bytes());
    Uuid::new_v5(event_id, &name)
}

/// Wraps the `index`-th command of `reaction` for `event`: deterministic id, the event's
/// correlation id, issued when the event occurred, no concurrency check (reactions must not race
/// the aggregate's own versioning; the domain rules make a repeated command harmless).
fn envelope<E, C>(
    event: &EventEnvelope<E>,
    reaction: &str,
    index: usize,
    aggregate_id: impl Into<String>,
    payload: impl Into<C>,
) -> CommandEnvelope<C> {
    let aggregate_id = aggregate_id.into();
    CommandEnvelope {
        command_id: command_id(&event.event_id, reaction, index, &aggregate_id),
        aggregate_id,
        expected_version: None,
        issued_at: event.occurred_at,
        correlation_id: event.correlation_id.clone(),
        payload: payload.into(),
    }
}
