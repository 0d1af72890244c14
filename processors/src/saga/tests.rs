//! The saga end to end, in process: the four command processors (in-process drivers), the
//! reactions, the deadline table and the catalog copy, joined by a message pump that delivers
//! events and commands in random order, some twice, some replayed long after, some after an
//! aborted attempt. Whatever the interleaving, the invariants of the flash sale must hold.

use std::collections::{BTreeMap, BTreeSet};

use streamcart_aggregates::catalog::{
    ChangePrice, CreateProduct, DiscontinueProduct, Product, ProductCommand,
};
use streamcart_aggregates::inventory::{ReceiveStock, Stock, StockCommand, StockEvent};
use streamcart_aggregates::orders::{
    CancelReason, Order, OrderCommand, OrderEvent, OrderLineRequest, OrderStatus, PlaceOrder,
    PriceBook,
};
use streamcart_aggregates::payments::{Payment, PaymentEvent, PaymentPolicy};
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, Sku};
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope, Outcome};
use uuid::Uuid;

use super::*;
use crate::command::catalog_copy::CatalogCopy;
use crate::command::driver::InProcessDriver;
use crate::fixtures;

// ---------------------------------------------------------------------------------------------
// Dispatch and determinism of the reactions as a whole.

#[test]
fn each_source_dispatches_to_every_row_of_the_routing_table() {
    let names: Vec<&str> = ORDER_REACTIONS
        .iter()
        .map(|r| r.name)
        .chain(STOCK_REACTIONS.iter().map(|r| r.name))
        .chain(PAYMENT_REACTIONS.iter().map(|r| r.name))
        .collect();
    assert_eq!(
        names,
        vec![
            "reserve_stock_on_order_placed",
            "authorize_payment_on_order_awaiting_payment",
            "commit_stock_on_order_confirmed",
            "release_stock_on_order_closed",
            "release_stock_on_late_reservation",
            "refund_payment_on_late_authorization",
            "record_reservation_on_stock_reserved",
            "record_rejection_on_stock_rejected",
            "confirm_order_on_payment_authorized",
            "cancel_order_on_payment_declined",
        ]
    );
    let routed: Vec<(&str, Vec<&str>)> = fixtures::every_order_event()
        .iter()
        .map(|e| {
            (
                e.payload.name(),
                react_to_order_event(e)
                    .iter()
                    .map(SagaCommand::name)
                    .collect(),
            )
        })
        .chain(fixtures::every_stock_event().iter().map(|e| {
            (
                e.payload.name(),
                react_to_stock_event(e)
                    .iter()
                    .map(SagaCommand::name)
                    .collect(),
            )
        }))
        .chain(fixtures::every_payment_event().iter().map(|e| {
            (
                e.payload.name(),
                react_to_payment_event(e)
                    .iter()
                    .map(SagaCommand::name)
                    .collect(),
            )
        }))
        .collect();
    let expected: Vec<(&str, Vec<&str>)> = vec![
        ("OrderPlaced", vec!["ReserveStock"]),
        ("OrderLineReserved", vec![]),
        ("OrderAwaitingPayment", vec!["AuthorizePayment"]),
        ("OrderLineReleaseRequired", vec!["ReleaseStock"]),
        ("OrderLineRejected", vec![]),
        ("OrderCancelled", vec!["ReleaseStock"]),
        ("OrderConfirmed", vec!["CommitStock"]),
        ("OrderPaymentRefundRequired", vec!["RefundPayment"]),
        ("OrderExpired", vec!["ReleaseStock"]),
        ("StockReceived", vec![]),
        ("StockReserved", vec!["RecordLineReserved"]),
        ("StockReservationRejected", vec!["RecordLineRejected"]),
        ("StockReleased", vec![]),
        ("StockCommitted", vec![]),
        ("PaymentAuthorized", vec!["ConfirmOrder"]),
        ("PaymentDeclined", vec!["CancelOrder"]),
        ("PaymentRefunded", vec![]),
    ];
    assert_eq!(routed, expected);
}

#[test]
fn command_ids_depend_only_on_the_event_the_reaction_and_the_target() {
    let event = fixtures::order_event(fixtures::placed(&[
        ("SKU-A", 1),
        ("SKU-B", 2),
        ("SKU-C", 3),
    ]));
    let first = react_to_order_event(&event);
    // A re-run (after an aborted transaction, or on a redelivered event) emits the same commands.
    assert_eq!(react_to_order_event(&event.clone()), first);
    let ids: BTreeSet<Uuid> = first.iter().map(SagaCommand::command_id).collect();
    assert_eq!(ids.len(), 3, "one id per line");
    let mut other = event.clone();
    other.event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"another event");
    let other_ids: BTreeSet<Uuid> = react_to_order_event(&other)
        .iter()
        .map(SagaCommand::command_id)
        .collect();
    assert!(ids.is_disjoint(&other_ids));
    assert_ne!(
        command_id(&event.event_id, "release_stock_on_order_closed", 0, "SKU-A"),
        command_id(
            &event.event_id,
            "commit_stock_on_order_confirmed",
            0,
            "SKU-A"
        ),
        "two reactions to one event never share an id"
    );
    assert_ne!(
        command_id(&event.event_id, "reserve_stock_on_order_placed", 0, "SKU-A"),
        command_id(&event.event_id, "reserve_stock_on_order_placed", 0, "SKU-B"),
        "one event's commands to two aggregates never share an id"
    );
    assert_eq!(
        first
            .iter()
            .map(SagaCommand::aggregate_id)
            .collect::<Vec<_>>(),
        vec!["SKU-A", "SKU-B", "SKU-C"]
    );
}

#[test]
fn command_ids_are_unique_per_source_event_and_target_aggregate() {
    // Every order event, numbered as the order processor numbers them, for two orders whose
    // commands all came under one command id (the worst a client can do): no two events share
    // an id, and no two commands the reactions derive from them do either.
    use crate::command::table::event_id;
    let cause = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"one command id for both orders");
    let mut events = Vec::new();
    for order in [
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
    ] {
        for (version, mut event) in (1..).zip(fixtures::every_order_event()) {
            event.aggregate_id = order.to_owned();
            event.version = version;
            event.event_id = event_id("order", order, version, &cause);
            event.causation_id = cause;
            events.push(event);
        }
    }
    let event_ids: BTreeSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(event_ids.len(), events.len());
    let commands: Vec<SagaCommand> = events.iter().flat_map(react_to_order_event).collect();
    assert!(commands.len() >= 10, "{} commands", commands.len());
    let command_ids: BTreeSet<Uuid> = commands.iter().map(SagaCommand::command_id).collect();
    assert_eq!(command_ids.len(), commands.len(), "{commands:#?}");
    // Re-deriving is deterministic, so a re-run after an abort is answered as a duplicate.
    let again: Vec<SagaCommand> = events.iter().flat_map(react_to_order_event).collect();
    assert_eq!(again, commands);
}

// ---------------------------------------------------------------------------------------------
// The in-process flash sale.

/// splitmix64: a few lines, deterministic per seed, so a failing seed can be replayed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

#[derive(Debug, Clone)]
enum Message {
    OrderEvent(EventEnvelope<OrderEvent>),
    StockEvent(EventEnvelope<StockEvent>),
    PaymentEvent(EventEnvelope<PaymentEvent>),
    Command(SagaCommand),
}

/// How one run is shaped.
#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    orders: usize,
    /// (sku, units received, price in minor units)
    skus: Vec<(&'static str, u32, i64)>,
    /// Every n-th order pays with a declined card.
    declined_card_every: usize,
    /// Every n-th order has one line whose reservation is held back until the order has closed.
    slow_stock_every: usize,
    /// Every n-th order has its payment held back until the order has closed.
    slow_payment_every: usize,
    /// Every n-th order has a deadline a few steps away.
    short_deadline_every: usize,
}

impl Scenario {
    fn flash_sale(seed: u64) -> Self {
        Self {
            seed,
            orders: 400,
            skus: vec![
                ("SKU-HOT", 100, 1_000),
                ("SKU-B", 300, 1_500),
                ("SKU-C", 400, 2_500),
            ],
            declined_card_every: 9,
            slow_stock_every: 13,
            slow_payment_every: 11,
            short_deadline_every: 7,
        }
    }
}

const DECLINE_ABOVE_MINOR: i64 = 6_000;
const DECLINED_CARD: &str = "card-declined";
const DISCONTINUED_SKU: &str = "SKU-GONE";
const UNKNOWN_SKU: &str = "SKU-NEVER";
const LONG_TTL: i64 = 1_000_000;
const MAX_STEPS: usize = 2_000_000;

#[derive(Debug, Default)]
struct Figures {
    placed: usize,
    refused_at_placement: BTreeMap<String, usize>,
    confirmed: usize,
    cancelled: BTreeMap<String, usize>,
    expired: usize,
    late_refunds: usize,
    late_releases: usize,
    duplicates_answered: usize,
    aborted_attempts: usize,
    replays: usize,
    steps: usize,
}

struct World {
    rng: Rng,
    scenario: Scenario,
    clock: i64,
    product: InProcessDriver<Product>,
    stock: InProcessDriver<Stock>,
    order: InProcessDriver<Order>,
    payment: InProcessDriver<Payment>,
    policy: PaymentPolicy,
    catalog: CatalogCopy,
    deadlines: DeadlineTable,
    /// Order events the deadline timer has read, in log order (a consumer reads its partition in order).
    deadline_cursor: usize,
    seen: (usize, usize, usize),
    bag: Vec<Message>,
    /// Commands held back until their order has closed, to force late answers.
    held: Vec<(OrderId, SagaCommand)>,
    history: Vec<Message>,
    slow_stock: BTreeSet<OrderId>,
    slow_payment: BTreeSet<OrderId>,
    placed: Vec<OrderId>,
    next_order: usize,
    /// Every saga command's answer: (command name, outcome).
    saga_outcomes: Vec<(&'static str, Uuid, Outcome)>,
    figures: Figures,
}

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("sku")
}

fn eur(amount_minor: i64) -> Money {
    Money::positive(amount_minor, "EUR").expect("money")
}

fn envelope<C>(aggregate_id: &str, name: &str, payload: C) -> CommandEnvelope<C> {
    CommandEnvelope {
        command_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        aggregate_id: aggregate_id.to_owned(),
        expected_version: None,
        issued_at: 0,
        correlation_id: aggregate_id.to_owned(),
        payload,
    }
}

impl World {
    fn new(scenario: Scenario) -> Self {
        Self {
            rng: Rng(scenario.seed),
            clock: 1_000,
            product: InProcessDriver::new(0),
            stock: InProcessDriver::new(0),
            order: InProcessDriver::new(0),
            payment: InProcessDriver::new(0),
            policy: PaymentPolicy::approve_all()
                .with_limit(DECLINE_ABOVE_MINOR)
                .with_declined_card(DECLINED_CARD),
            catalog: CatalogCopy::new(),
            deadlines: DeadlineTable::new(),
            deadline_cursor: 0,
            seen: (0, 0, 0),
            bag: Vec::new(),
            held: Vec::new(),
            history: Vec::new(),
            slow_stock: BTreeSet::new(),
            slow_payment: BTreeSet::new(),
            placed: Vec::new(),
            next_order: 0,
            saga_outcomes: Vec::new(),
            figures: Figures::default(),
            scenario,
        }
    }

    /// The catalog and the stock, set up by their admins before the sale; the catalog copy reads
    /// the catalog's events shuffled and partly twice, as a redelivery might hand them over.
    fn set_up(&mut self) {
        let mut products: Vec<(String, i64)> = self
            .scenario
            .skus
            .iter()
            .map(|(s, _, p)| ((*s).to_owned(), *p))
            .collect();
        products.push((DISCONTINUED_SKU.to_owned(), 500));
        for (s, price) in &products {
            let create = CreateProduct {
                sku: s.clone(),
                name: format!("product {s}"),
                category: "sale".into(),
                price: eur(price + 1),
            };
            let r = self
                .product
                .send(&envelope(s, &format!("create {s}"), create.into()), &());
            assert!(matches!(r.outcome, Outcome::Accepted { .. }), "{r:?}");
            // A price change after creation: the copy must end on the newer price.
            let change: ProductCommand = ChangePrice { price: eur(*price) }.into();
            self.product
                .send(&envelope(s, &format!("reprice {s}"), change), &());
        }
        let gone: ProductCommand = DiscontinueProduct.into();
        self.product
            .send(&envelope(DISCONTINUED_SKU, "discontinue", gone), &());

        let mut feed: Vec<EventEnvelope<_>> = self.product.events.clone();
        let extra: Vec<_> = feed
            .iter()
            .filter(|_| self.rng.one_in(2))
            .cloned()
            .collect();
        feed.extend(extra);
        for i in (1..feed.len()).rev() {
            let j = self.rng.below(i + 1);
            feed.swap(i, j);
        }
        for e in &feed {
            self.catalog.apply(e);
        }
        for (s, price) in &products {
            let entry = self.catalog.lookup(&sku(s)).expect("copied");
            assert_eq!(entry.price, eur(*price), "{s}: the newest price wins");
            assert_eq!(entry.discontinued, s == DISCONTINUED_SKU);
        }

        for (s, units, _) in self.scenario.skus.clone() {
            let receive: StockCommand = ReceiveStock { quantity: units }.into();
            let r = self
                .stock
                .send(&envelope(s, &format!("receive {s}"), receive), &());
            assert!(matches!(r.outcome, Outcome::Accepted { .. }), "{r:?}");
        }
        self.seen.1 = self.stock.events.len();
    }

    fn place_next(&mut self) {
        let i = self.next_order;
        self.next_order += 1;
        let sc = &self.scenario;
        let order_id = OrderId::new(
            Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{}/{i}", sc.seed).as_bytes()).to_string(),
        )
        .expect("uuid order id");
        let line_count = 1 + self.rng.below(3);
        let mut lines: Vec<OrderLineRequest> = (0..line_count)
            .map(|_| {
                let (s, _, _) = sc.skus[self.rng.below(sc.skus.len())];
                OrderLineRequest {
                    sku: sku(s),
                    quantity: 1 + self.rng.below(3) as u32,
                }
            })
            .collect();
        // A few orders the local copy must refuse.
        if i % 97 == 5 {
            lines.push(OrderLineRequest {
                sku: sku(DISCONTINUED_SKU),
                quantity: 1,
            });
        }
        if i % 97 == 50 {
            lines.push(OrderLineRequest {
                sku: sku(UNKNOWN_SKU),
                quantity: 1,
            });
        }
        let card_token = if i % sc.declined_card_every == 1 {
            DECLINED_CARD
        } else {
            "card-ok"
        };
        let ttl = if i % sc.short_deadline_every == 2 {
            2 + self.rng.below(30) as i64
        } else {
            LONG_TTL
        };
        let deadline_at = self.clock + ttl;
        if i % sc.slow_stock_every == 3 {
            self.slow_stock.insert(order_id.clone());
        }
        if i % sc.slow_payment_every == 4 {
            self.slow_payment.insert(order_id.clone());
        }
        let place = PlaceOrder {
            order_id: order_id.clone(),
            customer_id: CustomerId::new(format!("customer-{}", i % 50)).expect("customer"),
            lines,
            card_token: card_token.to_owned(),
            deadline_at,
            placed_at: self.clock,
        };
        let command = CommandEnvelope {
            command_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("place {order_id}").as_bytes()),
            aggregate_id: order_id.as_str().to_owned(),
            expected_version: None,
            issued_at: self.clock,
            correlation_id: order_id.as_str().to_owned(),
            payload: OrderCommand::PlaceOrder(place),
        };
        let result = self.order.send(&command, &self.catalog);
        match result.outcome {
            Outcome::Accepted { .. } => {
                self.placed.push(order_id);
                self.figures.placed += 1;
            }
            Outcome::Rejected { code, .. } => {
                *self.figures.refused_at_placement.entry(code).or_default() += 1;
            }
            Outcome::Duplicate { .. } => panic!("a fresh order id was seen as a duplicate"),
        }
        self.drain();
    }

    /// Publishes the drivers' new events: each into the bag, some twice, and into the history
    /// from which old events are replayed later.
    fn drain(&mut self) {
        let mut fresh = Vec::new();
        fresh.extend(
            self.order.events[self.seen.0..]
                .iter()
                .cloned()
                .map(Message::OrderEvent),
        );
        fresh.extend(
            self.stock.events[self.seen.1..]
                .iter()
                .cloned()
                .map(Message::StockEvent),
        );
        fresh.extend(
            self.payment.events[self.seen.2..]
                .iter()
                .cloned()
                .map(Message::PaymentEvent),
        );
        self.seen = (
            self.order.events.len(),
            self.stock.events.len(),
            self.payment.events.len(),
        );
        for m in fresh {
            if self.rng.one_in(8) {
                self.bag.push(m.clone());
            }
            self.history.push(m.clone());
            self.bag.push(m);
        }
    }

    /// Whether the pump holds a command back until its order has closed.
    fn held_order(&self, command: &SagaCommand) -> Option<OrderId> {
        match command {
            SagaCommand::Stock(c) => match &c.payload {
                StockCommand::ReserveStock(r)
                    if r.line_no.get() == 1 && self.slow_stock.contains(&r.order_id) =>
                {
                    Some(r.order_id.clone())
                }
                _ => None,
            },
            SagaCommand::Payment(c) => match &c.payload {
                streamcart_aggregates::payments::PaymentCommand::AuthorizePayment(a)
                    if self.slow_payment.contains(&a.order_id) =>
                {
                    Some(a.order_id.clone())
                }
                _ => None,
            },
            SagaCommand::Order(_) => None,
        }
    }

    fn emit(&mut self, commands: Vec<SagaCommand>) {
        for c in commands {
            if let Some(order_id) = self.held_order(&c) {
                self.held.push((order_id, c));
                continue;
            }
            if self.rng.one_in(10) {
                self.bag.push(Message::Command(c.clone()));
            }
            self.bag.push(Message::Command(c));
        }
    }

    fn react(&mut self, message: Message) {
        let commands = match &message {
            Message::OrderEvent(e) => react_to_order_event(e),
            Message::StockEvent(e) => react_to_stock_event(e),
            Message::PaymentEvent(e) => react_to_payment_event(e),
            Message::Command(_) => unreachable!("commands are handled, not reacted to"),
        };
        // A saga transaction that aborts runs its reaction again: the same commands come out.
        let again = match &message {
            Message::OrderEvent(e) => react_to_order_event(e),
            Message::StockEvent(e) => react_to_stock_event(e),
            Message::PaymentEvent(e) => react_to_payment_event(e),
            Message::Command(_) => Vec::new(),
        };
        assert_eq!(commands, again, "reactions are deterministic");
        self.emit(commands);
    }

    fn handle(&mut self, command: SagaCommand) {
        let abort = self.rng.one_in(12);
        if abort {
            self.figures.aborted_attempts += 1;
        }
        let name = command.name();
        let result = match &command {
            SagaCommand::Stock(c) => {
                if abort {
                    self.stock.send_aborted(std::slice::from_ref(c), &());
                }
                self.stock.send(c, &())
            }
            SagaCommand::Order(c) => {
                if abort {
                    self.order
                        .send_aborted(std::slice::from_ref(c), &self.catalog);
                }
                self.order.send(c, &self.catalog)
            }
            SagaCommand::Payment(c) => {
                if abort {
                    self.payment
                        .send_aborted(std::slice::from_ref(c), &self.policy);
                }
                self.payment.send(c, &self.policy)
            }
        };
        if matches!(result.outcome, Outcome::Duplicate { .. }) {
            self.figures.duplicates_answered += 1;
        }
        self.saga_outcomes
            .push((name, result.command_id, result.outcome));
        self.drain();
    }

    fn deliver_one(&mut self) {
        let i = self.rng.below(self.bag.len());
        let message = self.bag.swap_remove(i);
        match message {
            Message::Command(c) => self.handle(c),
            event => self.react(event),
        }
    }

    /// The deadline timer: reads order events in log order, fires what is due, and sometimes
    /// forgets a fired entry (as if it crashed before its closing event was read) or keeps it
    /// and fires it again later.
    fn timer(&mut self, catch_up: bool) {
        let lag = if catch_up {
            usize::MAX
        } else {
            self.rng.below(4)
        };
        let end = self
            .order
            .events
            .len()
            .min(self.deadline_cursor.saturating_add(lag));
        for e in &self.order.events[self.deadline_cursor..end] {
            self.deadlines.on_order_event(e);
        }
        self.deadline_cursor = end;
        if !catch_up && !self.rng.one_in(3) {
            return;
        }
        for (order_id, deadline_at) in self.deadlines.due(self.clock) {
            let expire = DeadlineTable::expire_command(&order_id, deadline_at);
            self.emit(vec![SagaCommand::Order(expire)]);
            if self.rng.one_in(2) {
                self.deadlines.remove(&order_id);
            }
        }
    }

    fn release_held(&mut self) {
        let order = &self.order;
        let closed = |id: &OrderId| {
            order
                .table()
                .get(id.as_str())
                .and_then(|e| e.state.order.as_ref())
                .is_some_and(|o| o.status.is_closed())
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(id, _)| closed(id));
        self.held = waiting;
        for (_, c) in ready {
            self.bag.push(Message::Command(c));
        }
    }

    fn replay_old(&mut self) {
        if self.history.is_empty() {
            return;
        }
        let i = self.rng.below(self.history.len());
        let m = self.history[i].clone();
        self.figures.replays += 1;
        self.bag.push(m);
    }

    fn run(&mut self) {
        self.set_up();
        for step in 0..MAX_STEPS {
            self.figures.steps = step;
            self.clock += 1;
            if self.next_order < self.scenario.orders && self.rng.one_in(2) {
                self.place_next();
            }
            self.timer(false);
            self.release_held();
            if self.rng.one_in(40) {
                self.replay_old();
            }
            for _ in 0..3 {
                if !self.bag.is_empty() {
                    self.deliver_one();
                }
            }
            if self.bag.is_empty() && self.next_order >= self.scenario.orders {
                self.timer(true);
                self.release_held();
                if !self.bag.is_empty() {
                    continue;
                }
                match self.deadlines.next_deadline() {
                    None if self.held.is_empty() => return,
                    None => panic!("commands held for orders that never close: {:?}", self.held),
                    // Nothing moves until a deadline passes: let time jump there.
                    Some(at) => self.clock = self.clock.max(at),
                }
            }
        }
        panic!(
            "seed {}: no quiescence after {MAX_STEPS} steps",
            self.scenario.seed
        );
    }

    /// Checks every invariant of the sale from the drivers' event logs and states.
    fn check(&mut self) {
        let seed = self.scenario.seed;
        // No saga command was refused: only acceptances and duplicate answers.
        let refused: Vec<_> = self
            .saga_outcomes
            .iter()
            .filter(|(_, _, o)| matches!(o, Outcome::Rejected { .. }))
            .collect();
        assert!(
            refused.is_empty(),
            "seed {seed}: saga commands rejected: {refused:?}"
        );

        // Versions are gap-free per aggregate in every log.
        fn gap_free<E>(events: &[EventEnvelope<E>]) -> bool {
            let mut last: BTreeMap<&str, u64> = BTreeMap::new();
            events.iter().all(|e| {
                let v = last.entry(e.aggregate_id.as_str()).or_default();
                *v += 1;
                *v == e.version
            })
        }
        assert!(gap_free(&self.product.events) && gap_free(&self.stock.events));
        assert!(gap_free(&self.order.events) && gap_free(&self.payment.events));

        // Every placed order ended confirmed, cancelled with a reason, or expired.
        let mut status: BTreeMap<OrderId, OrderStatus> = BTreeMap::new();
        for id in &self.placed {
            let order = self
                .order
                .table()
                .get(id.as_str())
                .and_then(|e| e.state.order.clone())
                .expect("placed order exists");
            match order.status {
                OrderStatus::Confirmed => self.figures.confirmed += 1,
                OrderStatus::Cancelled { reason } => {
                    *self
                        .figures
                        .cancelled
                        .entry(format!("{reason:?}"))
                        .or_default() += 1;
                }
                OrderStatus::Expired => self.figures.expired += 1,
                open => panic!("seed {seed}: order {id} still {open:?}"),
            }
            status.insert(id.clone(), order.status);
        }

        // Each reservation is settled exactly once: committed for a confirmed order, released
        // for a closed one.
        #[derive(Default, Debug)]
        struct Settled {
            reserved: u32,
            released: u32,
            committed: u32,
        }
        let mut lines: BTreeMap<(OrderId, LineNo), Settled> = BTreeMap::new();
        let mut sold_by_events: BTreeMap<String, u64> = BTreeMap::new();
        for e in &self.stock.events {
            match &e.payload {
                StockEvent::StockReserved(r) => {
                    lines
                        .entry((r.order_id.clone(), r.line_no))
                        .or_default()
                        .reserved += 1
                }
                StockEvent::StockReleased(r) => {
                    lines
                        .entry((r.order_id.clone(), r.line_no))
                        .or_default()
                        .released += 1
                }
                StockEvent::StockCommitted(r) => {
                    lines
                        .entry((r.order_id.clone(), r.line_no))
                        .or_default()
                        .committed += 1;
                    *sold_by_events.entry(e.aggregate_id.clone()).or_default() +=
                        u64::from(r.quantity);
                }
                _ => {}
            }
        }
        for ((order_id, line_no), s) in &lines {
            assert_eq!(
                s.reserved, 1,
                "seed {seed}: {order_id}/{line_no} reserved {s:?}"
            );
            match status.get(order_id) {
                Some(OrderStatus::Confirmed) => {
                    assert_eq!(
                        (s.committed, s.released),
                        (1, 0),
                        "seed {seed}: {order_id}/{line_no}"
                    );
                }
                Some(st) if st.is_closed() => {
                    assert_eq!(
                        (s.committed, s.released),
                        (0, 1),
                        "seed {seed}: {order_id}/{line_no}"
                    );
                }
                other => panic!("seed {seed}: reservation for {order_id} in {other:?}"),
            }
        }
        self.figures.late_releases = self
            .order
            .events
            .iter()
            .filter(|e| matches!(e.payload, OrderEvent::OrderLineReleaseRequired(_)))
            .count();

        // Stock balances, nothing stays reserved, and nothing was sold twice or beyond receipt.
        let mut sold_by_orders: BTreeMap<String, u64> = BTreeMap::new();
        for id in self
            .placed
            .iter()
            .filter(|id| status.get(*id) == Some(&OrderStatus::Confirmed))
        {
            let order = self
                .order
                .table()
                .get(id.as_str())
                .and_then(|e| e.state.order.clone())
                .expect("order");
            for l in &order.lines {
                *sold_by_orders
                    .entry(l.line.sku.as_str().to_owned())
                    .or_default() += u64::from(l.line.quantity);
            }
        }
        for (s, units, _) in &self.scenario.skus {
            let stock = self
                .stock
                .table()
                .get(s)
                .map(|e| e.state.clone())
                .expect("stock");
            assert_eq!(stock.received, u64::from(*units), "seed {seed}: {s}");
            assert_eq!(
                stock.available + stock.reserved + stock.sold,
                stock.received,
                "seed {seed}: {s}"
            );
            assert_eq!(stock.reserved, 0, "seed {seed}: {s} still holds units");
            assert!(stock.sold <= stock.received, "seed {seed}: {s} oversold");
            assert_eq!(
                stock.sold,
                sold_by_orders.get(*s).copied().unwrap_or_default(),
                "seed {seed}: {s}"
            );
            assert_eq!(
                stock.sold,
                sold_by_events.get(*s).copied().unwrap_or_default(),
                "seed {seed}: {s}"
            );
        }

        // Money moved only for confirmed orders; a late authorization was refunded exactly once.
        let mut payments: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
        for e in &self.payment.events {
            let p = payments.entry(e.aggregate_id.clone()).or_default();
            match e.payload {
                PaymentEvent::PaymentAuthorized(_) => p.0 += 1,
                PaymentEvent::PaymentDeclined(_) => p.1 += 1,
                PaymentEvent::PaymentRefunded(_) => p.2 += 1,
            }
        }
        for (id, st) in &status {
            let (authorized, declined, refunded) =
                payments.get(id.as_str()).copied().unwrap_or_default();
            assert!(authorized + declined <= 1, "seed {seed}: {id} paid twice");
            match st {
                OrderStatus::Confirmed => {
                    assert_eq!((authorized, refunded), (1, 0), "seed {seed}: {id}")
                }
                _ if authorized == 1 => {
                    assert_eq!(refunded, 1, "seed {seed}: late authorization of {id}");
                    self.figures.late_refunds += 1;
                }
                _ => assert_eq!(refunded, 0, "seed {seed}: {id}"),
            }
            if *st
                == (OrderStatus::Cancelled {
                    reason: CancelReason::PaymentDeclined,
                })
            {
                assert_eq!(declined, 1, "seed {seed}: {id}");
            }
        }

        // The deadline table forgot every closed order.
        assert!(
            self.deadlines.is_empty(),
            "seed {seed}: {} deadlines left",
            self.deadlines.len()
        );
    }
}

fn run(scenario: Scenario) -> Figures {
    let mut world = World::new(scenario);
    world.run();
    world.check();
    world.figures
}

#[test]
fn flash_sale_in_process_settles_every_order_without_oversell() {
    let f = run(Scenario::flash_sale(7));
    // The scenario is shaped so that every path of the saga is taken.
    assert!(f.confirmed > 0, "{f:?}");
    assert!(
        f.cancelled
            .get("StockUnavailable")
            .copied()
            .unwrap_or_default()
            > 0,
        "{f:?}"
    );
    assert!(
        f.cancelled
            .get("PaymentDeclined")
            .copied()
            .unwrap_or_default()
            > 0,
        "{f:?}"
    );
    assert!(f.expired > 0, "{f:?}");
    assert!(f.late_refunds > 0, "{f:?}");
    assert!(f.late_releases > 0, "{f:?}");
    assert!(f.duplicates_answered > 0, "{f:?}");
    assert!(f.aborted_attempts > 0 && f.replays > 0, "{f:?}");
    let refused = |r: usize| (0..400).filter(|i| i % 97 == r).count();
    assert_eq!(
        f.refused_at_placement
            .get("order.product_discontinued")
            .copied(),
        Some(refused(5)),
        "{f:?}"
    );
    assert_eq!(
        f.refused_at_placement.get("order.unknown_sku").copied(),
        Some(refused(50)),
        "{f:?}"
    );
    assert_eq!(f.placed + refused(5) + refused(50), 400, "{f:?}");
    assert_eq!(
        f.placed,
        f.confirmed + f.cancelled.values().sum::<usize>() + f.expired,
        "{f:?}"
    );
    println!("{f:#?}");
}

#[test]
fn the_invariants_hold_for_many_interleavings() {
    for seed in 100..124 {
        let mut scenario = Scenario::flash_sale(seed);
        scenario.orders = 120;
        scenario.skus = vec![
            ("SKU-HOT", 15, 1_000),
            ("SKU-B", 40, 1_500),
            ("SKU-C", 60, 2_500),
        ];
        run(scenario);
    }
}
