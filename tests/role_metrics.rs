//! A command processor's metrics and health port against the real stack: `streamcart process
//! stock` serves `/metrics`, `/health/live` and `/health/ready` on `metrics.listen`, and after
//! it handled a known number of commands its series say exactly that; so do a projector's
//! applying the events those commands produced.

use std::time::{Duration, Instant};

use streamcart_aggregates::inventory::{ReceiveStock, StockCommand};
use streamcart_kafka_runtime::partitioner::partition_for;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::{CommandEnvelope, CommandResult, Outcome};
use streamcart_schemas::topics::{Context, Topics};
use streamcart_tests as support;
use uuid::Uuid;

const PARTITIONS: i32 = 4;
const LOOP: &str = "inventory.stock.processor";
const COMMANDS: usize = 40;
const SKUS: usize = 8;

async fn get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// Waits until `/health/ready` answers 200; every 503 on the way must give its reason.
async fn wait_ready(base: &str, log_name: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    loop {
        match get(&format!("{base}/health/ready")).await {
            Some((200, _)) => return,
            Some((503, why)) => {
                assert!(why.starts_with("not ready: "), "{why}");
                last = Some(why);
            }
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "not ready within 90 s (last: {last:?}); log:\n{}",
            support::process::read_log(log_name)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scrapes `base` until `done` holds for the page, for at most 60 s; returns that page.
async fn scrape_until(base: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = get(&format!("{base}/metrics"))
            .await
            .expect("metrics answered");
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "series did not settle within 60 s; last scrape:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The value of the sample `series` (name and labels exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_reports_what_it_handled_its_lag_and_its_readiness() {
    let prefix = format!("{}.", support::unique("role_metrics"));
    let topics = Topics::with_prefix(prefix.clone());
    let ctx = Context::Inventory;
    let names = [
        topics.commands(ctx),
        topics.events(ctx),
        topics.snapshots(ctx),
        topics.command_results(),
        topics.dlq(LOOP),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    support::create_topics(&refs, PARTITIONS).await;
    let codec = Codec::new(&support::registry_url(), topics.clone()).expect("codec");

    let port = support::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut processor = support::spawn_streamcart(
        &["process", "stock"],
        &[
            ("STREAMCART_TOPIC_PREFIX", prefix.clone()),
            ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
            ("STREAMCART_METRICS__LISTEN", format!("127.0.0.1:{port}")),
            ("STREAMCART_KAFKA__STATISTICS_INTERVAL_MS", "500".into()),
        ],
        &format!("{prefix}processor"),
    );

    // Ready only once its loop has joined the group and restored its partitions.
    wait_ready(&base, &format!("{prefix}processor")).await;
    let live = get(&format!("{base}/health/live")).await;
    assert_eq!(live.map(|(s, _)| s), Some(200));

    let producer = support::kafka::producer();
    for i in 0..COMMANDS {
        let id = Uuid::new_v4();
        let sku = format!("sku-{}", i % SKUS);
        let envelope = CommandEnvelope {
            command_id: id,
            aggregate_id: sku.clone(),
            expected_version: None,
            issued_at: 0,
            correlation_id: id.to_string(),
            payload: StockCommand::ReceiveStock(ReceiveStock { quantity: 1 }),
        };
        let bytes = support::commands::encode(&codec, &envelope).await;
        support::kafka::produce(&producer, &topics.commands(ctx), &sku, &bytes);
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");

    let results = tokio::task::block_in_place(|| {
        support::read_topic(&topics.command_results(), COMMANDS, Duration::from_secs(60))
    });
    assert_eq!(results.len(), COMMANDS, "one result per command");
    for m in &results {
        let payload = rdkafka::Message::payload(m).expect("result value");
        let r: CommandResult = codec.decode(payload).await.expect("decode result");
        assert!(matches!(r.outcome, Outcome::Accepted { .. }), "{r:?}");
    }

    // Every command committed is counted; the lag of every partition falls to 0 once the
    // consumer's statistics report the committed positions.
    let group = format!("{prefix}{LOOP}");
    // A partition no command went to has no position, so no lag sample: expect only the others.
    let mut used: Vec<i32> = (0..SKUS)
        .filter_map(|i| partition_for(format!("sku-{i}").as_bytes(), PARTITIONS))
        .collect();
    used.sort_unstable();
    used.dedup();
    let lag_series: Vec<String> = used
        .iter()
        .map(|p| {
            format!(
                "streamcart_consumer_lag{{group=\"{group}\",partition=\"{p}\",topic=\"{}\"}}",
                topics.commands(ctx)
            )
        })
        .collect();
    let records = format!("streamcart_loop_records_total{{loop=\"{LOOP}\"}}");
    let text = scrape_until(&base, |text| {
        sample(text, &records) == Some(COMMANDS as f64)
            && lag_series.iter().all(|s| sample(text, s) == Some(0.0))
    })
    .await;

    let value = |series: String| sample(&text, &series).unwrap_or(-1.0);
    let batches = value(format!(
        "streamcart_loop_batches_committed_total{{loop=\"{LOOP}\"}}"
    ));
    assert!(
        (1.0..=COMMANDS as f64).contains(&batches),
        "batches: {batches}"
    );
    assert_eq!(
        value(format!(
            "streamcart_loop_batch_records_sum{{loop=\"{LOOP}\"}}"
        )),
        COMMANDS as f64
    );
    assert_eq!(
        value(format!(
            "streamcart_loop_commit_seconds_count{{loop=\"{LOOP}\"}}"
        )),
        batches,
        "one commit latency per committed batch"
    );
    assert!(
        value(format!(
            "streamcart_loop_restore_seconds_count{{loop=\"{LOOP}\"}}"
        )) >= 1.0
    );
    assert!(
        value(format!(
            "streamcart_loop_rebalances_total{{kind=\"assign\",loop=\"{LOOP}\"}}"
        )) >= 1.0
    );
    assert!(
        !text.contains(&format!("streamcart_loop_aborts_total{{loop=\"{LOOP}\"}}"))
            || value(format!("streamcart_loop_aborts_total{{loop=\"{LOOP}\"}}")) == 0.0,
        "no batch aborted"
    );
    assert!(
        !text.contains("streamcart_loop_dead_letters_total{"),
        "no record dead-lettered"
    );
    let ready = get(&format!("{base}/health/ready")).await;
    assert_eq!(ready.map(|(s, _)| s), Some(200));

    // A projector on the same events: it applies all 40 and reports how old each event was.
    let projector_port = support::free_port();
    let projector_base = format!("http://127.0.0.1:{projector_port}");
    let keyspace = prefix.trim_end_matches('.').to_owned();
    let mut projector = support::spawn_streamcart(
        &["project", "stock"],
        &[
            ("STREAMCART_TOPIC_PREFIX", prefix.clone()),
            ("STREAMCART_PARTITIONS", PARTITIONS.to_string()),
            ("STREAMCART_KEYSPACE", keyspace),
            ("STREAMCART_CASSANDRA_NODES", support::cassandra_node()),
            ("STREAMCART_REDIS_URL", support::redis_url()),
            (
                "STREAMCART_METRICS__LISTEN",
                format!("127.0.0.1:{projector_port}"),
            ),
            ("STREAMCART_KAFKA__STATISTICS_INTERVAL_MS", "500".into()),
        ],
        &format!("{prefix}projector"),
    );
    wait_ready(&projector_base, &format!("{prefix}projector")).await;
    const PROJECTOR: &str = "projector.stock";
    let applied = format!("streamcart_loop_records_total{{loop=\"{PROJECTOR}\"}}");
    let lag_count = format!("streamcart_projection_lag_seconds_count{{loop=\"{PROJECTOR}\"}}");
    let text = scrape_until(&projector_base, |text| {
        sample(text, &applied) == Some(COMMANDS as f64)
    })
    .await;
    assert_eq!(sample(&text, &lag_count), Some(COMMANDS as f64), "{text}");
    assert!(
        !text.contains(&format!("loop=\"{LOOP}\"")),
        "one registry per process: the projector has no processor series"
    );

    assert!(projector.terminate(Duration::from_secs(30)));
    assert!(processor.terminate(Duration::from_secs(30)));
}
