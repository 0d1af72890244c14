//! Payments context: the `Payment` aggregate, keyed by [`PaymentId`](crate::values::PaymentId)
//! (equal to the order id, one payment per order).
//!
//! A payment is authorized or declined exactly once, by a deterministic [`PaymentPolicy`] standing
//! in for a card gateway, and refunded at most once, only after an authorization. The test card
//! tokens [`TEST_CARD_SUCCESS`] and [`TEST_CARD_DECLINE`] force either outcome in any deployment.

mod commands;
mod decide;
mod errors;
mod events;
mod state;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use commands::{AuthorizePayment, PaymentCommand, RefundPayment};
pub use decide::{PaymentPolicy, TEST_CARD_DECLINE, TEST_CARD_SUCCESS, authorization_code};
pub use errors::PaymentRejection;
pub use events::{
    DeclineReason, PaymentAuthorized, PaymentDeclined, PaymentEvent, PaymentRefunded,
};
pub use state::{PaymentRecord, PaymentState, PaymentStatus};

use crate::aggregate::Aggregate;

/// The payments aggregate; a marker type that ties its command, event and state types together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Payment;

impl Aggregate for Payment {
    type State = PaymentState;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Rejection = PaymentRejection;
    type Context = PaymentPolicy;
    const NAME: &'static str = "payment";

    fn decide(
        state: &PaymentState,
        command: &PaymentCommand,
        policy: &PaymentPolicy,
    ) -> Result<Vec<PaymentEvent>, PaymentRejection> {
        decide::decide(state, command, policy)
    }

    fn evolve(state: PaymentState, event: &PaymentEvent) -> PaymentState {
        state.evolve(event)
    }
}
