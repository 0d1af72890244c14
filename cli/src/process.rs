//! `streamcart process <aggregate>`: one command processor until SIGTERM.

use std::sync::Arc;

use anyhow::Context as _;
use streamcart_aggregates::orders::Order;
use streamcart_aggregates::orders::PriceBook;
use streamcart_aggregates::payments::{Payment, PaymentPolicy};
use streamcart_aggregates::{Product, Stock};
use streamcart_kafka_runtime::admin::{TopicClass, TopicSpec, ensure_topics};
use streamcart_kafka_runtime::transactional;
use streamcart_processors::bindings::Bound;
use streamcart_processors::command::catalog_copy::{SharedCatalog, follow_catalog};
use streamcart_processors::command::kafka::CommandHandler;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandPayload, EventPayload, SnapshotState};
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::AggregateKind;
use crate::config::{Config, ReactionsPlacement};

/// Runs the processor of `kind` until SIGTERM / SIGINT.
pub async fn run(
    cfg: Config,
    kind: AggregateKind,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match kind {
        AggregateKind::Product => run_for::<Product, _>(cfg, shutdown, |_| Ok(Arc::new(()))).await,
        AggregateKind::Stock => run_for::<Stock, _>(cfg, shutdown, |_| Ok(Arc::new(()))).await,
        AggregateKind::Payment => {
            let mut policy = PaymentPolicy::approve_all();
            policy.decline_above_minor = cfg.payments.decline_above_minor;
            policy.declined_card_tokens =
                cfg.payments.declined_card_tokens.iter().cloned().collect();
            run_for::<Payment, _>(cfg, shutdown, move |_| Ok(Arc::new(policy))).await
        }
        AggregateKind::Order => {
            // Orders are priced from the orders context's own copy of the catalog, kept up to
            // date from catalog events and caught up before the first command is handled.
            run_for::<Order, _>(cfg, shutdown, |env| {
                let catalog = SharedCatalog::default();
                follow_catalog(
                    &env.settings,
                    &env.topics,
                    env.codec.clone(),
                    env.rt.clone(),
                    catalog.clone(),
                    env.shutdown.clone(),
                )?;
                let book: Arc<dyn PriceBook> = Arc::new(catalog);
                Ok(book)
            })
            .await
        }
    }
}

/// What a decide-context factory may use to build its context.
pub struct ContextEnv {
    /// Kafka settings.
    pub settings: streamcart_kafka_runtime::KafkaSettings,
    /// Topic names.
    pub topics: Topics,
    /// Registry codec.
    pub codec: Arc<Codec>,
    /// Async runtime for codec calls.
    pub rt: tokio::runtime::Handle,
    /// Fired on SIGTERM.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Topics one aggregate's processor reads and writes, created if missing.
pub fn topic_specs(
    topics: &Topics,
    ctx: streamcart_schemas::topics::Context,
    partitions: i32,
    dlq: &str,
) -> Vec<TopicSpec> {
    vec![
        TopicSpec::new(topics.commands(ctx), partitions, TopicClass::Commands),
        TopicSpec::new(topics.events(ctx), partitions, TopicClass::Events),
        TopicSpec::new(topics.snapshots(ctx), partitions, TopicClass::Snapshots),
        TopicSpec::new(topics.command_results(), partitions, TopicClass::Results),
        TopicSpec::new(dlq, partitions, TopicClass::DeadLetters),
    ]
}

/// The name of the command processor loop of `A` (its consumer group after the prefix).
pub fn loop_name<A: Bound>() -> String
where
    A::Command: CommandPayload + Send,
    A::Event: EventPayload + Send,
    A::State: SnapshotState + Send,
{
    format!("{}.{}.processor", A::CONTEXT.name(), A::NAME)
}

async fn run_for<A, F>(cfg: Config, shutdown: CancellationToken, make_ctx: F) -> anyhow::Result<()>
where
    A: Bound,
    A::Command: CommandPayload + Send,
    A::Event: EventPayload + Send,
    A::State: SnapshotState + Send,
    F: FnOnce(&ContextEnv) -> Result<Arc<A::Context>, streamcart_kafka_runtime::RuntimeError>
        + Send
        + 'static,
{
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let name = loop_name::<A>();
    let group = format!("{}{}", cfg.topic_prefix, name);
    let spec = transactional::LoopSpec {
        name: name.clone(),
        input_topics: vec![topics.commands(A::CONTEXT)],
        group_id: group.clone(),
        transactional_id: format!("{group}-{}", cfg.instance_id),
        dlq_topic: topics.dlq(&name),
    };
    let mut specs = topic_specs(&topics, A::CONTEXT, cfg.partitions, &spec.dlq_topic);
    if A::CONTEXT == Context::Orders {
        // The order processor reads the catalog events for its local price copy.
        specs.push(TopicSpec::new(
            topics.events(Context::Catalog),
            cfg.partitions,
            TopicClass::Events,
        ));
    }
    if cfg.saga.reactions == ReactionsPlacement::Inline {
        // The reactions write the other contexts' commands.
        for ctx in [Context::Inventory, Context::Orders, Context::Payments] {
            let name = topics.commands(ctx);
            if !specs.iter().any(|s| s.name == name) {
                specs.push(TopicSpec::new(name, cfg.partitions, TopicClass::Commands));
            }
        }
    }
    ensure_topics(&cfg.kafka, &specs)
        .await
        .context("creating topics")?;
    let codec = Arc::new(
        Codec::new(&cfg.registry_url, topics.clone())
            .context("registry client")?
            .with_auto_register(cfg.auto_register_schemas),
    );
    let tuning = cfg.processor.tuning(&cfg.saga);
    let rt = tokio::runtime::Handle::current();
    let settings = cfg.kafka.clone();
    tracing::info!(processor = %name, transactional_id = %spec.transactional_id, "starting");
    let stats = tokio::task::spawn_blocking(move || {
        let env = ContextEnv {
            settings: settings.clone(),
            topics: topics.clone(),
            codec: codec.clone(),
            rt: rt.clone(),
            shutdown: shutdown.clone(),
        };
        let ctx = make_ctx(&env)?;
        let mut handler =
            CommandHandler::<A>::new(settings.clone(), topics, codec, rt, ctx, tuning);
        // Ownership of commands needs the partition count, and co-partitioned topics.
        handler.check_topics()?;
        transactional::run(&settings, &spec, &mut handler, &shutdown)
    })
    .await
    .context("processor thread")??;
    tracing::info!(processor = %name, ?stats, "stopped");
    Ok(())
}
