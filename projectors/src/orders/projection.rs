//! Orders by id and by customer, from `orders.order.events`.
//!
//! Status follows the saga: `placed` on `OrderPlaced`, `reserving` once the first line is
//! reserved, `awaiting_payment`, then `confirmed`, `cancelled` (with a reason code) or
//! `expired`. Late compensations after an order closed (`OrderLineReleaseRequired`,
//! `OrderPaymentRefundRequired`) and `OrderLineRejected` (always followed by a cancellation)
//! change no visible field but still advance the row's version.

use streamcart_aggregates::orders::{CancelReason, OrderEvent, OrderPlaced};
use streamcart_schemas::EventEnvelope;

use crate::model::{OrderLineRow, OrderRow, OrderStatus};
use crate::projection::{Mutation, Projection, is_newer};

/// The order read model (orders by id and by customer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Orders;

impl Projection for Orders {
    const NAME: &'static str = "orders";
    type Event = OrderEvent;
    type Row = OrderRow;

    fn project(current: Option<&OrderRow>, event: &EventEnvelope<OrderEvent>) -> Vec<Mutation> {
        project_order(current, event)
    }

    fn upserted(mutation: &Mutation) -> Option<&OrderRow> {
        match mutation {
            Mutation::UpsertOrder(row) => Some(row),
            _ => None,
        }
    }
}

/// The stable code of a cancellation reason, as stored in `OrderRow::reason`.
pub fn cancel_reason_code(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::StockUnavailable => "stock_unavailable",
        CancelReason::PaymentDeclined => "payment_declined",
        CancelReason::CustomerRequested => "customer_requested",
    }
}

/// The writes that bring `current` up to `e`. An order event other than `OrderPlaced` with no
/// row yet yields nothing: the customer, lines and placement time are unknown, so there is no
/// row (and no place in the customer's listing) to write.
pub fn project_order(current: Option<&OrderRow>, e: &EventEnvelope<OrderEvent>) -> Vec<Mutation> {
    if !is_newer(current.map(|row| row.version), e.version) {
        return Vec::new();
    }
    let next = match (&e.payload, current) {
        (OrderEvent::OrderPlaced(placed), _) => placed_row(placed, e),
        (_, None) => return Vec::new(),
        (OrderEvent::OrderLineReserved(_), Some(row)) => {
            let status = match row.status {
                OrderStatus::Placed => OrderStatus::Reserving,
                other => other,
            };
            OrderRow {
                status,
                ..bumped(row, e)
            }
        }
        (OrderEvent::OrderAwaitingPayment(_), Some(row)) => {
            closing(row, e, OrderStatus::AwaitingPayment, None)
        }
        (OrderEvent::OrderConfirmed(_), Some(row)) => closing(row, e, OrderStatus::Confirmed, None),
        (OrderEvent::OrderCancelled(cancelled), Some(row)) => closing(
            row,
            e,
            OrderStatus::Cancelled,
            Some(cancel_reason_code(cancelled.reason)),
        ),
        (OrderEvent::OrderExpired(_), Some(row)) => closing(row, e, OrderStatus::Expired, None),
        (
            OrderEvent::OrderLineRejected(_)
            | OrderEvent::OrderLineReleaseRequired(_)
            | OrderEvent::OrderPaymentRefundRequired(_),
            Some(row),
        ) => bumped(row, e),
    };
    vec![Mutation::UpsertOrder(next)]
}

fn placed_row(placed: &OrderPlaced, e: &EventEnvelope<OrderEvent>) -> OrderRow {
    OrderRow {
        order_id: placed.order_id.as_str().to_owned(),
        customer_id: placed.customer_id.as_str().to_owned(),
        status: OrderStatus::Placed,
        reason: None,
        lines: placed
            .lines
            .iter()
            .map(|line| OrderLineRow {
                line_no: line.line_no.get(),
                sku: line.sku.as_str().to_owned(),
                quantity: line.quantity,
                unit_price_minor: line.unit_price.amount_minor,
            })
            .collect(),
        total_minor: placed.total.amount_minor,
        currency: placed.total.currency.clone(),
        placed_at: placed.placed_at,
        updated_at: e.occurred_at,
        version: e.version,
    }
}

/// Moves to `status` unless the order is already final: a final status is never left, whatever
/// a corrupt or reordered history says.
fn closing(
    row: &OrderRow,
    e: &EventEnvelope<OrderEvent>,
    status: OrderStatus,
    reason: Option<&str>,
) -> OrderRow {
    let next = bumped(row, e);
    if row.status.is_final() {
        return next;
    }
    OrderRow {
        status,
        reason: reason.map(str::to_owned),
        ..next
    }
}

fn bumped(row: &OrderRow, e: &EventEnvelope<OrderEvent>) -> OrderRow {
    OrderRow {
        version: e.version,
        updated_at: e.occurred_at,
        ..row.clone()
    }
}

#[cfg(test)]
mod tests {
    use streamcart_aggregates::orders::{
        LineRef, OrderAwaitingPayment, OrderCancelled, OrderConfirmed, OrderExpired, OrderLine,
        OrderLineRejected, OrderLineReleaseRequired, OrderLineReserved, OrderPaymentRefundRequired,
    };
    use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};

    use super::*;
    use crate::projection::fold;
    use crate::testing::{T0, at, envelope};

    const ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-123456789abc";

    fn order_id() -> OrderId {
        OrderId::new(ORDER).expect("order id")
    }

    fn line_no(n: u32) -> LineNo {
        LineNo::new(n).expect("line")
    }

    fn eur(amount: i64) -> Money {
        Money::positive(amount, "EUR").expect("money")
    }

    fn line_ref(n: u32) -> LineRef {
        LineRef {
            line_no: line_no(n),
            sku: Sku::new(format!("SKU-{n}")).expect("sku"),
            quantity: n,
        }
    }

    fn placed(version: u64) -> EventEnvelope<OrderEvent> {
        envelope(
            ORDER,
            version,
            OrderPlaced {
                order_id: order_id(),
                customer_id: CustomerId::new("cust-1").expect("customer"),
                lines: vec![
                    OrderLine {
                        line_no: line_no(1),
                        sku: Sku::new("SKU-1").expect("sku"),
                        quantity: 1,
                        unit_price: eur(500),
                    },
                    OrderLine {
                        line_no: line_no(2),
                        sku: Sku::new("SKU-2").expect("sku"),
                        quantity: 2,
                        unit_price: eur(250),
                    },
                ],
                total: eur(1000),
                card_token: "tok".into(),
                deadline_at: T0 + 60_000,
                placed_at: T0,
            },
        )
    }

    fn placed_row_v1() -> OrderRow {
        OrderRow {
            order_id: ORDER.into(),
            customer_id: "cust-1".into(),
            status: OrderStatus::Placed,
            reason: None,
            lines: vec![
                OrderLineRow {
                    line_no: 1,
                    sku: "SKU-1".into(),
                    quantity: 1,
                    unit_price_minor: 500,
                },
                OrderLineRow {
                    line_no: 2,
                    sku: "SKU-2".into(),
                    quantity: 2,
                    unit_price_minor: 250,
                },
            ],
            total_minor: 1000,
            currency: "EUR".into(),
            placed_at: T0,
            updated_at: at(1),
            version: 1,
        }
    }

    fn with(row: &OrderRow, version: u64, status: OrderStatus) -> OrderRow {
        OrderRow {
            status,
            version,
            updated_at: at(version),
            ..row.clone()
        }
    }

    fn when(current: &OrderRow, version: u64, event: impl Into<OrderEvent>) -> OrderRow {
        let e = envelope::<OrderEvent>(ORDER, version, event);
        match project_order(Some(current), &e).as_slice() {
            [Mutation::UpsertOrder(row)] => row.clone(),
            other => panic!("expected one order upsert, got {other:?}"),
        }
    }

    fn reserved(n: u32) -> OrderLineReserved {
        OrderLineReserved {
            line_no: line_no(n),
        }
    }

    fn awaiting() -> OrderAwaitingPayment {
        OrderAwaitingPayment {
            total: eur(1000),
            card_token: "tok".into(),
            customer_id: CustomerId::new("cust-1").expect("customer"),
        }
    }

    fn confirmed() -> OrderConfirmed {
        OrderConfirmed {
            payment_id: PaymentId::for_order(&order_id()),
            lines: vec![line_ref(1), line_ref(2)],
        }
    }

    #[test]
    fn given_nothing_when_placed_then_the_order_is_placed_with_priced_lines() {
        assert_eq!(
            project_order(None, &placed(1)),
            vec![Mutation::UpsertOrder(placed_row_v1())]
        );
    }

    #[test]
    fn given_placed_when_a_line_is_reserved_then_it_is_reserving() {
        let got = when(&placed_row_v1(), 2, reserved(1));
        assert_eq!(got, with(&placed_row_v1(), 2, OrderStatus::Reserving));
        let again = when(&got, 3, reserved(2));
        assert_eq!(again, with(&placed_row_v1(), 3, OrderStatus::Reserving));
    }

    #[test]
    fn given_reserving_when_all_lines_are_reserved_then_it_awaits_payment() {
        let reserving = with(&placed_row_v1(), 3, OrderStatus::Reserving);
        let got = when(&reserving, 4, awaiting());
        assert_eq!(got, with(&reserving, 4, OrderStatus::AwaitingPayment));
    }

    #[test]
    fn given_awaiting_payment_when_confirmed_then_it_is_confirmed() {
        let awaiting_row = with(&placed_row_v1(), 4, OrderStatus::AwaitingPayment);
        let got = when(&awaiting_row, 5, confirmed());
        assert_eq!(got, with(&awaiting_row, 5, OrderStatus::Confirmed));
    }

    #[test]
    fn given_reserving_when_a_line_is_rejected_and_cancelled_then_it_is_cancelled_with_reason() {
        let reserving = with(&placed_row_v1(), 2, OrderStatus::Reserving);
        let rejected = when(
            &reserving,
            3,
            OrderLineRejected {
                line_no: line_no(2),
                available: 0,
            },
        );
        assert_eq!(rejected, with(&reserving, 3, OrderStatus::Reserving));
        let cancelled = when(
            &rejected,
            4,
            OrderCancelled {
                reason: CancelReason::StockUnavailable,
                release: vec![line_ref(1)],
            },
        );
        assert_eq!(
            cancelled,
            OrderRow {
                reason: Some("stock_unavailable".into()),
                ..with(&reserving, 4, OrderStatus::Cancelled)
            }
        );
    }

    #[test]
    fn every_cancel_reason_has_a_stable_code() {
        for (reason, code) in [
            (CancelReason::StockUnavailable, "stock_unavailable"),
            (CancelReason::PaymentDeclined, "payment_declined"),
            (CancelReason::CustomerRequested, "customer_requested"),
        ] {
            let got = when(
                &placed_row_v1(),
                2,
                OrderCancelled {
                    reason,
                    release: vec![],
                },
            );
            assert_eq!(got.reason.as_deref(), Some(code));
        }
    }

    #[test]
    fn given_awaiting_payment_when_the_deadline_passes_then_it_is_expired() {
        let awaiting_row = with(&placed_row_v1(), 4, OrderStatus::AwaitingPayment);
        let got = when(
            &awaiting_row,
            5,
            OrderExpired {
                release: vec![line_ref(1), line_ref(2)],
            },
        );
        assert_eq!(got, with(&awaiting_row, 5, OrderStatus::Expired));
    }

    #[test]
    fn given_a_closed_order_when_late_compensations_arrive_then_only_the_version_moves() {
        let expired = with(&placed_row_v1(), 3, OrderStatus::Expired);
        let release = when(
            &expired,
            4,
            OrderLineReleaseRequired {
                line_no: line_no(2),
                sku: Sku::new("SKU-2").expect("sku"),
                quantity: 2,
            },
        );
        assert_eq!(release, with(&expired, 4, OrderStatus::Expired));
        let refund = when(
            &release,
            5,
            OrderPaymentRefundRequired {
                payment_id: PaymentId::for_order(&order_id()),
                amount: eur(1000),
            },
        );
        assert_eq!(refund, with(&expired, 5, OrderStatus::Expired));
    }

    #[test]
    fn given_a_final_order_when_a_contradicting_event_arrives_then_the_status_stays() {
        let done = with(&placed_row_v1(), 5, OrderStatus::Confirmed);
        let got = when(&done, 6, OrderExpired { release: vec![] });
        assert_eq!(got, with(&done, 6, OrderStatus::Confirmed));
        let got = when(&done, 6, reserved(1));
        assert_eq!(got.status, OrderStatus::Confirmed);
    }

    #[test]
    fn given_no_row_when_a_later_event_arrives_then_nothing_is_written() {
        let e = envelope::<OrderEvent>(ORDER, 2, reserved(1));
        assert!(project_order(None, &e).is_empty());
    }

    #[test]
    fn given_a_row_when_the_same_or_an_older_event_is_redelivered_then_nothing_is_written() {
        let row = with(&placed_row_v1(), 2, OrderStatus::Reserving);
        assert!(project_order(Some(&row), &placed(1)).is_empty());
        let e = envelope::<OrderEvent>(ORDER, 2, reserved(1));
        assert!(project_order(Some(&row), &e).is_empty());
    }

    #[test]
    fn folding_twice_or_with_redeliveries_gives_the_same_row() {
        let events: Vec<EventEnvelope<OrderEvent>> = vec![
            placed(1),
            envelope(ORDER, 2, reserved(1)),
            envelope(ORDER, 3, reserved(2)),
            envelope(ORDER, 4, awaiting()),
            envelope(ORDER, 5, confirmed()),
        ];
        let (once, mutations) = fold::<Orders>(None, &events);
        assert_eq!(
            once,
            Some(with(&placed_row_v1(), 5, OrderStatus::Confirmed))
        );
        let versions: Vec<u64> = mutations.iter().map(Mutation::version).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5]);

        let (twice, again) = fold::<Orders>(once.clone(), &events);
        assert_eq!(twice, once);
        assert!(again.is_empty());

        let mut redelivered = events.clone();
        redelivered.insert(2, events[0].clone());
        redelivered.insert(4, events[1].clone());
        redelivered.push(events[3].clone());
        let (with_duplicates, _) = fold::<Orders>(None, &redelivered);
        assert_eq!(with_duplicates, once);
    }
}
