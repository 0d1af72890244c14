//! Properties of the saga as it runs: the real reactions between the real aggregates, through
//! the in-process drivers, with one order's events and commands delivered in random order, some
//! twice, some after an aborted attempt, and the customer cancelling or the deadline passing at
//! random moments. Whatever the interleaving:
//!
//! - the order ends confirmed with every line's stock committed and its payment kept, or closed
//!   (cancelled or expired) with every reservation released and no money kept;
//! - every reservation is settled exactly once, and stock always balances;
//! - a refund happens only once the order has closed, and at most once;
//! - no command the saga emits is refused, and a customer's cancel only once confirmed;
//! - delivering every event and command again, in any order, changes nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use streamcart_aggregates::inventory::{ReceiveStock, ReservationStatus, StockCommand, StockEvent};
use streamcart_aggregates::orders::{
    CancelOrder, CancelReason, CatalogEntry, OrderCommand, OrderEvent, OrderLineRequest,
    OrderStatus, PlaceOrder, PlacedOrder,
};
use streamcart_aggregates::payments::{PaymentEvent, PaymentPolicy, PaymentStatus};
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, Sku};
use streamcart_schemas::envelope::{CommandEnvelope, Outcome};
use uuid::Uuid;

use super::SagaCommand;
use super::deadlines::DeadlineTable;
use super::driver::{InFlight, InProcessSaga};

const ORDER: &str = "00000000-0000-4000-8000-00000000cafe";
const PLACED_AT: i64 = 1_000;
const DEADLINE_AT: i64 = 10_000;
/// Far more deliveries than one order of at most three lines can cause.
const SETTLE_BUDGET: usize = 1_000;

type Prices = BTreeMap<Sku, CatalogEntry>;

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn order_id() -> OrderId {
    OrderId::new(ORDER).expect("valid order id")
}

fn envelope<C>(aggregate_id: &str, name: &str, payload: impl Into<C>) -> CommandEnvelope<C> {
    CommandEnvelope {
        command_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        aggregate_id: aggregate_id.to_owned(),
        expected_version: None,
        issued_at: PLACED_AT,
        correlation_id: ORDER.to_owned(),
        payload: payload.into(),
    }
}

/// What happens from outside the saga right before a delivery.
#[derive(Debug, Clone)]
enum Interrupt {
    /// The customer asks to cancel.
    CustomerCancels,
    /// The deadline passes: the timer reads the order log and fires what is due.
    DeadlinePasses,
}

/// One scheduling decision: which record in flight goes next, whether a copy stays in flight
/// to be delivered again, whether a first attempt at it is aborted, and what happens right
/// before it.
#[derive(Debug, Clone)]
struct Step {
    pick: usize,
    redeliver: bool,
    abort_first: bool,
    interrupt: Option<Interrupt>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<usize>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        prop_oneof![
            18 => Just(None),
            1 => Just(Some(Interrupt::CustomerCancels)),
            1 => Just(Some(Interrupt::DeadlinePasses)),
        ],
    )
        .prop_map(|(pick, redeliver, abort_first, interrupt)| Step {
            pick,
            redeliver,
            abort_first,
            interrupt,
        })
}

fn lines() -> impl Strategy<Value = Vec<OrderLineRequest>> {
    prop::collection::vec(
        (prop::sample::select(vec!["A", "B"]), 1u32..4).prop_map(|(s, quantity)| {
            OrderLineRequest {
                sku: sku(s),
                quantity,
            }
        }),
        1..4,
    )
}

/// The shape of one run: what is ordered, what is in stock, what the payment gateway allows,
/// and how deliveries are scheduled.
#[derive(Debug, Clone)]
struct Run {
    lines: Vec<OrderLineRequest>,
    stock_a: u32,
    stock_b: u32,
    limit: Option<i64>,
    steps: Vec<Step>,
}

fn run() -> impl Strategy<Value = Run> {
    (
        lines(),
        0u32..6,
        0u32..6,
        prop::option::of(0i64..2000),
        prop::collection::vec(step(), 0..80),
    )
        .prop_map(|(lines, stock_a, stock_b, limit, steps)| Run {
            lines,
            stock_a,
            stock_b,
            limit,
            steps,
        })
}

/// The saga, the deadline timer beside it, and every answer to a command from outside.
struct World {
    saga: InProcessSaga<Prices>,
    deadlines: DeadlineTable,
    /// Order events the timer has read, in log order (as its consumer reads its partition).
    timer_cursor: usize,
    cancels: usize,
    outside_refusals: Vec<String>,
}

impl World {
    fn new(run: &Run) -> Self {
        let prices = BTreeMap::from([
            (
                sku("A"),
                CatalogEntry {
                    price: Money::new(100, "EUR").expect("valid"),
                    discontinued: false,
                },
            ),
            (
                sku("B"),
                CatalogEntry {
                    price: Money::new(250, "EUR").expect("valid"),
                    discontinued: false,
                },
            ),
        ]);
        let policy = PaymentPolicy {
            decline_above_minor: run.limit,
            ..PaymentPolicy::default()
        };
        let mut world = Self {
            saga: InProcessSaga::new(prices, policy, PLACED_AT),
            deadlines: DeadlineTable::new(),
            timer_cursor: 0,
            cancels: 0,
            outside_refusals: Vec::new(),
        };
        for (s, quantity) in [("A", run.stock_a), ("B", run.stock_b)] {
            if quantity > 0 {
                let receive: StockCommand = ReceiveStock { quantity }.into();
                let r = world
                    .saga
                    .send_stock(&envelope(s, &format!("receive {s}"), receive));
                assert!(matches!(r.outcome, Outcome::Accepted { .. }), "{r:?}");
            }
        }
        let place = PlaceOrder {
            order_id: order_id(),
            customer_id: CustomerId::new("c-1").expect("valid customer"),
            lines: run.lines.clone(),
            card_token: "tok".to_owned(),
            deadline_at: DEADLINE_AT,
            placed_at: PLACED_AT,
        };
        let r = world
            .saga
            .send_order(&envelope::<OrderCommand>(ORDER, "place", place));
        assert!(matches!(r.outcome, Outcome::Accepted { .. }), "{r:?}");
        world
    }

    fn interrupt(&mut self, interrupt: &Interrupt) {
        match interrupt {
            Interrupt::CustomerCancels => {
                self.cancels += 1;
                let cancel = CancelOrder {
                    reason: CancelReason::CustomerRequested,
                };
                let name = format!("cancel {}", self.cancels);
                let r = self
                    .saga
                    .send_order(&envelope::<OrderCommand>(ORDER, &name, cancel));
                if let Outcome::Rejected { code, .. } = r.outcome {
                    self.outside_refusals.push(code);
                }
            }
            Interrupt::DeadlinePasses => self.timer_fires(),
        }
    }

    /// The deadline timer catches up with the order log and fires every deadline due; what it
    /// fires is in flight like any other command.
    fn timer_fires(&mut self) {
        let log = &self.saga.order.events;
        for e in &log[self.timer_cursor..] {
            self.deadlines.on_order_event(e);
        }
        self.timer_cursor = log.len();
        for (order, deadline_at) in self.deadlines.due(DEADLINE_AT) {
            let expire = DeadlineTable::expire_command(&order, deadline_at);
            self.saga
                .in_flight
                .push(InFlight::Command(SagaCommand::Order(expire)));
        }
    }

    fn play(&mut self, steps: &[Step]) {
        for step in steps {
            if let Some(interrupt) = &step.interrupt {
                self.interrupt(interrupt);
            }
            let Some(record) = self.saga.take(step.pick) else {
                continue;
            };
            if step.redeliver {
                self.saga.in_flight.push(record.clone());
            }
            if step.abort_first
                && let InFlight::Command(command) = &record
            {
                self.saga.deliver_aborted(command);
            }
            self.saga.deliver(record);
        }
    }

    /// Delivers whatever is still in flight, then lets the deadline pass and delivers what that
    /// causes, twice: afterwards nothing may be in flight.
    fn finish(&mut self) -> bool {
        for _ in 0..2 {
            if !self.saga.settle(SETTLE_BUDGET) {
                return false;
            }
            self.timer_fires();
        }
        self.saga.settle(SETTLE_BUDGET)
    }

    fn order(&self) -> PlacedOrder {
        self.saga
            .order
            .table()
            .get(ORDER)
            .and_then(|e| e.state.order.clone())
            .expect("the order was placed")
    }

    /// Every record the processors ever produced: the events of every log and every command
    /// the saga delivered.
    fn everything(&self) -> Vec<InFlight> {
        let s = &self.saga;
        s.order
            .events
            .iter()
            .cloned()
            .map(InFlight::OrderEvent)
            .chain(s.stock.events.iter().cloned().map(InFlight::StockEvent))
            .chain(s.payment.events.iter().cloned().map(InFlight::PaymentEvent))
            .chain(s.answers.iter().map(|(c, _)| InFlight::Command(c.clone())))
            .collect()
    }

    fn log_lengths(&self) -> (usize, usize, usize) {
        let s = &self.saga;
        (
            s.order.events.len(),
            s.stock.events.len(),
            s.payment.events.len(),
        )
    }
}

/// How often each order line was reserved, released and committed, from the stock log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Settled {
    reserved: u32,
    released: u32,
    committed: u32,
}

fn settlements(world: &World) -> BTreeMap<(Sku, LineNo), Settled> {
    let mut lines: BTreeMap<(Sku, LineNo), Settled> = BTreeMap::new();
    for e in &world.saga.stock.events {
        let (line_no, count): (LineNo, fn(&mut Settled)) = match &e.payload {
            StockEvent::StockReserved(r) => (r.line_no, |s| s.reserved += 1),
            StockEvent::StockReleased(r) => (r.line_no, |s| s.released += 1),
            StockEvent::StockCommitted(r) => (r.line_no, |s| s.committed += 1),
            _ => continue,
        };
        count(lines.entry((sku(&e.aggregate_id), line_no)).or_default());
    }
    lines
}

proptest! {
    #[test]
    fn every_order_ends_confirmed_and_committed_or_closed_and_released(run in run()) {
        let mut world = World::new(&run);
        world.play(&run.steps);
        prop_assert!(world.finish(), "the saga does not settle");

        let refused: Vec<_> = world
            .saga
            .answers
            .iter()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Rejected { .. }))
            .collect();
        prop_assert!(refused.is_empty(), "saga commands refused: {:?}", refused);

        let order = world.order();
        let confirmed = order.status == OrderStatus::Confirmed;
        prop_assert!(confirmed || order.status.is_closed(), "order left {:?}", order.status);
        // A customer may ask to cancel after confirmation; nothing else of theirs is refused.
        for code in &world.outside_refusals {
            prop_assert_eq!(code.as_str(), "order.already_confirmed");
            prop_assert!(confirmed);
        }

        for (s, state) in ["A", "B"].map(|s| (s, world.saga.stock.table().get(s).map(|e| e.state.clone()))) {
            let Some(state) = state else { continue };
            prop_assert!(state.is_balanced(), "{} does not balance: {:?}", s, state);
            for reservation in state.reservations.values() {
                prop_assert_ne!(reservation.status, ReservationStatus::Reserved, "{} still held", s);
                if !confirmed {
                    prop_assert_ne!(reservation.status, ReservationStatus::Committed, "{} sold", s);
                }
            }
        }
        for ((s, line_no), settled) in settlements(&world) {
            prop_assert_eq!(settled.reserved, 1, "{}/{}: {:?}", s, line_no, settled);
            let expected = if confirmed { (0, 1) } else { (1, 0) };
            prop_assert_eq!((settled.released, settled.committed), expected, "{}/{}", s, line_no);
        }

        let payment = world
            .saga
            .payment
            .table()
            .get(ORDER)
            .and_then(|e| e.state.payment.clone());
        let kept = payment
            .as_ref()
            .is_some_and(|p| matches!(p.status, PaymentStatus::Authorized { .. }));
        if confirmed {
            for line in &order.lines {
                let held = world
                    .saga
                    .stock
                    .table()
                    .get(line.line.sku.as_str())
                    .and_then(|e| e.state.reservation(&order.order_id, line.line.line_no).copied());
                prop_assert_eq!(held.map(|r| r.status), Some(ReservationStatus::Committed));
            }
            prop_assert!(kept, "a confirmed order is not paid: {:?}", payment);
        } else {
            prop_assert!(!kept, "money kept for a closed order: {:?}", payment);
        }
    }

    #[test]
    fn a_refund_comes_only_after_the_order_closed_and_only_once(run in run()) {
        let mut world = World::new(&run);
        world.play(&run.steps);
        prop_assert!(world.finish(), "the saga does not settle");

        let refunds = world
            .saga
            .payment
            .events
            .iter()
            .filter(|e| matches!(e.payload, PaymentEvent::PaymentRefunded(_)))
            .count();
        prop_assert!(refunds <= 1, "{} refunds", refunds);
        let log = &world.saga.order.events;
        let closed_at = log.iter().position(|e| {
            matches!(e.payload, OrderEvent::OrderCancelled(_) | OrderEvent::OrderExpired(_))
        });
        let required_at = log
            .iter()
            .position(|e| matches!(e.payload, OrderEvent::OrderPaymentRefundRequired(_)));
        if refunds == 1 {
            prop_assert_ne!(world.order().status, OrderStatus::Confirmed);
            prop_assert!(
                matches!((closed_at, required_at), (Some(c), Some(r)) if c < r),
                "refunded without the closed order asking for it: {:?}",
                log.iter().map(|e| e.payload.name()).collect::<Vec<_>>()
            );
        } else {
            prop_assert_eq!(required_at, None, "a refund was asked for and never made");
        }
        // The refund answers the refund the order asked for: every RefundPayment delivered
        // was derived from that one event.
        let asked: Vec<_> = world
            .saga
            .answers
            .iter()
            .filter(|(c, _)| c.name() == "RefundPayment")
            .map(|(c, _)| c.command_id())
            .collect();
        prop_assert!(asked.windows(2).all(|w| w[0] == w[1]), "{:?}", asked);
    }

    #[test]
    fn delivering_everything_again_changes_nothing(run in run(), order in prop::collection::vec(any::<usize>(), 0..200)) {
        let mut world = World::new(&run);
        world.play(&run.steps);
        prop_assert!(world.finish(), "the saga does not settle");
        let logs = world.log_lengths();
        let before = world.order();
        let answered = world.saga.answers.len();

        let mut again = world.everything();
        for (i, pick) in order.iter().enumerate() {
            if again.len() > 1 {
                let (a, b) = (i % again.len(), pick % again.len());
                again.swap(a, b);
            }
        }
        world.saga.in_flight.extend(again);
        prop_assert!(world.saga.settle(SETTLE_BUDGET * 10), "the redelivery does not settle");

        prop_assert_eq!(world.log_lengths(), logs, "a redelivery was applied");
        prop_assert_eq!(world.order(), before);
        for (command, result) in &world.saga.answers[answered..] {
            prop_assert!(
                !matches!(result.outcome, Outcome::Rejected { .. }),
                "{} refused on redelivery: {:?}",
                command.name(),
                result
            );
        }
    }
}

/// The properties above only say something if the runs they are given reach every ending and
/// every compensation; this counts what a fixed sample of those runs reaches.
#[test]
fn the_generated_runs_reach_every_ending_and_every_compensation() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = run();
    let mut endings: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..512 {
        let run = strategy.new_tree(&mut runner).expect("a run").current();
        let mut world = World::new(&run);
        world.play(&run.steps);
        assert!(world.finish(), "{run:?}");
        *endings
            .entry(format!("{:?}", world.order().status))
            .or_default() += 1;
        for e in &world.saga.order.events {
            match e.payload {
                OrderEvent::OrderLineReleaseRequired(_) => {
                    *endings.entry("late release".into()).or_default() += 1
                }
                OrderEvent::OrderPaymentRefundRequired(_) => {
                    *endings.entry("late refund".into()).or_default() += 1
                }
                _ => {}
            }
        }
    }
    for ending in [
        "Confirmed",
        "Cancelled { reason: StockUnavailable }",
        "Cancelled { reason: PaymentDeclined }",
        "Cancelled { reason: CustomerRequested }",
        "Expired",
        "late release",
        "late refund",
    ] {
        assert!(
            endings.get(ending).copied().unwrap_or_default() > 0,
            "{ending} never reached: {endings:?}"
        );
    }
}
