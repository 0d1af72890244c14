//! The HTTP edge on the real stack: every endpoint, read-your-writes, the gateway's answers,
//! tokens and roles, strict bodies, TLS, the cache (single-flight, negative entries), and the
//! edge's behaviour while Redis, ScyllaDB or Kafka is down.
//!
//! The degradation test stops shared servers, so `scripts/test` runs this file alone; within
//! the file a lock keeps it apart from the other tests.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use streamcart_tests::clock::epoch_seconds;
use streamcart_tests::world::World;
use streamcart_tests::{self as support, Child};
use uuid::Uuid;

/// Serialises the tests that stop shared servers against every other test of this file.
static SERVERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const SECRET: &str = "query-api-test-secret-0123456789abcdef";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn claims(sub: &str, roles: &[&str], expires_in: i64) -> Value {
    json!({"sub": sub, "roles": roles, "exp": epoch_seconds() + expires_in, "iat": epoch_seconds()})
}

/// An HS256 token signed with the server's secret.
fn hs256(sub: &str, roles: &[&str]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(sub, roles, 600),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("hs256 token")
}

/// An RS256 token signed with the private key in `key_file`.
fn rs256(sub: &str, roles: &[&str], key_file: &str, expires_in: i64) -> String {
    let pem = std::fs::read(fixture(key_file)).expect("fixture key");
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(sub, roles, expires_in),
        &EncodingKey::from_rsa_pem(&pem).expect("rsa key"),
    )
    .expect("rs256 token")
}

/// One edge over one world: `streamcart run` (every role) and a separate `streamcart serve`,
/// which the test talks to, so an edge is measured on its own.
struct Edge {
    world: World,
    base: String,
    http: Client,
    _roles: Option<Child>,
    _edge: Child,
}

fn edge_env(port: u16, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("STREAMCART_API_LISTEN", format!("127.0.0.1:{port}")),
        ("STREAMCART_JWT_HS256_SECRET", SECRET.to_owned()),
        (
            "STREAMCART_JWT_RS256_PUBLIC_KEY_FILE",
            fixture("jwt-rs256-public.pem"),
        ),
        ("STREAMCART_API_READ_YOUR_WRITES_TIMEOUT_MS", "5000".into()),
        ("STREAMCART_API_NEGATIVE_CACHE_TTL_MS", "60000".into()),
    ];
    env.extend(extra.iter().cloned());
    env
}

impl Edge {
    async fn start(world: World, with_roles: bool, extra: &[(&'static str, String)]) -> Self {
        let roles = with_roles
            .then(|| world.spawn_with(&["run"], &edge_env(support::free_port(), &[]), "run"));
        let port = support::free_port();
        let edge = world.spawn_with(&["serve"], &edge_env(port, extra), "serve");
        let base = format!("http://127.0.0.1:{port}");
        let http = Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(Instant::now() < deadline, "the edge never became healthy");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Edge {
            world,
            base,
            http,
            _roles: roles,
            _edge: edge,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_at(&self.base, method, path, token, body, headers)
            .await
    }

    /// Like [`Edge::call`], to the edge at `base`.
    async fn call_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    /// Kills the edge the test talks to (its address stops answering).
    fn kill_edge(&mut self) {
        self._edge.kill_hard();
    }

    /// Starts another `streamcart serve` over the same world; it and its address once its
    /// `/health` answers 200.
    async fn another(&self, log: &str) -> (Child, String) {
        let port = support::free_port();
        let child = self.world.spawn_with(&["serve"], &edge_env(port, &[]), log);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{base}/health")).send().await
                && r.status() == StatusCode::OK
            {
                return (child, base);
            }
            assert!(
                Instant::now() < deadline,
                "the second edge never became healthy"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, token, None, &[]).await;
        (s, v)
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(Method::POST, path, Some(token), Some(body), &[])
            .await;
        (s, v)
    }

    /// A POST without a body (discontinue, cancel).
    async fn post_bare(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, path, Some(token), None, &[]).await;
        (s, v)
    }

    /// Creates a product through the gateway.
    async fn create_product(
        &self,
        token: &str,
        sku: &str,
        name: &str,
        category: &str,
        price_minor: i64,
    ) -> (StatusCode, Value) {
        let body = json!({"sku": sku, "name": name, "category": category,
                          "price": {"amount_minor": price_minor, "currency": "EUR"}});
        self.post("/v1/products", token, body).await
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("streamcart_api_{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Orders `quantity` of `sku` with a card that pays, then reads the order back at the
    /// version the gateway returned; the order id and the order as read.
    async fn order_and_read(&self, token: &str, sku: &str, quantity: u32) -> (String, Value) {
        let (status, placed) = self
            .place_order(
                token,
                json!({"lines": [{"sku": sku, "quantity": quantity}], "card_token": "card-ok"}),
                "",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{placed}");
        let order_id = placed["aggregate_id"]
            .as_str()
            .expect("order id")
            .to_owned();
        let (status, order) = self
            .get(&format!("/v1/orders/{order_id}?min_version=1"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        (order_id, order)
    }

    /// Places an order until the order processor's catalog copy knows its skus (before that it
    /// answers `order.unknown_sku`); returns the final status and body.
    async fn place_order(&self, token: &str, body: Value, expect: &str) -> (StatusCode, Value) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut attempt = body.clone();
            attempt["order_id"] = json!(Uuid::new_v4().to_string());
            let (status, reply) = self.post("/v1/orders", token, attempt).await;
            let code = reply["code"].as_str().unwrap_or("");
            let waiting = code == "order.unknown_sku" && expect != "order.unknown_sku";
            let stale = expect == "order.product_discontinued" && status == StatusCode::CREATED;
            if !(waiting || stale) || Instant::now() > deadline {
                return (status, reply);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "body: {body}");
    assert_eq!(body["code"], json!(code), "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
}

/// What most tests start from: an edge with every role behind it, a catalog admin's token, and
/// a product created through the gateway and visible to reads at version 1.
struct Shop {
    edge: Edge,
    /// Unique to the test: prefixes skus, categories and customers.
    tag: String,
    admin: String,
    sku: String,
}

impl Shop {
    /// Opens a shop whose product `{tag}-LAMP` ("Desk lamp", category `{tag}-lights`) costs
    /// `price_minor` euro cents.
    async fn open(name: &str, price_minor: i64) -> Self {
        let world = World::new(name).await;
        let tag = world.keyspace.clone();
        let edge = Edge::start(world, true, &[]).await;
        let admin = hs256("admin-1", &["catalog_admin"]);
        let sku = format!("{tag}-LAMP");
        let (status, body) = edge
            .create_product(
                &admin,
                &sku,
                "Desk lamp",
                &format!("{tag}-lights"),
                price_minor,
            )
            .await;
        assert!(status.is_success(), "{body}");
        // The roles may still be starting: the command may be answered before it is handled.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = edge
                .get(&format!("/v1/products/{sku}?min_version=1"), None)
                .await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sku} never readable: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Shop {
            edge,
            tag,
            admin,
            sku,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_is_answered_once_whenever_its_result_arrives() {
    let _shared = SERVERS.read().await;
    let world = World::new("qapi").await;
    let tag = world.keyspace.clone();
    // A bare edge first, with nothing processing commands: a command is answered 202.
    let bare = Edge::start(
        world,
        false,
        &[("STREAMCART_API_COMMAND_TIMEOUT_MS", "1500".into())],
    )
    .await;
    let admin = hs256("admin-1", &["catalog_admin"]);
    let sku = format!("{tag}-LAMP");
    let create = json!({"sku": sku, "name": "Desk lamp", "category": format!("{tag}-lights"),
                        "price": {"amount_minor": 2499, "currency": "EUR"}});
    let key = Uuid::new_v4().to_string();
    let (status, headers, pending) = bare
        .call(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(create.clone()),
            &[("idempotency-key", &key)],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["status"], json!("pending"));
    let location = headers[reqwest::header::LOCATION]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(location, format!("/v1/commands/{key}"));
    let (status, _) = bare.get(&location, Some(&admin)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Only its sender may poll it.
    let other_admin = hs256("admin-2", &["catalog_admin"]);
    let (status, body) = bare.get(&location, Some(&other_admin)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Now the processors, saga and projectors start (with an edge of their own); the bare edge
    // learns the result of the command it sent.
    let Edge {
        world,
        base: bare_base,
        http,
        _edge: bare_edge,
        ..
    } = bare;
    let roles = world.spawn_with(&["run"], &edge_env(support::free_port(), &[]), "run");
    let edge = Edge {
        world,
        base: bare_base,
        http,
        _roles: Some(roles),
        _edge: bare_edge,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let created = loop {
        let (status, body) = edge.get(&location, Some(&admin)).await;
        if status == StatusCode::OK {
            break body;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(
            Instant::now() < deadline,
            "the pending command never got its result"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(created["status"], json!("accepted"));
    assert_eq!(created["version"], json!(1));

    // The same Idempotency-Key again is not applied twice.
    let (status, _, again) = edge
        .call(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(create.clone()),
            &[("idempotency-key", &key)],
        )
        .await;
    // The first answer is replayed: the same status and version, nothing applied again.
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["version"], json!(1));

    // Creating it again under a new id is a domain rejection.
    let (status, body) = edge.post("/v1/products", &admin, create.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("product."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_wait_for_the_version_a_command_returned_and_if_match_guards_writes() {
    let _shared = SERVERS.read().await;
    let Shop {
        edge,
        tag: _,
        admin,
        sku,
    } = Shop::open("qryw", 2499).await;

    // Read-your-writes: the version a command returned is visible at once, from the query
    // parameter or the header.
    let (status, product) = edge
        .get(&format!("/v1/products/{sku}?min_version=1"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{product}");
    assert_eq!(product["name"], json!("Desk lamp"));
    assert_eq!(product["price_minor"], json!(2499));
    let (status, renamed) = edge
        .post(
            &format!("/v1/products/{sku}/rename"),
            &admin,
            json!({"name": "Reading lamp"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["version"], json!(2));
    let (status, _, product) = edge
        .call(
            Method::GET,
            &format!("/v1/products/{sku}"),
            None,
            None,
            &[("x-min-version", "2")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(product["name"], json!("Reading lamp"));
    assert_eq!(product["version"], json!(2));
    // A version that never comes: 504 with a clear body, within the configured bound.
    let started = Instant::now();
    let (status, body) = edge
        .get(&format!("/v1/products/{sku}?min_version=99"), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::GATEWAY_TIMEOUT,
        "version_not_reached",
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Optimistic concurrency: If-Match with the current version passes, a stale one is a 409.
    let (status, _, priced) = edge
        .call(
            Method::POST,
            &format!("/v1/products/{sku}/change-price"),
            Some(&admin),
            Some(json!({"price": {"amount_minor": 1999, "currency": "EUR"}})),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{priced}");
    assert_eq!(priced["version"], json!(3));
    let (status, _, stale) = edge
        .call(
            Method::POST,
            &format!("/v1/products/{sku}/change-price"),
            Some(&admin),
            Some(json!({"price": {"amount_minor": 1799, "currency": "EUR"}})),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_error(status, &stale, StatusCode::CONFLICT, "concurrency.conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn category_listings_page_with_cursors() {
    let _shared = SERVERS.read().await;
    let Shop {
        edge,
        tag,
        admin,
        sku,
    } = Shop::open("qlist", 2499).await;

    // Category listing with cursor paging: three products, pages of two.
    let category = format!("{tag}-desk");
    let (status, moved) = edge
        .post(
            &format!("/v1/products/{sku}/change-category"),
            &admin,
            json!({"category": category}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let mut listed = vec![sku.clone()];
    for n in 1..=2 {
        let other = format!("{tag}-PEN{n}");
        let (status, body) = edge
            .post(
                "/v1/products",
                &admin,
                json!({"sku": other, "name": format!("Pen {n}"), "category": category,
                       "price": {"amount_minor": 150, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _) = edge
            .get(&format!("/v1/products/{other}?min_version=1"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        listed.push(other);
    }
    let (status, _) = edge
        .get(
            &format!("/v1/products/{sku}?min_version={}", moved["version"]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    listed.sort();
    let (status, first) = edge
        .get(&format!("/v1/categories/{category}/products?limit=2"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (status, second) = edge
        .get(
            &format!("/v1/categories/{category}/products?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert!(second.get("next_cursor").is_none(), "{second}");
    let skus: Vec<String> = first["items"]
        .as_array()
        .into_iter()
        .chain(second["items"].as_array())
        .flatten()
        .map(|p| p["sku"].as_str().expect("sku").to_owned())
        .collect();
    assert_eq!(skus, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_read_back_settled_by_the_saga_and_listed_per_customer() {
    let _shared = SERVERS.read().await;
    let Shop {
        edge,
        tag,
        admin,
        sku,
    } = Shop::open("qorder", 1999).await;

    // Stock: received through the gateway, read by any authenticated caller.
    let (status, received) = edge
        .post(
            &format!("/v1/stock/{sku}/receive"),
            &admin,
            json!({"quantity": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{received}");
    let customer = format!("{tag}-alice");
    let alice = hs256(&customer, &["customer"]);
    let (status, stock) = edge
        .get(&format!("/v1/stock/{sku}?min_version=1"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{stock}");
    assert_eq!(stock["available"], json!(10));
    let (status, body) = edge.get(&format!("/v1/stock/{sku}"), None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // A customer orders; the order is read back at the version the gateway returned.
    let (order_id, order) = edge.order_and_read(&alice, &sku, 2).await;
    assert_eq!(order["customer_id"], json!(customer));
    assert_eq!(order["total_minor"], json!(2 * 1999));
    // The saga confirms it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, order) = edge
            .get(&format!("/v1/orders/{order_id}"), Some(&alice))
            .await;
        if order["status"] == json!("confirmed") {
            break;
        }
        assert!(Instant::now() < deadline, "order never confirmed: {order}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Cancelling a confirmed order is the domain's refusal.
    let (status, body) = edge
        .post_bare(&format!("/v1/orders/{order_id}/cancel"), &alice)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "order.already_confirmed",
    );

    // A second order, declined by the payment gateway: cancelled with its reason.
    let (status, declined) = edge
        .place_order(
            &alice,
            json!({"lines": [{"sku": sku, "quantity": 1}], "card_token": "card-declined"}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{declined}");
    let declined_id = declined["aggregate_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, order) = edge
            .get(&format!("/v1/orders/{declined_id}"), Some(&alice))
            .await;
        if order["status"] == json!("cancelled") {
            assert_eq!(order["reason"], json!("payment_declined"));
            break;
        }
        assert!(Instant::now() < deadline, "order never cancelled: {order}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The customer's listing, newest first, paged.
    let (status, page) = edge
        .get(
            &format!("/v1/customers/{customer}/orders?limit=1"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["order_id"], json!(declined_id));
    let cursor = page["next_cursor"].as_str().expect("next page").to_owned();
    let (status, page) = edge
        .get(
            &format!("/v1/customers/{customer}/orders?limit=1&cursor={cursor}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"][0]["order_id"], json!(order_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_see_only_their_own_orders_and_operators_see_every_order() {
    let _shared = SERVERS.read().await;
    let Shop {
        edge,
        tag,
        admin: _,
        sku,
    } = Shop::open("qsee", 1999).await;
    let customer = format!("{tag}-alice");
    let alice = hs256(&customer, &["customer"]);
    let (order_id, _) = edge.order_and_read(&alice, &sku, 1).await;

    // Another customer sees none of it; an operator sees all of it.
    let bob = hs256(&format!("{tag}-bob"), &["customer"]);
    let (status, body) = edge
        .get(&format!("/v1/orders/{order_id}"), Some(&bob))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = edge
        .get(&format!("/v1/orders/{order_id}?min_version=1"), Some(&bob))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = edge
        .post_bare(&format!("/v1/orders/{order_id}/cancel"), &bob)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = edge
        .get(&format!("/v1/customers/{customer}/orders"), Some(&bob))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let operator = rs256("support-1", &["operator"], "jwt-rs256-private.pem", 600);
    let (status, order) = edge
        .get(&format!("/v1/orders/{order_id}"), Some(&operator))
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_and_discontinued_products_refuse_orders() {
    let _shared = SERVERS.read().await;
    let Shop {
        edge,
        tag,
        admin,
        sku: _,
    } = Shop::open("qrefuse", 1999).await;
    let alice = hs256(&format!("{tag}-alice"), &["customer"]);
    let pen = format!("{tag}-PEN1");
    let (status, body) = edge
        .create_product(&admin, &pen, "Pen 1", &format!("{tag}-desk"), 150)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Unknown and discontinued products refuse orders with their codes.
    let (status, body) = edge
        .place_order(
            &alice,
            json!({"lines": [{"sku": format!("{tag}-NOPE"), "quantity": 1}], "card_token": "card-ok"}),
            "order.unknown_sku",
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "order.unknown_sku",
    );
    let (status, body) = edge
        .post_bare(&format!("/v1/products/{pen}/discontinue"), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = edge
        .place_order(
            &alice,
            json!({"lines": [{"sku": pen, "quantity": 1}], "card_token": "card-ok"}),
            "order.product_discontinued",
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "order.product_discontinued",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let _shared = SERVERS.read().await;
    let world = World::new("qroutes").await;
    let tag = world.keyspace.clone();
    // Only routing is checked: any ids of the right shape do, and no role needs to run.
    let edge = Edge::start(world, false, &[]).await;
    let admin = hs256("admin-1", &["catalog_admin"]);
    let sku = format!("{tag}-LAMP");
    let category = format!("{tag}-desk");
    let order_id = Uuid::new_v4().to_string();
    let customer = format!("{tag}-alice");
    let key = Uuid::new_v4().to_string();

    // The OpenAPI document lists exactly the routes the API serves, and every one of them
    // is routed (no route answers the router's own 404 or 405).
    let (status, doc) = edge.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let served: BTreeSet<_> = streamcart_api::routes::ROUTES
        .iter()
        .map(|(m, p)| (m.to_uppercase(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
    for (method, path) in &served {
        let concrete = path
            .replace("{sku}", &sku)
            .replace("{category}", &category)
            .replace("{order_id}", &order_id)
            .replace("{customer_id}", &customer)
            .replace("{command_id}", &key);
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, _, body) = edge.call(method, &concrete, None, None, &[]).await;
        let router_miss = (status == StatusCode::NOT_FOUND
            && body["message"] == json!("route not found"))
            || status == StatusCode::METHOD_NOT_ALLOWED;
        assert!(
            !router_miss,
            "{path} is documented but not routed: {status} {body}"
        );
    }
    let (status, body) = edge.get("/v1/nowhere", None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, _, body) = edge
        .call(
            Method::DELETE,
            &format!("/v1/products/{sku}"),
            Some(&admin),
            None,
            &[],
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_roles_and_malformed_requests_are_refused_with_json_errors() {
    let _shared = SERVERS.read().await;
    let world = World::new("qauth").await;
    let tag = world.keyspace.clone();
    let edge = Edge::start(world, false, &[]).await;
    let body = json!({"sku": format!("{tag}-X"), "name": "X", "category": "c",
                      "price": {"amount_minor": 100, "currency": "EUR"}});

    // Tokens that prove nothing: 401 with a JSON body.
    let public_pem = std::fs::read(fixture("jwt-rs256-public.pem")).expect("public key");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("admin", &["catalog_admin"], 600),
        &EncodingKey::from_secret(&public_pem),
    )
    .expect("token");
    let wrong_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("admin", &["catalog_admin"], 600),
        &EncodingKey::from_secret(b"not-the-server-secret-not-the-server-secret"),
    )
    .expect("token");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims("admin", &["catalog_admin"], 600).to_string())
    );
    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &claims("admin", &["catalog_admin"], 600),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token");
    let refused = [
        (
            "forged (untrusted RSA key)",
            rs256(
                "admin",
                &["catalog_admin"],
                "jwt-rs256-other-private.pem",
                600,
            ),
        ),
        (
            "expired",
            rs256("admin", &["catalog_admin"], "jwt-rs256-private.pem", -600),
        ),
        ("HS256 keyed with the RSA public key", confused),
        ("wrong HS256 secret", wrong_secret),
        ("alg none", unsigned),
        ("algorithm not configured", hs384),
        ("not a JWT", "abc.def".to_owned()),
    ];
    for (what, token) in &refused {
        let (status, reply) = edge.post("/v1/products", token, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {reply}");
        assert_eq!(reply["code"], json!("unauthorized"), "{what}");
    }
    let (status, _, reply) = edge
        .call(Method::POST, "/v1/products", None, Some(body.clone()), &[])
        .await;
    assert_error(status, &reply, StatusCode::UNAUTHORIZED, "unauthorized");

    // Valid tokens, wrong roles: 403.
    let customer = hs256(&format!("{tag}-carol"), &["customer"]);
    let admin = rs256("admin-1", &["catalog_admin"], "jwt-rs256-private.pem", 600);
    let (status, reply) = edge.post("/v1/products", &customer, body.clone()).await;
    assert_error(status, &reply, StatusCode::FORBIDDEN, "forbidden");
    let (status, reply) = edge
        .post(
            &format!("/v1/stock/{tag}-X/receive"),
            &customer,
            json!({"quantity": 1}),
        )
        .await;
    assert_error(status, &reply, StatusCode::FORBIDDEN, "forbidden");
    let (status, reply) = edge
        .post(
            "/v1/orders",
            &admin,
            json!({"lines": [{"sku": "A", "quantity": 1}], "card_token": "t"}),
        )
        .await;
    assert_error(status, &reply, StatusCode::FORBIDDEN, "forbidden");

    // Malformed bodies, headers and parameters: 400 with a code, nothing produced.
    let sent_before = edge.metric("commands_sent").await;
    let bad_bodies = [
        (
            "unknown field",
            json!({"sku": "A", "name": "n", "category": "c", "price": {"amount_minor": 1, "currency": "EUR"}, "color": "red"}),
            "invalid_body",
        ),
        (
            "missing field",
            json!({"sku": "A", "name": "n", "price": {"amount_minor": 1, "currency": "EUR"}}),
            "invalid_body",
        ),
        (
            "wrong type",
            json!({"sku": "A", "name": "n", "category": "c", "price": {"amount_minor": "1", "currency": "EUR"}}),
            "invalid_body",
        ),
        (
            "negative price",
            json!({"sku": "A", "name": "n", "category": "c", "price": {"amount_minor": -5, "currency": "EUR"}}),
            "invalid_field",
        ),
        (
            "bad currency",
            json!({"sku": "A", "name": "n", "category": "c", "price": {"amount_minor": 5, "currency": "euro"}}),
            "invalid_field",
        ),
        (
            "bad sku",
            json!({"sku": "A B/C", "name": "n", "category": "c", "price": {"amount_minor": 5, "currency": "EUR"}}),
            "invalid_field",
        ),
        (
            "blank name",
            json!({"sku": "A", "name": "  ", "category": "c", "price": {"amount_minor": 5, "currency": "EUR"}}),
            "invalid_field",
        ),
        (
            "long name",
            json!({"sku": "A", "name": "n".repeat(201), "category": "c", "price": {"amount_minor": 5, "currency": "EUR"}}),
            "invalid_field",
        ),
    ];
    for (what, bad, code) in bad_bodies {
        let (status, reply) = edge.post("/v1/products", &admin, bad).await;
        assert_error(status, &reply, StatusCode::BAD_REQUEST, code);
        assert!(!what.is_empty());
    }
    let bad_orders = [
        json!({"lines": [], "card_token": "t"}),
        json!({"lines": [{"sku": "A", "quantity": 0}], "card_token": "t"}),
        json!({"lines": [{"sku": "A", "quantity": 1}], "card_token": ""}),
        json!({"lines": [{"sku": "A", "quantity": 1}], "card_token": "t", "deadline_seconds": 1}),
        json!({"lines": [{"sku": "A", "quantity": 1}], "card_token": "t", "order_id": "not-a-uuid"}),
        json!({"lines": [{"sku": "A", "quantity": 1, "price": 1}], "card_token": "t"}),
    ];
    for bad in bad_orders {
        let (status, reply) = edge.post("/v1/orders", &customer, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
    }
    let raw = |body: &'static str, content_type: &'static str| {
        edge.http
            .post(format!("{}/v1/products", edge.base))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = raw("{not json", "application/json").await.expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply: Value = response.json().await.expect("json error");
    assert_eq!(reply["code"], json!("invalid_body"));
    let response = raw("sku=A", "application/x-www-form-urlencoded")
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply: Value = response.json().await.expect("json error");
    assert_eq!(reply["code"], json!("unsupported_media_type"));
    let huge = json!({"sku": "A", "name": "x".repeat(100_000), "category": "c",
                      "price": {"amount_minor": 5, "currency": "EUR"}});
    let (status, reply) = edge.post("/v1/products", &admin, huge).await;
    assert_error(
        status,
        &reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    let (status, _, reply) = edge
        .call(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(body.clone()),
            &[("idempotency-key", "twelve")],
        )
        .await;
    assert_error(
        status,
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    );
    let (status, _, reply) = edge
        .call(
            Method::POST,
            "/v1/products",
            Some(&admin),
            Some(body.clone()),
            &[("if-match", "soon")],
        )
        .await;
    assert_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_if_match");
    for (path, code) in [
        ("/v1/categories/c/products?limit=0", "invalid_limit"),
        ("/v1/categories/c/products?limit=many", "invalid_query"),
        (
            "/v1/categories/c/products?cursor=bm90LWpzb24",
            "invalid_cursor",
        ),
        ("/v1/categories/c/products?page=2", "invalid_query"),
        ("/v1/products/A?min_version=0", "invalid_min_version"),
        ("/v1/products/A%20B", "invalid_id"),
    ] {
        let (status, reply) = edge.get(path, None).await;
        assert_error(status, &reply, StatusCode::BAD_REQUEST, code);
    }
    assert_eq!(
        edge.metric("commands_sent").await,
        sent_before,
        "a refused request reached Kafka"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn product_cache_collapses_misses_remembers_unknown_ids_and_tls_serves() {
    let _shared = SERVERS.read().await;
    let world = World::new("qcache").await;
    let tag = world.keyspace.clone();
    let prefix = world.prefix.clone();
    let tls_port = support::free_port();
    let edge = Edge::start(world, true, &[]).await;
    let admin = hs256("admin-1", &["catalog_admin"]);
    let sku = format!("{tag}-MUG");
    let (status, body) = edge
        .create_product(&admin, &sku, "Mug", "kitchen", 850)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, _) = edge
        .get(&format!("/v1/products/{sku}?min_version=1"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Drop the cached entry, then miss it fifty times at once: one load serves them all.
    let mut redis = redis::Client::open(support::redis_url())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let cache_key = format!("{prefix}streamcart:product:{sku}");
    let warm: Vec<_> = (0..50).map(|_| edge.get("/health", None)).collect();
    futures::future::join_all(warm).await;
    let _: () = redis::cmd("DEL")
        .arg(&cache_key)
        .query_async(&mut redis)
        .await
        .expect("DEL");
    let loads_before = edge.metric("product_store_loads").await;
    let path = format!("/v1/products/{sku}");
    let gets: Vec<_> = (0..50).map(|_| edge.get(&path, None)).collect();
    let replies = futures::future::join_all(gets).await;
    assert!(
        replies
            .iter()
            .all(|(s, p)| *s == StatusCode::OK && p["sku"] == json!(sku))
    );
    let loads = edge.metric("product_store_loads").await - loads_before;
    assert!(
        (1..=5).contains(&loads),
        "50 concurrent misses caused {loads} store loads"
    );
    // The load filled the cache: the next read is a hit.
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&cache_key)
        .query_async(&mut redis)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 1, "the miss did not fill the cache");
    let hits_before = edge.metric("product_cache_hits").await;
    let (status, _) = edge.get(&path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(edge.metric("product_cache_hits").await, hits_before + 1);

    // An unknown id is looked up once, then answered from the negative entry.
    let ghost = format!("{tag}-GHOST");
    let loads_before = edge.metric("product_store_loads").await;
    for _ in 0..3 {
        let (status, body) = edge.get(&format!("/v1/products/{ghost}"), None).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(edge.metric("product_store_loads").await - loads_before, 1);
    // Creating it makes it visible at once to a read-your-writes read, despite the entry.
    let (status, body) = edge
        .create_product(&admin, &ghost, "Ghost", "kitchen", 100)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = edge
        .get(&format!("/v1/products/{ghost}?min_version=1"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The same edge over TLS, with the test certificate.
    let https = edge.world.spawn_with(
        &["serve"],
        &edge_env(
            tls_port,
            &[
                ("STREAMCART_API_TLS_CERT", fixture("tls-cert.pem")),
                ("STREAMCART_API_TLS_KEY", fixture("tls-key.pem")),
            ],
        ),
        "serve-tls",
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("tls-ca.pem")).expect("ca"))
        .expect("certificate");
    let tls = Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("tls client");
    let deadline = Instant::now() + Duration::from_secs(90);
    let product: Value = loop {
        match tls
            .get(format!("https://localhost:{tls_port}/v1/products/{sku}"))
            .send()
            .await
        {
            Ok(r) if r.status() == StatusCode::OK => break r.json().await.expect("json"),
            other => {
                assert!(Instant::now() < deadline, "HTTPS never answered: {other:?}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    assert_eq!(product["sku"], json!(sku));
    let plain = edge
        .http
        .get(format!("http://127.0.0.1:{tls_port}/health"))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP was served on the TLS port"
    );
    drop(https);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_scylla_and_kafka_outages_degrade_without_hanging() {
    let _exclusive = SERVERS.write().await;
    let world = World::new("qdown").await;
    let tag = world.keyspace.clone();
    let edge = Edge::start(world, true, &[]).await;
    let admin = hs256("admin-1", &["catalog_admin"]);
    let customer = format!("{tag}-dave");
    let dave = hs256(&customer, &["customer"]);
    let sku = format!("{tag}-BOOK");
    let (status, body) = edge
        .create_product(&admin, &sku, "Book", "books", 1200)
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = edge
        .post(
            &format!("/v1/stock/{sku}/receive"),
            &admin,
            json!({"quantity": 5}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, placed) = edge
        .place_order(
            &dave,
            json!({"lines": [{"sku": sku, "quantity": 1}], "card_token": "card-ok"}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let order_id = placed["aggregate_id"].as_str().expect("id").to_owned();
    let (status, _) = edge
        .get(&format!("/v1/orders/{order_id}?min_version=1"), Some(&dave))
        .await;
    assert_eq!(status, StatusCode::OK);
    let product_path = format!("/v1/products/{sku}?min_version=1");
    let (status, _) = edge.get(&product_path, None).await;
    assert_eq!(status, StatusCode::OK);

    // Redis down: products are read from ScyllaDB, promptly.
    tokio::task::block_in_place(|| support::stack(&["stop", "redis"]));
    let failures_before = edge.metric("cache_failures").await;
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = edge.get(&format!("/v1/products/{sku}"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["sku"], json!(sku));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "slow while Redis is down"
        );
    }
    assert!(edge.metric("cache_failures").await > failures_before);
    tokio::task::block_in_place(|| support::stack(&["start", "redis"]));

    // Refill the (empty) cache, then ScyllaDB down: the cached product is still served, every
    // other read is a prompt 503 with a clear body.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hits_before = edge.metric("product_cache_hits").await;
    loop {
        let (status, _) = edge.get(&format!("/v1/products/{sku}"), None).await;
        assert_eq!(status, StatusCode::OK);
        if edge.metric("product_cache_hits").await > hits_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never refilled after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::task::block_in_place(|| support::stack(&["stop", "cassandra"]));
    let (status, body) = edge.get(&format!("/v1/products/{sku}"), None).await;
    assert_eq!(status, StatusCode::OK, "cached product not served: {body}");
    for (path, token) in [
        (format!("/v1/orders/{order_id}"), Some(dave.as_str())),
        (
            format!("/v1/customers/{customer}/orders"),
            Some(dave.as_str()),
        ),
        (format!("/v1/stock/{sku}"), Some(dave.as_str())),
        ("/v1/categories/books/products".to_owned(), None),
        (format!("/v1/products/{tag}-UNCACHED"), None),
    ] {
        let started = Instant::now();
        let (status, body) = edge.get(&path, token).await;
        assert_error(
            status,
            &body,
            StatusCode::SERVICE_UNAVAILABLE,
            "read_model_unavailable",
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{path} hung");
    }
    // An edge (re)started while ScyllaDB is down serves at once: commands, cached products, a
    // 503 for the rest, and its health says which store is missing.
    let (_late_edge, late) = edge.another("serve-late").await;
    let (_, _, health) = edge
        .call_at(&late, Method::GET, "/health", None, None, &[])
        .await;
    assert_eq!(health["scylla"], json!("down"), "{health}");
    assert_eq!(health["redis"], json!("up"), "{health}");
    let (status, _, body) = edge
        .call_at(
            &late,
            Method::GET,
            &format!("/v1/products/{sku}"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "cached product not served: {body}");
    assert_eq!(body["sku"], json!(sku));
    let (status, _, body) = edge
        .call_at(
            &late,
            Method::POST,
            &format!("/v1/products/{sku}/rename"),
            Some(&admin),
            Some(json!({"name": "Book, while the store is down"})),
            &[],
        )
        .await;
    assert!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "a command refused by an edge started without ScyllaDB: {status} {body}"
    );
    let order_path = format!("/v1/orders/{order_id}");
    let (status, _, body) = edge
        .call_at(&late, Method::GET, &order_path, Some(&dave), None, &[])
        .await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "read_model_unavailable",
    );
    tokio::task::block_in_place(|| support::stack(&["start", "cassandra"]));
    let deadline = Instant::now() + Duration::from_secs(180);
    for base in [edge.base.clone(), late] {
        loop {
            let (status, _, _) = edge
                .call_at(&base, Method::GET, &order_path, Some(&dave), None, &[])
                .await;
            if status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "orders never readable at {base} after ScyllaDB came back"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    // Kafka down: commands are refused with 503 within a bound, never hung; reads go on.
    tokio::task::block_in_place(|| support::stack(&["stop", "kafka"]));
    for attempt in 0..3 {
        let started = Instant::now();
        let (status, body) = edge
            .post(
                &format!("/v1/products/{sku}/rename"),
                &admin,
                json!({"name": format!("Book {attempt}")}),
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka_unavailable",
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "a command hung {:?} while Kafka was down",
            started.elapsed()
        );
    }
    let (status, _) = edge.get(&format!("/v1/products/{sku}"), None).await;
    assert_eq!(status, StatusCode::OK);
    tokio::task::block_in_place(|| support::stack(&["start", "kafka"]));
    // Back: commands reach Kafka again.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (status, body) = edge
            .post(
                &format!("/v1/products/{sku}/rename"),
                &admin,
                json!({"name": "Book, second edition"}),
            )
            .await;
        if status == StatusCode::OK || status == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            Instant::now() < deadline,
            "commands never accepted after Kafka came back"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_202_is_answered_on_any_edge_also_after_its_edge_stopped() {
    let _shared = SERVERS.read().await;
    let world = World::new("qany").await;
    // No command processor yet, and a short answer wait: the command is answered 202.
    let mut edge = Edge::start(
        world,
        false,
        &[("STREAMCART_API_COMMAND_TIMEOUT_MS", "300".into())],
    )
    .await;
    let admin = hs256("admin-1", &["catalog_admin"]);
    let someone_else = hs256("admin-2", &["catalog_admin"]);
    let sku = format!("{}-LAMP", edge.world.keyspace);
    let (status, body) = edge
        .create_product(&admin, &sku, "Lamp", "home", 4500)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let command_id = body["command_id"].as_str().expect("command id").to_owned();
    let path = format!("/v1/commands/{command_id}");

    // Another instance knows the command, for its sender only.
    let (_second_edge, second) = edge.another("serve-second").await;
    let (status, _, body) = edge
        .call_at(&second, Method::GET, &path, Some(&admin), None, &[])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], json!("pending"), "{body}");
    assert_eq!(body["aggregate_id"], json!(sku), "{body}");
    let (status, _, _) = edge
        .call_at(&second, Method::GET, &path, Some(&someone_else), None, &[])
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another caller learns nothing"
    );

    // The instance that took the command stops before the answer exists; then the processors
    // start and answer it. The second instance never waited for it, yet finds it.
    edge.kill_edge();
    let _roles = edge
        .world
        .spawn_with(&["run"], &edge_env(support::free_port(), &[]), "run");
    let deadline = Instant::now() + Duration::from_secs(180);
    let answered = loop {
        let (status, _, body) = edge
            .call_at(&second, Method::GET, &path, Some(&admin), None, &[])
            .await;
        if status == StatusCode::OK {
            break body;
        }
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert!(
            Instant::now() < deadline,
            "the answer never reached the second instance"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(answered["status"], json!("accepted"), "{answered}");
    assert_eq!(answered["version"], json!(1), "{answered}");
    assert_eq!(answered["aggregate_id"], json!(sku), "{answered}");

    // Found once, the answer is shared: a third instance gives the same.
    let (_third_edge, third) = edge.another("serve-third").await;
    let (status, _, body) = edge
        .call_at(&third, Method::GET, &path, Some(&admin), None, &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, answered);
}
