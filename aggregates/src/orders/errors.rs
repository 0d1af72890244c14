//! Why the `Order` aggregate refuses a command.

use crate::aggregate::Rejection;
use crate::values::{LineNo, Sku, TimestampMillis};

/// A refused order command; codes are stable, messages are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRejection {
    /// Placing is not an upsert.
    #[error("order already exists")]
    AlreadyExists,
    /// An order must buy something.
    #[error("an order needs at least one line")]
    NoLines,
    /// Bounded so one order cannot fan out into unbounded stock commands.
    #[error("{count} lines; at most {max} are allowed")]
    TooManyLines {
        /// Lines sent.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Zero units, or a line total that does not fit the money type.
    #[error("line {line_no}: invalid quantity {quantity}: {reason}")]
    InvalidQuantity {
        /// Offending line.
        line_no: LineNo,
        /// Its quantity.
        quantity: u32,
        /// Why.
        reason: &'static str,
    },
    /// The local catalog copy has no price for the sku.
    #[error("line {line_no}: unknown sku {sku}")]
    UnknownSku {
        /// Offending line.
        line_no: LineNo,
        /// Its sku.
        sku: Sku,
    },
    /// Discontinued products cannot be ordered.
    #[error("line {line_no}: product {sku} is discontinued")]
    ProductDiscontinued {
        /// Offending line.
        line_no: LineNo,
        /// Its sku.
        sku: Sku,
    },
    /// One order is paid in one currency.
    #[error("line {line_no} is priced in {found}, the order in {expected}")]
    MixedCurrencies {
        /// Offending line.
        line_no: LineNo,
        /// Currency of the first line.
        expected: String,
        /// Currency of this line.
        found: String,
    },
    /// The deadline must leave time to reserve and pay.
    #[error("deadline {deadline_at} is not after placement {placed_at}")]
    InvalidDeadline {
        /// Requested deadline.
        deadline_at: TimestampMillis,
        /// Placement time.
        placed_at: TimestampMillis,
    },
    /// Every command but placing needs a placed order.
    #[error("order does not exist")]
    NotFound,
    /// The line number is not one of the order's.
    #[error("order has no line {line_no}")]
    UnknownLine {
        /// Line named by the command.
        line_no: LineNo,
    },
    /// A payment arrived while stock was still being reserved.
    #[error("order is still reserving stock, not awaiting payment")]
    NotAwaitingPayment,
    /// A confirmed order is paid and its stock sold.
    #[error("order is already confirmed")]
    AlreadyConfirmed,
    /// The timer fired early (clock skew); it will fire again.
    #[error("deadline {deadline_at} not reached at {now}")]
    DeadlineNotReached {
        /// The order's deadline.
        deadline_at: TimestampMillis,
        /// The timer's now.
        now: TimestampMillis,
    },
}

impl Rejection for OrderRejection {
    fn code(&self) -> &'static str {
        match self {
            OrderRejection::AlreadyExists => "order.already_exists",
            OrderRejection::NoLines => "order.no_lines",
            OrderRejection::TooManyLines { .. } => "order.too_many_lines",
            OrderRejection::InvalidQuantity { .. } => "order.invalid_quantity",
            OrderRejection::UnknownSku { .. } => "order.unknown_sku",
            OrderRejection::ProductDiscontinued { .. } => "order.product_discontinued",
            OrderRejection::MixedCurrencies { .. } => "order.mixed_currencies",
            OrderRejection::InvalidDeadline { .. } => "order.invalid_deadline",
            OrderRejection::NotFound => "order.not_found",
            OrderRejection::UnknownLine { .. } => "order.unknown_line",
            OrderRejection::NotAwaitingPayment => "order.not_awaiting_payment",
            OrderRejection::AlreadyConfirmed => "order.already_confirmed",
            OrderRejection::DeadlineNotReached { .. } => "order.deadline_not_reached",
        }
    }
}
