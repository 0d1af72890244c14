//! Reading partitions from an offset to their end, for rebuilding state on assignment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::client_log::QuietEofContext;
use crate::{KafkaSettings, RuntimeError};

/// Reads partitions to their end for restores, with one pair of clients for all of them:
/// creating a librdkafka client costs threads and connections, and an assignment restores
/// several partitions (snapshots, then events, for each).
pub struct Restorer {
    reader: BaseConsumer<QuietEofContext>,
    ends: BaseConsumer<QuietEofContext>,
}

impl std::fmt::Debug for Restorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restorer").finish_non_exhaustive()
    }
}

impl Restorer {
    /// The two clients: a read_committed reader, and a read_uncommitted one asked for ends.
    pub fn new(settings: &KafkaSettings) -> Result<Self, RuntimeError> {
        let reader = settings
            .restore_consumer()
            .create_with_context(QuietEofContext)?;
        // A read_committed client is told the last stable offset as a partition's end, which
        // stops short of a transaction still being committed: state rebuilt without it would
        // fork when its commit lands. The end is asked for as read_uncommitted sees it (the
        // high watermark), and the read_committed reader only gets there once every
        // transaction before it is resolved.
        let ends = settings
            .restore_consumer()
            .set("isolation.level", "read_uncommitted")
            .create_with_context(QuietEofContext)?;
        Ok(Self { reader, ends })
    }

    /// Reads committed records of `topic[partition]` from `from` until the end the partition
    /// had when the read started, calling `on_record` for each.
    ///
    /// "The end" is the high watermark, not the last stable offset: if a crashed writer left a
    /// transaction open, this waits until the broker resolves it (at most the transaction
    /// timeout), so state is never rebuilt without records that later turn out to be committed.
    pub fn read<F>(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        timeout: Duration,
        on_record: F,
    ) -> Result<u64, RuntimeError>
    where
        F: FnMut(&BorrowedMessage<'_>) -> Result<(), String>,
    {
        self.read_partitions(topic, &[(partition, from)], timeout, on_record)
    }

    /// Reads committed records of several partitions of `topic`, each from its own offset to the
    /// end it had when the read started (as [`Restorer::read`]), all at once: one assignment,
    /// so the broker serves every partition in the same fetches instead of one after another.
    /// Records of different partitions interleave; within a partition they come in order.
    pub fn read_partitions<F>(
        &self,
        topic: &str,
        starts: &[(i32, i64)],
        timeout: Duration,
        mut on_record: F,
    ) -> Result<u64, RuntimeError>
    where
        F: FnMut(&BorrowedMessage<'_>) -> Result<(), String>,
    {
        let fail = |partition: i32, reason: String| RuntimeError::Restore {
            topic: topic.to_owned(),
            partition,
            reason,
        };
        let deadline = Instant::now() + timeout;
        // partition → (first offset, end offset) of the partitions still being read.
        let mut pending: HashMap<i32, (i64, i64)> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        for &(partition, from) in starts {
            let high = self.end_offset(topic, partition, deadline)?;
            let from = from.max(0);
            if high > from {
                tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
                pending.insert(partition, (from, high));
            }
        }
        if pending.is_empty() {
            return Ok(0);
        }
        let consumer = &self.reader;
        consumer.assign(&tpl)?;
        let mut read = 0u64;
        while !pending.is_empty() {
            let first = pending.keys().min().copied().unwrap_or_default();
            if Instant::now() > deadline {
                let left: Vec<_> = pending.iter().map(|(p, (_, high))| (*p, *high)).collect();
                return Err(fail(
                    first,
                    format!(
                        "partitions {left:?} (partition, end) not read to their end within {timeout:?}"
                    ),
                ));
            }
            if crate::shutdown::requested() {
                return Err(fail(first, "shutdown requested".into()));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let partition = m.partition();
                    // A record of a partition read before (still queued when the assignment
                    // changed), or past the end of one already read, is not this read's.
                    let Some(&(from, high)) = pending.get(&partition) else {
                        continue;
                    };
                    let offset = m.offset();
                    if m.topic() != topic || offset < from {
                        continue;
                    }
                    on_record(&m).map_err(|e| fail(partition, format!("offset {offset}: {e}")))?;
                    read += 1;
                    if offset + 1 >= high {
                        pending.remove(&partition);
                    }
                }
                // The last records of a partition may be transaction markers, which are never
                // delivered: the position tells when they are passed. An end-of-partition notice
                // or a quiet poll is when to look.
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    let positions = consumer.position().ok();
                    pending.retain(|p, (_, high)| {
                        let at = positions
                            .as_ref()
                            .and_then(|t| t.find_partition(topic, *p))
                            .and_then(|e| match e.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            })
                            .unwrap_or(-1);
                        at < *high
                    });
                }
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => {
                    return Err(fail(first, "topic does not exist".into()));
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
        // Stop fetching what this read no longer needs.
        consumer.unassign()?;
        Ok(read)
    }

    /// The partition's high watermark, retried until `deadline`: a partition created a moment
    /// ago may not have a leader yet, or not be in the metadata of a broker that has just
    /// restarted with many partitions.
    fn end_offset(
        &self,
        topic: &str,
        partition: i32,
        deadline: Instant,
    ) -> Result<i64, RuntimeError> {
        let mut attempt = 0;
        loop {
            match self
                .ends
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
            {
                Ok((_, high)) => return Ok(high),
                Err(e) if Instant::now() < deadline && !crate::shutdown::requested() => {
                    attempt += 1;
                    tracing::warn!(topic, partition, error = %e, attempt, "partition not ready; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Reads committed records of `topic[partition]` from `from` to its end (see
/// [`Restorer::read`]), with clients of its own: for a single read.
pub fn read_partition<F>(
    settings: &KafkaSettings,
    topic: &str,
    partition: i32,
    from: i64,
    timeout: Duration,
    on_record: F,
) -> Result<u64, RuntimeError>
where
    F: FnMut(&BorrowedMessage<'_>) -> Result<(), String>,
{
    Restorer::new(settings)?.read(topic, partition, from, timeout, on_record)
}
