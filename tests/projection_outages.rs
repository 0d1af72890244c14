//! Read models through outages of their stores, on the real stack. This file stops and restarts
//! shared servers, so `scripts/test` runs it alone, after the tests that run side by side.
//!
//! - Cassandra stopped for 30 s while orders flow: the projectors wait, retry and catch up with
//!   nothing lost.
//! - Redis stopped, then started empty: ScyllaDB keeps being written meanwhile; afterwards the
//!   cache is refilled by later events and never holds a version older than ScyllaDB's.

use std::time::Duration;

use streamcart_aggregates::catalog::{ChangePrice, ProductCommand};
use streamcart_aggregates::values::{CustomerId, Money};
use streamcart_projectors::{CacheOptions, CassandraStore, ProductCache};
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::commands::{self, GOOD_CARD};
use streamcart_tests::read_models::wait_equal;
use streamcart_tests::world::World;

async fn place_orders(
    world: &World,
    customer: &CustomerId,
    skus: &[&str],
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let order = commands::place_order(customer, &[(skus[i % skus.len()], 1)], GOOD_CARD);
        ids.push(world.place(order).await);
    }
    world.flush();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projectors_ride_out_cassandra_and_redis_outages() {
    let world = World::new("outage").await;
    let _system = world.spawn_system();
    let _projectors = world.spawn_projectors();

    let skus = ["O-1", "O-2"];
    for sku in skus {
        world
            .seed_product(sku, &format!("Product {sku}"), "outage", 700, 1_000)
            .await;
    }
    world.flush();
    let customer = commands::customer();
    world.wait_until_orders_are_priced("O-2", &customer).await;
    let mut placed = place_orders(&world, &customer, &skus, 40).await;
    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    wait_equal(&store, &world, "before the outage").await;

    // Cassandra goes away for 30 s while orders keep flowing.
    tokio::task::block_in_place(|| support::stack(&["stop", "cassandra"]));
    for _ in 0..6 {
        placed.extend(place_orders(&world, &customer, &skus, 10).await);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tokio::task::block_in_place(|| support::stack(&["start", "cassandra"]));
    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store after restart");
    let x = wait_equal(&store, &world, "after Cassandra came back").await;
    for id in &placed {
        assert!(
            x.orders.contains_key(id),
            "order {id} placed around the outage is in the read model"
        );
    }

    // Redis goes away; prices change meanwhile; Redis comes back empty.
    let cache = ProductCache::connect(
        &support::redis_url(),
        CacheOptions {
            prefix: format!("{}streamcart:product:", world.prefix),
            ..CacheOptions::default()
        },
    )
    .await
    .expect("cache");
    tokio::task::block_in_place(|| support::stack(&["stop", "redis"]));
    world
        .send(
            Context::Catalog,
            "O-1",
            ProductCommand::ChangePrice(ChangePrice {
                price: Money::new(800, "EUR").expect("money"),
            }),
        )
        .await;
    world.flush();
    tokio::time::sleep(Duration::from_secs(5)).await;
    tokio::task::block_in_place(|| support::stack(&["start", "redis"]));
    wait_equal(
        &store,
        &world,
        "after the price change during the Redis outage",
    )
    .await;
    // A later event refills the entry; at no point is an older version than ScyllaDB's cached.
    world
        .send(
            Context::Catalog,
            "O-2",
            ProductCommand::ChangePrice(ChangePrice {
                price: Money::new(900, "EUR").expect("money"),
            }),
        )
        .await;
    world.flush();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = store.product("O-2").await.expect("read").expect("O-2");
        let cached = cache.get("O-2").await.ok().flatten();
        if cached.as_ref().is_some_and(|c| c == &stored) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "O-2 not refilled: {cached:?} vs {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for sku in skus {
        let stored = store.product(sku).await.expect("read").expect("stored");
        if let Some(cached) = cache.get(sku).await.expect("cache get") {
            assert!(
                cached.version >= stored.version,
                "{sku}: cache older than ScyllaDB"
            );
        }
    }
}
