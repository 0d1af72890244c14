//! Read models on the real stack: after a saga run the ScyllaDB rows, the Redis product cache and
//! the public order summary stream equal what the event topics say — also after the projectors
//! were SIGKILLed mid-run, after every event was delivered a second time, and after a rebuild.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;
use streamcart_aggregates::catalog::{ChangeCategory, CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{OrderCommand, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_projectors::{CacheOptions, CassandraStore, OrderStatus, ProductCache, Projection};
use streamcart_schemas::summary::OrderSummary;
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::read_models::{World, expected, now_ms, wait_equal};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_models_equal_the_events_through_crashes_redelivery_and_rebuild() {
    let world = World::new("proj").await;

    let _system: Vec<support::Child> = [
        vec!["process", "product"],
        vec!["process", "stock"],
        vec!["process", "order"],
        vec!["process", "payment"],
        vec!["sagas"],
    ]
    .iter()
    .map(|a| world.spawn(a, &a.join("-")))
    .collect();
    let projector = |name: &str, generation: usize| {
        world.spawn(&["project", name], &format!("project-{name}-{generation}"))
    };
    let mut projectors: BTreeMap<&str, support::Child> = ["products", "stock", "orders"]
        .iter()
        .map(|n| (*n, projector(n, 0)))
        .collect();

    let skus = ["P-1", "P-2", "P-3", "P-4"];
    for (i, sku) in skus.iter().enumerate() {
        let create = CreateProduct {
            sku: (*sku).into(),
            name: format!("Product {i}"),
            category: if i % 2 == 0 {
                "kitchen".into()
            } else {
                "garden".into()
            },
            price: Money::new(1_000 + 250 * i as i64, "EUR").expect("money"),
        };
        world
            .send(Context::Catalog, sku, ProductCommand::CreateProduct(create))
            .await;
        world
            .send(
                Context::Inventory,
                sku,
                StockCommand::ReceiveStock(ReceiveStock { quantity: 40 }),
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
    world
        .producer
        .flush(Duration::from_secs(30))
        .expect("flush");
    world
        .wait_until_orders_are_priced(
            "P-2",
            &CustomerId::new(Uuid::new_v4().to_string()).expect("customer"),
        )
        .await;

    let customers: Vec<CustomerId> = (0..30)
        .map(|_| CustomerId::new(Uuid::new_v4().to_string()).expect("customer"))
        .collect();
    for n in 0..300usize {
        let order = OrderId::new(Uuid::new_v4().to_string()).expect("order");
        let place = PlaceOrder {
            order_id: order.clone(),
            customer_id: customers[n % customers.len()].clone(),
            lines: vec![OrderLineRequest {
                sku: Sku::new(skus[n % skus.len()]).expect("sku"),
                quantity: 1 + (n % 2) as u32,
            }],
            card_token: if n % 9 == 4 {
                "card-declined".into()
            } else {
                "card-ok".into()
            },
            deadline_at: now_ms() + 600_000,
            placed_at: now_ms() + n as i64,
        };
        world
            .send(
                Context::Orders,
                order.as_str(),
                OrderCommand::PlaceOrder(place),
            )
            .await;
        // (a) Projectors are SIGKILLed and restarted while events flow.
        if n % 75 == 40 {
            world
                .producer
                .flush(Duration::from_secs(30))
                .expect("flush");
            let name = ["products", "stock", "orders"][n % 3];
            if let Some(p) = projectors.get_mut(name) {
                p.kill_hard();
            }
            projectors.insert(name, projector(name, n));
            let orders = projectors.get_mut("orders").expect("orders projector");
            orders.kill_hard();
            projectors.insert("orders", projector("orders", n + 1));
        }
    }
    world
        .producer
        .flush(Duration::from_secs(30))
        .expect("flush");

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
    let rt = tokio::runtime::Handle::current();
    let summaries: Vec<OrderSummary> = tokio::task::block_in_place(|| {
        support::read_topic(
            &world.topics.order_summary(),
            x.orders.len(),
            Duration::from_secs(60),
        )
        .iter()
        .map(|m| {
            rt.block_on(world.codec.decode(m.payload().expect("value")))
                .expect("decode summary")
        })
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
    let groups: Vec<String> = ["products", "stock", "orders"]
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
    let _replayers: Vec<support::Child> = ["products", "stock", "orders"]
        .iter()
        .map(|n| projector(n, 999))
        .collect();
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
