//! How far a rebuild's replay is: the offset reached in each partition of its input, against
//! the ends the partitions had when the replay started, logged periodically with the rate and
//! the time left.
//!
//! Progress is counted in offsets, so a transaction marker counts like an event: the count
//! reaches the total exactly when the replay has read to the ends it started from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use streamcart_kafka_runtime::{KafkaSettings, RuntimeError};
use tokio_util::sync::CancellationToken;

/// How often a rebuild logs its progress.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The replay's position per partition, shared between the handler and the reporter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Partition → the offset after the last record read.
    next: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl Progress {
    /// Records that the replay read `offset` of `partition`.
    pub(crate) fn reached(&self, partition: i32, offset: i64) {
        let mut next = lock(&self.next);
        let at = next.entry(partition).or_insert(0);
        // A redelivery after a rewind moves nothing back: progress is the furthest read.
        *at = (*at).max(offset + 1);
    }

    /// Offsets replayed of the total between `bounds` (partition → low and high watermark).
    pub(crate) fn replayed(&self, bounds: &BTreeMap<i32, (i64, i64)>) -> (u64, u64) {
        let next = lock(&self.next);
        bounds
            .iter()
            .fold((0, 0), |(done, total), (partition, (low, high))| {
                let reached = next.get(partition).copied().unwrap_or(*low);
                let span = (high - low).max(0) as u64;
                let read = (reached.clamp(*low, *high) - low) as u64;
                (done + read, total + span)
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent across a panic: each update is a single insert.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The low and high watermark of every partition of `topic`, as a read_uncommitted reader
/// sees them: the high watermark is the end the replay reads to.
pub(crate) async fn bounds(
    settings: &KafkaSettings,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, RuntimeError> {
    let consumer: BaseConsumer = settings
        .restore_consumer()
        .set("isolation.level", "read_uncommitted")
        .create()?;
    let topic = topic.to_owned();
    let job = tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let mut bounds = BTreeMap::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                bounds.insert(p.id(), consumer.fetch_watermarks(&topic, p.id(), timeout)?);
            }
        }
        Ok::<_, rdkafka::error::KafkaError>(bounds)
    });
    match job.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(RuntimeError::Config(format!(
            "reading the end offsets of the replay's input: {e}"
        ))),
    }
}

/// Logs `progress` against `bounds` every [`PROGRESS_EVERY`] until `done` fires.
pub(crate) async fn report(
    projection: &'static str,
    progress: Progress,
    bounds: BTreeMap<i32, (i64, i64)>,
    done: CancellationToken,
) {
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PROGRESS_EVERY) => {}
            _ = done.cancelled() => return,
        }
        let (replayed, total) = progress.replayed(&bounds);
        let elapsed = started.elapsed().as_secs_f64().max(1e-3);
        let rate = replayed as f64 / elapsed;
        let left = total.saturating_sub(replayed);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "unknown".to_owned()
        };
        let percent = if total == 0 {
            100.0
        } else {
            replayed as f64 * 100.0 / total as f64
        };
        tracing::info!(
            projection,
            replayed,
            total,
            rate_per_s = rate.round() as u64,
            "rebuild progress: {replayed} of {total} events replayed ({percent:.1} %), \
             {rate:.0} events/s, ETA {eta}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_the_furthest_offset_read_per_partition_within_its_bounds() {
        let bounds = BTreeMap::from([(0, (0, 10)), (1, (5, 25)), (2, (0, 0))]);
        let progress = Progress::default();
        assert_eq!(progress.replayed(&bounds), (0, 30));
        progress.reached(0, 4);
        progress.reached(0, 2);
        progress.reached(1, 14);
        assert_eq!(progress.replayed(&bounds), (5 + 10, 30));
        // Records written after the replay started lie past its bounds and count for nothing.
        progress.reached(0, 40);
        progress.reached(1, 24);
        assert_eq!(progress.replayed(&bounds), (30, 30));
    }
}
