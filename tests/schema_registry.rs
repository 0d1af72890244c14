//! The Avro contract against the real schema registry of the local stack.
//!
//! Every test uses its own topic prefix, so its subjects never collide with another run's.
//! Start-up registration: a fresh namespace gets every subject, each with BACKWARD_TRANSITIVE
//! set before its first version, and producers that may not register find every command schema.

use std::time::Duration;
use streamcart_aggregates::catalog::{ProductCommand, ProductEvent, ProductState};
use streamcart_aggregates::inventory::{StockCommand, StockEvent, StockState};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderState};
use streamcart_aggregates::payments::{PaymentCommand, PaymentEvent, PaymentState};
use streamcart_schemas::codec::{Codec, frame, split_header};
use streamcart_schemas::contract::local_schema;
use streamcart_schemas::envelope::{
    CommandEnvelope, CommandResult, EventEnvelope, Snapshot, WireRecord,
};

use streamcart_schemas::error::{DecodeError, Disposition, EncodeError};
use streamcart_schemas::register::{
    RegisterError, RegistrationOutcome, RegistrationReport, Registry, ensure_registered,
    register_all,
};
use streamcart_schemas::samples;
use streamcart_schemas::topics::{Context, Stream, StreamKind, Topics};
use streamcart_tests::{registry_url, unique};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ORDER: &str = "0190c7a2-1b2c-7d3e-8f40-123456789abc";

fn unique_topics(test: &str) -> Topics {
    Topics::with_prefix(format!("{}.", unique(test)))
}

fn id_of(report: &RegistrationReport, stream: Stream) -> Option<u32> {
    report
        .subjects
        .iter()
        .find(|s| s.stream == Some(stream))
        .map(|s| s.schema_id)
}

#[tokio::test]
async fn register_all_registers_every_subject_once() -> TestResult {
    let topics = unique_topics("idem");
    let first = register_all(&registry_url(), &topics).await?;
    assert_eq!(first.subjects.len(), Stream::all().len());
    assert_eq!(first.newly_registered(), Stream::all().len());
    for s in &first.subjects {
        let stream = s.stream.ok_or("stream")?;
        assert_eq!(s.subject, topics.subject(stream));
    }

    let second = register_all(&registry_url(), &topics).await?;
    assert_eq!(
        second.newly_registered(),
        0,
        "re-running registers nothing new"
    );
    for (a, b) in first.subjects.iter().zip(&second.subjects) {
        assert_eq!(b.outcome, RegistrationOutcome::Unchanged);
        assert_eq!(a.schema_id, b.schema_id, "{}", a.subject);
    }

    let client = reqwest::Client::new();
    let subject = topics.subject(Stream::CommandResults);
    let config: serde_json::Value = client
        .get(format!("{}/config/{subject}", registry_url()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(config["compatibilityLevel"], "BACKWARD_TRANSITIVE");
    Ok(())
}

/// Encodes with one codec and decodes with a fresh one, so the schema is fetched by id.
async fn round_trip<T>(writer: &Codec, reader: &Codec, expected_id: u32, record: &T) -> TestResult
where
    T: WireRecord + PartialEq + std::fmt::Debug,
{
    let bytes = writer.encode(record).await?;
    assert_eq!(bytes.first(), Some(&0u8), "magic byte");
    assert_eq!(split_header(&bytes)?.0, expected_id, "schema id header");
    let back: T = reader.decode(&bytes).await?;
    assert_eq!(&back, record);
    Ok(())
}

#[tokio::test]
async fn every_record_round_trips_through_the_wire_format() -> TestResult {
    let topics = unique_topics("wire");
    let report = register_all(&registry_url(), &topics).await?;
    let writer = Codec::new(&registry_url(), topics.clone())?;
    let reader = Codec::new(&registry_url(), topics.clone())?;
    let id = |context, kind| id_of(&report, Stream::Aggregate(context, kind)).ok_or("id");
    use Context::*;
    use StreamKind::*;

    for c in samples::product_commands() {
        let e: CommandEnvelope<ProductCommand> = samples::command_envelope("SKU-000042", c);
        round_trip(&writer, &reader, id(Catalog, Commands)?, &e).await?;
    }
    for e in samples::product_events()? {
        let e: EventEnvelope<ProductEvent> = samples::event_envelope("SKU-000042", 1, e);
        round_trip(&writer, &reader, id(Catalog, Events)?, &e).await?;
    }
    for s in samples::product_states()? {
        let s: Snapshot<ProductState> = samples::snapshot("SKU-000042", 4, s);
        round_trip(&writer, &reader, id(Catalog, Snapshots)?, &s).await?;
    }
    for c in samples::stock_commands()? {
        let e: CommandEnvelope<StockCommand> = samples::command_envelope("SKU-000042", c);
        round_trip(&writer, &reader, id(Inventory, Commands)?, &e).await?;
    }
    for e in samples::stock_events()? {
        let e: EventEnvelope<StockEvent> = samples::event_envelope("SKU-000042", 2, e);
        round_trip(&writer, &reader, id(Inventory, Events)?, &e).await?;
    }
    for s in samples::stock_states()? {
        let s: Snapshot<StockState> = samples::snapshot("SKU-000042", 9, s);
        round_trip(&writer, &reader, id(Inventory, Snapshots)?, &s).await?;
    }
    for c in samples::order_commands()? {
        let e: CommandEnvelope<OrderCommand> = samples::command_envelope(ORDER, c);
        round_trip(&writer, &reader, id(Orders, Commands)?, &e).await?;
    }
    for e in samples::order_events()? {
        let e: EventEnvelope<OrderEvent> = samples::event_envelope(ORDER, 3, e);
        round_trip(&writer, &reader, id(Orders, Events)?, &e).await?;
    }
    for s in samples::order_states()? {
        let s: Snapshot<OrderState> = samples::snapshot(ORDER, 7, s);
        round_trip(&writer, &reader, id(Orders, Snapshots)?, &s).await?;
    }
    for c in samples::payment_commands()? {
        let e: CommandEnvelope<PaymentCommand> = samples::command_envelope(ORDER, c);
        round_trip(&writer, &reader, id(Payments, Commands)?, &e).await?;
    }
    for e in samples::payment_events()? {
        let e: EventEnvelope<PaymentEvent> = samples::event_envelope(ORDER, 1, e);
        round_trip(&writer, &reader, id(Payments, Events)?, &e).await?;
    }
    for s in samples::payment_states()? {
        let s: Snapshot<PaymentState> = samples::snapshot(ORDER, 2, s);
        round_trip(&writer, &reader, id(Payments, Snapshots)?, &s).await?;
    }
    let results_id = id_of(&report, Stream::CommandResults).ok_or("id")?;
    for r in samples::command_results() {
        round_trip::<CommandResult>(&writer, &reader, results_id, &r).await?;
    }

    // Bytes of one context handed to another context's decoder: typed, permanent.
    let stock = writer
        .encode(&samples::command_envelope(
            "SKU-000042",
            samples::stock_commands()?.remove(0),
        ))
        .await?;
    let err = reader
        .decode::<CommandEnvelope<ProductCommand>>(&stock)
        .await
        .err()
        .ok_or("decoded inventory bytes as catalog")?;
    assert!(matches!(err, DecodeError::UnexpectedSchema { .. }), "{err}");
    assert_eq!(err.disposition(), Disposition::DeadLetter);
    Ok(())
}

fn add_field(
    schema_json: &str,
    record: Option<&str>,
    field: serde_json::Value,
) -> Result<String, Box<dyn std::error::Error>> {
    fn visit(node: &mut serde_json::Value, record: &str, field: &serde_json::Value) -> bool {
        match node {
            serde_json::Value::Object(obj) => {
                if obj.get("name").and_then(|n| n.as_str()) == Some(record)
                    && let Some(fields) = obj.get_mut("fields").and_then(|f| f.as_array_mut())
                {
                    fields.push(field.clone());
                    return true;
                }
                obj.values_mut().any(|v| visit(v, record, field))
            }
            serde_json::Value::Array(items) => items.iter_mut().any(|v| visit(v, record, field)),
            _ => false,
        }
    }
    let mut json: serde_json::Value = serde_json::from_str(schema_json)?;
    match record {
        None => json["fields"].as_array_mut().ok_or("fields")?.push(field),
        Some(name) => {
            if !visit(&mut json, name, &field) {
                return Err(format!("no record {name}").into());
            }
        }
    }
    Ok(json.to_string())
}

#[tokio::test]
async fn incompatible_change_is_refused_with_subject_and_field() -> TestResult {
    let topics = unique_topics("compat");
    // A copy of the catalog command subject under a test-unique name.
    let subject = format!("{}catalog.product.commands-copy-value", topics.prefix());
    let original = &local_schema(Stream::Aggregate(Context::Catalog, StreamKind::Commands))?.json;
    let registry = Registry::new(&registry_url())?;
    let first = registry.register(&subject, original).await?;
    assert_eq!(first.outcome, RegistrationOutcome::Registered);

    // A required field on a payload record breaks readers of the old records.
    let nested = add_field(
        original,
        Some("CreateProduct"),
        serde_json::json!({"name": "weight_grams", "type": "long", "doc": "Shipping weight."}),
    )?;
    match registry.register(&subject, &nested).await {
        Err(RegisterError::Incompatible {
            subject: s,
            fields,
            messages,
        }) => {
            assert_eq!(s, subject);
            assert!(
                fields
                    .iter()
                    .any(|f| f.ends_with("CreateProduct.weight_grams")),
                "fields {fields:?}, messages {messages:?}"
            );
            let shown = RegisterError::Incompatible {
                subject: s,
                fields,
                messages,
            }
            .to_string();
            assert!(
                shown.contains(&subject) && shown.contains("weight_grams"),
                "{shown}"
            );
        }
        other => return Err(format!("nested change not refused: {other:?}").into()),
    }

    // A required top-level field likewise.
    let top = add_field(
        original,
        None,
        serde_json::json!({"name": "tenant", "type": "string", "doc": "Tenant."}),
    )?;
    match registry.register(&subject, &top).await {
        Err(RegisterError::Incompatible { fields, .. }) => {
            assert!(fields.iter().any(|f| f == "tenant"), "fields {fields:?}");
        }
        other => return Err(format!("top-level change not refused: {other:?}").into()),
    }

    // An optional field with a default keeps every old record readable: accepted.
    let compatible = add_field(
        original,
        Some("CreateProduct"),
        serde_json::json!({"name": "weight_grams", "type": ["null", "long"], "default": null, "doc": "Shipping weight."}),
    )?;
    let accepted = registry.register(&subject, &compatible).await?;
    assert_eq!(accepted.outcome, RegistrationOutcome::Registered);
    assert_ne!(accepted.schema_id, first.schema_id);
    Ok(())
}

#[tokio::test]
async fn unknown_schema_id_and_unreachable_registry_are_typed_errors() -> TestResult {
    let topics = unique_topics("unknown");
    let codec = Codec::new(&registry_url(), topics.clone())?;
    let bytes = frame(2_000_000_000, &[0, 2, 4]);
    let err = codec
        .decode::<CommandResult>(&bytes)
        .await
        .err()
        .ok_or("decoded an unknown id")?;
    assert!(
        matches!(err, DecodeError::UnknownSchemaId { id: 2_000_000_000 }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::DeadLetter);

    // Nothing listens on port 9: the registry is unreachable, which is worth a retry.
    let offline = Codec::new("http://127.0.0.1:9/apis/ccompat/v7", topics)?;
    let err = offline
        .decode::<CommandResult>(&frame(1, &[0]))
        .await
        .err()
        .ok_or("decoded without a registry")?;
    assert!(
        matches!(err, DecodeError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::Retry);
    Ok(())
}

/// A fault injector in front of the real registry: answers the next requests with the given
/// statuses, then forwards every request to the registry and its answer back. The registry's
/// logic is never imitated; only its availability is.
struct FaultyRegistry {
    /// Confluent API base URL through the injector.
    url: String,
    /// Requests seen (failed and forwarded).
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyRegistry {
    async fn start(failures: Vec<u16>) -> Result<Self, Box<dyn std::error::Error>> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let real = reqwest::Url::parse(&registry_url())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!(
            "http://{}{}",
            listener.local_addr()?,
            real.path().trim_end_matches('/')
        );
        let origin = real.origin().ascii_serialization();
        let failures = std::sync::Arc::new(std::sync::Mutex::new(
            failures
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = requests.clone();
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (failures, seen, client, origin) = (
                    failures.clone(),
                    seen.clone(),
                    client.clone(),
                    origin.clone(),
                );
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Head, then as much body as Content-Length says.
                    let (head_end, length) = loop {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = socket.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut first = head.lines().next().unwrap_or_default().split(' ');
                    let (method, path) = (
                        first.next().unwrap_or("GET").to_owned(),
                        first.next().unwrap_or("/").to_owned(),
                    );
                    let content_type = head
                        .lines()
                        .find_map(|l| {
                            l.to_lowercase()
                                .starts_with("content-type:")
                                .then(|| l[13..].trim().to_owned())
                        })
                        .unwrap_or_else(|| "application/json".to_owned());
                    let body = buf[head_end..].to_vec();
                    let injected = failures.lock().ok().and_then(|mut f| f.pop_front());
                    let (status, answer) = match injected {
                        Some(status) => (
                            status,
                            br#"{"error_code":50001,"message":"injected fault"}"#.to_vec(),
                        ),
                        None => {
                            let method =
                                reqwest::Method::from_bytes(method.as_bytes()).unwrap_or_default();
                            let forwarded = client
                                .request(method, format!("{origin}{path}"))
                                .header("content-type", content_type)
                                .body(body)
                                .send()
                                .await;
                            match forwarded {
                                Ok(r) => {
                                    let status = r.status().as_u16();
                                    (
                                        status,
                                        r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                                    )
                                }
                                Err(_) => (502, b"{}".to_vec()),
                            }
                        }
                    };
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n",
                        answer.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(&answer);
                    let _ = socket.write_all(&out).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { url, requests })
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn registry_5xx_and_429_are_retried_and_never_cached() -> TestResult {
    let topics = unique_topics("faults");
    register_all(&registry_url(), &topics).await?;
    let writer = Codec::new(&registry_url(), topics.clone())?;
    let record = samples::command_results()
        .into_iter()
        .next()
        .ok_or("sample")?;
    let bytes = writer.encode(&record).await?;

    let faulty = FaultyRegistry::start(vec![500, 504, 429, 503]).await?;
    let reader = Codec::new(&faulty.url, topics.clone())?;
    for status in ["500", "504", "429", "503"] {
        let err = reader
            .decode::<CommandResult>(&bytes)
            .await
            .err()
            .ok_or("decoded through an injected fault")?;
        assert!(
            matches!(err, DecodeError::RegistryUnavailable { .. }),
            "{status}: {err}"
        );
        assert!(err.to_string().contains(status), "{err}");
        assert_eq!(err.disposition(), Disposition::Retry);
    }
    // The same bytes decode as soon as the registry answers: no failure was remembered.
    let back: CommandResult = reader.decode(&bytes).await?;
    assert_eq!(back, record);
    assert_eq!(faulty.requests(), 5);
    // And from memory afterwards.
    let again: CommandResult = reader.decode(&bytes).await?;
    assert_eq!(again, record);
    assert_eq!(faulty.requests(), 5);

    // A healthy registry's 404 for an id it does not have is the one permanent answer.
    let unknown = frame(2_000_000_001, &[0, 2, 4]);
    let err = reader
        .decode::<CommandResult>(&unknown)
        .await
        .err()
        .ok_or("decoded an unknown id")?;
    assert!(
        matches!(err, DecodeError::UnknownSchemaId { id: 2_000_000_001 }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::DeadLetter);
    Ok(())
}

#[tokio::test]
async fn registering_through_a_failing_registry_is_retried_until_it_answers() -> TestResult {
    let topics = unique_topics("regfaults");
    let faulty = FaultyRegistry::start(vec![500, 503]).await?;
    let codec = Codec::new(&faulty.url, topics.clone())?;
    for _ in 0..2 {
        let err = codec
            .schema_id(Stream::CommandResults)
            .await
            .err()
            .ok_or("registered through an injected fault")?;
        assert!(err.is_transient(), "{err}");
        assert_eq!(err.disposition(), Disposition::Retry);
    }
    let id = codec.schema_id(Stream::CommandResults).await?;
    let direct = Codec::new(&registry_url(), topics)?;
    assert_eq!(direct.schema_id(Stream::CommandResults).await?, id);
    assert_eq!(faulty.requests(), 3);
    Ok(())
}

#[tokio::test]
async fn a_registry_that_never_answers_is_retried_after_the_request_timeout() -> TestResult {
    // Accepts connections and reads requests, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/apis/ccompat/v7", listener.local_addr()?);
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let codec = Codec::new(&url, unique_topics("hung"))?;
    let started = std::time::Instant::now();
    let err = codec
        .decode::<CommandResult>(&frame(1, &[0]))
        .await
        .err()
        .ok_or("decoded without an answer")?;
    held.abort();
    assert!(
        matches!(err, DecodeError::RegistryUnavailable { .. }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::Retry);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    Ok(())
}

/// The registry's answer to `GET <path>`: status and JSON body.
async fn registry_get(path: &str) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error>> {
    let response = reqwest::Client::new()
        .get(format!("{}/{path}", registry_url()))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    Ok((status, body))
}

/// Encodes every command sample of every aggregate with `codec`; returns how many it encoded.
async fn encode_every_command(codec: &Codec) -> Result<usize, Box<dyn std::error::Error>> {
    let mut encoded = 0;
    for c in samples::product_commands() {
        let e: CommandEnvelope<ProductCommand> = samples::command_envelope("SKU-000042", c);
        codec.encode(&e).await?;
        encoded += 1;
    }
    for c in samples::stock_commands()? {
        let e: CommandEnvelope<StockCommand> = samples::command_envelope("SKU-000042", c);
        codec.encode(&e).await?;
        encoded += 1;
    }
    for c in samples::order_commands()? {
        let e: CommandEnvelope<OrderCommand> = samples::command_envelope(ORDER, c);
        codec.encode(&e).await?;
        encoded += 1;
    }
    for c in samples::payment_commands()? {
        let e: CommandEnvelope<PaymentCommand> = samples::command_envelope(ORDER, c);
        codec.encode(&e).await?;
        encoded += 1;
    }
    Ok(encoded)
}

#[tokio::test]
async fn start_up_registration_puts_the_whole_contract_in_a_fresh_namespace() -> TestResult {
    let topics = unique_topics("startup");
    for stream in Stream::all() {
        let (status, _) =
            registry_get(&format!("subjects/{}/versions", topics.subject(stream))).await?;
        assert_eq!(
            status,
            404,
            "{} exists before start-up",
            topics.subject(stream)
        );
    }

    let report = ensure_registered(&registry_url(), &topics, Duration::from_secs(30)).await?;
    assert_eq!(report.subjects.len(), 15);
    assert_eq!(report.newly_registered(), 15);
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for stream in Stream::all() {
        let subject = topics.subject(stream);
        let (status, versions) = registry_get(&format!("subjects/{subject}/versions")).await?;
        assert_eq!(status, 200, "{subject} missing after start-up registration");
        assert_eq!(versions, serde_json::json!([1]), "{subject}: one version");
        let (status, config) = registry_get(&format!("config/{subject}")).await?;
        assert_eq!(status, 200, "{subject}: no compatibility rule");
        assert_eq!(
            config["compatibilityLevel"], "BACKWARD_TRANSITIVE",
            "{subject}"
        );
        let kind = match stream {
            Stream::Aggregate(_, StreamKind::Commands) => "commands",
            Stream::Aggregate(_, StreamKind::Events) => "events",
            Stream::Aggregate(_, StreamKind::Snapshots) => "snapshots",
            Stream::OrderSummary | Stream::ProductSummary => "summaries",
            Stream::CommandResults => "results",
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<&str, usize> = [
        ("commands", 4),
        ("events", 4),
        ("snapshots", 4),
        ("summaries", 2),
        ("results", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, expected);

    // A producer that may not register finds every command schema by lookup, under the ids
    // the start-up registration reported.
    let producer = Codec::new(&registry_url(), topics.clone())?.with_auto_register(false);
    let encoded = encode_every_command(&producer).await?;
    assert!(encoded >= 4, "encoded {encoded} commands");
    for context in Context::ALL {
        let stream = Stream::Aggregate(context, StreamKind::Commands);
        assert_eq!(
            Some(producer.schema_id(stream).await?),
            id_of(&report, stream),
            "{stream}"
        );
    }

    // Every role runs it again at start: nothing new, nothing rewritten.
    let again = ensure_registered(&registry_url(), &topics, Duration::from_secs(30)).await?;
    assert_eq!(again.newly_registered(), 0);
    assert!(
        again
            .subjects
            .iter()
            .all(|s| s.outcome == RegistrationOutcome::Unchanged)
    );
    Ok(())
}

#[tokio::test]
async fn producer_without_auto_registration_never_creates_a_subject() -> TestResult {
    let topics = unique_topics("noauto");
    let producer = Codec::new(&registry_url(), topics.clone())?.with_auto_register(false);
    let envelope: CommandEnvelope<ProductCommand> =
        samples::command_envelope("SKU-000042", samples::product_commands().remove(0));
    let err = producer
        .encode(&envelope)
        .await
        .err()
        .ok_or("encoded without a registered schema")?;
    assert!(
        matches!(&err, EncodeError::RegistryRefused { subject, .. }
            if *subject == topics.subject(Stream::Aggregate(Context::Catalog, StreamKind::Commands))),
        "{err}"
    );
    assert!(!err.is_transient(), "retrying cannot help: {err}");
    let subject = topics.subject(Stream::Aggregate(Context::Catalog, StreamKind::Commands));
    let (status, _) = registry_get(&format!("subjects/{subject}/versions")).await?;
    assert_eq!(status, 404, "the refused producer registered {subject}");
    Ok(())
}

#[tokio::test]
async fn compatibility_rule_precedes_the_first_version() -> TestResult {
    let topics = unique_topics("rulefirst");
    let registry = Registry::new(&registry_url())?;
    let subject = topics.subject(Stream::Aggregate(Context::Payments, StreamKind::Commands));
    // The registry takes the rule for a subject that has no version yet.
    registry.set_compatibility(&subject).await?;
    let (status, _) = registry_get(&format!("subjects/{subject}/versions")).await?;
    assert_eq!(status, 404);
    assert_eq!(
        registry.compatibility(&subject).await?.as_deref(),
        Some("BACKWARD_TRANSITIVE")
    );

    // A subject whose first version came from an auto-registering producer, under the
    // registry-wide default, gets the rule from the start-up registration.
    let late = unique_topics("rulelate");
    let old_producer = Codec::new(&registry_url(), late.clone())?;
    let envelope: CommandEnvelope<ProductCommand> =
        samples::command_envelope("SKU-000042", samples::product_commands().remove(0));
    old_producer.encode(&envelope).await?;
    let late_subject = late.subject(Stream::Aggregate(Context::Catalog, StreamKind::Commands));
    assert_ne!(
        registry.compatibility(&late_subject).await?.as_deref(),
        Some("BACKWARD_TRANSITIVE"),
        "precondition: the registry-wide default is laxer"
    );
    let report = ensure_registered(&registry_url(), &late, Duration::from_secs(30)).await?;
    assert_eq!(
        report.newly_registered(),
        14,
        "all but the producer's subject"
    );
    assert_eq!(
        registry.compatibility(&late_subject).await?.as_deref(),
        Some("BACKWARD_TRANSITIVE")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_starting_together_register_the_contract_once() -> TestResult {
    // `streamcart run` alone is one process, but a deployment starts its roles side by side,
    // each registering the same contract into the same fresh namespace.
    const ROLES: usize = 16;
    let topics = unique_topics("together");
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..ROLES {
        let topics = topics.clone();
        starts.spawn(async move {
            ensure_registered(&registry_url(), &topics, Duration::from_secs(60)).await
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = starts.join_next().await {
        reports.push(joined??);
    }
    assert_eq!(reports.len(), ROLES);
    for stream in Stream::all() {
        let subject = topics.subject(stream);
        let (status, versions) = registry_get(&format!("subjects/{subject}/versions")).await?;
        assert_eq!(status, 200, "{subject}");
        assert_eq!(
            versions,
            serde_json::json!([1]),
            "{subject}: exactly one version"
        );
        let (_, config) = registry_get(&format!("config/{subject}")).await?;
        assert_eq!(
            config["compatibilityLevel"], "BACKWARD_TRANSITIVE",
            "{subject}"
        );
        let ids: Vec<Option<u32>> = reports.iter().map(|r| id_of(r, stream)).collect();
        assert!(
            ids.iter().all(|id| id.is_some() && *id == ids[0]),
            "{subject}: every role got the same id: {ids:?}"
        );
    }
    Ok(())
}
