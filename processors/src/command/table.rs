//! The pure heart of the command processor: the aggregates of the partitions one instance owns,
//! with versions, recent command ids, the snapshot policy and a per-batch undo log.
//!
//! No Kafka here: the in-process driver and the Kafka handler both drive this table, so the
//! rules (dedupe, optimistic concurrency, gap-free versions, roll-back) are tested without a broker.

use std::collections::{HashSet, VecDeque};

use streamcart_aggregates::values::TimestampMillis;
use streamcart_aggregates::{Aggregate, Rejection};
use streamcart_schemas::codes::CONCURRENCY_CONFLICT;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, EventEnvelope, Outcome};
use uuid::Uuid;

use super::entries::EntryMap;

/// When snapshots are written and how many command ids each aggregate remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot an aggregate once this many events were applied since its last snapshot.
    pub every_events: u32,
    /// Command ids remembered per aggregate for duplicate detection (kept in snapshots too).
    pub recent_commands: usize,
}

/// The defaults of `[processor]` in the binary's configuration come from here.
impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self {
            // A snapshot carries the aggregate's recent command ids (kilobytes), so frequent
            // ones outweigh the events themselves; replay on restore is bounded by the
            // partition checkpoint instead.
            every_events: 1_000,
            recent_commands: 256,
        }
    }
}

/// One aggregate as the processor holds it.
#[derive(Debug)]
pub struct Entry<A: Aggregate> {
    /// State after `version` events.
    pub state: A::State,
    /// Number of events applied (0 = none yet).
    pub version: u64,
    /// Ids of recently handled commands, oldest first, with the version each left behind.
    pub recent: VecDeque<(Uuid, u64)>,
    /// Events applied since the last snapshot.
    pub since_snapshot: u32,
}

impl<A: Aggregate> Clone for Entry<A> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            version: self.version,
            recent: self.recent.clone(),
            since_snapshot: self.since_snapshot,
        }
    }
}

impl<A: Aggregate> Default for Entry<A> {
    fn default() -> Self {
        Self {
            state: A::State::default(),
            version: 0,
            recent: VecDeque::new(),
            since_snapshot: 0,
        }
    }
}

impl<A: Aggregate> Entry<A> {
    fn seen(&self, command_id: &Uuid) -> Option<u64> {
        self.recent
            .iter()
            .find(|(id, _)| id == command_id)
            .map(|(_, v)| *v)
    }

    fn remember(&mut self, command_id: Uuid, version: u64, cap: usize) {
        self.recent.push_back((command_id, version));
        while self.recent.len() > cap.max(1) {
            self.recent.pop_front();
        }
    }
}

/// What handling one command produced.
#[derive(Debug, Clone)]
pub struct Decided<E> {
    /// Events to append, versions already assigned.
    pub events: Vec<EventEnvelope<E>>,
    /// The answer for `command.results`.
    pub result: CommandResult,
}

/// A replayed event does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aggregate {aggregate_id}: event version {found} after version {have} (gap or reorder)")]
pub struct VersionGap {
    /// Aggregate concerned.
    pub aggregate_id: String,
    /// Version held before the event.
    pub have: u64,
    /// Version the event carries.
    pub found: u64,
}

/// The aggregates of one partition.
#[derive(Debug)]
pub struct AggregateTable<A: Aggregate> {
    entries: EntryMap<Entry<A>>,
    /// First pre-image of every aggregate touched in each uncommitted batch (`None`: did not
    /// exist), oldest batch first.
    undo: Vec<(String, Option<Entry<A>>)>,
    /// How much of `undo` belongs to the sealed batch, whose commit is under way.
    sealed: usize,
    /// Aggregates with a pre-image in the open batch's part of `undo`.
    touched: HashSet<String>,
    /// Aggregates with events not yet covered by a snapshot.
    dirty: HashSet<String>,
    policy: SnapshotPolicy,
}

impl<A: Aggregate> AggregateTable<A>
where
    A::State: Clone,
{
    /// An empty table.
    pub fn new(policy: SnapshotPolicy) -> Self {
        Self {
            entries: EntryMap::default(),
            undo: Vec::new(),
            sealed: 0,
            touched: HashSet::new(),
            dirty: HashSet::new(),
            policy,
        }
    }

    /// The aggregate, if it has been seen.
    pub fn get(&self, aggregate_id: &str) -> Option<&Entry<A>> {
        self.entries.get(aggregate_id)
    }

    /// Number of aggregates held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no aggregate is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self, aggregate_id: &str) {
        if !self.touched.contains(aggregate_id) {
            self.touched.insert(aggregate_id.to_owned());
            let before = self.entries.get(aggregate_id).cloned();
            self.undo.push((aggregate_id.to_owned(), before));
        }
    }

    /// Handles one command: duplicate check, expected version, `decide`, versioning, `evolve`.
    ///
    /// Event ids come from [`event_id`]: a re-run after an aborted transaction (state rolled
    /// back to the same version) produces the very same ids.
    pub fn handle(
        &mut self,
        command: &CommandEnvelope<A::Command>,
        ctx: &A::Context,
        now: TimestampMillis,
    ) -> Decided<A::Event> {
        let id = command.aggregate_id.as_str();
        let current = self.entries.get(id);
        let version = current.map_or(0, |e| e.version);
        let answer = |outcome| CommandResult {
            command_id: command.command_id,
            aggregate_id: command.aggregate_id.clone(),
            outcome,
        };
        if let Some(v) = current.and_then(|e| e.seen(&command.command_id)) {
            return Decided {
                events: Vec::new(),
                result: answer(Outcome::Duplicate { version: v }),
            };
        }
        if let Some(expected) = command.expected_version
            && expected != version
        {
            self.remember(id, command.command_id, version);
            return Decided {
                events: Vec::new(),
                result: answer(Outcome::Rejected {
                    code: CONCURRENCY_CONFLICT.into(),
                    message: format!(
                        "expected version {expected}, aggregate is at version {version}"
                    ),
                }),
            };
        }
        let fresh;
        let state = match current {
            Some(e) => &e.state,
            None => {
                fresh = A::State::default();
                &fresh
            }
        };
        match A::decide(state, &command.payload, ctx) {
            Err(rejection) => {
                self.remember(id, command.command_id, version);
                Decided {
                    events: Vec::new(),
                    result: answer(Outcome::Rejected {
                        code: rejection.code().into(),
                        message: rejection.to_string(),
                    }),
                }
            }
            Ok(events) => {
                self.touch(id);
                let entry = self.entries.get_or_default(id);
                let mut envelopes = Vec::with_capacity(events.len());
                for event in events {
                    entry.version += 1;
                    entry.since_snapshot = entry.since_snapshot.saturating_add(1);
                    entry.state = A::evolve(std::mem::take(&mut entry.state), &event);
                    envelopes.push(EventEnvelope {
                        event_id: event_id(
                            A::NAME,
                            &command.aggregate_id,
                            entry.version,
                            &command.command_id,
                        ),
                        aggregate_id: command.aggregate_id.clone(),
                        version: entry.version,
                        occurred_at: now,
                        causation_id: command.command_id,
                        correlation_id: command.correlation_id.clone(),
                        payload: event,
                    });
                }
                let version = entry.version;
                entry.remember(command.command_id, version, self.policy.recent_commands);
                if !envelopes.is_empty() && !self.dirty.contains(id) {
                    self.dirty.insert(id.to_owned());
                }
                Decided {
                    result: answer(Outcome::Accepted {
                        version,
                        event_ids: envelopes.iter().map(|e| e.event_id).collect(),
                    }),
                    events: envelopes,
                }
            }
        }
    }

    fn remember(&mut self, aggregate_id: &str, command_id: Uuid, version: u64) {
        // A rejected command changes no state, but its id is remembered so a redelivery is
        // answered as a duplicate instead of being decided again against a newer state.
        self.touch(aggregate_id);
        let cap = self.policy.recent_commands;
        self.entries
            .get_or_default(aggregate_id)
            .remember(command_id, version, cap);
    }

    /// Aggregates whose snapshot is due under the policy.
    pub fn due_snapshots(&self) -> Vec<String> {
        let mut due: Vec<String> = self
            .dirty
            .iter()
            .filter(|id| {
                self.entries
                    .get(id)
                    .is_some_and(|e| e.since_snapshot >= self.policy.every_events)
            })
            .cloned()
            .collect();
        due.sort();
        due
    }

    /// Every aggregate with events not covered by a snapshot (for a partition checkpoint).
    pub fn dirty(&self) -> Vec<String> {
        let mut d: Vec<String> = self.dirty.iter().cloned().collect();
        d.sort();
        d
    }

    /// Records that a snapshot of `aggregate_id` at its current version is being written.
    pub fn mark_snapshotted(&mut self, aggregate_id: &str) {
        self.touch(aggregate_id);
        if let Some(e) = self.entries.get_mut(aggregate_id) {
            e.since_snapshot = 0;
        }
        self.dirty.remove(aggregate_id);
    }

    /// Everything handled so far committed: forget the undo log.
    pub fn commit(&mut self) {
        self.undo.clear();
        self.sealed = 0;
        self.touched.clear();
    }

    /// Closes the open batch: it goes to commit, and what is handled next belongs to a new batch
    /// whose pre-images are the state this one leaves behind.
    pub fn seal(&mut self) {
        self.sealed = self.undo.len();
        self.touched.clear();
    }

    /// The sealed batch committed; the batch handled after it stays undoable.
    pub fn commit_sealed(&mut self) {
        self.undo.drain(..self.sealed);
        self.sealed = 0;
    }

    /// The transaction was aborted: put every aggregate touched by the sealed batch or after
    /// it back as it was at the last commit.
    pub fn rollback(&mut self) {
        self.sealed = 0;
        for (id, before) in self.undo.drain(..).rev() {
            match before {
                Some(entry) => {
                    if entry.since_snapshot > 0 {
                        self.dirty.insert(id.clone());
                    } else {
                        self.dirty.remove(&id);
                    }
                    self.entries.insert(id, entry);
                }
                None => {
                    self.dirty.remove(&id);
                    self.entries.remove(&id);
                }
            }
        }
        self.touched.clear();
    }

    /// Restore: installs a snapshot.
    pub fn load_snapshot(
        &mut self,
        aggregate_id: String,
        version: u64,
        state: A::State,
        recent: Vec<Uuid>,
    ) {
        let entry = Entry {
            state,
            version,
            recent: recent.into_iter().map(|id| (id, version)).collect(),
            since_snapshot: 0,
        };
        self.dirty.remove(&aggregate_id);
        self.entries.insert(aggregate_id, entry);
    }

    /// Restore: applies one event read back from the events topic. Events at or below the
    /// version already held (covered by a snapshot) are skipped; a gap is an error.
    pub fn replay(&mut self, event: &EventEnvelope<A::Event>) -> Result<(), VersionGap> {
        let entry = self.entries.get_or_default(&event.aggregate_id);
        if event.version <= entry.version {
            return Ok(());
        }
        if event.version != entry.version + 1 {
            return Err(VersionGap {
                aggregate_id: event.aggregate_id.clone(),
                have: entry.version,
                found: event.version,
            });
        }
        entry.state = A::evolve(std::mem::take(&mut entry.state), &event.payload);
        entry.version = event.version;
        entry.since_snapshot = entry.since_snapshot.saturating_add(1);
        if entry.seen(&event.causation_id).is_none() {
            entry.remember(
                event.causation_id,
                event.version,
                self.policy.recent_commands,
            );
        } else if let Some(slot) = entry
            .recent
            .iter_mut()
            .find(|(id, _)| *id == event.causation_id)
        {
            slot.1 = event.version;
        }
        self.dirty.insert(event.aggregate_id.clone());
        Ok(())
    }

    /// Recent command ids of an aggregate, oldest first (stored with its snapshot).
    pub fn recent_ids(&self, aggregate_id: &str) -> Vec<Uuid> {
        self.entries
            .get(aggregate_id)
            .map(|e| e.recent.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }
}

/// The id of the event that takes aggregate `aggregate_id` of type `aggregate` to `version`, on
/// behalf of command `command_id`: a name-based UUID, stable across re-runs.
///
/// The command id alone is not enough: the same id may reach several aggregates (a client reusing
/// an id, an order and its payment sharing an aggregate id), and a command re-applied after its id
/// left the aggregate's duplicate window causes new events. `(type, aggregate, version)` names one
/// event of the log for good; the command id keeps ids of separate deployments apart.
pub fn event_id(aggregate: &str, aggregate_id: &str, version: u64, command_id: &Uuid) -> Uuid {
    let mut name = Vec::with_capacity(aggregate.len() + aggregate_id.len() + 24);
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart, whatever bytes the ids hold.
    for part in [aggregate.as_bytes(), aggregate_id.as_bytes()] {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    name.extend_from_slice(&version.to_be_bytes());
    Uuid::new_v5(command_id, &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use streamcart_aggregates::Stock;
    use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};

    fn receive(sku: &str, n: u32) -> CommandEnvelope<StockCommand> {
        CommandEnvelope {
            command_id: Uuid::new_v4(),
            aggregate_id: sku.into(),
            expected_version: None,
            issued_at: 0,
            correlation_id: "c".into(),
            payload: StockCommand::ReceiveStock(ReceiveStock { quantity: n }),
        }
    }

    fn at(t: &AggregateTable<Stock>, sku: &str) -> Option<(u64, u64)> {
        t.get(sku).map(|e| (e.version, e.state.received))
    }

    fn event_ids(d: &Decided<streamcart_aggregates::inventory::StockEvent>) -> Vec<Uuid> {
        d.events.iter().map(|e| e.event_id).collect()
    }

    #[test]
    fn one_command_id_on_several_aggregates_gives_distinct_event_ids() {
        let mut t = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        let first = receive("SKU-1", 5);
        let mut second = receive("SKU-2", 5);
        second.command_id = first.command_id;
        let a = t.handle(&first, &(), 0);
        let b = t.handle(&second, &(), 0);
        assert!(
            matches!(b.result.outcome, Outcome::Accepted { .. }),
            "{b:?}"
        );
        let (a, b) = (event_ids(&a), event_ids(&b));
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_ne!(a, b);
        // Aggregates of two types may share a key (a product and its stock, an order and its
        // payment): the type keeps their events apart too.
        let id = first.command_id;
        assert_ne!(
            event_id("product", "SKU-1", 1, &id),
            event_id("stock", "SKU-1", 1, &id)
        );
        assert_ne!(
            event_id("stock", "SKU-1", 1, &id),
            event_id("stock", "SKU-1", 2, &id)
        );
        assert_ne!(event_id("ab", "c", 1, &id), event_id("a", "bc", 1, &id));
    }

    #[test]
    fn a_re_run_after_an_abort_derives_the_same_event_ids() {
        let mut t = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        t.handle(&receive("SKU-1", 5), &(), 0);
        t.commit();
        let command = receive("SKU-1", 7);
        let before = event_ids(&t.handle(&command, &(), 0));
        t.rollback();
        let again = t.handle(&command, &(), 0);
        assert!(matches!(
            again.result.outcome,
            Outcome::Accepted { version: 2, .. }
        ));
        assert_eq!(event_ids(&again), before);
        assert_eq!(
            before,
            vec![event_id("stock", "SKU-1", 2, &command.command_id)]
        );
    }

    #[test]
    fn a_command_id_back_after_leaving_the_duplicate_window_gets_new_event_ids() {
        let policy = SnapshotPolicy {
            recent_commands: 1,
            ..SnapshotPolicy::default()
        };
        let mut t = AggregateTable::<Stock>::new(policy);
        let command = receive("SKU-1", 5);
        let first = event_ids(&t.handle(&command, &(), 0));
        t.handle(&receive("SKU-1", 1), &(), 0);
        let again = t.handle(&command, &(), 0);
        assert!(matches!(
            again.result.outcome,
            Outcome::Accepted { version: 3, .. }
        ));
        assert_ne!(
            event_ids(&again),
            first,
            "the log never holds one event id twice"
        );
    }

    #[test]
    fn committing_the_sealed_batch_keeps_the_next_one_undoable() {
        let mut t = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        t.handle(&receive("SKU-1", 5), &(), 0);
        t.seal();
        t.handle(&receive("SKU-1", 7), &(), 0);
        t.handle(&receive("SKU-2", 1), &(), 0);
        t.commit_sealed();
        t.rollback();
        assert_eq!(at(&t, "SKU-1"), Some((1, 5)));
        assert_eq!(at(&t, "SKU-2"), None);
    }

    #[test]
    fn aborting_the_sealed_batch_discards_the_next_one_too() {
        let mut t = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        t.handle(&receive("SKU-1", 5), &(), 0);
        t.commit();
        t.handle(&receive("SKU-1", 7), &(), 0);
        t.seal();
        t.handle(&receive("SKU-1", 9), &(), 0);
        t.handle(&receive("SKU-3", 1), &(), 0);
        t.rollback();
        assert_eq!(at(&t, "SKU-1"), Some((1, 5)));
        assert_eq!(at(&t, "SKU-3"), None);
        assert_eq!(t.dirty(), vec!["SKU-1".to_string()]);
    }

    #[test]
    fn pipelined_batches_with_failed_commits_apply_each_command_once() {
        // The loop's schedule: batch b is handled while batch b-1 commits; a failed commit
        // rolls back both and the consumer rewinds to the failed batch.
        let skus = ["A", "B", "C"];
        let n = 12;
        let batches: Vec<Vec<CommandEnvelope<StockCommand>>> = (0..n)
            .map(|b| {
                (0..4)
                    .map(|i| receive(skus[(b + i) % 3], (b * 4 + i) as u32 + 1))
                    .collect()
            })
            .collect();
        // Outcome of each commit attempt in turn (true: it fails); later attempts succeed.
        let mut failures = [false, true, false, true, true, false, false, true].into_iter();
        let mut t = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        let mut decided: Vec<Vec<Decided<_>>> = vec![Vec::new(); n];
        let mut committed: Vec<Decided<_>> = Vec::new();
        let (mut next, mut done) = (0, 0);
        let mut sealed: Option<usize> = None;
        while done < n {
            let open = (next < n).then_some(next);
            if let Some(b) = open {
                decided[b] = batches[b].iter().map(|c| t.handle(c, &(), 0)).collect();
            }
            if let Some(s) = sealed.take() {
                if failures.next().unwrap_or(false) {
                    t.rollback();
                    next = s;
                    continue;
                }
                t.commit_sealed();
                committed.append(&mut decided[s]);
                done = s + 1;
            }
            if let Some(b) = open {
                t.seal();
                sealed = Some(b);
                next = b + 1;
            }
        }
        // Every command was applied exactly once: accepted (a rollback that left state behind
        // would answer the retry as a duplicate), with gap-free versions per aggregate.
        assert_eq!(committed.len(), n * 4);
        let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
        for d in &committed {
            assert!(
                matches!(d.result.outcome, Outcome::Accepted { .. }),
                "{d:?}"
            );
            for e in &d.events {
                versions
                    .entry(e.aggregate_id.clone())
                    .or_default()
                    .push(e.version);
            }
        }
        for (sku, vs) in &versions {
            assert_eq!(*vs, (1..=vs.len() as u64).collect::<Vec<_>>(), "{sku}");
        }
        let mut sequential = AggregateTable::<Stock>::new(SnapshotPolicy::default());
        for c in batches.iter().flatten() {
            sequential.handle(c, &(), 0);
        }
        for sku in skus {
            assert_eq!(at(&t, sku), at(&sequential, sku), "{sku}");
        }
    }
}
