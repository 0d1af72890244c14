//! `streamcart demo`: seeds a small catalog and stock, places orders through the command topics
//! (as any Kafka client may), waits for the saga to settle them, checks each outcome against the
//! one it announced, and shows the orders as the Kafka Connect sink wrote them to PostgreSQL.
//!
//! Needs the system running (`streamcart run`) and the Connect pipelines registered
//! (`scripts/connect apply`; `scripts/run` does both). Skus and orders are unique per demo run, so
//! it can be repeated against the same topics. Any outcome other than the announced one, or an
//! order missing from PostgreSQL, makes it fail (non-zero exit).
//!
//! Every outcome is forced, not left to timing: payments use the simulator's test card tokens
//! (`tok_success`, `tok_decline`), and the order that runs out of stock is placed only after the
//! first ones settled, for more lamps than can possibly be left.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use streamcart_aggregates::catalog::{CreateProduct, ProductCommand};
use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_aggregates::orders::{
    CancelReason, OrderCommand, OrderEvent, OrderLineRequest, PlaceOrder,
};
use streamcart_aggregates::payments::{TEST_CARD_DECLINE, TEST_CARD_SUCCESS};
use streamcart_aggregates::values::{CustomerId, Money, OrderId, Sku};
use streamcart_kafka_runtime::client_log::QuietEofContext;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{
    CommandEnvelope, CommandPayload, CommandResult, EventEnvelope, Outcome,
};
use streamcart_schemas::topics::{Context, Topics};
use uuid::Uuid;

use crate::config::Config;

/// Longest wait for the orders of one phase to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(90);
/// Longest wait for the sink to bring every order to PostgreSQL in its final state.
const SINK_WAIT: Duration = Duration::from_secs(90);
/// Pause before placing again an order refused because the catalog copy lags behind.
const REPLACE_PAUSE: Duration = Duration::from_millis(500);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How an order ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Confirmed,
    Cancelled(CancelReason),
    Expired,
}

impl End {
    /// The `status` / `reason` pair of the order summary (and so of the PostgreSQL row).
    fn summary(self) -> (&'static str, Option<&'static str>) {
        match self {
            End::Confirmed => ("confirmed", None),
            End::Expired => ("expired", None),
            End::Cancelled(CancelReason::StockUnavailable) => {
                ("cancelled", Some("stock_unavailable"))
            }
            End::Cancelled(CancelReason::PaymentDeclined) => {
                ("cancelled", Some("payment_declined"))
            }
            End::Cancelled(CancelReason::CustomerRequested) => {
                ("cancelled", Some("customer_requested"))
            }
        }
    }

    fn describe(self) -> String {
        match self.summary() {
            (status, Some(reason)) => format!("{status} ({reason})"),
            (status, None) => status.to_owned(),
        }
    }
}

/// One order of the demo: what it is, what it must end as, what happened so far.
struct DemoOrder {
    what: &'static str,
    id: OrderId,
    place: PlaceOrder,
    expected: End,
    /// Command id of the latest PlaceOrder sent for it.
    command_id: Uuid,
    status: String,
    total_minor: i64,
    end: Option<End>,
}

struct Demo {
    topics: Topics,
    codec: Codec,
    producer: ThreadedProducer<DefaultProducerContext>,
    reader: BaseConsumer<QuietEofContext>,
    /// Seed commands awaiting their result: command id → what it was.
    seeds: BTreeMap<Uuid, String>,
    orders: Vec<DemoOrder>,
    /// Command results read for this demo's commands: none at all means no system is running.
    answered: usize,
}

impl Demo {
    async fn send<C: CommandPayload>(
        &self,
        context: Context,
        key: &str,
        payload: C,
    ) -> anyhow::Result<Uuid> {
        let id = Uuid::new_v4();
        let envelope = CommandEnvelope {
            command_id: id,
            aggregate_id: key.to_owned(),
            expected_version: None,
            issued_at: now_ms(),
            correlation_id: key.to_owned(),
            payload,
        };
        let bytes = self
            .codec
            .encode(&envelope)
            .await
            .context("encoding a command (is `streamcart run` up? it registers the schemas)")?;
        let topic = self.topics.commands(context);
        self.producer
            .send(BaseRecord::to(&topic).key(key).payload(&bytes))
            .map_err(|(e, _)| e)
            .with_context(|| format!("producing to {topic}"))?;
        Ok(id)
    }

    async fn place(&mut self, index: usize) -> anyhow::Result<()> {
        let (key, place) = {
            let o = &self.orders[index];
            (o.id.as_str().to_owned(), o.place.clone())
        };
        let id = self
            .send(Context::Orders, &key, OrderCommand::PlaceOrder(place))
            .await?;
        self.orders[index].command_id = id;
        self.orders[index].status = "placing".into();
        Ok(())
    }

    /// Reads order events and command results until the orders in `phase` all ended (and every
    /// seed command was answered), or `SETTLE_WAIT` passed.
    async fn settle(&mut self, phase: &[usize]) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_WAIT;
        let events = self.topics.events(Context::Orders);
        let mut replace: Vec<(usize, Instant)> = Vec::new();
        while Instant::now() < deadline {
            if self.seeds.is_empty() && phase.iter().all(|&i| self.orders[i].end.is_some()) {
                return Ok(());
            }
            let now = Instant::now();
            let due: Vec<usize> = replace
                .iter()
                .filter(|(_, at)| *at <= now)
                .map(|(i, _)| *i)
                .collect();
            replace.retain(|(_, at)| *at > now);
            for i in due {
                self.place(i).await?;
            }
            // Partition ends arrive as errors here; only records matter.
            let Some(Ok(m)) = self.reader.poll(Duration::from_millis(200)) else {
                continue;
            };
            let Some(bytes) = m.payload() else { continue };
            if m.topic() == events {
                let Ok(e) = self.codec.decode::<EventEnvelope<OrderEvent>>(bytes).await else {
                    continue;
                };
                if let Some(o) = self
                    .orders
                    .iter_mut()
                    .find(|o| o.id.as_str() == e.aggregate_id)
                {
                    observe(o, e.payload);
                }
                continue;
            }
            let Ok(result) = self.codec.decode::<CommandResult>(bytes).await else {
                continue;
            };
            if let Some(what) = self.seeds.remove(&result.command_id) {
                self.answered += 1;
                if let Outcome::Rejected { code, message } = &result.outcome {
                    anyhow::bail!("seeding {what} was refused: {code}: {message}");
                }
                continue;
            }
            let Some(index) = self
                .orders
                .iter()
                .position(|o| o.command_id == result.command_id)
            else {
                continue;
            };
            self.answered += 1;
            match result.outcome {
                Outcome::Accepted { .. } | Outcome::Duplicate { .. } => {}
                // The order processor prices from its copy of the catalog, which follows the
                // catalog events and may not have seen the demo's products yet.
                Outcome::Rejected { code, .. } if code == "order.unknown_sku" => {
                    self.orders[index].status = "waiting for the catalog copy".into();
                    replace.push((index, Instant::now() + REPLACE_PAUSE));
                }
                Outcome::Rejected { code, message } => {
                    anyhow::bail!(
                        "order {} was refused: {code}: {message}",
                        self.orders[index].id.as_str()
                    );
                }
            }
        }
        Ok(())
    }
}

fn observe(o: &mut DemoOrder, event: OrderEvent) {
    match event {
        OrderEvent::OrderPlaced(p) => {
            o.status = "reserving".into();
            o.total_minor = p.total.amount_minor;
        }
        OrderEvent::OrderAwaitingPayment(_) => o.status = "awaiting payment".into(),
        OrderEvent::OrderConfirmed(_) => o.end = Some(End::Confirmed),
        OrderEvent::OrderCancelled(c) => o.end = Some(End::Cancelled(c.reason)),
        OrderEvent::OrderExpired(_) => o.end = Some(End::Expired),
        _ => {}
    }
    if let Some(end) = o.end {
        o.status = end.describe();
    }
}

/// A reader of the order events and the command results, from their current ends.
fn reader_from_the_end(
    cfg: &Config,
    topics: &[String],
) -> anyhow::Result<BaseConsumer<QuietEofContext>> {
    let reader: BaseConsumer<QuietEofContext> = cfg
        .kafka
        .restore_consumer()
        .create_with_context(QuietEofContext)?;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let meta = reader
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        for t in meta.topics() {
            anyhow::ensure!(
                t.error().is_none() && !t.partitions().is_empty(),
                "topic {topic} is not there: start the system first (`streamcart run`)"
            );
            for p in t.partitions() {
                let (_, high) = reader
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .with_context(|| format!("end of {topic}/{}", p.id()))?;
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
            }
        }
    }
    reader.assign(&tpl)?;
    Ok(reader)
}

fn line(sku: &str, quantity: u32) -> anyhow::Result<OrderLineRequest> {
    Ok(OrderLineRequest {
        sku: Sku::new(sku)?,
        quantity,
    })
}

/// Runs the demo, prints what happened, and fails when anything differs from what it announced.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let topics = Topics::with_prefix(cfg.topic_prefix.clone());
    let codec = Codec::new(&cfg.registry_url, topics.clone())?
        .with_auto_register(cfg.auto_register_schemas);
    let producer: ThreadedProducer<_> = cfg.kafka.producer().create()?;
    // Start reading before anything is sent, so no answer can be missed.
    let reader = reader_from_the_end(
        &cfg,
        &[topics.events(Context::Orders), topics.command_results()],
    )?;
    let run_id = Uuid::new_v4().simple().to_string();
    let run_id = run_id.get(..6).unwrap_or("demo");
    let lamp = format!("DEMO-{run_id}-LAMP");
    let mug = format!("DEMO-{run_id}-MUG");
    let mut demo = Demo {
        topics,
        codec,
        producer,
        reader,
        seeds: BTreeMap::new(),
        orders: Vec::new(),
        answered: 0,
    };

    println!("seeding {lamp} (5 units, 24.99 EUR) and {mug} (100 units, 8.50 EUR)");
    for (sku, name, price, units) in [(&lamp, "Desk lamp", 2_499, 5), (&mug, "Mug", 850, 100)] {
        let create = CreateProduct {
            sku: sku.clone(),
            name: name.into(),
            category: "demo".into(),
            price: Money::new(price, "EUR")?,
        };
        let id = demo
            .send(Context::Catalog, sku, ProductCommand::CreateProduct(create))
            .await?;
        demo.seeds.insert(id, format!("product {sku}"));
        let receive = StockCommand::ReceiveStock(ReceiveStock { quantity: units });
        let id = demo.send(Context::Inventory, sku, receive).await?;
        demo.seeds.insert(id, format!("stock of {sku}"));
    }

    let now = now_ms();
    let plan: [(&'static str, Vec<OrderLineRequest>, &str, bool, End); 6] = [
        (
            "1 lamp + 2 mugs, card tok_success",
            vec![line(&lamp, 1)?, line(&mug, 2)?],
            TEST_CARD_SUCCESS,
            false,
            End::Confirmed,
        ),
        (
            "1 lamp, card tok_success",
            vec![line(&lamp, 1)?],
            TEST_CARD_SUCCESS,
            false,
            End::Confirmed,
        ),
        (
            "1 lamp + 2 mugs, card tok_decline",
            vec![line(&lamp, 1)?, line(&mug, 2)?],
            TEST_CARD_DECLINE,
            false,
            End::Cancelled(CancelReason::PaymentDeclined),
        ),
        (
            "1 mug, placed past its deadline",
            vec![line(&mug, 1)?],
            TEST_CARD_SUCCESS,
            true,
            End::Expired,
        ),
        (
            "4 lamps when at most 3 are left",
            vec![line(&lamp, 4)?],
            TEST_CARD_SUCCESS,
            false,
            End::Cancelled(CancelReason::StockUnavailable),
        ),
        (
            "2 lamps, card tok_success",
            vec![line(&lamp, 2)?],
            TEST_CARD_SUCCESS,
            false,
            End::Confirmed,
        ),
    ];
    for (n, (what, lines, card, past_deadline, expected)) in plan.into_iter().enumerate() {
        let id = OrderId::new(Uuid::new_v4().to_string())?;
        let (placed_at, deadline_at) = if past_deadline {
            (now - 2_000, now - 1_000)
        } else {
            (now, now + 120_000)
        };
        demo.orders.push(DemoOrder {
            what,
            place: PlaceOrder {
                order_id: id.clone(),
                customer_id: CustomerId::new(format!("demo-customer-{}", n % 3))?,
                lines,
                card_token: card.into(),
                deadline_at,
                placed_at,
            },
            id,
            expected,
            command_id: Uuid::nil(),
            status: "not placed".into(),
            total_minor: 0,
            end: None,
        });
    }

    // Phase 1 needs 3 of the 5 lamps, so its outcomes cannot depend on the order of events.
    let first: Vec<usize> = (0..4).collect();
    for &i in &first {
        demo.place(i).await?;
    }
    demo.producer.flush(Duration::from_secs(30))?;
    println!("placed {} orders; waiting for them to settle", first.len());
    demo.settle(&first).await?;
    // Phase 2: 2 lamps are sold and 1 is reserved or released, so 2 or 3 are left: the
    // 4-lamp order cannot be served, the 2-lamp one always can, whichever comes first.
    // Placed only once phase 1 settled, or the stock arithmetic would not hold.
    let second: Vec<usize> = (4..demo.orders.len()).collect();
    if first.iter().all(|&i| demo.orders[i].end.is_some()) {
        for &i in &second {
            demo.place(i).await?;
        }
        demo.producer.flush(Duration::from_secs(30))?;
        println!("placed {} more orders", second.len());
        demo.settle(&second).await?;
    }

    println!();
    println!(
        "{:<36}  {:<34} {:>9}  {:<30} {:<30}",
        "order", "what", "total", "expected", "outcome"
    );
    let mut wrong = Vec::new();
    for o in &demo.orders {
        let ok = o.end == Some(o.expected);
        println!(
            "{:<36}  {:<34} {:>5}.{:02} EUR  {:<30} {:<30} {}",
            o.id.as_str(),
            o.what,
            o.total_minor / 100,
            o.total_minor % 100,
            o.expected.describe(),
            o.status,
            if ok { "ok" } else { "DIFFERS" }
        );
        if !ok {
            wrong.push(format!(
                "{} ({}): expected {}, got {}",
                o.id.as_str(),
                o.what,
                o.expected.describe(),
                o.status
            ));
        }
    }
    anyhow::ensure!(
        demo.answered > 0,
        "no command was answered within {} s: is `streamcart run` running, with the same \
         topic prefix ({:?})?",
        SETTLE_WAIT.as_secs(),
        demo.topics.prefix()
    );
    anyhow::ensure!(
        wrong.is_empty(),
        "{} of {} orders did not end as announced (within {} s per phase):\n  {}",
        wrong.len(),
        demo.orders.len(),
        SETTLE_WAIT.as_secs(),
        wrong.join("\n  ")
    );
    println!();
    println!("every order ended as announced");
    show_postgres(&cfg, &demo.orders).await
}

/// Table name of the order summary sink, as `scripts/connect` derives it from the topic prefix.
fn orders_table(topic_prefix: &str, table_prefix: Option<String>) -> String {
    let prefix = table_prefix.filter(|p| !p.is_empty()).unwrap_or_else(|| {
        topic_prefix
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    });
    format!("{prefix}order_summary")
}

/// One row of the order summary table, as the JDBC sink wrote it.
struct SinkRow {
    order_id: String,
    status: String,
    reason: Option<String>,
    total_minor: i64,
    currency: String,
    version: i64,
}

impl SinkRow {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            order_id: row.try_get(0)?,
            status: row.try_get(1)?,
            reason: row.try_get(2)?,
            total_minor: row.try_get(3)?,
            currency: row.try_get(4)?,
            version: row.try_get(5)?,
        })
    }
}

/// Waits until PostgreSQL holds every demo order in its final state, then prints the rows.
async fn show_postgres(cfg: &Config, orders: &[DemoOrder]) -> anyhow::Result<()> {
    let url = &cfg.sink.postgres_url;
    let table = orders_table(&cfg.topic_prefix, cfg.sink.table_prefix.clone());
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .context("PostgreSQL did not answer within 10 s")?
    .context("connecting to PostgreSQL (sink.postgres_url, STREAMCART_POSTGRES_URL)")?;
    let connection = tokio::spawn(connection);
    let ids: Vec<String> = orders.iter().map(|o| o.id.as_str().to_owned()).collect();
    let want: BTreeMap<&str, (&str, Option<&str>)> = orders
        .iter()
        .map(|o| (o.id.as_str(), o.expected.summary()))
        .collect();
    println!();
    println!(
        "waiting for the {} orders in PostgreSQL table {table} (Kafka Connect JDBC sink)",
        ids.len()
    );
    let query = format!(
        "select order_id, status, reason, total_minor, currency, version from {table} \
         where order_id = any($1) order by placed_at, order_id"
    );
    let deadline = Instant::now() + SINK_WAIT;
    let rows = loop {
        let last = match client.query(&query, &[&ids]).await {
            Ok(rows) => {
                let rows = rows
                    .iter()
                    .map(SinkRow::from_row)
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("unexpected columns in {table}"))?;
                let settled = rows
                    .iter()
                    .filter(|r| {
                        want.get(r.order_id.as_str()).is_some_and(|(s, why)| {
                            *s == r.status && why.map(str::to_owned) == r.reason
                        })
                    })
                    .count();
                if settled == ids.len() {
                    break rows;
                }
                format!("{settled} of {} rows in their final state", ids.len())
            }
            // The sink creates the table with its first record.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                format!("table {table} does not exist yet")
            }
            Err(e) => return Err(e).with_context(|| format!("reading {table}")),
        };
        anyhow::ensure!(
            Instant::now() < deadline,
            "PostgreSQL does not hold the {} demo orders after {} s ({last}); \
             are the Connect pipelines registered? (`scripts/connect apply`, `scripts/connect status`)",
            ids.len(),
            SINK_WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "{:<36}  {:<10} {:<18} {:>9}      {:>7}",
        "order_id", "status", "reason", "total", "version"
    );
    for r in &rows {
        println!(
            "{:<36}  {:<10} {:<18} {:>5}.{:02} {}  {:>7}",
            r.order_id,
            r.status,
            r.reason.as_deref().unwrap_or("-"),
            r.total_minor / 100,
            r.total_minor % 100,
            r.currency,
            r.version
        );
    }
    println!(
        "{} of {} orders arrived in PostgreSQL as they ended",
        rows.len(),
        ids.len()
    );
    connection.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_name_follows_the_connect_script() {
        assert_eq!(orders_table("", None), "order_summary");
        assert_eq!(
            orders_table("Demo.Run-1.", None),
            "demo_run_1_order_summary"
        );
        assert_eq!(orders_table("a.", Some("b_".into())), "b_order_summary");
    }

    #[test]
    fn outcomes_match_the_summary_rows() {
        assert_eq!(End::Confirmed.summary(), ("confirmed", None));
        assert_eq!(
            End::Cancelled(CancelReason::PaymentDeclined).summary(),
            ("cancelled", Some("payment_declined"))
        );
        assert_eq!(End::Expired.describe(), "expired");
    }
}
