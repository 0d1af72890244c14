//! The orders context's local copy of the catalog: each product's current price and whether it
//! is discontinued, built from `ProductCreated`, `ProductPriceChanged` and `ProductDiscontinued`.
//! Orders are priced from it, never by asking the catalog.
//!
//! Each field remembers the product version it reflects and refuses older ones, so a replay or an
//! at-least-once redelivery never moves an entry backwards. A product is never un-discontinued,
//! so that flag only ever turns on.

use std::collections::BTreeMap;

use streamcart_aggregates::catalog::ProductEvent;
use streamcart_aggregates::orders::{CatalogEntry, PriceBook};
use streamcart_aggregates::values::{Money, Sku};
use streamcart_schemas::envelope::EventEnvelope;

/// What the copy holds for one sku, with the product versions it reflects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopiedProduct {
    /// Latest known price; `None` until a creation or price change was seen.
    pub price: Option<Money>,
    /// Product version that set `price` (0 = none).
    pub price_version: u64,
    /// Once true, stays true.
    pub discontinued: bool,
    /// Highest product version applied to this entry.
    pub version: u64,
}

/// Catalog prices and discontinued flags as the orders context sees them; a [`PriceBook`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogCopy {
    products: BTreeMap<Sku, CopiedProduct>,
}

impl CatalogCopy {
    /// An empty copy: every sku is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one catalog event; returns whether the copy changed.
    ///
    /// An event at or below the version a field already reflects is ignored for that field.
    pub fn apply(&mut self, event: &EventEnvelope<ProductEvent>) -> bool {
        let sku = match &event.payload {
            ProductEvent::ProductCreated(created) => created.sku.clone(),
            // The key names the product for the other events; a key that is not a sku cannot
            // have come from the catalog processor.
            _ => match Sku::new(event.aggregate_id.as_str()) {
                Ok(sku) => sku,
                Err(_) => return false,
            },
        };
        let entry = self.products.entry(sku).or_default();
        let before = entry.clone();
        match &event.payload {
            ProductEvent::ProductCreated(e) => set_price(entry, &e.price, event.version),
            ProductEvent::ProductPriceChanged(e) => set_price(entry, &e.price, event.version),
            ProductEvent::ProductDiscontinued(_) => entry.discontinued = true,
            ProductEvent::ProductRenamed(_) | ProductEvent::ProductCategoryChanged(_) => {}
        }
        entry.version = entry.version.max(event.version);
        *entry != before
    }

    /// What the copy holds for one sku, with versions.
    pub fn get(&self, sku: &Sku) -> Option<&CopiedProduct> {
        self.products.get(sku)
    }

    /// Every sku the copy has heard of, in sku order.
    pub fn iter(&self) -> impl Iterator<Item = (&Sku, &CopiedProduct)> + '_ {
        self.products.iter()
    }

    /// Number of skus the copy has heard of.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// True before any catalog event was applied.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }
}

fn set_price(entry: &mut CopiedProduct, price: &Money, version: u64) {
    if version > entry.price_version {
        entry.price = Some(price.clone());
        entry.price_version = version;
    }
}

impl PriceBook for CatalogCopy {
    fn lookup(&self, sku: &Sku) -> Option<CatalogEntry> {
        let product = self.products.get(sku)?;
        // Without a price the product cannot be ordered yet; it is as good as unknown.
        let price = product.price.clone()?;
        Some(CatalogEntry {
            price,
            discontinued: product.discontinued,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::fixtures::*;
    use streamcart_aggregates::catalog::{ProductCategoryChanged, ProductRenamed};

    fn entry(amount_minor: i64, discontinued: bool) -> Option<CatalogEntry> {
        Some(CatalogEntry {
            price: eur(amount_minor),
            discontinued,
        })
    }

    #[test]
    fn unknown_skus_are_not_in_the_book() {
        let copy = CatalogCopy::new();
        assert_eq!(copy.lookup(&sku("SKU-A")), None);
        assert!(copy.is_empty());
    }

    #[test]
    fn creation_price_changes_and_discontinuation_are_followed() {
        let mut copy = CatalogCopy::new();
        assert!(copy.apply(&product_event("SKU-A", 1, product_created("SKU-A", 1_000))));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_000, false));
        assert!(copy.apply(&product_event("SKU-A", 2, price_changed(1_200))));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_200, false));
        assert!(copy.apply(&product_event("SKU-A", 3, discontinued())));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_200, true));
        assert_eq!(copy.get(&sku("SKU-A")).map(|p| p.version), Some(3));
        assert_eq!(copy.lookup(&sku("SKU-B")), None);
    }

    #[test]
    fn names_and_categories_do_not_matter_to_orders() {
        let mut copy = CatalogCopy::new();
        copy.apply(&product_event("SKU-A", 1, product_created("SKU-A", 1_000)));
        let renamed = ProductRenamed { name: "new".into() };
        assert!(copy.apply(&product_event("SKU-A", 2, renamed)));
        let moved = ProductCategoryChanged {
            from: "things".into(),
            to: "stuff".into(),
        };
        copy.apply(&product_event("SKU-A", 3, moved));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_000, false));
        assert_eq!(copy.get(&sku("SKU-A")).map(|p| p.version), Some(3));
    }

    #[test]
    fn a_redelivered_older_price_never_moves_the_entry_back() {
        let mut copy = CatalogCopy::new();
        let created = product_event("SKU-A", 1, product_created("SKU-A", 1_000));
        let cheaper = product_event("SKU-A", 2, price_changed(800));
        let dearer = product_event("SKU-A", 3, price_changed(1_500));
        for e in [&created, &cheaper, &dearer] {
            copy.apply(e);
        }
        // A replay from an older offset delivers everything again.
        assert!(!copy.apply(&created));
        assert!(!copy.apply(&cheaper));
        assert!(!copy.apply(&dearer));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_500, false));
    }

    #[test]
    fn out_of_order_delivery_ends_in_the_same_entry() {
        let events = [
            product_event("SKU-A", 1, product_created("SKU-A", 1_000)),
            product_event("SKU-A", 2, price_changed(800)),
            product_event("SKU-A", 3, discontinued()),
        ];
        let mut in_order = CatalogCopy::new();
        for e in &events {
            in_order.apply(e);
        }
        for order in [[2, 1, 0], [1, 2, 0], [2, 0, 1], [0, 2, 1]] {
            let mut copy = CatalogCopy::new();
            for i in order {
                copy.apply(&events[i]);
            }
            assert_eq!(copy, in_order, "{order:?}");
        }
    }

    #[test]
    fn a_discontinued_product_stays_discontinued() {
        let mut copy = CatalogCopy::new();
        copy.apply(&product_event("SKU-A", 1, product_created("SKU-A", 1_000)));
        copy.apply(&product_event("SKU-A", 2, discontinued()));
        assert!(!copy.apply(&product_event("SKU-A", 2, discontinued())));
        copy.apply(&product_event("SKU-A", 1, product_created("SKU-A", 1_000)));
        assert_eq!(copy.lookup(&sku("SKU-A")), entry(1_000, true));
    }

    #[test]
    fn an_event_keyed_by_no_sku_is_ignored() {
        let mut copy = CatalogCopy::new();
        assert!(!copy.apply(&product_event("not a sku", 1, price_changed(10))));
        assert!(copy.is_empty());
    }
}
