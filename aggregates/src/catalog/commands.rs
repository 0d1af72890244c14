//! Commands of the `Product` aggregate, one struct per Avro record.

use crate::values::Money;

/// Creates a product; the sku arrives unchecked so a malformed one is answered with
/// `product.invalid_sku` instead of failing in the wire mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateProduct {
    /// Product key as sent; validated by `decide`.
    pub sku: String,
    /// Display name, 1..=200 characters, not blank.
    pub name: String,
    /// Category, 1..=100 characters, not blank.
    pub category: String,
    /// Price; must be positive with an ISO-4217 currency.
    pub price: Money,
}

/// Renames a product; renaming to the same name changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameProduct {
    /// New display name.
    pub name: String,
}

/// Reprices a product; the same price again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePrice {
    /// New price; must be positive with an ISO-4217 currency.
    pub price: Money,
}

/// Moves a product to another category; the same category again changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCategory {
    /// New category.
    pub category: String,
}

/// Withdraws a product from sale for good; discontinuing twice changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiscontinueProduct;

/// Every command the `Product` aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    /// See [`CreateProduct`].
    CreateProduct(CreateProduct),
    /// See [`RenameProduct`].
    RenameProduct(RenameProduct),
    /// See [`ChangePrice`].
    ChangePrice(ChangePrice),
    /// See [`ChangeCategory`].
    ChangeCategory(ChangeCategory),
    /// See [`DiscontinueProduct`].
    DiscontinueProduct(DiscontinueProduct),
}

impl ProductCommand {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            ProductCommand::CreateProduct(_) => "CreateProduct",
            ProductCommand::RenameProduct(_) => "RenameProduct",
            ProductCommand::ChangePrice(_) => "ChangePrice",
            ProductCommand::ChangeCategory(_) => "ChangeCategory",
            ProductCommand::DiscontinueProduct(_) => "DiscontinueProduct",
        }
    }
}

crate::into_enum!(ProductCommand: CreateProduct, RenameProduct, ChangePrice, ChangeCategory, DiscontinueProduct);
