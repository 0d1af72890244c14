//! Rules of the `Product` aggregate; every invariant of the catalog is checked here.

use super::commands::ProductCommand;
use super::errors::ProductRejection;
use super::events::{
    ProductCategoryChanged, ProductCreated, ProductDiscontinued, ProductEvent, ProductPriceChanged,
    ProductRenamed,
};
use super::state::{ProductRecord, ProductState};
use crate::values::{Money, Sku};

/// Longest product name, in characters, so listings and caches stay bounded.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest category, in characters; categories are also partition keys of listings.
pub const MAX_CATEGORY_CHARS: usize = 100;

fn check_text(value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if value.trim().is_empty() {
        Err("must not be empty or blank".to_owned())
    } else if chars > max {
        Err(format!("{chars} characters; at most {max} are allowed"))
    } else {
        Ok(())
    }
}

/// Checks a product name: 1..=200 characters, not blank.
pub fn validate_name(name: &str) -> Result<(), ProductRejection> {
    check_text(name, MAX_NAME_CHARS).map_err(|reason| ProductRejection::InvalidName { reason })
}

/// Checks a category: 1..=100 characters, not blank.
pub fn validate_category(category: &str) -> Result<(), ProductRejection> {
    check_text(category, MAX_CATEGORY_CHARS)
        .map_err(|reason| ProductRejection::InvalidCategory { reason })
}

/// Currency first, so a price in a bogus currency is reported as such whatever its amount.
fn validate_price(price: &Money) -> Result<(), ProductRejection> {
    price.check_currency()?;
    price.check_positive()?;
    Ok(())
}

/// Changes need an existing product that is still on sale.
fn live(state: &ProductState) -> Result<&ProductRecord, ProductRejection> {
    match &state.product {
        None => Err(ProductRejection::NotFound),
        Some(p) if p.discontinued => Err(ProductRejection::Discontinued {
            sku: p.sku.as_str().to_owned(),
        }),
        Some(p) => Ok(p),
    }
}

pub(super) fn decide(
    state: &ProductState,
    command: &ProductCommand,
) -> Result<Vec<ProductEvent>, ProductRejection> {
    match command {
        ProductCommand::CreateProduct(c) => {
            if let Some(p) = &state.product {
                return Err(ProductRejection::AlreadyExists {
                    sku: p.sku.as_str().to_owned(),
                });
            }
            let sku = Sku::new(c.sku.as_str())?;
            validate_name(&c.name)?;
            validate_category(&c.category)?;
            validate_price(&c.price)?;
            Ok(vec![
                ProductCreated {
                    sku,
                    name: c.name.clone(),
                    category: c.category.clone(),
                    price: c.price.clone(),
                }
                .into(),
            ])
        }
        ProductCommand::RenameProduct(c) => {
            let p = live(state)?;
            validate_name(&c.name)?;
            if p.name == c.name {
                return Ok(vec![]);
            }
            Ok(vec![
                ProductRenamed {
                    name: c.name.clone(),
                }
                .into(),
            ])
        }
        ProductCommand::ChangePrice(c) => {
            let p = live(state)?;
            validate_price(&c.price)?;
            if p.price == c.price {
                return Ok(vec![]);
            }
            Ok(vec![
                ProductPriceChanged {
                    price: c.price.clone(),
                }
                .into(),
            ])
        }
        ProductCommand::ChangeCategory(c) => {
            let p = live(state)?;
            validate_category(&c.category)?;
            if p.category == c.category {
                return Ok(vec![]);
            }
            Ok(vec![
                ProductCategoryChanged {
                    from: p.category.clone(),
                    to: c.category.clone(),
                }
                .into(),
            ])
        }
        ProductCommand::DiscontinueProduct(_) => match &state.product {
            None => Err(ProductRejection::NotFound),
            Some(p) if p.discontinued => Ok(vec![]),
            Some(_) => Ok(vec![ProductDiscontinued.into()]),
        },
    }
}
