//! Given / when / then harness shared by every aggregate's tests.
//!
//! ```ignore
//! given::<Stock>(&[received(10)])
//!     .when(reserve(order, 1, 3))
//!     .then(&[reserved(order, 1, 3)]);
//! given::<Order>(&[])
//!     .with_context(&price_book)
//!     .when(place_order)
//!     .then_rejected("order.unknown_sku");
//! ```
//!
//! Failures panic with the history, the command and both outcomes, because that is what a reader
//! needs to see to understand a broken rule.
#![allow(clippy::panic)]

use crate::aggregate::{Aggregate, Rejection};

/// Starts a scenario from a history of events, replayed through `evolve`.
pub fn given<A: Aggregate>(history: &[A::Event]) -> Given<A> {
    Given {
        history: history.to_vec(),
        state: A::replay(history),
    }
}

/// A state built from a history, waiting for a command.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    state: A::State,
}

impl<A: Aggregate> Given<A> {
    /// Supplies what `decide` may consult (a price book, a payment policy).
    pub fn with_context(self, ctx: &A::Context) -> GivenIn<'_, A> {
        GivenIn { given: self, ctx }
    }

    /// Runs a command against an aggregate that needs no context.
    pub fn when(self, command: A::Command) -> Then<A>
    where
        A: Aggregate<Context = ()>,
    {
        self.with_context(&()).when(command)
    }

    /// The state the history produced, for assertions on `evolve`.
    pub fn state(&self) -> &A::State {
        &self.state
    }
}

/// A state plus a context, waiting for a command.
#[derive(Debug)]
pub struct GivenIn<'c, A: Aggregate> {
    given: Given<A>,
    ctx: &'c A::Context,
}

impl<A: Aggregate> GivenIn<'_, A> {
    /// Runs the command through `decide` (twice, to prove it deterministic).
    pub fn when(self, command: A::Command) -> Then<A> {
        let Given { history, state } = self.given;
        let outcome = A::decide(&state, &command, self.ctx);
        let again = A::decide(&state, &command, self.ctx);
        if outcome != again {
            panic!(
                "decide is not deterministic\n given: {history:#?}\n when: {command:#?}\n first: {outcome:#?}\n second: {again:#?}"
            );
        }
        Then {
            history,
            state,
            command,
            outcome,
        }
    }
}

/// The outcome of one command, waiting for expectations.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    history: Vec<A::Event>,
    state: A::State,
    command: A::Command,
    outcome: Result<Vec<A::Event>, A::Rejection>,
}

impl<A: Aggregate> Then<A> {
    /// Expects exactly these events, in order; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: &[A::Event]) -> A::State {
        match &self.outcome {
            Ok(events) if events.as_slice() == expected => {
                A::evolve_all(self.state.clone(), events)
            }
            _ => panic!(
                "unexpected outcome\n given: {:#?}\n when: {:#?}\n expected events: {expected:#?}\n got: {:#?}",
                self.history, self.command, self.outcome
            ),
        }
    }

    /// Expects an accepted command that changes nothing (the idempotent case).
    #[track_caller]
    pub fn then_no_events(self) -> A::State {
        self.then(&[])
    }

    /// Expects a rejection with this code; returns it for checks on the message.
    #[track_caller]
    pub fn then_rejected(self, code: &str) -> A::Rejection {
        match self.outcome {
            Err(rejection) if rejection.code() == code => rejection,
            outcome => panic!(
                "expected rejection {code:?}\n given: {:#?}\n when: {:#?}\n got: {outcome:#?}",
                self.history, self.command
            ),
        }
    }

    /// Expects exactly this rejection value.
    #[track_caller]
    pub fn then_rejected_with(self, expected: &A::Rejection) {
        match &self.outcome {
            Err(rejection) if rejection == expected => {}
            outcome => panic!(
                "expected rejection {expected:#?}\n given: {:#?}\n when: {:#?}\n got: {outcome:#?}",
                self.history, self.command
            ),
        }
    }

    /// The raw outcome, for checks the helpers above do not cover.
    pub fn outcome(&self) -> &Result<Vec<A::Event>, A::Rejection> {
        &self.outcome
    }
}
