//! Rules of the `Payment` aggregate and the deterministic gateway policy it consults.

use std::collections::BTreeSet;

use super::commands::{AuthorizePayment, PaymentCommand};
use super::errors::PaymentRejection;
use super::events::{
    DeclineReason, PaymentAuthorized, PaymentDeclined, PaymentEvent, PaymentRefunded,
};
use super::state::{PaymentState, PaymentStatus};
use crate::values::OrderId;

/// Test card token that is always authorized, whatever the amount or the decline list.
pub const TEST_CARD_SUCCESS: &str = "tok_success";
/// Test card token that is always declined (`CardDeclined`), whatever the amount.
pub const TEST_CARD_DECLINE: &str = "tok_decline";

/// Stands in for a card gateway: deterministic, so tests and demos can force both outcomes.
///
/// Like a real gateway's test mode it knows two card tokens whose outcome never depends on the
/// configuration ([`TEST_CARD_SUCCESS`], [`TEST_CARD_DECLINE`]); every other token goes through
/// the configured decline list, then the amount limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaymentPolicy {
    /// Declines amounts strictly above this many minor units; `None` means no limit.
    pub decline_above_minor: Option<i64>,
    /// Declines these card tokens whatever the amount.
    pub declined_card_tokens: BTreeSet<String>,
}

impl PaymentPolicy {
    /// Authorizes everything.
    pub fn approve_all() -> Self {
        Self::default()
    }

    /// Also declines amounts strictly above `limit_minor`.
    pub fn with_limit(mut self, limit_minor: i64) -> Self {
        self.decline_above_minor = Some(limit_minor);
        self
    }

    /// Also declines this card token.
    pub fn with_declined_card(mut self, card_token: impl Into<String>) -> Self {
        self.declined_card_tokens.insert(card_token.into());
        self
    }

    /// The policy's answer: a test card token decides alone; otherwise a blocked card is
    /// reported before an amount over the limit.
    pub fn verdict(&self, command: &AuthorizePayment) -> Result<(), DeclineReason> {
        match command.card_token.as_str() {
            TEST_CARD_SUCCESS => return Ok(()),
            TEST_CARD_DECLINE => return Err(DeclineReason::CardDeclined),
            _ => {}
        }
        if self.declined_card_tokens.contains(&command.card_token) {
            return Err(DeclineReason::CardDeclined);
        }
        match self.decline_above_minor {
            Some(limit) if command.amount.amount_minor > limit => {
                Err(DeclineReason::AmountOverLimit)
            }
            _ => Ok(()),
        }
    }
}

/// Derived from the order id (FNV-1a, 64 bits) so a replayed or re-decided authorization gets
/// the same code; the std hasher is not stable across releases, so it is not used.
pub fn authorization_code(order_id: &OrderId) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = order_id
        .as_str()
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("AUTH-{hash:016X}")
}

pub(super) fn decide(
    state: &PaymentState,
    command: &PaymentCommand,
    policy: &PaymentPolicy,
) -> Result<Vec<PaymentEvent>, PaymentRejection> {
    match command {
        PaymentCommand::AuthorizePayment(c) => {
            if let Some(existing) = &state.payment {
                // The same request again is a retry; anything else would be a second payment.
                return if existing.order_id == c.order_id && existing.amount == c.amount {
                    Ok(vec![])
                } else {
                    Err(PaymentRejection::AlreadyProcessed {
                        order_id: existing.order_id.clone(),
                    })
                };
            }
            c.amount
                .check_currency()
                .and_then(|()| c.amount.check_positive())
                .map_err(PaymentRejection::InvalidAmount)?;
            let event = match policy.verdict(c) {
                Ok(()) => PaymentAuthorized {
                    order_id: c.order_id.clone(),
                    amount: c.amount.clone(),
                    authorization_code: authorization_code(&c.order_id),
                }
                .into(),
                Err(reason) => PaymentDeclined {
                    order_id: c.order_id.clone(),
                    amount: c.amount.clone(),
                    reason,
                }
                .into(),
            };
            Ok(vec![event])
        }
        PaymentCommand::RefundPayment(c) => {
            let payment = state.payment.as_ref().ok_or(PaymentRejection::NotFound)?;
            match payment.status {
                PaymentStatus::Declined { .. } => Err(PaymentRejection::NotAuthorized {
                    order_id: payment.order_id.clone(),
                }),
                PaymentStatus::Refunded { .. } => Ok(vec![]),
                PaymentStatus::Authorized { .. } => Ok(vec![
                    PaymentRefunded {
                        order_id: payment.order_id.clone(),
                        amount: payment.amount.clone(),
                        reason: c.reason.clone(),
                    }
                    .into(),
                ]),
            }
        }
    }
}
