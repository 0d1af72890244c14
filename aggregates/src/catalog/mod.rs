//! Catalog context: the `Product` aggregate, keyed by [`Sku`](crate::values::Sku).
//!
//! Products are created, renamed, repriced, recategorised and discontinued. Orders never read
//! this aggregate directly: they price from a local copy built from its events.

mod commands;
mod decide;
mod errors;
mod events;
mod state;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;

pub use commands::{
    ChangeCategory, ChangePrice, CreateProduct, DiscontinueProduct, ProductCommand, RenameProduct,
};
pub use decide::{MAX_CATEGORY_CHARS, MAX_NAME_CHARS, validate_category, validate_name};
pub use errors::ProductRejection;
pub use events::{
    ProductCategoryChanged, ProductCreated, ProductDiscontinued, ProductEvent, ProductPriceChanged,
    ProductRenamed,
};
pub use state::{ProductRecord, ProductState};

use crate::aggregate::Aggregate;

/// The catalog aggregate; a marker type that ties its command, event and state types together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Product;

impl Aggregate for Product {
    type State = ProductState;
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Rejection = ProductRejection;
    type Context = ();
    const NAME: &'static str = "product";

    fn decide(
        state: &ProductState,
        command: &ProductCommand,
        _ctx: &(),
    ) -> Result<Vec<ProductEvent>, ProductRejection> {
        decide::decide(state, command)
    }

    fn evolve(state: ProductState, event: &ProductEvent) -> ProductState {
        state.evolve(event)
    }
}
