//! The two traits every aggregate shares, so the runtime, the saga driver and the test harness
//! can be written once for all four.

use std::fmt::Debug;

/// A refused command: a stable machine-readable code plus a human message (its `Display`).
///
/// Codes are part of the wire contract (`command.results`), so they never change once published;
/// messages may.
pub trait Rejection: std::error::Error + Clone + PartialEq + Eq + Send + Sync + 'static {
    /// Stable code such as `stock.reservation_not_found`.
    fn code(&self) -> &'static str;
}

/// Lets generic code ask whether any event has been applied to a state yet.
pub trait AggregateState {
    /// True until the first event, so the runtime can tell "never seen" from "empty".
    fn is_new(&self) -> bool;
}

/// An event-sourced aggregate: `decide` checks invariants and emits events, `evolve` trusts them.
///
/// `decide` is pure and deterministic: the same state, command and context always give the same
/// answer, which is what lets the runtime re-run it after an aborted transaction.
pub trait Aggregate {
    /// Folded from events; `Default` is the state before the first event.
    type State: Default + Clone + Debug + PartialEq + AggregateState;
    /// What callers ask for.
    type Command: Clone + Debug;
    /// What happened; the only input of `evolve`.
    type Event: Clone + Debug + PartialEq;
    /// Why a command was refused.
    type Rejection: Rejection;
    /// What `decide` may consult besides the state (prices, payment policy); `()` if nothing.
    type Context: ?Sized;
    /// Short name used in topic names and telemetry: "product", "stock", "order", "payment".
    const NAME: &'static str;

    /// Checks the command against the state and returns the events it causes (possibly none).
    fn decide(
        state: &Self::State,
        command: &Self::Command,
        ctx: &Self::Context,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Applies one event; never fails, because events are facts already accepted.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Rebuilds a state from its full history.
    fn replay<'e, I>(events: I) -> Self::State
    where
        I: IntoIterator<Item = &'e Self::Event>,
        Self::Event: 'e,
    {
        Self::evolve_all(Self::State::default(), events)
    }

    /// Applies events on top of a state, e.g. a snapshot followed by the events after it.
    fn evolve_all<'e, I>(state: Self::State, events: I) -> Self::State
    where
        I: IntoIterator<Item = &'e Self::Event>,
        Self::Event: 'e,
    {
        events.into_iter().fold(state, Self::evolve)
    }
}
