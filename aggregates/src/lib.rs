//! Pure domain of streamcart: the catalog, inventory, orders and payments aggregates.
//!
//! # Layout
//!
//! - [`aggregate`]: the [`Aggregate`] and [`Rejection`] traits every aggregate implements
//!   ([`Aggregate::replay`] rebuilds a state from its history).
//! - [`values`]: money, ids and line numbers shared by every context.
//! - [`catalog`], [`inventory`], [`orders`], [`payments`]: one aggregate each, every one with the
//!   same files — `commands`, `events`, `state` (folded by `evolve`), `decide` (all invariants)
//!   and `errors` (rejections with stable codes).
//! - `testing` (tests, or the `testing` feature): a given / when / then harness shared by all
//!   aggregates. Each aggregate module also has `tests` (given / when / then for every command
//!   path) and `properties` (random command sequences, invariants checked after every step). The
//!   four wired together by the real saga reactions are tested where those live
//!   (`streamcart-processors`, `saga::properties`).
//!
//! Everything here is synchronous and free of I/O, clocks and randomness: `decide` sees only the
//! state, the command and an explicit context (a price book, a payment policy), so the Kafka
//! runtime, an in-process driver and the tests all run exactly the same rules.
//!
//! Commands carry validated id newtypes; free-form values (names, categories, money, quantities)
//! are validated by `decide` so a bad value is answered with the aggregate's rejection code. The
//! one exception is `CreateProduct::sku`, a plain string, because creation is where a sku is
//! first checked (`product.invalid_sku`).
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

/// Implements `From<Record>` for the enum variant of the same name, so `record.into()` works.
macro_rules! into_enum {
    ($enum:ident: $($variant:ident),+ $(,)?) => {
        $(
            impl From<$variant> for $enum {
                fn from(value: $variant) -> Self {
                    $enum::$variant(value)
                }
            }
        )+
    };
}
pub(crate) use into_enum;

pub mod aggregate;
pub mod catalog;
pub mod inventory;
pub mod orders;
pub mod payments;
pub mod values;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use aggregate::{Aggregate, AggregateState, Rejection};
pub use catalog::Product;
pub use inventory::Stock;
pub use orders::Order;
pub use payments::Payment;
