//! The sweep for hanging transactions against the real broker: it describes open transactions
//! on the namespace's partitions and on its groups' offsets partitions, asks their coordinators,
//! and leaves every live transaction alone. (A hanging transaction cannot be made on purpose without breaking the broker; the
//! chaos test, whose broker SIGKILL leaves them behind, proves the abort.)

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use streamcart_kafka_runtime::KafkaSettings;
use streamcart_kafka_runtime::hanging::{Owners, sweep};
use streamcart_tests as support;

fn settings() -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: support::kafka_bootstrap(),
        ..KafkaSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_transaction_is_seen_and_left_open_until_its_producer_commits() {
    let prefix = format!("{}.", support::unique("hang"));
    let topic = format!("{prefix}orders.order.events");
    support::create_topics(&[&topic], 2).await;
    let group = format!("{prefix}orders.order.processor");
    let owners = Owners {
        topic_prefix: prefix.clone(),
        groups: vec![group.clone()],
    };
    let settings = settings();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("transactional.id", format!("{group}-0"))
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init");
    producer.begin_transaction().expect("begin");
    for p in 0..2 {
        producer
            .send(BaseRecord::to(&topic).partition(p).key("k").payload("v"))
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    // The loop's input offsets join the transaction too: pending on the group's
    // `__consumer_offsets` partition until the transaction ends, which the sweep also covers.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &group)
        .create()
        .expect("consumer");
    let metadata = consumer.group_metadata().expect("group metadata");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(1))
        .expect("offset");
    producer
        .send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))
        .expect("offsets into the transaction");

    let s = settings.clone();
    let o = owners.clone();
    let report = tokio::task::spawn_blocking(move || sweep(&s, &o))
        .await
        .expect("sweep task")
        .expect("sweep");
    assert_eq!(
        report.partitions, 3,
        "the topic's two partitions and the group's offsets partition: {report:?}"
    );
    assert_eq!(
        report.open, 3,
        "both partitions and the pending offsets hold the open transaction: {report:?}"
    );
    assert!(
        report.hanging.is_empty(),
        "a live transaction of our own loop id must not be aborted: {report:?}"
    );

    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("the sweep left the transaction committable");
    let read = support::read_topic(&topic, 2, Duration::from_secs(30));
    assert_eq!(read.len(), 2, "both records committed");
    let committed = consumer
        .committed_offsets(
            {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, 0);
                tpl
            },
            Duration::from_secs(30),
        )
        .expect("committed offsets");
    assert_eq!(
        committed.find_partition(&topic, 0).map(|e| e.offset()),
        Some(Offset::Offset(1)),
        "the offsets committed with the transaction"
    );

    let s = settings.clone();
    let report = tokio::task::spawn_blocking(move || sweep(&s, &owners))
        .await
        .expect("sweep task")
        .expect("sweep");
    assert_eq!(report.open, 0, "{report:?}");
}

/// Sweeps an existing namespace of a stack left with hanging transactions (for diagnosis):
/// `STREAMCART_SWEEP_PREFIX=chaos_x. cargo test --test hanging_transactions -- --ignored`.
#[test]
#[ignore]
fn sweep_a_given_namespace() {
    let prefix = std::env::var("STREAMCART_SWEEP_PREFIX").expect("STREAMCART_SWEEP_PREFIX");
    let groups = [
        "catalog.product.processor",
        "inventory.stock.processor",
        "orders.order.processor",
        "payments.payment.processor",
        "orders.saga.reactions",
        "orders.saga.deadlines",
    ]
    .iter()
    .map(|g| format!("{prefix}{g}"))
    .collect();
    let report = sweep(
        &settings(),
        &Owners {
            topic_prefix: prefix,
            groups,
        },
    )
    .expect("sweep");
    println!("{report:#?}");
}
