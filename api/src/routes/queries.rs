//! Read endpoints: products, listings, stock and orders.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use streamcart_projectors::{OrderCursor, OrderRow, ProductRow};

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::extract::{MinVersion, PathParams, QueryParams};
use crate::state::AppState;

/// Largest page a listing serves.
pub const MAX_PAGE: u32 = 100;
/// Page size when the caller does not say.
pub const DEFAULT_PAGE: u32 = 20;

/// Paging parameters of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to [`MAX_PAGE`].
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be 1 to {MAX_PAGE}, got {n}"),
            )),
        }
    }

    fn cursor<C: for<'de> Deserialize<'de>>(&self) -> Result<Option<C>, ApiError> {
        let Some(text) = &self.cursor else {
            return Ok(None);
        };
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor is not one this API returned")
            })
    }
}

fn encode_cursor<C: Serialize>(cursor: &C) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

/// One page of a listing.
#[derive(Debug, Serialize)]
pub struct PageBody<T> {
    /// Rows in listing order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A row with its version as ETag, so clients can see what they got.
fn versioned<T: Serialize>(row: T, version: u64) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, v);
    }
    (headers, Json(row)).into_response()
}

fn check_id(what: &'static str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            format!("{what} must be 1 to 64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// `GET /v1/products/{sku}`: public.
pub async fn product(
    State(state): State<AppState>,
    PathParams(sku): PathParams<String>,
    MinVersion(min): MinVersion,
) -> Result<Response, ApiError> {
    check_id("sku", &sku)?;
    let row: ProductRow = state
        .reads
        .product(&sku, min)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("product {sku}")))?;
    let version = row.version;
    Ok(versioned(row, version))
}

/// `GET /v1/categories/{category}/products`: public.
pub async fn products_by_category(
    State(state): State<AppState>,
    PathParams(category): PathParams<String>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<PageBody<ProductRow>>, ApiError> {
    if category.is_empty() || category.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_category",
            "category must be 1 to 100 characters",
        ));
    }
    let limit = query.limit()?;
    let after: Option<String> = query.cursor()?;
    let page = state
        .reads
        .products_by_category(&category, after.as_deref(), limit)
        .await?;
    Ok(Json(PageBody {
        items: page.items,
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

/// `GET /v1/stock/{sku}`: any authenticated caller.
pub async fn stock(
    State(state): State<AppState>,
    _caller: Principal,
    PathParams(sku): PathParams<String>,
    MinVersion(min): MinVersion,
) -> Result<Response, ApiError> {
    check_id("sku", &sku)?;
    let row = state
        .reads
        .stock(&sku, min)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("stock of {sku}")))?;
    let version = row.version;
    Ok(versioned(row, version))
}

/// `GET /v1/orders/{order_id}`: its customer, or an operator. Another customer's order is
/// answered exactly like a missing one, so ids cannot be probed.
pub async fn order(
    State(state): State<AppState>,
    caller: Principal,
    PathParams(order_id): PathParams<String>,
    MinVersion(min): MinVersion,
) -> Result<Response, ApiError> {
    check_id("order id", &order_id)?;
    let not_found = || ApiError::not_found(format!("order {order_id}"));
    // Someone else's existing order is refused before any wait, so waiting reveals nothing.
    if min.is_some()
        && !caller.has(Role::Operator)
        && let Some(row) = state.reads.order(&order_id, None).await?
        && !caller.may_read_customer(&row.customer_id)
    {
        return Err(not_found());
    }
    let row: OrderRow = state
        .reads
        .order(&order_id, min)
        .await?
        .filter(|row| caller.may_read_customer(&row.customer_id))
        .ok_or_else(not_found)?;
    let version = row.version;
    Ok(versioned(row, version))
}

/// `GET /v1/customers/{customer_id}/orders`: that customer, or an operator.
pub async fn customer_orders(
    State(state): State<AppState>,
    caller: Principal,
    PathParams(customer_id): PathParams<String>,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<PageBody<OrderRow>>, ApiError> {
    check_id("customer id", &customer_id)?;
    if !caller.may_read_customer(&customer_id) {
        return Err(ApiError::Forbidden(
            "customers list only their own orders".into(),
        ));
    }
    let limit = query.limit()?;
    let before: Option<OrderCursor> = query.cursor()?;
    let page = state
        .reads
        .orders_by_customer(&customer_id, before.as_ref(), limit)
        .await?;
    Ok(Json(PageBody {
        items: page.items,
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}
