//! `streamcart demo`: seeds a small catalog and stock, places orders through the command topics
//! (as any Kafka client may), waits for the saga to settle them and prints their outcomes.
//!
//! Needs the system running (`streamcart run`). Skus are unique per demo run, so it can be
//! repeated against the same topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandPayload, EventEnvelope};
use streamcart_schemas::topics::{Context, Topics};

use crate::config::Config;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn send<C: CommandPayload>(
    codec: &Codec,
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    key: &str,
    payload: C,
) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4();
    let envelope = CommandEnvelope {
        command_id: id,
        aggregate_id: key.to_owned(),
        expected_version: None,
        issued_at: now_ms(),
        correlation_id: key.to_owned(),
        payload,
    };
    let bytes = codec.encode(&envelope).await?;
    producer
        .send(BaseRecord::to(topic).key(key).payload(&bytes))
        .map_err(|(e, _)| e)
        .with_context(|| format!("producing to {topic}"))?;
    Ok(())
}

/// Runs the demo and prints a summary.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let codec = Codec::new(&cfg.registry_url, topics.clone())?;
    let producer: ThreadedProducer<_> = cfg.kafka.producer().create()?;
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let lamp = format!("DEMO-{run_id}-LAMP");
    let mug = format!("DEMO-{run_id}-MUG");

    // Start reading order events from their current end, before anything is placed.
    let events = topics.events(Context::Orders);
    let reader: BaseConsumer = cfg.kafka.restore_consumer().create()?;
    let meta = reader.fetch_metadata(Some(&events), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            let (_, high) = reader.fetch_watermarks(&events, p.id(), Duration::from_secs(10))?;
            tpl.add_partition_offset(&events, p.id(), Offset::Offset(high))?;
        }
    }
    reader.assign(&tpl)?;

    println!("seeding {lamp} (5 units, 24.99 EUR) and {mug} (100 units, 8.50 EUR)");
    for (sku, name, price, units) in [(&lamp, "Desk lamp", 2_499, 5), (&mug, "Mug", 850, 100)] {
        let create = CreateProduct {
            sku: sku.clone(),
            name: name.into(),
            category: "demo".into(),
            price: Money::new(price, "EUR")?,
        };
        send(
            &codec,
            &producer,
            &topics.commands(Context::Catalog),
            sku,
            ProductCommand::CreateProduct(create),
        )
        .await?;
        send(
            &codec,
            &producer,
            &topics.commands(Context::Inventory),
            sku,
            StockCommand::ReceiveStock(ReceiveStock { quantity: units }),
        )
        .await?;
    }
    producer.flush(Duration::from_secs(30))?;
    // The order processor prices from its catalog copy, which follows the catalog events.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut placed = BTreeMap::new();
    for n in 0..8 {
        let order = OrderId::new(uuid::Uuid::new_v4().to_string())?;
        let mut lines = vec![OrderLineRequest {
            sku: Sku::new(lamp.clone())?,
            quantity: 1,
        }];
        if n % 2 == 0 {
            lines.push(OrderLineRequest {
                sku: Sku::new(mug.clone())?,
                quantity: 2,
            });
        }
        let card = if n == 3 { "card-declined" } else { "card-ok" };
        let now = now_ms();
        // The last order is placed already past its deadline, to show an expiry.
        let (placed_at, deadline_at) = if n == 7 {
            (now - 2_000, now - 1_000)
        } else {
            (now, now + 60_000)
        };
        let place = PlaceOrder {
            order_id: order.clone(),
            customer_id: CustomerId::new(format!("demo-customer-{}", n % 3))?,
            lines,
            card_token: card.into(),
            deadline_at,
            placed_at,
        };
        send(
            &codec,
            &producer,
            &topics.commands(Context::Orders),
            order.as_str(),
            OrderCommand::PlaceOrder(place),
        )
        .await?;
        placed.insert(
            order.as_str().to_owned(),
            (card, "placing…".to_owned(), 0i64),
        );
    }
    producer.flush(Duration::from_secs(30))?;
    println!(
        "placed {} orders (5 lamps for 8 orders; order 4 pays with a declined card; order 8 is past its deadline)",
        placed.len()
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let closed = |s: &str| {
        ["confirmed", "cancelled", "expired", "rejected"]
            .iter()
            .any(|c| s.starts_with(c))
    };
    while Instant::now() < deadline && !placed.values().all(|(_, s, _)| closed(s)) {
        // The reader reports partition ends as errors; only real records matter here.
        let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Some(bytes) = m.payload() else { continue };
        let Ok(e) = codec.decode::<EventEnvelope<OrderEvent>>(bytes).await else {
            continue;
        };
        let Some(entry) = placed.get_mut(&e.aggregate_id) else {
            continue;
        };
        match e.payload {
            OrderEvent::OrderPlaced(p) => {
                entry.1 = "reserving".into();
                entry.2 = p.total.amount_minor;
            }
            OrderEvent::OrderAwaitingPayment(_) => entry.1 = "awaiting payment".into(),
            OrderEvent::OrderConfirmed(_) => entry.1 = "confirmed".into(),
            OrderEvent::OrderCancelled(c) => entry.1 = format!("cancelled ({:?})", c.reason),
            OrderEvent::OrderExpired(_) => entry.1 = "expired".into(),
            _ => {}
        }
    }
    println!();
    println!("{:<38} {:<14} {:>10}  outcome", "order", "card", "total");
    for (id, (card, status, total)) in &placed {
        println!(
            "{id:<38} {card:<14} {:>6}.{:02} EUR  {status}",
            total / 100,
            total % 100
        );
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, status, _) in placed.values() {
        *counts
            .entry(status.split(' ').next().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    println!();
    println!("summary: {counts:?}");
    anyhow::ensure!(
        placed.values().all(|(_, s, _)| closed(s)),
        "some orders did not settle within 90 s"
    );
    Ok(())
}
