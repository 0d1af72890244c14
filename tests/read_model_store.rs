//! The read-model stores on the real stack: ScyllaDB tables (Cassandra locally) and the Redis
//! product cache. Every test owns its keyspace and its Redis key prefix.

use std::time::Duration;

use streamcart_aggregates::catalog::{
    ProductCategoryChanged, ProductCreated, ProductEvent, ProductPriceChanged, ProductRenamed,
};
use streamcart_aggregates::inventory::{StockCommitted, StockEvent, StockReceived, StockReserved};
use streamcart_aggregates::orders::{
    OrderAwaitingPayment, OrderConfirmed, OrderEvent, OrderLine, OrderLineReserved, OrderPlaced,
};
use streamcart_aggregates::values::{CustomerId, LineNo, Money, OrderId, PaymentId, Sku};
use streamcart_projectors::store::{
    InvalidateOutcome, PutOutcome, Replication, StoreConsistency, StoreOptions,
};
use streamcart_projectors::{
    CacheLookup, CacheOptions, CassandraStore, Mutation, OrderCursor, OrderLineRow, OrderRow,
    OrderStatus, Orders, ProductCache, ProductRow, Products, StockRow, Stocks, StoreError, fold,
};
use streamcart_schemas::EventEnvelope;
use streamcart_tests::{cassandra_node, redis_url, unique};
use uuid::Uuid;

const T0: i64 = 1_700_000_000_000;

/// A store in a fresh keyspace, dropped by [`drop_keyspace`] at the end of the test.
async fn store(name: &str) -> CassandraStore {
    CassandraStore::connect(&cassandra_node(), &unique(name))
        .await
        .expect("connect and migrate")
}

async fn drop_keyspace(store: &CassandraStore) {
    let _ = store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", store.keyspace()), &[])
        .await;
}

fn envelope<E>(id: &str, version: u64, payload: impl Into<E>) -> EventEnvelope<E> {
    EventEnvelope {
        event_id: Uuid::new_v4(),
        aggregate_id: id.to_owned(),
        version,
        occurred_at: T0 + i64::try_from(version).expect("small") * 1000,
        causation_id: Uuid::new_v4(),
        correlation_id: "read-model-store".to_owned(),
        payload: payload.into(),
    }
}

fn eur(amount: i64) -> Money {
    Money::positive(amount, "EUR").expect("money")
}

fn product_history(sku: &str) -> Vec<EventEnvelope<ProductEvent>> {
    vec![
        envelope(
            sku,
            1,
            ProductCreated {
                sku: Sku::new(sku).expect("sku"),
                name: "Mug".into(),
                category: "kitchen".into(),
                price: eur(1299),
            },
        ),
        envelope(
            sku,
            2,
            ProductRenamed {
                name: "Big mug".into(),
            },
        ),
        envelope(
            sku,
            3,
            ProductCategoryChanged {
                from: "kitchen".into(),
                to: "gifts".into(),
            },
        ),
        envelope(sku, 4, ProductPriceChanged { price: eur(1499) }),
    ]
}

fn product_row(sku: &str, category: &str, version: u64) -> ProductRow {
    ProductRow {
        sku: sku.into(),
        name: format!("Product {sku}"),
        category: category.into(),
        price_minor: 100,
        currency: "EUR".into(),
        discontinued: false,
        version,
        updated_at: T0,
    }
}

fn order_row(order_id: &str, customer: &str, placed_at: i64, version: u64) -> OrderRow {
    OrderRow {
        order_id: order_id.into(),
        customer_id: customer.into(),
        status: OrderStatus::Placed,
        reason: None,
        lines: vec![OrderLineRow {
            line_no: 1,
            sku: "SKU-1".into(),
            quantity: 2,
            unit_price_minor: 500,
        }],
        total_minor: 1000,
        currency: "EUR".into(),
        placed_at,
        updated_at: placed_at,
        version,
    }
}

async fn listing(store: &CassandraStore, category: &str) -> Vec<String> {
    store
        .products_by_category(category, None, 100)
        .await
        .expect("listing")
        .items
        .into_iter()
        .map(|row| row.sku)
        .collect()
}

#[tokio::test]
async fn migrations_run_once_and_a_second_start_is_a_no_op() {
    let first = store("rms_migrate").await;
    let mut applied = first.applied_at_connect().to_vec();
    applied.sort();
    assert_eq!(
        applied,
        [
            "g1/1", "g1/2", "g1/3", "g1/4", "g1/5", "global/1", "global/2"
        ]
    );
    let ledger = |store: &CassandraStore| {
        let session = store.session().clone();
        let ks = store.keyspace().to_owned();
        async move {
            session
                .query_unpaged(
                    format!("SELECT scope, id, applied_at FROM {ks}.schema_migrations"),
                    &[],
                )
                .await
                .expect("ledger")
                .into_rows_result()
                .expect("rows")
                .rows::<(String, i32, scylla::value::CqlTimestamp)>()
                .expect("typed")
                .map(|r| r.expect("row"))
                .map(|(scope, id, at)| (scope, id, at.0))
                .collect::<Vec<_>>()
        }
    };
    let before = ledger(&first).await;
    assert_eq!(before.len(), 7);

    let second = CassandraStore::connect(&cassandra_node(), first.keyspace())
        .await
        .expect("second start");
    assert!(
        second.applied_at_connect().is_empty(),
        "{:?}",
        second.applied_at_connect()
    );
    assert_eq!(ledger(&second).await, before, "nothing re-applied");
    drop_keyspace(&first).await;
}

#[tokio::test]
async fn mutations_out_of_order_or_twice_never_move_rows_backwards() {
    let store = store("rms_order").await;

    let (product, product_mutations) = fold::<Products>(None, &product_history("SKU-1"));
    let order_id = "0190c7a2-1b2c-7d3e-8f40-123456789abc";
    let line = |n| LineNo::new(n).expect("line");
    let order_events: Vec<EventEnvelope<OrderEvent>> = vec![
        envelope(
            order_id,
            1,
            OrderPlaced {
                order_id: OrderId::new(order_id).expect("order"),
                customer_id: CustomerId::new("cust-1").expect("customer"),
                lines: vec![OrderLine {
                    line_no: line(1),
                    sku: Sku::new("SKU-1").expect("sku"),
                    quantity: 2,
                    unit_price: eur(500),
                }],
                total: eur(1000),
                card_token: "tok".into(),
                deadline_at: T0 + 60_000,
                placed_at: T0,
            },
        ),
        envelope(order_id, 2, OrderLineReserved { line_no: line(1) }),
        envelope(
            order_id,
            3,
            OrderAwaitingPayment {
                total: eur(1000),
                card_token: "tok".into(),
                customer_id: CustomerId::new("cust-1").expect("customer"),
            },
        ),
        envelope(
            order_id,
            4,
            OrderConfirmed {
                payment_id: PaymentId::for_order(&OrderId::new(order_id).expect("order")),
                lines: vec![],
            },
        ),
    ];
    let (order, order_mutations) = fold::<Orders>(None, &order_events);
    let order_ref = OrderId::new(order_id).expect("order");
    let stock_events: Vec<EventEnvelope<StockEvent>> = vec![
        envelope("SKU-1", 1, StockReceived { quantity: 10 }),
        envelope(
            "SKU-1",
            2,
            StockReserved {
                order_id: order_ref.clone(),
                line_no: line(1),
                quantity: 2,
            },
        ),
        envelope(
            "SKU-1",
            3,
            StockCommitted {
                order_id: order_ref,
                line_no: line(1),
                quantity: 2,
            },
        ),
    ];
    let (stock, stock_mutations) = fold::<Stocks>(None, &stock_events);

    let mut all: Vec<Mutation> = product_mutations
        .into_iter()
        .chain(order_mutations)
        .chain(stock_mutations)
        .collect();
    // Newest first: every older write that follows must lose.
    all.sort_by_key(|m| std::cmp::Reverse(m.version()));
    store.apply(&all).await.expect("apply newest first");
    // Then everything again, oldest first, as a replay from offset zero would.
    all.reverse();
    store.apply(&all).await.expect("replay");
    store.apply(&all[..2]).await.expect("duplicate");

    let product = product.expect("product row");
    assert_eq!(store.product("SKU-1").await.expect("read"), Some(product));
    assert_eq!(listing(&store, "kitchen").await, Vec::<String>::new());
    assert_eq!(listing(&store, "gifts").await, vec!["SKU-1".to_owned()]);
    let order = order.expect("order row");
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(store.order(order_id).await.expect("read"), Some(order));
    let stock = stock.expect("stock row");
    assert_eq!(
        stock,
        StockRow {
            sku: "SKU-1".into(),
            received: 10,
            available: 8,
            reserved: 0,
            sold: 2,
            version: 3,
            updated_at: T0 + 3000,
        }
    );
    assert_eq!(store.stock("SKU-1").await.expect("read"), Some(stock));
    assert_eq!(store.product("SKU-404").await.expect("read"), None);
    assert_eq!(store.order("nope").await.expect("read"), None);
    drop_keyspace(&store).await;
}

#[tokio::test]
async fn a_category_change_leaves_the_old_listing_whatever_the_order() {
    let store = store("rms_category").await;
    let events = product_history("SKU-9");
    let created = fold::<Products>(None, &events[..1]).1;
    let (row_v1, _) = fold::<Products>(None, &events[..1]);
    let moved = fold::<Products>(row_v1, &events[2..3]).1;
    assert!(moved.iter().any(
        |m| matches!(m, Mutation::RemoveFromCategory { category, .. } if category == "kitchen")
    ));

    // The move lands before the creation it follows.
    store.apply(&moved).await.expect("move");
    store.apply(&created).await.expect("late create");
    assert_eq!(listing(&store, "kitchen").await, Vec::<String>::new());
    assert_eq!(listing(&store, "gifts").await, vec!["SKU-9".to_owned()]);

    // Moving back at a later version wins over the older delete.
    let back = vec![
        Mutation::RemoveFromCategory {
            category: "gifts".into(),
            sku: "SKU-9".into(),
            version: 5,
        },
        Mutation::UpsertProduct(product_row("SKU-9", "kitchen", 5)),
    ];
    store.apply(&back).await.expect("move back");
    store.apply(&moved).await.expect("stale move redelivered");
    assert_eq!(listing(&store, "kitchen").await, vec!["SKU-9".to_owned()]);
    assert_eq!(listing(&store, "gifts").await, Vec::<String>::new());
    assert_eq!(
        store
            .product("SKU-9")
            .await
            .expect("read")
            .map(|r| r.version),
        Some(5)
    );
    drop_keyspace(&store).await;
}

#[tokio::test]
async fn listings_page_by_sku_and_customers_see_newest_orders_first() {
    let store = store("rms_paging").await;
    let mut mutations: Vec<Mutation> = (0..25)
        .map(|i| Mutation::UpsertProduct(product_row(&format!("SKU-{i:03}"), "books", 1)))
        .collect();
    mutations.push(Mutation::UpsertProduct(product_row("SKU-X", "games", 1)));
    // Seven orders; two share a millisecond, and one belongs to someone else.
    let placed = [5, 1, 7, 3, 3, 6, 2];
    for (i, at) in placed.iter().enumerate() {
        let id = format!("0190c7a2-0000-7000-8000-{i:012}");
        mutations.push(Mutation::UpsertOrder(order_row(
            &id,
            "cust-a",
            T0 + at * 1000,
            1,
        )));
    }
    mutations.push(Mutation::UpsertOrder(order_row(
        "0190c7a2-0000-7000-8000-999999999999",
        "cust-b",
        T0,
        1,
    )));
    store.apply(&mutations).await.expect("apply");

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let page = store
            .products_by_category("books", after.as_deref(), 10)
            .await
            .expect("page");
        sizes.push(page.items.len());
        seen.extend(page.items.iter().map(|r| r.sku.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    let expected: Vec<String> = (0..25).map(|i| format!("SKU-{i:03}")).collect();
    assert_eq!(seen, expected);

    let mut orders = Vec::new();
    let mut before: Option<OrderCursor> = None;
    loop {
        let page = store
            .orders_by_customer("cust-a", before.as_ref(), 3)
            .await
            .expect("page");
        orders.extend(page.items);
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let times: Vec<i64> = orders.iter().map(|o| (o.placed_at - T0) / 1000).collect();
    assert_eq!(times, vec![7, 6, 5, 3, 3, 2, 1]);
    assert!(orders.iter().all(|o| o.customer_id == "cust-a"));
    // Ties are broken by order id, descending, so paging never skips or repeats one.
    assert!(orders[3].order_id > orders[4].order_id);
    assert_eq!(orders.len(), 7);
    assert_eq!(orders[0].lines.len(), 1);
    drop_keyspace(&store).await;
}

#[tokio::test]
async fn a_rebuilt_generation_is_filled_aside_and_then_switched_to() {
    let g1 = store("rms_generation").await;
    assert_eq!(g1.active_generation("products").await.expect("active"), 1);
    g1.apply(&[Mutation::UpsertProduct(product_row("SKU-1", "old", 7))])
        .await
        .expect("g1 write");

    let refused = g1.activate("products", 2).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::GenerationNotReady { generation: 2 })
        ),
        "{refused:?}"
    );

    let g2 = g1.with_generation(2).await.expect("generation 2");
    assert_eq!(g2.generation(), 2);
    assert_eq!(
        g2.product("SKU-1").await.expect("read"),
        None,
        "fresh tables"
    );
    g2.apply(&[Mutation::UpsertProduct(product_row("SKU-1", "new", 7))])
        .await
        .expect("g2 write");
    // Readers still on generation 1 until the switch.
    assert_eq!(g1.active_generation("products").await.expect("active"), 1);

    g1.activate("products", 2).await.expect("activate");
    assert_eq!(g1.active_generation("products").await.expect("active"), 2);
    assert_eq!(g1.active_generation("orders").await.expect("active"), 1);

    // A reader that starts now connects to whatever is active.
    let reader = CassandraStore::connect(&cassandra_node(), g1.keyspace())
        .await
        .expect("reader");
    let active = reader.active_generation("products").await.expect("active");
    let reader = reader.with_generation(active).await.expect("switch");
    assert_eq!(
        reader
            .product("SKU-1")
            .await
            .expect("read")
            .map(|r| r.category),
        Some("new".to_owned())
    );
    assert_eq!(
        g1.product("SKU-1").await.expect("read").map(|r| r.category),
        Some("old".to_owned()),
        "the old generation is left as it was"
    );
    drop_keyspace(&g1).await;
}

async fn cache(name: &str) -> (ProductCache, redis::aio::ConnectionManager) {
    let options = CacheOptions {
        prefix: format!("{}:", unique(name)),
        ttl: Duration::from_secs(60),
    };
    let cache = ProductCache::connect(&redis_url(), options)
        .await
        .expect("redis");
    let raw = redis::aio::ConnectionManager::new(redis::Client::open(redis_url()).expect("url"))
        .await
        .expect("redis");
    (cache, raw)
}

async fn clean(cache: &ProductCache, raw: &mut redis::aio::ConnectionManager, skus: &[&str]) {
    for sku in skus {
        let _: Result<i64, _> = redis::cmd("DEL").arg(cache.key(sku)).query_async(raw).await;
    }
}

#[tokio::test]
async fn the_cache_script_refuses_older_versions_and_accepts_newer_ones() {
    let (cache, mut raw) = cache("rms_cache").await;
    let row = |version| ProductRow {
        name: format!("v{version}"),
        ..product_row("SKU-1", "kitchen", version)
    };

    assert_eq!(cache.get("SKU-1").await.expect("get"), None);
    assert_eq!(
        cache.put_if_newer(&row(2)).await.expect("put"),
        PutOutcome::Stored
    );
    assert_eq!(
        cache.put_if_newer(&row(1)).await.expect("put"),
        PutOutcome::Refused { current: 2 }
    );
    assert_eq!(
        cache.put_if_newer(&row(2)).await.expect("put"),
        PutOutcome::Unchanged
    );
    assert_eq!(cache.get("SKU-1").await.expect("get"), Some(row(2)));
    assert_eq!(
        cache.put_if_newer(&row(10)).await.expect("put"),
        PutOutcome::Stored,
        "versions compare as numbers, not text"
    );
    assert_eq!(
        cache.put_if_newer(&row(9)).await.expect("put"),
        PutOutcome::Refused { current: 10 }
    );
    assert_eq!(cache.get("SKU-1").await.expect("get"), Some(row(10)));

    let ttl: i64 = redis::cmd("PTTL")
        .arg(cache.key("SKU-1"))
        .query_async(&mut raw)
        .await
        .expect("pttl");
    assert!(ttl > 0 && ttl <= 60_000, "entries expire: {ttl}");

    // The cache follows the store's mutations.
    cache
        .apply(&[
            Mutation::RemoveFromCategory {
                category: "kitchen".into(),
                sku: "SKU-1".into(),
                version: 11,
            },
            Mutation::UpsertProduct(row(11)),
        ])
        .await
        .expect("apply");
    assert_eq!(cache.get("SKU-1").await.expect("get"), Some(row(11)));
    clean(&cache, &mut raw, &["SKU-1"]).await;
}

#[tokio::test]
async fn invalidation_keeps_newer_entries_and_blocks_older_refills() {
    let (cache, mut raw) = cache("rms_invalidate").await;
    let row = |version| product_row("SKU-2", "kitchen", version);

    cache.put_if_newer(&row(3)).await.expect("put");
    assert_eq!(
        cache
            .invalidate_if_not_newer("SKU-2", 2)
            .await
            .expect("inv"),
        InvalidateOutcome::KeptNewer { current: 3 }
    );
    assert_eq!(cache.get("SKU-2").await.expect("get"), Some(row(3)));

    assert_eq!(
        cache
            .invalidate_if_not_newer("SKU-2", 4)
            .await
            .expect("inv"),
        InvalidateOutcome::Invalidated
    );
    assert_eq!(cache.lookup("SKU-2").await.expect("get"), CacheLookup::Miss);
    // A reader that loaded version 3 before version 4 was written must not put it back.
    assert_eq!(
        cache.put_if_newer(&row(3)).await.expect("put"),
        PutOutcome::Refused { current: 4 }
    );
    assert_eq!(
        cache.put_if_newer(&row(4)).await.expect("put"),
        PutOutcome::Stored
    );
    assert_eq!(cache.get("SKU-2").await.expect("get"), Some(row(4)));

    // Invalidating an entry that does not exist still sets the floor.
    assert_eq!(
        cache
            .invalidate_if_not_newer("SKU-3", 1)
            .await
            .expect("inv"),
        InvalidateOutcome::Invalidated
    );
    assert!(!cache.is_missing("SKU-3").await.expect("missing"));
    clean(&cache, &mut raw, &["SKU-2", "SKU-3"]).await;
}

#[tokio::test]
async fn negative_entries_never_hide_a_known_product() {
    let (cache, mut raw) = cache("rms_missing").await;

    assert!(
        cache
            .put_missing("SKU-4", Duration::from_secs(5))
            .await
            .expect("missing")
    );
    assert!(cache.is_missing("SKU-4").await.expect("missing"));
    assert_eq!(
        cache.lookup("SKU-4").await.expect("get"),
        CacheLookup::Missing
    );
    assert_eq!(cache.get("SKU-4").await.expect("get"), None);

    // The product is created: the projector's write replaces the negative entry.
    let created = product_row("SKU-4", "kitchen", 1);
    assert_eq!(
        cache.put_if_newer(&created).await.expect("put"),
        PutOutcome::Stored
    );
    assert!(!cache.is_missing("SKU-4").await.expect("missing"));
    // A reader that saw no row before the creation cannot mark it missing any more.
    assert!(
        !cache
            .put_missing("SKU-4", Duration::from_secs(5))
            .await
            .expect("missing")
    );
    assert_eq!(
        cache.lookup("SKU-4").await.expect("get"),
        CacheLookup::Hit(created)
    );

    // Negative entries expire by themselves.
    assert!(
        cache
            .put_missing("SKU-5", Duration::from_millis(200))
            .await
            .expect("missing")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!cache.is_missing("SKU-5").await.expect("missing"));
    clean(&cache, &mut raw, &["SKU-4", "SKU-5"]).await;
}

#[tokio::test]
async fn the_keyspace_is_created_as_configured_and_refused_when_replicated_otherwise() {
    let keyspace = unique("rstore_repl");
    // SimpleSnitch, the local Cassandra's, names its one datacenter `datacenter1`.
    let nts = StoreOptions {
        replication: Replication::NetworkTopology {
            datacenters: vec![("datacenter1".into(), 1)],
        },
        consistency: StoreConsistency::All,
        ..StoreOptions::new(keyspace.clone())
    };
    let store = CassandraStore::connect_with(&cassandra_node(), nts.clone())
        .await
        .expect("keyspace created with NetworkTopologyStrategy");
    // Every statement runs at ALL, which the one node can answer.
    assert_eq!(store.product("none").await.expect("read at ALL"), None);
    CassandraStore::connect_with(&cassandra_node(), nts)
        .await
        .expect("the same replication is accepted on the next start");
    let err = CassandraStore::connect(&cassandra_node(), &keyspace)
        .await
        .expect_err("SimpleStrategy asked of a NetworkTopologyStrategy keyspace");
    assert!(
        matches!(err, StoreError::ReplicationDiffers { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient(), "retrying cannot mend it");
    let text = err.to_string();
    for part in [
        format!("keyspace {keyspace} is replicated as"),
        "NetworkTopologyStrategy".to_owned(),
        "'datacenter1': '1'".to_owned(),
        "asks for {'class': 'SimpleStrategy', 'replication_factor': 1}".to_owned(),
    ] {
        assert!(text.contains(&part), "{part:?} not in {text:?}");
    }
    drop_keyspace(&store).await;
}
