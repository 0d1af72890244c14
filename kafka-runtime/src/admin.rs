//! Creating topics with the partition counts and cleanup policies their role needs, and
//! checking that topics which must be co-partitioned are.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaSettings, RuntimeError};

/// How a topic keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Every record forever: commands, events, results, dead letters.
    Forever,
    /// Latest record per key (snapshots, public summary streams).
    Compacted,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Cleanup policy.
    pub retention: Retention,
}

/// Creates the topics that do not exist yet; existing ones are left as they are.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<(), RuntimeError> {
    let admin: AdminClient<DefaultClientContext> = settings.client().create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let n = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1));
            match t.retention {
                Retention::Forever => n.set("retention.ms", "-1"),
                Retention::Compacted => n
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "0")
                    .set("segment.ms", "600000"),
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(new.iter(), &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::Config(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Why topics that must be co-partitioned cannot be used together.
///
/// Never retried by the caller: metadata look-ups are already retried until the timeout, and a
/// missing topic or a count mismatch needs an operator. The loop refuses to start (or stops).
#[derive(Debug, thiserror::Error)]
pub enum CoPartitionError {
    /// Kafka did not answer the metadata request for a topic within the timeout.
    #[error("cannot read the metadata of topic {topic} within {timeout:?}: {source}")]
    Metadata {
        /// Topic asked about.
        topic: String,
        /// How long it was retried.
        timeout: Duration,
        /// The last error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist (or reports no partitions) after retrying until the timeout.
    #[error("topic {topic} does not exist: create it with the same partition count as {others}")]
    Missing {
        /// The missing topic.
        topic: String,
        /// The topics it must be co-partitioned with.
        others: String,
    },
    /// The topics have different partition counts.
    #[error("{}", mismatch_message(.counts))]
    Mismatch {
        /// Every topic checked with its partition count.
        counts: Vec<(String, i32)>,
    },
}

impl From<CoPartitionError> for RuntimeError {
    fn from(e: CoPartitionError) -> Self {
        RuntimeError::Config(e.to_string())
    }
}

fn mismatch_message(counts: &[(String, i32)]) -> String {
    let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    format!(
        "topics that must be co-partitioned have different partition counts ({}): an \
         aggregate's commands, events and snapshots must share one partition number. Give them \
         one count before starting: recreate the topics with it, or, while they are still \
         empty, raise the smaller ones to {most} (kafka-topics.sh --alter --partitions {most}); \
         adding partitions to topics that hold records moves keys to other partitions",
        listed.join(", ")
    )
}

/// Partition count of each of `topics`, read from the cluster metadata.
///
/// A topic created a moment ago may be missing from the metadata of the broker asked, so a
/// missing topic and a failed request are retried until `timeout` passes.
pub fn partition_counts(
    settings: &KafkaSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(String, i32)>, CoPartitionError> {
    let consumer: BaseConsumer =
        settings
            .restore_consumer()
            .create()
            .map_err(|source| CoPartitionError::Metadata {
                topic: topics.join(", "),
                timeout,
                source,
            })?;
    let deadline = Instant::now() + timeout;
    let mut counts = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut attempt = 0u32;
        let count = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = consumer
                .fetch_metadata(
                    Some(topic),
                    left.clamp(Duration::from_millis(100), Duration::from_secs(10)),
                )
                .map(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == *topic)
                        .filter(|t| t.error().is_none())
                        .map_or(0, |t| t.partitions().len() as i32)
                });
            match outcome {
                Ok(n) if n > 0 => break n,
                _ if Instant::now() < deadline => {
                    attempt += 1;
                    tracing::debug!(topic, attempt, "topic metadata not ready; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Ok(_) => {
                    let others: Vec<&str> = topics.iter().copied().filter(|t| t != topic).collect();
                    return Err(CoPartitionError::Missing {
                        topic: (*topic).to_owned(),
                        others: others.join(", "),
                    });
                }
                Err(source) => {
                    return Err(CoPartitionError::Metadata {
                        topic: (*topic).to_owned(),
                        timeout,
                        source,
                    });
                }
            }
        };
        counts.push(((*topic).to_owned(), count));
    }
    Ok(counts)
}

/// The one partition count `topics` share; an error naming each topic's count when they differ.
pub fn co_partitioned(
    settings: &KafkaSettings,
    topics: &[&str],
    timeout: Duration,
) -> Result<i32, CoPartitionError> {
    let counts = partition_counts(settings, topics, timeout)?;
    same_count(counts)
}

/// The count every entry has, or [`CoPartitionError::Mismatch`] listing them all.
pub fn same_count(counts: Vec<(String, i32)>) -> Result<i32, CoPartitionError> {
    match counts.split_first() {
        Some(((_, first), rest)) if rest.iter().all(|(_, n)| n == first) => Ok(*first),
        Some(_) => Err(CoPartitionError::Mismatch { counts }),
        None => Err(CoPartitionError::Missing {
            topic: "(none given)".into(),
            others: String::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_counts_give_the_count() {
        let counts = vec![("a.commands".into(), 6), ("a.events".into(), 6)];
        assert_eq!(same_count(counts).expect("co-partitioned"), 6);
    }

    #[test]
    fn a_mismatch_names_every_topic_and_count_and_what_to_do() {
        let counts = vec![
            ("inventory.stock.commands".into(), 8),
            ("inventory.stock.events".into(), 4),
            ("inventory.stock.snapshots".into(), 8),
        ];
        let err = same_count(counts).expect_err("mismatch");
        assert!(matches!(err, CoPartitionError::Mismatch { .. }));
        let text = err.to_string();
        for part in [
            "inventory.stock.commands: 8",
            "inventory.stock.events: 4",
            "inventory.stock.snapshots: 8",
            "--partitions 8",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text:?}");
        }
        let runtime: RuntimeError = err.into();
        assert!(runtime.to_string().contains("inventory.stock.events: 4"));
    }

    #[test]
    fn no_topics_is_an_error_not_a_count() {
        assert!(same_count(Vec::new()).is_err());
    }
}
