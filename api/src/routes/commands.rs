//! Command endpoints: one per command a client may send (the saga's internal commands are
//! not exposed). Each validates its body, produces the command and answers with its result:
//! 200/201 and the new version, 409 on a version conflict, 422 with the domain's code, or 202
//! and a location to poll when the answer is late.
//!
//! `Idempotency-Key: <uuid>` becomes the command id, so a retried request is never applied
//! twice; it is bound to its caller and request first, and an order placed under it without an
//! `order_id` gets an id derived from the caller and the key (see [`crate::idempotency`]).
//! `If-Match: "<version>"` becomes the expected version.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use streamcart_aggregates::catalog::{
    ChangeCategory, ChangePrice, CreateProduct, DiscontinueProduct, ProductCommand, RenameProduct,
    validate_category, validate_name,
};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{
    CancelOrder, CancelReason, MAX_LINES, OrderCommand, OrderLineRequest, PlaceOrder,
};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku, is_valid_currency};
use streamcart_schemas::codes::CONCURRENCY_CONFLICT;
use streamcart_schemas::envelope::{CommandPayload, CommandResult, Outcome};
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::gateway::{Poll, Reply, Send, now_ms};
use crate::idempotency::{Binding, fingerprint, order_id_for};
use crate::ledger::Remembered;
use crate::state::AppState;

/// Largest price or amount accepted, in minor units.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;
/// Most units received in one delivery.
pub const MAX_RECEIVED: u32 = 1_000_000;
/// Most units on one order line.
pub const MAX_LINE_QUANTITY: u32 = 10_000;
/// Longest card token.
pub const MAX_CARD_TOKEN: usize = 64;
/// Shortest and longest order deadline, in seconds.
pub const DEADLINE_SECONDS: std::ops::RangeInclusive<u32> = 5..=604_800;

/// A price.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    /// Amount in minor units (cents), 1 to [`MAX_AMOUNT_MINOR`].
    pub amount_minor: i64,
    /// ISO-4217 code.
    pub currency: String,
}

/// `POST /v1/products`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProductBody {
    /// New product's key.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Price.
    pub price: MoneyBody,
}

/// `POST /v1/products/{sku}/rename`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    /// New display name.
    pub name: String,
}

/// `POST /v1/products/{sku}/change-price`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePriceBody {
    /// New price.
    pub price: MoneyBody,
}

/// `POST /v1/products/{sku}/change-category`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeCategoryBody {
    /// New category.
    pub category: String,
}

/// `POST /v1/stock/{sku}/receive`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveStockBody {
    /// Units delivered, 1 to [`MAX_RECEIVED`].
    pub quantity: u32,
}

/// One line of `POST /v1/orders`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    /// Product.
    pub sku: String,
    /// Units, 1 to [`MAX_LINE_QUANTITY`].
    pub quantity: u32,
}

/// `POST /v1/orders`; the customer is the caller.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    /// The order's id (a lower-case UUID). When absent, the server chooses it: derived from the
    /// caller and the `Idempotency-Key` when one is sent (so every retry names the same order),
    /// random otherwise.
    pub order_id: Option<String>,
    /// 1 to 50 lines.
    pub lines: Vec<LineBody>,
    /// Card reference for the payment gateway.
    pub card_token: String,
    /// Seconds until the order expires unless paid; the configured default when absent.
    pub deadline_seconds: Option<u32>,
}

/// What a command's endpoint answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct CommandReplyBody {
    /// The command's id (the `Idempotency-Key` when one was sent).
    pub command_id: Uuid,
    /// The aggregate addressed.
    pub aggregate_id: String,
    /// `accepted`, `duplicate` or `pending`.
    pub status: String,
    /// The aggregate's version after the command (absent while pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Events the command produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<Uuid>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest {
        code: "invalid_field",
        message: format!("{field}: {message}"),
    }
}

fn sku(field: &str, value: &str) -> Result<Sku, ApiError> {
    Sku::new(value).map_err(|e| invalid(field, e))
}

fn money(field: &str, body: MoneyBody) -> Result<Money, ApiError> {
    if !(1..=MAX_AMOUNT_MINOR).contains(&body.amount_minor) {
        return Err(invalid(
            &format!("{field}.amount_minor"),
            format!("must be 1 to {MAX_AMOUNT_MINOR}"),
        ));
    }
    if !is_valid_currency(&body.currency) {
        return Err(invalid(
            &format!("{field}.currency"),
            "must be an ISO-4217 code such as EUR",
        ));
    }
    Money::new(body.amount_minor, body.currency).map_err(|e| invalid(field, e))
}

/// A command's options, and the `Idempotency-Key` it was sent with.
struct Options {
    send: Send,
    key: Option<Uuid>,
}

/// Command id, expected version and trace context from the request headers.
fn options(caller: &Principal, headers: &HeaderMap) -> Result<Options, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| Uuid::parse_str(s.trim()).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be a UUID",
                    )
                })?,
        ),
    };
    let command_id = key.unwrap_or_else(Uuid::new_v4);
    let expected_version = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_matches('"'))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_if_match",
                        "If-Match must be a version such as \"3\"",
                    )
                })?,
        ),
    };
    // The request's span, which the metrics middleware put there.
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Options {
        send: Send {
            command_id,
            expected_version,
            owner: caller.subject.clone(),
            traceparent,
        },
        key,
    })
}

/// The HTTP answer for a command's result; `created` is the new resource's location.
fn answer(result: CommandResult, created: Option<&str>) -> Result<Response, ApiError> {
    let (status, version, event_ids, word) = match result.outcome {
        Outcome::Accepted { version, event_ids } => {
            let status = if created.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, version, event_ids, "accepted")
        }
        Outcome::Duplicate { version } => (StatusCode::OK, version, Vec::new(), "duplicate"),
        Outcome::Rejected { code, message } if code == CONCURRENCY_CONFLICT => {
            return Err(ApiError::Conflict { code, message });
        }
        Outcome::Rejected { code, message } => return Err(ApiError::Rejected { code, message }),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, v);
    }
    if let Some(location) = created.filter(|_| status == StatusCode::CREATED)
        && let Ok(v) = HeaderValue::from_str(location)
    {
        headers.insert(header::LOCATION, v);
    }
    let body = CommandReplyBody {
        command_id: result.command_id,
        aggregate_id: result.aggregate_id,
        status: word.into(),
        version: Some(version),
        event_ids,
    };
    Ok((status, headers, Json(body)).into_response())
}

fn pending(command_id: Uuid, aggregate_id: &str) -> Response {
    let location = format!("/v1/commands/{command_id}");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    let body = CommandReplyBody {
        command_id,
        aggregate_id: aggregate_id.to_owned(),
        status: "pending".into(),
        version: None,
        event_ids: Vec::new(),
    };
    (StatusCode::ACCEPTED, headers, Json(body)).into_response()
}

/// Binds the request's key (if any) to it, then answers with the command's stored first answer,
/// or sends the command and answers with its result (stored for later retries). `request` is the
/// request's [`fingerprint`].
async fn dispatch<C: CommandPayload>(
    state: &AppState,
    caller: &Principal,
    options: Options,
    request: Uuid,
    aggregate_id: &str,
    command: C,
    created: Option<String>,
) -> Result<Response, ApiError> {
    let mut bound = None;
    if let Some(key) = options.key {
        let binding = Binding::new(&caller.subject, request);
        if let Some(first) = state.keys.claim(key, &binding).await? {
            return answer(first, created.as_deref());
        }
        bound = Some((key, binding));
    }
    let id = options.send.command_id;
    match state
        .gateway
        .send(aggregate_id, command, options.send)
        .await?
    {
        Reply::Answered(result) => {
            if let Some((key, binding)) = bound {
                state.keys.record(key, &binding, &result).await;
            }
            answer(result, created.as_deref())
        }
        Reply::Pending => {
            // Recorded before the caller hears 202, so its first poll may go to any instance.
            if let Err(e) = state
                .keys
                .remember_pending(id, &caller.subject, aggregate_id, now_ms())
                .await
            {
                tracing::warn!(error = %e, command_id = %id,
                    "a pending command is known to this edge instance only");
            }
            Ok(pending(id, aggregate_id))
        }
    }
}

/// `POST /v1/products`: catalog admins.
pub async fn create_product(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateProductBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &body.sku)?;
    validate_name(&body.name).map_err(|e| invalid("name", e))?;
    validate_category(&body.category).map_err(|e| invalid("category", e))?;
    let request = fingerprint(
        "create_product",
        key.as_str(),
        options.send.expected_version,
        &body,
    );
    let command = ProductCommand::CreateProduct(CreateProduct {
        sku: key.as_str().to_owned(),
        name: body.name,
        category: body.category,
        price: money("price", body.price)?,
    });
    let location = format!("/v1/products/{}", key.as_str());
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        Some(location),
    )
    .await
}

/// `POST /v1/products/{sku}/rename`: catalog admins.
pub async fn rename_product(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &path)?;
    validate_name(&body.name).map_err(|e| invalid("name", e))?;
    let request = fingerprint(
        "rename_product",
        key.as_str(),
        options.send.expected_version,
        &body,
    );
    let command = ProductCommand::RenameProduct(RenameProduct { name: body.name });
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        None,
    )
    .await
}

/// `POST /v1/products/{sku}/change-price`: catalog admins.
pub async fn change_price(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
    JsonBody(body): JsonBody<ChangePriceBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &path)?;
    let request = fingerprint(
        "change_price",
        key.as_str(),
        options.send.expected_version,
        &body,
    );
    let command = ProductCommand::ChangePrice(ChangePrice {
        price: money("price", body.price)?,
    });
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        None,
    )
    .await
}

/// `POST /v1/products/{sku}/change-category`: catalog admins.
pub async fn change_category(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
    JsonBody(body): JsonBody<ChangeCategoryBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &path)?;
    validate_category(&body.category).map_err(|e| invalid("category", e))?;
    let request = fingerprint(
        "change_category",
        key.as_str(),
        options.send.expected_version,
        &body,
    );
    let command = ProductCommand::ChangeCategory(ChangeCategory {
        category: body.category,
    });
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        None,
    )
    .await
}

/// `POST /v1/products/{sku}/discontinue`: catalog admins.
pub async fn discontinue_product(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &path)?;
    let request = fingerprint(
        "discontinue_product",
        key.as_str(),
        options.send.expected_version,
        &(),
    );
    let command = ProductCommand::DiscontinueProduct(DiscontinueProduct);
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        None,
    )
    .await
}

/// `POST /v1/stock/{sku}/receive`: catalog admins.
pub async fn receive_stock(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
    JsonBody(body): JsonBody<ReceiveStockBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::CatalogAdmin])?;
    let options = options(&caller, &headers)?;
    let key = sku("sku", &path)?;
    if !(1..=MAX_RECEIVED).contains(&body.quantity) {
        return Err(invalid("quantity", format!("must be 1 to {MAX_RECEIVED}")));
    }
    let request = fingerprint(
        "receive_stock",
        key.as_str(),
        options.send.expected_version,
        &body,
    );
    let command = StockCommand::ReceiveStock(ReceiveStock {
        quantity: body.quantity,
    });
    dispatch(
        &state,
        &caller,
        options,
        request,
        key.as_str(),
        command,
        None,
    )
    .await
}

/// `POST /v1/orders`: customers, for themselves.
pub async fn place_order(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PlaceOrderBody>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Customer])?;
    let customer_id = CustomerId::new(caller.subject.clone()).map_err(|e| {
        ApiError::Forbidden(format!("the token's subject cannot place orders: {e}"))
    })?;
    let options = options(&caller, &headers)?;
    // A retry of a keyed request must address the order the first attempt chose, whichever
    // instance answers it: the id is derived from the caller and the key, not drawn.
    let order_id = match (&body.order_id, options.key) {
        (Some(id), _) => id.clone(),
        (None, Some(key)) => order_id_for(&caller.subject, key).to_string(),
        (None, None) => Uuid::new_v4().to_string(),
    };
    let order_id = OrderId::new(order_id).map_err(|e| invalid("order_id", e))?;
    let request = fingerprint(
        "place_order",
        order_id.as_str(),
        options.send.expected_version,
        &body,
    );
    if body.lines.is_empty() || body.lines.len() > MAX_LINES {
        return Err(invalid(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (i, line) in body.lines.into_iter().enumerate() {
        if !(1..=MAX_LINE_QUANTITY).contains(&line.quantity) {
            return Err(invalid(
                &format!("lines[{i}].quantity"),
                format!("must be 1 to {MAX_LINE_QUANTITY}"),
            ));
        }
        lines.push(OrderLineRequest {
            sku: sku(&format!("lines[{i}].sku"), &line.sku)?,
            quantity: line.quantity,
        });
    }
    let token = body.card_token.trim();
    if token.is_empty() || token.len() > MAX_CARD_TOKEN {
        return Err(invalid(
            "card_token",
            format!("must be 1 to {MAX_CARD_TOKEN} bytes"),
        ));
    }
    let deadline = body
        .deadline_seconds
        .unwrap_or(state.config.default_order_deadline_seconds);
    if !DEADLINE_SECONDS.contains(&deadline) {
        return Err(invalid(
            "deadline_seconds",
            format!(
                "must be {} to {}",
                DEADLINE_SECONDS.start(),
                DEADLINE_SECONDS.end()
            ),
        ));
    }
    let placed_at = now_ms();
    let command = OrderCommand::PlaceOrder(PlaceOrder {
        order_id: order_id.clone(),
        customer_id,
        lines,
        card_token: token.to_owned(),
        deadline_at: placed_at + i64::from(deadline) * 1_000,
        placed_at,
    });
    let location = format!("/v1/orders/{}", order_id.as_str());
    dispatch(
        &state,
        &caller,
        options,
        request,
        order_id.as_str(),
        command,
        Some(location),
    )
    .await
}

/// `POST /v1/orders/{order_id}/cancel`: its customer, or an operator.
pub async fn cancel_order(
    State(state): State<AppState>,
    caller: Principal,
    headers: HeaderMap,
    PathParams(path): PathParams<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Customer, Role::Operator])?;
    let order_id = OrderId::new(path).map_err(|e| invalid("order_id", e))?;
    let not_found = || ApiError::not_found(format!("order {}", order_id.as_str()));
    let order = state
        .reads
        .order(order_id.as_str(), None)
        .await?
        .ok_or_else(not_found)?;
    if !caller.may_read_customer(&order.customer_id) {
        return Err(not_found());
    }
    let options = options(&caller, &headers)?;
    let request = fingerprint(
        "cancel_order",
        order_id.as_str(),
        options.send.expected_version,
        &(),
    );
    let command = OrderCommand::CancelOrder(CancelOrder {
        reason: CancelReason::CustomerRequested,
    });
    dispatch(
        &state,
        &caller,
        options,
        request,
        order_id.as_str(),
        command,
        None,
    )
    .await
}

/// `GET /v1/commands/{command_id}`: the result of a command answered 202, for its sender.
pub async fn command_status(
    State(state): State<AppState>,
    caller: Principal,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request("invalid_id", "command id must be a UUID"))?;
    match state.gateway.poll(id, &caller.subject) {
        Poll::Done(result) => return answer(result, None),
        Poll::Waiting(aggregate_id) => return Ok(pending(id, &aggregate_id)),
        Poll::Unknown => {}
    }
    // Sent through another instance (or this one before a restart): the shared ledger knows.
    match state.keys.remembered(id, &caller.subject).await? {
        Some(Remembered::Done(result)) => answer(result, None),
        Some(Remembered::Waiting {
            aggregate_id,
            sent_at_ms,
        }) => match state
            .gateway
            .find_result(id, &aggregate_id, sent_at_ms)
            .await?
        {
            Some(result) => {
                if let Err(e) = state.keys.remember_result(&result).await {
                    tracing::warn!(error = %e, command_id = %id, "a found answer is not stored");
                }
                answer(result, None)
            }
            None => Ok(pending(id, &aggregate_id)),
        },
        None => Err(ApiError::not_found(format!("command {id}"))),
    }
}
