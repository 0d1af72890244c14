//! Pending order deadlines: the pure state of the durable deadline timer.
//!
//! The table follows the order events (`OrderPlaced` adds a deadline; `OrderConfirmed`,
//! `OrderCancelled` and `OrderExpired` remove it) and says which deadlines are due at a given
//! time. It never reads a clock: the caller passes `now`. The Kafka side persists each
//! [`DeadlineChange`] to a compacted topic and rebuilds the table from it with
//! [`DeadlineTable::restore`], so a restart loses no deadline.
//!
//! A fired deadline stays in the table until the order's closing event arrives (or the caller
//! [`remove`](DeadlineTable::remove)s it). Firing it again is harmless: the `ExpireOrder` command
//! id depends only on the order, so the order processor answers a repeat as a duplicate, and an
//! order that has meanwhile closed accepts `ExpireOrder` with no events.

use std::collections::{BTreeMap, BTreeSet};

use streamcart_aggregates::orders::{ExpireOrder, OrderCommand, OrderEvent};
use streamcart_aggregates::values::{OrderId, TimestampMillis};
use streamcart_schemas::envelope::{CommandEnvelope, EventEnvelope};
use uuid::Uuid;

/// What one order event did to the table, for the caller to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadlineChange {
    /// The order now has this deadline (write the entry).
    Added {
        /// The order.
        order_id: OrderId,
        /// When it expires if still open.
        deadline_at: TimestampMillis,
    },
    /// The order no longer has a deadline (write a tombstone).
    Removed {
        /// The order.
        order_id: OrderId,
    },
}

/// Pending deadlines, by order and by time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadlineTable {
    by_order: BTreeMap<OrderId, TimestampMillis>,
    by_time: BTreeSet<(TimestampMillis, OrderId)>,
}

impl DeadlineTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a table from persisted entries; a later entry for the same order wins.
    pub fn restore(entries: impl IntoIterator<Item = (OrderId, TimestampMillis)>) -> Self {
        let mut table = Self::new();
        for (order_id, deadline_at) in entries {
            table.insert(order_id, deadline_at);
        }
        table
    }

    /// Every pending deadline, by order id, for persisting or inspecting.
    pub fn snapshot(&self) -> impl Iterator<Item = (&OrderId, TimestampMillis)> + '_ {
        self.by_order.iter().map(|(id, at)| (id, *at))
    }

    /// Follows one order event; `None` when it changed nothing.
    ///
    /// Events must arrive in their partition's order (as a consumer reads them); a redelivered
    /// older stretch replays the same changes again and ends in the same table.
    pub fn on_order_event(&mut self, event: &EventEnvelope<OrderEvent>) -> Option<DeadlineChange> {
        match &event.payload {
            OrderEvent::OrderPlaced(placed) => {
                let order_id = placed.order_id.clone();
                if self.by_order.get(&order_id) == Some(&placed.deadline_at) {
                    return None;
                }
                self.insert(order_id.clone(), placed.deadline_at);
                Some(DeadlineChange::Added {
                    order_id,
                    deadline_at: placed.deadline_at,
                })
            }
            OrderEvent::OrderConfirmed(_)
            | OrderEvent::OrderCancelled(_)
            | OrderEvent::OrderExpired(_) => {
                // A key that is not an order id cannot have a deadline here.
                let order_id = OrderId::new(event.aggregate_id.as_str()).ok()?;
                self.remove(&order_id)
                    .map(|_| DeadlineChange::Removed { order_id })
            }
            OrderEvent::OrderLineReserved(_)
            | OrderEvent::OrderAwaitingPayment(_)
            | OrderEvent::OrderLineReleaseRequired(_)
            | OrderEvent::OrderLineRejected(_)
            | OrderEvent::OrderPaymentRefundRequired(_) => None,
        }
    }

    /// Adds or moves an order's deadline.
    pub fn insert(&mut self, order_id: OrderId, deadline_at: TimestampMillis) {
        if let Some(previous) = self.by_order.insert(order_id.clone(), deadline_at) {
            self.by_time.remove(&(previous, order_id.clone()));
        }
        self.by_time.insert((deadline_at, order_id));
    }

    /// Drops an order's deadline; returns it if there was one.
    pub fn remove(&mut self, order_id: &OrderId) -> Option<TimestampMillis> {
        let deadline_at = self.by_order.remove(order_id)?;
        self.by_time.remove(&(deadline_at, order_id.clone()));
        Some(deadline_at)
    }

    /// The deadline of one order, if pending.
    pub fn get(&self, order_id: &OrderId) -> Option<TimestampMillis> {
        self.by_order.get(order_id).copied()
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.by_order.len()
    }

    /// True when no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.by_order.is_empty()
    }

    /// The earliest pending deadline, so a timer knows how long it may sleep.
    pub fn next_deadline(&self) -> Option<TimestampMillis> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Deadlines at or before `now_ms`, earliest first (ties by order id).
    pub fn due(&self, now_ms: TimestampMillis) -> Vec<(OrderId, TimestampMillis)> {
        self.by_time
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(at, id)| (id.clone(), *at))
            .collect()
    }

    /// The `ExpireOrder` a due deadline fires: `now` is the deadline itself, so the command reads
    /// the same whenever it is (re)sent, and its id depends only on the order so a repeat after a
    /// crash is answered as a duplicate.
    pub fn expire_command(
        order_id: &OrderId,
        deadline_at: TimestampMillis,
    ) -> CommandEnvelope<OrderCommand> {
        CommandEnvelope {
            command_id: expire_command_id(order_id),
            aggregate_id: order_id.as_str().to_owned(),
            expected_version: None,
            issued_at: deadline_at,
            correlation_id: order_id.as_str().to_owned(),
            payload: ExpireOrder { now: deadline_at }.into(),
        }
    }
}

/// The id of an order's `ExpireOrder`: `Uuid::new_v5(order uuid, b"expire")`.
pub fn expire_command_id(order_id: &OrderId) -> Uuid {
    // Order ids are validated UUIDs, so the fallback namespace is never used in practice; it only
    // keeps the function total.
    let namespace = Uuid::parse_str(order_id.as_str())
        .unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_str().as_bytes()));
    Uuid::new_v5(&namespace, b"expire")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use streamcart_aggregates::orders::{
        CancelReason, OrderCancelled, OrderConfirmed, OrderExpired,
    };
    use streamcart_aggregates::values::PaymentId;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";
    const C: &str = "00000000-0000-4000-8000-00000000000c";

    fn id(s: &str) -> OrderId {
        OrderId::new(s).expect("order id")
    }

    fn placed_event(order: &str, deadline_at: i64) -> EventEnvelope<OrderEvent> {
        let mut p = placed(&[("SKU-A", 1)]);
        p.order_id = id(order);
        p.deadline_at = deadline_at;
        let mut e = order_event(p);
        e.aggregate_id = order.to_owned();
        e
    }

    fn closing_events(order: &str) -> Vec<EventEnvelope<OrderEvent>> {
        let payloads: Vec<OrderEvent> = vec![
            OrderConfirmed {
                payment_id: PaymentId::for_order(&id(order)),
                lines: vec![],
            }
            .into(),
            OrderCancelled {
                reason: CancelReason::PaymentDeclined,
                release: vec![],
            }
            .into(),
            OrderExpired { release: vec![] }.into(),
        ];
        payloads
            .into_iter()
            .map(|p| {
                let mut e = order_event(p);
                e.aggregate_id = order.to_owned();
                e
            })
            .collect()
    }

    #[test]
    fn a_placed_order_gets_its_deadline_and_is_due_from_then_on() {
        let mut t = DeadlineTable::new();
        let change = t.on_order_event(&placed_event(A, 500));
        assert_eq!(
            change,
            Some(DeadlineChange::Added {
                order_id: id(A),
                deadline_at: 500
            })
        );
        assert!(t.due(499).is_empty());
        assert_eq!(t.due(500), vec![(id(A), 500)]);
        assert_eq!(t.due(10_000), vec![(id(A), 500)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(500));
    }

    #[test]
    fn due_deadlines_come_earliest_first() {
        let mut t = DeadlineTable::new();
        t.on_order_event(&placed_event(C, 300));
        t.on_order_event(&placed_event(A, 700));
        t.on_order_event(&placed_event(B, 300));
        assert_eq!(t.due(1_000), vec![(id(B), 300), (id(C), 300), (id(A), 700)]);
        assert_eq!(t.due(300), vec![(id(B), 300), (id(C), 300)]);
    }

    #[test]
    fn confirmation_cancellation_and_expiry_each_remove_the_deadline() {
        for closing in closing_events(A) {
            let mut t = DeadlineTable::new();
            t.on_order_event(&placed_event(A, 500));
            t.on_order_event(&placed_event(B, 600));
            let change = t.on_order_event(&closing);
            assert_eq!(
                change,
                Some(DeadlineChange::Removed { order_id: id(A) }),
                "{}",
                closing.payload.name()
            );
            assert_eq!(t.due(1_000), vec![(id(B), 600)]);
            // The same closing event again (a redelivery) changes nothing.
            assert_eq!(t.on_order_event(&closing), None);
        }
    }

    #[test]
    fn other_order_events_change_nothing() {
        let mut t = DeadlineTable::new();
        t.on_order_event(&placed_event(A, 500));
        for event in every_order_event() {
            if !matches!(
                event.payload.name(),
                "OrderPlaced" | "OrderConfirmed" | "OrderCancelled" | "OrderExpired"
            ) {
                assert_eq!(t.on_order_event(&event), None, "{}", event.payload.name());
            }
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_redelivered_placement_changes_nothing() {
        let mut t = DeadlineTable::new();
        let placed = placed_event(A, 500);
        assert!(t.on_order_event(&placed).is_some());
        assert_eq!(t.on_order_event(&placed), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_expire_command_is_the_same_every_time_it_fires() {
        let first = DeadlineTable::expire_command(&id(A), 500);
        let again = DeadlineTable::expire_command(&id(A), 500);
        assert_eq!(first, again);
        let order_uuid = Uuid::parse_str(A).expect("uuid");
        assert_eq!(first.command_id, Uuid::new_v5(&order_uuid, b"expire"));
        assert_eq!(first.aggregate_id, A);
        assert_eq!(first.correlation_id, A);
        assert_eq!(first.issued_at, 500);
        assert_eq!(first.expected_version, None);
        assert_eq!(
            first.payload,
            OrderCommand::ExpireOrder(ExpireOrder { now: 500 })
        );
        assert_ne!(
            first.command_id,
            DeadlineTable::expire_command(&id(B), 500).command_id
        );
    }

    #[test]
    fn a_snapshot_restores_the_same_table() {
        let mut t = DeadlineTable::new();
        t.on_order_event(&placed_event(A, 500));
        t.on_order_event(&placed_event(B, 300));
        t.on_order_event(&placed_event(C, 900));
        t.remove(&id(C));
        let persisted: Vec<(OrderId, i64)> =
            t.snapshot().map(|(id, at)| (id.clone(), at)).collect();
        let restored = DeadlineTable::restore(persisted);
        assert_eq!(restored, t);
        assert_eq!(restored.due(1_000), vec![(id(B), 300), (id(A), 500)]);
    }

    #[test]
    fn moving_a_deadline_leaves_no_stale_entry() {
        let mut t = DeadlineTable::new();
        t.insert(id(A), 500);
        t.insert(id(A), 800);
        assert_eq!(t.due(600), vec![]);
        assert_eq!(t.due(800), vec![(id(A), 800)]);
        assert_eq!(t.remove(&id(A)), Some(800));
        assert!(t.is_empty());
        assert_eq!(t.remove(&id(A)), None);
    }
}
