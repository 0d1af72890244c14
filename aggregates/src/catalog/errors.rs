//! Why the `Product` aggregate refuses a command.

use crate::aggregate::Rejection;
use crate::values::{IdError, MoneyError};

/// A refused product command; codes are stable, messages are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductRejection {
    /// Creation is not an upsert: a second create would silently overwrite the first.
    #[error("product {sku} already exists")]
    AlreadyExists {
        /// The existing product.
        sku: String,
    },
    /// Any change needs a product to change.
    #[error("product does not exist")]
    NotFound,
    /// Discontinued products are frozen.
    #[error("product {sku} is discontinued")]
    Discontinued {
        /// The frozen product.
        sku: String,
    },
    /// The sku is not a valid product key.
    #[error("invalid sku: {0}")]
    InvalidSku(IdError),
    /// Names must be 1..=200 characters and not blank.
    #[error("invalid name: {reason}")]
    InvalidName {
        /// What is wrong with it.
        reason: String,
    },
    /// Categories must be 1..=100 characters and not blank.
    #[error("invalid category: {reason}")]
    InvalidCategory {
        /// What is wrong with it.
        reason: String,
    },
    /// Prices must be above zero.
    #[error("invalid price: {0}")]
    InvalidPrice(MoneyError),
    /// Prices need an ISO-4217 currency.
    #[error("invalid price: {0}")]
    InvalidCurrency(MoneyError),
}

impl ProductRejection {
    /// Sorts a money error into the price or the currency code.
    pub fn from_money(error: MoneyError) -> Self {
        match error {
            MoneyError::InvalidCurrency { .. } => ProductRejection::InvalidCurrency(error),
            MoneyError::NotPositive { .. } => ProductRejection::InvalidPrice(error),
        }
    }
}

impl From<MoneyError> for ProductRejection {
    fn from(error: MoneyError) -> Self {
        Self::from_money(error)
    }
}

impl From<IdError> for ProductRejection {
    fn from(error: IdError) -> Self {
        ProductRejection::InvalidSku(error)
    }
}

impl Rejection for ProductRejection {
    fn code(&self) -> &'static str {
        match self {
            ProductRejection::AlreadyExists { .. } => "product.already_exists",
            ProductRejection::NotFound => "product.not_found",
            ProductRejection::Discontinued { .. } => "product.discontinued",
            ProductRejection::InvalidSku(_) => "product.invalid_sku",
            ProductRejection::InvalidName { .. } => "product.invalid_name",
            ProductRejection::InvalidCategory { .. } => "product.invalid_category",
            ProductRejection::InvalidPrice(_) => "product.invalid_price",
            ProductRejection::InvalidCurrency(_) => "product.invalid_currency",
        }
    }
}
