//! Given / when / then for every command path of `Product`.

use super::*;
use crate::testing::given;
use crate::values::{Money, Sku};

fn eur(amount: i64) -> Money {
    Money {
        amount_minor: amount,
        currency: "EUR".to_owned(),
    }
}

fn sku() -> Sku {
    Sku::new("SKU-000042").expect("valid sku")
}

fn create(name: &str, category: &str, price: Money) -> ProductCommand {
    CreateProduct {
        sku: "SKU-000042".to_owned(),
        name: name.to_owned(),
        category: category.to_owned(),
        price,
    }
    .into()
}

fn created() -> ProductEvent {
    ProductCreated {
        sku: sku(),
        name: "Kettle".to_owned(),
        category: "kitchen".to_owned(),
        price: eur(1999),
    }
    .into()
}

fn discontinued() -> ProductEvent {
    ProductDiscontinued.into()
}

fn rename(name: &str) -> ProductCommand {
    RenameProduct {
        name: name.to_owned(),
    }
    .into()
}

fn change_price(price: Money) -> ProductCommand {
    ChangePrice { price }.into()
}

fn change_category(category: &str) -> ProductCommand {
    ChangeCategory {
        category: category.to_owned(),
    }
    .into()
}

#[test]
fn create_emits_product_created() {
    let state = given::<Product>(&[])
        .when(create("Kettle", "kitchen", eur(1999)))
        .then(&[created()]);
    assert!(!crate::AggregateState::is_new(&state));
}

#[test]
fn create_twice_is_refused() {
    given::<Product>(&[created()])
        .when(create("Kettle", "kitchen", eur(1999)))
        .then_rejected("product.already_exists");
}

#[test]
fn create_refuses_malformed_sku() {
    let mut command = CreateProduct {
        sku: "SKU 42".to_owned(),
        name: "Kettle".to_owned(),
        category: "kitchen".to_owned(),
        price: eur(1),
    };
    given::<Product>(&[])
        .when(command.clone().into())
        .then_rejected("product.invalid_sku");
    command.sku = String::new();
    given::<Product>(&[])
        .when(command.into())
        .then_rejected("product.invalid_sku");
}

#[test]
fn create_refuses_empty_blank_or_long_names() {
    for name in ["", "   ", &"n".repeat(201)] {
        given::<Product>(&[])
            .when(create(name, "kitchen", eur(1)))
            .then_rejected("product.invalid_name");
    }
    given::<Product>(&[])
        .when(create(&"ñ".repeat(200), "kitchen", eur(1)))
        .then(&[ProductCreated {
            sku: sku(),
            name: "ñ".repeat(200),
            category: "kitchen".to_owned(),
            price: eur(1),
        }
        .into()]);
}

#[test]
fn create_refuses_empty_or_long_categories() {
    for category in ["", "\t", &"c".repeat(101)] {
        given::<Product>(&[])
            .when(create("Kettle", category, eur(1)))
            .then_rejected("product.invalid_category");
    }
}

#[test]
fn create_refuses_non_positive_prices() {
    for amount in [0, -1, i64::MIN] {
        given::<Product>(&[])
            .when(create("Kettle", "kitchen", eur(amount)))
            .then_rejected("product.invalid_price");
    }
}

#[test]
fn create_refuses_non_iso_currencies() {
    for currency in ["eur", "EURO", "E1R", "", "€"] {
        let price = Money {
            amount_minor: 100,
            currency: currency.to_owned(),
        };
        given::<Product>(&[])
            .when(create("Kettle", "kitchen", price))
            .then_rejected("product.invalid_currency");
    }
}

#[test]
fn rename_emits_product_renamed() {
    let state = given::<Product>(&[created()])
        .when(rename("Electric kettle"))
        .then(&[ProductRenamed {
            name: "Electric kettle".to_owned(),
        }
        .into()]);
    assert_eq!(
        state.product.map(|p| p.name),
        Some("Electric kettle".to_owned())
    );
}

#[test]
fn rename_to_the_same_name_changes_nothing() {
    given::<Product>(&[created()])
        .when(rename("Kettle"))
        .then_no_events();
}

#[test]
fn rename_needs_a_live_product_and_a_valid_name() {
    given::<Product>(&[])
        .when(rename("Kettle"))
        .then_rejected("product.not_found");
    given::<Product>(&[created(), discontinued()])
        .when(rename("Other"))
        .then_rejected("product.discontinued");
    given::<Product>(&[created()])
        .when(rename(""))
        .then_rejected("product.invalid_name");
}

#[test]
fn change_price_emits_product_price_changed() {
    let state = given::<Product>(&[created()])
        .when(change_price(eur(2499)))
        .then(&[ProductPriceChanged { price: eur(2499) }.into()]);
    assert_eq!(state.product.map(|p| p.price), Some(eur(2499)));
}

#[test]
fn change_price_to_another_currency_is_a_change() {
    let usd = Money::new(1999, "USD").expect("valid");
    given::<Product>(&[created()])
        .when(change_price(usd.clone()))
        .then(&[ProductPriceChanged { price: usd }.into()]);
}

#[test]
fn change_price_to_the_same_price_changes_nothing() {
    given::<Product>(&[created()])
        .when(change_price(eur(1999)))
        .then_no_events();
}

#[test]
fn change_price_refusals() {
    given::<Product>(&[])
        .when(change_price(eur(1)))
        .then_rejected("product.not_found");
    given::<Product>(&[created(), discontinued()])
        .when(change_price(eur(1)))
        .then_rejected("product.discontinued");
    given::<Product>(&[created()])
        .when(change_price(eur(0)))
        .then_rejected("product.invalid_price");
    given::<Product>(&[created()])
        .when(change_price(Money {
            amount_minor: 5,
            currency: "xx".to_owned(),
        }))
        .then_rejected("product.invalid_currency");
}

#[test]
fn change_category_carries_both_sides() {
    let state = given::<Product>(&[created()])
        .when(change_category("appliances"))
        .then(&[ProductCategoryChanged {
            from: "kitchen".to_owned(),
            to: "appliances".to_owned(),
        }
        .into()]);
    assert_eq!(
        state.product.map(|p| p.category),
        Some("appliances".to_owned())
    );
}

#[test]
fn change_category_to_the_same_category_changes_nothing() {
    given::<Product>(&[created()])
        .when(change_category("kitchen"))
        .then_no_events();
}

#[test]
fn change_category_refusals() {
    given::<Product>(&[])
        .when(change_category("x"))
        .then_rejected("product.not_found");
    given::<Product>(&[created(), discontinued()])
        .when(change_category("x"))
        .then_rejected("product.discontinued");
    given::<Product>(&[created()])
        .when(change_category(&"c".repeat(101)))
        .then_rejected("product.invalid_category");
}

#[test]
fn discontinue_emits_product_discontinued_once() {
    let state = given::<Product>(&[created()])
        .when(DiscontinueProduct.into())
        .then(&[discontinued()]);
    assert_eq!(state.product.map(|p| p.discontinued), Some(true));
    given::<Product>(&[created(), discontinued()])
        .when(DiscontinueProduct.into())
        .then_no_events();
}

#[test]
fn discontinue_needs_a_product() {
    given::<Product>(&[])
        .when(DiscontinueProduct.into())
        .then_rejected("product.not_found");
}

#[test]
fn rejections_have_human_messages() {
    let rejection = given::<Product>(&[created()])
        .when(change_price(eur(-5)))
        .then_rejected("product.invalid_price");
    assert_eq!(
        rejection.to_string(),
        "invalid price: amount -5 must be greater than zero"
    );
}

#[test]
fn evolve_ignores_changes_to_a_missing_product() {
    let state = Product::replay(&[ProductRenamed {
        name: "x".to_owned(),
    }
    .into()]);
    assert!(crate::AggregateState::is_new(&state));
}
