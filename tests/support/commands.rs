//! Commands as tests and benchmarks send them: the envelope, and the commands a run is seeded
//! with (products, stock, orders).

use std::time::{Duration, Instant};
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{OrderLineRequest, PlaceOrder};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};

use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, WireRecord};
use streamcart_schemas::error::EncodeError;
use uuid::Uuid;

use crate::clock::now_ms;

/// Card token the test worlds' payment simulator declines (`STREAMCART_PAYMENTS_DECLINED_CARDS`).
pub const DECLINED_CARD: &str = "card-declined";
/// A card token the payment simulator authorizes.
pub const GOOD_CARD: &str = "card-ok";
/// How long after placing an order its deadline falls, unless a test says otherwise.
pub const ORDER_DEADLINE_MS: i64 = 600_000;

/// `payload` for `aggregate_id` under a fresh command id, issued now, correlated by the
/// aggregate (an order's saga carries its order id).
pub fn envelope<C>(aggregate_id: &str, payload: C) -> CommandEnvelope<C> {
    CommandEnvelope {
        command_id: Uuid::new_v4(),
        aggregate_id: aggregate_id.to_owned(),
        expected_version: None,
        issued_at: now_ms(),
        correlation_id: aggregate_id.to_owned(),
        payload,
    }
}

/// How long [`encode`] asks a registry that does not answer before the test fails.
const REGISTRY_PATIENCE: Duration = Duration::from_secs(60);

/// Encodes `record` as a client would, asking again while the registry is unavailable (a
/// loaded machine can stall it past one call's timeout, and every client retries that);
/// panics on a refusal, or when it stays unavailable for a minute.
pub async fn encode<T: WireRecord>(codec: &Codec, record: &T) -> Vec<u8> {
    let deadline = Instant::now() + REGISTRY_PATIENCE;
    loop {
        match codec.encode(record).await {
            Ok(bytes) => return bytes,
            Err(EncodeError::RegistryUnavailable { subject, reason })
                if Instant::now() < deadline =>
            {
                eprintln!("[encode] registry unavailable for {subject}, asking again: {reason}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("encode: {e}"),
        }
    }
}

/// A product priced in euro cents.
pub fn create_product(sku: &str, name: &str, category: &str, price_minor: i64) -> ProductCommand {
    ProductCommand::CreateProduct(CreateProduct {
        sku: sku.to_owned(),
        name: name.to_owned(),
        category: category.to_owned(),
        price: Money::new(price_minor, "EUR").expect("money"),
    })
}

/// `quantity` units arriving in stock.
pub fn receive_stock(quantity: u32) -> StockCommand {
    StockCommand::ReceiveStock(ReceiveStock { quantity })
}

/// A fresh customer id.
pub fn customer() -> CustomerId {
    CustomerId::new(Uuid::new_v4().to_string()).expect("customer")
}

/// An order under a fresh id by `customer` of `lines` (sku, quantity) paid with `card`, placed
/// now and due [`ORDER_DEADLINE_MS`] later; callers change the times with struct update syntax.
pub fn place_order(customer: &CustomerId, lines: &[(&str, u32)], card: &str) -> PlaceOrder {
    let now = now_ms();
    PlaceOrder {
        order_id: OrderId::new(Uuid::new_v4().to_string()).expect("order id"),
        customer_id: customer.clone(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| OrderLineRequest {
                sku: Sku::new(*sku).expect("sku"),
                quantity: *quantity,
            })
            .collect(),
        card_token: card.to_owned(),
        deadline_at: now + ORDER_DEADLINE_MS,
        placed_at: now,
    }
}
