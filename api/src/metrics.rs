//! What the edge did, in the process's Prometheus registry (served at `/metrics` here and on
//! the role's metrics port): the cache and single-flight at work, the commands sent, and every
//! request by route and status with its latency.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};
use streamcart_kafka_runtime::headers::TRACEPARENT;
use streamcart_kafka_runtime::metrics as runtime_metrics;
use streamcart_kafka_runtime::telemetry::{self, WorkSpan};
use tracing::Instrument as _;

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// The edge's counters, all monotonic, named `streamcart_api_<field>`.
        #[derive(Debug)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: IntCounter,)*
            /// Share of product reads answered from Redis (hits and cached not-founds).
            pub product_cache_hit_ratio: Gauge,
        }

        impl Default for Metrics {
            /// Counters of their own, in no registry (for tests; a role uses [`Metrics::shared`]).
            fn default() -> Self {
                Self {
                    $($name: IntCounter::new(
                        concat!("streamcart_api_", stringify!($name)),
                        $help,
                    ).expect("valid counter"),)*
                    product_cache_hit_ratio: Gauge::new(
                        "streamcart_api_product_cache_hit_ratio",
                        "Share of product reads answered from Redis (hits and cached not-founds).",
                    ).expect("valid gauge"),
                }
            }
        }

        impl Metrics {
            fn register(&self) {
                let registry = runtime_metrics::global().registry();
                $(
                    if let Err(e) = registry.register(Box::new(self.$name.clone())) {
                        tracing::warn!(error = %e, "edge counter not registered");
                    }
                )*
                if let Err(e) = registry.register(Box::new(self.product_cache_hit_ratio.clone())) {
                    tracing::warn!(error = %e, "edge gauge not registered");
                }
            }
        }
    };
}

counters! {
    product_cache_hits: "Product reads answered from Redis.",
    product_negative_hits: "Product reads answered by a cached not-found.",
    product_cache_misses: "Product reads that found nothing in Redis.",
    product_store_loads: "Product loads from ScyllaDB (collapsed misses count once).",
    cache_failures: "Redis calls that failed or timed out.",
    store_failures: "ScyllaDB calls that failed or timed out.",
    commands_sent: "Commands produced to Kafka.",
    commands_answered: "Commands whose result arrived in time.",
    commands_pending: "Commands answered 202 because their result was late.",
    kafka_failures: "Commands Kafka did not take.",
}

impl Metrics {
    /// The process's edge counters, registered once: an edge restarted by `streamcart run`
    /// keeps counting into the same series.
    pub fn shared() -> Arc<Self> {
        static SHARED: OnceLock<Arc<Metrics>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let m = Metrics::default();
                m.register();
                Arc::new(m)
            })
            .clone()
    }

    /// Counts one product read that Redis answered (`hit`) or not, and updates the ratio.
    pub fn product_read(&self, counter: &IntCounter) {
        counter.inc();
        let hits = self.product_cache_hits.get() + self.product_negative_hits.get();
        let total = hits + self.product_cache_misses.get();
        if total > 0 {
            self.product_cache_hit_ratio.set(hits as f64 / total as f64);
        }
    }
}

/// Adds one to `counter`.
pub fn bump(counter: &IntCounter) {
    counter.inc();
}

struct HttpMetrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
}

fn http() -> &'static HttpMetrics {
    static HTTP: OnceLock<HttpMetrics> = OnceLock::new();
    HTTP.get_or_init(|| {
        let labels = ["method", "route", "status"];
        let requests = IntCounterVec::new(
            Opts::new(
                "streamcart_http_requests_total",
                "HTTP requests answered, by method, route and status.",
            ),
            &labels,
        )
        .expect("valid counter");
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "streamcart_http_request_seconds",
                "Time to answer an HTTP request, by method, route and status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &labels,
        )
        .expect("valid histogram");
        let registry = runtime_metrics::global().registry();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(seconds.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "HTTP series not registered");
            }
        }
        HttpMetrics { requests, seconds }
    })
}

/// Middleware counting each matched route's requests by status, with their latency. Labelled
/// by the route's template (`/v1/products/{sku}`), never the raw path, so the series stay few.
///
/// It also opens the request's server span, a child of the caller's `traceparent`, and puts
/// that span's own `traceparent` on the request, so what the route sends continues it.
pub async fn track(mut request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let t0 = Instant::now();
    let parent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(telemetry::extract_traceparent)
        .unwrap_or_default();
    let span = WorkSpan::start(
        format!("{method} {route}"),
        SpanKind::Server,
        &parent,
        if telemetry::exporting() {
            vec![
                KeyValue::new("http.request.method", method.clone()),
                KeyValue::new("http.route", route.clone()),
                KeyValue::new("url.path", request.uri().path().to_owned()),
            ]
        } else {
            Vec::new()
        },
    );
    if let Some(value) = span
        .traceparent()
        .and_then(|tp| HeaderValue::from_str(&tp).ok())
    {
        request.headers_mut().insert(TRACEPARENT, value);
    }
    // The span is the current context while the route runs, so work it starts (a cache
    // refresh) is its child.
    let run = next.run(request).with_context(span.context().clone());
    let response = if span.recording() {
        let log = tracing::info_span!("request", trace_id = %telemetry::trace_id(span.context()));
        run.instrument(log).await
    } else {
        run.await
    };
    let code = response.status().as_u16();
    span.set(KeyValue::new("http.response.status_code", i64::from(code)));
    if code >= 500 {
        span.fail(&format!("answered {code}"));
    }
    drop(span);
    let status = code.to_string();
    let labels = [method.as_str(), route.as_str(), status.as_str()];
    let m = http();
    m.requests.with_label_values(&labels).inc();
    m.seconds
        .with_label_values(&labels)
        .observe(t0.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn request(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let app = Router::new()
            .route("/metrics-test/{id}", get(|| async { "ok" }))
            .route_layer(axum::middleware::from_fn(track));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        for id in ["a", "b", "c"] {
            let answer = request(addr, &format!("/metrics-test/{id}")).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        let text = runtime_metrics::global().render();
        let labels = r#"method="GET",route="/metrics-test/{id}",status="200""#;
        assert!(
            text.contains(&format!("streamcart_http_requests_total{{{labels}}} 3")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "streamcart_http_request_seconds_count{{{labels}}} 3"
            )),
            "{text}"
        );
    }

    #[test]
    fn the_hit_ratio_counts_hits_and_cached_not_founds_against_misses() {
        let m = Metrics::default();
        m.product_read(&m.product_cache_hits);
        m.product_read(&m.product_negative_hits);
        m.product_read(&m.product_cache_misses);
        m.product_read(&m.product_cache_hits);
        assert_eq!(m.product_cache_hit_ratio.get(), 0.75);
    }
}
