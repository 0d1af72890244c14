//! `streamcart.payments`: the payment's commands, events and snapshot state.

use apache_avro::types::Value;
use streamcart_aggregates::payments::{
    AuthorizePayment, DeclineReason, PaymentAuthorized, PaymentCommand, PaymentDeclined,
    PaymentEvent, PaymentRecord, PaymentRefunded, PaymentState, PaymentStatus, RefundPayment,
};

use super::value::{Fields, branch, optional, record};
use super::{money, order_id, payload_branch, unknown_branch};
use crate::envelope::{AvroPayload, CommandPayload, EventPayload, SnapshotState};
use crate::error::MappingError;
use crate::topics::Context;

fn decline_value(reason: DeclineReason) -> Value {
    let (index, symbol) = match reason {
        DeclineReason::AmountOverLimit => (0, "AmountOverLimit"),
        DeclineReason::CardDeclined => (1, "CardDeclined"),
    };
    Value::Enum(index, symbol.to_owned())
}

fn decline_of(
    record: &'static str,
    field: &'static str,
    symbol: String,
) -> Result<DeclineReason, MappingError> {
    match symbol.as_str() {
        "AmountOverLimit" => Ok(DeclineReason::AmountOverLimit),
        "CardDeclined" => Ok(DeclineReason::CardDeclined),
        _ => Err(MappingError::UnknownSymbol {
            record,
            field,
            symbol,
        }),
    }
}

impl AvroPayload for PaymentCommand {
    const CONTEXT: Context = Context::Payments;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            PaymentCommand::AuthorizePayment(c) => branch(
                0,
                record(vec![
                    ("order_id", order_id("AuthorizePayment", &c.order_id)?),
                    (
                        "customer_id",
                        Value::String(c.customer_id.as_str().to_owned()),
                    ),
                    ("amount", money(&c.amount)),
                    ("card_token", Value::String(c.card_token.clone())),
                ]),
            ),
            PaymentCommand::RefundPayment(c) => {
                branch(1, record(vec![("reason", Value::String(c.reason.clone()))]))
            }
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("PaymentCommandEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("AuthorizePayment", value)?;
                AuthorizePayment {
                    order_id: f.order_id("order_id")?,
                    customer_id: f.customer_id("customer_id")?,
                    amount: f.money("amount")?,
                    card_token: f.string("card_token")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("RefundPayment", value)?;
                RefundPayment {
                    reason: f.string("reason")?,
                }
                .into()
            }
            other => return Err(unknown_branch("PaymentCommandEnvelope", other)),
        })
    }
}
impl CommandPayload for PaymentCommand {}

impl AvroPayload for PaymentEvent {
    const CONTEXT: Context = Context::Payments;

    fn to_avro(&self) -> Result<Value, MappingError> {
        Ok(match self {
            PaymentEvent::PaymentAuthorized(e) => branch(
                0,
                record(vec![
                    ("order_id", order_id("PaymentAuthorized", &e.order_id)?),
                    ("amount", money(&e.amount)),
                    (
                        "authorization_code",
                        Value::String(e.authorization_code.clone()),
                    ),
                ]),
            ),
            PaymentEvent::PaymentDeclined(e) => branch(
                1,
                record(vec![
                    ("order_id", order_id("PaymentDeclined", &e.order_id)?),
                    ("amount", money(&e.amount)),
                    ("reason", decline_value(e.reason)),
                ]),
            ),
            PaymentEvent::PaymentRefunded(e) => branch(
                2,
                record(vec![
                    ("order_id", order_id("PaymentRefunded", &e.order_id)?),
                    ("amount", money(&e.amount)),
                    ("reason", Value::String(e.reason.clone())),
                ]),
            ),
        })
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let (index, value) = payload_branch("PaymentEventEnvelope", value)?;
        Ok(match index {
            0 => {
                let mut f = Fields::new("PaymentAuthorized", value)?;
                PaymentAuthorized {
                    order_id: f.order_id("order_id")?,
                    amount: f.money("amount")?,
                    authorization_code: f.string("authorization_code")?,
                }
                .into()
            }
            1 => {
                let mut f = Fields::new("PaymentDeclined", value)?;
                PaymentDeclined {
                    order_id: f.order_id("order_id")?,
                    amount: f.money("amount")?,
                    reason: decline_of("PaymentDeclined", "reason", f.symbol("reason")?)?,
                }
                .into()
            }
            2 => {
                let mut f = Fields::new("PaymentRefunded", value)?;
                PaymentRefunded {
                    order_id: f.order_id("order_id")?,
                    amount: f.money("amount")?,
                    reason: f.string("reason")?,
                }
                .into()
            }
            other => return Err(unknown_branch("PaymentEventEnvelope", other)),
        })
    }
}
impl EventPayload for PaymentEvent {}

impl AvroPayload for PaymentState {
    const CONTEXT: Context = Context::Payments;

    fn to_avro(&self) -> Result<Value, MappingError> {
        let payment = match &self.payment {
            None => None,
            Some(p) => {
                let string = |s: &String| Some(Value::String(s.clone()));
                let (index, symbol, code, decline, refund) = match &p.status {
                    PaymentStatus::Authorized { authorization_code } => {
                        (0, "Authorized", string(authorization_code), None, None)
                    }
                    PaymentStatus::Declined { reason } => {
                        (1, "Declined", None, Some(decline_value(*reason)), None)
                    }
                    PaymentStatus::Refunded {
                        authorization_code,
                        reason,
                    } => (
                        2,
                        "Refunded",
                        string(authorization_code),
                        None,
                        string(reason),
                    ),
                };
                Some(record(vec![
                    ("order_id", order_id("PaymentRecord", &p.order_id)?),
                    ("amount", money(&p.amount)),
                    ("status", Value::Enum(index, symbol.to_owned())),
                    ("authorization_code", optional(code)),
                    ("decline_reason", optional(decline)),
                    ("refund_reason", optional(refund)),
                ]))
            }
        };
        Ok(record(vec![("payment", optional(payment))]))
    }

    fn from_avro(value: Value) -> Result<Self, MappingError> {
        let mut f = Fields::new("PaymentState", value)?;
        let payment = match f.take("payment")? {
            Value::Null => None,
            v => {
                let mut p = Fields::new("PaymentRecord", v)?;
                let order_id = p.order_id("order_id")?;
                let amount = p.money("amount")?;
                let symbol = p.symbol("status")?;
                let code = p.optional_string("authorization_code")?;
                let decline = match p.take("decline_reason")? {
                    Value::Enum(_, s) => Some(s),
                    _ => None,
                };
                let refund = p.optional_string("refund_reason")?;
                let missing = |field| MappingError::MissingField {
                    record: "PaymentRecord",
                    field,
                };
                let status = match symbol.as_str() {
                    "Authorized" => PaymentStatus::Authorized {
                        authorization_code: code.ok_or(missing("authorization_code"))?,
                    },
                    "Declined" => PaymentStatus::Declined {
                        reason: decline_of(
                            "PaymentRecord",
                            "decline_reason",
                            decline.ok_or(missing("decline_reason"))?,
                        )?,
                    },
                    "Refunded" => PaymentStatus::Refunded {
                        authorization_code: code.ok_or(missing("authorization_code"))?,
                        reason: refund.ok_or(missing("refund_reason"))?,
                    },
                    _ => {
                        return Err(MappingError::UnknownSymbol {
                            record: "PaymentRecord",
                            field: "status",
                            symbol,
                        });
                    }
                };
                Some(PaymentRecord {
                    order_id,
                    amount,
                    status,
                })
            }
        };
        Ok(Self { payment })
    }
}
impl SnapshotState for PaymentState {}
