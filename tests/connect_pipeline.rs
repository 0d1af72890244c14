//! Kafka Connect pipelines on the real stack: the public summary streams reach PostgreSQL through
//! the JDBC sink and the registry's Avro converter, registered by `scripts/connect apply`.
//!
//! After a saga run the PostgreSQL order rows equal the ScyllaDB orders read model; a connector
//! restart in the middle of the run neither loses nor duplicates a row; records the sink cannot
//! read land in the connector's dead-letter topic while the rest flow on; a tombstone deletes
//! its row.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers, Message};
use rdkafka::producer::BaseRecord;
use streamcart_aggregates::orders::PlaceOrder;
use streamcart_projectors::CassandraStore;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::commands::{self, DECLINED_CARD, GOOD_CARD};
use streamcart_tests::kafka::produce;
use streamcart_tests::pipelines::{Pipelines, pg_differences, pg_orders, run_connect_script};
use streamcart_tests::read_models::{differences, expected};
use streamcart_tests::world::World;

const ORDERS_CONNECTOR: &str = "orders-order-summary-postgres";
const PRODUCTS_CONNECTOR: &str = "catalog-product-summary-postgres";

/// Fails the test at once, with the worker's trace, when a connector or task has FAILED: a
/// failed sink never catches up, and the trace says why.
async fn assert_not_failed(name: &str) {
    let Ok(resp) = reqwest::get(format!(
        "{}/connectors/{name}/status",
        support::connect_url()
    ))
    .await
    else {
        return;
    };
    let Ok(status) = resp.json::<serde_json::Value>().await else {
        return;
    };
    let mut parts = vec![status["connector"].clone()];
    parts.extend(status["tasks"].as_array().cloned().unwrap_or_default());
    for part in parts {
        assert_ne!(
            part["state"].as_str(),
            Some("FAILED"),
            "{name} failed: {}",
            part["trace"].as_str().unwrap_or_default()
        );
    }
}

async fn restart_connector(name: &str) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/connectors/{name}/restart?includeTasks=true",
            support::connect_url()
        ))
        .send()
        .await
        .expect("restart request");
    assert!(
        resp.status().is_success(),
        "restart {name}: {} {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn summaries_reach_postgres_through_restarts_and_bad_records() {
    let world = World::new("connect").await;
    let table_prefix = world.prefix.replace('.', "_");
    let orders_table = format!("{table_prefix}order_summary");
    let products_table = format!("{table_prefix}product_summary");
    let orders_connector = format!("{}{ORDERS_CONNECTOR}", world.prefix);
    let orders_dlq = format!("{}connect.{ORDERS_CONNECTOR}.dlq", world.prefix);

    let _system = world.spawn_system();
    let _projectors = world.spawn_projectors();

    // The sinks go in first, as they would in production: they must follow the stream, not
    // just copy a finished one.
    let _pipelines = Pipelines {
        prefix: world.prefix.clone(),
        tables: vec![orders_table.clone(), products_table.clone()],
    };
    let applied = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "apply"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&applied.stdout),
        String::from_utf8_lossy(&applied.stderr)
    );
    eprintln!("{report}");
    assert!(applied.status.success(), "scripts/connect apply: {report}");
    // Applying again is harmless: the same configuration, still RUNNING.
    let again = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "apply"));
    assert!(
        again.status.success(),
        "second apply: {}",
        String::from_utf8_lossy(&again.stderr)
    );

    let skus = ["C-1", "C-2", "C-3", "C-4"];
    for (i, sku) in skus.iter().enumerate() {
        // Less stock than demand, so some orders are cancelled for stock as well as for payment.
        world
            .seed_product(
                sku,
                &format!("Connected {i}"),
                "kitchen",
                1_500 + 100 * i as i64,
                60,
            )
            .await;
    }
    world.flush();
    // Orders are placed only once the order processor prices them from its catalog copy.
    let probes = world
        .wait_until_orders_are_priced(skus[0], &commands::customer())
        .await;

    // Records the sink cannot read: not Avro at all, and Avro framing naming a schema the
    // registry does not have.
    let bad: [(&str, Vec<u8>); 2] = [
        ("bad-not-avro", b"this is not avro".to_vec()),
        (
            "bad-unknown-schema",
            vec![0, 0x7f, 0xff, 0xff, 0x00, 2, 4, 6],
        ),
    ];

    let customers: Vec<_> = (0..25).map(|_| commands::customer()).collect();
    let mut placed = Vec::new();
    for n in 0..300usize {
        let card = if n % 7 == 3 { DECLINED_CARD } else { GOOD_CARD };
        let lines = [(skus[n % skus.len()], 1 + (n % 2) as u32)];
        let order = PlaceOrder {
            placed_at: now_ms() + n as i64,
            ..commands::place_order(&customers[n % customers.len()], &lines, card)
        };
        placed.push(world.place(order).await);
        if n == 80 {
            let topic = world.topics.order_summary();
            for (key, value) in &bad {
                produce(&world.producer, &topic, key, value);
            }
        }
        // The orders sink is restarted, tasks included, while summaries are flowing.
        if n == 150 {
            world.flush();
            tokio::time::sleep(Duration::from_secs(2)).await;
            restart_connector(&orders_connector).await;
        }
    }
    world.flush();

    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    let (pg, conn) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);

    // Settled means: every order final in the events, ScyllaDB equal to the events, and
    // PostgreSQL equal to ScyllaDB, all in the same round.
    let deadline = Instant::now() + Duration::from_secs(150);
    let x = loop {
        let x = tokio::task::block_in_place(|| expected(&world));
        let mut diffs: Vec<String> = x
            .orders
            .iter()
            .filter(|(_, o)| o.0 == "placed")
            .map(|(id, _)| format!("{id} not final yet"))
            .collect();
        if diffs.is_empty() {
            diffs = differences(&store, &x).await;
        }
        if diffs.is_empty() {
            diffs = pg_differences(&pg, &orders_table, &store, &x).await;
        }
        if diffs.is_empty() {
            break x;
        }
        assert_not_failed(&orders_connector).await;
        assert!(
            Instant::now() < deadline,
            "PostgreSQL never caught up: {} differences, e.g. {:?}",
            diffs.len(),
            &diffs[..diffs.len().min(5)]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    for id in &placed {
        assert!(
            x.orders.contains_key(id),
            "order {id} reached the read model"
        );
    }
    // Every order in the read model: the 300 and the probes that were priced.
    let total = x.orders.len() as i64;
    assert!(
        x.orders
            .keys()
            .all(|id| placed.contains(id) || probes.contains(id))
    );
    assert!(x.orders.values().any(|o| o.0 == "confirmed"));
    assert!(
        x.orders
            .values()
            .any(|o| o.1.as_deref() == Some("payment_declined"))
    );
    assert!(
        x.orders
            .values()
            .any(|o| o.1.as_deref() == Some("stock_unavailable"))
    );

    // One row per order, whatever the restart redelivered: the key is the order id.
    let distinct: i64 = pg
        .query_one(
            &format!("select count(distinct order_id) from {orders_table}"),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(distinct, total);
    let reasons: i64 = pg
        .query_one(
            &format!(
                "select count(*) from {orders_table} where status = 'cancelled' and reason is not null"
            ),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        reasons as usize,
        x.orders.values().filter(|o| o.0 == "cancelled").count(),
        "cancelled orders carry their reason"
    );

    // The restarted connector is RUNNING again.
    let status = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "status"));
    let status_text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status_text
            .lines()
            .filter(|l| l.contains("summary-postgres"))
            .all(|l| l.contains("connector=RUNNING") && l.contains("task-0=RUNNING")),
        "status after the run: {status_text}"
    );

    // The product pipeline: one row per sku at ScyllaDB's version.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut diffs = Vec::new();
        let rows = pg
            .query(
                &format!("select sku, name, price_minor, version from {products_table}"),
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        (
                            r.get::<_, String>(0),
                            (
                                r.get::<_, String>(1),
                                r.get::<_, i64>(2),
                                r.get::<_, i64>(3),
                            ),
                        )
                    })
                    .collect::<HashMap<_, _>>()
            })
            .unwrap_or_default();
        for sku in skus {
            let p = store
                .product(sku)
                .await
                .expect("product")
                .expect("stored product");
            let want = (p.name.clone(), p.price_minor, p.version as i64);
            if rows.get(sku) != Some(&want) {
                diffs.push(format!("{sku}: {:?} vs {want:?}", rows.get(sku)));
            }
        }
        if diffs.is_empty() && rows.len() == skus.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "products table differs: {diffs:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Both unreadable records are in the dead-letter topic, original bytes kept, with the
    // context headers naming where they came from.
    let dead = tokio::task::block_in_place(|| {
        support::read_topic(&orders_dlq, bad.len(), Duration::from_secs(60))
    });
    for (key, value) in &bad {
        let m = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("{key} is not in {orders_dlq} ({} records)", dead.len()));
        assert_eq!(m.payload(), Some(value.as_slice()), "{key} keeps its bytes");
        let headers: HashMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            headers.get("__connect.errors.topic"),
            Some(&world.topics.order_summary()),
            "{key}: {headers:?}"
        );
        assert!(
            headers.contains_key("__connect.errors.exception.class.name"),
            "{key}: {headers:?}"
        );
    }
    // Dead letters are written at least once (a restart may repeat one), but only these are.
    assert!(
        dead.iter()
            .all(|m| bad.iter().any(|(k, _)| m.key() == Some(k.as_bytes()))),
        "only the unreadable records are dead"
    );

    // A tombstone on the summary stream deletes the row, as compaction will drop the key.
    let (gone_id, _) = x
        .orders
        .iter()
        .find(|(_, o)| o.0 == "cancelled")
        .expect("a cancelled order");
    let topic = world.topics.order_summary();
    world
        .producer
        .send(BaseRecord::<str, [u8]>::to(&topic).key(gone_id.as_str()))
        .expect("produce tombstone");
    world.flush();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, n) = pg_orders(&pg, &orders_table).await;
        if !rows.contains_key(gone_id) {
            assert_eq!(
                n as i64,
                total - 1,
                "only the tombstoned order left the table"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{gone_id} still in {orders_table}"
        );
        assert_not_failed(&orders_connector).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let deleted = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "delete"));
    assert!(
        deleted.status.success(),
        "scripts/connect delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    for name in [ORDERS_CONNECTOR, PRODUCTS_CONNECTOR] {
        let gone = reqwest::get(format!(
            "{}/connectors/{}{name}",
            support::connect_url(),
            world.prefix
        ))
        .await
        .expect("connector lookup");
        assert_eq!(gone.status().as_u16(), 404, "{name} deleted");
    }
}
