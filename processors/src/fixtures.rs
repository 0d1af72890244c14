//! Shared test data: one order, its events wrapped in envelopes, and the envelope a reaction is
//! expected to emit, built independently of the code under test.

use streamcart_aggregates::catalog::{
    ProductCreated, ProductDiscontinued, ProductEvent, ProductPriceChanged,
};
use streamcart_aggregates::inventory::{
    StockCommitted, StockEvent, StockReceived, StockReleased, StockReservationRejected,
    StockReserved,
};
use streamcart_aggregates::orders::{
    CancelReason, LineRef, OrderAwaitingPayment, OrderCancelled, OrderConfirmed, OrderEvent,
    OrderExpired, OrderLine, OrderLineRejected, OrderLineReleaseRequired, OrderLineReserved,
    OrderPaymentRefundRequired, OrderPlaced,
};
use streamcart_aggregates::payments::{
    DeclineReason, PaymentAuthorized, PaymentDeclined, PaymentEvent, PaymentRefunded,
};
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope};
use uuid::Uuid;

pub const ORDER: &str = "3f2b8c1e-4a8e-4c8e-9a7b-1b2c3d4e5f60";
pub const OCCURRED_AT: i64 = 1_700_000_000_000;
pub const DEADLINE_AT: i64 = OCCURRED_AT + 60_000;

pub fn order_id() -> OrderId {
    OrderId::new(ORDER).expect("order id")
}

pub fn customer() -> CustomerId {
    CustomerId::new("customer-1").expect("customer id")
}

pub fn sku(s: &str) -> Sku {
    Sku::new(s).expect("sku")
}

pub fn line_no(n: u32) -> LineNo {
    LineNo::new(n).expect("line number")
}

pub fn eur(amount_minor: i64) -> Money {
    Money::positive(amount_minor, "EUR").expect("money")
}

pub fn line_ref(line: u32, s: &str, quantity: u32) -> LineRef {
    LineRef {
        line_no: line_no(line),
        sku: sku(s),
        quantity,
    }
}

pub fn placed(lines: &[(&str, u32)]) -> OrderPlaced {
    let lines: Vec<OrderLine> = lines
        .iter()
        .enumerate()
        .map(|(i, (s, quantity))| OrderLine {
            line_no: line_no(u32::try_from(i).expect("few lines") + 1),
            sku: sku(s),
            quantity: *quantity,
            unit_price: eur(100),
        })
        .collect();
    let total = lines.iter().map(|l| i64::from(l.quantity) * 100).sum();
    OrderPlaced {
        order_id: order_id(),
        customer_id: customer(),
        lines,
        total: eur(total),
        card_token: "card-ok".into(),
        deadline_at: DEADLINE_AT,
        placed_at: OCCURRED_AT,
    }
}

fn wrap<E>(aggregate_id: &str, version: u64, payload: E) -> EventEnvelope<E> {
    EventEnvelope {
        event_id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{aggregate_id}/{version}").as_bytes(),
        ),
        aggregate_id: aggregate_id.to_owned(),
        version,
        occurred_at: OCCURRED_AT,
        causation_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, b"cause"),
        correlation_id: ORDER.to_owned(),
        payload,
    }
}

pub fn order_event(payload: impl Into<OrderEvent>) -> EventEnvelope<OrderEvent> {
    wrap(ORDER, 1, payload.into())
}

pub fn stock_event(s: &str, payload: impl Into<StockEvent>) -> EventEnvelope<StockEvent> {
    wrap(s, 1, payload.into())
}

pub fn payment_event(payload: impl Into<PaymentEvent>) -> EventEnvelope<PaymentEvent> {
    wrap(ORDER, 1, payload.into())
}

pub fn product_event(
    s: &str,
    version: u64,
    payload: impl Into<ProductEvent>,
) -> EventEnvelope<ProductEvent> {
    let mut event = wrap(s, version, payload.into());
    event.correlation_id = s.to_owned();
    event
}

pub fn product_created(s: &str, amount_minor: i64) -> ProductCreated {
    ProductCreated {
        sku: sku(s),
        name: format!("product {s}"),
        category: "things".into(),
        price: eur(amount_minor),
    }
}

pub fn price_changed(amount_minor: i64) -> ProductPriceChanged {
    ProductPriceChanged {
        price: eur(amount_minor),
    }
}

pub fn discontinued() -> ProductDiscontinued {
    ProductDiscontinued
}

/// The envelope the routing rules call for, spelled out from the contract rather than from the
/// code under test.
pub fn expected_envelope<E, C>(
    event: &EventEnvelope<E>,
    reaction: &str,
    index: usize,
    aggregate_id: &str,
    payload: C,
) -> CommandEnvelope<C> {
    // The derivation spelled out again, so a change to it has to be made on purpose.
    let mut name = Vec::new();
    for part in [reaction.as_bytes(), aggregate_id.as_bytes()] {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    name.extend_from_slice(&(index as u64).to_be_bytes());
    CommandEnvelope {
        command_id: Uuid::new_v5(&event.event_id, &name),
        aggregate_id: aggregate_id.to_owned(),
        expected_version: None,
        issued_at: event.occurred_at,
        correlation_id: event.correlation_id.clone(),
        payload,
    }
}

pub fn every_order_event() -> Vec<EventEnvelope<OrderEvent>> {
    let payment_id = PaymentId::for_order(&order_id());
    let events: Vec<OrderEvent> = vec![
        placed(&[("SKU-A", 1)]).into(),
        OrderLineReserved {
            line_no: line_no(1),
        }
        .into(),
        OrderAwaitingPayment {
            total: eur(100),
            card_token: "card-ok".into(),
            customer_id: customer(),
        }
        .into(),
        OrderLineReleaseRequired {
            line_no: line_no(1),
            sku: sku("SKU-A"),
            quantity: 1,
        }
        .into(),
        OrderLineRejected {
            line_no: line_no(1),
            available: 0,
        }
        .into(),
        OrderCancelled {
            reason: CancelReason::StockUnavailable,
            release: vec![line_ref(1, "SKU-A", 1)],
        }
        .into(),
        OrderConfirmed {
            payment_id: payment_id.clone(),
            lines: vec![line_ref(1, "SKU-A", 1)],
        }
        .into(),
        OrderPaymentRefundRequired {
            payment_id,
            amount: eur(100),
        }
        .into(),
        OrderExpired {
            release: vec![line_ref(1, "SKU-A", 1)],
        }
        .into(),
    ];
    events.into_iter().map(order_event).collect()
}

pub fn every_stock_event() -> Vec<EventEnvelope<StockEvent>> {
    let events: Vec<StockEvent> = vec![
        StockReceived { quantity: 3 }.into(),
        StockReserved {
            order_id: order_id(),
            line_no: line_no(1),
            quantity: 1,
        }
        .into(),
        StockReservationRejected {
            order_id: order_id(),
            line_no: line_no(1),
            quantity: 9,
            available: 3,
        }
        .into(),
        StockReleased {
            order_id: order_id(),
            line_no: line_no(1),
            quantity: 1,
        }
        .into(),
        StockCommitted {
            order_id: order_id(),
            line_no: line_no(1),
            quantity: 1,
        }
        .into(),
    ];
    events
        .into_iter()
        .map(|e| stock_event("SKU-A", e))
        .collect()
}

pub fn every_payment_event() -> Vec<EventEnvelope<PaymentEvent>> {
    let events: Vec<PaymentEvent> = vec![
        PaymentAuthorized {
            order_id: order_id(),
            amount: eur(100),
            authorization_code: "AUTH-1".into(),
        }
        .into(),
        PaymentDeclined {
            order_id: order_id(),
            amount: eur(100),
            reason: DeclineReason::AmountOverLimit,
        }
        .into(),
        PaymentRefunded {
            order_id: order_id(),
            amount: eur(100),
            reason: "late".into(),
        }
        .into(),
    ];
    events.into_iter().map(payment_event).collect()
}
