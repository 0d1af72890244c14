//! `projection-lag`: time from a product event being produced (the record's create time, stamped
//! by the command processor's producer as it sends it) to the product row at that version being
//! readable in ScyllaDB and in Redis, at a steady event rate. The ceiling: Kafka's own end-to-end
//! latency tool (produce → consume, one record at a time), whose figure includes the same produce
//! leg; it is the floor any projection lag stands on. The time from the event becoming visible
//! to a `read_committed` reader is printed too, to split the lag into Kafka's part and ours.
//!
//! A probe that does not see its row within 60 s is counted and printed, never dropped; any
//! timed-out probe fails the benchmark.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use streamcart_aggregates::catalog::{ChangePrice, CreateProduct, ProductCommand, ProductEvent};
use streamcart_aggregates::values::Money;
use streamcart_projectors::{CacheOptions, CassandraStore, ProductCache};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::EventEnvelope;
use streamcart_schemas::topics::{Context, Topics};

use crate::harness::{self, env_num, env_or};

const SKUS: usize = 100;

/// When each (sku, version) became visible to a committed reader, and its record's create time
/// (ms since the epoch).
type Seen = Arc<Mutex<HashMap<(String, u64), (Instant, i64)>>>;

fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

async fn command(codec: &Codec, sku: &str, payload: ProductCommand) -> anyhow::Result<Vec<u8>> {
    Ok(harness::encode_command(codec, sku, payload).await?.1)
}

fn kafka_end_to_end(topic: &str, records: usize) -> anyhow::Result<(f64, f64, f64)> {
    let java = env_or("STREAMCART_JAVA17", "java");
    let cp = std::env::var("STREAMCART_KAFKA_TOOLS_CP")
        .context("STREAMCART_KAFKA_TOOLS_CP (from scripts/stack env)")?;
    let mut cmd = Command::new(java);
    cmd.args([
        "-Xmx256m",
        "-cp",
        &cp,
        "org.apache.kafka.tools.EndToEndLatency",
    ])
    .args([
        &harness::kafka_bootstrap(),
        topic,
        &records.to_string(),
        "all",
        "200",
    ]);
    let out = harness::run_tool(cmd, "kafka EndToEndLatency", harness::tool_limit(records))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Percentiles"))
        .with_context(|| format!("no percentiles in EndToEndLatency output: {text}"))?;
    // "Percentiles: 50th = 1, 99th = 3, 99.9th = 7"
    let value = |label: &str| -> Option<f64> {
        line.split(',')
            .find(|p| p.contains(label))?
            .split('=')
            .nth(1)?
            .trim()
            .parse()
            .ok()
    };
    // Percentiles come in whole milliseconds; the average has the resolution a ratio needs.
    let avg = text
        .lines()
        .find_map(|l| l.strip_prefix("Avg latency:"))
        .and_then(|v| v.trim().trim_end_matches("ms").trim().parse().ok())
        .unwrap_or(0.0);
    Ok((
        value("50th").unwrap_or(0.0),
        value(" 99th").unwrap_or(0.0),
        avg,
    ))
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    let rate: f64 = env_num("BENCH_LAG_RATE", 200.0);
    let seconds: u64 = env_num("BENCH_LATENCY_SECONDS", 15);
    let prefix = harness::prefix("lag");
    let keyspace = prefix.trim_end_matches('.').to_owned();
    let topics = Topics::with_prefix(prefix.clone());
    let ctx = Context::Catalog;
    harness::create_topics(&[
        topics.commands(ctx),
        topics.events(ctx),
        topics.snapshots(ctx),
        topics.command_results(),
    ])
    .await?;
    let codec = Codec::new(&harness::registry_url(), topics.clone())?;
    let nodes = streamcart_tests::cassandra_node();
    let redis = streamcart_tests::redis_url();
    let extra = [
        ("STREAMCART_KEYSPACE", keyspace.as_str()),
        ("STREAMCART_CASSANDRA_NODES", nodes.as_str()),
        ("STREAMCART_REDIS_URL", redis.as_str()),
    ];
    let _processor = harness::spawn_role(&["process", "product"], &prefix, &extra)?;
    let _projector = harness::spawn_role(&["project", "products"], &prefix, &extra)?;

    // When each (sku, version) became visible to committed readers.
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let topic = topics.events(ctx);
        let codec = Codec::new(&harness::registry_url(), topics.clone())?;
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", harness::kafka_bootstrap())
                .set("group.id", format!("{topic}-lag-watch"))
                .set("isolation.level", "read_committed")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "5")
                .create()?;
            c.subscribe(&[&topic])?;
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let now = Instant::now();
                let produced = m.timestamp().to_millis().unwrap_or(0);
                let e: EventEnvelope<ProductEvent> =
                    rt.block_on(codec.decode(m.payload().unwrap_or_default()))?;
                if let Ok(mut s) = seen.lock() {
                    s.insert((e.aggregate_id, e.version), (now, produced));
                }
            }
            Ok(())
        })
    };

    let producer = harness::producer()?;
    let commands = topics.commands(ctx);
    for i in 0..SKUS {
        let sku = format!("LAG-{i:03}");
        let create = CreateProduct {
            sku: sku.clone(),
            name: format!("Lag {i}"),
            category: "lag".into(),
            price: Money::new(100, "EUR")?,
        };
        harness::send(
            &producer,
            &commands,
            &sku,
            &command(&codec, &sku, ProductCommand::CreateProduct(create)).await?,
        )?;
    }
    producer.flush(Duration::from_secs(30))?;
    let store = CassandraStore::connect(&nodes, &keyspace).await?;
    let cache = ProductCache::connect(&redis, CacheOptions::for_topic_prefix(&prefix)).await?;
    let limit = Duration::from_secs(120);
    let mut watch = harness::Watch::new("products reaching the read model", limit, limit);
    loop {
        let last = store
            .product(&format!("LAG-{:03}", SKUS - 1))
            .await
            .ok()
            .flatten();
        match watch.check(usize::from(last.is_some()), 1) {
            Ok(true) => break,
            Ok(false) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(stalled) => return Err(harness::explain(stalled).await),
        }
    }

    // Steady price changes; every 10th is followed to ScyllaDB and Redis.
    let total = (rate * seconds as f64) as usize;
    let mut versions = vec![1u64; SKUS];
    let mut probes = tokio::task::JoinSet::new();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for i in 0..total {
        if let Some(wait) =
            (start + interval.mul_f64(i as f64)).checked_duration_since(Instant::now())
        {
            tokio::time::sleep(wait).await;
        }
        let n = i % SKUS;
        let sku = format!("LAG-{n:03}");
        // Never the price the SKU already has (created at 100, then 100 apart modulo 1,000),
        // so that every command is a change, hence an event and a new version.
        let price = Money::new(101 + (i as i64 % 1_000), "EUR")?;
        harness::send(
            &producer,
            &commands,
            &sku,
            &command(
                &codec,
                &sku,
                ProductCommand::ChangePrice(ChangePrice { price }),
            )
            .await?,
        )?;
        versions[n] += 1;
        if i % 10 == 0 {
            let (seen, store, cache, version) =
                (seen.clone(), store.clone(), cache.clone(), versions[n]);
            probes.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                let (committed, produced) = loop {
                    if let Some(t) = seen
                        .lock()
                        .ok()
                        .and_then(|s| s.get(&(sku.clone(), version)).copied())
                    {
                        break t;
                    }
                    if Instant::now() > deadline {
                        return Probe::TimedOut(format!("{sku} v{version}: event never visible"));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                };
                let since_produced = || wall_ms() - produced as f64;
                let (mut scylla, mut redis) = (None, None);
                while (scylla.is_none() || redis.is_none()) && Instant::now() < deadline {
                    if scylla.is_none()
                        && store
                            .product(&sku)
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.version >= version)
                    {
                        scylla = Some((since_produced(), committed.elapsed().as_secs_f64() * 1e3));
                    }
                    if redis.is_none()
                        && cache
                            .get(&sku)
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.version >= version)
                    {
                        redis = Some((since_produced(), committed.elapsed().as_secs_f64() * 1e3));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                match (scylla, redis) {
                    (Some(s), Some(r)) => Probe::Seen {
                        scylla: s,
                        redis: r,
                    },
                    (s, r) => Probe::TimedOut(format!(
                        "{sku} v{version}: ScyllaDB {}, Redis {}",
                        if s.is_some() { "seen" } else { "not seen" },
                        if r.is_some() { "seen" } else { "not seen" }
                    )),
                }
            });
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let (mut scylla, mut redis) = (Vec::new(), Vec::new());
    let (mut scylla_visible, mut redis_visible) = (Vec::new(), Vec::new());
    let mut timed_out = Vec::new();
    while let Some(r) = probes.join_next().await {
        match r {
            Ok(Probe::Seen {
                scylla: s,
                redis: r,
            }) => {
                scylla.push(s.0);
                scylla_visible.push(s.1);
                redis.push(r.0);
                redis_visible.push(r.1);
            }
            Ok(Probe::TimedOut(why)) => timed_out.push(why),
            Err(e) => timed_out.push(format!("probe failed: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    for xs in [
        &mut scylla,
        &mut redis,
        &mut scylla_visible,
        &mut redis_visible,
    ] {
        xs.sort_by(|a, b| a.total_cmp(b));
    }

    let topic = format!("{}e2e", harness::prefix("ceiling"));
    harness::create_topics(std::slice::from_ref(&topic)).await?;
    let (k50, k99, kavg) =
        tokio::task::spawn_blocking(move || kafka_end_to_end(&topic, 2_000)).await??;
    let mean = scylla.iter().sum::<f64>() / scylla.len().max(1) as f64;
    let p = |xs: &[f64], q| harness::percentile(xs, q);
    println!();
    println!(
        "projection-lag ({total} product events at {rate:.0}/s over {SKUS} products; {} followed, {} timed out)",
        scylla.len() + timed_out.len(),
        timed_out.len()
    );
    println!("| measure | p50 | p99 | mean |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| event produced → row visible in ScyllaDB | {:.1} ms | {:.1} ms | {mean:.1} ms |",
        p(&scylla, 50.0),
        p(&scylla, 99.0)
    );
    println!(
        "| event produced → entry visible in Redis | {:.1} ms | {:.1} ms | |",
        p(&redis, 50.0),
        p(&redis, 99.0)
    );
    println!(
        "| event visible to read_committed → row visible in ScyllaDB | {:.1} ms | {:.1} ms | |",
        p(&scylla_visible, 50.0),
        p(&scylla_visible, 99.0)
    );
    println!(
        "| event visible to read_committed → entry visible in Redis | {:.1} ms | {:.1} ms | |",
        p(&redis_visible, 50.0),
        p(&redis_visible, 99.0)
    );
    println!(
        "| ceiling: kafka EndToEndLatency, produce → consume, acks=all | {k50:.0} ms | {k99:.0} ms | {kavg:.2} ms |"
    );
    println!("projection lag mean: {mean:.2} ms");
    println!("ceiling mean: {kavg:.2} ms");
    println!("ratio: {:.3}", kavg / mean.max(1e-9));
    if !timed_out.is_empty() {
        anyhow::bail!(
            "{} of {} probes timed out (60 s), e.g. {}",
            timed_out.len(),
            scylla.len() + timed_out.len(),
            timed_out[..timed_out.len().min(3)].join("; ")
        );
    }
    Ok(())
}

/// What one followed event showed: (ms since produced, ms since visible) to each store.
enum Probe {
    Seen {
        scylla: (f64, f64),
        redis: (f64, f64),
    },
    TimedOut(String),
}
