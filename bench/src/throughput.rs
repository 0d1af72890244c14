//! `command-throughput`: sustained commands/s through one command processor (stock), against
//! Kafka's own transactional producer writing the same number of records of the same size; then
//! the latency from command produced to result visible, at half the measured peak.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::topics::{Context, Topics};

use crate::harness::{self, Watch, env_num};

struct Prepared {
    prefix: String,
    topics: Topics,
    records: Vec<(String, String, Vec<u8>)>,
}

async fn prepare(n: usize) -> anyhow::Result<Prepared> {
    let prefix = harness::prefix("cmd");
    let topics = Topics::with_prefix(prefix.clone());
    let ctx = Context::Inventory;
    harness::create_topics(&[
        topics.commands(ctx),
        topics.events(ctx),
        topics.snapshots(ctx),
        topics.command_results(),
        topics.dlq("inventory.stock.processor"),
    ])
    .await?;
    let codec = Codec::new(&harness::registry_url(), topics.clone())?;
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        let sku = format!("SKU-{:05}", i % 1_000);
        let (id, value) = harness::receive_stock(&codec, &sku, 1 + (i % 9) as u32).await?;
        records.push((id.to_string(), sku, value));
    }
    Ok(Prepared {
        prefix,
        topics,
        records,
    })
}

fn results_consumer(topics: &Topics) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", harness::kafka_bootstrap())
        .set("group.id", format!("{}bench-reader", topics.prefix()))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    c.subscribe(&[&topics.command_results()])?;
    Ok(c)
}

/// One round: commands already in the topic, then the processor starts; rate from first to last result.
async fn peak_round(n: usize) -> anyhow::Result<(f64, usize)> {
    let prepared = prepare(n).await?;
    let size = prepared.records.iter().map(|r| r.2.len()).sum::<usize>() / n.max(1);
    let producer = harness::producer()?;
    let topic = prepared.topics.commands(Context::Inventory);
    for (_, key, value) in &prepared.records {
        harness::send(&producer, &topic, key, value)?;
    }
    producer.flush(Duration::from_secs(60))?;
    let consumer = results_consumer(&prepared.topics)?;
    let _role = harness::spawn_role(&["process", "stock"], &prepared.prefix, &[])?;
    let mut watch = Watch::new(
        "peak round: command results",
        Duration::from_secs(600),
        Duration::from_secs(120),
    );
    let mut seen = 0usize;
    let mut first = None;
    let mut last = Instant::now();
    loop {
        match watch.check(seen, n) {
            Ok(true) => break,
            Ok(false) => {}
            Err(stalled) => return Err(harness::explain(stalled).await),
        }
        // Consumer errors are transient (the client reconnects); a lasting one stalls the count.
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            seen += 1;
            last = Instant::now();
            first.get_or_insert(last);
        }
    }
    let elapsed = last
        .duration_since(first.unwrap_or(last))
        .as_secs_f64()
        .max(1e-6);
    Ok(((n - 1) as f64 / elapsed, size))
}

/// Commands at a steady rate while the processor runs; latency from send to result visible.
async fn latency_at(rate: f64, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let n = (rate * seconds as f64) as usize;
    let prepared = prepare(n).await?;
    let consumer = results_consumer(&prepared.topics)?;
    let _role = harness::spawn_role(&["process", "stock"], &prepared.prefix, &[])?;
    // Let the processor join its group and restore before the clock starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sent: Arc<Mutex<HashMap<String, Instant>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(n)));
    let topic = prepared.topics.commands(Context::Inventory);
    let records = prepared.records;
    let sent_w = sent.clone();
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let producer = harness::producer()?;
        let start = Instant::now();
        let interval = Duration::from_secs_f64(1.0 / rate);
        for (i, (id, key, value)) in records.iter().enumerate() {
            let due = start + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if let Ok(mut s) = sent_w.lock() {
                s.insert(id.clone(), Instant::now());
            }
            harness::send(&producer, &topic, key, value)?;
        }
        producer.flush(Duration::from_secs(60))?;
        Ok(())
    });
    let mut latencies = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    while latencies.len() < n && Instant::now() < deadline {
        let roles_gone = harness::exited_roles();
        if !roles_gone.is_empty() {
            anyhow::bail!(
                "latency phase: {} of {n} results; {}",
                latencies.len(),
                roles_gone.join("; ")
            );
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let now = Instant::now();
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            if let Some(t) = sent.lock().ok().and_then(|s| s.get(&key).copied()) {
                latencies.push(now.duration_since(t).as_secs_f64() * 1e3);
            }
        }
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(latencies)
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    // Large enough that both sides run at steady state, past the JVM tool's warm-up.
    let n: usize = env_num("BENCH_COMMANDS", 200_000);
    let rounds: usize = env_num("BENCH_ROUNDS", 3);
    let mut peaks = Vec::new();
    let mut size = 0;
    for r in 0..rounds {
        let (rate, s) = peak_round(n)
            .await
            .with_context(|| format!("processor round {r}"))?;
        println!("processor round {r}: {rate:.0} commands/s");
        peaks.push(rate);
        size = s;
    }
    let mut ceilings = Vec::new();
    for r in 0..rounds {
        let topic = format!("{}perf", harness::prefix("ceiling"));
        harness::create_topics(std::slice::from_ref(&topic)).await?;
        let rate =
            tokio::task::spawn_blocking(move || harness::kafka_producer_perf(&topic, n, size))
                .await??;
        println!("ceiling round {r}: {rate:.0} records/s");
        ceilings.push(rate);
    }
    let peak = harness::median(peaks);
    let ceiling = harness::median(ceilings);
    // Half the peak by default; a fixed rate makes latencies comparable across builds whose
    // peaks differ.
    let half = env_num("BENCH_LATENCY_RATE", (peak / 2.0).max(1.0));
    let seconds: u64 = env_num("BENCH_LATENCY_SECONDS", 15);
    let lat = latency_at(half, seconds).await.context("latency phase")?;
    println!();
    println!(
        "command-throughput ({n} commands over 1000 aggregates, {size}-byte records, {rounds} rounds, medians)"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| processor, sustained | {peak:.0} commands/s |");
    println!(
        "| ceiling: kafka ProducerPerformance, transactional, same count and size | {ceiling:.0} records/s |"
    );
    println!(
        "| latency produced → result visible at {half:.0} commands/s ({} samples) | p50 {:.1} ms, p99 {:.1} ms |",
        lat.len(),
        harness::percentile(&lat, 50.0),
        harness::percentile(&lat, 99.0)
    );
    println!("processor: {peak:.0} commands/s");
    println!("ceiling: {ceiling:.0} records/s");
    println!("ratio: {:.3}", peak / ceiling.max(1e-9));
    Ok(())
}
