//! The command processor on the real stack: exactly-once under SIGKILL, group fail-over, and
//! dead letters for poison records. Every test owns its topics (a unique prefix).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::Producer;
use streamcart_aggregates::inventory::StockEvent;
use streamcart_schemas::envelope::{CommandResult, EventEnvelope, Outcome};
use streamcart_schemas::topics::Context;
use streamcart_tests as support;
use streamcart_tests::commands::{create_product, envelope, receive_stock};
use streamcart_tests::kafka::produce;
use streamcart_tests::world::World;
use uuid::Uuid;

/// The processor's dead-letter topic, as `streamcart process stock` names it.
const DLQ: &str = "inventory.stock.processor";

async fn world(name: &str) -> World {
    let world = World::new(name).await;
    world.create_topics(&[world.topics.dlq(DLQ)]).await;
    world
}

fn spawn_processor(world: &World, instance: &str, log: &str) -> support::Child {
    world.spawn_with(
        &["process", "stock"],
        &[
            ("STREAMCART_INSTANCE_ID", instance.to_owned()),
            // Small numbers so snapshots and checkpoints happen many times in a run.
            ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "3".into()),
            ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "250".into()),
            ("STREAMCART_BATCH_MAX_RECORDS", "200".into()),
        ],
        log,
    )
}

/// Waits until `expected` distinct command ids have a result, or fails naming what arrived.
fn wait_for_results(world: &World, expected: usize, timeout: Duration) -> Vec<CommandResult> {
    let deadline = Instant::now() + timeout;
    let mut results = world.results(expected, timeout);
    // A command answered twice fills the count without every command having its answer: read
    // again, for more than arrived so far.
    loop {
        let distinct: HashSet<Uuid> = results.iter().map(|r| r.command_id).collect();
        if distinct.len() >= expected {
            return results;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        results = world.results(results.len() + 1, left.max(Duration::from_secs(20)));
    }
}

fn events(world: &World, expected: usize) -> Vec<(i32, EventEnvelope<StockEvent>)> {
    world.decode_topic(
        &world.topics.events(Context::Inventory),
        expected,
        Duration::from_secs(60),
    )
}

/// Checks the exactly-once properties from the topics themselves.
fn assert_exactly_once(
    world: &World,
    sent: &HashMap<Uuid, (String, u32)>,
    results: &[CommandResult],
) {
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

    let events = events(world, sent.len());
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
    let world = world("cp_kill").await;
    let mut sent: HashMap<Uuid, (String, u32)> = HashMap::new();
    let mut batches = Vec::new();
    let mut rng = rand::rng();
    for i in 0..10_000u32 {
        let sku = format!("SKU-{:04}", i % 1_000);
        let qty = rng.random_range(1..=9);
        let (id, bytes) = world.encode(&sku, receive_stock(qty)).await;
        sent.insert(id, (sku.clone(), qty));
        batches.push((sku, bytes));
    }

    let mut processor = spawn_processor(&world, "a", "kill");
    let mut kills = 0;
    let started = Instant::now();
    for (n, chunk) in batches.chunks(500).enumerate() {
        for (sku, bytes) in chunk {
            world.send_encoded(Context::Inventory, sku, bytes);
        }
        world.flush();
        // Kill at a random moment while commands flow, then restart with the same instance id.
        if n % 3 == 1 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
            processor.kill_hard();
            kills += 1;
            processor = spawn_processor(&world, "a", "kill");
        }
    }
    assert!(kills >= 5, "only {kills} kills");
    let results = tokio::task::block_in_place(|| {
        wait_for_results(&world, sent.len(), Duration::from_secs(240))
    });
    eprintln!(
        "exactly-once run: {} commands, {} kills, settled in {:?}",
        sent.len(),
        kills,
        started.elapsed()
    );
    tokio::task::block_in_place(|| assert_exactly_once(&world, &sent, &results));
    assert!(
        processor.terminate(Duration::from_secs(30)),
        "clean shutdown on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_takes_over_when_one_dies() {
    let world = world("cp_group").await;
    let mut a = spawn_processor(&world, "a", "group-a");
    let mut b = spawn_processor(&world, "b", "group-b");
    // Both instances own partitions before any command flows: the group split the work.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(world.log("group-a").contains("partition restored")
        && world.log("group-b").contains("partition restored"))
    {
        assert!(
            Instant::now() < deadline,
            "the two instances never both owned partitions"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut sent = HashMap::new();
    for i in 0..1_000u32 {
        let sku = format!("SKU-{:03}", i % 100);
        let id = world
            .send(Context::Inventory, &sku, receive_stock(1 + i % 5))
            .await;
        sent.insert(id, (sku.clone(), 1 + i % 5));
    }
    world.flush();
    let first = tokio::task::block_in_place(|| {
        wait_for_results(&world, sent.len(), Duration::from_secs(120))
    });
    assert_eq!(first.len(), sent.len());

    a.kill_hard();
    for i in 0..1_000u32 {
        let sku = format!("SKU-{:03}", i % 100);
        let id = world
            .send(Context::Inventory, &sku, receive_stock(1 + i % 7))
            .await;
        sent.insert(id, (sku.clone(), 1 + i % 7));
    }
    world.flush();
    let results = tokio::task::block_in_place(|| {
        wait_for_results(&world, sent.len(), Duration::from_secs(180))
    });
    tokio::task::block_in_place(|| assert_exactly_once(&world, &sent, &results));
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
    let world = world("cp_poison").await;
    let commands_topic = world.topics.commands(Context::Inventory);
    let dlq = world.topics.dlq(DLQ);
    let mut processor = spawn_processor(&world, "a", "poison");
    let p = &world.producer;

    produce(p, &commands_topic, "SKU-1", b"definitely not avro");
    let mut unknown_id = vec![0u8];
    unknown_id.extend_from_slice(&987_654_321u32.to_be_bytes());
    unknown_id.extend_from_slice(&[2, 4, 6]);
    produce(p, &commands_topic, "SKU-1", &unknown_id);
    // A catalog command on the inventory topic: a valid record of another aggregate type.
    let wrong = envelope("SKU-1", create_product("SKU-1", "Lamp", "home", 1999));
    let wrong_bytes = support::commands::encode(&world.codec, &wrong).await;
    produce(p, &commands_topic, "SKU-1", &wrong_bytes);
    let good = world
        .send(Context::Inventory, "SKU-1", receive_stock(4))
        .await;
    p.flush(Duration::from_secs(30)).expect("flush");

    let results =
        tokio::task::block_in_place(|| wait_for_results(&world, 1, Duration::from_secs(60)));
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
