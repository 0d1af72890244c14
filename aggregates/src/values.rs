//! Value types shared by every context: money, ids and line numbers.
//!
//! Ids are validated string newtypes so a malformed id is refused once, at the edge or in the
//! wire mapping, and every aggregate can then rely on it. Money keeps public fields because
//! commands arrive with untrusted amounts; `decide` validates them and answers with the
//! aggregate's own rejection code.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC; the wire uses Avro `timestamp-millis`.
pub type TimestampMillis = i64;

/// Longest id accepted anywhere, in bytes, so keys stay small on every topic and table.
pub const MAX_ID_LEN: usize = 64;

/// Cuts long untrusted input before it is echoed in a message.
pub(crate) fn excerpt(value: &str) -> String {
    const LIMIT: usize = 80;
    match value.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", value.get(..cut).unwrap_or_default()),
        None => value.to_owned(),
    }
}

/// Which kind of id a validation error is about, so one error type serves all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// A product and stock key.
    Sku,
    /// An order key (also the payment key).
    OrderId,
    /// A payment key, always equal to its order id.
    PaymentId,
    /// A customer issued by the identity provider.
    CustomerId,
    /// A 1-based position of a line in its order.
    LineNo,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Sku => "sku",
            IdKind::OrderId => "order id",
            IdKind::PaymentId => "payment id",
            IdKind::CustomerId => "customer id",
            IdKind::LineNo => "line number",
        })
    }
}

/// Why an id was refused; the mapping layer turns it into a decode or input error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty ids cannot be used as Kafka keys or table keys.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id was refused.
        kind: IdKind,
    },
    /// Ids are bounded so keys stay small.
    #[error("{kind} is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong {
        /// Which id was refused.
        kind: IdKind,
        /// Its length in bytes.
        len: usize,
    },
    /// The id does not have the documented shape.
    #[error("{kind} {value:?} is not valid: expected {expected}")]
    Malformed {
        /// Which id was refused.
        kind: IdKind,
        /// The refused value, shortened.
        value: String,
        /// The documented shape.
        expected: &'static str,
    },
}

const TOKEN_SHAPE: &str = "1 to 64 characters out of A-Z a-z 0-9 . _ -";
const UUID_SHAPE: &str = "a lower-case hyphenated UUID";

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_token(kind: IdKind, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
        });
    }
    if !value.chars().all(is_token_char) {
        return Err(IdError::Malformed {
            kind,
            value: excerpt(value),
            expected: TOKEN_SHAPE,
        });
    }
    Ok(())
}

fn check_uuid(kind: IdKind, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len: value.len(),
        });
    }
    let groups: Vec<&str> = value.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let shaped = lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    if shaped {
        Ok(())
    } else {
        Err(IdError::Malformed {
            kind,
            value: excerpt(value),
            expected: UUID_SHAPE,
        })
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates the documented shape; the only way to build one.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                $check($kind, &value)?;
                Ok(Self(value))
            }

            /// The id as it travels on the wire and in keys.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Gives the string back without copying, for the wire mapping.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

string_id!(
    /// Product and stock key, `[A-Za-z0-9._-]{1,64}`, e.g. `SKU-000042`.
    Sku,
    IdKind::Sku,
    check_token
);
string_id!(
    /// Order key: a UUID in hyphenated lower-case form.
    OrderId,
    IdKind::OrderId,
    check_uuid
);
string_id!(
    /// Payment key; equal to the order id it pays, so payments are co-keyed with orders.
    PaymentId,
    IdKind::PaymentId,
    check_uuid
);
string_id!(
    /// Customer from the identity provider: a UUID or any `[A-Za-z0-9._-]{1,64}` token.
    CustomerId,
    IdKind::CustomerId,
    check_token
);

impl PaymentId {
    /// The payment of an order; one payment per order, so the ids are equal.
    pub fn for_order(order_id: &OrderId) -> Self {
        Self(order_id.as_str().to_owned())
    }

    /// The order this payment pays; both ids share one format, so this cannot fail.
    pub fn order_id(&self) -> OrderId {
        OrderId(self.0.clone())
    }
}

impl From<&OrderId> for PaymentId {
    fn from(order_id: &OrderId) -> Self {
        Self::for_order(order_id)
    }
}

/// 1-based position of a line in its order; reservations are keyed by (order id, line number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineNo(u32);

impl LineNo {
    /// Refuses 0, since positions are 1-based.
    pub fn new(value: u32) -> Result<Self, IdError> {
        if value == 0 {
            Err(IdError::Malformed {
                kind: IdKind::LineNo,
                value: "0".to_owned(),
                expected: "a 1-based line number",
            })
        } else {
            Ok(Self(value))
        }
    }

    /// The number as it travels on the wire.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Line numbers of an order are its 1-based positions, so a position maps to one.
    pub(crate) fn from_index(index: usize) -> Option<Self> {
        let one_based = index.checked_add(1)?;
        u32::try_from(one_based).ok().map(Self)
    }
}

impl fmt::Display for LineNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u32> for LineNo {
    type Error = IdError;
    fn try_from(value: u32) -> Result<Self, IdError> {
        Self::new(value)
    }
}

impl From<LineNo> for u32 {
    fn from(line_no: LineNo) -> u32 {
        line_no.0
    }
}

/// Why an amount of money was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Currencies are ISO-4217 alphabetic codes, so totals never mix units by accident.
    #[error("currency {currency:?} is not an ISO-4217 code (three upper-case ASCII letters)")]
    InvalidCurrency {
        /// The refused code, shortened.
        currency: String,
    },
    /// Prices and payments must move a positive amount.
    #[error("amount {amount_minor} must be greater than zero")]
    NotPositive {
        /// The refused amount in minor units.
        amount_minor: i64,
    },
}

/// True for three upper-case ASCII letters, the shape of an ISO-4217 alphabetic code.
pub fn is_valid_currency(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// An amount in integer minor units (cents) so arithmetic is exact.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Money {
    /// Amount in the currency's minor unit, e.g. 1999 for 19.99.
    pub amount_minor: i64,
    /// ISO-4217 alphabetic code, e.g. `EUR`.
    pub currency: String,
}

impl Money {
    /// Validates the currency code; any amount is allowed, positivity is a per-use rule.
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Result<Self, MoneyError> {
        let money = Self {
            amount_minor,
            currency: currency.into(),
        };
        money.check_currency()?;
        Ok(money)
    }

    /// Validates the currency and a positive amount, as prices and payments require.
    pub fn positive(amount_minor: i64, currency: impl Into<String>) -> Result<Self, MoneyError> {
        let money = Self::new(amount_minor, currency)?;
        money.check_positive()?;
        Ok(money)
    }

    /// Checks the currency code of a value whose fields were set directly.
    pub fn check_currency(&self) -> Result<(), MoneyError> {
        if is_valid_currency(&self.currency) {
            Ok(())
        } else {
            Err(MoneyError::InvalidCurrency {
                currency: excerpt(&self.currency),
            })
        }
    }

    /// Checks the amount is above zero.
    pub fn check_positive(&self) -> Result<(), MoneyError> {
        if self.amount_minor > 0 {
            Ok(())
        } else {
            Err(MoneyError::NotPositive {
                amount_minor: self.amount_minor,
            })
        }
    }

    /// `self × quantity`, or `None` on overflow.
    pub fn checked_mul(&self, quantity: u32) -> Option<Self> {
        self.amount_minor
            .checked_mul(i64::from(quantity))
            .map(|amount_minor| Self {
                amount_minor,
                currency: self.currency.clone(),
            })
    }

    /// `self + other`, or `None` on overflow or when the currencies differ.
    pub fn checked_add(&self, other: &Self) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount_minor| Self {
                amount_minor,
                currency: self.currency.clone(),
            })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_documented_shape_and_refuses_others() {
        assert!(Sku::new("SKU-000042").is_ok());
        assert!(Sku::new("a.b_c-1").is_ok());
        assert_eq!(Sku::new(""), Err(IdError::Empty { kind: IdKind::Sku }));
        assert!(matches!(
            Sku::new("x".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(Sku::new("x".repeat(64)).is_ok());
        assert!(matches!(Sku::new("a b"), Err(IdError::Malformed { .. })));
        assert!(matches!(Sku::new("é"), Err(IdError::Malformed { .. })));
    }

    #[test]
    fn order_id_is_lower_case_hyphenated_uuid() {
        assert!(OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789abc").is_ok());
        assert!(OrderId::new("0190C7A2-1B2C-7D3E-8F40-123456789ABC").is_err());
        assert!(OrderId::new("0190c7a21b2c7d3e8f40123456789abc").is_err());
        assert!(OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789ab").is_err());
        assert!(OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789abg").is_err());
        assert!(OrderId::new("").is_err());
    }

    #[test]
    fn payment_id_equals_its_order_id() {
        let order = OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789abc").expect("valid");
        let payment = PaymentId::for_order(&order);
        assert_eq!(payment.as_str(), order.as_str());
        assert_eq!(payment.order_id(), order);
    }

    #[test]
    fn customer_id_accepts_uuid_and_tokens() {
        assert!(CustomerId::new("0190C7A2-1B2C-7D3E-8F40-123456789ABC").is_ok());
        assert!(CustomerId::new("auth0|123").is_err());
        assert!(CustomerId::new("user_42").is_ok());
    }

    #[test]
    fn line_numbers_are_one_based() {
        assert!(LineNo::new(0).is_err());
        assert_eq!(LineNo::new(3).map(LineNo::get), Ok(3));
        assert_eq!(LineNo::from_index(0), LineNo::new(1).ok());
    }

    #[test]
    fn money_validates_currency_and_positivity() {
        assert!(Money::new(0, "EUR").is_ok());
        assert!(Money::new(10, "eur").is_err());
        assert!(Money::new(10, "EURO").is_err());
        assert!(Money::new(10, "€").is_err());
        assert_eq!(
            Money::positive(0, "EUR"),
            Err(MoneyError::NotPositive { amount_minor: 0 })
        );
        assert!(Money::positive(1, "USD").is_ok());
    }

    #[test]
    fn money_arithmetic_refuses_overflow_and_mixed_currencies() {
        let eur = Money::new(i64::MAX, "EUR").expect("valid");
        assert_eq!(eur.checked_mul(2), None);
        assert_eq!(eur.checked_mul(1), Some(eur.clone()));
        let usd = Money::new(1, "USD").expect("valid");
        assert_eq!(usd.checked_add(&eur), None);
        assert_eq!(eur.checked_add(&Money::new(1, "EUR").expect("valid")), None);
    }

    #[test]
    fn excerpt_cuts_on_char_boundaries() {
        let long = "é".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), 81);
        assert_eq!(excerpt("short"), "short");
    }
}
