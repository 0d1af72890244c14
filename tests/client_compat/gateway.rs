//! The command gateway's Idempotency-Key: one key, one effect.
//!
//! Every role runs (`streamcart run`, which serves an edge of its own) beside a second edge
//! (`streamcart serve`), so retries land on two instances, and one of them is restarted midway.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use streamcart_aggregates::inventory::StockEvent;
use streamcart_aggregates::orders::OrderEvent;
use streamcart_schemas::topics::Context;
use streamcart_tests::Child;
use streamcart_tests::world::World;
use uuid::Uuid;

const SECRET: &str = "client-compat-gateway-secret-0123456789";
/// Concurrent retries of one request.
const RETRIES: usize = 50;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn token(sub: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "roles": roles, "iat": now, "exp": now + 3_600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

fn edge_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("STREAMCART_API_LISTEN", format!("127.0.0.1:{port}")),
        ("STREAMCART_JWT_HS256_SECRET", SECRET.to_owned()),
        ("STREAMCART_API_COMMAND_TIMEOUT_MS", "10000".into()),
    ]
}

/// One HTTP edge the test talks to.
struct Edge {
    base: String,
    http: Client,
}

impl Edge {
    async fn at(port: u16) -> Self {
        let edge = Self {
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .build()
                .expect("http client"),
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = edge.http.get(format!("{}/health", edge.base)).send().await
                && r.status() == StatusCode::OK
            {
                return edge;
            }
            assert!(Instant::now() < deadline, "edge on {port} never healthy");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        key: Option<Uuid>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(b);
        }
        if let Some(k) = key {
            request = request.header("idempotency-key", k.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn post(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        key: Option<Uuid>,
    ) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body), key).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None, None).await
    }
}

fn assert_reused(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], json!("idempotency_key_reused"), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Every `OrderPlaced` of `customer` in the world's order events.
fn placed_for(world: &World, customer: &str) -> Vec<String> {
    tokio::task::block_in_place(|| world.events::<OrderEvent>(Context::Orders))
        .into_iter()
        .filter_map(|e| match e.payload {
            OrderEvent::OrderPlaced(p) if p.customer_id.as_str() == customer => {
                Some(p.order_id.as_str().to_owned())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_places_one_order_whoever_retries_it_where() {
    let world = World::new("idem").await;
    let tag = world.keyspace.clone();
    let (port_a, port_b) = (free_port(), free_port());
    let _roles: Child = world.spawn_with(&["run"], &edge_env(port_a), "run");
    let mut second: Child = world.spawn_with(&["serve"], &edge_env(port_b), "serve");
    let a = Edge::at(port_a).await;
    let mut b = Edge::at(port_b).await;

    // A product with plenty of stock, known to the order processor's catalog copy.
    let admin = token("admin", &["catalog_admin"]);
    let sku = format!("{tag}-MUG");
    let (status, body) = a
        .post(
            "/v1/products",
            &admin,
            &json!({"sku": sku, "name": "Mug", "category": format!("{tag}-kitchen"),
                    "price": {"amount_minor": 1250, "currency": "EUR"}}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = a
        .post(
            &format!("/v1/stock/{sku}/receive"),
            &admin,
            &json!({"quantity": 100}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let probe = token(&format!("{tag}-probe"), &["customer"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, body) = a
            .post(
                "/v1/orders",
                &probe,
                &json!({"lines": [{"sku": sku, "quantity": 1}], "card_token": "card-ok"}),
                None,
            )
            .await;
        if status == StatusCode::CREATED {
            break;
        }
        assert_eq!(body["code"], json!("order.unknown_sku"), "{status} {body}");
        assert!(
            Instant::now() < deadline,
            "the catalog never reached orders"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The same key, fifty times at once, over two edges, without an order id.
    let customer = format!("{tag}-alice");
    let alice = token(&customer, &["customer"]);
    let key = Uuid::new_v4();
    let order = json!({"lines": [{"sku": sku, "quantity": 2}], "card_token": "card-ok"});
    let answers = futures::future::join_all((0..RETRIES).map(|i| {
        let edge = if i % 2 == 0 { &a } else { &b };
        edge.post("/v1/orders", &alice, &order, Some(key))
    }))
    .await;
    let mut order_ids = BTreeSet::new();
    let mut first_answers = BTreeSet::new();
    for (status, body) in &answers {
        // The first answer (201, replayed by the instance that got it or from the key store),
        // a duplicate's 200 for a copy that raced it, or a late 202: never anything else.
        assert!(
            [StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED].contains(status),
            "{status} {body}"
        );
        if *status == StatusCode::CREATED {
            assert_eq!(body["status"], json!("accepted"), "{body}");
            first_answers.insert(body.to_string());
        }
        assert_eq!(body["command_id"], json!(key.to_string()), "{body}");
        order_ids.insert(
            body["aggregate_id"]
                .as_str()
                .expect("aggregate_id")
                .to_owned(),
        );
    }
    assert_eq!(
        order_ids.len(),
        1,
        "every answer names one order: {order_ids:?}"
    );
    let order_id = order_ids.pop_first().expect("one order id");
    assert_eq!(
        order_id,
        streamcart_api::idempotency::order_id_for(&customer, key).to_string()
    );
    assert_eq!(
        first_answers.len(),
        1,
        "every 201 is the same answer: {first_answers:?}"
    );
    let first: Value = serde_json::from_str(first_answers.first().expect("one")).expect("json");

    // One order placed, and the saga carries it to confirmation (its reservations were not
    // mistaken for duplicates of another order's).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, body) = a.get(&format!("/v1/orders/{order_id}"), &alice).await;
        if status == StatusCode::OK && body["status"] == json!("confirmed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order never confirmed: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // An edge restarted forgets what it answered; the retry is still the same command.
    second.terminate(Duration::from_secs(15));
    drop(second);
    let port_c = free_port();
    let _third: Child = world.spawn_with(&["serve"], &edge_env(port_c), "serve-again");
    b = Edge::at(port_c).await;
    // The restarted edge replays the first answer from the key store.
    let (status, body) = b.post("/v1/orders", &alice, &order, Some(key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, first);

    // Another customer's use of the key is refused, on either edge, whatever the body.
    let bob = token(&format!("{tag}-bob"), &["customer"]);
    for edge in [&a, &b] {
        let (status, body) = edge.post("/v1/orders", &bob, &order, Some(key)).await;
        assert_reused(status, &body);
    }
    // The same customer may not reuse it for another body, nor for another endpoint.
    let other = json!({"lines": [{"sku": sku, "quantity": 3}], "card_token": "card-ok"});
    let (status, body) = b.post("/v1/orders", &alice, &other, Some(key)).await;
    assert_reused(status, &body);
    let (status, body) = a
        .call(
            Method::POST,
            &format!("/v1/orders/{order_id}/cancel"),
            &alice,
            None,
            Some(key),
        )
        .await;
    assert_reused(status, &body);

    // Exactly one OrderPlaced for the customer, and one order in its listing.
    let placed = placed_for(&world, &customer);
    assert_eq!(placed, vec![order_id.clone()]);
    let (status, listing) = a
        .get(&format!("/v1/customers/{customer}/orders"), &alice)
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let items = listing["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{listing}");
    assert_eq!(items[0]["order_id"], json!(order_id));
    let (_, bobs) = a
        .get(&format!("/v1/customers/{tag}-bob/orders"), &bob)
        .await;
    assert_eq!(bobs["items"], json!([]), "{bobs}");

    // No event id appears twice, in either topic the order touched.
    let orders = tokio::task::block_in_place(|| world.events::<OrderEvent>(Context::Orders));
    let stock = tokio::task::block_in_place(|| world.events::<StockEvent>(Context::Inventory));
    let ids: Vec<Uuid> = orders
        .iter()
        .map(|e| e.event_id)
        .chain(stock.iter().map(|e| e.event_id))
        .collect();
    let distinct: BTreeSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "event ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_command_is_refused_while_the_key_store_is_unreachable() {
    let world = World::new("idem_noredis").await;
    let port = free_port();
    let dead_redis = format!("redis://127.0.0.1:{}", free_port());
    let mut env = edge_env(port);
    env.push(("STREAMCART_REDIS_URL", dead_redis));
    env.push(("STREAMCART_API_COMMAND_TIMEOUT_MS", "1000".into()));
    let _edge: Child = world.spawn_with(&["serve"], &env, "serve-noredis");
    let edge = Edge::at(port).await;
    let admin = token("admin", &["catalog_admin"]);
    let body = json!({"quantity": 5});
    let path = "/v1/stock/SKU-NOREDIS/receive";

    // Nothing processes commands here: an unkeyed one is produced and answered 202.
    let (status, reply) = edge.post(path, &admin, &body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");

    // A keyed one cannot be bound, so it is refused, quickly, and nothing is produced for it.
    let key = Uuid::new_v4();
    let started = Instant::now();
    let (status, reply) = edge.post(path, &admin, &body, Some(key)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reply}");
    assert_eq!(
        reply["code"],
        json!("idempotency_store_unavailable"),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let commands = tokio::task::block_in_place(|| {
        streamcart_tests::read_topic(
            &world.topics.commands(Context::Inventory),
            1,
            Duration::from_secs(30),
        )
    });
    assert_eq!(commands.len(), 1, "only the unkeyed command was produced");
}
