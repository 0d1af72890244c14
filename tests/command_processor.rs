//! The command processor on the real stack: exactly-once under SIGKILL, group fail-over, and
//! dead letters for poison records. Every test owns its topics (a unique prefix).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand, StockEvent};
use streamcart_aggregates::values::Money;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, EventEnvelope, Outcome};
use streamcart_schemas::topics::{Context, Topics};
use streamcart_tests as support;
use uuid::Uuid;

const PARTITIONS: i32 = 4;

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
            topics.dlq("inventory.stock.processor"),
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

    fn processor(&self, instance: &str, log: &str) -> support::Child {
        support::spawn_streamcart(
            &["process", "stock"],
            &[
                ("STREAMCART_TOPIC_PREFIX", self.prefix.clone()),
                ("STREAMCART_INSTANCE_ID", instance.to_owned()),
                ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
                // Small numbers so snapshots and checkpoints happen many times in a run.
                ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "3".into()),
                ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "250".into()),
                ("STREAMCART_BATCH_MAX_RECORDS", "200".into()),
            ],
            &format!("{}{log}", self.prefix),
        )
    }

    async fn receive(&self, sku: &str, quantity: u32) -> (Uuid, Vec<u8>) {
        let id = Uuid::new_v4();
        let envelope = CommandEnvelope {
            command_id: id,
            aggregate_id: sku.to_owned(),
            expected_version: None,
            issued_at: 0,
            correlation_id: id.to_string(),
            payload: StockCommand::ReceiveStock(ReceiveStock { quantity }),
        };
        (
            id,
            self.codec.encode(&envelope).await.expect("encode command"),
        )
    }

    fn results(&self, at_least: usize, timeout: Duration) -> Vec<CommandResult> {
        let rt = tokio::runtime::Handle::current();
        support::read_topic(&self.topics.command_results(), at_least, timeout)
            .iter()
            .map(|m| {
                rt.block_on(
                    self.codec
                        .decode::<CommandResult>(m.payload().expect("result value")),
                )
                .expect("decode result")
            })
            .collect()
    }

    fn events(&self, at_least: usize) -> Vec<(i32, EventEnvelope<StockEvent>)> {
        let rt = tokio::runtime::Handle::current();
        support::read_topic(
            &self.topics.events(Context::Inventory),
            at_least,
            Duration::from_secs(60),
        )
        .iter()
        .map(|m| {
            let e = rt
                .block_on(
                    self.codec
                        .decode::<EventEnvelope<StockEvent>>(m.payload().expect("event value")),
                )
                .expect("decode event");
            (m.partition(), e)
        })
        .collect()
    }
}

fn producer() -> ThreadedProducer<DefaultProducerContext> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, value: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Waits until `expected` distinct command ids have a result, or the timeout passes.
fn wait_for_results(run: &Run, expected: usize, timeout: Duration) -> Vec<CommandResult> {
    let deadline = Instant::now() + timeout;
    loop {
        let results = run.results(expected, Duration::from_secs(20));
        let distinct: HashSet<Uuid> = results.iter().map(|r| r.command_id).collect();
        if distinct.len() >= expected || Instant::now() > deadline {
            return results;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Checks the exactly-once properties from the topics themselves.
fn assert_exactly_once(run: &Run, sent: &HashMap<Uuid, (String, u32)>, results: &[CommandResult]) {
    let mut by_command: HashMap<Uuid, usize> = HashMap::new();
    for r in results {
        *by_command.entry(r.command_id).or_default() += 1;
        assert!(
            matches!(r.outcome, Outcome::Accepted { .. }),
            "command {} was not accepted: {:?}",
            r.command_id,
            r.outcome
        );
    }
    assert_eq!(by_command.len(), sent.len(), "one result per command");
    let doubled: Vec<_> = by_command.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "commands with more than one result: {doubled:?}"
    );

    let events = run.events(sent.len());
    assert_eq!(events.len(), sent.len(), "one event per command");
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut received: BTreeMap<String, u64> = BTreeMap::new();
    let mut causes = HashSet::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for (partition, e) in &events {
        assert!(
            causes.insert(e.causation_id),
            "command {} produced events twice",
            e.causation_id
        );
        let (sku, qty) = sent
            .get(&e.causation_id)
            .expect("event caused by a sent command");
        assert_eq!(&e.aggregate_id, sku);
        let StockEvent::StockReceived(r) = &e.payload else {
            panic!("unexpected event {:?}", e.payload)
        };
        assert_eq!(r.quantity, *qty);
        versions
            .entry(e.aggregate_id.clone())
            .or_default()
            .push(e.version);
        *received.entry(e.aggregate_id.clone()).or_default() += u64::from(r.quantity);
        let p = partition_of
            .entry(e.aggregate_id.clone())
            .or_insert(*partition);
        assert_eq!(p, partition, "an aggregate's events stay in one partition");
    }
    for (sku, vs) in &versions {
        let expected: Vec<u64> = (1..=vs.len() as u64).collect();
        assert_eq!(vs, &expected, "versions of {sku} are gap-free and in order");
    }
    let mut expected_received: BTreeMap<String, u64> = BTreeMap::new();
    for (sku, q) in sent.values() {
        *expected_received.entry(sku.clone()).or_default() += u64::from(*q);
    }
    assert_eq!(received, expected_received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_through_repeated_sigkills() {
    let run = Run::new("cp_kill").await;
    let commands_topic = run.topics.commands(Context::Inventory);
    let mut sent: HashMap<Uuid, (String, u32)> = HashMap::new();
    let mut batches = Vec::new();
    let mut rng = rand::rng();
    for i in 0..10_000u32 {
        let sku = format!("SKU-{:04}", i % 1_000);
        let qty = rng.random_range(1..=9);
        let (id, bytes) = run.receive(&sku, qty).await;
        sent.insert(id, (sku.clone(), qty));
        batches.push((sku, bytes));
    }

    let mut processor = run.processor("a", "kill");
    let p = producer();
    let mut kills = 0;
    let started = Instant::now();
    for (n, chunk) in batches.chunks(500).enumerate() {
        for (sku, bytes) in chunk {
            send(&p, &commands_topic, sku, bytes);
        }
        p.flush(Duration::from_secs(30)).expect("flush commands");
        // Kill at a random moment while commands flow, then restart with the same instance id.
        if n % 3 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
            processor.kill_hard();
            kills += 1;
            processor = run.processor("a", "kill");
        }
    }
    assert!(kills >= 5, "only {kills} kills");
    let results = tokio::task::block_in_place(|| {
        wait_for_results(&run, sent.len(), Duration::from_secs(240))
    });
    eprintln!(
        "exactly-once run: {} commands, {} kills, settled in {:?}",
        sent.len(),
        kills,
        started.elapsed()
    );
    tokio::task::block_in_place(|| assert_exactly_once(&run, &sent, &results));
    assert!(
        processor.terminate(Duration::from_secs(30)),
        "clean shutdown on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_takes_over_when_one_dies() {
    let run = Run::new("cp_group").await;
    let commands_topic = run.topics.commands(Context::Inventory);
    let mut a = run.processor("a", "group-a");
    let mut b = run.processor("b", "group-b");
    // Both instances own partitions before any command flows: the group split the work.
    let logs = support::streamcart_bin()
        .parent()
        .expect("dir")
        .join("test-logs");
    let log_of = |name: &str| {
        std::fs::read_to_string(logs.join(format!("{}{name}.log", run.prefix))).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(log_of("group-a").contains("partition restored")
        && log_of("group-b").contains("partition restored"))
    {
        assert!(
            Instant::now() < deadline,
            "the two instances never both owned partitions"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let p = producer();
    let mut sent = HashMap::new();
    for i in 0..1_000u32 {
        let sku = format!("SKU-{:03}", i % 100);
        let (id, bytes) = run.receive(&sku, 1 + i % 5).await;
        sent.insert(id, (sku.clone(), 1 + i % 5));
        send(&p, &commands_topic, &sku, &bytes);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let first = tokio::task::block_in_place(|| {
        wait_for_results(&run, sent.len(), Duration::from_secs(120))
    });
    assert_eq!(first.len(), sent.len());

    a.kill_hard();
    for i in 0..1_000u32 {
        let sku = format!("SKU-{:03}", i % 100);
        let (id, bytes) = run.receive(&sku, 1 + i % 7).await;
        sent.insert(id, (sku.clone(), 1 + i % 7));
        send(&p, &commands_topic, &sku, &bytes);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
    let results = tokio::task::block_in_place(|| {
        wait_for_results(&run, sent.len(), Duration::from_secs(180))
    });
    tokio::task::block_in_place(|| assert_exactly_once(&run, &sent, &results));
    assert!(b.terminate(Duration::from_secs(30)));
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers().and_then(|hs| {
        hs.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_records_are_dead_lettered_and_processing_continues() {
    let run = Run::new("cp_poison").await;
    let commands_topic = run.topics.commands(Context::Inventory);
    let dlq = run.topics.dlq("inventory.stock.processor");
    let mut processor = run.processor("a", "poison");
    let p = producer();

    send(&p, &commands_topic, "SKU-1", b"definitely not avro");
    let mut unknown_id = vec![0u8];
    unknown_id.extend_from_slice(&987_654_321u32.to_be_bytes());
    unknown_id.extend_from_slice(&[2, 4, 6]);
    send(&p, &commands_topic, "SKU-1", &unknown_id);
    // A catalog command on the inventory topic: a valid record of another aggregate type.
    let wrong = CommandEnvelope {
        command_id: Uuid::new_v4(),
        aggregate_id: "SKU-1".into(),
        expected_version: None,
        issued_at: 0,
        correlation_id: "x".into(),
        payload: ProductCommand::CreateProduct(CreateProduct {
            sku: "SKU-1".into(),
            name: "Lamp".into(),
            category: "home".into(),
            price: Money::new(1999, "EUR").expect("money"),
        }),
    };
    let wrong_bytes = run.codec.encode(&wrong).await.expect("encode");
    send(&p, &commands_topic, "SKU-1", &wrong_bytes);
    let (good, good_bytes) = run.receive("SKU-1", 4).await;
    send(&p, &commands_topic, "SKU-1", &good_bytes);
    p.flush(Duration::from_secs(30)).expect("flush");

    let results =
        tokio::task::block_in_place(|| wait_for_results(&run, 1, Duration::from_secs(60)));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].command_id, good);
    assert!(matches!(
        results[0].outcome,
        Outcome::Accepted { version: 1, .. }
    ));

    let dead =
        tokio::task::block_in_place(|| support::read_topic(&dlq, 3, Duration::from_secs(30)));
    assert_eq!(dead.len(), 3, "three dead letters");
    let payloads: Vec<Vec<u8>> = dead
        .iter()
        .map(|m| m.payload().unwrap_or_default().to_vec())
        .collect();
    assert_eq!(payloads[0], b"definitely not avro", "original bytes kept");
    assert_eq!(payloads[1], unknown_id);
    assert_eq!(payloads[2], wrong_bytes);
    let kinds: Vec<Option<String>> = dead.iter().map(|m| header(m, "dlq.kind")).collect();
    assert_eq!(kinds[1].as_deref(), Some("decode.unknown_schema_id"));
    for m in &dead {
        assert!(header(m, "dlq.reason").is_some_and(|r| !r.is_empty()));
        assert_eq!(
            header(m, "dlq.source.topic").as_deref(),
            Some(commands_topic.as_str())
        );
    }
    assert!(processor.terminate(Duration::from_secs(30)));
}
