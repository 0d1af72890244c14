//! Reading one partition from an offset to its end, for rebuilding state on assignment.

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
        mut on_record: F,
    ) -> Result<u64, RuntimeError>
    where
        F: FnMut(&BorrowedMessage<'_>) -> Result<(), String>,
    {
        let fail = |reason: String| RuntimeError::Restore {
            topic: topic.to_owned(),
            partition,
            reason,
        };
        let consumer = &self.reader;
        // A partition created a moment ago may not have a leader yet, or not be in the
        // metadata of a broker that has just restarted with many partitions: retry within the
        // timeout.
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        let high = loop {
            match self
                .ends
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
            {
                Ok((_, high)) => break high,
                Err(e) if Instant::now() < deadline && !crate::shutdown::requested() => {
                    attempt += 1;
                    tracing::warn!(topic, partition, error = %e, attempt, "partition not ready; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into()),
            }
        };
        if high <= from {
            return Ok(0);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from.max(0)))?;
        consumer.assign(&tpl)?;
        let mut read = 0u64;
        loop {
            if current_position(consumer, topic, partition) >= high {
                return Ok(read);
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "end offset {high} not reached within {timeout:?}"
                )));
            }
            if crate::shutdown::requested() {
                return Err(fail("shutdown requested".into()));
            }
            match consumer.poll(Duration::from_millis(100)) {
                // A record of a partition read before (still queued when the assignment
                // changed) is not this read's.
                Some(Ok(m)) if m.topic() != topic || m.partition() != partition => {}
                Some(Ok(m)) => {
                    let offset = m.offset();
                    on_record(&m).map_err(|e| fail(format!("offset {offset}: {e}")))?;
                    read += 1;
                    if offset + 1 >= high {
                        return Ok(read);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                ))) => {
                    return Err(fail("topic does not exist".into()));
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
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

fn current_position(consumer: &BaseConsumer<QuietEofContext>, topic: &str, partition: i32) -> i64 {
    let Ok(tpl) = consumer.position() else {
        return -1;
    };
    match tpl.find_partition(topic, partition).map(|p| p.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => -1,
    }
}
