//! The projector on the shared at-least-once loop, on the real stack: no event is ever skipped.
//!
//! - Poison records among valid events go to the dead-letter topic with their original key,
//!   bytes and headers; every valid event around them is applied; the committed offsets reach
//!   the end of the topic.
//! - While the schema registry cannot be reached (the projector talks to it through a relay
//!   that drops connections until it is switched on), nothing is applied and nothing is
//!   committed; once it answers, every event is applied, none is dead-lettered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use streamcart_aggregates::catalog::{
    ProductCreated, ProductEvent, ProductPriceChanged, ProductRenamed,
};
use streamcart_aggregates::values::{Money, Sku};
use streamcart_kafka_runtime::headers;
use streamcart_projectors::CassandraStore;
use streamcart_schemas::EventEnvelope;
use streamcart_schemas::summary::ProductSummary;
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::clock::now_ms;
use streamcart_tests::world::{PARTITIONS, World};
use uuid::Uuid;

/// Products written per test; each gets three events (created, renamed, repriced).
const PRODUCTS: usize = 30;

fn envelope(sku: &str, version: u64, payload: ProductEvent) -> EventEnvelope<ProductEvent> {
    EventEnvelope {
        event_id: Uuid::new_v4(),
        aggregate_id: sku.to_owned(),
        version,
        occurred_at: now_ms(),
        causation_id: Uuid::new_v4(),
        correlation_id: sku.to_owned(),
        payload,
    }
}

/// The three events of product `i`, in order.
fn history(i: usize) -> Vec<EventEnvelope<ProductEvent>> {
    let sku = format!("R-{i}");
    vec![
        envelope(
            &sku,
            1,
            ProductCreated {
                sku: Sku::new(&sku).expect("sku"),
                name: format!("first {i}"),
                category: "tools".into(),
                price: Money::new(100, "EUR").expect("money"),
            }
            .into(),
        ),
        envelope(
            &sku,
            2,
            ProductRenamed {
                name: format!("second {i}"),
            }
            .into(),
        ),
        envelope(
            &sku,
            3,
            ProductPriceChanged {
                price: Money::new(1_000 + i as i64, "EUR").expect("money"),
            }
            .into(),
        ),
    ]
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer")
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    value: Option<&[u8]>,
    extra: &[(&str, &[u8])],
) {
    let mut hs = OwnedHeaders::new().insert(Header {
        key: headers::TRACEPARENT,
        value: Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]),
    });
    for (k, v) in extra {
        hs = hs.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key).headers(hs);
    if let Some(v) = value {
        record = record.payload(v);
    }
    producer.send(record).map_err(|(e, _)| e).expect("enqueue");
}

/// Waits until every product is at version 3 with its last name and price, or fails.
async fn wait_all_applied(store: &CassandraStore, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut applied = 0;
        for i in 0..PRODUCTS {
            if let Ok(Some(row)) = store.product(&format!("R-{i}")).await
                && row.version == 3
                && row.name == format!("second {i}")
                && row.price_minor == 1_000 + i as i64
            {
                applied += 1;
            }
        }
        if applied == PRODUCTS {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {applied} of {PRODUCTS} products fully applied"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Committed offset of `group` and high watermark, per partition of `topic`.
fn committed_and_ends(group: &str, topic: &str) -> BTreeMap<i32, (Option<i64>, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            let offset = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            };
            (p, (offset, high))
        })
        .collect()
}

/// Waits until the group's committed offsets equal the end of every partition, or fails.
fn wait_committed_to_end(group: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = committed_and_ends(group, topic);
        if state
            .values()
            .all(|(committed, high)| *high == 0 || *committed == Some(*high))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed offsets never reached the end of {topic}: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_whole_and_every_event_around_them_is_applied() {
    let world = World::new("prt_poison").await;
    let topic = world.topics.events(Context::Catalog);
    let producer = producer();

    // Poison of four kinds, each keyed like a product so it lands among that product's events.
    let valid = support::commands::encode(&world.codec, &history(0)[0]).await;
    let truncated = valid[..valid.len() - 3].to_vec();
    let mut unknown_id = vec![0u8];
    unknown_id.extend_from_slice(&987_654_321u32.to_be_bytes());
    unknown_id.extend_from_slice(&[2, 4, 6]);
    // (name, value, kind or kind prefix)
    let poisons: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        (
            "wrong-magic",
            Some(vec![7, 0, 0, 0, 1, 2, 3]),
            "decode.wrong_magic_byte",
        ),
        ("empty", None, "decode.empty"),
        // Cut short, the body fails to read or to map, depending on where the cut falls.
        ("truncated", Some(truncated), "decode."),
        ("unknown-id", Some(unknown_id), "decode.unknown_schema_id"),
    ];
    let mut sent_poison: HashMap<String, (String, Option<Vec<u8>>, &str)> = HashMap::new();
    for i in 0..PRODUCTS {
        for (n, event) in history(i).iter().enumerate() {
            let bytes = support::commands::encode(&world.codec, event).await;
            send(&producer, &topic, &event.aggregate_id, Some(&bytes), &[]);
            // Poison between the first and second events of a few products.
            if n == 0
                && i % 7 == 3
                && let Some((name, value, kind)) = poisons.get(i / 7)
            {
                let marker = format!("poison-{name}");
                send(
                    &producer,
                    &topic,
                    &event.aggregate_id,
                    value.as_deref(),
                    &[("x-test", marker.as_bytes())],
                );
                sent_poison.insert(marker, (event.aggregate_id.clone(), value.clone(), *kind));
            }
        }
    }
    assert_eq!(
        sent_poison.len(),
        poisons.len(),
        "every kind of poison sent"
    );
    producer.flush(Duration::from_secs(30)).expect("flush");

    let mut projector = world.spawn(&["project", "products"], "project-products");
    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    wait_all_applied(&store, "with poison in the topic").await;

    // Exactly the poison is dead-lettered, with its key, bytes and headers, and why.
    let dlq = world.topics.dlq("projector.products");
    let letters = tokio::task::block_in_place(|| {
        support::read_topic(&dlq, sent_poison.len(), Duration::from_secs(60))
    });
    assert_eq!(
        letters.len(),
        sent_poison.len(),
        "dead letters: one per poison record"
    );
    for letter in &letters {
        let hs: Vec<(String, Vec<u8>)> = letter
            .headers()
            .expect("headers")
            .iter()
            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
            .collect();
        let header = |name: &str| {
            hs.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        let marker = header("x-test").expect("original header kept");
        let (key, value, kind) = sent_poison.get(&marker).expect("a poison record");
        assert_eq!(letter.key(), Some(key.as_bytes()), "{marker}: key");
        assert_eq!(letter.payload(), value.as_deref(), "{marker}: bytes");
        let got = header(headers::DLQ_KIND).unwrap_or_default();
        assert!(
            got.starts_with(kind),
            "{marker}: kind {got}, expected {kind}"
        );
        assert_eq!(
            header(headers::DLQ_SOURCE_TOPIC).as_deref(),
            Some(topic.as_str())
        );
        assert!(header(headers::DLQ_SOURCE_OFFSET).is_some());
        assert_eq!(
            header(headers::TRACEPARENT).as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            "{marker}: trace context kept"
        );
    }

    // The public summary stream carries every product at its last version.
    let summaries = tokio::task::block_in_place(|| {
        support::read_topic(
            &world.topics.product_summary(),
            PRODUCTS,
            Duration::from_secs(60),
        )
    });
    let mut latest: BTreeMap<String, i64> = BTreeMap::new();
    for m in &summaries {
        let s: ProductSummary = world
            .codec
            .decode(m.payload().expect("summary value"))
            .await
            .expect("decode summary");
        let v = latest.entry(s.sku.clone()).or_default();
        *v = (*v).max(s.version);
    }
    assert_eq!(latest.len(), PRODUCTS, "a summary for every product");
    assert!(latest.values().all(|v| *v == 3), "{latest:?}");

    // Nothing is left behind: the group committed the end of every partition.
    let group = format!("{}projector.products", world.prefix);
    tokio::task::block_in_place(|| wait_committed_to_end(&group, &topic));
    assert!(
        projector.terminate(Duration::from_secs(30)),
        "projector stops cleanly on SIGTERM"
    );
}

/// A TCP relay in front of the registry that drops every connection until switched on.
struct Relay {
    port: u16,
    on: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let on = Arc::new(AtomicBool::new(false));
        let relay_on = on.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !relay_on.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, on }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_the_registry_is_unreachable_nothing_is_skipped_or_committed() {
    let world = World::new("prt_registry").await;
    let topic = world.topics.events(Context::Catalog);
    let producer = producer();
    for i in 0..PRODUCTS {
        for event in history(i) {
            let bytes = support::commands::encode(&world.codec, &event).await;
            send(&producer, &topic, &event.aggregate_id, Some(&bytes), &[]);
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let registry = reqwest::Url::parse(&support::registry_url()).expect("registry url");
    let target = format!(
        "{}:{}",
        registry.host_str().expect("registry host"),
        registry.port_or_known_default().expect("registry port")
    );
    let relay = Relay::start(target).await;
    let mut relayed = registry.clone();
    relayed.set_host(Some("127.0.0.1")).expect("host");
    relayed.set_port(Some(relay.port)).expect("port");
    let url = relayed.as_str().trim_end_matches('/').to_owned();
    let mut projector = world.spawn_with(
        &["project", "products"],
        &[("STREAMCART_REGISTRY_URL", url)],
        "project-products",
    );

    // Events are read but cannot be decoded: nothing may be applied, nothing committed.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let store = CassandraStore::connect(&support::cassandra_node(), &world.keyspace)
        .await
        .expect("store");
    for i in 0..PRODUCTS {
        assert_eq!(
            store.product(&format!("R-{i}")).await.expect("read"),
            None,
            "R-{i} applied without its schema"
        );
    }
    let group = format!("{}projector.products", world.prefix);
    let state = tokio::task::block_in_place(|| committed_and_ends(&group, &topic));
    assert!(
        state
            .values()
            .all(|(committed, _)| committed.is_none_or(|c| c == 0)),
        "offsets committed past events never applied: {state:?}"
    );
    assert!(
        state.values().map(|(_, high)| *high).sum::<i64>() == (PRODUCTS * 3) as i64,
        "every event is in the topic: {state:?}"
    );

    // The registry answers again: every event is applied, none dead-lettered.
    relay.on.store(true, Ordering::SeqCst);
    wait_all_applied(&store, "after the registry came back").await;
    tokio::task::block_in_place(|| wait_committed_to_end(&group, &topic));
    let dlq = world.topics.dlq("projector.products");
    let letters =
        tokio::task::block_in_place(|| support::read_topic(&dlq, 0, Duration::from_secs(30)));
    assert!(letters.is_empty(), "{} events dead-lettered", letters.len());
    assert!(
        projector.terminate(Duration::from_secs(30)),
        "projector stops cleanly on SIGTERM"
    );
}

// The loop itself, driven by a test handler whose failures are scripted: what it does with
// transient failures that outlast the retry budget, with a batch refused as a whole, and with
// shutdown in the middle of a backoff.

mod scripted {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};

    use streamcart_kafka_runtime::HandleError;
    use streamcart_kafka_runtime::at_least_once::{Handler, Output, Record};

    /// Applies UTF-8 values by remembering them, failing as told.
    pub struct Scripted {
        /// Values applied, in order, shared with the test.
        pub applied: Arc<Mutex<Vec<String>>>,
        /// Apply attempts, shared with the test.
        pub attempts: Arc<Mutex<u32>>,
        /// A batch holding one of these values fails transiently this many more times.
        pub transient: HashMap<String, u32>,
        /// A batch holding one of these values is refused (permanent).
        pub refused: HashSet<String>,
        /// Every apply fails transiently.
        pub always_transient: bool,
        /// Each applied value is echoed to this topic.
        pub echo_topic: String,
    }

    impl Handler for Scripted {
        type Item = String;

        async fn decode(&mut self, record: &Record<'_>) -> Result<String, HandleError> {
            let bytes = record
                .payload
                .ok_or_else(|| HandleError::permanent("test.empty", "no value"))?;
            String::from_utf8(bytes.to_vec())
                .map_err(|e| HandleError::permanent("test.utf8", e.to_string()))
        }

        async fn apply(&mut self, items: &[String]) -> Result<Vec<Output>, HandleError> {
            if let Ok(mut n) = self.attempts.lock() {
                *n += 1;
            }
            if self.always_transient {
                return Err(HandleError::Transient("scripted outage".into()));
            }
            for item in items {
                if let Some(left) = self.transient.get_mut(item)
                    && *left > 0
                {
                    *left -= 1;
                    return Err(HandleError::Transient(format!("{item} not yet")));
                }
            }
            if let Some(bad) = items.iter().find(|i| self.refused.contains(*i)) {
                return Err(HandleError::permanent(
                    "test.refused",
                    format!("{bad} refused"),
                ));
            }
            if let Ok(mut applied) = self.applied.lock() {
                applied.extend(items.iter().cloned());
            }
            Ok(items
                .iter()
                .map(|i| {
                    Output::new(
                        self.echo_topic.clone(),
                        Some(i.clone().into_bytes()),
                        Some(i.clone().into_bytes()),
                    )
                })
                .collect())
        }
    }
}

use scripted::Scripted;
use streamcart_kafka_runtime::CancellationToken;
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_kafka_runtime::at_least_once::{self, Spec};

/// Topics of one scripted loop: input, echo output, dead letters; and its spec.
async fn scripted_setup(name: &str) -> (Spec, String) {
    let id = support::unique(name);
    let input = format!("{id}.in");
    let echo = format!("{id}.echo");
    let dlq = format!("{id}.dlq");
    support::create_topics(&[&input, &echo, &dlq], PARTITIONS).await;
    let mut spec = Spec::new(id.clone(), vec![input], format!("{id}.group"), dlq);
    spec.min_backoff = Duration::from_millis(50);
    spec.max_backoff = Duration::from_millis(200);
    spec.retry_budget = Duration::from_secs(1);
    (spec, echo)
}

fn scripted(echo: &str) -> Scripted {
    Scripted {
        applied: Arc::default(),
        attempts: Arc::default(),
        transient: HashMap::new(),
        refused: Default::default(),
        always_transient: false,
        echo_topic: echo.to_owned(),
    }
}

fn send_values(topic: &str, values: &[String]) {
    let producer = producer();
    for (i, v) in values.iter().enumerate() {
        send(
            &producer,
            topic,
            &format!("k-{}", i % 7),
            Some(v.as_bytes()),
            &[],
        );
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn settings() -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: support::kafka_bootstrap(),
        ..KafkaSettings::default()
    }
}

/// Runs the loop in the background until the applied values satisfy `until` and the offsets
/// are committed to the end (bounded), then shuts it down.
async fn run_until(
    spec: &Spec,
    mut handler: Scripted,
    until: impl Fn(&[String]) -> bool,
    what: &str,
) -> at_least_once::Stats {
    let token = CancellationToken::new();
    let applied = handler.applied.clone();
    let (spec_bg, token_bg) = (spec.clone(), token.clone());
    let task = tokio::spawn(async move {
        at_least_once::run(&settings(), &spec_bg, &mut handler, &token_bg).await
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !until(&distinct(&applied)) {
        assert!(Instant::now() < deadline, "{what}: never got there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let input = spec.input_topics.first().expect("input topic").clone();
    let group = spec.group_id.clone();
    tokio::task::block_in_place(|| wait_committed_to_end(&group, &input));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("loop stops within its shutdown bound")
        .expect("loop task")
        .expect("loop result")
}

/// The distinct values applied so far, sorted.
fn distinct(applied: &Arc<std::sync::Mutex<Vec<String>>>) -> Vec<String> {
    let mut v = applied.lock().map(|a| a.clone()).unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_failing_past_the_retry_budget_is_rewound_to_not_skipped() {
    let (spec, echo) = scripted_setup("alo_rewind").await;
    let mut values: Vec<String> = (0..60).map(|i| format!("v-{i:02}")).collect();
    values.insert(30, "flaky".into());
    send_values(&spec.input_topics[0], &values);
    let mut handler = scripted(&echo);
    // About 3 s of failures against a 1 s budget: the loop has to rewind at least twice.
    handler.transient.insert("flaky".into(), 15);
    let mut expected = values.clone();
    expected.sort();
    let stats = run_until(
        &spec,
        handler,
        |applied| applied == expected.as_slice(),
        "every value applied",
    )
    .await;
    assert!(stats.rewinds >= 1, "the batch was rewound: {stats:?}");
    assert_eq!(stats.dead_letters, 0, "{stats:?}");
    assert!(stats.applied >= values.len() as u64, "{stats:?}");
    let echoed = tokio::task::block_in_place(|| {
        support::read_topic(&echo, values.len(), Duration::from_secs(30))
    });
    let mut echoed: Vec<String> = echoed
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    echoed.sort();
    echoed.dedup();
    assert_eq!(echoed, expected, "every output acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refused_as_a_whole_dead_letters_only_the_record_at_fault() {
    let (spec, echo) = scripted_setup("alo_refused").await;
    let mut values: Vec<String> = (0..40).map(|i| format!("v-{i:02}")).collect();
    values.insert(17, "refused".into());
    send_values(&spec.input_topics[0], &values);
    // Not UTF-8: refused at decode.
    let producer = producer();
    send(
        &producer,
        &spec.input_topics[0],
        "k-x",
        Some(&[0xff, 0xfe, 0x00]),
        &[],
    );
    producer.flush(Duration::from_secs(30)).expect("flush");
    let mut handler = scripted(&echo);
    handler.refused.insert("refused".into());
    let mut expected: Vec<String> = values.iter().filter(|v| *v != "refused").cloned().collect();
    expected.sort();
    let stats = run_until(
        &spec,
        handler,
        |applied| applied == expected.as_slice(),
        "every other value applied",
    )
    .await;
    assert_eq!(stats.dead_letters, 2, "{stats:?}");
    let letters = tokio::task::block_in_place(|| {
        support::read_topic(&spec.dlq_topic, 2, Duration::from_secs(30))
    });
    assert_eq!(letters.len(), 2);
    let mut kinds: Vec<(Vec<u8>, String)> = letters
        .iter()
        .map(|m| {
            let kind = m
                .headers()
                .and_then(|hs| hs.iter().find(|h| h.key == headers::DLQ_KIND))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            (m.payload().unwrap_or_default().to_vec(), kind)
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (b"refused".to_vec(), "test.refused".to_owned()),
            (vec![0xff, 0xfe, 0x00], "test.utf8".to_owned()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_during_backoff_returns_promptly_and_commits_nothing_unapplied() {
    let (mut spec, echo) = scripted_setup("alo_shutdown").await;
    spec.retry_budget = Duration::from_secs(60);
    spec.max_backoff = Duration::from_secs(5);
    let values: Vec<String> = (0..10).map(|i| format!("v-{i}")).collect();
    send_values(&spec.input_topics[0], &values);
    let mut handler = scripted(&echo);
    handler.always_transient = true;
    let attempts = handler.attempts.clone();
    let token = CancellationToken::new();
    let (spec_bg, token_bg) = (spec.clone(), token.clone());
    let task = tokio::spawn(async move {
        at_least_once::run(&settings(), &spec_bg, &mut handler, &token_bg).await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    // Five failures: the loop is now in a backoff of up to 5 s.
    while attempts.lock().map(|n| *n).unwrap_or(0) < 5 {
        assert!(Instant::now() < deadline, "the loop never tried to apply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    token.cancel();
    let stats = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("loop stops within its shutdown bound")
        .expect("loop task")
        .expect("loop result");
    assert!(
        asked.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        asked.elapsed()
    );
    assert_eq!((stats.applied, stats.dead_letters), (0, 0), "{stats:?}");
    let input = spec.input_topics[0].clone();
    let state = tokio::task::block_in_place(|| committed_and_ends(&spec.group_id, &input));
    assert!(
        state
            .values()
            .all(|(committed, _)| committed.is_none_or(|c| c == 0)),
        "offsets committed past records never applied: {state:?}"
    );
}
