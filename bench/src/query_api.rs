//! `query-api`: cached product reads through the HTTP edge (`streamcart serve`), from a load
//! generator on loopback. Closed loop first, for the peak rate and its latencies; then an open
//! loop at half that rate, each request timed from when it was due, so a slow response cannot
//! hide the requests queued behind it (coordinated omission). The ceiling: `redis-benchmark`
//! GET of the same JSON, from the same Redis, with the same number of connections.
//!
//! Only `serve` runs: products are written into ScyllaDB and Redis directly, so no processor or
//! projector competes for the two cores the measurement runs on.
//!
//! A cold phase follows: 10,000 products (`BENCH_QUERY_COLD_PRODUCTS`) that are only in ScyllaDB,
//! each read once through the edge, so every request misses the cache and loads from the store.
//! Its ceiling is the store's own read of as many other products, just as cold, at the same
//! concurrency.

use std::io;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use streamcart_projectors::{CacheOptions, CassandraStore, Mutation, ProductCache, ProductRow};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::harness::{self, env_num, env_or};

/// Products the generator cycles through.
const SKUS: usize = 8;
/// Not counted at the start of each phase: connections open, caches and branch predictors warm.
const WARM_UP: Duration = Duration::from_secs(2);
/// The goal for a cached product's p99 at half the peak rate, from due time; the benchmark
/// fails when it is missed (`BENCH_QUERY_TARGET_P99_MS` moves it).
const TARGET_P99_MS: f64 = 2.0;

fn sku(i: usize) -> String {
    format!("QAPI-{i:03}")
}

/// Products of the cold phase: the edge reads `QCOLD-A-*`, the ceiling `QCOLD-B-*`, so that
/// neither warms the other's rows.
fn cold_sku(set: char, i: usize) -> String {
    format!("QCOLD-{set}-{i:05}")
}

fn product_row(sku: String, i: usize) -> ProductRow {
    ProductRow {
        sku,
        name: format!("Query bench product {i}"),
        category: "query-bench".into(),
        price_minor: 1_990 + i as i64,
        currency: "EUR".into(),
        discontinued: false,
        version: 1,
        updated_at: 1_700_000_000_000,
    }
}

/// One HTTP/1.1 keep-alive connection, reading responses framed by Content-Length.
#[derive(Debug)]
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and returns the status and body of the response.
    async fn call(&mut self, request: &[u8]) -> io::Result<(u16, &[u8])> {
        self.stream.write_all(request).await?;
        self.buf.clear();
        let (head, body_len) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break (end + 4, content_length(&self.buf[..end])?);
            }
            self.fill().await?;
        };
        while self.buf.len() < head + body_len {
            self.fill().await?;
        }
        let status = std::str::from_utf8(self.buf.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        Ok((status, &self.buf[head..head + body_len]))
    }

    /// Sends `request` on the connection in `conn`, opened first when there is none, giving up
    /// at `give_up`; for a 200, when it was sent and when the answer was in. A connection that
    /// failed is dropped, so the next call opens a fresh one.
    async fn timed_get(
        conn: &mut Option<Http>,
        addr: &str,
        request: &[u8],
        give_up: Instant,
    ) -> Result<(Instant, Instant), Miss> {
        if conn.is_none() {
            *conn = Some(Http::connect(addr).await.map_err(|_| Miss::NoConnection)?);
        }
        let Some(http) = conn.as_mut() else {
            return Err(Miss::NoConnection);
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout_at(give_up.into(), http.call(request))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
            .map(|(status, _)| status);
        match answer {
            Ok(200) => Ok((sent, Instant::now())),
            Ok(_) => Err(Miss::Refused),
            Err(_) => {
                *conn = None;
                Err(Miss::Broken)
            }
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Why a request of [`Http::timed_get`] got no 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// No connection could be opened.
    NoConnection,
    /// The edge answered with another status.
    Refused,
    /// The connection failed or the answer did not come in time.
    Broken,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Every answer of the edge carries Content-Length; anything else is refused rather than
/// guessed, so a framing change shows up as errors instead of skewed numbers.
fn content_length(head: &[u8]) -> io::Result<usize> {
    let text = std::str::from_utf8(head).map_err(|_| bad("header is not UTF-8"))?;
    text.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| bad("response without Content-Length"))
}

fn get_request(addr: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
}

/// What one phase of load measured.
#[derive(Debug, Default)]
struct Sample {
    /// Latencies of the counted requests, in nanoseconds.
    latencies: Vec<u64>,
    /// Requests answered inside the measured window.
    counted: u64,
    /// Non-200 answers and failed connections, over the whole phase.
    errors: u64,
    /// Length of the measured window.
    window: Duration,
    /// Open loop only: how late the generator itself sent, in nanoseconds.
    send_slop: Vec<u64>,
    /// Open loop only: write to answer, without time queued in the generator, in nanoseconds.
    service: Vec<u64>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.counted += other.counted;
        self.errors += other.errors;
        self.send_slop.extend(other.send_slop);
        self.service.extend(other.service);
    }

    fn rate(&self) -> f64 {
        self.counted as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Percentiles of the latencies, in milliseconds.
    fn percentiles(&self, ps: &[f64]) -> Vec<f64> {
        percentiles_ms(&self.latencies, ps)
    }
}

/// Percentiles of nanosecond samples, in milliseconds.
fn percentiles_ms(nanos: &[u64], ps: &[f64]) -> Vec<f64> {
    let mut ms: Vec<f64> = nanos.iter().map(|&n| n as f64 / 1e6).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ps.iter().map(|&p| harness::percentile(&ms, p)).collect()
}

/// Runs `phase` on a single-threaded runtime of its own, so the generator takes at most one
/// core away from the server it measures.
fn on_own_thread<F, Fut>(phase: F) -> anyhow::Result<Sample>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Sample>>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(phase())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("load generator panicked"))?
}

/// Sends every request once, spread over `connections` keep-alive connections, each timed from
/// send to answer; the window is the whole pass.
async fn once_each(
    addr: Arc<str>,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let give_up = start + Duration::from_secs(300);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (addr, requests) = (addr.clone(), requests.clone());
        tasks.spawn(async move {
            let mut sample = Sample::default();
            let mut conn: Option<Http> = None;
            for request in requests.iter().skip(c).step_by(connections) {
                match Http::timed_get(&mut conn, &addr, request, give_up).await {
                    Ok((sent, done)) => {
                        sample.counted += 1;
                        sample.latencies.push((done - sent).as_nanos() as u64);
                    }
                    Err(_) => sample.errors += 1,
                }
            }
            sample
        });
    }
    let mut total = Sample::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done?);
    }
    total.window = start.elapsed();
    Ok(total)
}

/// The cold ceiling: the store reads each product once, over `connections` concurrent readers
/// (as many as the edge's pass has connections), each timed from call to row.
async fn store_pass(
    store: &CassandraStore,
    skus: Vec<String>,
    connections: usize,
) -> anyhow::Result<Sample> {
    let skus = Arc::new(skus);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (store, skus) = (store.clone(), skus.clone());
        tasks.spawn(async move {
            let mut sample = Sample::default();
            for sku in skus.iter().skip(c).step_by(connections) {
                let sent = Instant::now();
                match store.product(sku).await {
                    Ok(Some(_)) => {
                        sample.counted += 1;
                        sample.latencies.push(sent.elapsed().as_nanos() as u64);
                    }
                    _ => sample.errors += 1,
                }
            }
            sample
        });
    }
    let mut total = Sample::default();
    while let Some(done) = tasks.join_next().await {
        total.merge(done?);
    }
    total.window = start.elapsed();
    anyhow::ensure!(
        total.errors == 0,
        "cold ceiling: {} store reads failed",
        total.errors
    );
    Ok(total)
}

/// Each connection sends its next request as soon as the previous answer is in.
async fn closed_loop(
    addr: Arc<str>,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let counted_from = start + WARM_UP;
    let end = counted_from + Duration::from_secs(seconds);
    let give_up = end + Duration::from_secs(5);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (addr, requests) = (addr.clone(), requests.clone());
        tasks.spawn(async move {
            let mut sample = Sample::default();
            let mut conn: Option<Http> = None;
            let mut n = c;
            while Instant::now() < end {
                let request = &requests[n % requests.len()];
                match Http::timed_get(&mut conn, &addr, request, give_up).await {
                    Ok((sent, done)) => {
                        n += 1;
                        if done >= counted_from && done < end {
                            sample.counted += 1;
                            sample.latencies.push((done - sent).as_nanos() as u64);
                        }
                    }
                    Err(Miss::NoConnection) => {
                        sample.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(Miss::Refused | Miss::Broken) => {
                        n += 1;
                        sample.errors += 1;
                    }
                }
            }
            sample
        });
    }
    let mut total = Sample {
        window: Duration::from_secs(seconds),
        ..Sample::default()
    };
    while let Some(sample) = tasks.join_next().await {
        total.merge(sample?);
    }
    Ok(total)
}

/// Requests are due at a fixed rate, dealt round-robin to the connections; each is timed from
/// when it was due, so time spent queued behind a slow answer counts.
async fn open_loop(
    addr: Arc<str>,
    requests: Arc<Vec<Vec<u8>>>,
    connections: usize,
    seconds: u64,
    rate: f64,
) -> anyhow::Result<Sample> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Http::connect(&addr).await?);
    }
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let total = ((WARM_UP.as_secs_f64() + seconds as f64) * rate) as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let counted_from = start + WARM_UP;
    let end = counted_from + Duration::from_secs(seconds);
    let give_up = end + Duration::from_secs(5);

    let (senders, receivers): (Vec<_>, Vec<_>) = (0..connections)
        .map(|_| mpsc::unbounded_channel::<Instant>())
        .unzip();
    // Tokio's timers tick in whole milliseconds, far too coarse for a schedule with ~100 µs
    // between requests, so the schedule is kept by a plain thread sleeping with nanosleep.
    let dispatcher = std::thread::spawn(move || {
        let mut slop = Vec::with_capacity(total);
        let mut i = 0;
        while i < total {
            let due = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
                continue;
            }
            if due >= counted_from {
                slop.push((now - due).as_nanos() as u64);
            }
            if senders[i % senders.len()].send(due).is_err() {
                break;
            }
            i += 1;
        }
        slop
    });

    let mut tasks = tokio::task::JoinSet::new();
    for (c, (mut http, mut due_times)) in conns.into_iter().zip(receivers).enumerate() {
        let (addr, requests) = (addr.clone(), requests.clone());
        tasks.spawn(async move {
            let mut sample = Sample::default();
            let mut n = c;
            loop {
                // The dispatcher hangs up once the last request is due.
                let Some(due) = due_times.recv().await else {
                    break;
                };
                let sent = Instant::now();
                let answer = tokio::time::timeout_at(
                    give_up.into(),
                    http.call(&requests[n % requests.len()]),
                )
                .await;
                n += 1;
                let done = Instant::now();
                match answer {
                    Ok(Ok((200, _))) => {
                        if due >= counted_from {
                            sample.counted += 1;
                            sample.latencies.push((done - due).as_nanos() as u64);
                            sample.service.push((done - sent).as_nanos() as u64);
                        }
                    }
                    Ok(Ok(_)) => sample.errors += 1,
                    Ok(Err(_)) => {
                        sample.errors += 1;
                        match Http::connect(&addr).await {
                            Ok(fresh) => http = fresh,
                            Err(_) => break,
                        }
                    }
                    Err(_) => {
                        sample.errors += 1;
                        break;
                    }
                }
            }
            // Whatever was still due when the phase gave up never got an answer.
            due_times.close();
            while due_times.try_recv().is_ok() {
                sample.errors += 1;
            }
            sample
        });
    }
    let mut total_sample = Sample {
        window: Duration::from_secs(seconds),
        ..Sample::default()
    };
    while let Some(sample) = tasks.join_next().await {
        total_sample.merge(sample?);
    }
    total_sample.send_slop = dispatcher
        .join()
        .map_err(|_| anyhow::anyhow!("dispatcher panicked"))?;
    Ok(total_sample)
}

/// What `redis-benchmark --csv` reported for one command.
#[derive(Debug, Clone, Copy)]
struct RedisBench {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn redis_benchmark(
    host: &str,
    port: u16,
    connections: usize,
    requests: usize,
    command: &[&str],
) -> anyhow::Result<RedisBench> {
    let mut cmd = Command::new(env_or("BENCH_REDIS_BENCHMARK", "redis-benchmark"));
    cmd.args(["-h", host, "-p", &port.to_string()])
        .args(["-c", &connections.to_string(), "-n", &requests.to_string()])
        .arg("--csv")
        .args(command);
    let out = harness::run_tool(
        cmd,
        "redis-benchmark (Debian package redis-tools)",
        harness::tool_limit(requests),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let fields = |line: &str| -> Vec<String> {
        line.split(',')
            .map(|f| f.trim().trim_matches('"').to_owned())
            .collect()
    };
    let (Some(header), Some(row)) = (lines.next(), lines.next()) else {
        anyhow::bail!(
            "no CSV from redis-benchmark: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (header, row) = (fields(header), fields(row));
    let value = |name: &str| -> anyhow::Result<f64> {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in redis-benchmark CSV: {text}"))
    };
    Ok(RedisBench {
        rps: value("rps")?,
        p50_ms: value("p50_latency_ms")?,
        p99_ms: value("p99_latency_ms")?,
    })
}

/// Host and port of a `redis://[user:pass@]host[:port][/db]` URL.
fn redis_address(url: &str) -> (String, u16) {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    match rest.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(6379)),
        None => (rest.to_owned(), 6379),
    }
}

/// Sends one command in RESP and returns the first line of the reply.
async fn redis_command(host: &str, port: u16, args: &[&[u8]]) -> anyhow::Result<String> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    let mut stream = TcpStream::connect((host, port)).await?;
    stream.write_all(&out).await?;
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n") {
        if stream.read_buf(&mut reply).await? == 0 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&reply).trim().to_owned())
}

/// The `streamcart_api_<name>` counter from a `/metrics` page.
fn counter(metrics: &str, name: &str) -> u64 {
    let full = format!("streamcart_api_{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&full))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn fetch(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut http = Http::connect(addr).await?;
    let (status, body) = http.call(&get_request(addr, path)).await?;
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

/// One round's results.
#[derive(Debug, Clone, Copy)]
struct Round {
    peak: f64,
    closed_p50: f64,
    closed_p99: f64,
    open_rate: f64,
    open_p50: f64,
    open_p99: f64,
    open_p999: f64,
    service_p50: f64,
    service_p99: f64,
    service_p999: f64,
    slop_p99: f64,
    errors: u64,
    redis_get: RedisBench,
    redis_hmget: RedisBench,
}

/// Runs the benchmark and prints its table.
pub async fn run() -> anyhow::Result<()> {
    let connections: usize = env_num("BENCH_QUERY_CONNECTIONS", 32).max(1);
    let seconds: u64 = env_num("BENCH_QUERY_SECONDS", 10).max(1);
    let rounds: usize = env_num("BENCH_ROUNDS", 3).max(1);
    let redis_requests: usize = env_num("BENCH_QUERY_REDIS_REQUESTS", 200_000);
    let target_p99_ms: f64 = env_num("BENCH_QUERY_TARGET_P99_MS", TARGET_P99_MS);
    let prefix = harness::prefix("qapi");
    let keyspace = prefix.trim_end_matches('.').to_owned();
    let nodes = streamcart_tests::cassandra_node();
    let redis = streamcart_tests::redis_url();
    let (redis_host, redis_port) = redis_address(&redis);

    let store = CassandraStore::connect(&nodes, &keyspace).await?;
    let cache = ProductCache::connect(&redis, CacheOptions::for_topic_prefix(&prefix)).await?;
    let cold: usize = env_num("BENCH_QUERY_COLD_PRODUCTS", 10_000).max(1);
    let rows: Vec<ProductRow> = (0..SKUS).map(|i| product_row(sku(i), i)).collect();
    let mutations: Vec<Mutation> = rows.iter().cloned().map(Mutation::UpsertProduct).collect();
    store.apply(&mutations).await?;
    for row in &rows {
        cache.put_if_newer(row).await?;
    }
    // The cold products go to the store only.
    for set in ['A', 'B'] {
        let all: Vec<Mutation> = (0..cold)
            .map(|i| Mutation::UpsertProduct(product_row(cold_sku(set, i), i)))
            .collect();
        for chunk in all.chunks(500) {
            store.apply(chunk).await?;
        }
    }

    let result = measure(
        &prefix,
        &keyspace,
        &nodes,
        &redis,
        (&redis_host, redis_port),
        connections,
        seconds,
        rounds,
        redis_requests,
        target_p99_ms,
        cold,
    )
    .await;

    // Leave nothing behind: the keyspace, the cache entries and the ceiling's key.
    let _ = store
        .session()
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await;
    let mut keys: Vec<String> = (0..SKUS).map(|i| cache.key(&sku(i))).collect();
    keys.extend((0..cold).map(|i| cache.key(&cold_sku('A', i))));
    for chunk in keys.chunks(500) {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(chunk.iter().map(|k| k.as_bytes()));
        let _ = redis_command(&redis_host, redis_port, &args).await;
    }
    let _ = redis_command(
        &redis_host,
        redis_port,
        &[b"DEL", format!("{prefix}ceiling").as_bytes()],
    )
    .await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    prefix: &str,
    keyspace: &str,
    nodes: &str,
    redis: &str,
    (redis_host, redis_port): (&str, u16),
    connections: usize,
    seconds: u64,
    rounds: usize,
    redis_requests: usize,
    target_p99_ms: f64,
    cold: usize,
) -> anyhow::Result<()> {
    let addr = format!("127.0.0.1:{}", harness::free_port());
    let _serve = harness::spawn_role(
        &["serve"],
        prefix,
        &[
            ("STREAMCART_KEYSPACE", keyspace),
            ("STREAMCART_CASSANDRA_NODES", nodes),
            ("STREAMCART_REDIS_URL", redis),
            ("STREAMCART_API_LISTEN", &addr),
            (
                "STREAMCART_JWT_HS256_SECRET",
                "query-bench-secret-of-at-least-32-bytes",
            ),
        ],
    )?;

    // Ready once a product is served from the cache: the edge connects to Redis in the
    // background, and until then its reads go to ScyllaDB, which is not what is measured here.
    let probe = format!("/v1/products/{}", sku(0));
    let limit = Duration::from_secs(120);
    let mut watch = harness::Watch::new(
        format!("streamcart serve on {addr} serving a cached product"),
        limit,
        limit,
    );
    let json = loop {
        // An edge that accepts but never answers must not hold the wait past its limit.
        let answer = |path: String| {
            let addr = addr.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(5), fetch(&addr, &path))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s")))
            }
        };
        if let Ok((200, body)) = answer(probe.clone()).await
            && let Ok((200, metrics)) = answer("/metrics".to_owned()).await
            && counter(&metrics, "product_cache_hits") > 0
        {
            break body;
        }
        if let Err(stalled) = watch.check(0, 1) {
            return Err(harness::explain(stalled).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The ceiling reads a plain string holding exactly what the edge serves for a product.
    let ceiling_key = format!("{prefix}ceiling");
    let set = redis_command(
        redis_host,
        redis_port,
        &[b"SET", ceiling_key.as_bytes(), json.as_bytes()],
    )
    .await?;
    anyhow::ensure!(set == "+OK", "SET of the ceiling key answered {set:?}");
    let cached_key = format!("{prefix}streamcart:product:{}", sku(0));

    let addr: Arc<str> = addr.into();
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..SKUS)
            .map(|i| get_request(&addr, &format!("/v1/products/{}", sku(i))))
            .collect(),
    );
    let before = fetch(&addr, "/metrics").await?.1;
    let mut results = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let closed = {
            let (addr, requests) = (addr.clone(), requests.clone());
            tokio::task::spawn_blocking(move || {
                on_own_thread(move || closed_loop(addr, requests, connections, seconds))
            })
            .await??
        };
        let peak = closed.rate();
        let closed_p = closed.percentiles(&[50.0, 99.0]);
        let open = {
            let (addr, requests) = (addr.clone(), requests.clone());
            tokio::task::spawn_blocking(move || {
                on_own_thread(move || open_loop(addr, requests, connections, seconds, peak / 2.0))
            })
            .await??
        };
        let open_p = open.percentiles(&[50.0, 99.0, 99.9]);
        let service_p = percentiles_ms(&open.service, &[50.0, 99.0, 99.9]);
        let (host, key, cached) = (
            redis_host.to_owned(),
            ceiling_key.clone(),
            cached_key.clone(),
        );
        let (redis_get, redis_hmget) = tokio::task::spawn_blocking(move || {
            anyhow::Ok((
                redis_benchmark(
                    &host,
                    redis_port,
                    connections,
                    redis_requests,
                    &["GET", &key],
                )?,
                redis_benchmark(
                    &host,
                    redis_port,
                    connections,
                    redis_requests,
                    &["HMGET", &cached, "row", "missing"],
                )?,
            ))
        })
        .await??;
        let r = Round {
            peak,
            closed_p50: closed_p[0],
            closed_p99: closed_p[1],
            open_rate: open.rate(),
            open_p50: open_p[0],
            open_p99: open_p[1],
            open_p999: open_p[2],
            service_p50: service_p[0],
            service_p99: service_p[1],
            service_p999: service_p[2],
            slop_p99: percentiles_ms(&open.send_slop, &[99.0])[0],
            errors: closed.errors + open.errors,
            redis_get,
            redis_hmget,
        };
        eprintln!(
            "round {round}/{rounds}: peak {:.0} GETs/s (p99 {:.2} ms), half peak p99 {:.2} ms, \
             redis-benchmark GET {:.0}/s, errors {}",
            r.peak, r.closed_p99, r.open_p99, r.redis_get.rps, r.errors
        );
        results.push(r);
    }
    let after = fetch(&addr, "/metrics").await?.1;
    let delta = |name| counter(&after, name).saturating_sub(counter(&before, name));

    // Cold: the ceiling first, then the edge, each on its own products.
    let store = CassandraStore::connect(nodes, keyspace).await?;
    let ceiling_skus: Vec<String> = (0..cold).map(|i| cold_sku('B', i)).collect();
    let cold_ceiling = store_pass(&store, ceiling_skus, connections).await?;
    let cold_requests: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..cold)
            .map(|i| get_request(&addr, &format!("/v1/products/{}", cold_sku('A', i))))
            .collect(),
    );
    let cold_before = fetch(&addr, "/metrics").await?.1;
    let cold_api = {
        let (addr, requests) = (addr.clone(), cold_requests.clone());
        tokio::task::spawn_blocking(move || {
            on_own_thread(move || once_each(addr, requests, connections))
        })
        .await??
    };
    let cold_after = fetch(&addr, "/metrics").await?.1;
    let cold_misses = counter(&cold_after, "product_cache_misses")
        .saturating_sub(counter(&cold_before, "product_cache_misses"));
    let (hits, misses, loads) = (
        delta("product_cache_hits"),
        delta("product_cache_misses"),
        delta("product_store_loads"),
    );

    let med = |f: fn(&Round) -> f64| harness::median(results.iter().map(f).collect());
    let peak = med(|r| r.peak);
    let open_p99 = med(|r| r.open_p99);
    let redis_get = med(|r| r.redis_get.rps);
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let met = open_p99 <= target_p99_ms;
    println!();
    println!(
        "query-api (GET /v1/products/{{sku}} over {SKUS} cached products; {connections} \
         connections; {seconds} s per phase after {} s warm-up; {rounds} round(s), medians)",
        WARM_UP.as_secs()
    );
    println!("| measure | rate | p50 | p99 | p99.9 |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| API, closed loop (peak) | {peak:.0} GETs/s | {:.3} ms | {:.3} ms | |",
        med(|r| r.closed_p50),
        med(|r| r.closed_p99)
    );
    println!(
        "| API, open loop at half peak (from due time) | {:.0} GETs/s | {:.3} ms | {open_p99:.3} ms | {:.3} ms |",
        med(|r| r.open_rate),
        med(|r| r.open_p50),
        med(|r| r.open_p999)
    );
    println!(
        "| API, open loop at half peak (from send: service time only) | | {:.3} ms | {:.3} ms | {:.3} ms |",
        med(|r| r.service_p50),
        med(|r| r.service_p99),
        med(|r| r.service_p999)
    );
    println!(
        "| ceiling: redis-benchmark GET, same JSON ({} B) | {redis_get:.0} GETs/s | {:.3} ms | {:.3} ms | |",
        json.len(),
        med(|r| r.redis_get.p50_ms),
        med(|r| r.redis_get.p99_ms)
    );
    println!(
        "| redis-benchmark HMGET of the cached entry (the edge's own call) | {:.0}/s | {:.3} ms | {:.3} ms | |",
        med(|r| r.redis_hmget.rps),
        med(|r| r.redis_hmget.p50_ms),
        med(|r| r.redis_hmget.p99_ms)
    );
    println!(
        "errors (non-200 or failed): {errors}; edge counters during the run: {hits} cache hits, \
         {misses} misses, {loads} ScyllaDB loads; generator send slop p99 {:.3} ms",
        med(|r| r.slop_p99)
    );
    let cold_p = cold_api.percentiles(&[50.0, 99.0, 99.9]);
    let ceiling_p = cold_ceiling.percentiles(&[50.0, 99.0, 99.9]);
    println!();
    println!(
        "cold cache ({cold} products only in ScyllaDB, each read once; {connections} connections)"
    );
    println!("| measure | rate | p50 | p99 | p99.9 |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| API, cache miss then store load | {:.0} GETs/s | {:.3} ms | {:.3} ms | {:.3} ms |",
        cold_api.rate(),
        cold_p[0],
        cold_p[1],
        cold_p[2]
    );
    println!(
        "| ceiling: the store's read of {cold} other products | {:.0} reads/s | {:.3} ms | {:.3} ms | {:.3} ms |",
        cold_ceiling.rate(),
        ceiling_p[0],
        ceiling_p[1],
        ceiling_p[2]
    );
    println!(
        "cold: {} answered, {} errors, {cold_misses} cache misses counted by the edge; cold ratio: {:.3}",
        cold_api.counted,
        cold_api.errors,
        cold_api.rate() / cold_ceiling.rate().max(1e-9)
    );
    println!(
        "target p99 <= {target_p99_ms} ms at half peak: {} ({open_p99:.3} ms)",
        if met { "met" } else { "NOT met" }
    );
    println!("api peak: {peak:.0} GETs/s");
    println!("ceiling: {redis_get:.0} GETs/s");
    println!("ratio: {:.3}", peak / redis_get.max(1e-9));
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    anyhow::ensure!(
        cold_api.errors == 0 && cold_api.counted == cold as u64,
        "cold phase: {} of {cold} answered 200, {} failed",
        cold_api.counted,
        cold_api.errors
    );
    anyhow::ensure!(
        cold_misses >= cold as u64,
        "cold phase: the edge counted {cold_misses} cache misses for {cold} never-cached products"
    );
    anyhow::ensure!(
        met,
        "p99 at half peak was {open_p99:.3} ms, over the {target_p99_ms} ms target"
    );
    Ok(())
}
