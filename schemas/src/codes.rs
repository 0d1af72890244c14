//! Rejection codes the command processor answers itself, beside the aggregates' own codes.
//!
//! They travel in `command.results` (`Rejected{code, ..}`), so they belong to the contract:
//! every writer and every reader of a result (the HTTP edge, clients of the topic) names them
//! from here rather than from the processor that happens to produce them.

/// A command's `expected_version` is not the aggregate's version.
pub const CONCURRENCY_CONFLICT: &str = "concurrency.conflict";

/// A command arrived on a partition murmur2 does not give its key, and forwarding is off; the
/// message names the partition it belongs to.
pub const COMMAND_MISPLACED: &str = "command.misplaced";
