//! One test's own streamcart: topics under a unique prefix, a keyspace of its own, roles spawned
//! against them, and commands sent as any Kafka client would.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::message::Message;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, PlaceOrder};
use streamcart_aggregates::values::CustomerId;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{
    CommandPayload, CommandResult, EventEnvelope, EventPayload, WireRecord,
};
use streamcart_schemas::topics::{Context, Topics};
use uuid::Uuid;

use crate::commands::{self, DECLINED_CARD, GOOD_CARD};
use crate::kafka::{self, read_topic};
use crate::process::{self, Child, spawn_streamcart};
use crate::stack::{cassandra_node, create_topics, redis_url, registry_url, unique};

/// Partitions of every topic of a world.
pub const PARTITIONS: i32 = 4;

/// How long a read of a world's topic waits for the records it expects.
const READ_BOUND: Duration = Duration::from_secs(120);

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
    /// Commands sent per context that each append at least one event: a lower bound for reads.
    sent: Mutex<BTreeMap<Context, usize>>,
}

impl World {
    /// A world with fresh topics (all created) and a fresh keyspace name.
    pub async fn new(name: &str) -> Self {
        let id = unique(name);
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
        create_topics(&refs, PARTITIONS).await;
        World {
            codec: Codec::new(&registry_url(), topics.clone()).expect("codec"),
            prefix,
            keyspace: id,
            topics,
            producer: kafka::producer(),
            sent: Mutex::new(BTreeMap::new()),
        }
    }

    /// Creates more topics of this world (a dead-letter topic, say).
    pub async fn create_topics(&self, names: &[String]) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        create_topics(&refs, PARTITIONS).await;
    }

    /// Starts a streamcart role against this world.
    pub fn spawn(&self, args: &[&str], log: &str) -> Child {
        self.spawn_with(args, &[], log)
    }

    /// Starts a streamcart role against this world, with more environment on top.
    pub fn spawn_with(&self, args: &[&str], extra: &[(&str, String)], log: &str) -> Child {
        let mut env = vec![
            ("STREAMCART_TOPIC_PREFIX", self.prefix.clone()),
            ("STREAMCART_KEYSPACE", self.keyspace.clone()),
            ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
            ("STREAMCART_CASSANDRA_NODES", cassandra_node()),
            ("STREAMCART_REDIS_URL", redis_url()),
            ("STREAMCART_PAYMENTS_DECLINED_CARDS", DECLINED_CARD.into()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        spawn_streamcart(args, &env, &self.log_name(log))
    }

    /// Every role of the system but the projectors and the edge: the four command processors and
    /// the saga, each logging under its own name.
    pub fn spawn_system(&self) -> Vec<Child> {
        [
            vec!["process", "product"],
            vec!["process", "stock"],
            vec!["process", "order"],
            vec!["process", "payment"],
            vec!["sagas"],
        ]
        .iter()
        .map(|a| self.spawn(a, &a.join("-")))
        .collect()
    }

    /// The three projectors, each logging under its own name.
    pub fn spawn_projectors(&self) -> Vec<Child> {
        ["products", "stock", "orders"]
            .iter()
            .map(|n| self.spawn(&["project", n], &format!("project-{n}")))
            .collect()
    }

    /// The log so far of the role this world started with `log`.
    pub fn log(&self, log: &str) -> String {
        process::read_log(&self.log_name(log))
    }

    fn log_name(&self, log: &str) -> String {
        format!("{}{log}", self.prefix)
    }

    /// Encodes `payload` for `aggregate_id` in a fresh envelope; returns its command id and bytes.
    pub async fn encode<C: CommandPayload>(
        &self,
        aggregate_id: &str,
        payload: C,
    ) -> (Uuid, Vec<u8>) {
        let envelope = commands::envelope(aggregate_id, payload);
        let bytes = commands::encode(&self.codec, &envelope).await;
        (envelope.command_id, bytes)
    }

    /// Sends a command as any Kafka client would; the command must append at least one event
    /// (reads of `context`'s events expect it). Returns its command id.
    pub async fn send<C: CommandPayload>(&self, context: Context, key: &str, payload: C) -> Uuid {
        let (id, bytes) = self.encode(key, payload).await;
        self.send_encoded(context, key, &bytes);
        id
    }

    /// Sends a command encoded by [`World::encode`]; it must append at least one event.
    pub fn send_encoded(&self, context: Context, key: &str, bytes: &[u8]) {
        kafka::produce(&self.producer, &self.topics.commands(context), key, bytes);
        *self
            .sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(context)
            .or_default() += 1;
    }

    /// Places `order`; returns its id.
    pub async fn place(&self, order: PlaceOrder) -> String {
        let id = order.order_id.as_str().to_owned();
        self.send(Context::Orders, &id, OrderCommand::PlaceOrder(order))
            .await;
        id
    }

    /// Creates a product (priced in euro cents) and receives `units` of it in stock.
    pub async fn seed_product(
        &self,
        sku: &str,
        name: &str,
        category: &str,
        price_minor: i64,
        units: u32,
    ) {
        self.send(
            Context::Catalog,
            sku,
            commands::create_product(sku, name, category, price_minor),
        )
        .await;
        self.send(Context::Inventory, sku, commands::receive_stock(units))
            .await;
    }

    /// Waits until every command sent so far is in Kafka.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(30))
            .expect("flush commands");
    }

    /// Commands this world sent to `context` (each appends at least one event).
    pub fn sent(&self, context: Context) -> usize {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&context)
            .copied()
            .unwrap_or(0)
    }

    /// Every committed event of a context: at least one per command this world sent there.
    pub fn events<E: EventPayload>(&self, context: Context) -> Vec<EventEnvelope<E>>
    where
        EventEnvelope<E>: WireRecord,
    {
        self.events_at_least(context, self.sent(context))
    }

    /// Every committed event of a context, expecting at least `expected` of them.
    pub fn events_at_least<E: EventPayload>(
        &self,
        context: Context,
        expected: usize,
    ) -> Vec<EventEnvelope<E>>
    where
        EventEnvelope<E>: WireRecord,
    {
        self.decode_topic(&self.topics.events(context), expected, READ_BOUND)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// Command results, expecting at least `expected` within `timeout`.
    pub fn results(&self, expected: usize, timeout: Duration) -> Vec<CommandResult> {
        self.decode_topic(&self.topics.command_results(), expected, timeout)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// The records of `topic` decoded with the registry, each with its partition, expecting at
    /// least `expected` within `timeout`.
    pub fn decode_topic<T: WireRecord>(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Vec<(i32, T)> {
        let rt = tokio::runtime::Handle::current();
        read_topic(topic, expected, timeout)
            .iter()
            .map(|m| {
                let value = m
                    .payload()
                    .unwrap_or_else(|| panic!("{topic}: a record without value"));
                let decoded = rt
                    .block_on(self.codec.decode::<T>(value))
                    .unwrap_or_else(|e| panic!("{topic}: decoding offset {}: {e}", m.offset()));
                (m.partition(), decoded)
            })
            .collect()
    }

    /// Places probe orders for `sku` until one is priced (an `OrderPlaced` appears): from then on
    /// the order processor's catalog copy knows the catalog seeded before the call. Returns the
    /// probes' order ids (some may be placed, some refused).
    pub async fn wait_until_orders_are_priced(
        &self,
        sku: &str,
        customer: &CustomerId,
    ) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut probes = Vec::new();
        loop {
            let order = commands::place_order(customer, &[(sku, 1)], GOOD_CARD);
            let id = order.order_id.as_str().to_owned();
            // Not counted as a sent command: a probe the catalog copy does not know yet is
            // refused and appends nothing.
            let (_, bytes) = self.encode(&id, OrderCommand::PlaceOrder(order)).await;
            kafka::produce(
                &self.producer,
                &self.topics.commands(Context::Orders),
                &id,
                &bytes,
            );
            self.flush();
            probes.push(id);
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
