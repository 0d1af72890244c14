//! Read models on the real stack: after a saga run the ScyllaDB rows, the Redis product cache and
//! the public order summary stream equal what the event topics say — also after the projectors
//! were SIGKILLed mid-run, after every event was delivered a second time, and after a rebuild.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use streamcart_aggregates::catalog::{ChangeCategory, ProductCommand};
use streamcart_aggregates::orders::PlaceOrder;
use streamcart_projectors::{CacheOptions, CassandraStore, OrderStatus, ProductCache, Projection};
use streamcart_schemas::summary::OrderSummary;
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::commands::{self, DECLINED_CARD, GOOD_CARD};
use streamcart_tests::read_models::{expected, wait_equal};
use streamcart_tests::world::World;

const PROJECTORS: [&str; 3] = ["products", "stock", "orders"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_models_equal_the_events_through_crashes_redelivery_and_rebuild() {
    let world = World::new("proj").await;

    let _system = world.spawn_system();
    let projector = |name: &str, generation: usize| {
        world.spawn(&["project", name], &format!("project-{name}-{generation}"))
    };
    let mut projectors: BTreeMap<&str, support::Child> =
        PROJECTORS.iter().map(|n| (*n, projector(n, 0))).collect();

    let skus = ["P-1", "P-2", "P-3", "P-4"];
    for (i, sku) in skus.iter().enumerate() {
        let category = if i % 2 == 0 { "kitchen" } else { "garden" };
        world
            .seed_product(
                sku,
                &format!("Product {i}"),
                category,
                1_000 + 250 * i as i64,
                40,
            )
            .await;
    }
    // One product moves category: it must leave the old listing.
    world
        .send(
            Context::Catalog,
            "P-1",
            ProductCommand::ChangeCategory(ChangeCategory {
                category: "garden".into(),
            }),
        )
        .await;
    world.flush();
    world
        .wait_until_orders_are_priced("P-2", &commands::customer())
        .await;

    let customers: Vec<_> = (0..30).map(|_| commands::customer()).collect();
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    for n in 0..300usize {
        let card = if n % 9 == 4 { DECLINED_CARD } else { GOOD_CARD };
        let lines = [(skus[n % skus.len()], 1 + (n % 2) as u32)];
        world
            .place(PlaceOrder {
                placed_at: now_ms() + n as i64,
                ..commands::place_order(&customers[n % customers.len()], &lines, card)
            })
            .await;
        // (a) Projectors are SIGKILLed and restarted while events flow: each round's victim is
        // the next projector in turn, and the orders projector (the busiest) goes down too.
        if n % 75 == 40 {
            world.flush();
            let victim = PROJECTORS[(n / 75) % PROJECTORS.len()];
            let mut victims = vec![victim];
            if victim != "orders" {
                victims.push("orders");
            }
            for (i, name) in victims.into_iter().enumerate() {
                if let Some(p) = projectors.get_mut(name) {
                    p.kill_hard();
                }
                projectors.insert(name, projector(name, n + i));
                *kills.entry(name).or_default() += 1;
            }
        }
    }
    world.flush();
    for name in PROJECTORS {
        assert!(
            kills.get(name).is_some_and(|k| *k > 0),
            "the {name} projector was never killed: {kills:?}"
        );
    }

    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    let x = wait_equal(&store, &world, "after the saga run with projector crashes").await;
    assert!(x.orders.values().any(|o| o.0 == "confirmed"));
    assert!(
        x.orders
            .values()
            .any(|o| o.1.as_deref() == Some("payment_declined"))
    );
    let kitchen = store
        .products_by_category("kitchen", None, 100)
        .await
        .expect("listing");
    assert!(
        !kitchen.items.iter().any(|p| p.sku == "P-1"),
        "P-1 left the kitchen listing"
    );

    // The Redis product cache holds exactly what ScyllaDB holds; a flushed cache stays empty
    // (rebuilt lazily by readers) and is never refilled with an older version.
    let cache = ProductCache::connect(
        &support::redis_url(),
        CacheOptions {
            prefix: format!("{}streamcart:product:", world.prefix),
            ..CacheOptions::default()
        },
    )
    .await
    .expect("cache");
    for sku in skus {
        let stored = store
            .product(sku)
            .await
            .expect("read")
            .expect("stored product");
        // The projector writes ScyllaDB first and the cache right after: wait for the second.
        let deadline = Instant::now() + Duration::from_secs(30);
        let cached = loop {
            let cached = cache.get(sku).await.expect("cache get");
            if cached.as_ref() == Some(&stored) || Instant::now() > deadline {
                break cached;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            cached.as_ref(),
            Some(&stored),
            "{sku}: cache equals the read model"
        );
        let mut older = stored.clone();
        older.version = stored.version.saturating_sub(1);
        older.name = "stale".into();
        cache.put_if_newer(&older).await.expect("put");
        assert_eq!(
            cache.get(sku).await.expect("get").map(|r| r.version),
            Some(stored.version)
        );
    }

    // The public summary stream carries the latest version of every order.
    let summaries: Vec<OrderSummary> = tokio::task::block_in_place(|| {
        world
            .decode_topic(
                &world.topics.order_summary(),
                x.orders.len(),
                Duration::from_secs(60),
            )
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    });
    let mut latest: HashMap<String, OrderSummary> = HashMap::new();
    for s in summaries {
        let key = s.order_id.to_string();
        if latest.get(&key).is_none_or(|l| l.version < s.version) {
            latest.insert(key, s);
        }
    }
    for (id, (status, _, total, version, _)) in &x.orders {
        let s = latest
            .get(id)
            .unwrap_or_else(|| panic!("no summary for {id}"));
        assert_eq!(
            (s.status.as_str(), s.total_minor, s.version),
            (status.as_str(), *total, *version as i64),
            "summary of {id}"
        );
    }

    // (b) Every event delivered a second time: the projectors' offsets are dropped and they
    // replay everything; nothing moves.
    for p in projectors.values_mut() {
        assert!(
            p.terminate(Duration::from_secs(30)),
            "projector stops cleanly on SIGTERM"
        );
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .expect("admin");
    let groups: Vec<String> = PROJECTORS
        .iter()
        .map(|n| format!("{}projector.{n}", world.prefix))
        .collect();
    let group_refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    // Projectors are static group members, which do not leave their group on shutdown: a group
    // can be deleted once their sessions have expired (10 s), as with any consumer that died.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = group_refs.clone();
    while !pending.is_empty() {
        let results = admin
            .delete_groups(&pending, &AdminOptions::new())
            .await
            .expect("delete groups");
        let mut still = Vec::new();
        for r in results {
            match r {
                Ok(_) => {}
                Err((g, RDKafkaErrorCode::NonEmptyGroup)) if Instant::now() < deadline => {
                    still.push(group_refs.iter().copied().find(|n| *n == g).expect("group"));
                }
                Err(e) => panic!("group not deleted: {e:?}"),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let _replayers: Vec<support::Child> = PROJECTORS.iter().map(|n| projector(n, 999)).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    wait_equal(&store, &world, "after every event was delivered twice").await;

    // (c) A rebuild fills a fresh generation from offset zero and switches readers to it.
    let before = store
        .active_generation(streamcart_projectors::Orders::NAME)
        .await
        .expect("generation");
    let mut rebuild = world.spawn(&["projector", "rebuild", "orders"], "rebuild-orders");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(Some(status)) = rebuild.0.try_wait() {
            assert!(status.success(), "rebuild failed");
            break;
        }
        assert!(Instant::now() < deadline, "rebuild did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = store
        .active_generation(streamcart_projectors::Orders::NAME)
        .await
        .expect("generation");
    assert_eq!(
        after,
        before + 1,
        "readers switched to the rebuilt generation"
    );
    let rebuilt = store
        .with_generation(after)
        .await
        .expect("generation store");
    let x = tokio::task::block_in_place(|| expected(&world));
    for (id, (status, _, total, version, _)) in &x.orders {
        let row = rebuilt
            .order(id)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("{id} missing after rebuild"));
        assert!(
            row.status.as_str() == status
                || (status == "placed" && row.status != OrderStatus::Confirmed)
        );
        assert_eq!(
            (row.total_minor, row.version),
            (*total, *version),
            "{id} after rebuild"
        );
    }
}
