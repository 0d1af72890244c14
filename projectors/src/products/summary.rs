//! The public product summary (`catalog.product.summary`, compacted, keyed by sku): the flat
//! shape Kafka Connect sinks copy into other systems.

use streamcart_schemas::summary::ProductSummary;

use crate::model::ProductRow;

/// The summary record of a product row.
pub fn product_summary(row: &ProductRow) -> ProductSummary {
    ProductSummary {
        sku: row.sku.clone(),
        name: row.name.clone(),
        category: row.category.clone(),
        price_minor: row.price_minor,
        currency: row.currency.clone(),
        discontinued: row.discontinued,
        updated_at: row.updated_at,
        version: i64::try_from(row.version).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_copy_the_row() {
        let row = ProductRow {
            sku: "SKU-1".into(),
            name: "Kettle".into(),
            category: "kitchen".into(),
            price_minor: 1999,
            currency: "EUR".into(),
            discontinued: true,
            version: 7,
            updated_at: 1_700_000_000_000,
        };
        let s = product_summary(&row);
        assert_eq!(
            (s.sku.as_str(), s.name.as_str(), s.category.as_str()),
            ("SKU-1", "Kettle", "kitchen")
        );
        assert_eq!((s.price_minor, s.currency.as_str()), (1999, "EUR"));
        assert!(s.discontinued);
        assert_eq!((s.version, s.updated_at), (7, 1_700_000_000_000));
    }
}
