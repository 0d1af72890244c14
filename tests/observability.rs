//! One order, seen from outside: every role of a streamcart runs as its own process exporting
//! spans to the stack's Jaeger and announcing its metrics port to the stack's Prometheus. An
//! order placed through the gateway must come back from Jaeger's query API as one trace with
//! spans from every role it crossed, each parented on the span that produced its record; and
//! Prometheus must hold the consumer lag and the commit latency of every running loop, the lag
//! falling to zero once the order has settled.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use streamcart_tests as support;
use streamcart_tests::stack::{jaeger_query_url, otlp_endpoint, prometheus_url};
use streamcart_tests::world::World;
use uuid::Uuid;

const SECRET: &str = "observability-test-secret-0123456789abcdef";

/// The roles an order crosses, by the service name each reports its spans under.
const TRACED: [&str; 7] = [
    "streamcart-serve",
    "streamcart-process-order",
    "streamcart-process-stock",
    "streamcart-process-payment",
    "streamcart-sagas",
    "streamcart-project-orders",
    "streamcart-project-stock",
];

/// Every loop the test runs: four command processors, the saga's two loops, three projectors.
const LOOPS: usize = 9;

fn token(sub: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "roles": roles, "iat": now, "exp": now + 600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// The span of one Jaeger trace that matters here.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    parent: Option<String>,
    service: String,
    operation: String,
    start_us: u64,
    duration_us: u64,
    tags: HashMap<String, String>,
}

/// The spans of trace `trace_id` as Jaeger's query API returns them (none while it has none).
async fn trace(http: &Client, trace_id: &str) -> Vec<Span> {
    let url = format!("{}/api/traces/{trace_id}", jaeger_query_url());
    let Ok(resp) = http.get(&url).send().await else {
        return Vec::new();
    };
    if resp.status() != StatusCode::OK {
        return Vec::new();
    }
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let Some(t) = body["data"].as_array().and_then(|d| d.first()) else {
        return Vec::new();
    };
    let services: HashMap<String, String> = t["processes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, p)| {
                    (
                        k.clone(),
                        p["serviceName"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    t["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|s| Span {
                    id: s["spanID"].as_str().unwrap_or("").to_owned(),
                    parent: s["references"].as_array().and_then(|refs| {
                        refs.iter()
                            .find(|r| r["refType"] == "CHILD_OF")
                            .and_then(|r| r["spanID"].as_str())
                            .map(str::to_owned)
                    }),
                    service: services
                        .get(s["processID"].as_str().unwrap_or(""))
                        .cloned()
                        .unwrap_or_default(),
                    operation: s["operationName"].as_str().unwrap_or("").to_owned(),
                    start_us: s["startTime"].as_u64().unwrap_or(0),
                    duration_us: s["duration"].as_u64().unwrap_or(0),
                    tags: s["tags"]
                        .as_array()
                        .map(|tags| {
                            tags.iter()
                                .map(|t| {
                                    let v = match &t["value"] {
                                        Value::String(s) => s.clone(),
                                        other => other.to_string(),
                                    };
                                    (t["key"].as_str().unwrap_or("").to_owned(), v)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The span tree, one line per span: service, operation, duration, record coordinates.
fn render(spans: &[Span]) -> String {
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&Span>> = BTreeMap::new();
    for s in spans {
        let parent = s.parent.as_deref().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(s);
    }
    for list in children.values_mut() {
        list.sort_by_key(|s| s.start_us);
    }
    fn walk(
        out: &mut String,
        children: &BTreeMap<Option<&str>, Vec<&Span>>,
        at: Option<&str>,
        depth: usize,
    ) {
        for s in children.get(&at).into_iter().flatten() {
            let place = match (
                s.tags.get("messaging.destination.name"),
                s.tags.get("messaging.destination.partition.id"),
                s.tags.get("messaging.kafka.offset"),
            ) {
                (Some(t), Some(p), Some(o)) => format!("  [{t}/{p}@{o}]"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{}{} · {} · {:.1} ms{place}\n",
                "  ".repeat(depth),
                s.service,
                s.operation,
                s.duration_us as f64 / 1000.0
            ));
            walk(out, children, Some(&s.id), depth + 1);
        }
    }
    let mut out = String::new();
    walk(&mut out, &children, None, 0);
    out
}

/// The result vector of a Prometheus instant query.
async fn prom(http: &Client, query: &str) -> Vec<Value> {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", prometheus_url()),
        &[("query", query)],
    )
    .expect("query URL");
    let Ok(resp) = http.get(url).send().await else {
        return Vec::new();
    };
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `label` → value of each series of an instant query.
async fn prom_by(http: &Client, query: &str, label: &str) -> BTreeMap<String, f64> {
    prom(http, query)
        .await
        .iter()
        .filter_map(|r| {
            let key = r["metric"][label].as_str()?.to_owned();
            let value = r["value"][1].as_str()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_every_role_and_prometheus_sees_every_loop() {
    assert!(
        std::env::var("STREAMCART_METRICS__PROMETHEUS_TARGETS_DIR").is_ok_and(|d| !d.is_empty()),
        "STREAMCART_METRICS__PROMETHEUS_TARGETS_DIR is unset: run under `eval \"$(scripts/stack env)\"`"
    );
    let world = World::new("observability").await;
    let prefix = world.prefix.clone();
    let traced = [
        ("STREAMCART_TRACING__OTLP_ENDPOINT", otlp_endpoint()),
        ("STREAMCART_TRACING__SAMPLE_RATIO", "1.0".to_owned()),
        // Lag comes from librdkafka's statistics, once a second.
        (
            "STREAMCART_KAFKA__STATISTICS_INTERVAL_MS",
            "1000".to_owned(),
        ),
    ];
    let mut roles = Vec::new();
    for args in [
        vec!["process", "product"],
        vec!["process", "stock"],
        vec!["process", "order"],
        vec!["process", "payment"],
        vec!["sagas"],
        vec!["project", "products"],
        vec!["project", "stock"],
        vec!["project", "orders"],
    ] {
        roles.push(world.spawn_with(&args, &traced, &args.join("-")));
    }
    let port = support::free_port();
    let mut edge_env = traced.to_vec();
    edge_env.extend([
        ("STREAMCART_API_LISTEN", format!("127.0.0.1:{port}")),
        ("STREAMCART_JWT_HS256_SECRET", SECRET.to_owned()),
        // Nine roles starting at once on two cores may keep the first order longer than the
        // default 5 s answer wait; this test wants the order's answer, not a 202 to poll.
        ("STREAMCART_API_COMMAND_TIMEOUT_MS", "20000".to_owned()),
    ]);
    roles.push(world.spawn_with(&["serve"], &edge_env, "serve"));
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");

    let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let sku = format!("SKU-OBS-{tag}");
    world
        .seed_product(&sku, "Traced lamp", "lamps", 4_200, 10)
        .await;
    world.flush();

    // The order, under a trace this test starts: the gateway's span is a child of it. The
    // order processor learns the product from the catalog's events, so the first attempts
    // may be refused as unknown; each attempt is its own trace, and the one placed counts.
    let customer = format!("obs-{tag}");
    let bearer = token(&customer, &["customer"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (trace_id, client_span, order_id) = loop {
        let trace_id = Uuid::new_v4().simple().to_string();
        let client_span = Uuid::new_v4().simple().to_string()[..16].to_owned();
        let order_id = Uuid::new_v4().to_string();
        let sent = http
            .post(format!("{base}/v1/orders"))
            .bearer_auth(&bearer)
            .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
            .json(&json!({"order_id": order_id, "card_token": "card-ok",
                          "lines": [{"sku": sku, "quantity": 2}]}))
            .send()
            .await;
        if let Ok(resp) = sent {
            let mut status = resp.status();
            let mut body: Value = resp.json().await.unwrap_or(Value::Null);
            // Answered late (roles still starting): the order is in Kafka, so its answer is
            // polled for, as a client would, instead of placing another order.
            let polling_until = Instant::now() + Duration::from_secs(120);
            while status == StatusCode::ACCEPTED && Instant::now() < polling_until {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let command_id = body["command_id"].as_str().unwrap_or_default().to_owned();
                if let Ok(resp) = http
                    .get(format!("{base}/v1/commands/{command_id}"))
                    .bearer_auth(&bearer)
                    .send()
                    .await
                {
                    status = resp.status();
                    let polled: Value = resp.json().await.unwrap_or(Value::Null);
                    body = if status == StatusCode::ACCEPTED {
                        body
                    } else {
                        polled
                    };
                }
            }
            if status == StatusCode::CREATED || status == StatusCode::OK {
                break (trace_id, client_span, order_id);
            }
            assert!(
                body["code"] == "order.unknown_sku" || status == StatusCode::SERVICE_UNAVAILABLE,
                "order refused: {status} {body}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "no order placed within 120 s; edge log:\n{}",
            world.log("serve")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The saga settles it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let order: Value = match http
            .get(format!("{base}/v1/orders/{order_id}"))
            .bearer_auth(&bearer)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if order["status"] == "confirmed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order {order_id} not confirmed within 120 s: {order}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Jaeger: the whole trace. Spans arrive in batches every half second from each process, so
    // the read is repeated until every role has reported.
    // A span whose parent has not arrived yet counts as open: the read is over once every
    // role has reported, only the gateway's span lacks its parent (the client's), and a second
    // read a second later finds nothing more.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = 0;
    let spans = loop {
        let spans = trace(&http, &trace_id).await;
        let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        let handled = spans
            .iter()
            .filter(|s| s.operation == "command handled")
            .count();
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
        let orphans = spans
            .iter()
            .filter(|s| s.parent.as_deref().is_none_or(|p| !ids.contains(p)))
            .count();
        let complete = TRACED.iter().all(|s| services.contains(s)) && handled >= 5 && orphans == 1;
        if complete && spans.len() == last {
            break spans;
        }
        last = if complete { spans.len() } else { 0 };
        assert!(
            Instant::now() < deadline,
            "trace {trace_id}: services {services:?}, {handled} commands handled, after 60 s:\n{}",
            render(&spans)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "trace {trace_id} ({} spans):\n{}",
        spans.len(),
        render(&spans)
    );

    // Parented: one span (the gateway's) is the child of the client's; every other span's
    // parent is in the trace.
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent.as_deref().is_none_or(|p| !ids.contains(p)))
        .collect();
    assert_eq!(roots.len(), 1, "one root: {roots:#?}");
    let root = roots[0];
    assert_eq!(root.parent.as_deref(), Some(client_span.as_str()));
    assert_eq!(root.service, "streamcart-serve");
    assert_eq!(root.operation, "POST /v1/orders");
    assert_eq!(
        root.tags
            .get("http.response.status_code")
            .map(String::as_str),
        Some("201")
    );
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let parent_of = |s: &Span| s.parent.as_deref().and_then(|p| by_id.get(p)).copied();

    // The gateway's send is the parent of the order processor's handling of PlaceOrder.
    let sent = spans
        .iter()
        .find(|s| s.operation == "command sent")
        .expect("the gateway's send");
    assert_eq!(
        parent_of(sent).map(|p| p.id.as_str()),
        Some(root.id.as_str())
    );
    assert!(
        spans.iter().any(|s| s.service == "streamcart-process-order"
            && s.operation == "command handled"
            && s.parent.as_deref() == Some(sent.id.as_str())),
        "the order processor's first span is a child of the gateway's send"
    );
    // Every record's span names its topic, partition and offset, under this test's topics;
    // commands are handled on the streams of reactions and vice versa.
    for s in spans.iter().filter(|s| {
        matches!(
            s.operation.as_str(),
            "command handled" | "reaction run" | "projection applied" | "deadline tracked"
        )
    }) {
        let topic = s
            .tags
            .get("messaging.destination.name")
            .unwrap_or_else(|| panic!("{} {} names no topic", s.service, s.operation));
        assert!(topic.starts_with(&prefix), "{topic}");
        assert!(
            s.tags.contains_key("messaging.destination.partition.id"),
            "{s:?}"
        );
        assert!(s.tags.contains_key("messaging.kafka.offset"), "{s:?}");
        let parent = parent_of(s).expect("parented");
        assert!(
            matches!(
                parent.operation.as_str(),
                "command sent" | "command handled" | "reaction run"
            ),
            "{} {} is the child of {} {}",
            s.service,
            s.operation,
            parent.service,
            parent.operation
        );
        if s.operation == "reaction run" || s.operation == "projection applied" {
            assert!(topic.ends_with(".events"), "{} reads {topic}", s.operation);
        } else if s.operation == "command handled" {
            assert!(topic.ends_with(".commands"), "{topic}");
        }
    }
    // The saga's commands are handled by the stock and payment processors, children of the
    // reactions that decided them; each command processor commits its batch under its span.
    for (service, topic_part) in [
        ("streamcart-process-stock", ".inventory."),
        ("streamcart-process-payment", ".payments."),
    ] {
        assert!(
            spans.iter().any(|s| s.service == service
                && s.operation == "command handled"
                && s.tags["messaging.destination.name"].contains(topic_part)
                && parent_of(s).is_some_and(|p| p.operation == "reaction run")),
            "{service} handles a command a reaction sent"
        );
    }
    assert!(
        spans
            .iter()
            .filter(|s| s.operation == "batch committed")
            .all(|s| {
                parent_of(s).is_some_and(|p| {
                    matches!(
                        p.operation.as_str(),
                        "command handled" | "reaction run" | "deadline tracked"
                    )
                })
            }),
        "a batch commit is a child of its first record's span"
    );
    for service in ["streamcart-process-order", "streamcart-sagas"] {
        assert!(
            spans
                .iter()
                .any(|s| s.operation == "batch committed" && s.service == service),
            "{service} reports its commits"
        );
    }
    for projector in ["streamcart-project-orders", "streamcart-project-stock"] {
        assert!(
            spans
                .iter()
                .any(|s| s.service == projector && s.operation == "projection applied"),
            "{projector} applied the order's events"
        );
    }

    // Prometheus: every running loop of this world reports its lag and its commit latency
    // (the roles announce themselves in the stack's target directory; scrapes every second).
    let ns = regex_escape(&prefix);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let lag = prom_by(
            &http,
            &format!("max by (group) (streamcart_consumer_lag{{group=~\"{ns}.*\"}})"),
            "group",
        )
        .await;
        let commits = prom_by(
            &http,
            &format!(
                "sum by (loop) (streamcart_loop_commit_seconds_count{{namespace=\"{prefix}\"}})"
            ),
            "loop",
        )
        .await;
        let loops: BTreeSet<String> = lag
            .keys()
            .map(|g| g.strip_prefix(&prefix).unwrap_or(g).to_owned())
            .collect();
        let committed: BTreeSet<String> = commits
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(l, _)| l.clone())
            .collect();
        let settled = lag.values().all(|v| *v == 0.0);
        if loops.len() >= LOOPS && committed.is_superset(&loops) && settled {
            println!("consumer lag by group: {lag:?}\ncommits by loop: {commits:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 90 s Prometheus has lag for {} loops {lag:?} (want {LOOPS}, all 0) and \
             commit latency for {committed:?}; targets:\n{}",
            loops.len(),
            prom(&http, "up").await.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let p99 = prom_by(
        &http,
        &format!(
            "histogram_quantile(0.99, sum by (loop, le) (streamcart_loop_commit_seconds_bucket{{namespace=\"{prefix}\"}}))"
        ),
        "loop",
    )
    .await;
    println!("commit latency p99 by loop (s): {p99:?}");
    // The saga counted the order's outcome once its batch committed.
    let settled = prom_by(
        &http,
        &format!(
            "sum by (outcome) (streamcart_saga_orders_settled_total{{namespace=\"{prefix}\"}})"
        ),
        "outcome",
    )
    .await;
    assert_eq!(
        settled,
        BTreeMap::from([("confirmed".to_owned(), 1.0)]),
        "one order settled, confirmed"
    );
    assert!(
        p99.values().all(|v| v.is_finite() && *v > 0.0),
        "a finite commit latency for every loop: {p99:?}"
    );

    for mut r in roles {
        r.terminate(Duration::from_secs(20));
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', '\\', c]
            }
        })
        .collect()
}
