//! Random command sequences against `Product`, checking the catalog invariants after every step.

use proptest::prelude::*;

use super::*;
use crate::aggregate::{Aggregate, AggregateState};
use crate::values::{Money, is_valid_currency};

fn money() -> impl Strategy<Value = Money> {
    (
        prop_oneof![Just(0i64), Just(-1), 1i64..5_000, Just(i64::MAX)],
        prop_oneof![Just("EUR"), Just("USD"), Just("eur"), Just("")],
    )
        .prop_map(|(amount_minor, currency)| Money {
            amount_minor,
            currency: currency.to_owned(),
        })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        "[a-z]{1,8}",
        Just("x".repeat(150)),
        Just("x".repeat(201)),
    ]
}

fn command() -> impl Strategy<Value = ProductCommand> {
    prop_oneof![
        (
            prop_oneof![Just("SKU-1".to_owned()), Just("bad sku".to_owned())],
            text(),
            text(),
            money()
        )
            .prop_map(|(sku, name, category, price)| CreateProduct {
                sku,
                name,
                category,
                price
            }
            .into()),
        text().prop_map(|name| RenameProduct { name }.into()),
        money().prop_map(|price| ChangePrice { price }.into()),
        text().prop_map(|category| ChangeCategory { category }.into()),
        Just(DiscontinueProduct.into()),
    ]
}

fn check_invariants(state: &ProductState) -> Result<(), TestCaseError> {
    if let Some(p) = &state.product {
        prop_assert!(p.price.amount_minor > 0);
        prop_assert!(is_valid_currency(&p.price.currency));
        prop_assert!(validate_name(&p.name).is_ok());
        prop_assert!(validate_category(&p.category).is_ok());
    }
    Ok(())
}

proptest! {
    #[test]
    fn invariants_hold_after_every_step(commands in prop::collection::vec(command(), 1..40)) {
        let mut state = ProductState::default();
        let mut history = Vec::new();
        for command in &commands {
            let was_discontinued = state.product.as_ref().is_some_and(|p| p.discontinued);
            match Product::decide(&state, command, &()) {
                Ok(events) => {
                    if was_discontinued {
                        prop_assert!(events.is_empty(), "a discontinued product changed: {events:?}");
                    }
                    for event in &events {
                        if matches!(event, ProductEvent::ProductCreated(_)) {
                            prop_assert!(state.is_new());
                        }
                        state = Product::evolve(state, event);
                        check_invariants(&state)?;
                    }
                    history.extend(events);
                }
                Err(_) => check_invariants(&state)?,
            }
            if was_discontinued {
                prop_assert!(state.product.as_ref().is_some_and(|p| p.discontinued));
            }
        }
        prop_assert_eq!(Product::replay(&history), state);
    }
}
