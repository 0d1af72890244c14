//! Traces: OpenTelemetry spans around the work that matters, exported over OTLP/HTTP, with the
//! W3C trace context carried in every record's `traceparent` header.
//!
//! Every process installs a tracer provider at start ([`init`]). With no OTLP endpoint
//! configured it samples nothing and exports nothing: spans are then only ids (a fresh span id
//! per hop, the trace id carried on), so records still carry a trace context and a later hop
//! that does export joins the trace. With an endpoint, spans are sampled by trace id ratio
//! (respecting a sampled parent) and exported in batches from a background thread.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use serde::{Deserialize, Serialize};

use crate::headers::TRACEPARENT;
use crate::record::Record;

/// Where and how much to trace.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://host:4318`); spans go to `/v1/traces`.
    /// Unset: nothing is sampled or exported.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces sampled, 0.0 to 1.0; a record whose upstream span was sampled is
    /// always traced.
    pub sample_ratio: f64,
    /// The service name spans are reported under; unset, `streamcart-<role>`.
    pub service_name: Option<String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: None,
        }
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter refused its configuration (a malformed endpoint). Not retried: the
    /// process exits naming the key.
    #[error("tracing.otlp_endpoint {endpoint:?}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// What the exporter said.
        reason: String,
    },
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Keeps the tracer provider of the process; dropping it flushes the spans still queued.
#[must_use = "dropping the guard stops exporting"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if EXPORTING.swap(false, Ordering::Relaxed) {
            let _ = self.provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Installs the W3C propagator and the process's tracer provider, as `service` (or the
/// configured service name).
pub fn init(config: &TracingConfig, service: &str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let name = config
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    match config.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        // Nothing is exported, and a new trace is not sampled; a sampled parent keeps its flag
        // downstream, so a caller's sampling decision survives a hop that does not export.
        None => builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| TelemetryError::Exporter {
                    endpoint: endpoint.to_owned(),
                    reason: e.to_string(),
                })?;
            // Half a second between exports: a trace shows up promptly, and a busy process
            // still sends spans in batches of up to 512.
            let batch = BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_millis(500))
                .with_max_queue_size(16_384)
                .build();
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build();
            let ratio = config.sample_ratio.clamp(0.0, 1.0);
            builder = builder
                .with_span_processor(processor)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    ratio,
                ))));
            EXPORTING.store(true, Ordering::Relaxed);
        }
    }
    let provider = builder.build();
    let _ = TRACER.set(provider.tracer("streamcart"));
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(TelemetryGuard { provider })
}

/// True while spans are exported: work worth a log span or an attribute is done only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The process's tracer, kept once installed: asking the global provider for one per span
/// would take its lock and build a tracer on every record.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Starts `builder`'s span as a child of `parent`, and returns the context holding it.
fn start_span(builder: SpanBuilder, parent: &Context) -> Context {
    match TRACER.get() {
        Some(tracer) => parent.with_span(builder.start_with_context(tracer, parent)),
        None => {
            let tracer = opentelemetry::global::tracer("streamcart");
            parent.with_span(builder.start_with_context(&tracer, parent))
        }
    }
}

struct HeaderReader<'a, 'h>(&'a [(&'h str, &'h [u8])]);

impl Extractor for HeaderReader<'_, '_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())?;
        // The propagator parses ids with from_str_radix, which takes `abc` for a trace id; a
        // value that is not the W3C shape starts a new trace instead.
        (key != TRACEPARENT || well_formed(value)).then_some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

/// `version-traceid-spanid-flags` with 2, 32, 16 and 2 lower-case hex digits.
fn well_formed(value: &str) -> bool {
    let parts: Vec<&str> = value.trim().split('-').collect();
    parts.len() >= 4
        && [2, 32, 16, 2].iter().zip(&parts).all(|(n, p)| {
            p.len() == *n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

struct One(Option<String>);

impl Injector for One {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The upstream context carried in `headers` (empty when there is none or it is malformed).
pub fn extract(headers: &[(&str, &[u8])]) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderReader(headers)))
}

/// The upstream context carried by a `traceparent` value.
pub fn extract_traceparent(value: &str) -> Context {
    extract(&[(TRACEPARENT, value.as_bytes())])
}

/// The `traceparent` value that makes work downstream a child of `cx`'s span; `None` when
/// `cx` holds no valid span.
pub fn traceparent(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = One(None);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut out));
    out.0
}

/// The trace id of `cx` as 32 hex digits, for logs.
pub fn trace_id(cx: &Context) -> String {
    cx.span().span_context().trace_id().to_string()
}

/// A span that is open while some work runs; ended (and exported, when sampled) on drop.
#[derive(Debug)]
pub struct WorkSpan {
    cx: Context,
}

impl WorkSpan {
    /// Starts a span called `operation` as a child of `parent` (a new root when `parent` holds
    /// no span).
    pub fn start(
        operation: impl Into<std::borrow::Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let builder = SpanBuilder::from_name(operation)
            .with_kind(kind)
            .with_attributes(attributes);
        Self {
            cx: start_span(builder, parent),
        }
    }

    /// Starts a span called `operation` for handling one consumed record: a child of the span
    /// that produced it, naming the loop, topic, partition and offset.
    pub fn for_record(operation: &'static str, loop_name: &str, record: &Record<'_>) -> Self {
        let parent = extract(&record.headers);
        if !exporting() {
            return Self::start(operation, SpanKind::Consumer, &parent, Vec::new());
        }
        Self::start(
            operation,
            SpanKind::Consumer,
            &parent,
            record_attributes(loop_name, record),
        )
    }

    /// Starts a root span called `operation` linked to `links` (the spans whose work it
    /// carries, e.g. the records of one committed batch), as a child of the first.
    pub fn linked(operation: &'static str, loop_name: &str, links: &[SpanContext]) -> Self {
        let parent = links
            .first()
            .map(|first| Context::new().with_remote_span_context(first.clone()))
            .unwrap_or_default();
        let mut builder = SpanBuilder::from_name(operation)
            .with_kind(SpanKind::Internal)
            .with_attributes(vec![
                KeyValue::new("streamcart.loop", loop_name.to_owned()),
                KeyValue::new("streamcart.batch.records", links.len() as i64),
            ]);
        if links.len() > 1 {
            builder = builder.with_links(
                links
                    .iter()
                    .skip(1)
                    .take(MAX_LINKS)
                    .map(|l| Link::with_context(l.clone()))
                    .collect(),
            );
        }
        Self {
            cx: start_span(builder, &parent),
        }
    }

    /// The span's context, to parent further work.
    pub fn context(&self) -> &Context {
        &self.cx
    }

    /// The span's own ids.
    pub fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// True when the span is sampled and spans are exported (its attributes are kept).
    pub fn recording(&self) -> bool {
        exporting() && self.cx.span().is_recording()
    }

    /// The `traceparent` for records this work produces.
    pub fn traceparent(&self) -> Option<String> {
        traceparent(&self.cx)
    }

    /// Adds an attribute (only kept when sampled).
    pub fn set(&self, attribute: KeyValue) {
        if self.recording() {
            self.cx.span().set_attribute(attribute);
        }
    }

    /// Marks the work failed, with why.
    pub fn fail(&self, reason: &str) {
        if self.recording() {
            self.cx.span().set_status(Status::error(reason.to_owned()));
        }
    }
}

impl Drop for WorkSpan {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

/// At most this many links on one batch's span; a larger batch names its first records.
const MAX_LINKS: usize = 128;

fn record_attributes(loop_name: &str, record: &Record<'_>) -> Vec<KeyValue> {
    vec![
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", record.topic.to_owned()),
        KeyValue::new(
            "messaging.destination.partition.id",
            record.partition.to_string(),
        ),
        KeyValue::new("messaging.kafka.offset", record.offset),
        KeyValue::new("messaging.consumer.group.name", loop_name.to_owned()),
    ]
}

/// Sets `name` to `value` in a header list, replacing an earlier value.
pub fn set_header<K, V>(headers: &mut Vec<(K, V)>, name: K, value: V)
where
    K: AsRef<str>,
{
    if let Some(slot) = headers
        .iter_mut()
        .find(|(k, _)| k.as_ref() == name.as_ref())
    {
        slot.1 = value;
    } else {
        headers.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Sampled but never exported: every span gets real ids and is recording.
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let provider = SdkTracerProvider::builder()
                .with_sampler(Sampler::AlwaysOn)
                .build();
            opentelemetry::global::set_tracer_provider(provider);
        });
    }

    fn record<'a>(headers: Vec<(&'a str, &'a [u8])>) -> Record<'a> {
        Record {
            topic: "t",
            partition: 3,
            offset: 42,
            key: None,
            payload: None,
            headers,
        }
    }

    #[test]
    fn a_record_span_continues_the_upstream_trace_with_a_new_span() {
        installed();
        let up = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = WorkSpan::for_record(
            "handle",
            "loop",
            &record(vec![(TRACEPARENT, up.as_bytes())]),
        );
        let tp = span.traceparent().expect("a traceparent");
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert!(!tp.contains("00f067aa0ba902b7"), "a new span id: {tp}");
        assert!(tp.ends_with("-01"), "still sampled: {tp}");
        assert_eq!(trace_id(span.context()), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_record_without_a_context_starts_a_trace_and_malformed_ones_are_ignored() {
        installed();
        for headers in [
            vec![],
            vec![(TRACEPARENT, b"00-abc-def-01".as_slice())],
            vec![(
                TRACEPARENT,
                b"00-00000000000000000000000000000000-00f067aa0ba902b7-01".as_slice(),
            )],
        ] {
            let a = WorkSpan::for_record("handle", "loop", &record(headers.clone()));
            let b = WorkSpan::for_record("handle", "loop", &record(headers));
            let (ta, tb) = (trace_id(a.context()), trace_id(b.context()));
            assert_eq!(ta.len(), 32);
            assert_ne!(ta, "00000000000000000000000000000000");
            assert_ne!(ta, tb, "each record without a context is its own trace");
        }
    }

    #[test]
    fn a_batch_span_is_a_child_of_its_first_record_and_links_the_rest() {
        installed();
        let a = WorkSpan::for_record("handle", "loop", &record(vec![]));
        let b = WorkSpan::for_record("handle", "loop", &record(vec![]));
        let batch = WorkSpan::linked("commit", "loop", &[a.span_context(), b.span_context()]);
        assert_eq!(batch.span_context().trace_id(), a.span_context().trace_id());
        assert_ne!(batch.span_context().span_id(), a.span_context().span_id());
        // Sampled (the test provider samples all); `recording()` also needs an exporter.
        assert!(batch.context().span().is_recording());
        assert!(!batch.recording(), "nothing is exported here");
    }

    #[test]
    fn set_header_replaces_or_appends() {
        let mut h: Vec<(String, Vec<u8>)> = vec![("a".into(), b"1".to_vec())];
        set_header(&mut h, "a".into(), b"2".to_vec());
        set_header(&mut h, "b".into(), b"3".to_vec());
        assert_eq!(
            h,
            vec![("a".into(), b"2".to_vec()), ("b".into(), b"3".to_vec())]
        );
    }
}
