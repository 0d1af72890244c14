//! `saga`: orders completed per second end to end (every processor and the saga running), and
//! the latency from `OrderPlaced` to `OrderConfirmed` at a steady offered load of half that.
//!
//! The ceiling: one confirmed single-line order moves 19 records through Kafka transactions
//! (6 commands, 7 events, 6 results); Kafka's own transactional producer writing records of the
//! same size gives the orders/s that pure record movement would allow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandPayload, EventEnvelope};
use streamcart_schemas::topics::{Context, Topics};

use crate::harness::{self, Watch, env_num};

/// Records one confirmed single-line order moves through Kafka.
const RECORDS_PER_ORDER: f64 = 19.0;
const SKUS: usize = 20;
/// A phase whose confirmed count does not move for this long has stalled.
const STALL_AFTER: Duration = Duration::from_secs(120);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Default)]
struct Seen {
    /// order id → (placed seen, confirmed seen, placed occurred_at, confirmed occurred_at)
    orders: HashMap<String, (Option<Instant>, Option<Instant>, i64, i64)>,
    event_bytes: usize,
    events: usize,
    /// Why the watcher stopped early, if it did.
    failed: Option<String>,
}

async fn encode<C: CommandPayload>(
    codec: &Codec,
    aggregate_id: &str,
    payload: C,
) -> anyhow::Result<Vec<u8>> {
    let id = uuid::Uuid::new_v4();
    let envelope = CommandEnvelope {
        command_id: id,
        aggregate_id: aggregate_id.to_owned(),
        expected_version: None,
        issued_at: now_ms(),
        correlation_id: aggregate_id.to_owned(),
        payload,
    };
    Ok(codec.encode(&envelope).await?)
}

async fn place(
    codec: &Codec,
    customer: &CustomerId,
    n: usize,
) -> anyhow::Result<(String, Vec<u8>)> {
    let order_id = OrderId::new(uuid::Uuid::new_v4().to_string())?;
    let place = PlaceOrder {
        order_id: order_id.clone(),
        customer_id: customer.clone(),
        lines: vec![OrderLineRequest {
            sku: Sku::new(format!("SKU-{}", n % SKUS))?,
            quantity: 1,
        }],
        card_token: "card-ok".into(),
        deadline_at: now_ms() + 3_600_000,
        placed_at: now_ms(),
    };
    let bytes = encode(codec, order_id.as_str(), OrderCommand::PlaceOrder(place)).await?;
    Ok((order_id.as_str().to_owned(), bytes))
}

fn confirmed(seen: &Mutex<Seen>) -> usize {
    seen.lock()
        .map(|s| s.orders.values().filter(|o| o.1.is_some()).count())
        .unwrap_or(0)
}

fn watcher_failure(seen: &Mutex<Seen>) -> Option<String> {
    seen.lock().ok().and_then(|s| s.failed.clone())
}

/// Waits until `target` orders are confirmed; fails naming what stalled when the count stops
/// moving for `stall_after`, `limit` passes, a role exits or the watcher fails.
async fn wait_confirmed(
    seen: &Mutex<Seen>,
    what: &str,
    target: usize,
    limit: Duration,
    stall_after: Duration,
) -> anyhow::Result<()> {
    let mut watch = Watch::new(what, limit, stall_after);
    loop {
        if let Some(e) = watcher_failure(seen) {
            anyhow::bail!("{what}: the order event watcher failed: {e}");
        }
        match watch.check(confirmed(seen), target) {
            Ok(true) => return Ok(()),
            Ok(false) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(stalled) => return Err(harness::explain(stalled).await),
        }
    }
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    let n: usize = env_num("BENCH_SAGA_ORDERS", 3_000);
    let seconds: u64 = env_num("BENCH_LATENCY_SECONDS", 15);
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
    let codec = Arc::new(Codec::new(&harness::registry(), topics.clone())?);
    let _roles = [
        harness::spawn_role(&["process", "product"], &prefix, &[])?,
        harness::spawn_role(&["process", "stock"], &prefix, &[])?,
        harness::spawn_role(&["process", "order"], &prefix, &[])?,
        harness::spawn_role(&["process", "payment"], &prefix, &[])?,
        harness::spawn_role(&["sagas"], &prefix, &[])?,
    ];

    // Watch the order events: when each order was placed and confirmed.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, codec) = (seen.clone(), stop.clone(), codec.clone());
        let topic = topics.events(Context::Orders);
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let out = watch_orders(&topic, &seen, &stop, &codec, &rt);
            if let (Err(e), Ok(mut s)) = (&out, seen.lock()) {
                s.failed = Some(format!("{e:#}"));
            }
            out
        })
    };

    let producer = harness::producer()?;
    for i in 0..SKUS {
        let sku = format!("SKU-{i}");
        let create = CreateProduct {
            sku: sku.clone(),
            name: format!("Product {i}"),
            category: "bench".into(),
            price: Money::new(1_000, "EUR")?,
        };
        let b = encode(&codec, &sku, ProductCommand::CreateProduct(create)).await?;
        harness::send(&producer, &topics.commands(Context::Catalog), &sku, &b)?;
        let b = encode(
            &codec,
            &sku,
            StockCommand::ReceiveStock(ReceiveStock {
                quantity: 10_000_000,
            }),
        )
        .await?;
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
        if let Some(e) = watcher_failure(&seen) {
            anyhow::bail!("warm-up: the order event watcher failed: {e}");
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
    let mut batch = Vec::with_capacity(n);
    for i in 0..n {
        batch.push(place(&codec, &customers[i % customers.len()], i).await?);
    }
    let t0 = Instant::now();
    for (id, b) in &batch {
        harness::send(&producer, &orders_topic, id, b)?;
    }
    producer.flush(Duration::from_secs(60))?;
    wait_confirmed(
        &seen,
        &format!("capacity phase: orders confirmed (counting {base} warm-up orders)"),
        base + n,
        Duration::from_secs(900),
        STALL_AFTER,
    )
    .await?;
    let capacity = n as f64 / t0.elapsed().as_secs_f64();
    println!(
        "capacity: {n} orders confirmed in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Steady load at half the capacity; latency from OrderPlaced to OrderConfirmed (event times).
    let rate = (capacity / 2.0).max(1.0);
    let total = (rate * seconds as f64) as usize;
    let mut steady = Vec::with_capacity(total);
    for i in 0..total {
        steady.push(place(&codec, &customers[i % customers.len()], i).await?);
    }
    let ids: Vec<String> = steady.iter().map(|(id, _)| id.clone()).collect();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for (i, (id, b)) in steady.iter().enumerate() {
        if let Some(wait) =
            (start + interval.mul_f64(i as f64)).checked_duration_since(Instant::now())
        {
            tokio::time::sleep(wait).await;
        }
        harness::send(&producer, &orders_topic, id, b)?;
    }
    producer.flush(Duration::from_secs(60))?;
    wait_confirmed(
        &seen,
        &format!(
            "steady phase: orders confirmed (counting {} earlier orders)",
            base + n
        ),
        base + n + total,
        Duration::from_secs(600),
        STALL_AFTER,
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    let (mut lat, event_size) = {
        let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let lat: Vec<f64> = ids
            .iter()
            .filter_map(|id| s.orders.get(id))
            .map(|o| (o.3 - o.2) as f64)
            .collect();
        (lat, s.event_bytes / s.events.max(1))
    };
    lat.sort_by(|a, b| a.total_cmp(b));

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
    println!();
    println!(
        "saga ({n} single-line orders at once, then {total} at {rate:.0}/s; 5 roles, {} partitions)",
        harness::PARTITIONS
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| orders completed end to end | {capacity:.1} orders/s |");
    println!(
        "| OrderPlaced → OrderConfirmed at {rate:.0} orders/s ({} orders) | p50 {:.0} ms, p99 {:.0} ms |",
        lat.len(),
        harness::percentile(&lat, 50.0),
        harness::percentile(&lat, 99.0)
    );
    println!(
        "| ceiling: kafka ProducerPerformance, transactional, {event_size}-byte records | {records_per_s:.0} records/s = {ceiling:.1} orders/s at 19 records per order |"
    );
    println!("saga: {capacity:.1} orders/s");
    println!("ceiling: {ceiling:.1} orders/s");
    println!("ratio: {:.3}", capacity / ceiling.max(1e-9));
    Ok(())
}

/// Follows the order events, noting when each order was placed and confirmed.
fn watch_orders(
    topic: &str,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
    codec: &Codec,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", harness::bootstrap())
        .set("group.id", format!("{topic}-bench-watch"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    c.subscribe(&[topic])?;
    while !stop.load(Ordering::Relaxed) {
        // Consumer errors are transient here (the client reconnects); a lasting one shows up
        // as a stalled count.
        let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
            continue;
        };
        let now = Instant::now();
        let bytes = m.payload().unwrap_or_default();
        let e: EventEnvelope<OrderEvent> = loop {
            match rt.block_on(codec.decode(bytes)) {
                Ok(e) => break e,
                Err(err) if err.is_transient() && !stop.load(Ordering::Relaxed) => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err.into()),
            }
        };
        let mut s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.events += 1;
        s.event_bytes += bytes.len();
        let entry = s.orders.entry(e.aggregate_id.clone()).or_default();
        match e.payload {
            OrderEvent::OrderPlaced(_) => {
                entry.0 = Some(now);
                entry.2 = e.occurred_at;
            }
            OrderEvent::OrderConfirmed(_) => {
                entry.1 = Some(now);
                entry.3 = e.occurred_at;
            }
            _ => {}
        }
    }
    Ok(())
}
