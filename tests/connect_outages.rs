//! A Kafka Connect sink started while the schema registry is down: its converter has no schema
//! cached, so every record needs the registry. The records must wait for the registry and then
//! reach PostgreSQL, none of them in the dead-letter topic.
//!
//! It stops the registry of the shared stack, so it runs alone (scripts/test runs `*_outages`
//! after the others).

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer};
use streamcart_schemas::summary::ProductSummary;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::pipelines::{Pipelines, run_connect_script};
use streamcart_tests::world::World;

const PRODUCTS: usize = 20;

/// Starts the registry again however the test ends: later tests need it.
struct RegistryBack;

impl Drop for RegistryBack {
    fn drop(&mut self) {
        support::stack(&["start", "registry"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sink_waits_for_the_registry_instead_of_dead_lettering() {
    let world = World::new("connect_outages").await;
    let table = format!("{}product_summary", world.prefix.replace('.', "_"));
    let topic = world.topics.product_summary();
    let dlq = format!(
        "{}connect.catalog-product-summary-postgres.dlq",
        world.prefix
    );
    support::create_topics(&[&topic], 4).await;

    // Valid records, encoded while the registry is up.
    for i in 0..PRODUCTS {
        let summary = ProductSummary {
            sku: format!("SKU-{i}"),
            name: format!("Product {i}"),
            category: "outage".into(),
            price_minor: 1_000 + i as i64,
            currency: "EUR".into(),
            discontinued: false,
            updated_at: now_ms(),
            version: 1,
        };
        let bytes = support::commands::encode(&world.codec, &summary).await;
        world
            .producer
            .send(BaseRecord::to(&topic).key(&summary.sku).payload(&bytes))
            .expect("produce");
    }
    world
        .producer
        .flush(Duration::from_secs(30))
        .expect("flush");

    // The sink starts (a fresh converter, nothing cached) with the registry down.
    let _back = {
        tokio::task::block_in_place(|| support::stack(&["stop", "registry"]));
        RegistryBack
    };
    let _pipelines = Pipelines {
        prefix: world.prefix.clone(),
        tables: vec![
            table.clone(),
            format!("{}order_summary", world.prefix.replace('.', "_")),
        ],
    };
    let applied = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "apply"));
    assert!(
        applied.status.success(),
        "scripts/connect apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    // Long enough for the sink to have tried every record several times.
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| support::stack(&["start", "registry"]));

    let (pg, conn) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let rows: i64 = pg
            .query_one(&format!("select count(*) from {table}"), &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if rows as usize == PRODUCTS || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        rows as usize, PRODUCTS,
        "every record reaches PostgreSQL once the registry is back"
    );
    let dead = tokio::task::block_in_place(|| dead_letters(&dlq));
    assert_eq!(dead, 0, "no valid record was dead-lettered");
}

/// Records in the dead-letter topic, over all its partitions (none while it does not exist).
fn dead_letters(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .expect("client");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions())
        .map(|p| {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}
