//! Creating topics with the partition counts, replication and cleanup policies their role
//! needs, refusing existing ones that differ, and checking that topics which must be
//! co-partitioned are.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
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

/// What a topic holds: it decides the topic's retention and, through
/// [`crate::settings::TopicPolicies`], its replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicClass {
    /// Commands of one context.
    Commands,
    /// Events of one context: the source of truth.
    Events,
    /// Snapshots of one context's aggregates.
    Snapshots,
    /// The outcome of every command.
    Results,
    /// A public summary stream.
    Summaries,
    /// Records a loop could not handle.
    DeadLetters,
}

impl TopicClass {
    /// Every class.
    pub const ALL: [TopicClass; 6] = [
        TopicClass::Commands,
        TopicClass::Events,
        TopicClass::Snapshots,
        TopicClass::Results,
        TopicClass::Summaries,
        TopicClass::DeadLetters,
    ];

    /// How topics of this class keep their records.
    pub fn retention(self) -> Retention {
        match self {
            TopicClass::Snapshots | TopicClass::Summaries => Retention::Compacted,
            TopicClass::Commands
            | TopicClass::Events
            | TopicClass::Results
            | TopicClass::DeadLetters => Retention::Forever,
        }
    }

    /// The class's key in `kafka.topics`.
    pub fn key(self) -> &'static str {
        match self {
            TopicClass::Commands => "commands",
            TopicClass::Events => "events",
            TopicClass::Snapshots => "snapshots",
            TopicClass::Results => "results",
            TopicClass::Summaries => "summaries",
            TopicClass::DeadLetters => "dead_letters",
        }
    }
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// What it holds.
    pub class: TopicClass,
}

impl TopicSpec {
    /// The topic `name` of `class` with `partitions` partitions.
    pub fn new(name: impl Into<String>, partitions: i32, class: TopicClass) -> Self {
        Self {
            name: name.into(),
            partitions,
            class,
        }
    }
}

/// An existing topic that is not what the configuration asks for. Never retried: the topic
/// must be recreated or reconfigured by an operator (or the configuration changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicMismatch {
    /// Its partition count differs.
    #[error(
        "topic {topic} has {found} partitions, the configuration asks for {wanted} \
         (`partitions`): recreate it with {wanted}, or set `partitions` to {found} for every role"
    )]
    Partitions {
        /// The topic.
        topic: String,
        /// Partitions it has.
        found: i32,
        /// Partitions configured.
        wanted: i32,
    },
    /// Its replication factor differs.
    #[error(
        "topic {topic} has replication factor {found}, the configuration asks for {wanted} \
         (`kafka.topics.{class}.replication_factor`): reassign its replicas \
         (kafka-reassign-partitions.sh) or change the setting"
    )]
    Replication {
        /// The topic.
        topic: String,
        /// Its class's key.
        class: &'static str,
        /// Replicas its partitions have (the smallest, if they differ).
        found: i32,
        /// Replication factor configured.
        wanted: i32,
    },
    /// Its `min.insync.replicas` differs.
    #[error(
        "topic {topic} has min.insync.replicas {found}, the configuration asks for {wanted} \
         (`kafka.topics.{class}.min_insync_replicas`): kafka-configs.sh --alter --entity-type \
         topics --entity-name {topic} --add-config min.insync.replicas={wanted}, or change the \
         setting"
    )]
    MinInsync {
        /// The topic.
        topic: String,
        /// Its class's key.
        class: &'static str,
        /// Its effective value.
        found: i32,
        /// Value configured.
        wanted: i32,
    },
}

impl From<TopicMismatch> for RuntimeError {
    fn from(e: TopicMismatch) -> Self {
        RuntimeError::Config(e.to_string())
    }
}

/// What a topic is, as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicShape {
    /// Partition count.
    pub partitions: i32,
    /// The smallest replica count among its partitions.
    pub replication_factor: i32,
    /// Its effective `min.insync.replicas`.
    pub min_insync_replicas: i32,
}

/// Every way `found` differs from what `spec` and `settings` ask; empty when it is as asked.
pub fn mismatches(
    spec: &TopicSpec,
    settings: &KafkaSettings,
    found: &TopicShape,
) -> Vec<TopicMismatch> {
    let policy = settings.topics.of(spec.class);
    let mut out = Vec::new();
    if found.partitions != spec.partitions {
        out.push(TopicMismatch::Partitions {
            topic: spec.name.clone(),
            found: found.partitions,
            wanted: spec.partitions,
        });
    }
    if found.replication_factor != policy.replication_factor {
        out.push(TopicMismatch::Replication {
            topic: spec.name.clone(),
            class: spec.class.key(),
            found: found.replication_factor,
            wanted: policy.replication_factor,
        });
    }
    if found.min_insync_replicas != policy.min_insync_replicas {
        out.push(TopicMismatch::MinInsync {
            topic: spec.name.clone(),
            class: spec.class.key(),
            found: found.min_insync_replicas,
            wanted: policy.min_insync_replicas,
        });
    }
    out
}

/// Creates the topics that do not exist yet, replicated as `settings.topics` asks for their
/// class, then checks that every one of them (new or old) has the configured partition count,
/// replication factor and `min.insync.replicas`: a role refuses to start on topics that are not
/// what the configuration says, naming the topic, rather than run with weaker durability or
/// keys on other partitions than its peers expect.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<(), RuntimeError> {
    let admin: AdminClient<DefaultClientContext> = settings.client().create()?;
    // Only missing topics are asked for: the broker checks a request's replication factor
    // before whether the topic exists, so asking for an existing topic with a factor the
    // cluster cannot place would hide the mismatch the check below names.
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let probe = settings.clone();
    let existing = tokio::task::spawn_blocking(move || existing_topics(&probe, &names))
        .await
        .map_err(|e| RuntimeError::Config(format!("topic metadata thread: {e}")))??;
    let missing: Vec<&TopicSpec> = topics
        .iter()
        .filter(|t| !existing.contains(&t.name))
        .collect();
    // NewTopic borrows its values, so they are made first.
    let min_insync: Vec<String> = missing
        .iter()
        .map(|t| settings.topics.of(t.class).min_insync_replicas.to_string())
        .collect();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&min_insync)
        .map(|(t, min_insync)| {
            let policy = settings.topics.of(t.class);
            let n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(policy.replication_factor),
            )
            .set("min.insync.replicas", min_insync);
            match t.class.retention() {
                Retention::Forever => n.set("retention.ms", "-1"),
                Retention::Compacted => n
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "0")
                    .set("segment.ms", "600000"),
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = if new.is_empty() {
        Vec::new()
    } else {
        admin.create_topics(new.iter(), &opts).await?
    };
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, RDKafkaErrorCode::InvalidReplicationFactor)) => {
                let class = topics
                    .iter()
                    .find(|t| t.name == name)
                    .map_or("?", |t| t.class.key());
                return Err(RuntimeError::Config(format!(
                    "cannot create topic {name}: the cluster has fewer brokers than \
                     kafka.topics.{class}.replication_factor ({})",
                    topics
                        .iter()
                        .find(|t| t.name == name)
                        .map_or(0, |t| settings.topics.of(t.class).replication_factor)
                )));
            }
            Err((name, code)) => {
                return Err(RuntimeError::Config(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    let shapes = topic_shapes(&admin, settings, topics).await?;
    let mut wrong = Vec::new();
    for (spec, shape) in topics.iter().zip(&shapes) {
        wrong.extend(mismatches(spec, settings, shape));
    }
    match wrong.len() {
        0 => Ok(()),
        1 => Err(wrong.remove(0).into()),
        _ => Err(RuntimeError::Config(
            wrong
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// How long the topic checks wait for a broker that does not answer, or for a topic just
/// created to show in the metadata.
const SHAPE_TIMEOUT: Duration = Duration::from_secs(60);

/// The shape of each of `topics`, in order. A topic created a moment ago may be missing from
/// the metadata of the broker asked, so that is retried for a while.
async fn topic_shapes(
    admin: &AdminClient<DefaultClientContext>,
    settings: &KafkaSettings,
    topics: &[TopicSpec],
) -> Result<Vec<TopicShape>, RuntimeError> {
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let settings = settings.clone();
    let layout = tokio::task::spawn_blocking(move || replica_layout(&settings, &names))
        .await
        .map_err(|e| RuntimeError::Config(format!("topic metadata thread: {e}")))??;
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(SHAPE_TIMEOUT));
    let described = admin.describe_configs(resources.iter(), &opts).await?;
    let mut shapes = Vec::with_capacity(topics.len());
    for ((spec, (partitions, replication_factor)), config) in
        topics.iter().zip(layout).zip(described)
    {
        let config = config.map_err(|code| {
            RuntimeError::Config(format!("cannot describe topic {}: {code}", spec.name))
        })?;
        let min_insync_replicas = config
            .get("min.insync.replicas")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                RuntimeError::Config(format!(
                    "topic {} reports no min.insync.replicas",
                    spec.name
                ))
            })?;
        shapes.push(TopicShape {
            partitions,
            replication_factor,
            min_insync_replicas,
        });
    }
    Ok(shapes)
}

/// Which of `names` exist, from one metadata request each. A topic the metadata does not
/// show is taken as missing; creating it then answers "already exists" if it was only late.
fn existing_topics(
    settings: &KafkaSettings,
    names: &[String],
) -> Result<std::collections::HashSet<String>, RuntimeError> {
    let consumer: BaseConsumer = settings.restore_consumer().create()?;
    let deadline = Instant::now() + SHAPE_TIMEOUT;
    let mut existing = std::collections::HashSet::new();
    for name in names {
        // A broker that is restarting is waited for, as creating the topics would.
        let metadata = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer.fetch_metadata(
                Some(name),
                left.clamp(Duration::from_millis(100), Duration::from_secs(10)),
            ) {
                Ok(m) => break m,
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(topic = %name, error = %e, "no topic metadata yet; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        };
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        {
            existing.insert(name.clone());
        }
    }
    Ok(existing)
}

/// Partition count and smallest replica count of each topic, from the cluster metadata.
fn replica_layout(
    settings: &KafkaSettings,
    names: &[String],
) -> Result<Vec<(i32, i32)>, RuntimeError> {
    let consumer: BaseConsumer = settings.restore_consumer().create()?;
    let deadline = Instant::now() + SHAPE_TIMEOUT;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let found = consumer
                .fetch_metadata(
                    Some(name),
                    left.clamp(Duration::from_millis(100), Duration::from_secs(10)),
                )
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .filter(|t| !t.partitions().is_empty())
                        .map(|t| {
                            let replicas = t
                                .partitions()
                                .iter()
                                .map(|p| p.replicas().len() as i32)
                                .min()
                                .unwrap_or(0);
                            (t.partitions().len() as i32, replicas)
                        })
                });
            match found {
                Some(layout) => {
                    out.push(layout);
                    break;
                }
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                None => {
                    return Err(RuntimeError::Config(format!(
                        "topic {name} is missing from the cluster metadata {} s after it was \
                         created",
                        SHAPE_TIMEOUT.as_secs()
                    )));
                }
            }
        }
    }
    Ok(out)
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

    fn shape(partitions: i32, replication_factor: i32, min_insync_replicas: i32) -> TopicShape {
        TopicShape {
            partitions,
            replication_factor,
            min_insync_replicas,
        }
    }

    #[test]
    fn a_topic_as_configured_has_no_mismatch() {
        let mut settings = KafkaSettings::default();
        settings.topics.events = crate::settings::TopicPolicy {
            replication_factor: 3,
            min_insync_replicas: 2,
        };
        let spec = TopicSpec::new("a.orders.events", 4, TopicClass::Events);
        assert!(mismatches(&spec, &settings, &shape(4, 3, 2)).is_empty());
    }

    #[test]
    fn each_difference_is_named_with_its_topic_and_setting() {
        let mut settings = KafkaSettings::default();
        settings.topics.snapshots = crate::settings::TopicPolicy {
            replication_factor: 3,
            min_insync_replicas: 2,
        };
        let spec = TopicSpec::new("a.orders.snapshots", 4, TopicClass::Snapshots);
        let found = mismatches(&spec, &settings, &shape(6, 1, 1));
        assert_eq!(found.len(), 3, "{found:?}");
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("a.orders.snapshots has 6 partitions"),
            "{}",
            text[0]
        );
        assert!(
            text[1].contains("replication factor 1")
                && text[1].contains("kafka.topics.snapshots.replication_factor"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("min.insync.replicas 1") && text[2].contains("min.insync.replicas=2"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn only_snapshots_and_summaries_are_compacted() {
        let compacted: Vec<TopicClass> = TopicClass::ALL
            .into_iter()
            .filter(|c| c.retention() == Retention::Compacted)
            .collect();
        assert_eq!(compacted, [TopicClass::Snapshots, TopicClass::Summaries]);
    }

    #[test]
    fn no_topics_is_an_error_not_a_count() {
        assert!(same_count(Vec::new()).is_err());
    }
}
