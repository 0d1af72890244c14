//! What every role does before its loops start: make sure the schema contract is in the
//! registry, and (for `streamcart run`) that every topic exists with a leader.
//!
//! Registering at start-up means a fresh deployment holds every command subject before the first
//! command arrives, so a third-party producer can look its schema up instead of registering one,
//! and every subject got BACKWARD_TRANSITIVE before its first version.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use streamcart_kafka_runtime::admin::{TopicClass, TopicSpec, ensure_topics};
use streamcart_kafka_runtime::client_log::QuietEofContext;
use streamcart_kafka_runtime::hanging;
use streamcart_schemas::register::ensure_registered;
use streamcart_schemas::topics::{Context, Topics};

use crate::config::Config;

/// How long a starting role waits for the registry before giving up.
const REGISTRY_WAIT: Duration = Duration::from_secs(60);
/// How long `run` waits for freshly created topics to get leaders.
const LEADER_WAIT: Duration = Duration::from_secs(60);

/// Registers every subject of this build under the configured prefix (idempotent; no writes
/// when the registry is up to date).
pub async fn register_contract(cfg: &Config) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let started = Instant::now();
    let report = ensure_registered(&cfg.registry_url, &topics, REGISTRY_WAIT)
        .await
        .context("registering the schema contract")?;
    tracing::info!(
        subjects = report.subjects.len(),
        newly_registered = report.newly_registered(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "schema contract registered"
    );
    Ok(())
}

/// Every topic a role of `streamcart run` subscribes to or restores from.
fn system_topics(cfg: &Config) -> Vec<TopicSpec> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let spec = |name: String, class| TopicSpec::new(name, cfg.partitions, class);
    let mut specs = Vec::new();
    for ctx in Context::ALL {
        specs.push(spec(topics.commands(ctx), TopicClass::Commands));
        specs.push(spec(topics.events(ctx), TopicClass::Events));
        specs.push(spec(topics.snapshots(ctx), TopicClass::Snapshots));
    }
    specs.push(spec(topics.command_results(), TopicClass::Results));
    specs.push(spec(topics.order_summary(), TopicClass::Summaries));
    specs.push(spec(topics.product_summary(), TopicClass::Summaries));
    specs
}

/// Creates every topic of the system and waits until each partition has a leader, so that no
/// loop subscribes to a topic the broker does not serve yet: a consumer that finds its topic
/// missing may only notice it at a metadata refresh minutes later. Every Kafka role runs it, so
/// a role started alone on a fresh namespace is safe too.
pub async fn prepare_topics(cfg: &Config) -> anyhow::Result<()> {
    let specs = system_topics(cfg);
    ensure_topics(&cfg.kafka, &specs)
        .await
        .context("creating topics")?;
    let settings = cfg.kafka.clone();
    let expected: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    tokio::task::spawn_blocking(move || wait_for_leaders(&settings, &expected))
        .await
        .context("leader wait thread")?
}

/// Waits until every partition of every topic has a leader. Partition counts are not checked:
/// topics created earlier with another count are used as they are.
fn wait_for_leaders(
    settings: &streamcart_kafka_runtime::KafkaSettings,
    expected: &[String],
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<QuietEofContext> = settings
        .restore_consumer()
        .create_with_context(QuietEofContext)
        .context("metadata client")?;
    let deadline = Instant::now() + LEADER_WAIT;
    let mut waiting: Vec<&String> = expected.iter().collect();
    loop {
        let mut last_problem = String::new();
        waiting.retain(|topic| {
            match consumer.fetch_metadata(Some(topic.as_str()), Duration::from_secs(5)) {
                Ok(meta) => {
                    let served = meta.topics().iter().any(|t| {
                        t.name() == topic.as_str()
                            && t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0)
                    });
                    if !served {
                        last_problem = format!("{topic}: no leader for every partition yet");
                    }
                    !served
                }
                Err(e) => {
                    last_problem = format!("{topic}: {e}");
                    true
                }
            }
        });
        if waiting.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} topic(s) still without leaders after {} s; last: {last_problem}",
            waiting.len(),
            LEADER_WAIT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Consumer groups of every transactional loop under the configured prefix: a transactional id
/// `{group}-{instance}` with one of these groups is written by a streamcart loop.
fn transactional_groups(cfg: &Config) -> Vec<String> {
    use crate::process::loop_name;
    use streamcart_aggregates::{Order, Payment, Product, Stock};
    [
        loop_name::<Product>(),
        loop_name::<Stock>(),
        loop_name::<Order>(),
        loop_name::<Payment>(),
        crate::sagas::REACTIONS.to_owned(),
        crate::sagas::DEADLINES.to_owned(),
    ]
    .into_iter()
    .map(|name| format!("{}{name}", cfg.topic_prefix))
    .collect()
}

/// Starts the process's sweep for hanging transactions (a Kafka failure no loop can get past by
/// itself), unless it is turned off.
pub fn start_hanging_sweep(cfg: &Config) -> anyhow::Result<()> {
    if cfg.kafka.hanging_sweep_ms == 0 {
        return Ok(());
    }
    let owners = hanging::Owners {
        topic_prefix: cfg.topic_prefix.clone(),
        groups: transactional_groups(cfg),
    };
    hanging::spawn(
        cfg.kafka.clone(),
        owners,
        Duration::from_millis(cfg.kafka.hanging_sweep_ms),
    )
    .context("starting the hanging-transaction sweep")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamcart_kafka_runtime::admin::Retention;

    #[test]
    fn run_prepares_every_input_topic_once() {
        let cfg = Config {
            topic_prefix: "t.".into(),
            ..Config::default()
        };
        let specs = system_topics(&cfg);
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"t.payments.payment.events"));
        assert!(names.contains(&"t.catalog.product.snapshots"));
        assert!(names.contains(&"t.command.results"));
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "no topic twice");
        assert_eq!(total, 15);
        for s in &specs {
            let compacted = s.name.ends_with(".snapshots") || s.name.ends_with(".summary");
            assert_eq!(
                s.class.retention() == Retention::Compacted,
                compacted,
                "{}",
                s.name
            );
        }
    }
}
