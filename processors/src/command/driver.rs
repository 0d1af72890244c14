//! An in-process driver: the command processor's logic with an in-memory log instead of Kafka,
//! for fast tests of command handling (and of sagas built on it).

use streamcart_aggregates::values::TimestampMillis;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, EventEnvelope};

use super::table::{AggregateTable, SnapshotPolicy};
use streamcart_aggregates::Aggregate;

/// Runs commands through an [`AggregateTable`] and keeps every event and result in memory.
#[derive(Debug)]
pub struct InProcessDriver<A: Aggregate> {
    table: AggregateTable<A>,
    /// Every event appended, in order.
    pub events: Vec<EventEnvelope<A::Event>>,
    /// Every result, in order.
    pub results: Vec<CommandResult>,
    clock: TimestampMillis,
}

impl<A: Aggregate> InProcessDriver<A> {
    /// A driver with the default snapshot policy and a clock starting at `start`.
    pub fn new(start: TimestampMillis) -> Self {
        Self {
            table: AggregateTable::new(SnapshotPolicy::default()),
            events: Vec::new(),
            results: Vec::new(),
            clock: start,
        }
    }

    /// Handles one command as one committed transaction; returns its result.
    pub fn send(
        &mut self,
        command: &CommandEnvelope<A::Command>,
        ctx: &A::Context,
    ) -> CommandResult {
        let decided = self.table.handle(command, ctx, self.clock);
        self.clock += 1;
        self.table.commit();
        self.events.extend(decided.events);
        self.results.push(decided.result.clone());
        decided.result
    }

    /// Handles commands as one transaction that is then aborted: nothing is kept.
    pub fn send_aborted(&mut self, commands: &[CommandEnvelope<A::Command>], ctx: &A::Context) {
        for c in commands {
            let _ = self.table.handle(c, ctx, self.clock);
        }
        self.table.rollback();
    }

    /// The table, to inspect states and versions.
    pub fn table(&self) -> &AggregateTable<A> {
        &self.table
    }

    /// Rebuilds a fresh table from the recorded events, as a restarted processor would.
    pub fn restarted(&self) -> AggregateTable<A> {
        let mut t = AggregateTable::new(SnapshotPolicy::default());
        for e in &self.events {
            // Events of this driver are gap-free by construction.
            let _ = t.replay(e);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamcart_aggregates::Stock;
    use streamcart_aggregates::inventory::{ReceiveStock, ReleaseStock, StockCommand};
    use streamcart_aggregates::values::{LineNo, OrderId};
    use streamcart_schemas::envelope::Outcome;
    use uuid::Uuid;

    fn cmd(
        sku: &str,
        expected: Option<u64>,
        payload: StockCommand,
    ) -> CommandEnvelope<StockCommand> {
        CommandEnvelope {
            command_id: Uuid::new_v4(),
            aggregate_id: sku.into(),
            expected_version: expected,
            issued_at: 0,
            correlation_id: "c".into(),
            payload,
        }
    }

    fn receive(n: u32) -> StockCommand {
        StockCommand::ReceiveStock(ReceiveStock { quantity: n })
    }

    #[test]
    fn versions_are_gap_free_and_duplicates_are_not_applied() {
        let mut d = InProcessDriver::<Stock>::new(0);
        let first = cmd("SKU-1", None, receive(5));
        assert!(matches!(
            d.send(&first, &()).outcome,
            Outcome::Accepted { version: 1, .. }
        ));
        assert!(matches!(
            d.send(&cmd("SKU-1", None, receive(3)), &()).outcome,
            Outcome::Accepted { version: 2, .. }
        ));
        assert_eq!(
            d.send(&first, &()).outcome,
            Outcome::Duplicate { version: 1 }
        );
        let versions: Vec<u64> = d.events.iter().map(|e| e.version).collect();
        assert_eq!(versions, vec![1, 2]);
        assert_eq!(d.table().get("SKU-1").map(|e| e.state.received), Some(8));
    }

    #[test]
    fn expected_version_is_honoured() {
        let mut d = InProcessDriver::<Stock>::new(0);
        d.send(&cmd("SKU-1", Some(0), receive(5)), &());
        let stale = d.send(&cmd("SKU-1", Some(0), receive(5)), &());
        assert!(
            matches!(stale.outcome, Outcome::Rejected { ref code, .. } if code == "concurrency.conflict")
        );
        let fresh = d.send(&cmd("SKU-1", Some(1), receive(5)), &());
        assert!(matches!(
            fresh.outcome,
            Outcome::Accepted { version: 2, .. }
        ));
    }

    #[test]
    fn rejections_carry_the_domain_code() {
        let mut d = InProcessDriver::<Stock>::new(0);
        let order = OrderId::new("3f2b8c1e-4a8e-4c8e-9a7b-1b2c3d4e5f60").expect("order id");
        let release = StockCommand::ReleaseStock(ReleaseStock {
            order_id: order,
            line_no: LineNo::new(1).expect("line"),
        });
        let r = d.send(&cmd("SKU-1", None, release), &());
        assert!(
            matches!(r.outcome, Outcome::Rejected { ref code, .. } if code == "stock.reservation_not_found")
        );
        assert!(d.events.is_empty());
    }

    #[test]
    fn an_aborted_batch_leaves_no_trace() {
        let mut d = InProcessDriver::<Stock>::new(0);
        d.send(&cmd("SKU-1", None, receive(5)), &());
        let replayed = cmd("SKU-1", None, receive(7));
        d.send_aborted(&[replayed.clone(), cmd("SKU-2", None, receive(1))], &());
        assert_eq!(
            d.table()
                .get("SKU-1")
                .map(|e| (e.version, e.state.received)),
            Some((1, 5))
        );
        assert!(d.table().get("SKU-2").is_none());
        // The same command, redelivered after the abort, is applied once — not seen as a duplicate.
        assert!(matches!(
            d.send(&replayed, &()).outcome,
            Outcome::Accepted { version: 2, .. }
        ));
    }

    #[test]
    fn a_restart_rebuilds_the_same_state_and_dedupe() {
        let mut d = InProcessDriver::<Stock>::new(0);
        let first = cmd("SKU-1", None, receive(5));
        d.send(&first, &());
        d.send(&cmd("SKU-1", None, receive(2)), &());
        let t = d.restarted();
        assert_eq!(
            t.get("SKU-1").map(|e| (e.version, e.state.received)),
            Some((2, 7))
        );
        assert_eq!(t.recent_ids("SKU-1").first(), Some(&first.command_id));
    }
}
