//! Commands from clients on any partitioner and retried HTTP requests: one effect each.
//!
//! Producers we do not control may place keys with another partitioner than murmur2
//! (librdkafka's default, `consistent_random`, hashes with CRC32). The command processor owns an
//! aggregate only on the partition murmur2 gives its key: these tests send commands through both
//! partitioners against real processors and check, from the topics, that every aggregate still
//! has one writer and one gap-free history.

#[path = "client_compat/gateway.rs"]
mod gateway;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand, StockEvent};
use streamcart_kafka_runtime::partitioner::partition_for;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, EventEnvelope, Outcome};
use streamcart_schemas::topics::{Context, Topics};
use streamcart_tests as support;
use uuid::Uuid;

const PARTITIONS: i32 = 4;
const PROCESSOR: &str = "inventory.stock.processor";

/// A librdkafka producer placing keyed records with `partitioner`.
fn producer(partitioner: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", partitioner)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Sends one record and returns the partition the broker stored it in.
async fn send(
    p: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    value: &[u8],
    headers: &[(&str, String)],
) -> i32 {
    let mut hs = OwnedHeaders::new();
    for (k, v) in headers {
        hs = hs.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    let mut record = FutureRecord::to(topic).key(key).payload(value).headers(hs);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let delivery = p.send(record, Duration::from_secs(30)).await;
    delivery.expect("delivered").partition
}

fn headers_of(m: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

fn header(m: &OwnedMessage, name: &str) -> Option<Vec<u8>> {
    headers_of(m)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// One command as the test sent it.
#[derive(Debug, Clone)]
struct Sent {
    id: Uuid,
    sku: String,
    quantity: u32,
    bytes: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    trace_id: String,
    /// Partition the client's partitioner chose (the broker's answer).
    partition: i32,
}

struct Run {
    prefix: String,
    topics: Topics,
    codec: Codec,
}

impl Run {
    async fn new(name: &str) -> Self {
        let prefix = format!("{}.", support::unique(name));
        let topics = Topics::with_prefix(prefix.clone());
        let ctx = Context::Inventory;
        let names = [
            topics.commands(ctx),
            topics.events(ctx),
            topics.snapshots(ctx),
            topics.command_results(),
            topics.dlq(PROCESSOR),
        ];
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        support::create_topics(&refs, PARTITIONS).await;
        let codec = Codec::new(&support::registry_url(), topics.clone()).expect("codec");
        Self {
            prefix,
            topics,
            codec,
        }
    }

    fn processor(&self, instance: &str, log: &str, extra: &[(&str, String)]) -> support::Child {
        let mut env = vec![
            ("STREAMCART_TOPIC_PREFIX", self.prefix.clone()),
            ("STREAMCART_INSTANCE_ID", instance.to_owned()),
            ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
            ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "5".into()),
            ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "300".into()),
            ("STREAMCART_BATCH_MAX_RECORDS", "200".into()),
        ];
        env.extend(extra.iter().cloned());
        support::spawn_streamcart(
            &["process", "stock"],
            &env,
            &format!("{}{log}", self.prefix),
        )
    }

    fn log(&self, name: &str) -> String {
        let logs = support::streamcart_bin()
            .parent()
            .expect("dir")
            .join("test-logs");
        std::fs::read_to_string(logs.join(format!("{}{name}.log", self.prefix))).unwrap_or_default()
    }

    async fn command(&self, sku: &str, quantity: u32) -> (Uuid, Vec<u8>) {
        let id = Uuid::new_v4();
        let envelope = CommandEnvelope {
            command_id: id,
            aggregate_id: sku.to_owned(),
            expected_version: None,
            issued_at: 0,
            correlation_id: id.to_string(),
            payload: StockCommand::ReceiveStock(ReceiveStock { quantity }),
        };
        let bytes = support::commands::encode(&self.codec, &envelope).await;
        (id, bytes)
    }

    /// Every result in `command.results`, read until at least `expected` distinct command ids
    /// are answered or `timeout` passes.
    fn results(&self, expected: usize, timeout: Duration) -> Vec<CommandResult> {
        let rt = tokio::runtime::Handle::current();
        let deadline = Instant::now() + timeout;
        loop {
            // The whole remaining bound goes to one read: a processor that is slow to get its
            // assignment on a cold machine is still within the test's bound.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(5));
            let results: Vec<CommandResult> =
                support::read_topic(&self.topics.command_results(), expected, left)
                    .iter()
                    .map(|m| {
                        rt.block_on(self.codec.decode(m.payload().expect("result value")))
                            .expect("decode result")
                    })
                    .collect();
            let distinct: HashSet<Uuid> = results.iter().map(|r| r.command_id).collect();
            if distinct.len() >= expected || Instant::now() > deadline {
                return results;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// The events topic: partition, decoded event and raw record, `expected` of them at least.
    fn events(&self, expected: usize) -> Vec<(i32, EventEnvelope<StockEvent>, OwnedMessage)> {
        let rt = tokio::runtime::Handle::current();
        support::read_topic(
            &self.topics.events(Context::Inventory),
            expected,
            Duration::from_secs(60),
        )
        .into_iter()
        .map(|m| {
            let e = rt
                .block_on(self.codec.decode(m.payload().expect("event value")))
                .expect("decode event");
            (m.partition(), e, m)
        })
        .collect()
    }
}

/// Offsets ever taken in `topic` (records and transaction markers): zero only if nothing,
/// committed or aborted, was ever written to it.
fn offsets_written(topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .create()
        .expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high
        })
        .sum()
}

fn murmur2_partition(sku: &str) -> i32 {
    partition_for(sku.as_bytes(), PARTITIONS).expect("partitions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_partitioner_places_keys_where_librdkafka_murmur2_does() {
    for partitions in [7, 16] {
        let topic = support::unique("murmur2_placement");
        support::create_topics(&[&topic], partitions).await;
        let murmur = producer("murmur2_random");
        let crc = producer("consistent_random");
        let mut keys: Vec<String> = (0..300).map(|i| format!("SKU-{i:04}")).collect();
        // Every tail length of the hash and longer keys: order ids are UUIDs.
        keys.extend((0..200).map(|_| Uuid::new_v4().to_string()));
        keys.extend((1..=12).map(|n| "k".repeat(n)));
        let mut differ = 0;
        for key in &keys {
            let chosen = send(&murmur, &topic, None, key, b"x", &[]).await;
            assert_eq!(
                Some(chosen),
                partition_for(key.as_bytes(), partitions),
                "librdkafka's murmur2_random put {key:?} on partition {chosen} of {partitions}"
            );
            if send(&crc, &topic, None, key, b"x", &[]).await != chosen {
                differ += 1;
            }
        }
        eprintln!(
            "{partitions} partitions: {} keys agree with librdkafka murmur2; CRC32 places {differ} elsewhere",
            keys.len()
        );
        assert!(
            differ > keys.len() / 4,
            "CRC32 and murmur2 should disagree on most keys, only {differ} of {} did",
            keys.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_from_crc32_and_murmur2_clients_have_one_writer_per_aggregate() {
    const SKUS: usize = 100;
    const PER_CLIENT: usize = 1_000;
    let run = Run::new("compat_owner").await;
    let commands_topic = run.topics.commands(Context::Inventory);
    let mut a = run.processor("a", "owner-a", &[]);
    let mut b = run.processor("b", "owner-b", &[]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(run.log("owner-a").contains("partition restored")
        && run.log("owner-b").contains("partition restored"))
    {
        assert!(
            Instant::now() < deadline,
            "the two instances never both owned partitions"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Interleaved: the CRC32 client and the murmur2 client take turns, on the same SKUs.
    let clients = [
        ("consistent_random", producer("consistent_random")),
        ("murmur2_random", producer("murmur2_random")),
    ];
    let mut planned = Vec::with_capacity(2 * PER_CLIENT);
    for i in 0..2 * PER_CLIENT {
        let sku = format!("SKU-{:03}", (i / 2) % SKUS);
        let quantity = 1 + (i as u32 * 7) % 9;
        let (id, bytes) = run.command(&sku, quantity).await;
        planned.push((i % 2, id, sku, quantity, bytes));
    }
    let mut sent: Vec<Sent> = Vec::with_capacity(planned.len());
    let mut restarted = false;
    for (n, chunk) in planned.chunks(250).enumerate() {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for (client, id, sku, quantity, bytes) in chunk {
            let (name, p) = &clients[*client];
            let trace = Traceparent::new_root();
            let headers = vec![
                ("traceparent", trace.to_string()),
                (
                    "content-type",
                    "application/vnd.apache.avro+binary".to_owned(),
                ),
                ("x-client", format!("librdkafka/{name}")),
            ];
            let topic = commands_topic.as_str();
            deliveries.push(async move {
                let partition = send(p, topic, None, sku, bytes, &headers).await;
                Sent {
                    id: *id,
                    sku: sku.clone(),
                    quantity: *quantity,
                    bytes: bytes.clone(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                        .collect(),
                    trace_id: trace.trace_id.clone(),
                    partition,
                }
            });
        }
        sent.extend(futures::future::join_all(deliveries).await);
        // One instance dies without warning while commands flow, and comes back later with
        // the same instance id.
        if n == 2 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            b.kill_hard();
        }
        if n == 5 {
            b = run.processor("b", "owner-b", &[]);
            restarted = true;
        }
    }
    assert!(restarted);
    assert_eq!(sent.len(), 2 * PER_CLIENT);

    let misplaced: HashSet<Uuid> = sent
        .iter()
        .filter(|s| s.partition != murmur2_partition(&s.sku))
        .map(|s| s.id)
        .collect();
    let crc_sent: Vec<&Sent> = sent.iter().step_by(2).collect();
    let murmur_sent: Vec<&Sent> = sent.iter().skip(1).step_by(2).collect();
    for s in &murmur_sent {
        assert_eq!(
            s.partition,
            murmur2_partition(&s.sku),
            "librdkafka murmur2_random and our partitioner disagree on {}",
            s.sku
        );
    }
    let crc_misplaced = crc_sent
        .iter()
        .filter(|s| misplaced.contains(&s.id))
        .count();
    let skus_misplaced: HashSet<&str> = crc_sent
        .iter()
        .filter(|s| misplaced.contains(&s.id))
        .map(|s| s.sku.as_str())
        .collect();
    eprintln!(
        "{} of {} CRC32-placed commands ({} SKUs) landed off their murmur2 partition",
        crc_misplaced,
        crc_sent.len(),
        skus_misplaced.len()
    );
    assert_eq!(crc_misplaced, misplaced.len());
    assert!(
        crc_misplaced >= 200 && skus_misplaced.len() >= 20,
        "too few misplaced commands to exercise forwarding: {crc_misplaced} over {} SKUs",
        skus_misplaced.len()
    );
    let by_id: HashMap<Uuid, &Sent> = sent.iter().map(|s| (s.id, s)).collect();

    // Every command answered exactly once, by applying it.
    let results = tokio::task::block_in_place(|| run.results(sent.len(), Duration::from_secs(240)));
    let mut answers: HashMap<Uuid, usize> = HashMap::new();
    for r in &results {
        *answers.entry(r.command_id).or_default() += 1;
        assert!(
            by_id.contains_key(&r.command_id),
            "a result for a command never sent: {r:?}"
        );
        assert!(
            matches!(r.outcome, Outcome::Accepted { .. }),
            "command {} not accepted: {:?}",
            r.command_id,
            r.outcome
        );
    }
    assert_eq!(answers.len(), sent.len(), "every command answered");
    assert_eq!(results.len(), 2 * PER_CLIENT, "no command answered twice");

    // One writer per aggregate: its events on its murmur2 partition only, versions 1..n.
    let events = tokio::task::block_in_place(|| run.events(sent.len()));
    assert_eq!(events.len(), sent.len(), "one event per command");
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut stock: BTreeMap<String, u64> = BTreeMap::new();
    let mut causes = HashSet::new();
    for (partition, e, m) in &events {
        assert!(
            causes.insert(e.causation_id),
            "command {} has two events",
            e.causation_id
        );
        let s = by_id
            .get(&e.causation_id)
            .expect("event caused by a sent command");
        assert_eq!(e.aggregate_id, s.sku);
        assert_eq!(
            *partition,
            murmur2_partition(&s.sku),
            "event of {} outside its murmur2 partition (command was on {})",
            s.sku,
            s.partition
        );
        let StockEvent::StockReceived(r) = &e.payload else {
            panic!("unexpected event {:?}", e.payload)
        };
        assert_eq!(r.quantity, s.quantity);
        // The trace went through the forward: the event continues the client's trace.
        let tp = header(m, "traceparent").expect("event traceparent");
        let trace = Traceparent::parse(&tp).expect("valid traceparent");
        assert_eq!(trace.trace_id, s.trace_id, "trace of {}", s.id);
        versions.entry(s.sku.clone()).or_default().push(e.version);
        *stock.entry(s.sku.clone()).or_default() += u64::from(r.quantity);
    }
    assert_eq!(versions.len(), SKUS);
    for (sku, vs) in &versions {
        let expected: Vec<u64> = (1..=vs.len() as u64).collect();
        assert_eq!(vs, &expected, "versions of {sku} are gap-free and in order");
    }
    let mut sent_stock: BTreeMap<String, u64> = BTreeMap::new();
    for s in &sent {
        *sent_stock.entry(s.sku.clone()).or_default() += u64::from(s.quantity);
    }
    assert_eq!(
        stock, sent_stock,
        "final stock equals the units sent per SKU"
    );

    // Each misplaced command was forwarded exactly once, to its owner, byte for byte with
    // every header; well-placed ones were never copied.
    let expected_commands = sent.len() + misplaced.len();
    let commands = tokio::task::block_in_place(|| {
        support::read_topic(&commands_topic, expected_commands, Duration::from_secs(60))
    });
    assert_eq!(
        commands.len(),
        expected_commands,
        "the commands topic holds the sent commands plus one forward per misplaced command"
    );
    let by_bytes: HashMap<&[u8], &Sent> = sent.iter().map(|s| (s.bytes.as_slice(), s)).collect();
    let mut copies: HashMap<Uuid, Vec<i32>> = HashMap::new();
    for m in &commands {
        let s = by_bytes
            .get(m.payload().expect("command value"))
            .expect("a command record the test sent, value bytes intact");
        assert_eq!(m.key(), Some(s.sku.as_bytes()), "key kept");
        assert_eq!(headers_of(m), s.headers, "headers of {} kept", s.id);
        copies.entry(s.id).or_default().push(m.partition());
    }
    for s in &sent {
        let mut got = copies.get(&s.id).cloned().unwrap_or_default();
        got.sort_unstable();
        let mut want = vec![s.partition];
        if misplaced.contains(&s.id) {
            want.push(murmur2_partition(&s.sku));
        }
        want.sort_unstable();
        assert_eq!(got, want, "copies of command {} ({})", s.id, s.sku);
    }
    let dlq = run.topics.dlq(PROCESSOR);
    let dlq_offsets = tokio::task::block_in_place(|| offsets_written(&dlq));
    assert_eq!(dlq_offsets, 0, "nothing was dead-lettered");

    assert!(a.terminate(Duration::from_secs(30)), "a stops cleanly");
    assert!(b.terminate(Duration::from_secs(30)), "b stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_forwarding_off_a_misplaced_command_is_rejected_and_changes_nothing() {
    let run = Run::new("compat_reject").await;
    let commands_topic = run.topics.commands(Context::Inventory);
    let mut processor = run.processor(
        "a",
        "reject",
        &[("STREAMCART_FORWARD_MISPLACED_COMMANDS", "false".into())],
    );
    let p = producer("murmur2_random");
    let sku = "SKU-REJECT-1";
    let owner = murmur2_partition(sku);
    let wrong = (owner + 1) % PARTITIONS;
    let trace = Traceparent::new_root();
    let headers = [("traceparent", trace.to_string())];

    let (first, bytes) = run.command(sku, 5).await;
    send(&p, &commands_topic, None, sku, &bytes, &headers).await;
    let (stray, bytes) = run.command(sku, 7).await;
    let at = send(&p, &commands_topic, Some(wrong), sku, &bytes, &headers).await;
    assert_eq!(at, wrong);
    let (last, bytes) = run.command(sku, 1).await;
    send(&p, &commands_topic, None, sku, &bytes, &headers).await;

    let results = tokio::task::block_in_place(|| run.results(3, Duration::from_secs(90)));
    assert_eq!(results.len(), 3, "one result per command: {results:?}");
    let outcome = |id: Uuid| {
        results
            .iter()
            .find(|r| r.command_id == id)
            .map(|r| r.outcome.clone())
            .expect("answered")
    };
    assert!(
        matches!(outcome(first), Outcome::Accepted { version: 1, .. }),
        "first command: {:?}",
        outcome(first)
    );
    match outcome(stray) {
        Outcome::Rejected { code, message } => {
            assert_eq!(code, "command.misplaced");
            assert!(
                message.contains(&format!("partition {owner} ")),
                "the rejection names the owner partition {owner}: {message}"
            );
            assert!(
                message.contains(&format!("partition {wrong} ")),
                "{message}"
            );
        }
        other => panic!("misplaced command answered {other:?}"),
    }
    assert!(
        matches!(outcome(last), Outcome::Accepted { version: 2, .. }),
        "the refused command did not take a version: {:?}",
        outcome(last)
    );

    let events = tokio::task::block_in_place(|| run.events(2));
    assert_eq!(events.len(), 2, "no event for the refused command");
    let quantities: Vec<(i32, u64, u32)> = events
        .iter()
        .map(|(partition, e, _)| {
            let StockEvent::StockReceived(r) = &e.payload else {
                panic!("unexpected event {:?}", e.payload)
            };
            assert_ne!(e.causation_id, stray);
            (*partition, e.version, r.quantity)
        })
        .collect();
    assert_eq!(quantities, vec![(owner, 1, 5), (owner, 2, 1)]);

    let commands = tokio::task::block_in_place(|| {
        support::read_topic(&commands_topic, 3, Duration::from_secs(30))
    });
    assert_eq!(commands.len(), 3, "nothing forwarded");
    assert!(processor.terminate(Duration::from_secs(30)));
}

/// The secured listener of the stack's broker (`scripts/stack env`): address, CA file, SCRAM user
/// and password.
fn secured_listener() -> (String, String, String, String) {
    let var = |name: &str| {
        std::env::var(name)
            .unwrap_or_else(|_| panic!("{name} unset: eval \"$(scripts/stack env)\""))
    };
    (
        var("STREAMCART_KAFKA_SECURE_BOOTSTRAP"),
        var("STREAMCART_KAFKA_SECURE_CA"),
        var("STREAMCART_KAFKA_SASL_USER"),
        var("STREAMCART_KAFKA_SASL_PASSWORD"),
    )
}

/// Remembers every error librdkafka reports, so a refusal can be told from a timeout.
#[derive(Default)]
struct Errors(std::sync::Mutex<Vec<String>>);

impl rdkafka::ClientContext for Errors {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(format!("{error}: {reason}"));
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Errors {}

/// Asks the secured listener for metadata with `settings` on top of TLS with the stack's CA:
/// `Ok` when it answered, or every error librdkafka reported.
fn metadata_over_tls(settings: &[(&str, &str)]) -> Result<(), Vec<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (bootstrap, ca, _, _) = secured_listener();
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("ssl.ca.location", &ca)
        .set("reconnect.backoff.max.ms", "1000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer<Errors> = config
        .create_with_context(Errors::default())
        .expect("client");
    match consumer.fetch_metadata(None, Duration::from_secs(10)) {
        Ok(_) => Ok(()),
        Err(e) => {
            // librdkafka hands its errors to the context only while the client is polled.
            for _ in 0..10 {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            let mut seen = consumer.context().0.lock().expect("errors").clone();
            seen.push(e.to_string());
            Err(seen)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_works_over_sasl_ssl_and_wrong_credentials_are_refused() {
    let (bootstrap, ca, user, password) = secured_listener();
    let run = Run::new("compat_sasl").await;
    // Configured as on a secured cluster, through the environment rule only.
    let secured = vec![
        ("STREAMCART_KAFKA_BOOTSTRAP", bootstrap.clone()),
        (
            "STREAMCART_KAFKA__PROPERTIES__SECURITY_PROTOCOL",
            "SASL_SSL".to_owned(),
        ),
        (
            "STREAMCART_KAFKA__PROPERTIES__SASL_MECHANISMS",
            "SCRAM-SHA-512".to_owned(),
        ),
        ("STREAMCART_KAFKA__PROPERTIES__SASL_USERNAME", user.clone()),
        (
            "STREAMCART_KAFKA__PROPERTIES__SASL_PASSWORD",
            password.clone(),
        ),
        ("STREAMCART_KAFKA__PROPERTIES__SSL_CA_LOCATION", ca.clone()),
    ];
    let mut processor = run.processor("sasl-0", "sasl", &secured);
    // The commands come from a client on the plaintext listener of the same broker.
    let p = producer("murmur2_random");
    let commands = run.topics.commands(Context::Inventory);
    let mut sent = HashSet::new();
    for i in 0..5 {
        let sku = format!("{}SKU-{i}", run.prefix);
        let (id, bytes) = run.command(&sku, 2).await;
        send(&p, &commands, None, &sku, &bytes, &[]).await;
        sent.insert(id);
    }
    let results = tokio::task::block_in_place(|| run.results(5, Duration::from_secs(120)));
    let answered: HashSet<Uuid> = results.iter().map(|r| r.command_id).collect();
    assert_eq!(
        answered,
        sent,
        "every command answered over SASL_SSL:\n{}",
        run.log("sasl")
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r.outcome, Outcome::Accepted { version: 1, .. })),
        "{results:?}"
    );
    assert!(processor.terminate(Duration::from_secs(30)));

    tokio::task::block_in_place(|| {
        metadata_over_tls(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "PLAIN"),
            ("sasl.username", &user),
            ("sasl.password", &password),
        ])
        .expect("PLAIN with the right password is let in");
        for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
            let errors = metadata_over_tls(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", &user),
                ("sasl.password", "not-the-password"),
            ])
            .expect_err("a wrong password is refused");
            assert!(
                errors.iter().any(|e| e.contains("Authentication failed")),
                "{mechanism}: no authentication failure among {errors:?}"
            );
        }
        // TLS without SASL: the listener wants a SASL handshake first.
        metadata_over_tls(&[("security.protocol", "SSL")])
            .expect_err("a client without credentials is refused");
    });
}

/// Starts the stock processor on the namespace `prefix` with `env`, waits (bounded) until it
/// exits, asserts it failed, and returns its log.
async fn refused_start(prefix: &str, env: &[(&str, String)], log_name: &str) -> String {
    let mut vars = vec![
        ("STREAMCART_TOPIC_PREFIX", prefix.to_owned()),
        ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
    ];
    vars.extend(env.iter().cloned());
    let mut processor = support::spawn_streamcart(&["process", "stock"], &vars, log_name);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = processor.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the processor kept running on topics that differ from its configuration ({log_name})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "{log_name}: exited with success");
    std::fs::read_to_string(support::log_path(log_name)).expect("log")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_refuses_topics_that_differ_from_its_configuration() {
    let ctx = Context::Inventory;

    // A partition count other than `partitions`: keys would land on other partitions than the
    // peers' (and than a client's murmur2) expect.
    let prefix = format!("{}.", support::unique("compat_parts"));
    let topics = Topics::with_prefix(prefix.clone());
    support::create_topics(&[&topics.commands(ctx), &topics.snapshots(ctx)], PARTITIONS).await;
    support::create_topics(&[&topics.events(ctx)], PARTITIONS + 2).await;
    let log = refused_start(&prefix, &[], &format!("{prefix}parts")).await;
    let wanted = format!(
        "topic {} has {} partitions, the configuration asks for {PARTITIONS}",
        topics.events(ctx),
        PARTITIONS + 2
    );
    assert!(log.contains(&wanted), "{wanted:?} not in the log:\n{log}");
    assert!(
        !log.contains("partitions assigned"),
        "it joined the group before checking"
    );

    // Weaker (or stronger) durability than asked for: min.insync.replicas differs.
    let prefix = format!("{}.", support::unique("compat_isr"));
    let topics = Topics::with_prefix(prefix.clone());
    support::create_topics_with(
        &[&topics.commands(ctx)],
        PARTITIONS,
        &[("min.insync.replicas", "2")],
    )
    .await;
    let log = refused_start(&prefix, &[], &format!("{prefix}isr")).await;
    let wanted = format!(
        "topic {} has min.insync.replicas 2, the configuration asks for 1 \
         (`kafka.topics.commands.min_insync_replicas`)",
        topics.commands(ctx)
    );
    assert!(log.contains(&wanted), "{wanted:?} not in the log:\n{log}");

    // A replication factor other than the class's: here the snapshots exist with one replica
    // and the configuration asks for two.
    let prefix = format!("{}.", support::unique("compat_rf"));
    let topics = Topics::with_prefix(prefix.clone());
    let snapshots: Vec<String> = Context::ALL.iter().map(|c| topics.snapshots(*c)).collect();
    let snapshots: Vec<&str> = snapshots.iter().map(String::as_str).collect();
    support::create_topics(&snapshots, PARTITIONS).await;
    let log = refused_start(
        &prefix,
        &[(
            "STREAMCART_KAFKA__TOPICS__SNAPSHOTS__REPLICATION_FACTOR",
            "2".to_owned(),
        )],
        &format!("{prefix}rf"),
    )
    .await;
    let wanted = format!(
        "topic {} has replication factor 1, the configuration asks for 2",
        topics.snapshots(ctx)
    );
    assert!(log.contains(&wanted), "{wanted:?} not in the log:\n{log}");
}

/// A W3C `traceparent` as a client of any language writes it.
struct Traceparent {
    trace_id: String,
    span_id: String,
}

impl Traceparent {
    fn new_root() -> Self {
        Self {
            trace_id: Uuid::new_v4().simple().to_string(),
            span_id: Uuid::new_v4().simple().to_string()[..16].to_owned(),
        }
    }

    fn parse(value: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(value).ok()?;
        let parts: Vec<&str> = text.split('-').collect();
        let valid = parts.len() == 4
            && parts[0] == "00"
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[1..3]
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
        valid.then(|| Self {
            trace_id: parts[1].to_owned(),
            span_id: parts[2].to_owned(),
        })
    }
}

impl std::fmt::Display for Traceparent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-01", self.trace_id, self.span_id)
    }
}
