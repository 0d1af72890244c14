//! State of the `Stock` aggregate, folded from its events.

use std::collections::BTreeMap;

use super::events::StockEvent;
use crate::aggregate::AggregateState;
use crate::values::{LineNo, OrderId};

/// Reservations are per order line, so one order may reserve the same sku on several lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationKey {
    /// Order holding the reservation.
    pub order_id: OrderId,
    /// Line of that order.
    pub line_no: LineNo,
}

impl ReservationKey {
    /// Key of one order line.
    pub fn new(order_id: OrderId, line_no: LineNo) -> Self {
        Self { order_id, line_no }
    }
}

/// Where a reservation stands; terminal states are kept so retries are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    /// Units are held.
    Reserved,
    /// Units went back to available; terminal.
    Released,
    /// Units were sold; terminal.
    Committed,
    /// There were not enough units; remembered so a repeated request stays answered.
    Rejected,
}

/// One order line's claim on this stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reservation {
    /// Units asked for (held, released or sold depending on the status).
    pub quantity: u32,
    /// Where it stands.
    pub status: ReservationStatus,
}

/// Counters plus every reservation ever made, so each can be settled exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StockState {
    /// False until the first event.
    pub exists: bool,
    /// Units ever delivered.
    pub received: u64,
    /// Units free to reserve.
    pub available: u64,
    /// Units held by open reservations.
    pub reserved: u64,
    /// Units sold.
    pub sold: u64,
    /// Every reservation by order line, including settled and rejected ones.
    pub reservations: BTreeMap<ReservationKey, Reservation>,
}

impl AggregateState for StockState {
    fn is_new(&self) -> bool {
        !self.exists
    }
}

impl StockState {
    /// The reservation of one order line, if it ever asked.
    pub fn reservation(&self, order_id: &OrderId, line_no: LineNo) -> Option<&Reservation> {
        self.reservations
            .get(&ReservationKey::new(order_id.clone(), line_no))
    }

    /// True when `available + reserved + sold == received`.
    pub fn is_balanced(&self) -> bool {
        self.available
            .checked_add(self.reserved)
            .and_then(|sum| sum.checked_add(self.sold))
            == Some(self.received)
    }

    fn settle(&mut self, order_id: &OrderId, line_no: LineNo, status: ReservationStatus) {
        let key = ReservationKey::new(order_id.clone(), line_no);
        if let Some(reservation) = self.reservations.get_mut(&key) {
            reservation.status = status;
        }
    }

    /// Applies one event; arithmetic saturates because events were checked by `decide`.
    pub fn evolve(mut self, event: &StockEvent) -> Self {
        self.exists = true;
        match event {
            StockEvent::StockReceived(e) => {
                let q = u64::from(e.quantity);
                self.received = self.received.saturating_add(q);
                self.available = self.available.saturating_add(q);
            }
            StockEvent::StockReserved(e) => {
                let q = u64::from(e.quantity);
                self.available = self.available.saturating_sub(q);
                self.reserved = self.reserved.saturating_add(q);
                self.reservations.insert(
                    ReservationKey::new(e.order_id.clone(), e.line_no),
                    Reservation {
                        quantity: e.quantity,
                        status: ReservationStatus::Reserved,
                    },
                );
            }
            StockEvent::StockReservationRejected(e) => {
                self.reservations.insert(
                    ReservationKey::new(e.order_id.clone(), e.line_no),
                    Reservation {
                        quantity: e.quantity,
                        status: ReservationStatus::Rejected,
                    },
                );
            }
            StockEvent::StockReleased(e) => {
                let q = u64::from(e.quantity);
                self.reserved = self.reserved.saturating_sub(q);
                self.available = self.available.saturating_add(q);
                self.settle(&e.order_id, e.line_no, ReservationStatus::Released);
            }
            StockEvent::StockCommitted(e) => {
                let q = u64::from(e.quantity);
                self.reserved = self.reserved.saturating_sub(q);
                self.sold = self.sold.saturating_add(q);
                self.settle(&e.order_id, e.line_no, ReservationStatus::Committed);
            }
        }
        self
    }
}
