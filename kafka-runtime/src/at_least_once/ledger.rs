//! Batch bookkeeping: which records of a batch are settled (applied, or safely dead-lettered),
//! and from that, how far each partition's offset may be committed and where to rewind.
//!
//! The one rule: a partition's committed offset never passes a record that is not settled, even
//! when records after it are. Offsets inside a batch need not be contiguous (transaction markers
//! and compacted records leave holes), so positions are taken from the records themselves.

use std::collections::BTreeMap;
use std::time::Duration;

/// Index of a record in its batch, as [`Ledger::track`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(usize);

impl RecordId {
    /// Position of the record in its batch (the order records were tracked in).
    pub fn index(self) -> usize {
        self.0
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Not done yet: nothing at or after it in its partition may be committed.
    Pending,
    /// Every effect of the record is durable.
    Applied,
    /// The record is in the dead-letter topic, acknowledged.
    DeadLettered,
}

/// One partition's place: topic and partition number.
pub type PartitionKey = (String, i32);

/// The records of one batch and what became of each.
#[derive(Debug, Default)]
pub struct Ledger {
    records: Vec<(usize, i64, Settlement)>,
    partitions: Vec<PartitionKey>,
    index: BTreeMap<PartitionKey, usize>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the record at `offset` of `topic`/`partition`, pending. Records of one partition
    /// must be tracked in offset order, as a consumer delivers them.
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64) -> RecordId {
        let p = match self.index.get(&(topic.to_owned(), partition)) {
            Some(p) => *p,
            None => {
                let p = self.partitions.len();
                self.partitions.push((topic.to_owned(), partition));
                self.index.insert((topic.to_owned(), partition), p);
                p
            }
        };
        self.records.push((p, offset, Settlement::Pending));
        RecordId(self.records.len() - 1)
    }

    /// Records what became of `id`. Unknown ids are ignored.
    pub fn settle(&mut self, id: RecordId, settlement: Settlement) {
        if let Some(r) = self.records.get_mut(id.0) {
            r.2 = settlement;
        }
    }

    /// What became of `id` (`Pending` for unknown ids).
    pub fn state(&self, id: RecordId) -> Settlement {
        self.records.get(id.0).map_or(Settlement::Pending, |r| r.2)
    }

    /// Records tracked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True when every record is settled.
    pub fn all_settled(&self) -> bool {
        self.records.iter().all(|r| r.2 != Settlement::Pending)
    }

    /// Settled records, by kind: `(applied, dead_lettered)`.
    pub fn counts(&self) -> (u64, u64) {
        self.records.iter().fold((0, 0), |(a, d), r| match r.2 {
            Settlement::Applied => (a + 1, d),
            Settlement::DeadLettered => (a, d + 1),
            Settlement::Pending => (a, d),
        })
    }

    /// Per partition, the offset to commit: the first pending record's offset, or one past the
    /// last record when all are settled. Partitions whose first record is pending are left out:
    /// there is nothing new to commit for them.
    pub fn commit_positions(&self) -> Vec<(PartitionKey, i64)> {
        self.walk()
            .into_iter()
            .filter_map(|(p, first, stop)| match stop {
                Stop::AllSettled { last } => Some((p, last + 1)),
                Stop::PendingAt(o) if o > first => Some((p, o)),
                Stop::PendingAt(_) => None,
            })
            .collect()
    }

    /// Per partition with a pending record, the offset of the first one: where the consumer
    /// must rewind so that nothing unsettled is skipped.
    pub fn rewind_positions(&self) -> Vec<(PartitionKey, i64)> {
        self.walk()
            .into_iter()
            .filter_map(|(p, _, stop)| match stop {
                Stop::PendingAt(o) => Some((p, o)),
                Stop::AllSettled { .. } => None,
            })
            .collect()
    }

    /// For every partition: its key, its first offset in the batch, and where settling stops.
    fn walk(&self) -> Vec<(PartitionKey, i64, Stop)> {
        let mut out: Vec<Option<(i64, Stop)>> = vec![None; self.partitions.len()];
        for &(p, offset, state) in &self.records {
            let Some(slot) = out.get_mut(p) else { continue };
            match slot {
                None => {
                    *slot = Some((
                        offset,
                        match state {
                            Settlement::Pending => Stop::PendingAt(offset),
                            _ => Stop::AllSettled { last: offset },
                        },
                    ))
                }
                Some((_, Stop::PendingAt(_))) => {}
                Some((_, stop @ Stop::AllSettled { .. })) => {
                    *stop = match state {
                        Settlement::Pending => Stop::PendingAt(offset),
                        _ => Stop::AllSettled { last: offset },
                    }
                }
            }
        }
        self.partitions
            .iter()
            .zip(out)
            .filter_map(|(key, walk)| walk.map(|(first, stop)| (key.clone(), first, stop)))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    AllSettled { last: i64 },
    PendingAt(i64),
}

/// Exponential backoff between retries of one failing step: doubles from `min` up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`, never above `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max: max.max(min),
        }
    }

    /// The pause before the next attempt; each call doubles the following one, up to the bound.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Back to the shortest pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        ("t".to_owned(), p)
    }

    #[test]
    fn everything_settled_commits_one_past_the_last_record_of_each_partition() {
        let mut l = Ledger::new();
        let ids: Vec<RecordId> = [(0, 10), (1, 5), (0, 11), (0, 14), (1, 6)]
            .iter()
            .map(|(p, o)| l.track("t", *p, *o))
            .collect();
        for id in &ids {
            l.settle(*id, Settlement::Applied);
        }
        assert!(l.all_settled());
        assert_eq!(l.commit_positions(), vec![(key(0), 15), (key(1), 7)]);
        assert!(l.rewind_positions().is_empty());
    }

    #[test]
    fn a_pending_record_stops_its_partition_even_when_later_records_are_settled() {
        let mut l = Ledger::new();
        let a = l.track("t", 0, 10);
        let b = l.track("t", 0, 11);
        let c = l.track("t", 0, 12);
        let d = l.track("t", 1, 3);
        l.settle(a, Settlement::Applied);
        l.settle(c, Settlement::Applied);
        l.settle(d, Settlement::DeadLettered);
        assert_eq!(l.state(b), Settlement::Pending);
        assert!(!l.all_settled());
        assert_eq!(l.commit_positions(), vec![(key(0), 11), (key(1), 4)]);
        assert_eq!(l.rewind_positions(), vec![(key(0), 11)]);
        assert_eq!(l.counts(), (2, 1));
    }

    #[test]
    fn a_pending_first_record_commits_nothing_for_its_partition() {
        let mut l = Ledger::new();
        let _a = l.track("t", 2, 7);
        let b = l.track("t", 2, 9);
        l.settle(b, Settlement::Applied);
        assert!(l.commit_positions().is_empty());
        assert_eq!(l.rewind_positions(), vec![(key(2), 7)]);
    }

    #[test]
    fn dead_letters_count_as_settled_only_once_acknowledged() {
        let mut l = Ledger::new();
        let poison = l.track("t", 0, 0);
        let good = l.track("t", 0, 1);
        l.settle(good, Settlement::Applied);
        // The dead-letter write has not been acknowledged yet: nothing may be committed.
        assert!(l.commit_positions().is_empty());
        l.settle(poison, Settlement::DeadLettered);
        assert_eq!(l.commit_positions(), vec![(key(0), 2)]);
    }

    #[test]
    fn offsets_with_holes_commit_from_the_records_themselves() {
        let mut l = Ledger::new();
        let a = l.track("t", 0, 100);
        let b = l.track("t", 0, 103);
        let _c = l.track("t", 0, 110);
        l.settle(a, Settlement::Applied);
        l.settle(b, Settlement::Applied);
        assert_eq!(l.commit_positions(), vec![(key(0), 110)]);
        assert_eq!(l.rewind_positions(), vec![(key(0), 110)]);
    }

    #[test]
    fn topics_are_kept_apart() {
        let mut l = Ledger::new();
        let a = l.track("a", 0, 1);
        let b = l.track("b", 0, 1);
        l.settle(a, Settlement::Applied);
        assert_eq!(l.commit_positions(), vec![(("a".to_owned(), 0), 2)]);
        assert_eq!(l.rewind_positions(), vec![(("b".to_owned(), 0), 1)]);
        l.settle(b, Settlement::DeadLettered);
        assert_eq!(l.len(), 2);
        assert!(!l.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let pauses: Vec<u128> = (0..4).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, vec![100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_millis(100));
    }
}
