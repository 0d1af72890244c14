//! The first run of a fresh deployment: `streamcart run` on a topic namespace, keyspace and set of
//! subjects that do not exist yet, then one order through the real path (the HTTP command
//! gateway, the command topics, every processor and the saga) with a card the payment simulator
//! always authorizes. The order must be confirmed within 15 s of being placed.
//!
//! Nothing is created beforehand: the topics, the subjects and the tables are the system's own
//! doing, which is what this test is about.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use streamcart_aggregates::orders::OrderEvent;
use streamcart_aggregates::payments::TEST_CARD_SUCCESS;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::EventEnvelope;
use streamcart_schemas::topics::{Context, Stream, Topics};
use streamcart_tests as support;

const SECRET: &str = "first-run-test-secret-of-at-least-32-bytes";
/// How long the system may take to come up on a fresh namespace (topics, tables, groups).
const START_WAIT: Duration = Duration::from_secs(180);
/// The promise under test: an authorized order is confirmed this soon after it is placed.
const CONFIRM_WITHIN: Duration = Duration::from_secs(15);

fn token(sub: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    streamcart_api::auth::mint_hs256(SECRET, sub, &roles, 600).expect("token")
}

/// POSTs `body` with a bearer token; status and JSON answer.
async fn post(http: &Client, url: &str, bearer: &str, body: &Value) -> (StatusCode, Value) {
    match http.post(url).bearer_auth(bearer).json(body).send().await {
        Ok(r) => {
            let status = r.status();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": e.to_string() }),
        ),
    }
}

/// POSTs until the answer is `want`, while it is a 5xx (the system is still starting) or `retry_on`.
async fn post_until(
    http: &Client,
    url: &str,
    bearer: &str,
    body: &Value,
    want: StatusCode,
    retry_on: Option<&str>,
    deadline: Instant,
) -> Value {
    loop {
        let (status, answer) = post(http, url, bearer, body).await;
        if status == want {
            return answer;
        }
        // An earlier attempt answered late (202 or a timeout) may have been applied: creating
        // what now exists is done.
        if answer["code"] == "product.already_exists" {
            return answer;
        }
        let retryable = status.is_server_error()
            || status == StatusCode::ACCEPTED
            || retry_on.is_some_and(|code| answer["code"] == code);
        assert!(
            retryable && Instant::now() < deadline,
            "POST {url}: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A reader of every partition of `topic` from the start (the namespace is fresh and small).
fn reader(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", support::unique("first-run-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    assert!(tpl.count() > 0, "{topic} has no partitions");
    consumer.assign(&tpl).expect("assign");
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_authorized_order_is_confirmed_on_the_first_run() {
    let id = support::unique("firstrun");
    let prefix = format!("{id}.");
    let topics = Topics::with_prefix(prefix.clone());
    let port = support::free_port();
    let log_name = format!("first-run-{id}");
    let _system = support::spawn_streamcart(
        &["run"],
        &[
            ("STREAMCART_TOPIC_PREFIX", prefix.clone()),
            ("STREAMCART_KEYSPACE", id.clone()),
            ("STREAMCART_CASSANDRA_NODES", support::cassandra_node()),
            ("STREAMCART_REDIS_URL", support::redis_url()),
            ("STREAMCART_API_LISTEN", format!("127.0.0.1:{port}")),
            ("STREAMCART_JWT_HS256_SECRET", SECRET.to_owned()),
        ],
        &log_name,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let started = Instant::now();
    let deadline = started + START_WAIT;

    let admin = token("first-run-admin", &["catalog_admin"]);
    let sku = "FIRST-RUN-1";
    post_until(
        &http,
        &format!("{base}/v1/products"),
        &admin,
        &json!({"sku": sku, "name": "First lamp", "category": "first-run",
                "price": {"amount_minor": 1_999, "currency": "EUR"}}),
        StatusCode::CREATED,
        None,
        deadline,
    )
    .await;
    post_until(
        &http,
        &format!("{base}/v1/stock/{sku}/receive"),
        &admin,
        &json!({"quantity": 10}),
        StatusCode::OK,
        None,
        deadline,
    )
    .await;
    eprintln!("system answered commands after {:?}", started.elapsed());

    // The start-up registration put the whole contract in the registry before any command.
    let registry = Client::new();
    for stream in Stream::all() {
        let subject = topics.subject(stream);
        let config: Value = registry
            .get(format!("{}/config/{subject}", support::registry_url()))
            .send()
            .await
            .expect("registry")
            .json()
            .await
            .expect("config json");
        assert_eq!(
            config["compatibilityLevel"], "BACKWARD_TRANSITIVE",
            "{subject}"
        );
        let versions = registry
            .get(format!(
                "{}/subjects/{subject}/versions",
                support::registry_url()
            ))
            .send()
            .await
            .expect("registry");
        assert_eq!(versions.status(), StatusCode::OK, "{subject} missing");
    }

    // The order processor prices from its catalog copy, which may lag the product by a moment:
    // placing is retried while it answers order.unknown_sku.
    let customer = "first-run-customer";
    let order_id = uuid::Uuid::new_v4().to_string();
    let placed = post_until(
        &http,
        &format!("{base}/v1/orders"),
        &token(customer, &["customer"]),
        &json!({"order_id": order_id, "lines": [{"sku": sku, "quantity": 1}],
                "card_token": TEST_CARD_SUCCESS}),
        StatusCode::CREATED,
        Some("order.unknown_sku"),
        deadline,
    )
    .await;
    let placed_at = Instant::now();
    assert_eq!(placed["aggregate_id"], order_id.as_str(), "{placed}");

    let codec = Codec::new(&support::registry_url(), topics.clone()).expect("codec");
    let events = topics.events(Context::Orders);
    let orders = tokio::task::block_in_place(|| reader(&events));
    let mut seen = Vec::new();
    let confirmed_after = loop {
        let elapsed = placed_at.elapsed();
        if elapsed > CONFIRM_WITHIN {
            panic!(
                "order {order_id} not confirmed {} s after it was placed; its events: {seen:?} \
                 (log: target/debug/test-logs/{log_name}.log)",
                CONFIRM_WITHIN.as_secs()
            );
        }
        let polled = tokio::task::block_in_place(|| {
            orders
                .poll(Duration::from_millis(200))
                .and_then(Result::ok)
                .and_then(|m| m.payload().map(<[u8]>::to_vec))
        });
        let Some(bytes) = polled else { continue };
        let event: EventEnvelope<OrderEvent> = codec.decode(&bytes).await.expect("order event");
        if event.aggregate_id != order_id {
            continue;
        }
        let name = format!("{:?}", event.payload);
        seen.push(name.split(['(', ' ']).next().unwrap_or("").to_owned());
        match event.payload {
            OrderEvent::OrderConfirmed(_) => break placed_at.elapsed(),
            OrderEvent::OrderCancelled(_) | OrderEvent::OrderExpired(_) => {
                panic!("order {order_id} ended as {seen:?}, not confirmed")
            }
            _ => {}
        }
    };
    eprintln!("order confirmed {confirmed_after:?} after it was placed; events {seen:?}");
    assert_eq!(
        seen.first().map(String::as_str),
        Some("OrderPlaced"),
        "{seen:?}"
    );

    // What the customer sees follows: the read model holds the confirmed order.
    let customer_token = token(customer, &["customer"]);
    let read_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http
            .get(format!("{base}/v1/orders/{order_id}"))
            .bearer_auth(&customer_token)
            .send()
            .await;
        if let Ok(r) = answer
            && r.status() == StatusCode::OK
            && r.json::<Value>()
                .await
                .ok()
                .is_some_and(|b| b["status"] == "confirmed")
        {
            break;
        }
        assert!(
            Instant::now() < read_deadline,
            "GET /v1/orders/{order_id} never showed it confirmed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // End-of-partition notices are routine, never errors.
    let log_path = support::streamcart_bin()
        .parent()
        .expect("target dir")
        .join("test-logs")
        .join(format!("{log_name}.log"));
    let log = std::fs::read_to_string(&log_path).expect("run log");
    let eof_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && (l.contains("EOF") || l.contains("No more messages")))
        .collect();
    assert!(
        eof_errors.is_empty(),
        "partition ends logged as errors: {eof_errors:?}"
    );
}
