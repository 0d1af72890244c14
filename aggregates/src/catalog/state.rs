//! State of the `Product` aggregate, folded from its events.

use super::events::ProductEvent;
use crate::aggregate::AggregateState;
use crate::values::{Money, Sku};

/// A product as its events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// Product key.
    pub sku: Sku,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Current price.
    pub price: Money,
    /// Once true, stays true: no further changes are accepted.
    pub discontinued: bool,
}

/// `None` until `ProductCreated`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductState {
    /// The product, once created.
    pub product: Option<ProductRecord>,
}

impl AggregateState for ProductState {
    fn is_new(&self) -> bool {
        self.product.is_none()
    }
}

impl ProductState {
    /// Applies one event; events for a product that does not exist yet are ignored.
    pub fn evolve(mut self, event: &ProductEvent) -> Self {
        match (event, self.product.as_mut()) {
            (ProductEvent::ProductCreated(e), _) => {
                self.product = Some(ProductRecord {
                    sku: e.sku.clone(),
                    name: e.name.clone(),
                    category: e.category.clone(),
                    price: e.price.clone(),
                    discontinued: false,
                });
            }
            (ProductEvent::ProductRenamed(e), Some(p)) => p.name.clone_from(&e.name),
            (ProductEvent::ProductPriceChanged(e), Some(p)) => p.price.clone_from(&e.price),
            (ProductEvent::ProductCategoryChanged(e), Some(p)) => p.category.clone_from(&e.to),
            (ProductEvent::ProductDiscontinued(_), Some(p)) => p.discontinued = true,
            (_, None) => {}
        }
        self
    }
}
