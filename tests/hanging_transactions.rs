//! The sweep for hanging transactions against the real broker: it describes open transactions
//! on the namespace's partitions, asks their coordinators, and leaves every live transaction
//! alone. (A hanging transaction cannot be made on purpose without breaking the broker; the
//! chaos test, whose broker SIGKILL leaves them behind, proves the abort.)

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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

    let s = settings.clone();
    let o = owners.clone();
    let report = tokio::task::spawn_blocking(move || sweep(&s, &o))
        .await
        .expect("sweep task")
        .expect("sweep");
    assert_eq!(report.partitions, 2, "{report:?}");
    assert_eq!(
        report.open, 2,
        "both partitions hold the open transaction: {report:?}"
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
