//! One module per row of the saga routing table (docs/domain.md), each a pure function of one
//! event: it emits the commands its row asks for, and nothing for any other event.
//!
//! | consumes | reaction | emits |
//! | --- | --- | --- |
//! | `OrderPlaced` | [`reserve_stock_on_order_placed`] | `ReserveStock` per line |
//! | `StockReserved` | [`record_reservation_on_stock_reserved`] | `RecordLineReserved` |
//! | `StockReservationRejected` | [`record_rejection_on_stock_rejected`] | `RecordLineRejected` |
//! | `OrderAwaitingPayment` | [`authorize_payment_on_order_awaiting_payment`] | `AuthorizePayment` |
//! | `PaymentAuthorized` | [`confirm_order_on_payment_authorized`] | `ConfirmOrder` |
//! | `PaymentDeclined` | [`cancel_order_on_payment_declined`] | `CancelOrder{PaymentDeclined}` |
//! | `OrderConfirmed` | [`commit_stock_on_order_confirmed`] | `CommitStock` per line |
//! | `OrderCancelled`, `OrderExpired` | [`release_stock_on_order_closed`] | `ReleaseStock` per released line |
//! | `OrderLineReleaseRequired` | [`release_stock_on_late_reservation`] | `ReleaseStock` |
//! | `OrderPaymentRefundRequired` | [`refund_payment_on_late_authorization`] | `RefundPayment` |

pub mod authorize_payment_on_order_awaiting_payment;
pub mod cancel_order_on_payment_declined;
pub mod commit_stock_on_order_confirmed;
pub mod confirm_order_on_payment_authorized;
pub mod record_rejection_on_stock_rejected;
pub mod record_reservation_on_stock_reserved;
pub mod refund_payment_on_late_authorization;
pub mod release_stock_on_late_reservation;
pub mod release_stock_on_order_closed;
pub mod reserve_stock_on_order_placed;

use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::OrderEvent;
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_aggregates::values::OrderId;
use streamcart_schemas::envelope::EventEnvelope;

use super::SagaCommand;

/// One reaction: its name (also part of its command ids) and the function it runs on each event.
#[derive(Debug)]
pub struct Reaction<E> {
    /// The reaction's name, e.g. `reserve_stock_on_order_placed`.
    pub name: &'static str,
    /// Maps one event to the commands it calls for; empty for events the reaction ignores.
    pub react: fn(&EventEnvelope<E>) -> Vec<SagaCommand>,
}

/// Every reaction to order events.
pub const ORDER_REACTIONS: [Reaction<OrderEvent>; 6] = [
    Reaction {
        name: reserve_stock_on_order_placed::NAME,
        react: reserve_stock_on_order_placed::react,
    },
    Reaction {
        name: authorize_payment_on_order_awaiting_payment::NAME,
        react: authorize_payment_on_order_awaiting_payment::react,
    },
    Reaction {
        name: commit_stock_on_order_confirmed::NAME,
        react: commit_stock_on_order_confirmed::react,
    },
    Reaction {
        name: release_stock_on_order_closed::NAME,
        react: release_stock_on_order_closed::react,
    },
    Reaction {
        name: release_stock_on_late_reservation::NAME,
        react: release_stock_on_late_reservation::react,
    },
    Reaction {
        name: refund_payment_on_late_authorization::NAME,
        react: refund_payment_on_late_authorization::react,
    },
];

/// Every reaction to stock events.
pub const STOCK_REACTIONS: [Reaction<StockEvent>; 2] = [
    Reaction {
        name: record_reservation_on_stock_reserved::NAME,
        react: record_reservation_on_stock_reserved::react,
    },
    Reaction {
        name: record_rejection_on_stock_rejected::NAME,
        react: record_rejection_on_stock_rejected::react,
    },
];

/// Every reaction to payment events.
pub const PAYMENT_REACTIONS: [Reaction<PaymentEvent>; 2] = [
    Reaction {
        name: confirm_order_on_payment_authorized::NAME,
        react: confirm_order_on_payment_authorized::react,
    },
    Reaction {
        name: cancel_order_on_payment_declined::NAME,
        react: cancel_order_on_payment_declined::react,
    },
];

/// The order an order event belongs to. Only the envelope's key names it for most events; a key
/// that is not an order id cannot have come from the order processor, so such an event is ignored
/// rather than routed somewhere wrong.
fn order_of(event: &EventEnvelope<OrderEvent>) -> Option<OrderId> {
    OrderId::new(event.aggregate_id.as_str()).ok()
}
