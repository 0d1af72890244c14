//! A small streamcart world for read-model tests: topics under a unique prefix and keyspace,
//! roles spawned against them, commands sent as any Kafka client would, and the read models
//! expected from the event topics (computed without the projection code) compared with the store.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use streamcart_aggregates::catalog::ProductEvent;
use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::{CancelReason, OrderEvent};
use streamcart_projectors::CassandraStore;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{
    CommandEnvelope, CommandPayload, EventEnvelope, EventPayload, WireRecord,
};
use streamcart_schemas::topics::{Context, Topics};
use uuid::Uuid;

use crate as support;

/// Partitions of every topic of a world.
pub const PARTITIONS: i32 = 4;

/// Milliseconds since the epoch (UTC).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Topics, keyspace and clients of one test's own streamcart.
#[allow(missing_debug_implementations)]
pub struct World {
    /// Topic prefix.
    pub prefix: String,
    /// Read-model keyspace.
    pub keyspace: String,
    /// Topic names.
    pub topics: Topics,
    /// Registry codec.
    pub codec: Codec,
    /// Command producer.
    pub producer: ThreadedProducer<DefaultProducerContext>,
}

impl World {
    /// Starts a streamcart role against this world.
    pub fn spawn(&self, args: &[&str], log: &str) -> support::Child {
        self.spawn_with(args, &[], log)
    }

    /// Starts a streamcart role against this world, with more environment on top.
    pub fn spawn_with(&self, args: &[&str], extra: &[(&str, String)], log: &str) -> support::Child {
        let mut env = vec![
            ("STREAMCART_TOPIC_PREFIX", self.prefix.clone()),
            ("STREAMCART_KEYSPACE", self.keyspace.clone()),
            ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
            ("STREAMCART_CASSANDRA_NODES", support::cassandra_node()),
            ("STREAMCART_REDIS_URL", support::redis_url()),
            ("STREAMCART_PAYMENTS_DECLINED_CARDS", "card-declined".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        support::spawn_streamcart(args, &env, &format!("{}{log}", self.prefix))
    }

    /// Sends a command as any Kafka client would.
    pub async fn send<C: CommandPayload>(&self, context: Context, key: &str, payload: C) {
        let envelope = CommandEnvelope {
            command_id: Uuid::new_v4(),
            aggregate_id: key.to_owned(),
            expected_version: None,
            issued_at: now_ms(),
            correlation_id: key.to_owned(),
            payload,
        };
        let bytes = self.codec.encode(&envelope).await.expect("encode");
        let topic = self.topics.commands(context);
        let mut record = BaseRecord::to(&topic).key(key).payload(&bytes);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Every committed event of a context.
    pub fn events<E: EventPayload>(&self, context: Context) -> Vec<EventEnvelope<E>>
    where
        EventEnvelope<E>: WireRecord,
    {
        let rt = tokio::runtime::Handle::current();
        support::read_topic(&self.topics.events(context), 0, Duration::from_secs(60))
            .iter()
            .map(|m| {
                rt.block_on(self.codec.decode(m.payload().expect("value")))
                    .expect("decode")
            })
            .collect()
    }
}

/// Expected rows, computed from the events without the projection code.
#[derive(Debug, Default)]
pub struct Expected {
    /// sku → (name, category, price, version).
    pub products: BTreeMap<String, (String, String, i64, u64)>,
    /// sku → (received, available, reserved, sold, version).
    pub stock: BTreeMap<String, (i64, i64, i64, i64, u64)>,
    /// order → (status, reason, total, version, customer).
    pub orders: BTreeMap<String, (String, Option<String>, i64, u64, String)>,
}

/// The read models the event topics imply.
pub fn expected(world: &World) -> Expected {
    let mut x = Expected::default();
    for e in world.events::<ProductEvent>(Context::Catalog) {
        let entry = x.products.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            ProductEvent::ProductCreated(c) => {
                *entry = (c.name.clone(), c.category.clone(), c.price.amount_minor, 0);
            }
            ProductEvent::ProductCategoryChanged(c) => entry.1 = c.to.clone(),
            ProductEvent::ProductRenamed(r) => entry.0 = r.name.clone(),
            ProductEvent::ProductPriceChanged(p) => entry.2 = p.price.amount_minor,
            ProductEvent::ProductDiscontinued(_) => {}
        }
        entry.3 = e.version;
    }
    for e in world.events::<StockEvent>(Context::Inventory) {
        let (received, available, reserved, sold, version) =
            x.stock.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            StockEvent::StockReceived(r) => {
                *received += i64::from(r.quantity);
                *available += i64::from(r.quantity);
            }
            StockEvent::StockReserved(r) => {
                *available -= i64::from(r.quantity);
                *reserved += i64::from(r.quantity);
            }
            StockEvent::StockReleased(r) => {
                *available += i64::from(r.quantity);
                *reserved -= i64::from(r.quantity);
            }
            StockEvent::StockCommitted(r) => {
                *reserved -= i64::from(r.quantity);
                *sold += i64::from(r.quantity);
            }
            StockEvent::StockReservationRejected(_) => {}
        }
        *version = e.version;
    }
    for e in world.events::<OrderEvent>(Context::Orders) {
        let entry = x.orders.entry(e.aggregate_id.clone()).or_default();
        match &e.payload {
            OrderEvent::OrderPlaced(p) => {
                *entry = (
                    "placed".into(),
                    None,
                    p.total.amount_minor,
                    0,
                    p.customer_id.as_str().to_owned(),
                );
            }
            OrderEvent::OrderConfirmed(_) => entry.0 = "confirmed".into(),
            OrderEvent::OrderExpired(_) => entry.0 = "expired".into(),
            OrderEvent::OrderCancelled(c) => {
                entry.0 = "cancelled".into();
                entry.1 = Some(
                    match c.reason {
                        CancelReason::StockUnavailable => "stock_unavailable",
                        CancelReason::PaymentDeclined => "payment_declined",
                        CancelReason::CustomerRequested => "customer_requested",
                    }
                    .into(),
                );
            }
            _ => {}
        }
        entry.3 = e.version;
    }
    x
}

/// Compares the store with the expectation; returns the differences (empty when equal).
pub async fn differences(store: &CassandraStore, x: &Expected) -> Vec<String> {
    let mut diffs = Vec::new();
    for (sku, (name, category, price, version)) in &x.products {
        match store.product(sku).await.expect("read product") {
            Some(r)
                if (&r.name, &r.category, r.price_minor, r.version)
                    == (name, category, *price, *version) =>
            {
                let listed = store
                    .products_by_category(category, None, 1000)
                    .await
                    .expect("listing");
                if !listed
                    .items
                    .iter()
                    .any(|p| &p.sku == sku && p.version == *version)
                {
                    diffs.push(format!("{sku} missing from listing {category}"));
                }
            }
            other => diffs.push(format!("product {sku}: {other:?}")),
        }
    }
    for (sku, (received, available, reserved, sold, version)) in &x.stock {
        match store.stock(sku).await.expect("read stock") {
            Some(r)
                if (r.received, r.available, r.reserved, r.sold, r.version)
                    == (*received, *available, *reserved, *sold, *version) => {}
            other => diffs.push(format!("stock {sku}: {other:?}")),
        }
    }
    let mut by_customer: HashMap<&str, usize> = HashMap::new();
    for (id, (status, reason, total, version, customer)) in &x.orders {
        *by_customer.entry(customer.as_str()).or_default() += 1;
        match store.order(id).await.expect("read order") {
            Some(r)
                if r.status.as_str() == status.as_str()
                    || (status == "placed" && !r.status.is_final()) =>
            {
                if (&r.reason, r.total_minor, r.version) != (reason, *total, *version) {
                    diffs.push(format!(
                        "order {id}: {:?} {} {} vs {reason:?} {total} {version}",
                        r.reason, r.total_minor, r.version
                    ));
                }
            }
            other => diffs.push(format!("order {id}: {other:?} vs {status}")),
        }
    }
    for (customer, n) in by_customer {
        let page = store
            .orders_by_customer(customer, None, 1000)
            .await
            .expect("by customer");
        if page.items.len() != n {
            diffs.push(format!(
                "customer {customer}: {} orders listed, {n} expected",
                page.items.len()
            ));
        }
        if page
            .items
            .windows(2)
            .any(|w| w[0].placed_at < w[1].placed_at)
        {
            diffs.push(format!("customer {customer}: not newest first"));
        }
    }
    diffs
}

/// Waits until the store equals the events, or fails naming the differences.
pub async fn wait_equal(store: &CassandraStore, world: &World, what: &str) -> Expected {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let x = tokio::task::block_in_place(|| expected(world));
        let diffs = differences(store, &x).await;
        if diffs.is_empty() {
            return x;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: read models differ from the events: {:?}",
            &diffs[..diffs.len().min(5)]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

impl World {
    /// A world with fresh topics (all created) and a fresh keyspace name.
    pub async fn new(name: &str) -> Self {
        let id = support::unique(name);
        let prefix = format!("{id}.");
        let topics = Topics::with_prefix(prefix.clone());
        let mut names = vec![
            topics.command_results(),
            topics.order_summary(),
            topics.product_summary(),
        ];
        for ctx in Context::ALL {
            names.extend([
                topics.commands(ctx),
                topics.events(ctx),
                topics.snapshots(ctx),
            ]);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        support::create_topics(&refs, PARTITIONS).await;
        World {
            codec: Codec::new(&support::registry_url(), topics.clone()).expect("codec"),
            prefix,
            keyspace: id,
            topics,
            producer: ClientConfig::new()
                .set("bootstrap.servers", support::kafka_bootstrap())
                .set("enable.idempotence", "true")
                .set("partitioner", "murmur2_random")
                .create()
                .expect("producer"),
        }
    }
}

impl World {
    /// Places probe orders for `sku` until one is priced (an `OrderPlaced` appears): from then on
    /// the order processor's catalog copy knows the catalog seeded before the call. Returns the
    /// probes' order ids (some may be placed, some refused).
    pub async fn wait_until_orders_are_priced(
        &self,
        sku: &str,
        customer: &streamcart_aggregates::values::CustomerId,
    ) -> Vec<String> {
        use streamcart_aggregates::orders::{OrderCommand, OrderLineRequest, PlaceOrder};
        use streamcart_aggregates::values::{OrderId, Sku};
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut probes = Vec::new();
        loop {
            let order = OrderId::new(Uuid::new_v4().to_string()).expect("order id");
            let place = PlaceOrder {
                order_id: order.clone(),
                customer_id: customer.clone(),
                lines: vec![OrderLineRequest {
                    sku: Sku::new(sku).expect("sku"),
                    quantity: 1,
                }],
                card_token: "card-ok".into(),
                deadline_at: now_ms() + 600_000,
                placed_at: now_ms(),
            };
            self.send(
                Context::Orders,
                order.as_str(),
                OrderCommand::PlaceOrder(place),
            )
            .await;
            rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(30))
                .expect("flush");
            probes.push(order.as_str().to_owned());
            tokio::time::sleep(Duration::from_secs(1)).await;
            let placed = tokio::task::block_in_place(|| self.events::<OrderEvent>(Context::Orders));
            if placed.iter().any(|e| {
                probes.contains(&e.aggregate_id) && matches!(e.payload, OrderEvent::OrderPlaced(_))
            }) {
                return probes;
            }
            assert!(
                Instant::now() < deadline,
                "the order processor never priced an order for {sku}"
            );
        }
    }
}
