//! Domain ⇄ Avro mapping, one module per context. Union branch indexes follow the order of
//! the payload unions in the envelope `.avsc` files; the round-trip tests pin them.

pub(crate) mod catalog;
pub(crate) mod inventory;
pub(crate) mod orders;
pub(crate) mod payments;
pub(crate) mod value;

use apache_avro::types::Value;
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};

use crate::error::MappingError;
use value::{Fields, record, uuid_str};

/// `streamcart.common.Money`; amounts are not validated here, `decide` answers bad ones.
pub(crate) fn money(m: &Money) -> Value {
    record(vec![
        ("amount_minor", Value::Long(m.amount_minor)),
        ("currency", Value::String(m.currency.clone())),
    ])
}

/// Order ids travel as Avro `uuid` strings.
pub(crate) fn order_id(record: &'static str, id: &OrderId) -> Result<Value, MappingError> {
    uuid_str(record, "order_id", id.as_str())
}

/// Payment ids travel as Avro `uuid` strings.
pub(crate) fn payment_id(record: &'static str, id: &PaymentId) -> Result<Value, MappingError> {
    uuid_str(record, "payment_id", id.as_str())
}

impl Fields {
    /// A sku field, validated by the domain.
    pub(crate) fn sku(&mut self, field: &'static str) -> Result<Sku, MappingError> {
        let raw = self.string(field)?;
        Sku::new(raw).map_err(|e| self.invalid(field, e))
    }

    /// A customer id field, validated by the domain.
    pub(crate) fn customer_id(&mut self, field: &'static str) -> Result<CustomerId, MappingError> {
        let raw = self.string(field)?;
        CustomerId::new(raw).map_err(|e| self.invalid(field, e))
    }

    /// An order id (`uuid`), rendered in the domain's lower-case hyphenated form.
    pub(crate) fn order_id(&mut self, field: &'static str) -> Result<OrderId, MappingError> {
        let uuid = self.uuid(field)?;
        OrderId::new(uuid.hyphenated().to_string()).map_err(|e| self.invalid(field, e))
    }

    /// A payment id (`uuid`), rendered in the domain's lower-case hyphenated form.
    pub(crate) fn payment_id(&mut self, field: &'static str) -> Result<PaymentId, MappingError> {
        let uuid = self.uuid(field)?;
        PaymentId::new(uuid.hyphenated().to_string()).map_err(|e| self.invalid(field, e))
    }

    /// A 1-based line number (`long`).
    pub(crate) fn line_no(&mut self, field: &'static str) -> Result<LineNo, MappingError> {
        let n = self.u32(field)?;
        LineNo::new(n).map_err(|e| self.invalid(field, e))
    }

    /// A `streamcart.common.Money` field.
    pub(crate) fn money(&mut self, field: &'static str) -> Result<Money, MappingError> {
        let mut m = Fields::new("Money", self.take(field)?)?;
        Ok(Money {
            amount_minor: m.long("amount_minor")?,
            currency: m.string("currency")?,
        })
    }
}

/// Reads a payload union: the branch index and the record it holds.
pub(crate) fn payload_branch(
    union: &'static str,
    value: Value,
) -> Result<(u32, Value), MappingError> {
    match value {
        Value::Union(index, inner) => Ok((index, *inner)),
        other => Err(MappingError::WrongType {
            record: union,
            field: "payload",
            expected: "union",
            found: value::kind(&other),
        }),
    }
}

/// The error for a payload branch this build does not know.
pub(crate) fn unknown_branch(union: &'static str, index: u32) -> MappingError {
    MappingError::UnknownBranch {
        record: union,
        field: "payload",
        index,
    }
}
