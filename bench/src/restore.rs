//! `restore`: how long the stock processor takes to come back with 1,000,000 aggregates
//! (`BENCH_RESTORE_AGGREGATES`) behind it, and how much memory they take.
//!
//! The processor itself writes the data: one `ReceiveStock` per aggregate, handled, snapshotted
//! and checkpointed as in production. It is then stopped and started again; the figure is the
//! time from that start to the commit of one more command, which needs the group joined and every
//! partition restored (its snapshots, then the events after its latest checkpoint). The ceiling is
//! a plain read_committed consumer reading the same records (every snapshot, and the events after
//! each partition's checkpoint) without decoding them. The processor's resident memory is read
//! from `/proc` once it serves again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamcart_aggregates::inventory::StockState;
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_kafka_runtime::restore::Restorer;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::Snapshot;
use streamcart_schemas::topics::{Context, Topics};

use crate::harness::{self, PARTITIONS, Watch, env_num};

/// The processor's consumer group, as `streamcart process stock` names it.
const GROUP: &str = "inventory.stock.processor";

/// The one command per aggregate of the load: `ReceiveStock` for aggregate `i`.
async fn command(codec: &Codec, i: usize) -> anyhow::Result<(String, Vec<u8>)> {
    let sku = format!("RST-{i:07}");
    let (_, value) = harness::receive_stock(codec, &sku, 5).await?;
    Ok((sku, value))
}

/// A client of the processor's group, only asked for the offsets the group committed.
fn group_reader(group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", harness::kafka_bootstrap())
        .set("enable.auto.commit", "false")
        .set("group.id", group)
        .create()?)
}

/// Offsets the processor's group has committed on the commands topic, summed: the number of
/// commands it has handled (the topic holds no transaction markers).
fn handled(c: &BaseConsumer, topic: &str) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(5))
        .map(|t| {
            t.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until the group has handled `target` commands; the elapsed time.
async fn wait_handled(
    c: &BaseConsumer,
    topic: &str,
    target: i64,
    what: &str,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut watch = Watch::new(what, Duration::from_secs(900), Duration::from_secs(180));
    loop {
        let done = handled(c, topic);
        match watch.check(done.max(0) as usize, target as usize) {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(stalled) => return Err(harness::explain(stalled).await),
        }
        let gone = harness::exited_roles();
        anyhow::ensure!(gone.is_empty(), "{what}: {}", gone.join("; "));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads every partition of `topic` from `from` (partition → first offset; 0 when absent) to
/// its end, as a restore does, calling `each` for every record; the records read.
fn read_to_end(
    restorer: &Restorer,
    topic: &str,
    from: &HashMap<i32, i64>,
    mut each: impl FnMut(i32, &[u8]) -> Result<(), String>,
) -> anyhow::Result<u64> {
    // Every partition in one read, as the processor restores an assignment.
    let starts: Vec<(i32, i64)> = (0..PARTITIONS)
        .map(|p| (p, from.get(&p).copied().unwrap_or(0)))
        .collect();
    Ok(
        restorer.read_partitions(topic, &starts, Duration::from_secs(600), |m| {
            each(m.partition(), m.payload().unwrap_or_default())
        })?,
    )
}

fn resident_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb / 1024.0)
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    let n: usize = env_num("BENCH_RESTORE_AGGREGATES", 1_000_000).max(1);
    let prefix = harness::prefix("restore");
    let topics = Topics::with_prefix(prefix.clone());
    let ctx = Context::Inventory;
    let (commands, events, snapshots) = (
        topics.commands(ctx),
        topics.events(ctx),
        topics.snapshots(ctx),
    );
    harness::create_topics(&[
        commands.clone(),
        events.clone(),
        snapshots.clone(),
        topics.command_results(),
        topics.dlq(GROUP),
    ])
    .await?;
    let codec = Codec::new(&harness::registry_url(), topics.clone())?;

    // The load: one command per aggregate, all in the topic before the processor starts.
    let producer = harness::producer()?;
    for i in 0..n {
        let (key, value) = command(&codec, i).await?;
        harness::send(&producer, &commands, &key, &value)?;
    }
    producer.flush(Duration::from_secs(300))?;
    let group = group_reader(&format!("{prefix}{GROUP}"))?;
    let first_pass = {
        let _role = harness::spawn_role(&["process", "stock"], &prefix, &[])?;
        wait_handled(
            &group,
            &commands,
            n as i64,
            "the processor handling the load",
        )
        .await?
    };
    eprintln!(
        "load: {n} aggregates handled in {:.1} s",
        first_pass.as_secs_f64()
    );

    // The restart: from start to one more command committed, which needs every partition restored.
    let started = Instant::now();
    let role = harness::spawn_role(&["process", "stock"], &prefix, &[])?;
    let (key, value) = command(&codec, 0).await?;
    harness::send(&producer, &commands, &key, &value)?;
    producer.flush(Duration::from_secs(30))?;
    wait_handled(
        &group,
        &commands,
        n as i64 + 1,
        "the restarted processor handling one more command",
    )
    .await?;
    let restore = started.elapsed();
    let rss = resident_mb(role.pid())?;
    drop(role);

    // Where each partition's restore starts reading events: after its latest checkpoint (a
    // snapshot with no aggregate id), found by decoding the snapshots, untimed.
    let plain = Restorer::new(&KafkaSettings {
        bootstrap_servers: harness::kafka_bootstrap(),
        ..KafkaSettings::default()
    })?;
    let mut checkpoints: HashMap<i32, i64> = HashMap::new();
    let mut decode_failures = 0u64;
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        read_to_end(&plain, &snapshots, &HashMap::new(), |p, bytes| {
            let decoded: Result<Snapshot<StockState>, _> = rt.block_on(codec.decode(bytes));
            match decoded {
                Ok(s) if s.aggregate_id.is_empty() => {
                    if let Some(o) = s.event_offset {
                        checkpoints.insert(p, o + 1);
                    }
                }
                Ok(_) => {}
                Err(_) => decode_failures += 1,
            }
            Ok(())
        })
    })?;
    anyhow::ensure!(
        decode_failures == 0,
        "{decode_failures} snapshots did not decode"
    );

    // The ceiling: the same records read by a plain consumer, not decoded.
    let t0 = Instant::now();
    let mut bytes = 0usize;
    let snapshot_records = read_to_end(&plain, &snapshots, &HashMap::new(), |_, b| {
        bytes += b.len();
        Ok(())
    })?;
    let event_records = read_to_end(&plain, &events, &checkpoints, |_, b| {
        bytes += b.len();
        Ok(())
    })?;
    let ceiling = t0.elapsed();

    println!();
    println!(
        "restore (stock processor, {n} aggregates, {PARTITIONS} partitions: {snapshot_records} \
         snapshot records and {event_records} events after the checkpoints, {:.0} MB)",
        bytes as f64 / 1e6
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| processor: start → every partition restored and one more command committed | {:.2} s |",
        restore.as_secs_f64()
    );
    println!(
        "| processor resident memory after restore | {rss:.0} MB ({:.0} MB per million aggregates) |",
        rss * 1e6 / n as f64
    );
    println!(
        "| ceiling: plain read_committed consumer, same records, not decoded | {:.2} s |",
        ceiling.as_secs_f64()
    );
    println!(
        "| load: {n} commands handled from a full topic | {:.1} s |",
        first_pass.as_secs_f64()
    );
    println!("restore: {:.2} s", restore.as_secs_f64());
    println!("ceiling: {:.2} s", ceiling.as_secs_f64());
    // A ratio over 1 here: the restore takes that many times the plain read.
    println!(
        "ratio: {:.3}",
        restore.as_secs_f64() / ceiling.as_secs_f64().max(1e-9)
    );
    Ok(())
}
