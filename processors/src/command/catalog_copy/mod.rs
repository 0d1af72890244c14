//! The orders context's local copy of the catalog: each product's current price and whether it
//! is discontinued, built from `ProductCreated`, `ProductPriceChanged` and `ProductDiscontinued`.
//! Orders are priced from it, never by asking the catalog.
//!
//! Each field remembers the product version it reflects and refuses older ones, so a replay or an
//! at-least-once redelivery never moves an entry backwards. A product is never un-discontinued,
//! so that flag only ever turns on.
//!
//! [`CatalogFollower`] feeds records into the copy. A record that fails to decode for a transient
//! reason (the registry is down, slow or answering 5xx) is retried with bounded backoff and never
//! skipped: skipping it would price orders from a stale price for good. Only a record that can
//! never decode is skipped, logged and counted. [`kafka::follow_catalog`] runs it on the catalog
//! events topic.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use streamcart_aggregates::catalog::ProductEvent;
use streamcart_aggregates::orders::{CatalogEntry, PriceBook};
use streamcart_aggregates::values::{Money, Sku};
use streamcart_schemas::envelope::EventEnvelope;
use streamcart_schemas::error::{DecodeError, Disposition};

pub mod kafka;

pub use kafka::{SharedCatalog, follow_catalog};

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

/// Exponential backoff between retries of one record: doubles from `initial` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBackoff {
    /// Wait before the first retry.
    pub initial: Duration,
    /// Longest wait between two retries.
    pub max: Duration,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryBackoff {
    /// The wait before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What became of one catalog record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Decoded and applied (`changed`: whether the copy moved).
    Applied {
        /// Whether the copy changed.
        changed: bool,
    },
    /// Can never decode: skipped, logged and counted.
    Skipped,
    /// The follower was told to stop while the record still failed transiently; it was
    /// neither applied nor skipped, and must be read again by whoever follows next.
    Stopped,
}

/// Applies catalog records to a copy, retrying transient decode failures and counting the
/// records it had to skip.
#[derive(Debug, Default)]
pub struct CatalogFollower {
    backoff: RetryBackoff,
    skipped: u64,
    retries: u64,
}

impl CatalogFollower {
    /// A follower waiting `backoff` between retries of a record.
    pub fn new(backoff: RetryBackoff) -> Self {
        Self {
            backoff,
            skipped: 0,
            retries: 0,
        }
    }

    /// Records skipped because they can never decode.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Transient failures retried so far.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Decodes one record with `decode` (called again after each transient failure, with
    /// `sleep` between) and applies it to `copy`. Gives up only when `stop` says so.
    pub fn apply_record(
        &mut self,
        copy: &RwLock<CatalogCopy>,
        offset: i64,
        mut decode: impl FnMut() -> Result<EventEnvelope<ProductEvent>, DecodeError>,
        stop: impl Fn() -> bool,
        mut sleep: impl FnMut(Duration),
    ) -> RecordOutcome {
        let mut attempt = 0u32;
        loop {
            match decode() {
                Ok(event) => {
                    if attempt > 0 {
                        tracing::info!(offset, attempt, "catalog event decoded after retries");
                    }
                    // A poisoned lock still holds a consistent copy: every write is one apply.
                    let mut guard = copy.write().unwrap_or_else(|p| p.into_inner());
                    return RecordOutcome::Applied {
                        changed: guard.apply(&event),
                    };
                }
                Err(e) if e.disposition() == Disposition::DeadLetter => {
                    self.skipped += 1;
                    tracing::warn!(
                        offset,
                        error = %e,
                        skipped_total = self.skipped,
                        "undecodable catalog event skipped"
                    );
                    return RecordOutcome::Skipped;
                }
                Err(e) => {
                    if stop() {
                        return RecordOutcome::Stopped;
                    }
                    attempt = attempt.saturating_add(1);
                    self.retries += 1;
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(
                        offset,
                        attempt,
                        retry_in_ms = wait.as_millis() as u64,
                        error = %e,
                        "catalog event cannot be decoded now; retrying"
                    );
                    sleep(wait);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
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

    mod follower {
        use super::*;
        use std::cell::{Cell, RefCell};

        fn unavailable() -> DecodeError {
            DecodeError::RegistryUnavailable {
                id: 7,
                reason: "registry answered 500".into(),
            }
        }

        #[test]
        fn a_transient_failure_is_retried_with_growing_waits_until_it_decodes() {
            let copy = RwLock::new(CatalogCopy::new());
            let mut follower = CatalogFollower::new(RetryBackoff {
                initial: Duration::from_millis(100),
                max: Duration::from_millis(300),
            });
            let calls = Cell::new(0);
            let waits = RefCell::new(Vec::new());
            let outcome = follower.apply_record(
                &copy,
                5,
                || {
                    calls.set(calls.get() + 1);
                    if calls.get() <= 4 {
                        Err(unavailable())
                    } else {
                        Ok(product_event("SKU-A", 1, product_created("SKU-A", 1_000)))
                    }
                },
                || false,
                |d| waits.borrow_mut().push(d.as_millis()),
            );
            assert_eq!(outcome, RecordOutcome::Applied { changed: true });
            assert_eq!(calls.get(), 5);
            assert_eq!(*waits.borrow(), vec![100, 200, 300, 300]);
            assert_eq!(follower.retries(), 4);
            assert_eq!(follower.skipped(), 0);
            let read = copy.read().unwrap_or_else(|p| p.into_inner());
            assert_eq!(read.lookup(&sku("SKU-A")), entry(1_000, false));
        }

        #[test]
        fn a_record_that_can_never_decode_is_skipped_and_counted_without_retries() {
            let copy = RwLock::new(CatalogCopy::new());
            let mut follower = CatalogFollower::default();
            let calls = Cell::new(0);
            for offset in 0..2 {
                let outcome = follower.apply_record(
                    &copy,
                    offset,
                    || {
                        calls.set(calls.get() + 1);
                        Err(DecodeError::WrongMagicByte { found: 9 })
                    },
                    || false,
                    |_| panic!("a permanent failure is not waited on"),
                );
                assert_eq!(outcome, RecordOutcome::Skipped);
            }
            assert_eq!(calls.get(), 2);
            assert_eq!(follower.skipped(), 2);
            assert_eq!(follower.retries(), 0);
            assert!(copy.read().is_ok_and(|c| c.is_empty()));
        }

        #[test]
        fn stopping_ends_the_retries_without_skipping_the_record() {
            let copy = RwLock::new(CatalogCopy::new());
            let mut follower = CatalogFollower::default();
            let sleeps = Cell::new(0);
            let outcome = follower.apply_record(
                &copy,
                1,
                || Err(unavailable()),
                || sleeps.get() >= 3,
                |_| sleeps.set(sleeps.get() + 1),
            );
            assert_eq!(outcome, RecordOutcome::Stopped);
            assert_eq!(sleeps.get(), 3);
            assert_eq!(follower.skipped(), 0);
            assert!(copy.read().is_ok_and(|c| c.is_empty()));
        }

        #[test]
        fn backoff_doubles_and_stays_bounded() {
            let b = RetryBackoff::default();
            assert_eq!(b.delay(1), Duration::from_millis(100));
            assert_eq!(b.delay(2), Duration::from_millis(200));
            assert_eq!(b.delay(6), Duration::from_millis(3_200));
            assert_eq!(b.delay(7), Duration::from_secs(5));
            assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
        }
    }
}
