//! Products by id and by category, from `catalog.product.events`.

use streamcart_aggregates::catalog::ProductEvent;
use streamcart_schemas::EventEnvelope;

use crate::model::ProductRow;
use crate::projection::{Mutation, Projection, is_newer};

/// The product read model (products by id and by category).
#[derive(Debug, Clone, Copy, Default)]
pub struct Products;

impl Projection for Products {
    const NAME: &'static str = "products";
    type Event = ProductEvent;
    type Row = ProductRow;

    fn project(current: Option<&ProductRow>, event: &EventEnvelope<ProductEvent>) -> Vec<Mutation> {
        project_product(current, event)
    }

    fn upserted(mutation: &Mutation) -> Option<&ProductRow> {
        match mutation {
            Mutation::UpsertProduct(row) => Some(row),
            _ => None,
        }
    }
}

/// The writes that bring `current` up to `e`. A product event other than `ProductCreated` with
/// no row yet yields nothing: its name, category and price are unknown, so there is no row to
/// write (the consumer reads partitions in order, so this only happens on a corrupt history).
pub fn project_product(
    current: Option<&ProductRow>,
    e: &EventEnvelope<ProductEvent>,
) -> Vec<Mutation> {
    if !is_newer(current.map(|row| row.version), e.version) {
        return Vec::new();
    }
    let next = match (&e.payload, current) {
        (ProductEvent::ProductCreated(created), _) => ProductRow {
            sku: created.sku.as_str().to_owned(),
            name: created.name.clone(),
            category: created.category.clone(),
            price_minor: created.price.amount_minor,
            currency: created.price.currency.clone(),
            discontinued: false,
            version: e.version,
            updated_at: e.occurred_at,
        },
        (_, None) => return Vec::new(),
        (ProductEvent::ProductRenamed(renamed), Some(row)) => ProductRow {
            name: renamed.name.clone(),
            ..bumped(row, e)
        },
        (ProductEvent::ProductPriceChanged(changed), Some(row)) => ProductRow {
            price_minor: changed.price.amount_minor,
            currency: changed.price.currency.clone(),
            ..bumped(row, e)
        },
        (ProductEvent::ProductCategoryChanged(changed), Some(row)) => ProductRow {
            category: changed.to.clone(),
            ..bumped(row, e)
        },
        (ProductEvent::ProductDiscontinued(_), Some(row)) => ProductRow {
            discontinued: true,
            ..bumped(row, e)
        },
    };

    // Every category the product may still be listed under, other than the new one, loses its
    // entry: the row's own category, and the event's `from` in case the row lagged behind it.
    let mut left: Vec<&str> = Vec::new();
    if let Some(row) = current {
        left.push(&row.category);
    }
    if let ProductEvent::ProductCategoryChanged(changed) = &e.payload {
        left.push(&changed.from);
    }
    left.sort_unstable();
    left.dedup();

    let mut mutations: Vec<Mutation> = left
        .into_iter()
        .filter(|category| *category != next.category)
        .map(|category| Mutation::RemoveFromCategory {
            category: category.to_owned(),
            sku: next.sku.clone(),
            version: e.version,
        })
        .collect();
    mutations.push(Mutation::UpsertProduct(next));
    mutations
}

/// `row` moved to the event's version and time, before the event's own change.
fn bumped(row: &ProductRow, e: &EventEnvelope<ProductEvent>) -> ProductRow {
    ProductRow {
        version: e.version,
        updated_at: e.occurred_at,
        ..row.clone()
    }
}

#[cfg(test)]
mod tests {
    use streamcart_aggregates::catalog::{
        ProductCategoryChanged, ProductCreated, ProductDiscontinued, ProductPriceChanged,
        ProductRenamed,
    };
    use streamcart_aggregates::values::{Money, Sku};

    use super::*;
    use crate::projection::fold;
    use crate::testing::{at, envelope};

    const SKU: &str = "SKU-1";

    fn created(version: u64) -> EventEnvelope<ProductEvent> {
        envelope(
            SKU,
            version,
            ProductCreated {
                sku: Sku::new(SKU).expect("sku"),
                name: "Mug".into(),
                category: "kitchen".into(),
                price: Money::positive(1299, "EUR").expect("money"),
            },
        )
    }

    fn row_v1() -> ProductRow {
        ProductRow {
            sku: SKU.into(),
            name: "Mug".into(),
            category: "kitchen".into(),
            price_minor: 1299,
            currency: "EUR".into(),
            discontinued: false,
            version: 1,
            updated_at: at(1),
        }
    }

    fn moved(version: u64, from: &str, to: &str) -> EventEnvelope<ProductEvent> {
        envelope(
            SKU,
            version,
            ProductCategoryChanged {
                from: from.into(),
                to: to.into(),
            },
        )
    }

    fn history() -> Vec<EventEnvelope<ProductEvent>> {
        vec![
            created(1),
            envelope(
                SKU,
                2,
                ProductRenamed {
                    name: "Big mug".into(),
                },
            ),
            moved(3, "kitchen", "gifts"),
            envelope(
                SKU,
                4,
                ProductPriceChanged {
                    price: Money::positive(1499, "EUR").expect("money"),
                },
            ),
            envelope(SKU, 5, ProductDiscontinued),
        ]
    }

    #[test]
    fn given_nothing_when_created_then_the_product_is_listed_in_its_category() {
        let mutations = project_product(None, &created(1));
        assert_eq!(mutations, vec![Mutation::UpsertProduct(row_v1())]);
    }

    #[test]
    fn given_a_product_when_renamed_then_only_the_name_and_version_change() {
        let e = envelope(
            SKU,
            2,
            ProductRenamed {
                name: "Big mug".into(),
            },
        );
        let mutations = project_product(Some(&row_v1()), &e);
        let expected = ProductRow {
            name: "Big mug".into(),
            version: 2,
            updated_at: at(2),
            ..row_v1()
        };
        assert_eq!(mutations, vec![Mutation::UpsertProduct(expected)]);
    }

    #[test]
    fn given_a_product_when_its_price_changes_then_amount_and_currency_follow() {
        let e = envelope(
            SKU,
            2,
            ProductPriceChanged {
                price: Money::positive(999, "USD").expect("money"),
            },
        );
        let mutations = project_product(Some(&row_v1()), &e);
        let expected = ProductRow {
            price_minor: 999,
            currency: "USD".into(),
            version: 2,
            updated_at: at(2),
            ..row_v1()
        };
        assert_eq!(mutations, vec![Mutation::UpsertProduct(expected)]);
    }

    #[test]
    fn given_a_product_when_its_category_changes_then_the_old_listing_is_removed() {
        let mutations = project_product(Some(&row_v1()), &moved(2, "kitchen", "gifts"));
        let expected = ProductRow {
            category: "gifts".into(),
            version: 2,
            updated_at: at(2),
            ..row_v1()
        };
        assert_eq!(
            mutations,
            vec![
                Mutation::RemoveFromCategory {
                    category: "kitchen".into(),
                    sku: SKU.into(),
                    version: 2,
                },
                Mutation::UpsertProduct(expected),
            ]
        );
    }

    #[test]
    fn given_a_row_that_disagrees_with_from_when_moved_then_both_old_listings_are_removed() {
        let row = ProductRow {
            category: "attic".into(),
            ..row_v1()
        };
        let removed: Vec<String> = project_product(Some(&row), &moved(2, "kitchen", "gifts"))
            .into_iter()
            .filter_map(|m| match m {
                Mutation::RemoveFromCategory { category, .. } => Some(category),
                _ => None,
            })
            .collect();
        assert_eq!(removed, vec!["attic".to_owned(), "kitchen".to_owned()]);
    }

    #[test]
    fn given_a_product_when_discontinued_then_it_stays_listed_and_is_flagged() {
        let mutations = project_product(Some(&row_v1()), &envelope(SKU, 2, ProductDiscontinued));
        let expected = ProductRow {
            discontinued: true,
            version: 2,
            updated_at: at(2),
            ..row_v1()
        };
        assert_eq!(mutations, vec![Mutation::UpsertProduct(expected)]);
    }

    #[test]
    fn given_no_row_when_a_later_event_arrives_then_nothing_is_written() {
        assert!(project_product(None, &envelope(SKU, 2, ProductDiscontinued)).is_empty());
    }

    #[test]
    fn given_a_row_when_the_same_or_an_older_event_is_redelivered_then_nothing_is_written() {
        let row = ProductRow {
            version: 3,
            ..row_v1()
        };
        assert!(project_product(Some(&row), &created(1)).is_empty());
        assert!(project_product(Some(&row), &moved(3, "kitchen", "gifts")).is_empty());
    }

    #[test]
    fn every_mutation_carries_the_event_version() {
        let (_, mutations) = fold::<Products>(None, &history());
        let versions: Vec<u64> = mutations.iter().map(Mutation::version).collect();
        assert_eq!(versions, vec![1, 2, 3, 3, 4, 5]);
        assert!(mutations.iter().all(|m| m.aggregate_id() == SKU));
    }

    #[test]
    fn folding_twice_or_with_redeliveries_gives_the_same_row() {
        let events = history();
        let (once, _) = fold::<Products>(None, &events);
        let (twice, again) = fold::<Products>(once.clone(), &events);
        assert_eq!(once, twice);
        assert!(again.is_empty(), "a replay writes nothing");

        let mut redelivered = events.clone();
        redelivered.insert(3, events[1].clone());
        redelivered.push(events[0].clone());
        let (with_duplicates, _) = fold::<Products>(None, &redelivered);
        assert_eq!(with_duplicates, once);

        let expected = ProductRow {
            name: "Big mug".into(),
            category: "gifts".into(),
            price_minor: 1499,
            discontinued: true,
            version: 5,
            updated_at: at(5),
            ..row_v1()
        };
        assert_eq!(once, Some(expected));
    }
}
