//! Where a single-line order's time goes: the records it moves through from placement to
//! confirmation, the instant each became visible to a `read_committed` reader in this process,
//! and the hops between consecutive records, each taken by one role.
//!
//! Instants are taken when the reader received a record, not from the `occurred_at` the system
//! stamped: what counts is when the next role could have seen it, and every instant comes from
//! one clock.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use streamcart_aggregates::inventory::{StockCommand, StockEvent};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent};
use streamcart_aggregates::payments::{PaymentCommand, PaymentEvent};
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope};

use crate::harness::percentile;

/// One record on a single-line order's way to confirmation, in causal order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// The bench's `PlaceOrder` on the order commands.
    PlaceOrder,
    /// `OrderPlaced` on the order events.
    OrderPlaced,
    /// The saga's `ReserveStock` on the stock commands (keyed by SKU).
    ReserveStock,
    /// `StockReserved` on the stock events (keyed by SKU).
    StockReserved,
    /// The saga's `RecordLineReserved` on the order commands.
    RecordLineReserved,
    /// `OrderLineReserved` on the order events.
    OrderLineReserved,
    /// `OrderAwaitingPayment` on the order events.
    OrderAwaitingPayment,
    /// The saga's `AuthorizePayment` on the payment commands.
    AuthorizePayment,
    /// `PaymentAuthorized` on the payment events.
    PaymentAuthorized,
    /// The saga's `ConfirmOrder` on the order commands.
    ConfirmOrder,
    /// `OrderConfirmed` on the order events.
    OrderConfirmed,
}

/// How many stages an order passes.
pub const STAGES: usize = 11;

impl Stage {
    /// Every stage, in causal order.
    pub const ALL: [Stage; STAGES] = [
        Stage::PlaceOrder,
        Stage::OrderPlaced,
        Stage::ReserveStock,
        Stage::StockReserved,
        Stage::RecordLineReserved,
        Stage::OrderLineReserved,
        Stage::OrderAwaitingPayment,
        Stage::AuthorizePayment,
        Stage::PaymentAuthorized,
        Stage::ConfirmOrder,
        Stage::OrderConfirmed,
    ];

    /// The record's name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::PlaceOrder => "PlaceOrder",
            Stage::OrderPlaced => "OrderPlaced",
            Stage::ReserveStock => "ReserveStock",
            Stage::StockReserved => "StockReserved",
            Stage::RecordLineReserved => "RecordLineReserved",
            Stage::OrderLineReserved => "OrderLineReserved",
            Stage::OrderAwaitingPayment => "OrderAwaitingPayment",
            Stage::AuthorizePayment => "AuthorizePayment",
            Stage::PaymentAuthorized => "PaymentAuthorized",
            Stage::ConfirmOrder => "ConfirmOrder",
            Stage::OrderConfirmed => "OrderConfirmed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The time from one record becoming visible to another, and who is between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The earlier record.
    pub from: Stage,
    /// The later record.
    pub to: Stage,
    /// The role whose consume-decide-commit loop the hop measures.
    pub by: &'static str,
}

impl Hop {
    /// `From → To`.
    pub fn label(&self) -> String {
        format!("{} → {}", self.from.name(), self.to.name())
    }
}

/// Every consecutive hop of a confirmed single-line order.
pub const HOPS: [Hop; STAGES - 1] = [
    hop(Stage::PlaceOrder, Stage::OrderPlaced, "order processor"),
    hop(Stage::OrderPlaced, Stage::ReserveStock, "saga"),
    hop(Stage::ReserveStock, Stage::StockReserved, "stock processor"),
    hop(Stage::StockReserved, Stage::RecordLineReserved, "saga"),
    hop(
        Stage::RecordLineReserved,
        Stage::OrderLineReserved,
        "order processor",
    ),
    // Both events come from one decision, in one transaction: this hop is the reader's view of
    // a single commit and should stay near zero.
    hop(
        Stage::OrderLineReserved,
        Stage::OrderAwaitingPayment,
        "order processor (same transaction)",
    ),
    hop(Stage::OrderAwaitingPayment, Stage::AuthorizePayment, "saga"),
    hop(
        Stage::AuthorizePayment,
        Stage::PaymentAuthorized,
        "payment processor",
    ),
    hop(Stage::PaymentAuthorized, Stage::ConfirmOrder, "saga"),
    hop(
        Stage::ConfirmOrder,
        Stage::OrderConfirmed,
        "order processor",
    ),
];

/// The latency the benchmark has always reported: from `OrderPlaced` to `OrderConfirmed`.
pub const END_TO_END: Hop = hop(Stage::OrderPlaced, Stage::OrderConfirmed, "end to end");

const fn hop(from: Stage, to: Stage, by: &'static str) -> Hop {
    Hop { from, to, by }
}

/// When each order's records became visible, by order id.
#[derive(Debug, Default)]
pub struct Journeys {
    seen: HashMap<String, [Option<Instant>; STAGES]>,
    reached: [usize; STAGES],
}

impl Journeys {
    /// Notes that `order`'s record of `stage` became visible at `at`. Only the first sighting
    /// counts: a later one is a redelivery (a reader rebalanced) or a second line's record, and
    /// either would hide the time the next role could first have acted.
    pub fn observe(&mut self, order: &str, stage: Stage, at: Instant) {
        let slots = match self.seen.get_mut(order) {
            Some(slots) => slots,
            None => self.seen.entry(order.to_owned()).or_default(),
        };
        let slot = &mut slots[stage.index()];
        if slot.is_none() {
            *slot = Some(at);
            self.reached[stage.index()] += 1;
        }
    }

    /// How many orders have had their record of `stage` seen.
    pub fn reached(&self, stage: Stage) -> usize {
        self.reached[stage.index()]
    }

    /// When `order`'s record of `stage` was first seen.
    pub fn at(&self, order: &str, stage: Stage) -> Option<Instant> {
        self.seen.get(order).and_then(|s| s[stage.index()])
    }

    /// The hop's duration in milliseconds for each of `orders` with both records seen. Negative
    /// where the later record reached this reader first: its partitions were fetched sooner.
    pub fn millis(&self, orders: &[String], hop: &Hop) -> Vec<f64> {
        orders
            .iter()
            .filter_map(|id| {
                let slots = self.seen.get(id)?;
                let (from, to) = (slots[hop.from.index()]?, slots[hop.to.index()]?);
                Some(signed_millis(from, to))
            })
            .collect()
    }

    /// Of `orders`, those whose record of `until` has not been seen, counted by the furthest
    /// stage seen (`None`: no record of the order seen at all).
    pub fn short_of(&self, orders: &[String], until: Stage) -> BTreeMap<Option<Stage>, usize> {
        let mut out = BTreeMap::new();
        for id in orders {
            let slots = self.seen.get(id);
            if slots.is_some_and(|s| s[until.index()].is_some()) {
                continue;
            }
            let furthest = slots.and_then(|s| {
                Stage::ALL
                    .iter()
                    .rev()
                    .find(|stage| s[stage.index()].is_some())
                    .copied()
            });
            *out.entry(furthest).or_default() += 1;
        }
        out
    }
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_millis(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1_000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1_000.0),
    }
}

/// Says where orders short of a stage are, e.g. "12 last seen at StockReserved, 3 never seen".
pub fn describe_short(short: &BTreeMap<Option<Stage>, usize>) -> String {
    let parts: Vec<String> = short
        .iter()
        .rev()
        .map(|(stage, n)| match stage {
            Some(stage) => format!("{n} last seen at {}", stage.name()),
            None => format!("{n} never seen"),
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// Percentiles of one hop's durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Orders measured.
    pub count: usize,
    /// Smallest; at or below zero when the later record reached the reader no later.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Summary {
    /// Nearest-rank percentiles of `samples`; `None` for no samples.
    pub fn of(mut samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        Some(Summary {
            count: samples.len(),
            min: samples[0],
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// The order and stage an order command stands for, if it is one of the confirmed path's.
pub fn order_command(c: &CommandEnvelope<OrderCommand>) -> Option<(&str, Stage)> {
    let stage = match c.payload {
        OrderCommand::PlaceOrder(_) => Stage::PlaceOrder,
        OrderCommand::RecordLineReserved(_) => Stage::RecordLineReserved,
        OrderCommand::ConfirmOrder(_) => Stage::ConfirmOrder,
        _ => return None,
    };
    Some((&c.aggregate_id, stage))
}

/// The order and stage an order event stands for, if it is one of the confirmed path's.
pub fn order_event(e: &EventEnvelope<OrderEvent>) -> Option<(&str, Stage)> {
    let stage = match e.payload {
        OrderEvent::OrderPlaced(_) => Stage::OrderPlaced,
        OrderEvent::OrderLineReserved(_) => Stage::OrderLineReserved,
        OrderEvent::OrderAwaitingPayment(_) => Stage::OrderAwaitingPayment,
        OrderEvent::OrderConfirmed(_) => Stage::OrderConfirmed,
        _ => return None,
    };
    Some((&e.aggregate_id, stage))
}

/// The order and stage of a stock command: the key is a SKU, so the order comes from the payload.
pub fn stock_command(c: &CommandEnvelope<StockCommand>) -> Option<(&str, Stage)> {
    match &c.payload {
        StockCommand::ReserveStock(r) => Some((r.order_id.as_str(), Stage::ReserveStock)),
        _ => None,
    }
}

/// The order and stage of a stock event: the key is a SKU, so the order comes from the payload.
pub fn stock_event(e: &EventEnvelope<StockEvent>) -> Option<(&str, Stage)> {
    match &e.payload {
        StockEvent::StockReserved(r) => Some((r.order_id.as_str(), Stage::StockReserved)),
        _ => None,
    }
}

/// The order and stage of a payment command, from the payload (the key, the payment id, equals
/// the order id today, but the payload says so by contract).
pub fn payment_command(c: &CommandEnvelope<PaymentCommand>) -> Option<(&str, Stage)> {
    match &c.payload {
        PaymentCommand::AuthorizePayment(a) => Some((a.order_id.as_str(), Stage::AuthorizePayment)),
        _ => None,
    }
}

/// The order and stage of a payment event, from the payload.
pub fn payment_event(e: &EventEnvelope<PaymentEvent>) -> Option<(&str, Stage)> {
    match &e.payload {
        PaymentEvent::PaymentAuthorized(a) => Some((a.order_id.as_str(), Stage::PaymentAuthorized)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamcart_aggregates::inventory::{ReceiveStock, StockReserved};
    use streamcart_aggregates::orders::{ConfirmOrder, OrderLineReserved};
    use streamcart_aggregates::payments::PaymentAuthorized;
    use streamcart_aggregates::values::{LineNo, Money, OrderId, PaymentId};
    use uuid::Uuid;

    use super::*;

    const ORDER: &str = "3f0b6a52-8c1e-4a4e-9d7e-2f7f3c1d9a10";

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn event<E>(aggregate_id: &str, payload: E) -> EventEnvelope<E> {
        EventEnvelope {
            event_id: Uuid::nil(),
            aggregate_id: aggregate_id.to_owned(),
            version: 1,
            occurred_at: 0,
            causation_id: Uuid::nil(),
            correlation_id: String::new(),
            payload,
        }
    }

    fn command<C>(aggregate_id: &str, payload: C) -> CommandEnvelope<C> {
        CommandEnvelope {
            command_id: Uuid::nil(),
            aggregate_id: aggregate_id.to_owned(),
            expected_version: None,
            issued_at: 0,
            correlation_id: String::new(),
            payload,
        }
    }

    fn order_id() -> OrderId {
        OrderId::new(ORDER).expect("a valid order id")
    }

    fn line() -> LineNo {
        LineNo::new(1).expect("a valid line number")
    }

    #[test]
    fn hops_chain_every_stage_in_order() {
        for (hop, pair) in HOPS.iter().zip(Stage::ALL.windows(2)) {
            assert_eq!((hop.from, hop.to), (pair[0], pair[1]));
        }
        assert_eq!(Stage::ALL.len(), HOPS.len() + 1);
    }

    #[test]
    fn hops_are_measured_per_order_from_interleaved_sightings() {
        let t0 = Instant::now();
        let mut j = Journeys::default();
        // Two orders whose records arrive interleaved, as a reader of several topics sees them.
        j.observe("a", Stage::OrderPlaced, t0);
        j.observe("b", Stage::OrderPlaced, t0 + ms(1));
        j.observe("b", Stage::ReserveStock, t0 + ms(4));
        j.observe("a", Stage::ReserveStock, t0 + ms(10));
        j.observe("a", Stage::OrderConfirmed, t0 + ms(100));
        let hop = HOPS[1];
        assert_eq!(j.millis(&ids(&["a", "b"]), &hop), vec![10.0, 3.0]);
        // Only orders with both ends seen count.
        assert_eq!(j.millis(&ids(&["a", "b"]), &END_TO_END), vec![100.0]);
        assert!(j.millis(&ids(&["unknown"]), &hop).is_empty());
        assert_eq!(j.reached(Stage::OrderPlaced), 2);
        assert_eq!(j.reached(Stage::OrderConfirmed), 1);
    }

    #[test]
    fn the_first_sighting_of_a_stage_counts() {
        let t0 = Instant::now();
        let mut j = Journeys::default();
        j.observe("a", Stage::OrderPlaced, t0);
        j.observe("a", Stage::ReserveStock, t0 + ms(5));
        // A redelivery after a rebalance.
        j.observe("a", Stage::ReserveStock, t0 + ms(50));
        assert_eq!(j.millis(&ids(&["a"]), &HOPS[1]), vec![5.0]);
        assert_eq!(j.reached(Stage::ReserveStock), 1);
        assert_eq!(j.at("a", Stage::ReserveStock), Some(t0 + ms(5)));
    }

    #[test]
    fn a_later_record_seen_first_gives_a_negative_hop() {
        let t0 = Instant::now();
        let mut j = Journeys::default();
        j.observe("a", Stage::ReserveStock, t0);
        j.observe("a", Stage::OrderPlaced, t0 + ms(2));
        assert_eq!(j.millis(&ids(&["a"]), &HOPS[1]), vec![-2.0]);
    }

    #[test]
    fn orders_short_of_a_stage_are_counted_by_their_furthest_record() {
        let t0 = Instant::now();
        let mut j = Journeys::default();
        for (id, last) in [
            ("a", Stage::StockReserved),
            ("b", Stage::StockReserved),
            ("c", Stage::OrderConfirmed),
            ("d", Stage::OrderPlaced),
        ] {
            for stage in Stage::ALL.iter().take_while(|s| **s <= last) {
                j.observe(id, *stage, t0);
            }
        }
        let short = j.short_of(&ids(&["a", "b", "c", "d", "e"]), Stage::OrderConfirmed);
        assert_eq!(
            short,
            BTreeMap::from([
                (None, 1),
                (Some(Stage::OrderPlaced), 1),
                (Some(Stage::StockReserved), 2)
            ])
        );
        assert_eq!(
            describe_short(&short),
            "2 last seen at StockReserved, 1 last seen at OrderPlaced, 1 never seen"
        );
        assert_eq!(describe_short(&BTreeMap::new()), "none");
    }

    #[test]
    fn summary_takes_nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(samples).expect("samples");
        assert_eq!(
            s,
            Summary {
                count: 100,
                min: 1.0,
                p50: 50.0,
                p90: 90.0,
                p99: 99.0,
                max: 100.0
            }
        );
        let one = Summary::of(vec![7.5]).expect("one sample");
        assert_eq!((one.p50, one.p99, one.max), (7.5, 7.5, 7.5));
        assert_eq!(Summary::of(Vec::new()), None);
    }

    #[test]
    fn stock_records_are_correlated_by_the_order_in_their_payload() {
        let reserve = command(
            "SKU-3",
            StockCommand::ReserveStock(streamcart_aggregates::inventory::ReserveStock {
                order_id: order_id(),
                line_no: line(),
                quantity: 1,
            }),
        );
        assert_eq!(stock_command(&reserve), Some((ORDER, Stage::ReserveStock)));
        let reserved = event(
            "SKU-3",
            StockEvent::StockReserved(StockReserved {
                order_id: order_id(),
                line_no: line(),
                quantity: 1,
            }),
        );
        assert_eq!(stock_event(&reserved), Some((ORDER, Stage::StockReserved)));
        let receive = command(
            "SKU-3",
            StockCommand::ReceiveStock(ReceiveStock { quantity: 5 }),
        );
        assert_eq!(stock_command(&receive), None);
    }

    #[test]
    fn order_and_payment_records_map_to_their_stages() {
        let recorded = event(
            ORDER,
            OrderEvent::OrderLineReserved(OrderLineReserved { line_no: line() }),
        );
        assert_eq!(
            order_event(&recorded),
            Some((ORDER, Stage::OrderLineReserved))
        );
        let confirm = command(
            ORDER,
            OrderCommand::ConfirmOrder(ConfirmOrder {
                payment_id: PaymentId::for_order(&order_id()),
            }),
        );
        assert_eq!(order_command(&confirm), Some((ORDER, Stage::ConfirmOrder)));
        let authorized = event(
            "payment-key",
            PaymentEvent::PaymentAuthorized(PaymentAuthorized {
                order_id: order_id(),
                amount: Money::new(1_000, "EUR").expect("money"),
                authorization_code: "auth".into(),
            }),
        );
        assert_eq!(
            payment_event(&authorized),
            Some((ORDER, Stage::PaymentAuthorized))
        );
    }
}
