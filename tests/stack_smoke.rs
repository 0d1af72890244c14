//! Proves that every server of the local stack is real, through the same client libraries the
//! system uses: Kafka transactions through rdkafka, the registry through schema_registry_converter,
//! CQL through the scylla driver, Redis, Kafka Connect's REST API and PostgreSQL.

use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use streamcart_tests as support;

fn transactional_producer(txn_id: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("transactional.id", txn_id)
        .set("enable.idempotence", "true")
        .create()
        .expect("transactional producer")
}

fn read_all(topic: &str, isolation: &str, expected: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::kafka_bootstrap())
        .set("group.id", support::unique("smoke_reader"))
        .set("isolation.level", isolation)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Keep polling a little past the expected count so an extra (aborted) record would show up.
    let mut quiet_polls = 0;
    while std::time::Instant::now() < deadline && quiet_polls < 5 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let body = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
                seen.push(body.unwrap_or_default());
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None if seen.len() >= expected => quiet_polls += 1,
            None => {}
        }
    }
    seen
}

#[test]
fn kafka_transactions_commit_and_abort() {
    let topic = support::unique("smoke_txn");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(support::create_topics(&[&topic], 1));

    let producer = transactional_producer(&support::unique("smoke_txn_id"));
    let t = Duration::from_secs(30);
    producer.init_transactions(t).expect("init transactions");
    for (body, commit) in [("first", true), ("aborted", false), ("second", true)] {
        producer.begin_transaction().expect("begin");
        producer
            .send(BaseRecord::to(&topic).key("k").payload(body))
            .map_err(|(e, _)| e)
            .expect("send");
        producer.flush(t).expect("flush");
        if commit {
            producer.commit_transaction(t).expect("commit");
        } else {
            producer.abort_transaction(t).expect("abort");
        }
    }

    let committed = read_all(&topic, "read_committed", 2);
    assert_eq!(committed, vec!["first", "second"], "read_committed view");
    // The aborted record really reached the log: an uncommitted reader sees it.
    let uncommitted = read_all(&topic, "read_uncommitted", 3);
    assert_eq!(uncommitted, vec!["first", "aborted", "second"]);
}

#[tokio::test]
async fn registry_round_trips_avro_in_confluent_wire_format() {
    let topic = support::unique("smoke_avro");
    let schema = r#"{"type":"record","name":"Smoke","namespace":"streamcart.smoke",
        "fields":[{"name":"id","type":"string"},{"name":"amount_minor","type":"long"}]}"#;
    let settings = SrSettings::new(support::registry_url());
    let encoder = AvroEncoder::new(settings.clone());
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        topic.clone(),
        false,
        SuppliedSchema::new(
            Some("streamcart.smoke.Smoke".into()),
            SchemaType::Avro,
            schema.into(),
        ),
    );
    let bytes = encoder
        .encode(
            vec![
                ("id", Value::String("p-1".into())),
                ("amount_minor", Value::Long(1999)),
            ],
            strategy,
        )
        .await
        .expect("encode (registers the schema)");
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);

    // The registry has the subject (asked for by name: its listing stops at 1,000 subjects,
    // which a long-lived local stack passes) and serves the schema under that id.
    let versions: Vec<u32> = reqwest::get(format!(
        "{}/subjects/{topic}-value/versions",
        support::registry_url()
    ))
    .await
    .expect("subject versions")
    .json()
    .await
    .expect("versions json");
    assert_eq!(versions, [1], "one version registered under {topic}-value");
    let by_id: serde_json::Value =
        reqwest::get(format!("{}/schemas/ids/{id}", support::registry_url()))
            .await
            .expect("schema by id")
            .json()
            .await
            .expect("schema json");
    assert!(
        by_id["schema"]
            .as_str()
            .unwrap_or("")
            .contains("amount_minor")
    );

    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .expect("decode");
    assert_eq!(
        decoded.value,
        Value::Record(vec![
            ("id".into(), Value::String("p-1".into())),
            ("amount_minor".into(), Value::Long(1999)),
        ])
    );
}

#[tokio::test]
async fn cassandra_keyspace_table_write_and_read() {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(support::cassandra_node())
        .build()
        .await
        .expect("connect to Cassandra");
    let ks = support::unique("smoke");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .expect("create keyspace");
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.products (id text PRIMARY KEY, price_minor bigint)"),
            &[],
        )
        .await
        .expect("create table");
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.products (id, price_minor) VALUES (?, ?)"
        ))
        .await
        .expect("prepare");
    session
        .execute_unpaged(&insert, ("p-1", 1999_i64))
        .await
        .expect("insert");
    let (id, price) = session
        .query_unpaged(
            format!("SELECT id, price_minor FROM {ks}.products WHERE id = 'p-1'"),
            &[],
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .single_row::<(String, i64)>()
        .expect("one row");
    assert_eq!((id.as_str(), price), ("p-1", 1999));
    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await
        .expect("drop keyspace");
}

#[tokio::test]
async fn redis_set_and_get() {
    let client = redis::Client::open(support::redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let key = support::unique("smoke");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("v1")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .expect("SET");
    let got: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(got.as_deref(), Some("v1"));
}

#[tokio::test]
async fn connect_lists_jdbc_sink_and_avro_converter() {
    let plugins: Vec<serde_json::Value> = reqwest::get(format!(
        "{}/connector-plugins?connectorsOnly=false",
        support::connect_url()
    ))
    .await
    .expect("Connect REST API")
    .json()
    .await
    .expect("plugins json");
    let has = |class: &str, kind: &str| {
        plugins
            .iter()
            .any(|p| p["class"] == class && p["type"] == kind)
    };
    assert!(has("io.debezium.connector.jdbc.JdbcSinkConnector", "sink"));
    assert!(has(
        "io.apicurio.registry.utils.converter.AvroConverter",
        "converter"
    ));
}

#[tokio::test]
async fn postgres_answers_a_query() {
    let (client, connection) =
        tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let table = support::unique("smoke");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, total_minor bigint);
             INSERT INTO {table} VALUES ('o-1', 4200);"
        ))
        .await
        .expect("create and insert");
    let row = client
        .query_one(
            &format!("SELECT total_minor FROM {table} WHERE id = $1"),
            &[&"o-1"],
        )
        .await
        .expect("select");
    assert_eq!(row.get::<_, i64>(0), 4200);
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop");
}
