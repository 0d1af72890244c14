//! The router: every endpoint, the JSON fallbacks and the body limit.

pub mod commands;
pub mod meta;
pub mod queries;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;

/// Every route as `(method, path)`, in the OpenAPI document's spelling; the document and the
/// router are checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/v1/products/{sku}"),
    ("get", "/v1/categories/{category}/products"),
    ("get", "/v1/stock/{sku}"),
    ("get", "/v1/orders/{order_id}"),
    ("get", "/v1/customers/{customer_id}/orders"),
    ("post", "/v1/products"),
    ("post", "/v1/products/{sku}/rename"),
    ("post", "/v1/products/{sku}/change-price"),
    ("post", "/v1/products/{sku}/change-category"),
    ("post", "/v1/products/{sku}/discontinue"),
    ("post", "/v1/stock/{sku}/receive"),
    ("post", "/v1/orders"),
    ("post", "/v1/orders/{order_id}/cancel"),
    ("get", "/v1/commands/{command_id}"),
];

/// The edge's router over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(meta::health))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi))
        .route("/v1/products", post(commands::create_product))
        .route("/v1/products/{sku}", get(queries::product))
        .route("/v1/products/{sku}/rename", post(commands::rename_product))
        .route(
            "/v1/products/{sku}/change-price",
            post(commands::change_price),
        )
        .route(
            "/v1/products/{sku}/change-category",
            post(commands::change_category),
        )
        .route(
            "/v1/products/{sku}/discontinue",
            post(commands::discontinue_product),
        )
        .route(
            "/v1/categories/{category}/products",
            get(queries::products_by_category),
        )
        .route("/v1/stock/{sku}", get(queries::stock))
        .route("/v1/stock/{sku}/receive", post(commands::receive_stock))
        .route("/v1/orders", post(commands::place_order))
        .route("/v1/orders/{order_id}", get(queries::order))
        .route("/v1/orders/{order_id}/cancel", post(commands::cancel_order))
        .route(
            "/v1/customers/{customer_id}/orders",
            get(queries::customer_orders),
        )
        .route("/v1/commands/{command_id}", get(commands::command_status))
        // A route layer, so it sees the matched route's template; unrouted requests are not counted.
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
