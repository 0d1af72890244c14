//! The read models a world's event topics imply (computed without the projection code), and
//! their comparison with the store.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use streamcart_aggregates::catalog::ProductEvent;
use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::{CancelReason, OrderEvent};
use streamcart_projectors::CassandraStore;
use streamcart_schemas::topics::Context;

use crate::world::World;

/// Expected rows, computed from the events without the projection code.
#[derive(Debug, Default)]
pub struct Expected {
    /// sku → (name, category, price, version).
    pub products: BTreeMap<String, (String, String, i64, u64)>,
    /// sku → (received, available, reserved, sold, version).
    pub stock: BTreeMap<String, (i64, i64, i64, i64, u64)>,
    /// order → (status, reason, total, version, customer).
    pub orders: BTreeMap<String, (String, Option<String>, i64, u64, String)>,
}

/// The read models the event topics imply.
pub fn expected(world: &World) -> Expected {
    let mut x = Expected::default();
    for e in world.events::<ProductEvent>(Context::Catalog) {
        let entry = x.products.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            ProductEvent::ProductCreated(c) => {
                *entry = (c.name.clone(), c.category.clone(), c.price.amount_minor, 0);
            }
            ProductEvent::ProductCategoryChanged(c) => entry.1 = c.to.clone(),
            ProductEvent::ProductRenamed(r) => entry.0 = r.name.clone(),
            ProductEvent::ProductPriceChanged(p) => entry.2 = p.price.amount_minor,
            ProductEvent::ProductDiscontinued(_) => {}
        }
        entry.3 = e.version;
    }
    for e in world.events::<StockEvent>(Context::Inventory) {
        let (received, available, reserved, sold, version) =
            x.stock.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            StockEvent::StockReceived(r) => {
                *received += i64::from(r.quantity);
                *available += i64::from(r.quantity);
            }
            StockEvent::StockReserved(r) => {
                *available -= i64::from(r.quantity);
                *reserved += i64::from(r.quantity);
            }
            StockEvent::StockReleased(r) => {
                *available += i64::from(r.quantity);
                *reserved -= i64::from(r.quantity);
            }
            StockEvent::StockCommitted(r) => {
                *reserved -= i64::from(r.quantity);
                *sold += i64::from(r.quantity);
            }
            StockEvent::StockReservationRejected(_) => {}
        }
        *version = e.version;
    }
    for e in world.events::<OrderEvent>(Context::Orders) {
        let entry = x.orders.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            OrderEvent::OrderPlaced(p) => {
                *entry = (
                    "placed".into(),
                    None,
                    p.total.amount_minor,
                    0,
                    p.customer_id.as_str().to_owned(),
                );
            }
            OrderEvent::OrderConfirmed(_) => entry.0 = "confirmed".into(),
            OrderEvent::OrderExpired(_) => entry.0 = "expired".into(),
            OrderEvent::OrderCancelled(c) => {
                entry.0 = "cancelled".into();
                entry.1 = Some(
                    match c.reason {
                        CancelReason::StockUnavailable => "stock_unavailable",
                        CancelReason::PaymentDeclined => "payment_declined",
                        CancelReason::CustomerRequested => "customer_requested",
                    }
                    .into(),
                );
            }
            _ => {}
        }
        entry.3 = e.version;
    }
    x
}

/// Compares the store with the expectation; returns the differences (empty when equal).
pub async fn differences(store: &CassandraStore, x: &Expected) -> Vec<String> {
    let mut diffs = Vec::new();
    for (sku, (name, category, price, version)) in &x.products {
        match store.product(sku).await.expect("read product") {
            Some(r)
                if (&r.name, &r.category, r.price_minor, r.version)
                    == (name, category, *price, *version) =>
            {
                let listed = store
                    .products_by_category(category, None, 1000)
                    .await
                    .expect("listing");
                if !listed
                    .items
                    .iter()
                    .any(|p| &p.sku == sku && p.version == *version)
                {
                    diffs.push(format!("{sku} missing from listing {category}"));
                }
            }
            other => diffs.push(format!("product {sku}: {other:?}")),
        }
    }
    for (sku, (received, available, reserved, sold, version)) in &x.stock {
        match store.stock(sku).await.expect("read stock") {
            Some(r)
                if (r.received, r.available, r.reserved, r.sold, r.version)
                    == (*received, *available, *reserved, *sold, *version) => {}
            other => diffs.push(format!("stock {sku}: {other:?}")),
        }
    }
    let mut by_customer: HashMap<&str, usize> = HashMap::new();
    for (id, (status, reason, total, version, customer)) in &x.orders {
        *by_customer.entry(customer.as_str()).or_default() += 1;
        match store.order(id).await.expect("read order") {
            Some(r)
                if r.status.as_str() == status.as_str()
                    || (status == "placed" && !r.status.is_final()) =>
            {
                if (&r.reason, r.total_minor, r.version) != (reason, *total, *version) {
                    diffs.push(format!(
                        "order {id}: {:?} {} {} vs {reason:?} {total} {version}",
                        r.reason, r.total_minor, r.version
                    ));
                }
            }
            other => diffs.push(format!("order {id}: {other:?} vs {status}")),
        }
    }
    for (customer, n) in by_customer {
        let page = store
            .orders_by_customer(customer, None, 1000)
            .await
            .expect("by customer");
        if page.items.len() != n {
            diffs.push(format!(
                "customer {customer}: {} orders listed, {n} expected",
                page.items.len()
            ));
        }
        if page
            .items
            .windows(2)
            .any(|w| w[0].placed_at < w[1].placed_at)
        {
            diffs.push(format!("customer {customer}: not newest first"));
        }
    }
    diffs
}

/// Waits until the store equals the events, or fails naming the differences.
pub async fn wait_equal(store: &CassandraStore, world: &World, what: &str) -> Expected {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let x = tokio::task::block_in_place(|| expected(world));
        let diffs = differences(store, &x).await;
        if diffs.is_empty() {
            return x;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: read models differ from the events: {:?}",
            &diffs[..diffs.len().min(5)]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
