//! Events of the `Product` aggregate, one struct per Avro record.

use crate::values::{Money, Sku};

/// A product now exists, with validated fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCreated {
    /// Product key.
    pub sku: Sku,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Positive price.
    pub price: Money,
}

/// The product's display name changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRenamed {
    /// New display name.
    pub name: String,
}

/// The product's price changed; orders' local price copies follow this event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPriceChanged {
    /// New positive price.
    pub price: Money,
}

/// The product moved category; both sides are carried so listings can drop the old entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCategoryChanged {
    /// Previous category.
    pub from: String,
    /// New category.
    pub to: String,
}

/// The product can no longer be ordered or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProductDiscontinued;

/// Every event of the `Product` aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductEvent {
    /// See [`ProductCreated`].
    ProductCreated(ProductCreated),
    /// See [`ProductRenamed`].
    ProductRenamed(ProductRenamed),
    /// See [`ProductPriceChanged`].
    ProductPriceChanged(ProductPriceChanged),
    /// See [`ProductCategoryChanged`].
    ProductCategoryChanged(ProductCategoryChanged),
    /// See [`ProductDiscontinued`].
    ProductDiscontinued(ProductDiscontinued),
}

impl ProductEvent {
    /// Record name, for logs and telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            ProductEvent::ProductCreated(_) => "ProductCreated",
            ProductEvent::ProductRenamed(_) => "ProductRenamed",
            ProductEvent::ProductPriceChanged(_) => "ProductPriceChanged",
            ProductEvent::ProductCategoryChanged(_) => "ProductCategoryChanged",
            ProductEvent::ProductDiscontinued(_) => "ProductDiscontinued",
        }
    }
}

crate::into_enum!(ProductEvent: ProductCreated, ProductRenamed, ProductPriceChanged, ProductCategoryChanged, ProductDiscontinued);
