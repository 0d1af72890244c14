//! The flash sale's ledger: what the saga's invariants need, folded from the stock, order and
//! payment event topics (without the processors' code), shared by the tests that run a sale.

use std::collections::{BTreeMap, HashMap, HashSet};

use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::{CancelReason, OrderEvent};
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_schemas::envelope::EventEnvelope;

/// Everything the checks need, folded from the three event topics.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Units received per SKU.
    pub received: BTreeMap<String, u64>,
    /// Units committed (sold) per SKU.
    pub sold: BTreeMap<String, u64>,
    /// Units reserved and not yet committed or released, per SKU.
    pub reserved_now: BTreeMap<String, i64>,
    /// (order, line) → reservation effects: reserved, released, committed.
    pub reservations: HashMap<(String, u32), (u32, u32, u32)>,
    /// SKUs whose available units went negative at some event.
    pub negative_available: Vec<String>,
    /// Each order's last status (`open`, `confirmed`, `cancelled:<reason>`, `expired`).
    pub final_status: HashMap<String, String>,
    /// Cancelled orders per reason.
    pub cancel_reasons: BTreeMap<String, usize>,
    /// Lines (sku, line, quantity) of each confirmed order.
    pub confirmed_lines: HashMap<String, Vec<(String, u32, u32)>>,
    /// Orders whose payment was authorized.
    pub authorized: HashSet<String>,
    /// Refunds per order.
    pub refunds: HashMap<String, u32>,
    /// Orders that asked for a refund of a late authorization.
    pub refund_required: HashSet<String>,
    /// OrderPlaced events.
    pub placed: usize,
}

/// Asserts every event id is unique and versions are gap-free per aggregate.
pub fn check_versions<E>(events: &[EventEnvelope<E>], what: &str) {
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut ids = HashSet::new();
    for e in events {
        assert!(
            ids.insert(e.event_id),
            "{what}: event {} appears twice (a command applied twice)",
            e.event_id
        );
        let v = versions.entry(e.aggregate_id.as_str()).or_insert(0);
        assert_eq!(
            e.version,
            *v + 1,
            "{what} {}: versions gap-free",
            e.aggregate_id
        );
        *v = e.version;
    }
}

/// Folds the three event topics into what the invariants need.
pub fn fold(
    stock: &[EventEnvelope<StockEvent>],
    orders: &[EventEnvelope<OrderEvent>],
    payments: &[EventEnvelope<PaymentEvent>],
) -> Ledger {
    let mut l = Ledger::default();
    let mut available: HashMap<String, i64> = HashMap::new();
    for e in stock {
        let sku = e.aggregate_id.clone();
        let avail = available.entry(sku.clone()).or_insert(0);
        match &e.payload {
            StockEvent::StockReceived(r) => {
                *l.received.entry(sku).or_default() += u64::from(r.quantity);
                *avail += i64::from(r.quantity);
            }
            StockEvent::StockReserved(r) => {
                *avail -= i64::from(r.quantity);
                if *avail < 0 {
                    l.negative_available.push(sku.clone());
                }
                *l.reserved_now.entry(sku).or_default() += i64::from(r.quantity);
                l.reservations
                    .entry((r.order_id.as_str().to_owned(), r.line_no.get()))
                    .or_default()
                    .0 += 1;
            }
            StockEvent::StockReleased(r) => {
                *avail += i64::from(r.quantity);
                *l.reserved_now.entry(sku).or_default() -= i64::from(r.quantity);
                l.reservations
                    .entry((r.order_id.as_str().to_owned(), r.line_no.get()))
                    .or_default()
                    .1 += 1;
            }
            StockEvent::StockCommitted(r) => {
                *l.reserved_now.entry(sku.clone()).or_default() -= i64::from(r.quantity);
                *l.sold.entry(sku).or_default() += u64::from(r.quantity);
                l.reservations
                    .entry((r.order_id.as_str().to_owned(), r.line_no.get()))
                    .or_default()
                    .2 += 1;
            }
            StockEvent::StockReservationRejected(_) => {}
        }
    }
    for e in orders {
        let id = e.aggregate_id.clone();
        match &e.payload {
            OrderEvent::OrderPlaced(_) => {
                l.placed += 1;
                l.final_status.insert(id, "open".into());
            }
            OrderEvent::OrderConfirmed(c) => {
                l.final_status.insert(id.clone(), "confirmed".into());
                l.confirmed_lines.insert(
                    id,
                    c.lines
                        .iter()
                        .map(|r| (r.sku.as_str().to_owned(), r.line_no.get(), r.quantity))
                        .collect(),
                );
            }
            OrderEvent::OrderCancelled(c) => {
                let reason = match c.reason {
                    CancelReason::StockUnavailable => "stock_unavailable",
                    CancelReason::PaymentDeclined => "payment_declined",
                    CancelReason::CustomerRequested => "customer_requested",
                };
                l.final_status.insert(id, format!("cancelled:{reason}"));
            }
            OrderEvent::OrderExpired(_) => {
                l.final_status.insert(id, "expired".into());
            }
            OrderEvent::OrderPaymentRefundRequired(_) => {
                l.refund_required.insert(id);
            }
            _ => {}
        }
    }
    for s in l.final_status.values() {
        if let Some(reason) = s.strip_prefix("cancelled:") {
            *l.cancel_reasons.entry(reason.to_owned()).or_default() += 1;
        }
    }
    for e in payments {
        match &e.payload {
            PaymentEvent::PaymentAuthorized(a) => {
                l.authorized.insert(a.order_id.as_str().to_owned());
            }
            PaymentEvent::PaymentRefunded(r) => {
                *l.refunds.entry(r.order_id.as_str().to_owned()).or_default() += 1;
            }
            PaymentEvent::PaymentDeclined(_) => {}
        }
    }
    l
}

/// True once every placed order is closed, nothing is reserved and every late payment refunded.
pub fn settled(l: &Ledger, expected_orders: usize) -> bool {
    l.placed == expected_orders
        && l.final_status.values().all(|s| s != "open")
        && l.reserved_now.values().all(|r| *r == 0)
        && l.refund_required
            .iter()
            .all(|o| l.refunds.get(o) == Some(&1))
}

/// Asserts the flash sale's invariants: every order placed once and closed, available never
/// negative, no oversell, every reservation committed or released exactly once, every late
/// authorization refunded exactly once.
pub fn assert_sale_invariants(
    l: &Ledger,
    orders: usize,
    skus: &[String],
    hot: &str,
    hot_units: u32,
) {
    assert_eq!(l.placed, orders, "every order was placed once");
    let open: Vec<_> = l
        .final_status
        .iter()
        .filter(|(_, s)| *s == "open")
        .collect();
    assert!(
        open.is_empty(),
        "{} orders never closed, e.g. {:?}",
        open.len(),
        open.first()
    );
    assert!(
        l.negative_available.is_empty(),
        "available went negative on {:?}",
        l.negative_available
    );
    // No oversell: sold units are exactly the units on confirmed lines, never more than received.
    let mut on_confirmed: BTreeMap<String, u64> = BTreeMap::new();
    for lines in l.confirmed_lines.values() {
        for (sku, _, qty) in lines {
            *on_confirmed.entry(sku.clone()).or_default() += u64::from(*qty);
        }
    }
    for sku in skus {
        let sold = l.sold.get(sku).copied().unwrap_or(0);
        assert_eq!(
            sold,
            on_confirmed.get(sku).copied().unwrap_or(0),
            "{sku}: sold == units on confirmed lines"
        );
        assert!(
            sold <= l.received.get(sku).copied().unwrap_or(0),
            "{sku}: no oversell"
        );
        assert_eq!(
            l.reserved_now.get(sku).copied().unwrap_or(0),
            0,
            "{sku}: nothing left reserved"
        );
    }
    assert!(l.sold.get(hot).copied().unwrap_or(0) <= u64::from(hot_units));
    // Reservations: confirmed orders' lines committed once; closed orders' lines released once.
    for ((order, line), (reserved, released, committed)) in &l.reservations {
        assert!(*reserved <= 1, "{order}/{line} reserved {reserved} times");
        match l.final_status.get(order).map(String::as_str) {
            Some("confirmed") => assert_eq!(
                (*released, *committed),
                (0, 1),
                "{order}/{line} of a confirmed order"
            ),
            _ => assert_eq!(
                (*released, *committed),
                (*reserved, 0),
                "{order}/{line} of a closed order released exactly once"
            ),
        }
    }
    // Payments: every authorization of an order that did not confirm was refunded exactly once.
    for order in &l.authorized {
        let refunds = l.refunds.get(order).copied().unwrap_or(0);
        if l.final_status.get(order).map(String::as_str) == Some("confirmed") {
            assert_eq!(refunds, 0, "{order}: confirmed orders keep their payment");
        } else {
            assert_eq!(
                refunds, 1,
                "{order}: late authorization refunded exactly once"
            );
        }
    }
    for (order, n) in &l.refunds {
        assert_eq!(*n, 1, "{order}: refunded {n} times");
    }
}
