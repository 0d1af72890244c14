//! Stock levels by SKU, from `inventory.stock.events`.

use streamcart_aggregates::inventory::StockEvent;
use streamcart_schemas::EventEnvelope;

use crate::model::StockRow;
use crate::projection::{Mutation, Projection, is_newer};

/// The stock read model (stock by sku).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stocks;

impl Projection for Stocks {
    const NAME: &'static str = "stock";
    type Event = StockEvent;
    type Row = StockRow;

    fn project(current: Option<&StockRow>, event: &EventEnvelope<StockEvent>) -> Vec<Mutation> {
        project_stock(current, event)
    }

    fn upserted(mutation: &Mutation) -> Option<&StockRow> {
        match mutation {
            Mutation::UpsertStock(row) => Some(row),
            _ => None,
        }
    }
}

/// The writes that bring `current` up to `e`. Stock events carry deltas, so a missing row
/// starts from zero, as the aggregate does (a reservation rejected on a never-received SKU is
/// its first event). Arithmetic saturates instead of failing: the aggregate keeps every level
/// non-negative, so a saturation can only come from a history the row did not fully see.
pub fn project_stock(current: Option<&StockRow>, e: &EventEnvelope<StockEvent>) -> Vec<Mutation> {
    if !is_newer(current.map(|row| row.version), e.version) {
        return Vec::new();
    }
    let mut row = current.cloned().unwrap_or_else(|| StockRow {
        sku: e.aggregate_id.clone(),
        received: 0,
        available: 0,
        reserved: 0,
        sold: 0,
        version: 0,
        updated_at: e.occurred_at,
    });
    match &e.payload {
        StockEvent::StockReceived(received) => {
            let q = i64::from(received.quantity);
            row.received = row.received.saturating_add(q);
            row.available = row.available.saturating_add(q);
        }
        StockEvent::StockReserved(reserved) => {
            let q = i64::from(reserved.quantity);
            row.available = row.available.saturating_sub(q).max(0);
            row.reserved = row.reserved.saturating_add(q);
        }
        StockEvent::StockReservationRejected(_) => {}
        StockEvent::StockReleased(released) => {
            let q = i64::from(released.quantity);
            row.reserved = row.reserved.saturating_sub(q).max(0);
            row.available = row.available.saturating_add(q);
        }
        StockEvent::StockCommitted(committed) => {
            let q = i64::from(committed.quantity);
            row.reserved = row.reserved.saturating_sub(q).max(0);
            row.sold = row.sold.saturating_add(q);
        }
    }
    row.version = e.version;
    row.updated_at = e.occurred_at;
    vec![Mutation::UpsertStock(row)]
}

#[cfg(test)]
mod tests {
    use streamcart_aggregates::inventory::{
        StockCommitted, StockReceived, StockReleased, StockReservationRejected, StockReserved,
    };
    use streamcart_aggregates::values::{LineNo, OrderId};

    use super::*;
    use crate::projection::fold;
    use crate::testing::{at, envelope};

    const SKU: &str = "SKU-7";

    fn order() -> OrderId {
        OrderId::new("0190c7a2-1b2c-7d3e-8f40-123456789abc").expect("order id")
    }

    fn line(n: u32) -> LineNo {
        LineNo::new(n).expect("line")
    }

    fn row(version: u64, levels: [i64; 4]) -> StockRow {
        let [received, available, reserved, sold] = levels;
        StockRow {
            sku: SKU.into(),
            received,
            available,
            reserved,
            sold,
            version,
            updated_at: at(version),
        }
    }

    fn received(version: u64, quantity: u32) -> EventEnvelope<StockEvent> {
        envelope(SKU, version, StockReceived { quantity })
    }

    fn reserved(version: u64, n: u32, quantity: u32) -> EventEnvelope<StockEvent> {
        envelope(
            SKU,
            version,
            StockReserved {
                order_id: order(),
                line_no: line(n),
                quantity,
            },
        )
    }

    fn upserted(mutations: Vec<Mutation>) -> StockRow {
        match mutations.as_slice() {
            [Mutation::UpsertStock(row)] => row.clone(),
            other => panic!("expected one stock upsert, got {other:?}"),
        }
    }

    fn history() -> Vec<EventEnvelope<StockEvent>> {
        vec![
            received(1, 10),
            reserved(2, 1, 3),
            reserved(3, 2, 4),
            envelope(
                SKU,
                4,
                StockReservationRejected {
                    order_id: order(),
                    line_no: line(3),
                    quantity: 9,
                    available: 3,
                },
            ),
            envelope(
                SKU,
                5,
                StockCommitted {
                    order_id: order(),
                    line_no: line(1),
                    quantity: 3,
                },
            ),
            envelope(
                SKU,
                6,
                StockReleased {
                    order_id: order(),
                    line_no: line(2),
                    quantity: 4,
                },
            ),
        ]
    }

    #[test]
    fn given_nothing_when_stock_is_received_then_it_is_available() {
        let got = upserted(project_stock(None, &received(1, 10)));
        assert_eq!(got, row(1, [10, 10, 0, 0]));
    }

    #[test]
    fn given_stock_when_reserved_then_units_move_from_available_to_reserved() {
        let got = upserted(project_stock(
            Some(&row(1, [10, 10, 0, 0])),
            &reserved(2, 1, 3),
        ));
        assert_eq!(got, row(2, [10, 7, 3, 0]));
    }

    #[test]
    fn given_stock_when_a_reservation_is_rejected_then_only_the_version_moves() {
        let e = envelope(
            SKU,
            2,
            StockReservationRejected {
                order_id: order(),
                line_no: line(1),
                quantity: 50,
                available: 10,
            },
        );
        let got = upserted(project_stock(Some(&row(1, [10, 10, 0, 0])), &e));
        assert_eq!(got, row(2, [10, 10, 0, 0]));
    }

    #[test]
    fn given_nothing_when_the_first_event_is_a_rejection_then_a_zero_row_exists() {
        let e = envelope(
            SKU,
            1,
            StockReservationRejected {
                order_id: order(),
                line_no: line(1),
                quantity: 1,
                available: 0,
            },
        );
        assert_eq!(upserted(project_stock(None, &e)), row(1, [0, 0, 0, 0]));
    }

    #[test]
    fn given_a_reservation_when_released_then_units_are_available_again() {
        let e = envelope(
            SKU,
            3,
            StockReleased {
                order_id: order(),
                line_no: line(1),
                quantity: 3,
            },
        );
        let got = upserted(project_stock(Some(&row(2, [10, 7, 3, 0])), &e));
        assert_eq!(got, row(3, [10, 10, 0, 0]));
    }

    #[test]
    fn given_a_reservation_when_committed_then_units_are_sold() {
        let e = envelope(
            SKU,
            3,
            StockCommitted {
                order_id: order(),
                line_no: line(1),
                quantity: 3,
            },
        );
        let got = upserted(project_stock(Some(&row(2, [10, 7, 3, 0])), &e));
        assert_eq!(got, row(3, [10, 7, 0, 3]));
    }

    #[test]
    fn given_a_row_when_the_same_or_an_older_event_is_redelivered_then_nothing_is_written() {
        let current = row(2, [10, 7, 3, 0]);
        assert!(project_stock(Some(&current), &received(1, 10)).is_empty());
        assert!(project_stock(Some(&current), &reserved(2, 1, 3)).is_empty());
    }

    #[test]
    fn folding_twice_or_with_redeliveries_gives_the_same_row() {
        let events = history();
        let (once, mutations) = fold::<Stocks>(None, &events);
        assert_eq!(once, Some(row(6, [10, 7, 0, 3])));
        assert_eq!(mutations.len(), events.len());
        let (twice, again) = fold::<Stocks>(once.clone(), &events);
        assert_eq!(twice, once);
        assert!(again.is_empty());

        // Deltas would double-count a redelivered reservation without the version guard.
        let mut redelivered = events.clone();
        redelivered.insert(3, events[1].clone());
        redelivered.insert(5, events[2].clone());
        redelivered.push(events[0].clone());
        let (with_duplicates, _) = fold::<Stocks>(None, &redelivered);
        assert_eq!(with_duplicates, once);
    }

    #[test]
    fn levels_always_add_up_to_what_was_received() {
        let (_, mutations) = fold::<Stocks>(None, &history());
        for m in mutations {
            let Mutation::UpsertStock(r) = m else {
                panic!("stock projection wrote {m:?}");
            };
            assert_eq!(r.available + r.reserved + r.sold, r.received, "{r:?}");
        }
    }
}
