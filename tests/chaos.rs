//! Chaos: one flash sale with every role running (command processors, saga, projectors, the HTTP
//! edge and the Kafka Connect sink) while, in one run, the broker is frozen past the transaction
//! timeout, the broker is SIGKILLed and restarted, the registry and Cassandra are each stopped
//! for 30 s, and SIGKILLs rotate over every role.
//!
//! After it settles: every flash-sale invariant, the read models equal to a fold of the event
//! topics, PostgreSQL (fed by the order summary stream) equal to the read model, every
//! dead-letter topic empty and every role still running. It prints, per fault, the seconds from
//! the fault's end to the first batch each consumer group committed.
//!
//! It stops and kills servers of the stack, so it runs alone (scripts/test runs it last).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use streamcart_aggregates::catalog::{ChangePrice, CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand, StockEvent};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_projectors::CassandraStore;
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::ledger::{assert_sale_invariants, check_versions, fold, settled};
use streamcart_tests::pipelines::{Pipelines, pg_differences, run_connect_script};
use streamcart_tests::read_models::wait_equal;
use streamcart_tests::world::{PARTITIONS, World};
use uuid::Uuid;

const HOT: &str = "SKU-HOT";
const HOT_UNITS: u32 = 100;
const DECLINED_CARD: &str = "card-declined";
const SECRET: &str = "chaos-test-secret-0123456789abcdef0123";
/// Every role the test runs, by name, with its arguments.
const ROLES: [(&str, &[&str]); 9] = [
    ("product", &["process", "product"]),
    ("stock", &["process", "stock"]),
    ("order", &["process", "order"]),
    ("payment", &["process", "payment"]),
    ("sagas", &["sagas"]),
    ("project-products", &["project", "products"]),
    ("project-stock", &["project", "stock"]),
    ("project-orders", &["project", "orders"]),
    ("serve", &["serve"]),
];
const MIN_KILLS: usize = 20;
/// Longest a consumer group may take to commit again after a fault ends (the goal is 10 s).
const RECOVERY_BOUND: Duration = Duration::from_secs(90);

/// The broker's pid (the leader of its process group).
fn broker_pid() -> String {
    let dir = std::env::var("STREAMCART_STACK_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack").to_owned());
    let pid = std::fs::read_to_string(format!("{dir}/run/kafka.pid")).expect("kafka pid file");
    pid.trim().to_owned()
}

/// Waits until the killed broker is gone (its data directory lock is free).
fn wait_broker_gone(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let alive = std::process::Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the killed broker ({pid}) did not go away");
}

/// Signals the broker's JVM (the pid file's process: the stack execs Java in place).
fn broker_signal(signal: &str) {
    let pid = broker_pid();
    let pid = pid.as_str();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} the broker ({pid})");
}

/// The running roles, restartable by name.
struct Roles<'w> {
    world: &'w World,
    port: u16,
    children: HashMap<&'static str, support::Child>,
    generation: usize,
    kills: BTreeMap<&'static str, usize>,
}

impl<'w> Roles<'w> {
    fn start(world: &'w World) -> Self {
        let mut r = Self {
            world,
            port: support::free_port(),
            children: HashMap::new(),
            generation: 0,
            kills: BTreeMap::new(),
        };
        for (name, _) in ROLES {
            r.spawn(name);
        }
        r
    }

    fn spawn(&mut self, name: &'static str) {
        let args = ROLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
            .expect("role");
        let env = [
            ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "5".to_owned()),
            ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "300".to_owned()),
            (
                "STREAMCART_PAYMENTS_DECLINED_CARDS",
                DECLINED_CARD.to_owned(),
            ),
            ("STREAMCART_API_LISTEN", format!("127.0.0.1:{}", self.port)),
            ("STREAMCART_JWT_HS256_SECRET", SECRET.to_owned()),
        ];
        let child = self
            .world
            .spawn_with(args, &env, &format!("{name}-{}", self.generation));
        self.generation += 1;
        self.children.insert(name, child);
    }

    /// SIGKILLs the role and starts it again at once (a new instance, the same instance id).
    fn kill(&mut self, name: &'static str) {
        if let Some(c) = self.children.get_mut(name) {
            c.kill_hard();
        }
        *self.kills.entry(name).or_default() += 1;
        self.spawn(name);
    }

    fn total_kills(&self) -> usize {
        self.kills.values().sum()
    }

    /// Roles whose process has exited.
    fn exited(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .filter_map(|(n, c)| match c.0.try_wait() {
                Ok(Some(status)) => Some(format!("{n} ({status})")),
                _ => None,
            })
            .collect()
    }
}

/// Every topic of the world, with its partitions: what a group's committed offsets are read for.
fn world_partitions(world: &World) -> TopicPartitionList {
    let mut names = vec![
        world.topics.command_results(),
        world.topics.order_summary(),
        world.topics.product_summary(),
    ];
    for ctx in Context::ALL {
        names.extend([world.topics.commands(ctx), world.topics.events(ctx)]);
    }
    let mut tpl = TopicPartitionList::new();
    for n in &names {
        for p in 0..PARTITIONS {
            tpl.add_partition(n, p);
        }
    }
    tpl
}

/// The consumer groups of this world, as the broker lists them.
fn world_groups(world: &World) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .expect("client");
    let id = world.prefix.trim_end_matches('.');
    match c.fetch_group_list(None, Duration::from_secs(10)) {
        Ok(list) => list
            .groups()
            .iter()
            .map(|g| g.name().to_owned())
            .filter(|n| n.contains(id))
            .collect(),
        Err(e) => panic!("listing consumer groups: {e}"),
    }
}

/// The sum of a group's committed offsets over the world's topics: it grows with every batch
/// the group commits. `None` while the broker does not answer.
fn committed_sum(group: &str, tpl: &TopicPartitionList) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .ok()?;
    let committed = c
        .committed_offsets(tpl.clone(), Duration::from_secs(5))
        .ok()?;
    Some(
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum(),
    )
}

/// Seconds from `fault_end` to the first commit of every group (polled twice a second), or
/// `None` for a group that did not commit within [`RECOVERY_BOUND`].
fn recovery(
    groups: &[String],
    tpl: &TopicPartitionList,
    fault_end: Instant,
) -> BTreeMap<String, Option<f64>> {
    let mut baseline: HashMap<&str, i64> = HashMap::new();
    let mut out: BTreeMap<String, Option<f64>> = groups.iter().map(|g| (g.clone(), None)).collect();
    while fault_end.elapsed() < RECOVERY_BOUND && out.values().any(Option::is_none) {
        for g in groups {
            if out[g].is_some() {
                continue;
            }
            let Some(sum) = committed_sum(g, tpl) else {
                continue;
            };
            match baseline.get(g.as_str()) {
                None => {
                    baseline.insert(g, sum);
                }
                Some(b) if sum > *b => {
                    out.insert(g.clone(), Some(fault_end.elapsed().as_secs_f64()));
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    out
}

/// High watermarks of every dead-letter topic of the world: all must be zero.
fn dead_letters(world: &World) -> BTreeMap<String, i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .expect("client");
    let md = c
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("metadata");
    let mut out = BTreeMap::new();
    for t in md.topics() {
        if !(t.name().starts_with(&world.prefix)
            || t.name().contains(world.prefix.trim_end_matches('.')))
            || !t.name().ends_with("dlq")
        {
            continue;
        }
        let mut total = 0;
        for p in t.partitions() {
            let (_, high) = c
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .expect("watermarks");
            total += high;
        }
        out.insert(t.name().to_owned(), total);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flash_sale_survives_broker_registry_and_store_faults_and_rotating_kills() {
    let world = Arc::new(World::new("chaos").await);
    let table = format!("{}order_summary", world.prefix.replace('.', "_"));
    let mut roles = Roles::start(&world);
    let _pipelines = Pipelines {
        prefix: world.prefix.clone(),
        tables: vec![
            table.clone(),
            format!("{}product_summary", world.prefix.replace('.', "_")),
        ],
    };
    let applied = tokio::task::block_in_place(|| run_connect_script(&world.prefix, "apply"));
    assert!(
        applied.status.success(),
        "scripts/connect apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    // The catalog and the stock.
    let skus: Vec<String> = std::iter::once(HOT.to_owned())
        .chain((1..=5).map(|i| format!("SKU-{i}")))
        .collect();
    for (i, sku) in skus.iter().enumerate() {
        let create = CreateProduct {
            sku: sku.clone(),
            name: format!("Product {sku}"),
            category: "sale".into(),
            price: Money::new(if i == 0 { 2_500 } else { 500 + 100 * i as i64 }, "EUR")
                .expect("money"),
        };
        world
            .send(Context::Catalog, sku, ProductCommand::CreateProduct(create))
            .await;
        let units = if i == 0 { HOT_UNITS } else { 10_000 };
        world
            .send(
                Context::Inventory,
                sku,
                StockCommand::ReceiveStock(ReceiveStock { quantity: units }),
            )
            .await;
    }
    world
        .producer
        .flush(Duration::from_secs(30))
        .expect("flush");
    let prober = CustomerId::new("chaos-prober").expect("customer");
    let probes = world.wait_until_orders_are_priced("SKU-1", &prober).await;

    // Orders flow, and prices change, for as long as the faults last: every role has input
    // before, during and after each fault.
    let stop = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let loader = {
        let (world, stop, placed, skus) =
            (world.clone(), stop.clone(), placed.clone(), skus.clone());
        tokio::spawn(async move {
            let customers: Vec<CustomerId> = (0..300)
                .map(|_| CustomerId::new(Uuid::new_v4().to_string()).expect("customer"))
                .collect();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let (lines, card, deadline) = {
                    let mut rng = rand::rng();
                    // Most orders can still be served once the hot SKU is sold out, so that
                    // every role (payments too) keeps having input until the end.
                    let mut lines = vec![OrderLineRequest {
                        sku: Sku::new(skus[1 + n % 5].clone()).expect("sku"),
                        quantity: rng.random_range(1..=3),
                    }];
                    if n.is_multiple_of(3) {
                        lines.push(OrderLineRequest {
                            sku: Sku::new(HOT).expect("sku"),
                            quantity: rng.random_range(1..=2),
                        });
                    }
                    let card = if n % 8 == 3 {
                        DECLINED_CARD.to_owned()
                    } else {
                        format!("card-{}", n % 97)
                    };
                    // One in ten expires while in flight (some with a payment on its way).
                    let deadline = if n % 10 == 5 {
                        now_ms() + rng.random_range(200..2_000)
                    } else {
                        now_ms() + 1_800_000
                    };
                    (lines, card, deadline)
                };
                let order_id = OrderId::new(Uuid::new_v4().to_string()).expect("order id");
                let place = PlaceOrder {
                    order_id: order_id.clone(),
                    customer_id: customers[n % customers.len()].clone(),
                    lines,
                    card_token: card,
                    deadline_at: deadline,
                    placed_at: now_ms(),
                };
                world
                    .send(
                        Context::Orders,
                        order_id.as_str(),
                        OrderCommand::PlaceOrder(place),
                    )
                    .await;
                if n.is_multiple_of(20) {
                    // Alternating prices: every change is a real change, hence an event. A SKU's
                    // successive prices differ by 50 ± 6 cents, and its first (650 to 656) is
                    // none of the creation prices (600 to 1,000); from 600, SKU-1's first
                    // change set the price it already had, which appends nothing.
                    let sku = &skus[1 + (n / 20) % 5];
                    let amount = 650 + ((n / 100) % 2) as i64 * 50 + (n % 7) as i64;
                    world
                        .send(
                            Context::Catalog,
                            sku,
                            ProductCommand::ChangePrice(ChangePrice {
                                price: Money::new(amount, "EUR").expect("money"),
                            }),
                        )
                        .await;
                }
                n += 1;
                placed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        })
    };

    // Warm up, then learn the groups every role committed under.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let tpl = world_partitions(&world);
    let groups = tokio::task::block_in_place(|| world_groups(&world));
    assert!(
        groups.len() >= 9,
        "expected a consumer group per consuming role and the sink, found {groups:?}"
    );

    // SIGKILLs rotate over every role in the background of the faults.
    let order: Vec<&'static str> = ROLES.iter().map(|(n, _)| *n).collect();
    let mut next = 0usize;
    let mut kill_some = |roles: &mut Roles<'_>, how_many: usize| {
        for _ in 0..how_many {
            roles.kill(order[next % order.len()]);
            next += 1;
        }
    };

    let mut figures: Vec<(&str, BTreeMap<String, Option<f64>>)> = Vec::new();
    let faults: [&str; 4] = [
        "broker frozen 15 s",
        "broker killed",
        "registry stopped 30 s",
        "cassandra stopped 30 s",
    ];
    for fault in faults {
        kill_some(&mut roles, 3);
        match fault {
            "broker frozen 15 s" => {
                broker_signal("STOP");
                tokio::time::sleep(Duration::from_secs(15)).await;
                broker_signal("CONT");
            }
            "broker killed" => {
                let pid = broker_pid();
                broker_signal("KILL");
                tokio::task::block_in_place(|| {
                    wait_broker_gone(&pid);
                    support::stack(&["start", "kafka"]);
                });
            }
            "registry stopped 30 s" => {
                tokio::task::block_in_place(|| support::stack(&["stop", "registry"]));
                tokio::time::sleep(Duration::from_secs(30)).await;
                tokio::task::block_in_place(|| support::stack(&["start", "registry"]));
            }
            _ => {
                tokio::task::block_in_place(|| support::stack(&["stop", "cassandra"]));
                tokio::time::sleep(Duration::from_secs(30)).await;
                tokio::task::block_in_place(|| support::stack(&["start", "cassandra"]));
            }
        }
        let end = Instant::now();
        kill_some(&mut roles, 2);
        let r = tokio::task::block_in_place(|| recovery(&groups, &tpl, end));
        eprintln!("chaos: after {fault}: {r:?}");
        figures.push((fault, r));
    }
    while roles.total_kills() < MIN_KILLS || roles.kills.values().any(|k| *k < 2) {
        kill_some(&mut roles, 1);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    loader.await.expect("loader");
    world
        .producer
        .flush(Duration::from_secs(60))
        .expect("flush");
    let loaded = placed.load(Ordering::Relaxed);
    let mut orders_sent;

    // Settle.
    let deadline = Instant::now() + Duration::from_secs(420);
    let (stock, orders, payments, ledger) = loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (stock, orders, payments) = tokio::task::block_in_place(|| {
            (
                world.events::<StockEvent>(Context::Inventory),
                world.events::<OrderEvent>(Context::Orders),
                world.events::<PaymentEvent>(Context::Payments),
            )
        });
        // Probe orders placed before the catalog copy knew the SKU were refused, not placed.
        orders_sent = loaded
            + orders
                .iter()
                .filter(|e| {
                    probes.contains(&e.aggregate_id)
                        && matches!(e.payload, OrderEvent::OrderPlaced(_))
                })
                .count();
        let ledger = fold(&stock, &orders, &payments);
        if settled(&ledger, orders_sent) || Instant::now() > deadline {
            break (stock, orders, payments, ledger);
        }
    };

    eprintln!("chaos: recovery, seconds from the fault's end to each group's first commit:");
    for (fault, r) in &figures {
        let worst = r
            .values()
            .map(|s| s.unwrap_or(f64::INFINITY))
            .fold(0.0, f64::max);
        eprintln!("  {fault}: worst {worst:.1} s");
        for (g, s) in r {
            let g = g.replace(&world.prefix, "");
            match s {
                Some(s) => eprintln!("    {g}: {s:.1} s"),
                None => eprintln!("    {g}: no commit within {} s", RECOVERY_BOUND.as_secs()),
            }
        }
    }
    eprintln!(
        "chaos: orders {orders_sent}, kills {} {:?}, statuses {:?}",
        roles.total_kills(),
        roles.kills,
        ledger.cancel_reasons
    );

    assert_sale_invariants(&ledger, orders_sent, &skus, HOT, HOT_UNITS);
    check_versions(&stock, "stock");
    check_versions(&orders, "order");
    check_versions(&payments, "payment");

    // The read models equal a fold of the event topics, and PostgreSQL (through the summary
    // stream and the sink) equals the read model.
    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    let x = wait_equal(&store, &world, "after the chaos").await;
    let (pg, conn) = tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("postgres");
    tokio::spawn(conn);
    let pg_deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let diffs = pg_differences(&pg, &table, &store, &x).await;
        if diffs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < pg_deadline,
            "PostgreSQL differs from the read model: {:?}",
            &diffs[..diffs.len().min(5)]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let dlq = tokio::task::block_in_place(|| dead_letters(&world));
    assert!(
        dlq.values().all(|n| *n == 0),
        "dead-letter topics must be empty: {dlq:?}"
    );
    let exited = roles.exited();
    assert!(exited.is_empty(), "roles that stopped: {exited:?}");
    for (fault, r) in &figures {
        let stuck: Vec<_> = r
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(g, _)| g)
            .collect();
        assert!(
            stuck.is_empty(),
            "after {fault}, groups that never committed again: {stuck:?}"
        );
    }
    assert!(roles.total_kills() >= MIN_KILLS);
    assert!(roles.kills.values().all(|k| *k >= 2), "{:?}", roles.kills);
}
