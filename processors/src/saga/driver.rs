//! An in-process saga: the inventory, orders and payments processors as in-process drivers,
//! joined by the real reactions, with every event and command in flight held where the caller
//! can deliver it in any order, as often as it likes, or as an attempt that is then aborted.
//!
//! Nothing is delivered behind the caller's back: what Kafka would reorder, redeliver or abort
//! is the caller's choice, so a test can explore interleavings the real topics allow.

use streamcart_aggregates::inventory::{Stock, StockCommand, StockEvent};
use streamcart_aggregates::orders::{Order, OrderCommand, OrderEvent, PriceBook};
use streamcart_aggregates::payments::{Payment, PaymentEvent, PaymentPolicy};
use streamcart_aggregates::values::TimestampMillis;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, EventEnvelope};

use super::{SagaCommand, react_to_order_event, react_to_payment_event, react_to_stock_event};
use crate::command::driver::InProcessDriver;

/// A record on its way: an event for the reactions, or a command the reactions emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight {
    /// An order event, for the reactions.
    OrderEvent(EventEnvelope<OrderEvent>),
    /// A stock event, for the reactions.
    StockEvent(EventEnvelope<StockEvent>),
    /// A payment event, for the reactions.
    PaymentEvent(EventEnvelope<PaymentEvent>),
    /// A command, for the processor of its target.
    Command(SagaCommand),
}

/// The saga's processors in process; the order processor prices from `P`.
#[derive(Debug)]
pub struct InProcessSaga<P> {
    /// The inventory context's processor.
    pub stock: InProcessDriver<Stock>,
    /// The orders context's processor.
    pub order: InProcessDriver<Order>,
    /// The payments context's processor.
    pub payment: InProcessDriver<Payment>,
    prices: P,
    policy: PaymentPolicy,
    /// How many events of each log (order, stock, payment) are already in flight.
    published: (usize, usize, usize),
    /// Records produced and not yet taken, oldest first.
    pub in_flight: Vec<InFlight>,
    /// Every saga command delivered, with its answer, in delivery order.
    pub answers: Vec<(SagaCommand, CommandResult)>,
}

impl<P: PriceBook + 'static> InProcessSaga<P> {
    /// Processors with empty logs, the order one pricing from `prices` and the payment one
    /// deciding by `policy`; every clock starts at `start`.
    pub fn new(prices: P, policy: PaymentPolicy, start: TimestampMillis) -> Self {
        Self {
            stock: InProcessDriver::new(start),
            order: InProcessDriver::new(start),
            payment: InProcessDriver::new(start),
            prices,
            policy,
            published: (0, 0, 0),
            in_flight: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// Sends a command from outside the saga (an admin, a customer, the deadline timer) to the
    /// stock processor; its events go in flight.
    pub fn send_stock(&mut self, command: &CommandEnvelope<StockCommand>) -> CommandResult {
        let result = self.stock.send(command, &());
        self.publish();
        result
    }

    /// Sends a command from outside the saga to the order processor; its events go in flight.
    pub fn send_order(&mut self, command: &CommandEnvelope<OrderCommand>) -> CommandResult {
        let result = self.order.send(command, &self.prices);
        self.publish();
        result
    }

    /// Takes the record in flight at `index` (any index: it wraps), or `None` when nothing is.
    pub fn take(&mut self, index: usize) -> Option<InFlight> {
        if self.in_flight.is_empty() {
            return None;
        }
        let at = index % self.in_flight.len();
        Some(self.in_flight.remove(at))
    }

    /// Delivers one record: an event runs every reaction interested in it and puts the commands
    /// they emit in flight; a command is handled by its processor as one committed transaction,
    /// answered, and its events put in flight.
    pub fn deliver(&mut self, record: InFlight) {
        let commands = match record {
            InFlight::OrderEvent(e) => react_to_order_event(&e),
            InFlight::StockEvent(e) => react_to_stock_event(&e),
            InFlight::PaymentEvent(e) => react_to_payment_event(&e),
            InFlight::Command(command) => {
                let result = match &command {
                    SagaCommand::Stock(c) => self.stock.send(c, &()),
                    SagaCommand::Order(c) => self.order.send(c, &self.prices),
                    SagaCommand::Payment(c) => self.payment.send(c, &self.policy),
                };
                self.answers.push((command, result));
                self.publish();
                return;
            }
        };
        self.in_flight
            .extend(commands.into_iter().map(InFlight::Command));
    }

    /// Handles `command` in a transaction that is then aborted: nothing is kept, nothing is
    /// answered, and the command is still to be delivered.
    pub fn deliver_aborted(&mut self, command: &SagaCommand) {
        match command {
            SagaCommand::Stock(c) => self.stock.send_aborted(std::slice::from_ref(c), &()),
            SagaCommand::Order(c) => self
                .order
                .send_aborted(std::slice::from_ref(c), &self.prices),
            SagaCommand::Payment(c) => self
                .payment
                .send_aborted(std::slice::from_ref(c), &self.policy),
        }
    }

    /// Delivers the oldest record in flight until none is left; false when `budget` deliveries
    /// were not enough.
    pub fn settle(&mut self, budget: usize) -> bool {
        for _ in 0..budget {
            match self.take(0) {
                Some(record) => self.deliver(record),
                None => return true,
            }
        }
        self.in_flight.is_empty()
    }

    /// Puts the events the processors appended since the last call in flight.
    fn publish(&mut self) {
        let (orders, stocks, payments) = self.published;
        let order_events = self.order.events[orders..].iter().cloned();
        let stock_events = self.stock.events[stocks..].iter().cloned();
        let payment_events = self.payment.events[payments..].iter().cloned();
        self.in_flight.extend(
            order_events
                .map(InFlight::OrderEvent)
                .chain(stock_events.map(InFlight::StockEvent))
                .chain(payment_events.map(InFlight::PaymentEvent)),
        );
        self.published = (
            self.order.events.len(),
            self.stock.events.len(),
            self.payment.events.len(),
        );
    }
}
