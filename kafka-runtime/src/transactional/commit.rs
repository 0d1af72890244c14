//! The commit of a sealed batch — wait for every record's acknowledgement, send the consumer
//! offsets, end the transaction — on a thread of its own, so that the loop handles the next
//! batch during those broker round trips instead of waiting for them.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::trace::SpanContext;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::{BaseProducer, Producer};
use tokio_util::sync::CancellationToken;

use super::contexts::{DeliveryLog, ProduceContext};
use super::engine::call_budget;
use super::recovery::{Bound, Recovery, resume};
use crate::telemetry::WorkSpan;

/// The loop's transactional producer, shared with the commit thread.
pub(super) type LoopProducer = BaseProducer<ProduceContext>;

/// How long to sleep while waiting for delivery reports: well below a produce round trip.
pub(super) const DELIVERY_WAIT: Duration = Duration::from_micros(200);

/// What became of one commit, and how long its steps took.
#[derive(Debug)]
pub(super) struct CommitReport {
    /// `Ok` once the transaction is committed; else how to recover.
    pub(super) result: Result<(), Recovery>,
    /// Waiting for the acknowledgement of every record.
    pub(super) flush: Duration,
    /// Sending the consumer offsets into the transaction.
    pub(super) offsets: Duration,
    /// Ending the transaction.
    pub(super) commit: Duration,
}

struct Job {
    offsets: TopicPartitionList,
    metadata: Option<ConsumerGroupMetadata>,
    /// The sampled spans of the batch's records: the commit's span links them.
    spans: Vec<SpanContext>,
}

/// The commit thread of one loop; at most one commit runs at a time.
pub(super) struct Committer {
    jobs: Option<mpsc::Sender<Job>>,
    reports: mpsc::Receiver<CommitReport>,
    busy: bool,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the commit thread of the loop called `name`.
    pub(super) fn spawn(
        name: &str,
        producer: Arc<LoopProducer>,
        deliveries: DeliveryLog,
        timeout: Duration,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (report_tx, reports) = mpsc::channel();
        let loop_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-commit"))
            .spawn(move || {
                for job in job_rx {
                    let span = (!job.spans.is_empty())
                        .then(|| WorkSpan::linked("batch committed", &loop_name, &job.spans));
                    let report = commit(&producer, &deliveries, job, timeout, &shutdown);
                    if let (Some(span), Err(r)) = (&span, &report.result) {
                        span.fail(&format!("{r:?}"));
                    }
                    drop(span);
                    if report_tx.send(report).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            reports,
            busy: false,
            thread: Some(thread),
        })
    }

    /// True while a commit runs.
    pub(super) fn busy(&self) -> bool {
        self.busy
    }

    /// Starts committing the open transaction with these input offsets.
    pub(super) fn start(
        &mut self,
        offsets: TopicPartitionList,
        metadata: Option<ConsumerGroupMetadata>,
        spans: Vec<SpanContext>,
    ) -> Result<(), String> {
        let sent = self.jobs.as_ref().is_some_and(|j| {
            j.send(Job {
                offsets,
                metadata,
                spans,
            })
            .is_ok()
        });
        if !sent {
            return Err("the commit thread has stopped".into());
        }
        self.busy = true;
        Ok(())
    }

    /// The report of the running commit: at once if it is done (`wait` zero), else waiting up
    /// to `wait`, or for as long as it takes (`None`).
    pub(super) fn report(&mut self, wait: Option<Duration>) -> Option<CommitReport> {
        if !self.busy {
            return None;
        }
        let received = match wait {
            Some(w) if w.is_zero() => self.reports.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            }),
            Some(w) => self.reports.recv_timeout(w),
            None => self
                .reports
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(report) => {
                self.busy = false;
                Some(report)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.busy = false;
                Some(CommitReport {
                    result: Err(Recovery::Rebuild("the commit thread has stopped".into())),
                    flush: Duration::ZERO,
                    offsets: Duration::ZERO,
                    commit: Duration::ZERO,
                })
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once its current commit is done.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn commit(
    producer: &LoopProducer,
    deliveries: &DeliveryLog,
    job: Job,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> CommitReport {
    let t0 = Instant::now();
    let flushed = wait_acknowledged(producer, timeout).and_then(|()| {
        if deliveries.has_failures() {
            Err("a record of the batch was not delivered".to_string())
        } else {
            Ok(())
        }
    });
    let t1 = Instant::now();
    let mut report = CommitReport {
        result: Ok(()),
        flush: t1 - t0,
        offsets: Duration::ZERO,
        commit: Duration::ZERO,
    };
    if let Err(e) = flushed {
        report.result = Err(Recovery::Abort(e));
        return report;
    }
    // One bound for the whole commit: its calls are resumed while librdkafka says they may be.
    let mut bound = Bound::new(call_budget(timeout), shutdown);
    if job.offsets.count() > 0 {
        let Some(metadata) = job.metadata else {
            report.result = Err(Recovery::Abort("no consumer group metadata yet".into()));
            return report;
        };
        let sent = resume("send_offsets_to_transaction", &mut bound, |t| {
            producer.send_offsets_to_transaction(&job.offsets, &metadata, t)
        });
        report.offsets = t1.elapsed();
        if let Err(r) = sent {
            report.result = Err(r);
            return report;
        }
    }
    let t2 = Instant::now();
    // Once commit_transaction has been called, a failure no longer says whether the broker
    // committed: a retried EndTxn after the broker already wrote the commit (it restarted, or a
    // request timed out) can come back abortable. Rolling back in memory and handling the batch
    // again would then apply it twice; instead the clients are rebuilt and state is restored
    // from what Kafka really holds, and the consumer resumes from the committed offsets.
    report.result = resume("commit_transaction", &mut bound, |t| {
        producer.commit_transaction(t)
    })
    .map_err(|r| match r {
        Recovery::Abort(reason) => Recovery::Rebuild(format!("commit outcome unknown ({reason})")),
        rebuild => rebuild,
    });
    report.commit = t2.elapsed();
    report
}

/// Waits until every record sent is acknowledged, serving delivery reports as they come.
///
/// rdkafka's own `flush` sleeps up to 100 ms between checks, which would cap a loop at about
/// ten transactions a second; polling the producer directly returns as soon as the last
/// report is in.
///
/// It never asks rdkafka to poll with a timeout: its poll keeps calling librdkafka until the
/// deadline passes, and rounds the time left down to whole milliseconds, so the last
/// millisecond of every wait is a busy loop that starves the broker on a small machine.
/// Serving what is ready and sleeping briefly when nothing moved costs no CPU.
pub(super) fn wait_acknowledged(producer: &LoopProducer, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut left = i32::MAX;
    loop {
        producer.poll(Duration::ZERO);
        let now_left = producer.in_flight_count();
        if now_left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{now_left} records not acknowledged in time"));
        }
        // A served report may have more behind it: keep draining while the count falls.
        if now_left >= left {
            std::thread::sleep(DELIVERY_WAIT);
        }
        left = now_left;
    }
}
