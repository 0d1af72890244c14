//! `saga`: orders completed per second end to end (every processor and the saga running), then
//! where an order's time goes at several steady offered loads: per hop between the records of
//! a confirmed order, as a `read_committed` reader in this process sees them (see [`hops`]).
//!
//! The ceiling: one confirmed single-line order moves 19 records through Kafka transactions
//! (6 commands, 7 events, 6 results); Kafka's own transactional producer writing records of the
//! same size gives the orders/s that pure record movement would allow.
//!
//! `BENCH_SAGA_REACTIONS=inline` runs the saga's reactions inside the command processors
//! (`saga.reactions = "inline"`): the hops marked "saga" then share the transaction of the
//! event they react to.
//!
//! [`hops`]: crate::hops

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use streamcart_aggregates::inventory::{StockCommand, StockEvent};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, PlaceOrder};
use streamcart_aggregates::payments::{PaymentCommand, PaymentEvent};
use streamcart_aggregates::values::CustomerId;
use streamcart_schemas::DecodeError;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandPayload, EventEnvelope};
use streamcart_schemas::topics::{Context, Topics};
use streamcart_tests::commands;

use crate::harness::{self, Watch, env_num, env_or};
use crate::hops::{self, END_TO_END, HOPS, Journeys, Stage, Summary};
use crate::report::{self, HopResult, LoadResult};

/// Records one confirmed single-line order moves through Kafka.
const RECORDS_PER_ORDER: f64 = 19.0;
const SKUS: usize = 20;
/// A phase whose confirmed count does not move for this long has stalled.
const STALL_AFTER: Duration = Duration::from_secs(120);
/// Offered loads when `BENCH_SAGA_RATES` is unset.
const DEFAULT_LOADS: &str = "100,500,half";

/// A steady offered load: a fixed rate, or half the peak the capacity phase measured.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    PerSecond(f64),
    HalfPeak,
}

impl Load {
    fn rate(self, capacity: f64) -> f64 {
        match self {
            Load::PerSecond(r) => r,
            Load::HalfPeak => (capacity / 2.0).max(1.0),
        }
    }

    fn requested(self) -> String {
        match self {
            Load::PerSecond(r) => format!("{r}"),
            Load::HalfPeak => "half".to_owned(),
        }
    }
}

/// Parses `BENCH_SAGA_RATES`: comma-separated orders/s, or `half` for half the measured peak.
fn parse_loads(spec: &str) -> anyhow::Result<Vec<Load>> {
    let loads = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "half" => Ok(Load::HalfPeak),
            _ => s
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(Load::PerSecond)
                .with_context(|| {
                    format!("BENCH_SAGA_RATES: {s:?} is neither a positive rate nor `half`")
                }),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!loads.is_empty(), "BENCH_SAGA_RATES names no load");
    Ok(loads)
}

/// The topics whose records mark an order's stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    OrderCommands,
    OrderEvents,
    StockCommands,
    StockEvents,
    PaymentCommands,
    PaymentEvents,
}

impl Feed {
    const ALL: [Feed; 6] = [
        Feed::OrderCommands,
        Feed::OrderEvents,
        Feed::StockCommands,
        Feed::StockEvents,
        Feed::PaymentCommands,
        Feed::PaymentEvents,
    ];

    fn topic(self, topics: &Topics) -> String {
        match self {
            Feed::OrderCommands => topics.commands(Context::Orders),
            Feed::OrderEvents => topics.events(Context::Orders),
            Feed::StockCommands => topics.commands(Context::Inventory),
            Feed::StockEvents => topics.events(Context::Inventory),
            Feed::PaymentCommands => topics.commands(Context::Payments),
            Feed::PaymentEvents => topics.events(Context::Payments),
        }
    }
}

/// What the reader threads share with the run.
#[derive(Default)]
struct Seen {
    journeys: Journeys,
    /// Bytes and count of order events: the ceiling writes records of their average size.
    event_bytes: usize,
    events: usize,
    /// Why a reader stopped early, if one did.
    failed: Option<String>,
}

/// A record as received: its feed, when it arrived, and its value.
type Arrival = (Feed, Instant, Vec<u8>);

async fn encode<C: CommandPayload>(
    codec: &Codec,
    aggregate_id: &str,
    payload: C,
) -> anyhow::Result<Vec<u8>> {
    Ok(harness::encode_command(codec, aggregate_id, payload)
        .await?
        .1)
}

async fn place(
    codec: &Codec,
    customer: &CustomerId,
    n: usize,
) -> anyhow::Result<(String, Vec<u8>)> {
    let sku = format!("SKU-{}", n % SKUS);
    let place = PlaceOrder {
        deadline_at: harness::now_ms() + 3_600_000,
        ..streamcart_tests::commands::place_order(customer, &[(&sku, 1)], "card-ok")
    };
    let order_id = place.order_id.as_str().to_owned();
    let bytes = encode(codec, &order_id, OrderCommand::PlaceOrder(place)).await?;
    Ok((order_id, bytes))
}

async fn orders(
    codec: &Codec,
    customers: &[CustomerId],
    count: usize,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(place(codec, &customers[i % customers.len()], i).await?);
    }
    Ok(out)
}

fn confirmed(seen: &Mutex<Seen>) -> usize {
    seen.lock()
        .map(|s| s.journeys.reached(Stage::OrderConfirmed))
        .unwrap_or(0)
}

fn reader_failure(seen: &Mutex<Seen>) -> Option<String> {
    seen.lock().ok().and_then(|s| s.failed.clone())
}

/// Waits until `target` orders are confirmed; fails naming what stalled when the count stops
/// moving for `stall_after`, `limit` passes, a role exits or a reader fails. A stall also says
/// where the phase's unconfirmed `ids` last showed up, which names the role holding them.
async fn wait_confirmed(
    seen: &Mutex<Seen>,
    what: &str,
    target: usize,
    ids: &[String],
    limit: Duration,
    stall_after: Duration,
) -> anyhow::Result<()> {
    let mut watch = Watch::new(what, limit, stall_after);
    loop {
        if let Some(e) = reader_failure(seen) {
            anyhow::bail!("{what}: the reader of the saga's topics failed: {e}");
        }
        match watch.check(confirmed(seen), target) {
            Ok(true) => return Ok(()),
            Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(mut stalled) => {
                if let Ok(s) = seen.lock() {
                    let short = s.journeys.short_of(ids, Stage::OrderConfirmed);
                    stalled.0 += &format!(
                        "; this phase's orders not confirmed: {}",
                        hops::describe_short(&short)
                    );
                }
                return Err(harness::explain(stalled).await);
            }
        }
    }
}

/// Sends `batch` at `rate` orders/s, each at its due time from the first.
async fn offer(
    producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    batch: &[(String, Vec<u8>)],
    rate: f64,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for (i, (id, b)) in batch.iter().enumerate() {
        if let Some(wait) =
            (start + interval.mul_f64(i as f64)).checked_duration_since(Instant::now())
        {
            tokio::time::sleep(wait).await;
        }
        harness::send(producer, topic, id, b)?;
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    let n: usize = env_num("BENCH_SAGA_ORDERS", 3_000);
    let seconds: u64 = env_num("BENCH_LATENCY_SECONDS", 15);
    let loads = parse_loads(&env_or("BENCH_SAGA_RATES", DEFAULT_LOADS))?;
    let out_dir = PathBuf::from(env_or("BENCH_OUT_DIR", "target/bench"));
    let prefix = harness::prefix("saga");
    let topics = Topics::with_prefix(prefix.clone());
    let mut names = vec![topics.command_results()];
    for ctx in Context::ALL {
        names.extend([
            topics.commands(ctx),
            topics.events(ctx),
            topics.snapshots(ctx),
        ]);
    }
    harness::create_topics(&names).await?;
    let codec = Arc::new(Codec::new(&harness::registry_url(), topics.clone())?);
    let reactions = env_or("BENCH_SAGA_REACTIONS", "loop");
    anyhow::ensure!(
        matches!(reactions.as_str(), "loop" | "inline"),
        "BENCH_SAGA_REACTIONS: {reactions:?} is neither `loop` nor `inline`"
    );
    let placed = [("STREAMCART_SAGA__REACTIONS", reactions.as_str())];
    let _roles = [
        harness::spawn_role(&["process", "product"], &prefix, &placed)?,
        harness::spawn_role(&["process", "stock"], &prefix, &placed)?,
        harness::spawn_role(&["process", "order"], &prefix, &placed)?,
        harness::spawn_role(&["process", "payment"], &prefix, &placed)?,
        harness::spawn_role(&["sagas"], &prefix, &placed)?,
    ];

    // One thread takes records off the consumer and stamps them; another decodes them, so
    // decoding never delays the stamp of the records queued behind.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<Arrival>();
    let reader = {
        let feeds: HashMap<String, Feed> =
            Feed::ALL.iter().map(|f| (f.topic(&topics), *f)).collect();
        let group = format!("{prefix}bench-hops");
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let out = read_feeds(&group, &feeds, &stop, &tx);
            fail_with(&seen, &out);
            out
        })
    };
    let decoder = {
        let (seen, stop, codec) = (seen.clone(), stop.clone(), codec.clone());
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let out = decode_feeds(&rx, &seen, &stop, &codec, &rt);
            fail_with(&seen, &out);
            out
        })
    };

    let producer = harness::producer()?;
    for i in 0..SKUS {
        let sku = format!("SKU-{i}");
        let create = commands::create_product(&sku, &format!("Product {i}"), "bench", 1_000);
        let b = encode(&codec, &sku, create).await?;
        harness::send(&producer, &topics.commands(Context::Catalog), &sku, &b)?;
        let b = encode(&codec, &sku, commands::receive_stock(10_000_000)).await?;
        harness::send(&producer, &topics.commands(Context::Inventory), &sku, &b)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let customers: Vec<CustomerId> = (0..100)
        .map(|_| CustomerId::new(uuid::Uuid::new_v4().to_string()))
        .collect::<Result<_, _>>()?;
    let orders_topic = topics.commands(Context::Orders);

    // Warm-up: orders trickle in until one is confirmed end to end (the catalog copy is current).
    let limit = Duration::from_secs(180);
    let mut watch = Watch::new("warm-up: first order confirmed end to end", limit, limit);
    let mut warm = 0;
    loop {
        if let Some(e) = reader_failure(&seen) {
            anyhow::bail!("warm-up: the reader of the saga's topics failed: {e}");
        }
        match watch.check(confirmed(&seen), 1) {
            Ok(true) => break,
            Ok(false) => {}
            Err(stalled) => return Err(harness::explain(stalled).await),
        }
        let (id, b) = place(&codec, &customers[0], warm).await?;
        harness::send(&producer, &orders_topic, &id, &b)?;
        producer.flush(Duration::from_secs(10))?;
        warm += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base = confirmed(&seen);

    // Capacity: n orders at once; from the first OrderPlaced to the n-th OrderConfirmed.
    let batch = orders(&codec, &customers, n).await?;
    let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
    let t0 = Instant::now();
    for (id, b) in &batch {
        harness::send(&producer, &orders_topic, id, b)?;
    }
    producer.flush(Duration::from_secs(60))?;
    wait_confirmed(
        &seen,
        &format!("capacity phase: orders confirmed (counting {base} warm-up orders)"),
        base + n,
        &ids,
        Duration::from_secs(900),
        STALL_AFTER,
    )
    .await?;
    let capacity = n as f64 / t0.elapsed().as_secs_f64();
    println!(
        "capacity: {n} orders confirmed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Steady loads, one after the other, each drained before the next starts.
    let mut done = base + n;
    let mut results = Vec::with_capacity(loads.len());
    for load in &loads {
        let rate = load.rate(capacity);
        let total = ((rate * seconds as f64).round() as usize).max(1);
        let batch = orders(&codec, &customers, total).await?;
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let start = Instant::now();
        offer(&producer, &orders_topic, &batch, rate).await?;
        wait_confirmed(
            &seen,
            &format!("steady phase at {rate:.0} orders/s: orders confirmed (counting {done} earlier orders)"),
            done + total,
            &ids,
            Duration::from_secs(600),
            STALL_AFTER,
        )
        .await?;
        let drained_after = start.elapsed().as_secs_f64();
        done += total;
        results.push(measure(&seen, *load, rate, seconds, &ids, drained_after)?);
        // The confirmed orders' CommitStock commands are still on their way; the next load
        // should not queue behind them.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for (name, thread) in [("reader", reader), ("decoder", decoder)] {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the {name} thread panicked"))??;
    }
    let event_size = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.event_bytes / s.events.max(1)
    };

    // The files come before the ceiling, so a failing ceiling tool costs no latency figures.
    let suffix = if reactions == "inline" { "-inline" } else { "" };
    let json_path = out_dir.join(format!("saga-latency{suffix}.json"));
    let png_path = out_dir.join(format!("saga-latency{suffix}.png"));
    report::write_json(&json_path, &report::to_json(capacity, n, &results)?)?;
    report::draw_png(&png_path, &results)?;

    // At least 200,000 records, so the tool is measured past its JVM warm-up.
    let perf_records = ((n as f64 * RECORDS_PER_ORDER) as usize).max(200_000);
    let topic = format!("{}perf", harness::prefix("ceiling"));
    harness::create_topics(std::slice::from_ref(&topic)).await?;
    let records_per_s = tokio::task::spawn_blocking(move || {
        harness::kafka_producer_perf(&topic, perf_records, event_size)
    })
    .await
    .context("ceiling")??;
    let ceiling = records_per_s / RECORDS_PER_ORDER;
    let rates: Vec<String> = results.iter().map(|r| format!("{:.0}", r.rate)).collect();
    println!();
    println!(
        "saga ({n} single-line orders at once, then {seconds} s at each of {} orders/s; 5 roles, {} partitions; reactions: {reactions})",
        rates.join(", "),
        harness::PARTITIONS
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| orders completed end to end | {capacity:.1} orders/s |");
    for r in &results {
        let e2e = r.hops.last().and_then(HopResult::summary);
        // A load the system cannot take shows as a drain that outlasts the offering.
        println!(
            "| OrderPlaced → OrderConfirmed at {:.0} orders/s ({} orders) | {}; last confirmed {:.1} s after the first was sent ({} s offered) |",
            r.rate,
            r.completed,
            e2e.map(|s| format!(
                "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                s.p50, s.p90, s.p99, s.max
            ))
            .unwrap_or_else(|| "no order seen end to end".to_owned()),
            r.drained_after,
            r.seconds
        );
    }
    println!(
        "| ceiling: kafka ProducerPerformance, transactional, {event_size}-byte records | {records_per_s:.0} records/s = {ceiling:.1} orders/s at 19 records per order |"
    );
    println!();
    println!(
        "per hop: from one record to the next, each timed when a read_committed reader in the bench received it (ms)"
    );
    println!("| offered | hop | taken by | orders | p50 | p90 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results {
        for h in &r.hops {
            let cells = match h.summary() {
                Some(Summary {
                    count,
                    p50,
                    p90,
                    p99,
                    max,
                    ..
                }) => format!("{count} | {p50:.1} | {p90:.1} | {p99:.1} | {max:.1}"),
                None => "0 | - | - | - | -".to_owned(),
            };
            println!(
                "| {:.0}/s | {} | {} | {cells} |",
                r.rate,
                h.hop.label(),
                h.hop.by
            );
        }
    }
    println!();
    println!("latency summary: {}", shown(&json_path));
    println!("latency chart: {}", shown(&png_path));
    println!("saga: {capacity:.1} orders/s");
    println!("ceiling: {ceiling:.1} orders/s");
    println!("ratio: {:.3}", capacity / ceiling.max(1e-9));
    Ok(())
}

/// What one load gave: every hop of its orders, and how many were confirmed.
fn measure(
    seen: &Mutex<Seen>,
    load: Load,
    rate: f64,
    seconds: u64,
    ids: &[String],
    drained_after: f64,
) -> anyhow::Result<LoadResult> {
    let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let hops = HOPS
        .iter()
        .chain([&END_TO_END])
        .map(|hop| HopResult::new(*hop, s.journeys.millis(ids, hop)))
        .collect();
    Ok(LoadResult {
        requested: load.requested(),
        rate,
        seconds,
        sent: ids.len(),
        completed: ids
            .iter()
            .filter(|id| s.journeys.at(id, Stage::OrderConfirmed).is_some())
            .count(),
        drained_after,
        hops,
    })
}

/// The absolute path where it can be had, as written otherwise.
fn shown(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// Keeps a reader thread's error for the run to report while it waits; the first one, since a
/// thread that fails ends the other with an error of its own.
fn fail_with(seen: &Mutex<Seen>, out: &anyhow::Result<()>) {
    if let (Err(e), Ok(mut s)) = (out, seen.lock()) {
        s.failed.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// Receives the records of every feed, `read_committed`, stamping each with the instant it
/// came off the consumer, until `stop` is set.
fn read_feeds(
    group: &str,
    feeds: &HashMap<String, Feed>,
    stop: &AtomicBool,
    tx: &mpsc::Sender<Arrival>,
) -> anyhow::Result<()> {
    // A single consumer fetches every partition in one request per broker, so records of
    // different topics are stamped by the same fetch loop rather than by racing ones.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", harness::kafka_bootstrap())
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let topics: Vec<&str> = feeds.keys().map(String::as_str).collect();
    c.subscribe(&topics)?;
    while !stop.load(Ordering::Relaxed) {
        // Consumer errors are transient here (the client reconnects); a lasting one shows up
        // as a stalled count.
        let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
            continue;
        };
        let now = Instant::now();
        let Some(feed) = feeds.get(m.topic()) else {
            continue;
        };
        let value = m.payload().unwrap_or_default().to_vec();
        if tx.send((*feed, now, value)).is_err() {
            anyhow::bail!("the decoder stopped");
        }
    }
    Ok(())
}

/// Decodes what [`read_feeds`] received and notes each order's stages, until the reader is gone.
fn decode_feeds(
    rx: &mpsc::Receiver<Arrival>,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
    codec: &Codec,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    while let Ok((feed, at, value)) = rx.recv() {
        let sighting = loop {
            match rt.block_on(sighting(codec, feed, &value)) {
                Ok(s) => break s,
                Err(err) if err.is_transient() && !stop.load(Ordering::Relaxed) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err).with_context(|| format!("decoding {feed:?}")),
            }
        };
        let mut s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if feed == Feed::OrderEvents {
            s.events += 1;
            s.event_bytes += value.len();
        }
        if let Some((order, stage)) = sighting {
            s.journeys.observe(&order, stage, at);
        }
    }
    Ok(())
}

/// The order and stage a record of `feed` marks, if any.
async fn sighting(
    codec: &Codec,
    feed: Feed,
    value: &[u8],
) -> Result<Option<(String, Stage)>, DecodeError> {
    fn owned((order, stage): (&str, Stage)) -> (String, Stage) {
        (order.to_owned(), stage)
    }
    Ok(match feed {
        Feed::OrderCommands => {
            let c: CommandEnvelope<OrderCommand> = codec.decode(value).await?;
            hops::order_command(&c).map(owned)
        }
        Feed::OrderEvents => {
            let e: EventEnvelope<OrderEvent> = codec.decode(value).await?;
            hops::order_event(&e).map(owned)
        }
        Feed::StockCommands => {
            let c: CommandEnvelope<StockCommand> = codec.decode(value).await?;
            hops::stock_command(&c).map(owned)
        }
        Feed::StockEvents => {
            let e: EventEnvelope<StockEvent> = codec.decode(value).await?;
            hops::stock_event(&e).map(owned)
        }
        Feed::PaymentCommands => {
            let c: CommandEnvelope<PaymentCommand> = codec.decode(value).await?;
            hops::payment_command(&c).map(owned)
        }
        Feed::PaymentEvents => {
            let e: EventEnvelope<PaymentEvent> = codec.decode(value).await?;
            hops::payment_event(&e).map(owned)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_are_rates_or_half_the_peak() {
        assert_eq!(
            parse_loads("100, 500,half").expect("loads"),
            vec![
                Load::PerSecond(100.0),
                Load::PerSecond(500.0),
                Load::HalfPeak
            ]
        );
        assert_eq!(
            parse_loads("2.5,").expect("loads"),
            vec![Load::PerSecond(2.5)]
        );
        for bad in ["", " , ", "fast", "0", "-5", "NaN", "inf"] {
            assert!(parse_loads(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn half_the_peak_follows_the_capacity_and_never_stops() {
        assert_eq!(Load::HalfPeak.rate(300.0), 150.0);
        assert_eq!(Load::HalfPeak.rate(0.5), 1.0);
        assert_eq!(Load::PerSecond(100.0).rate(300.0), 100.0);
        assert_eq!(Load::HalfPeak.requested(), "half");
        assert_eq!(Load::PerSecond(100.0).requested(), "100");
    }
}
