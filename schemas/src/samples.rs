//! One sample of every command, event and state variant, for round-trip tests here and in
//! the integration tests.

use streamcart_aggregates::catalog::{
    ChangeCategory, ChangePrice, CreateProduct, DiscontinueProduct, ProductCategoryChanged,
    ProductCommand, ProductCreated, ProductDiscontinued, ProductEvent, ProductPriceChanged,
    ProductRecord, ProductRenamed, ProductState, RenameProduct,
};
use streamcart_aggregates::inventory::{
    CommitStock, ReceiveStock, ReleaseStock, Reservation, ReservationKey, ReservationStatus,
    ReserveStock, StockCommand, StockCommitted, StockEvent, StockReceived, StockReleased,
    StockReservationRejected, StockReserved, StockState,
};
use streamcart_aggregates::orders::{
    CancelOrder, CancelReason, ConfirmOrder, ExpireOrder, LineRef, LineState, LineStatus,
    OrderAwaitingPayment, OrderCancelled, OrderCommand, OrderConfirmed, OrderEvent, OrderExpired,
    OrderLine, OrderLineRejected, OrderLineReleaseRequired, OrderLineRequest, OrderLineReserved,
    OrderPaymentRefundRequired, OrderPlaced, OrderState, OrderStatus, PlaceOrder, PlacedOrder,
    RecordLineRejected, RecordLineReserved,
};
use streamcart_aggregates::payments::{
    AuthorizePayment, DeclineReason, PaymentAuthorized, PaymentCommand, PaymentDeclined,
    PaymentEvent, PaymentRecord, PaymentRefunded, PaymentState, PaymentStatus, RefundPayment,
};
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};

use crate::envelope::{CommandEnvelope, CommandResult, EventEnvelope, Outcome, Snapshot};

type Invalid = streamcart_aggregates::values::IdError;

fn eur(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "EUR".to_owned(),
    }
}

fn ids() -> Result<(Sku, OrderId, PaymentId, CustomerId, LineNo), Invalid> {
    let order = OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789abc")?;
    Ok((
        Sku::new("SKU-000042")?,
        order.clone(),
        PaymentId::for_order(&order),
        CustomerId::new("customer_7")?,
        LineNo::new(2)?,
    ))
}

/// Every catalog command variant.
pub fn product_commands() -> Vec<ProductCommand> {
    vec![
        CreateProduct {
            sku: "SKU-000042".to_owned(),
            name: "Espresso cup".to_owned(),
            category: "kitchen".to_owned(),
            price: eur(1999),
        }
        .into(),
        RenameProduct {
            name: "Espresso cup, white".to_owned(),
        }
        .into(),
        ChangePrice { price: eur(2499) }.into(),
        ChangeCategory {
            category: "tableware".to_owned(),
        }
        .into(),
        DiscontinueProduct.into(),
    ]
}

/// Every catalog event variant.
pub fn product_events() -> Result<Vec<ProductEvent>, Invalid> {
    let (sku, ..) = ids()?;
    Ok(vec![
        ProductCreated {
            sku,
            name: "Espresso cup".to_owned(),
            category: "kitchen".to_owned(),
            price: eur(1999),
        }
        .into(),
        ProductRenamed {
            name: "Cup".to_owned(),
        }
        .into(),
        ProductPriceChanged { price: eur(1) }.into(),
        ProductCategoryChanged {
            from: "kitchen".to_owned(),
            to: "tableware".to_owned(),
        }
        .into(),
        ProductDiscontinued.into(),
    ])
}

/// Product states: before creation and after.
pub fn product_states() -> Result<Vec<ProductState>, Invalid> {
    let (sku, ..) = ids()?;
    Ok(vec![
        ProductState::default(),
        ProductState {
            product: Some(ProductRecord {
                sku,
                name: "Cup".to_owned(),
                category: "kitchen".to_owned(),
                price: eur(1999),
                discontinued: true,
            }),
        },
    ])
}

/// Every inventory command variant.
pub fn stock_commands() -> Result<Vec<StockCommand>, Invalid> {
    let (_, order_id, _, _, line_no) = ids()?;
    Ok(vec![
        ReceiveStock { quantity: u32::MAX }.into(),
        ReserveStock {
            order_id: order_id.clone(),
            line_no,
            quantity: 3,
        }
        .into(),
        ReleaseStock {
            order_id: order_id.clone(),
            line_no,
        }
        .into(),
        CommitStock { order_id, line_no }.into(),
    ])
}

/// Every inventory event variant.
pub fn stock_events() -> Result<Vec<StockEvent>, Invalid> {
    let (_, order_id, _, _, line_no) = ids()?;
    Ok(vec![
        StockReceived { quantity: 10 }.into(),
        StockReserved {
            order_id: order_id.clone(),
            line_no,
            quantity: 3,
        }
        .into(),
        StockReservationRejected {
            order_id: order_id.clone(),
            line_no,
            quantity: 30,
            available: 7,
        }
        .into(),
        StockReleased {
            order_id: order_id.clone(),
            line_no,
            quantity: 3,
        }
        .into(),
        StockCommitted {
            order_id,
            line_no,
            quantity: 3,
        }
        .into(),
    ])
}

/// Stock states: empty and with one reservation of every status.
pub fn stock_states() -> Result<Vec<StockState>, Invalid> {
    let (_, order_id, ..) = ids()?;
    let mut busy = StockState {
        exists: true,
        received: 100,
        available: 90,
        reserved: 4,
        sold: 6,
        reservations: Default::default(),
    };
    for (n, status) in [
        ReservationStatus::Reserved,
        ReservationStatus::Released,
        ReservationStatus::Committed,
        ReservationStatus::Rejected,
    ]
    .into_iter()
    .enumerate()
    {
        let line_no = LineNo::new(u32::try_from(n).unwrap_or(0).saturating_add(1))?;
        busy.reservations.insert(
            ReservationKey::new(order_id.clone(), line_no),
            Reservation {
                quantity: 2,
                status,
            },
        );
    }
    Ok(vec![StockState::default(), busy])
}

fn order_line(line_no: LineNo, sku: &Sku) -> OrderLine {
    OrderLine {
        line_no,
        sku: sku.clone(),
        quantity: 2,
        unit_price: eur(1999),
    }
}

fn line_ref(line_no: LineNo, sku: &Sku) -> LineRef {
    LineRef {
        line_no,
        sku: sku.clone(),
        quantity: 2,
    }
}

/// Every orders command variant.
pub fn order_commands() -> Result<Vec<OrderCommand>, Invalid> {
    let (sku, order_id, payment_id, customer_id, line_no) = ids()?;
    Ok(vec![
        PlaceOrder {
            order_id,
            customer_id,
            lines: vec![
                OrderLineRequest {
                    sku: sku.clone(),
                    quantity: 2,
                },
                OrderLineRequest { sku, quantity: 1 },
            ],
            card_token: "tok_visa".to_owned(),
            deadline_at: 1_700_000_900_000,
            placed_at: 1_700_000_000_000,
        }
        .into(),
        RecordLineReserved { line_no }.into(),
        RecordLineRejected {
            line_no,
            available: 1,
        }
        .into(),
        ConfirmOrder { payment_id }.into(),
        CancelOrder {
            reason: CancelReason::CustomerRequested,
        }
        .into(),
        ExpireOrder {
            now: 1_700_000_900_001,
        }
        .into(),
    ])
}

/// Every orders event variant.
pub fn order_events() -> Result<Vec<OrderEvent>, Invalid> {
    let (sku, order_id, payment_id, customer_id, line_no) = ids()?;
    let first = LineNo::new(1)?;
    Ok(vec![
        OrderPlaced {
            order_id,
            customer_id: customer_id.clone(),
            lines: vec![order_line(first, &sku), order_line(line_no, &sku)],
            total: eur(7996),
            card_token: "tok_visa".to_owned(),
            deadline_at: 1_700_000_900_000,
            placed_at: 1_700_000_000_000,
        }
        .into(),
        OrderLineReserved { line_no }.into(),
        OrderAwaitingPayment {
            total: eur(7996),
            card_token: "tok_visa".to_owned(),
            customer_id,
        }
        .into(),
        OrderLineReleaseRequired {
            line_no,
            sku: sku.clone(),
            quantity: 2,
        }
        .into(),
        OrderLineRejected {
            line_no,
            available: 0,
        }
        .into(),
        OrderCancelled {
            reason: CancelReason::StockUnavailable,
            release: vec![line_ref(first, &sku)],
        }
        .into(),
        OrderConfirmed {
            payment_id: payment_id.clone(),
            lines: vec![line_ref(first, &sku), line_ref(line_no, &sku)],
        }
        .into(),
        OrderPaymentRefundRequired {
            payment_id,
            amount: eur(7996),
        }
        .into(),
        OrderExpired { release: vec![] }.into(),
    ])
}

/// Order states: before placement, cancelled (with reason) and confirmed (with payment).
pub fn order_states() -> Result<Vec<OrderState>, Invalid> {
    let (sku, order_id, payment_id, customer_id, line_no) = ids()?;
    let placed = |status, payment_id, statuses: [LineStatus; 2]| -> Result<OrderState, Invalid> {
        Ok(OrderState {
            order: Some(PlacedOrder {
                order_id: order_id.clone(),
                customer_id: customer_id.clone(),
                lines: vec![
                    LineState {
                        line: order_line(LineNo::new(1)?, &sku),
                        status: statuses[0],
                    },
                    LineState {
                        line: order_line(line_no, &sku),
                        status: statuses[1],
                    },
                ],
                total: eur(7996),
                card_token: "tok".to_owned(),
                deadline_at: 5,
                placed_at: 1,
                status,
                payment_id,
                refund_requested: false,
            }),
        })
    };
    Ok(vec![
        OrderState::default(),
        placed(
            OrderStatus::Cancelled {
                reason: CancelReason::PaymentDeclined,
            },
            None,
            [LineStatus::Released, LineStatus::Rejected],
        )?,
        placed(
            OrderStatus::Confirmed,
            Some(payment_id),
            [LineStatus::Committed, LineStatus::Committed],
        )?,
        placed(
            OrderStatus::Reserving,
            None,
            [LineStatus::Pending, LineStatus::Reserved],
        )?,
        placed(
            OrderStatus::AwaitingPayment,
            None,
            [LineStatus::Reserved; 2],
        )?,
        placed(OrderStatus::Expired, None, [LineStatus::Released; 2])?,
    ])
}

/// Every payments command variant.
pub fn payment_commands() -> Result<Vec<PaymentCommand>, Invalid> {
    let (_, order_id, _, customer_id, _) = ids()?;
    Ok(vec![
        AuthorizePayment {
            order_id,
            customer_id,
            amount: eur(7996),
            card_token: "tok_visa".to_owned(),
        }
        .into(),
        RefundPayment {
            reason: "order cancelled".to_owned(),
        }
        .into(),
    ])
}

/// Every payments event variant.
pub fn payment_events() -> Result<Vec<PaymentEvent>, Invalid> {
    let (_, order_id, ..) = ids()?;
    Ok(vec![
        PaymentAuthorized {
            order_id: order_id.clone(),
            amount: eur(7996),
            authorization_code: "AUTH-1".to_owned(),
        }
        .into(),
        PaymentDeclined {
            order_id: order_id.clone(),
            amount: eur(7996),
            reason: DeclineReason::AmountOverLimit,
        }
        .into(),
        PaymentDeclined {
            order_id: order_id.clone(),
            amount: eur(7996),
            reason: DeclineReason::CardDeclined,
        }
        .into(),
        PaymentRefunded {
            order_id,
            amount: eur(7996),
            reason: "late authorization".to_owned(),
        }
        .into(),
    ])
}

/// Payment states: none, and one of every status.
pub fn payment_states() -> Result<Vec<PaymentState>, Invalid> {
    let (_, order_id, ..) = ids()?;
    let with = |status| PaymentState {
        payment: Some(PaymentRecord {
            order_id: order_id.clone(),
            amount: eur(7996),
            status,
        }),
    };
    Ok(vec![
        PaymentState::default(),
        with(PaymentStatus::Authorized {
            authorization_code: "AUTH-1".to_owned(),
        }),
        with(PaymentStatus::Declined {
            reason: DeclineReason::CardDeclined,
        }),
        with(PaymentStatus::Refunded {
            authorization_code: "AUTH-1".to_owned(),
            reason: "late".to_owned(),
        }),
    ])
}

/// Wraps a command in an envelope with fixed ids, for tests.
pub fn command_envelope<C>(aggregate_id: &str, payload: C) -> CommandEnvelope<C> {
    CommandEnvelope {
        command_id: uuid::Uuid::from_u128(0x0190_c7a2_1b2c_7d3e_8f40_0000_0000_0001),
        aggregate_id: aggregate_id.to_owned(),
        expected_version: Some(3),
        issued_at: 1_700_000_000_000,
        correlation_id: "0190c7a2-1b2c-7d3e-8f40-123456789abc".to_owned(),
        payload,
    }
}

/// Wraps an event in an envelope with fixed ids, for tests.
pub fn event_envelope<E>(aggregate_id: &str, version: u64, payload: E) -> EventEnvelope<E> {
    EventEnvelope {
        event_id: uuid::Uuid::from_u128(0x0190_c7a2_1b2c_7d3e_8f40_0000_0000_0002),
        aggregate_id: aggregate_id.to_owned(),
        version,
        occurred_at: 1_700_000_000_001,
        causation_id: uuid::Uuid::from_u128(0x0190_c7a2_1b2c_7d3e_8f40_0000_0000_0001),
        correlation_id: "0190c7a2-1b2c-7d3e-8f40-123456789abc".to_owned(),
        payload,
    }
}

/// Wraps a state in a snapshot, for tests.
pub fn snapshot<S>(aggregate_id: &str, version: u64, state: S) -> Snapshot<S> {
    Snapshot {
        aggregate_id: aggregate_id.to_owned(),
        version,
        taken_at: 1_700_000_000_002,
        event_offset: Some(41),
        state,
        recent_command_ids: vec![uuid::Uuid::from_u128(11), uuid::Uuid::from_u128(12)],
    }
}

/// One command result of every outcome.
pub fn command_results() -> Vec<CommandResult> {
    let id = uuid::Uuid::from_u128(7);
    let result = |outcome| CommandResult {
        command_id: id,
        aggregate_id: "SKU-000042".to_owned(),
        outcome,
    };
    vec![
        result(Outcome::Accepted {
            version: 4,
            event_ids: vec![uuid::Uuid::from_u128(8), uuid::Uuid::from_u128(9)],
        }),
        result(Outcome::Accepted {
            version: 4,
            event_ids: vec![],
        }),
        result(Outcome::Rejected {
            code: "stock.invalid_quantity".to_owned(),
            message: "quantity must be positive".to_owned(),
        }),
        result(Outcome::Duplicate { version: 4 }),
    ]
}
