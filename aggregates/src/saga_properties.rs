//! The four aggregates wired by the saga reactions of the domain contract, with messages
//! delivered in random order and some delivered twice: whatever the interleaving, every
//! reservation ends released or committed, never both, and money moves only for confirmed orders.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::aggregate::{Aggregate, Rejection};
use crate::inventory::{
    CommitStock, ReceiveStock, ReleaseStock, ReservationStatus, ReserveStock, Stock, StockCommand,
    StockEvent, StockState,
};
use crate::orders::{
    CancelOrder, CancelReason, CatalogEntry, ConfirmOrder, ExpireOrder, Order, OrderCommand,
    OrderEvent, OrderLineRequest, OrderState, OrderStatus, PlaceOrder, RecordLineRejected,
    RecordLineReserved,
};
use crate::payments::{
    AuthorizePayment, Payment, PaymentCommand, PaymentEvent, PaymentPolicy, PaymentState,
    PaymentStatus, RefundPayment,
};
use crate::values::{CustomerId, Money, OrderId, PaymentId, Sku};

const ORDER: &str = "00000000-0000-4000-8000-00000000cafe";
const DEADLINE_AT: i64 = 10_000;

fn sku(s: &str) -> Sku {
    Sku::new(s).expect("valid sku")
}

fn order_id() -> OrderId {
    OrderId::new(ORDER).expect("valid order id")
}

/// A command on its way to one aggregate, as a saga processor would produce it.
#[derive(Debug, Clone)]
enum Message {
    Order(OrderCommand),
    Stock(Sku, StockCommand),
    Payment(PaymentCommand),
}

#[derive(Debug, Default)]
struct World {
    order: OrderState,
    stocks: BTreeMap<Sku, StockState>,
    payment: PaymentState,
    queue: Vec<Message>,
    unexpected: Vec<String>,
}

impl World {
    /// The reactions of the saga routing table.
    fn react_to_order(&mut self, event: &OrderEvent) {
        let id = order_id();
        match event {
            OrderEvent::OrderPlaced(e) => {
                for line in &e.lines {
                    self.queue.push(Message::Stock(
                        line.sku.clone(),
                        ReserveStock {
                            order_id: id.clone(),
                            line_no: line.line_no,
                            quantity: line.quantity,
                        }
                        .into(),
                    ));
                }
            }
            OrderEvent::OrderAwaitingPayment(e) => {
                self.queue.push(Message::Payment(
                    AuthorizePayment {
                        order_id: id,
                        customer_id: e.customer_id.clone(),
                        amount: e.total.clone(),
                        card_token: e.card_token.clone(),
                    }
                    .into(),
                ));
            }
            OrderEvent::OrderConfirmed(e) => {
                for r in &e.lines {
                    self.queue.push(Message::Stock(
                        r.sku.clone(),
                        CommitStock {
                            order_id: id.clone(),
                            line_no: r.line_no,
                        }
                        .into(),
                    ));
                }
            }
            OrderEvent::OrderCancelled(crate::orders::OrderCancelled { release, .. })
            | OrderEvent::OrderExpired(crate::orders::OrderExpired { release }) => {
                for r in release {
                    self.queue.push(Message::Stock(
                        r.sku.clone(),
                        ReleaseStock {
                            order_id: id.clone(),
                            line_no: r.line_no,
                        }
                        .into(),
                    ));
                }
            }
            OrderEvent::OrderLineReleaseRequired(e) => {
                self.queue.push(Message::Stock(
                    e.sku.clone(),
                    ReleaseStock {
                        order_id: id,
                        line_no: e.line_no,
                    }
                    .into(),
                ));
            }
            OrderEvent::OrderPaymentRefundRequired(_) => {
                self.queue.push(Message::Payment(
                    RefundPayment {
                        reason: "order closed before payment".to_owned(),
                    }
                    .into(),
                ));
            }
            OrderEvent::OrderLineReserved(_) | OrderEvent::OrderLineRejected(_) => {}
        }
    }

    fn react_to_stock(&mut self, event: &StockEvent) {
        match event {
            StockEvent::StockReserved(e) => self.queue.push(Message::Order(
                RecordLineReserved { line_no: e.line_no }.into(),
            )),
            StockEvent::StockReservationRejected(e) => self.queue.push(Message::Order(
                RecordLineRejected {
                    line_no: e.line_no,
                    available: e.available,
                }
                .into(),
            )),
            _ => {}
        }
    }

    fn react_to_payment(&mut self, event: &PaymentEvent) {
        match event {
            PaymentEvent::PaymentAuthorized(e) => self.queue.push(Message::Order(
                ConfirmOrder {
                    payment_id: PaymentId::for_order(&e.order_id),
                }
                .into(),
            )),
            PaymentEvent::PaymentDeclined(_) => self.queue.push(Message::Order(
                CancelOrder {
                    reason: CancelReason::PaymentDeclined,
                }
                .into(),
            )),
            PaymentEvent::PaymentRefunded(_) => {}
        }
    }

    fn deliver(
        &mut self,
        message: Message,
        prices: &BTreeMap<Sku, CatalogEntry>,
        policy: &PaymentPolicy,
    ) {
        match message {
            Message::Order(command) => match Order::decide(&self.order, &command, prices) {
                Ok(events) => {
                    for event in &events {
                        self.order = Order::evolve(std::mem::take(&mut self.order), event);
                        self.react_to_order(event);
                    }
                }
                // A customer may ask to cancel after confirmation; nothing else may be refused.
                Err(r) if r.code() == "order.already_confirmed" => {}
                Err(r) => self.unexpected.push(format!("{command:?}: {}", r.code())),
            },
            Message::Stock(sku, command) => {
                let state = self.stocks.remove(&sku).unwrap_or_default();
                match Stock::decide(&state, &command, &()) {
                    Ok(events) => {
                        let state = Stock::evolve_all(state, &events);
                        self.stocks.insert(sku, state);
                        for event in &events {
                            self.react_to_stock(event);
                        }
                    }
                    Err(r) => {
                        self.stocks.insert(sku, state);
                        self.unexpected.push(format!("{command:?}: {}", r.code()));
                    }
                }
            }
            Message::Payment(command) => match Payment::decide(&self.payment, &command, policy) {
                Ok(events) => {
                    for event in &events {
                        self.payment = Payment::evolve(std::mem::take(&mut self.payment), event);
                        self.react_to_payment(event);
                    }
                }
                Err(r) => self.unexpected.push(format!("{command:?}: {}", r.code())),
            },
        }
    }
}

/// One scheduling decision: which queued message goes next, whether it is also kept for a second
/// delivery, and whether the customer cancels or the deadline timer fires right before it.
#[derive(Debug, Clone)]
struct Step {
    pick: usize,
    redeliver: bool,
    interrupt: Option<Message>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<usize>(),
        prop::bool::weighted(0.2),
        prop_oneof![
            18 => Just(None),
            1 => Just(Some(Message::Order(CancelOrder { reason: CancelReason::CustomerRequested }.into()))),
            1 => Just(Some(Message::Order(ExpireOrder { now: DEADLINE_AT }.into()))),
        ],
    )
        .prop_map(|(pick, redeliver, interrupt)| Step {
            pick,
            redeliver,
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

proptest! {
    #[test]
    fn every_reservation_is_settled_once_whatever_the_interleaving(
        lines in lines(),
        stock_a in 0u32..6,
        stock_b in 0u32..6,
        limit in prop::option::of(0i64..2000),
        steps in prop::collection::vec(step(), 0..80),
    ) {
        let prices = BTreeMap::from([
            (sku("A"), CatalogEntry { price: Money::new(100, "EUR").expect("valid"), discontinued: false }),
            (sku("B"), CatalogEntry { price: Money::new(250, "EUR").expect("valid"), discontinued: false }),
        ]);
        let policy = PaymentPolicy { decline_above_minor: limit, ..PaymentPolicy::default() };
        let mut world = World::default();
        for (s, quantity) in [("A", stock_a), ("B", stock_b)] {
            if quantity > 0 {
                world.deliver(Message::Stock(sku(s), ReceiveStock { quantity }.into()), &prices, &policy);
            }
        }
        world.deliver(
            Message::Order(PlaceOrder {
                order_id: order_id(),
                customer_id: CustomerId::new("c-1").expect("valid customer"),
                lines,
                card_token: "tok".to_owned(),
                deadline_at: DEADLINE_AT,
                placed_at: 0,
            }.into()),
            &prices,
            &policy,
        );
        for step in steps {
            if let Some(message) = step.interrupt {
                world.deliver(message, &prices, &policy);
            }
            if world.queue.is_empty() {
                continue;
            }
            let index = step.pick % world.queue.len();
            let message = if step.redeliver { world.queue[index].clone() } else { world.queue.remove(index) };
            world.deliver(message, &prices, &policy);
        }
        // Drain, then let the deadline timer close whatever is still open, then drain again.
        for _ in 0..2 {
            let mut budget = 1_000;
            while !world.queue.is_empty() && budget > 0 {
                let message = world.queue.remove(0);
                world.deliver(message, &prices, &policy);
                budget -= 1;
            }
            prop_assert!(world.queue.is_empty(), "the saga does not settle");
            world.deliver(Message::Order(ExpireOrder { now: DEADLINE_AT }.into()), &prices, &policy);
        }

        prop_assert!(world.unexpected.is_empty(), "refused saga commands: {:?}", world.unexpected);
        let order = world.order.order.as_ref().expect("placed");
        let confirmed = order.status == OrderStatus::Confirmed;
        prop_assert!(confirmed || order.status.is_closed(), "order left open: {:?}", order.status);
        for stock in world.stocks.values() {
            prop_assert!(stock.is_balanced());
            for reservation in stock.reservations.values() {
                prop_assert_ne!(reservation.status, ReservationStatus::Reserved, "reservation left held");
                if !confirmed {
                    prop_assert_ne!(reservation.status, ReservationStatus::Committed);
                }
            }
        }
        if confirmed {
            for line in &order.lines {
                let held = world.stocks.get(&line.line.sku).and_then(|s| s.reservation(&order.order_id, line.line.line_no));
                prop_assert_eq!(held.map(|r| r.status), Some(ReservationStatus::Committed));
            }
            let paid = world.payment.payment.as_ref().is_some_and(|p| matches!(p.status, PaymentStatus::Authorized { .. }));
            prop_assert!(paid, "a confirmed order is not paid");
        } else {
            let kept_money = world.payment.payment.as_ref().is_some_and(|p| matches!(p.status, PaymentStatus::Authorized { .. }));
            prop_assert!(!kept_money, "money kept for a closed order");
        }
    }
}
