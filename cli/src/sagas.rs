//! `streamcart sagas`: the saga reactions and the order deadline timer, until SIGTERM. With
//! `saga.reactions = "inline"` the command processors run the reactions, and only the deadline
//! timer runs here.

use std::sync::Arc;

use anyhow::Context as _;
use streamcart_kafka_runtime::admin::{TopicClass, TopicSpec, ensure_topics};
use streamcart_kafka_runtime::transactional;
use streamcart_processors::saga::kafka::{DeadlinesHandler, ReactionsHandler};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ReactionsPlacement};

/// Name (and, after the prefix, consumer group) of the saga's reaction loop.
pub const REACTIONS: &str = "orders.saga.reactions";
/// Name (and, after the prefix, consumer group) of the saga's deadline loop.
pub const DEADLINES: &str = "orders.saga.deadlines";

/// Runs the saga loops until SIGTERM / SIGINT; an error in either stops the process.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let spec = |name: String, class| TopicSpec::new(name, cfg.partitions, class);
    let mut specs: Vec<TopicSpec> = Vec::new();
    for ctx in [Context::Inventory, Context::Orders, Context::Payments] {
        specs.push(spec(topics.commands(ctx), TopicClass::Commands));
        specs.push(spec(topics.events(ctx), TopicClass::Events));
    }
    let reactions_name = REACTIONS;
    let deadlines_name = DEADLINES;
    specs.push(spec(topics.dlq(reactions_name), TopicClass::DeadLetters));
    specs.push(spec(topics.dlq(deadlines_name), TopicClass::DeadLetters));
    ensure_topics(&cfg.kafka, &specs)
        .await
        .context("creating topics")?;
    let codec = Arc::new(
        Codec::new(&cfg.registry_url, topics.clone())
            .context("registry client")?
            .with_auto_register(cfg.auto_register_schemas),
    );
    let rt = tokio::runtime::Handle::current();

    let spec_for = |name: &str, inputs: Vec<String>| {
        let group = format!("{}{}", cfg.topic_prefix, name);
        transactional::LoopSpec {
            name: name.to_owned(),
            input_topics: inputs,
            transactional_id: format!("{group}-{}", cfg.instance_id),
            group_id: group,
            dlq_topic: topics.dlq(name),
        }
    };
    let reactions_spec = spec_for(reactions_name, ReactionsHandler::input_topics(&topics));
    let deadlines_spec = spec_for(deadlines_name, vec![topics.events(Context::Orders)]);

    let (settings, t, c, r, s) = (
        cfg.kafka.clone(),
        topics.clone(),
        codec.clone(),
        rt.clone(),
        shutdown.clone(),
    );
    let inline = cfg.saga.reactions == ReactionsPlacement::Inline;
    if inline {
        tracing::info!("saga reactions run in the command processors (saga.reactions = inline)");
    }
    let reactions = tokio::task::spawn_blocking(move || {
        if inline {
            return Ok(Default::default());
        }
        let mut h = ReactionsHandler::new(t, c, r);
        let out = transactional::run(&settings, &reactions_spec, &mut h, &s);
        // One loop failing takes the other down: the process is restarted as a whole.
        s.cancel();
        out
    });
    let (settings, s) = (cfg.kafka.clone(), shutdown.clone());
    let deadlines = tokio::task::spawn_blocking(move || {
        let mut h = DeadlinesHandler::new(settings.clone(), topics, codec, rt);
        let out = transactional::run(&settings, &deadlines_spec, &mut h, &s);
        s.cancel();
        out
    });
    let (a, b) = tokio::join!(reactions, deadlines);
    let a = a.context("reactions thread")?.context("saga reactions")?;
    let b = b.context("deadlines thread")?.context("order deadlines")?;
    tracing::info!(reactions = ?a, deadlines = ?b, "sagas stopped");
    Ok(())
}
