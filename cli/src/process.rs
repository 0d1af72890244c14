//! `streamcart process <aggregate>`: one command processor until SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use streamcart_aggregates::orders::Order;
use streamcart_aggregates::payments::{Payment, PaymentPolicy};
use streamcart_aggregates::{Product, Stock};
use streamcart_kafka_runtime::admin::{Retention, TopicSpec, ensure_topics};
use streamcart_kafka_runtime::{shutdown, transactional};
use streamcart_processors::bindings::Bound;
use streamcart_processors::command::kafka::{CommandHandler, ProcessorTuning};
use streamcart_processors::command::table::SnapshotPolicy;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandPayload, EventPayload, SnapshotState};
use streamcart_schemas::topics::Topics;

use crate::AggregateKind;
use crate::config::Config;

/// Runs the processor of `kind` until SIGTERM / SIGINT.
pub async fn run(cfg: Config, kind: AggregateKind) -> anyhow::Result<()> {
    match kind {
        AggregateKind::Product => run_for::<Product>(cfg, Arc::new(())).await,
        AggregateKind::Stock => run_for::<Stock>(cfg, Arc::new(())).await,
        AggregateKind::Payment => {
            let mut policy = PaymentPolicy::approve_all();
            policy.decline_above_minor = cfg.payments.decline_above_minor;
            policy.declined_card_tokens =
                cfg.payments.declined_card_tokens.iter().cloned().collect();
            run_for::<Payment>(cfg, Arc::new(policy)).await
        }
        AggregateKind::Order => {
            let _ = std::marker::PhantomData::<Order>;
            anyhow::bail!(
                "the order processor needs the orders context's local catalog copy, which is not built yet"
            )
        }
    }
}

/// Topics one aggregate's processor reads and writes, created if missing.
pub fn topic_specs(
    topics: &Topics,
    ctx: streamcart_schemas::topics::Context,
    partitions: i32,
    dlq: &str,
) -> Vec<TopicSpec> {
    let forever = |name: String| TopicSpec {
        name,
        partitions,
        retention: Retention::Forever,
    };
    vec![
        forever(topics.commands(ctx)),
        forever(topics.events(ctx)),
        TopicSpec {
            name: topics.snapshots(ctx),
            partitions,
            retention: Retention::Compacted,
        },
        forever(topics.command_results()),
        forever(dlq.to_owned()),
    ]
}

async fn run_for<A>(cfg: Config, ctx: Arc<A::Context>) -> anyhow::Result<()>
where
    A: Bound,
    A::Command: CommandPayload + Send,
    A::Event: EventPayload + Send,
    A::State: SnapshotState + Send,
    A::Context: Send + Sync,
{
    let shutdown = shutdown::on_signals();
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let name = format!("{}.{}.processor", A::CONTEXT.name(), A::NAME);
    let group = format!("{}{}", cfg.topic_prefix, name);
    let spec = transactional::LoopSpec {
        name: name.clone(),
        input_topics: vec![topics.commands(A::CONTEXT)],
        group_id: group.clone(),
        transactional_id: format!("{group}-{}", cfg.instance_id),
        dlq_topic: topics.dlq(&name),
    };
    ensure_topics(
        &cfg.kafka,
        &topic_specs(&topics, A::CONTEXT, cfg.partitions, &spec.dlq_topic),
    )
    .await
    .context("creating topics")?;
    let codec = Arc::new(Codec::new(&cfg.registry_url, topics.clone()).context("registry client")?);
    let tuning = ProcessorTuning {
        snapshots: SnapshotPolicy {
            every_events: cfg.processor.snapshot_every_events,
            recent_commands: cfg.processor.recent_commands,
        },
        checkpoint_every_events: cfg.processor.checkpoint_every_events,
        ..ProcessorTuning::default()
    };
    let rt = tokio::runtime::Handle::current();
    let settings = cfg.kafka.clone();
    tracing::info!(processor = %name, transactional_id = %spec.transactional_id, "starting");
    let stats = tokio::task::spawn_blocking(move || {
        let mut handler =
            CommandHandler::<A>::new(settings.clone(), topics, codec, rt, ctx, tuning);
        transactional::run(&settings, &spec, &mut handler, &shutdown)
    })
    .await
    .context("processor thread")??;
    tracing::info!(processor = %name, ?stats, "stopped");
    Ok(())
}
