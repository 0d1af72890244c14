//! A flash sale on the real stack: one hot SKU with 100 units, 2,000 orders from 500 customers,
//! some declined, some expiring, while every processor and saga role is SIGKILLed and restarted
//! at random. When everything has settled, the invariants are checked from the event topics.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::seq::IndexedRandom;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand, StockEvent};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderLineRequest, PlaceOrder};
use streamcart_aggregates::payments::PaymentEvent;
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{
    CommandEnvelope, CommandPayload, EventEnvelope, EventPayload, WireRecord,
};
use streamcart_schemas::topics::{Context, Topics};
use streamcart_tests as support;
use streamcart_tests::ledger::{assert_sale_invariants, check_versions, fold, settled};
use uuid::Uuid;

const PARTITIONS: i32 = 4;
const HOT: &str = "SKU-HOT";
const HOT_UNITS: u32 = 100;
const ORDERS: usize = 2_000;
const CUSTOMERS: usize = 500;
const DECLINED_CARD: &str = "card-declined";
const ROLES: [&str; 5] = ["product", "stock", "order", "payment", "sagas"];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Sale {
    prefix: String,
    topics: Topics,
    codec: Codec,
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl Sale {
    fn spawn(&self, role: &str, generation: usize) -> support::Child {
        let args: Vec<&str> = if role == "sagas" {
            vec!["sagas"]
        } else {
            vec!["process", role]
        };
        support::spawn_streamcart(
            &args,
            &[
                ("STREAMCART_TOPIC_PREFIX", self.prefix.clone()),
                ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
                ("STREAMCART_PAYMENTS_DECLINED_CARDS", DECLINED_CARD.into()),
                ("STREAMCART_SNAPSHOT_EVERY_EVENTS", "5".into()),
                ("STREAMCART_CHECKPOINT_EVERY_EVENTS", "300".into()),
            ],
            &format!("{}{role}-{generation}", self.prefix),
        )
    }

    async fn send<C: CommandPayload>(
        &self,
        context: Context,
        aggregate_id: &str,
        payload: C,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let envelope = CommandEnvelope {
            command_id: id,
            aggregate_id: aggregate_id.to_owned(),
            expected_version: None,
            issued_at: now_ms(),
            correlation_id: aggregate_id.to_owned(),
            payload,
        };
        let bytes = self.codec.encode(&envelope).await.expect("encode command");
        let topic = self.topics.commands(context);
        let mut record = BaseRecord::to(&topic).key(aggregate_id).payload(&bytes);
        loop {
            match self.producer.send(record) {
                Ok(()) => return id,
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }

    fn events<E: EventPayload>(&self, context: Context) -> Vec<EventEnvelope<E>>
    where
        EventEnvelope<E>: WireRecord,
    {
        let rt = tokio::runtime::Handle::current();
        support::read_topic(&self.topics.events(context), 0, Duration::from_secs(60))
            .iter()
            .map(|m| {
                rt.block_on(
                    self.codec
                        .decode::<EventEnvelope<E>>(m.payload().expect("event value")),
                )
                .expect("decode event")
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flash_sale_with_crashes_keeps_every_invariant() {
    let prefix = format!("{}.", support::unique("flash"));
    let topics = Topics::with_prefix(prefix.clone());
    let mut names = vec![topics.command_results()];
    for ctx in Context::ALL {
        names.extend([
            topics.commands(ctx),
            topics.events(ctx),
            topics.snapshots(ctx),
        ]);
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    support::create_topics(&refs, PARTITIONS).await;
    let sale = Sale {
        prefix: prefix.clone(),
        codec: Codec::new(&support::registry_url(), topics.clone()).expect("codec"),
        topics,
        producer: rdkafka::ClientConfig::new()
            .set("bootstrap.servers", support::kafka_bootstrap())
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .expect("producer"),
    };
    let started = Instant::now();
    let mut generation = 0;
    let mut roles: HashMap<&str, support::Child> =
        ROLES.iter().map(|r| (*r, sale.spawn(r, 0))).collect();

    // The catalog and the stock.
    let skus: Vec<String> = std::iter::once(HOT.to_owned())
        .chain((1..=5).map(|i| format!("SKU-{i}")))
        .collect();
    for (i, sku) in skus.iter().enumerate() {
        let price = if i == 0 { 2_500 } else { 400 + 100 * i as i64 };
        let create = CreateProduct {
            sku: sku.clone(),
            name: format!("Product {sku}"),
            category: "sale".into(),
            price: Money::new(price, "EUR").expect("money"),
        };
        sale.send(Context::Catalog, sku, ProductCommand::CreateProduct(create))
            .await;
        let units = if i == 0 { HOT_UNITS } else { 1_000 };
        sale.send(
            Context::Inventory,
            sku,
            StockCommand::ReceiveStock(ReceiveStock { quantity: units }),
        )
        .await;
    }
    sale.producer.flush(Duration::from_secs(30)).expect("flush");
    // The order processor prices from its catalog copy: wait until every product is in it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let catalog = tokio::task::block_in_place(|| {
            sale.events::<streamcart_aggregates::catalog::ProductEvent>(Context::Catalog)
        });
        if catalog.len() >= skus.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "catalog never reached its events topic"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let customers: Vec<CustomerId> = (0..CUSTOMERS)
        .map(|_| CustomerId::new(Uuid::new_v4().to_string()).expect("customer"))
        .collect();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.random_range(500..2_000));
    let kill_one = |roles: &mut HashMap<&str, support::Child>,
                    generation: &mut usize,
                    rng: &mut rand::rngs::ThreadRng| {
        let role = *ROLES.choose(rng).expect("roles");
        if let Some(child) = roles.get_mut(role) {
            child.kill_hard();
        }
        *generation += 1;
        roles.insert(role, sale.spawn(role, *generation));
    };
    for n in 0..ORDERS {
        let order_id = OrderId::new(Uuid::new_v4().to_string()).expect("order id");
        let mut lines = vec![OrderLineRequest {
            sku: Sku::new(HOT).expect("sku"),
            quantity: rng.random_range(1..=2),
        }];
        if n % 3 == 0 {
            for _ in 0..rng.random_range(1..=2) {
                let other = skus[rng.random_range(1..skus.len())].clone();
                if lines.iter().all(|l| l.sku.as_str() != other) {
                    lines.push(OrderLineRequest {
                        sku: Sku::new(other).expect("sku"),
                        quantity: rng.random_range(1..=3),
                    });
                }
            }
        }
        let now = now_ms();
        // One in ten orders is already past its deadline when placed; one in ten has a deadline
        // that falls while it is in flight (some expire with a payment on its way, which must be
        // refunded); one in eight is declined.
        let (placed_at, deadline_at) = match n % 10 {
            7 => (now - 10_000, now - 5_000),
            5 => (now, now + rng.random_range(150..1_500)),
            _ => (now, now + 300_000),
        };
        let card_token = if n % 8 == 3 {
            DECLINED_CARD.to_owned()
        } else {
            format!("card-{}", n % 97)
        };
        let place = PlaceOrder {
            order_id: order_id.clone(),
            customer_id: customers[n % CUSTOMERS].clone(),
            lines,
            card_token,
            deadline_at,
            placed_at,
        };
        sale.send(
            Context::Orders,
            order_id.as_str(),
            OrderCommand::PlaceOrder(place),
        )
        .await;
        if Instant::now() >= next_kill {
            sale.producer.flush(Duration::from_secs(30)).expect("flush");
            kill_one(&mut roles, &mut generation, &mut rng);
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(rng.random_range(700..2_500));
        }
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sale.producer.flush(Duration::from_secs(30)).expect("flush");
    // Keep crashing roles while the saga works through the backlog.
    while kills < 10 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2_000))).await;
        kill_one(&mut roles, &mut generation, &mut rng);
        kills += 1;
    }

    let deadline = Instant::now() + Duration::from_secs(420);
    let (stock, orders, payments, ledger) = loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (stock, orders, payments) = tokio::task::block_in_place(|| {
            (
                sale.events::<StockEvent>(Context::Inventory),
                sale.events::<OrderEvent>(Context::Orders),
                sale.events::<PaymentEvent>(Context::Payments),
            )
        });
        let ledger = fold(&stock, &orders, &payments);
        if settled(&ledger, ORDERS) || Instant::now() > deadline {
            break (stock, orders, payments, ledger);
        }
    };
    for child in roles.values_mut() {
        child.terminate(Duration::from_secs(30));
    }

    let confirmed = ledger
        .final_status
        .values()
        .filter(|s| *s == "confirmed")
        .count();
    let expired = ledger
        .final_status
        .values()
        .filter(|s| *s == "expired")
        .count();
    eprintln!(
        "flash sale: orders {}, confirmed {confirmed}, cancelled {:?}, expired {expired}, late refunds {}, kills {kills}, duration {:?}",
        ledger.placed,
        ledger.cancel_reasons,
        ledger.refund_required.len(),
        started.elapsed()
    );

    assert_sale_invariants(&ledger, ORDERS, &skus, HOT, HOT_UNITS);
    check_versions(&stock, "stock");
    check_versions(&orders, "order");
    check_versions(&payments, "payment");
    assert!(
        confirmed > 0 && confirmed <= HOT_UNITS as usize,
        "some orders confirmed, never more than the hot units"
    );
    assert!(ledger.cancel_reasons.contains_key("stock_unavailable"));
    assert!(ledger.cancel_reasons.contains_key("payment_declined"));
    assert!(expired > 0, "some orders expired");
    assert!(kills >= 10);
}
