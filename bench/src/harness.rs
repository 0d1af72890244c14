//! What every benchmark shares: the stack's addresses, spawning streamcart roles, topics,
//! Kafka's producer performance tool as the ceiling, and percentiles.
//!
//! And the watchdog that makes every benchmark end by itself: [`bounded`] puts a time limit on a
//! whole run, [`Watch`] fails a wait that stops making progress, every external tool runs under
//! a time limit ([`run_tool`]) and [`send`] gives up on a producer queue that does not drain.
//! A run that stalls ends with an error saying what it waited for, which spawned role is no
//! longer running, and which consumer group of the run lags on which topic, by how much.

use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use streamcart_aggregates::inventory::StockCommand;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::CommandPayload;
pub use streamcart_tests::clock::now_ms;
pub use streamcart_tests::free_port;
pub use streamcart_tests::stack::{env_or, kafka_bootstrap, registry_url};

/// Partitions of every benchmark topic.
pub const PARTITIONS: i32 = 4;

/// A numeric environment variable or its default.
pub fn env_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh topic prefix for one run; its consumer groups are covered by [`stall_report`].
pub fn prefix(name: &str) -> String {
    let prefix = format!(
        "bench_{name}_{}.",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    lock(&PREFIXES).push(prefix.clone());
    prefix
}

/// Creates topics with [`PARTITIONS`] partitions.
pub async fn create_topics(names: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics(topics.iter(), &opts).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

/// An idempotent producer placing keys with murmur2, like every streamcart client.
pub fn producer() -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Encodes `payload` for `aggregate_id` in a fresh command envelope (as the tests build them);
/// returns the command id and the record value.
pub async fn encode_command<C: CommandPayload>(
    codec: &Codec,
    aggregate_id: &str,
    payload: C,
) -> anyhow::Result<(uuid::Uuid, Vec<u8>)> {
    let envelope = streamcart_tests::commands::envelope(aggregate_id, payload);
    Ok((envelope.command_id, codec.encode(&envelope).await?))
}

/// A `ReceiveStock` of `quantity` units for `sku`, encoded: the command id and record value.
pub async fn receive_stock(
    codec: &Codec,
    sku: &str,
    quantity: u32,
) -> anyhow::Result<(uuid::Uuid, Vec<u8>)> {
    let payload: StockCommand = streamcart_tests::commands::receive_stock(quantity);
    encode_command(codec, sku, payload).await
}

/// How long [`send`] waits for room in a full local queue before it calls Kafka stalled.
pub const SEND_PATIENCE: Duration = Duration::from_secs(60);

/// Sends one record, waiting while the local queue is full, at most [`SEND_PATIENCE`].
pub fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    key: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    let since = Instant::now();
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((e, back)) => {
                anyhow::ensure!(
                    since.elapsed() < SEND_PATIENCE,
                    "producing to {topic}: the local queue did not drain for {} s ({e}): \
                     Kafka is not taking records",
                    SEND_PATIENCE.as_secs()
                );
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value here stays consistent across a panic: single pushes and removes.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Prefixes handed out by [`prefix`]: the consumer groups a stall report looks at.
static PREFIXES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// A spawned role's command line and process, shared with its [`Role`].
type RoleEntry = (String, Arc<Mutex<Child>>);
/// Roles alive in this run, by id, for stall reports.
static ROLES: Mutex<BTreeMap<u64, RoleEntry>> = Mutex::new(BTreeMap::new());
static NEXT_ROLE: AtomicU64 = AtomicU64::new(0);

/// A streamcart role running beside the benchmark, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Role {
    id: u64,
    child: Arc<Mutex<Child>>,
}

impl Drop for Role {
    fn drop(&mut self) {
        lock(&ROLES).remove(&self.id);
        let mut child = lock(&self.child);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Role {
    /// The role's process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }
}

/// Roles of this run that are no longer running, with how they ended.
pub fn exited_roles() -> Vec<String> {
    lock(&ROLES)
        .values()
        .filter_map(|(label, child)| {
            let status = lock(child).try_wait().ok().flatten()?;
            Some(format!("role `{label}` exited ({})", describe_exit(status)))
        })
        .collect()
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Starts `streamcart <args>` (the binary next to this one) under `prefix`.
pub fn spawn_role(args: &[&str], prefix: &str, extra: &[(&str, &str)]) -> anyhow::Result<Role> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("streamcart");
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .env("STREAMCART_TOPIC_PREFIX", prefix)
        .env("STREAMCART_PARTITIONS", PARTITIONS.to_string())
        .env("STREAMCART_KAFKA_BOOTSTRAP", kafka_bootstrap())
        .env("STREAMCART_REGISTRY_URL", registry_url())
        .env("RUST_LOG", env_or("BENCH_ROLE_LOG", "warn"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let id = NEXT_ROLE.fetch_add(1, Ordering::Relaxed);
    let child = Arc::new(Mutex::new(child));
    lock(&ROLES).insert(id, (args.join(" "), child.clone()));
    Ok(Role { id, child })
}

/// Runs an external tool to completion, killing it if it takes longer than `limit`; its
/// output is kept in temporary files, so a chatty tool cannot block on a full pipe.
pub fn run_tool(mut cmd: Command, what: &str, limit: Duration) -> anyhow::Result<Output> {
    let dir = std::env::temp_dir();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (out_path, err_path) = (
        dir.join(format!("streamcart-bench-{tag}.out")),
        dir.join(format!("streamcart-bench-{tag}.err")),
    );
    let out_file = std::fs::File::create(&out_path).context("creating a temporary file")?;
    let err_file = std::fs::File::create(&err_path).context("creating a temporary file")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr = std::fs::read(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let Some(status) = status else {
        anyhow::bail!(
            "{what} did not finish within {} s and was killed; its last output: {}",
            limit.as_secs(),
            tail(&stdout, &stderr)
        );
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{} {}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A wait for a count to reach its target that fails when it takes longer than its limit, or
/// when the count stops moving for `stall_after` (a stalled role is found in minutes, not at
/// the end of a generous limit), or when a spawned role exited.
#[derive(Debug)]
pub struct Watch {
    what: String,
    started: Instant,
    limit: Duration,
    stall_after: Duration,
    done: usize,
    moved: Instant,
    looked: Option<Instant>,
}

/// A wait that [`Watch`] gave up on; [`explain`] adds what the run's roles and groups were doing.
#[derive(Debug)]
pub struct Stalled(pub String);

impl Watch {
    /// A watch on `what`, started now.
    pub fn new(what: impl Into<String>, limit: Duration, stall_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            what: what.into(),
            started: now,
            limit,
            stall_after,
            done: 0,
            moved: now,
            looked: None,
        }
    }

    /// `Ok(true)` once `done` reached `target`, `Ok(false)` while it may still get there.
    pub fn check(&mut self, done: usize, target: usize) -> Result<bool, Stalled> {
        if done >= target {
            return Ok(true);
        }
        let now = Instant::now();
        if done != self.done {
            self.done = done;
            self.moved = now;
        }
        // Callers may check once per record; the limits and the roles need a look ten times a
        // second at most.
        if self
            .looked
            .is_some_and(|at| now.duration_since(at) < Duration::from_millis(100))
        {
            return Ok(false);
        }
        self.looked = Some(now);
        let status = || {
            format!(
                "{}: {done} of {target} after {:.0} s",
                self.what,
                now.duration_since(self.started).as_secs_f64()
            )
        };
        let exited = exited_roles();
        if !exited.is_empty() {
            return Err(Stalled(format!("{}; {}", status(), exited.join("; "))));
        }
        if now.duration_since(self.started) > self.limit {
            return Err(Stalled(format!(
                "{} (limit {} s)",
                status(),
                self.limit.as_secs()
            )));
        }
        if now.duration_since(self.moved) > self.stall_after {
            return Err(Stalled(format!(
                "{}, no progress for {} s",
                status(),
                self.stall_after.as_secs()
            )));
        }
        Ok(false)
    }
}

/// The error for a stalled wait: what stalled, plus [`stall_report`] (without repeating what
/// the stall itself already says).
pub async fn explain(stalled: Stalled) -> anyhow::Error {
    let report: Vec<String> = stall_parts()
        .await
        .into_iter()
        .filter(|part| !stalled.0.contains(part.as_str()))
        .collect();
    anyhow::anyhow!("stalled: {}. {}", stalled.0, report.join("; "))
}

/// Runs a whole benchmark under a time limit; past it, the run ends with a [`stall_report`].
pub async fn bounded<F>(name: &str, limit: Duration, run: F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::pin!(run);
    tokio::select! {
        out = &mut run => out,
        _ = tokio::time::sleep(limit) => {
            // Taken while the run, and the roles it owns, still exist.
            let report = stall_report().await;
            Err(anyhow::anyhow!(
                "benchmark {name} did not finish within {} s (BENCH_TIMEOUT_SECONDS). {report}",
                limit.as_secs()
            ))
        }
    }
}

/// What the run's roles and consumer groups are doing: roles that exited, and every consumer
/// group of the run's prefixes with records left to read, per topic. Bounded in time itself.
pub async fn stall_report() -> String {
    stall_parts().await.join("; ")
}

async fn stall_parts() -> Vec<String> {
    let mut parts = exited_roles();
    let running: Vec<String> = lock(&ROLES)
        .values()
        .filter(|(_, child)| matches!(lock(child).try_wait(), Ok(None)))
        .map(|(label, _)| format!("`{label}`"))
        .collect();
    if !running.is_empty() {
        parts.push(format!("roles running: {}", running.join(", ")));
    }
    let prefixes = lock(&PREFIXES).clone();
    let lags = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || group_lags(&prefixes)),
    )
    .await;
    match lags {
        Ok(Ok(Ok(lags))) if lags.is_empty() => {
            parts.push("every topic of this run is read to its end".to_owned())
        }
        Ok(Ok(Ok(lags))) => parts.push(format!("lag: {}", lags.join("; "))),
        Ok(Ok(Err(e))) => parts.push(format!("consumer lag unknown: {e:#}")),
        Ok(Err(e)) => parts.push(format!("consumer lag unknown: {e}")),
        Err(_) => parts.push("consumer lag unknown: Kafka did not answer within 60 s".to_owned()),
    }
    parts
}

/// Per consumer group of `prefixes` and topic: records between its committed offsets and the
/// topic's end (transaction markers included, so a caught-up transactional reader may show a
/// few), only where that is more than zero.
fn group_lags(prefixes: &[String]) -> anyhow::Result<Vec<String>> {
    let ours = |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
    let timeout = Duration::from_secs(10);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .create()?;
    let metadata = probe
        .fetch_metadata(None, timeout)
        .context("fetching topic metadata")?;
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in metadata.topics().iter().filter(|t| ours(t.name())) {
        for p in t.partitions() {
            let (_, high) = probe
                .fetch_watermarks(t.name(), p.id(), timeout)
                .with_context(|| format!("end offsets of {}", t.name()))?;
            ends.insert((t.name().to_owned(), p.id()), high);
        }
    }
    let groups = probe
        .fetch_group_list(None, timeout)
        .context("listing consumer groups")?;
    let mut out = Vec::new();
    let mut committed_topics = std::collections::BTreeSet::new();
    for group in groups.groups().iter().filter(|g| ours(g.name())) {
        // Reading a group's committed offsets does not join it.
        let reader: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", group.name())
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in ends.keys() {
            tpl.add_partition(topic, *partition);
        }
        let committed = reader
            .committed_offsets(tpl, timeout)
            .with_context(|| format!("committed offsets of group {}", group.name()))?;
        let mut per_topic: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        for e in committed.elements() {
            let Offset::Offset(at) = e.offset() else {
                continue;
            };
            let end = ends
                .get(&(e.topic().to_owned(), e.partition()))
                .copied()
                .unwrap_or(at);
            committed_topics.insert(e.topic().to_owned());
            let entry = per_topic.entry(e.topic().to_owned()).or_default();
            entry.0 += (end - at).max(0);
            entry.1 += at;
            entry.2 += end;
        }
        for (topic, (lag, at, end)) in per_topic {
            if lag > 0 {
                out.push(format!(
                    "group {} ({} member(s)) on {topic}: {lag} behind (committed {at} of {end})",
                    group.name(),
                    group.members().len()
                ));
            }
        }
    }
    // A group that never committed (its member hung before its first commit, or it never
    // joined) has no lag to show; its input shows up here instead. Topics read by assignment
    // (restores, the catalog copy) or by nobody appear too.
    let mut records: BTreeMap<&str, i64> = BTreeMap::new();
    for ((topic, _), end) in &ends {
        *records.entry(topic.as_str()).or_default() += end;
    }
    let unread: Vec<String> = records
        .into_iter()
        .filter(|(topic, n)| *n > 0 && !committed_topics.contains(*topic))
        .map(|(topic, n)| format!("{topic} ({n})"))
        .collect();
    if !unread.is_empty() {
        out.push(format!(
            "topics with records but no committed offsets in any group of this run: {}",
            unread.join(", ")
        ));
    }
    Ok(out)
}

/// Runs Kafka's own producer performance tool, transactionally, and returns its records/s.
pub fn kafka_producer_perf(topic: &str, records: usize, record_size: usize) -> anyhow::Result<f64> {
    let java = env_or("STREAMCART_JAVA17", "java");
    let cp = std::env::var("STREAMCART_KAFKA_TOOLS_CP")
        .context("STREAMCART_KAFKA_TOOLS_CP (from scripts/stack env)")?;
    let mut cmd = Command::new(java);
    cmd.args([
        "-Xmx512m",
        "-cp",
        &cp,
        "org.apache.kafka.tools.ProducerPerformance",
    ])
    .args(["--topic", topic, "--num-records", &records.to_string()])
    .args([
        "--record-size",
        &record_size.max(1).to_string(),
        "--throughput",
        "-1",
    ])
    .args([
        "--transactional-id",
        &format!("{topic}-perf"),
        "--transaction-duration-ms",
        "100",
    ])
    .args([
        "--producer-props",
        &format!("bootstrap.servers={}", kafka_bootstrap()),
    ])
    .args([
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "compression.type=lz4",
    ]);
    let out = run_tool(cmd, "kafka ProducerPerformance", tool_limit(records))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("records/sec") && l.contains("50th"))
        .with_context(|| {
            format!(
                "no summary in ProducerPerformance output: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    // "N records sent, X records/sec (...)"
    let rate = last
        .split(',')
        .nth(1)
        .and_then(|s| s.trim().split(' ').next())
        .and_then(|s| s.parse::<f64>().ok())
        .with_context(|| format!("cannot parse {last:?}"))?;
    Ok(rate)
}

/// Time allowed to a ceiling tool moving `records` records: generous for a loaded machine
/// (1,000 records/s at least), never under 5 minutes.
pub fn tool_limit(records: usize) -> Duration {
    Duration::from_secs(300 + (records / 1_000) as u64)
}

/// The median of a non-empty sample.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// The p-th percentile (0..=100) of a sample, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
