//! Operational endpoints: health, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// `GET /health`: 200 while the API can serve reads, with each dependency's state; 503 when
/// neither ScyllaDB nor the cache answers.
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let (scylla, redis) = state.reads.probe().await;
    let kafka = !state.gateway.kafka_down();
    let status = if scylla || redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "up" } else { "down" };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ok" } else { "degraded" },
            "scylla": word(scylla),
            "redis": word(redis),
            "kafka": word(kafka),
        })),
    )
}

/// `GET /metrics`: the process's series (the edge's and its loops') in Prometheus' text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        streamcart_kafka_runtime::metrics::global().render(),
    )
}

/// `GET /openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
