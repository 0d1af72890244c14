//! Hanging transactions: a transaction left open on a partition that no coordinator will ever
//! finish. Its partition's last stable offset stops there for good, so every read_committed
//! reader of the partition (and every restore, which reads to the high watermark) waits forever.
//!
//! Kafka leaves one behind when a coordinator loses its transaction markers. It was seen here
//! after a single-node broker was SIGKILLed: on restart the node acts as leader from its
//! replayed metadata before the controller has fenced its previous incarnation, its coordinator
//! times out the transactions that were open at the kill and queues their abort markers, and when
//! the fence lands it drops those markers ("couldn't find leader endpoint ... likely deleted")
//! while recording the abort as complete.
//!
//! A lost marker hangs offsets too. A loop's transaction also commits its input offsets, which
//! the group coordinator keeps pending on the group's `__consumer_offsets` partition until the
//! marker arrives; without it, every fetch of the group's committed offsets (read_committed
//! consumers ask for stable ones) answers "unstable offset commit" forever, and the loop, though
//! assigned its partitions, never learns where to start. Seen after a broker SIGKILL: the stock
//! processor and the saga reactions assigned, restored and silent for good.
//!
//! The sweep finds them the way `kafka-transactions.sh find-hanging` does (DescribeProducers on
//! each partition of the namespace's topics and on the offsets partitions of its groups, then the
//! coordinator's view of each producer) and aborts those written by a streamcart loop, as
//! `kafka-transactions.sh abort` would. Aborting one of ours is safe even if
//! its commit had been acknowledged: a loop's output and its input offsets are in the same
//! transaction, so the abort sends the input back to be handled again, with the same result.
//! A hanging transaction of any other producer is reported with the command that aborts it and
//! left to an operator, who alone can know whether its writer was told it committed.

mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::KafkaSettings;
use crate::client_log::QuietEofContext;
use wire::{Conn, Decoder, Encoder, api};

/// Why a sweep could not finish; the caller logs it and sweeps again at its next stall check.
#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    /// A broker could not be reached or hung up (retried at the next sweep).
    #[error("broker connection: {0}")]
    Io(String),
    /// A response did not parse (retried at the next sweep).
    #[error("protocol: {0}")]
    Protocol(String),
    /// Metadata could not be read (retried at the next sweep).
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A broker answered with an error code (retried at the next sweep).
    #[error("{request} answered error code {code}")]
    Broker {
        /// The request that failed.
        request: &'static str,
        /// Kafka's error code.
        code: i16,
    },
}

/// Which transactional ids belong to streamcart loops, and which topics a sweep covers.
#[derive(Debug, Clone)]
pub struct Owners {
    /// The namespace every streamcart topic and group name starts with (may be empty).
    pub topic_prefix: String,
    /// Consumer groups of the transactional loops (prefix included); a loop's transactional id
    /// is `{group}-{instance}`.
    pub groups: Vec<String>,
}

impl Owners {
    /// True when `transactional_id` is the id of one of our loops.
    pub fn is_ours(&self, transactional_id: &str) -> bool {
        self.groups.iter().any(|g| {
            transactional_id
                .strip_prefix(g.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-'))
        })
    }
}

/// Kafka's internal topic of committed offsets.
const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition that holds `group`'s offsets: Kafka's
/// `abs(group.hashCode()) % partitions`, with Java's string hash over UTF-16 code units.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    let hash = group.encode_utf16().fold(0_i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    // Kafka's `Utils.abs` maps i32::MIN to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// An open transaction must still be open, at the same offset, this long after the coordinator
/// disowned it: a coordinator writes every marker before it records a transaction as complete,
/// so one that was merely finishing is closed by then.
const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// Starts a thread that sweeps every `interval` until shutdown is requested. Every process that
/// runs transactional loops starts one; sweeps of several processes do not conflict (a second
/// abort marker for a closed transaction changes nothing).
pub fn spawn(
    settings: KafkaSettings,
    owners: Owners,
    interval: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    tracing::info!(
        every_ms = interval.as_millis() as u64,
        namespace = %owners.topic_prefix,
        "sweeping for hanging transactions"
    );
    std::thread::Builder::new()
        .name("hanging-txn-sweep".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            let mut unowned = Unowned::default();
            let mut client: Option<BaseConsumer<QuietEofContext>> = None;
            while !crate::shutdown::requested() {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                let client = match &client {
                    Some(c) => c,
                    None => match settings.client().create_with_context(QuietEofContext) {
                        Ok(c) => client.insert(c),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot create the sweep's Kafka client; will retry");
                            next = Instant::now() + interval;
                            continue;
                        }
                    },
                };
                match sweep_with(client, &owners) {
                    Ok(report) => report.log(&mut unowned),
                    // Refused by the cluster's ACLs: no retry will pass, and an operator must know.
                    Err(e @ JanitorError::Broker { code: 29 | 31 | 53, .. }) => {
                        tracing::warn!(error = %e, "sweep for hanging transactions not authorized \
                            (it needs Describe on the topics and transactional ids, and ClusterAction); will retry")
                    }
                    // Mostly a broker that is away: the next sweep tries again.
                    Err(e) => {
                        tracing::debug!(error = %e, "sweep for hanging transactions failed; will retry")
                    }
                }
                next = Instant::now() + interval;
            }
        })
}

/// An open transaction on one partition, as its leader describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OpenTxn {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch of the open transaction.
    pub producer_epoch: i32,
    /// Epoch of the coordinator that last wrote a marker for this producer here.
    pub coordinator_epoch: i32,
    /// Offset of the transaction's first record: the partition's last stable offset.
    pub start_offset: i64,
}

/// What a coordinator says about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorView {
    /// The transactional id.
    pub transactional_id: String,
    /// Ongoing, PrepareCommit, CompleteAbort, Empty, ...
    pub state: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Partitions in its current transaction (those still without a marker when it is
    /// preparing to commit or abort).
    pub partitions: BTreeSet<(String, i32)>,
}

/// Whether the coordinator still intends to finish `open`. Anything else hangs: no one will
/// ever write its marker.
pub fn is_live(open: &OpenTxn, coordinator: Option<&CoordinatorView>) -> bool {
    let Some(view) = coordinator else {
        return false;
    };
    let finishing = matches!(
        view.state.as_str(),
        "Ongoing" | "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence"
    );
    finishing
        && view.producer_id == open.producer_id
        && view
            .partitions
            .contains(&(open.topic.clone(), open.partition))
}

/// One hanging transaction and what the sweep did about it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The open transaction.
    pub open: OpenTxn,
    /// Its transactional id, when a coordinator still knows the producer.
    pub owner: Option<String>,
    /// True when the sweep aborted it.
    pub aborted: bool,
}

/// What one sweep saw.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Partitions described.
    pub partitions: usize,
    /// Open transactions seen (live or not).
    pub open: usize,
    /// Hanging transactions, aborted or left to an operator.
    pub hanging: Vec<Found>,
}

/// How long an open transaction whose producer no coordinator lists must stay open before it is
/// reported: a coordinator that is loading or moving its partitions lists nothing for a moment
/// (seen after a broker restart), and only past the broker's longest transaction timeout
/// (`transaction.max.timeout.ms`, 15 min by default) is such a transaction surely abandoned.
const UNOWNED_REPORT_AFTER: Duration = Duration::from_secs(15 * 60);

/// Since when each open transaction without a known owner has been seen, across sweeps.
#[derive(Debug, Default)]
struct Unowned(HashMap<OpenTxn, Instant>);

impl Unowned {
    /// Records this sweep's unowned transactions (forgetting those gone) and returns those open
    /// for longer than [`UNOWNED_REPORT_AFTER`].
    fn overdue<'a>(
        &mut self,
        now: Instant,
        seen: impl Iterator<Item = &'a OpenTxn>,
    ) -> Vec<OpenTxn> {
        let seen: Vec<&OpenTxn> = seen.collect();
        self.0.retain(|o, _| seen.contains(&o));
        seen.into_iter()
            .filter(|o| {
                let since = *self.0.entry((*o).clone()).or_insert(now);
                now.duration_since(since) >= UNOWNED_REPORT_AFTER
            })
            .cloned()
            .collect()
    }
}

impl SweepReport {
    fn log(&self, unowned: &mut Unowned) {
        let overdue = unowned.overdue(
            Instant::now(),
            self.hanging
                .iter()
                .filter(|f| f.owner.is_none())
                .map(|f| &f.open),
        );
        for f in &self.hanging {
            let o = &f.open;
            if f.owner.is_none() && !overdue.contains(o) {
                tracing::debug!(
                    topic = %o.topic, partition = o.partition, producer_id = o.producer_id,
                    start_offset = o.start_offset,
                    "open transaction whose producer no coordinator lists (yet); watching it"
                );
            } else if f.aborted {
                tracing::warn!(
                    topic = %o.topic, partition = o.partition, producer_id = o.producer_id,
                    producer_epoch = o.producer_epoch, start_offset = o.start_offset,
                    owner = ?f.owner,
                    "aborted a hanging transaction that no coordinator would finish; its input is handled again"
                );
            } else {
                tracing::error!(
                    topic = %o.topic, partition = o.partition, producer_id = o.producer_id,
                    start_offset = o.start_offset, owner = ?f.owner,
                    "hanging transaction of a producer that is not a streamcart loop (or that no coordinator \
                     knows) blocks this partition; \
                     after checking with its owner, abort it with: kafka-transactions.sh --bootstrap-server <broker> \
                     abort --topic {} --partition {} --start-offset {}",
                    o.topic, o.partition, o.start_offset
                );
            }
        }
    }
}

struct Broker {
    host: String,
    port: u16,
}

/// Connections opened during one sweep, one per broker.
struct Conns<'a> {
    brokers: &'a BTreeMap<i32, Broker>,
    open: HashMap<i32, Conn>,
}

impl Conns<'_> {
    fn get(&mut self, id: i32) -> Result<&mut Conn, JanitorError> {
        match self.open.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let b = self
                    .brokers
                    .get(&id)
                    .ok_or_else(|| JanitorError::Protocol(format!("unknown broker {id}")))?;
                Ok(v.insert(Conn::open(&b.host, b.port)?))
            }
        }
    }
}

/// Finds the hanging transactions on every partition of the namespace's topics and aborts ours.
pub fn sweep(settings: &KafkaSettings, owners: &Owners) -> Result<SweepReport, JanitorError> {
    let client: BaseConsumer<QuietEofContext> =
        settings.client().create_with_context(QuietEofContext)?;
    sweep_with(&client, owners)
}

/// [`sweep`] with a metadata client kept across sweeps.
fn sweep_with(
    client: &BaseConsumer<QuietEofContext>,
    owners: &Owners,
) -> Result<SweepReport, JanitorError> {
    let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
    let brokers: BTreeMap<i32, Broker> = metadata
        .brokers()
        .iter()
        .map(|b| {
            (
                b.id(),
                Broker {
                    host: b.host().to_owned(),
                    port: b.port() as u16,
                },
            )
        })
        .collect();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    let mut report = SweepReport::default();
    for t in metadata.topics() {
        let offsets = t.name() == OFFSETS_TOPIC;
        if !offsets && (!t.name().starts_with(&owners.topic_prefix) || t.name().starts_with("__")) {
            continue;
        }
        // Of the offsets topic, only the partitions that hold our loops' groups.
        let ours: BTreeSet<i32> = if offsets {
            let n = t.partitions().len() as i32;
            owners
                .groups
                .iter()
                .map(|g| offsets_partition(g, n))
                .collect()
        } else {
            BTreeSet::new()
        };
        for p in t.partitions() {
            if offsets && !ours.contains(&p.id()) {
                continue;
            }
            if p.leader() >= 0 {
                report.partitions += 1;
                by_leader
                    .entry(p.leader())
                    .or_default()
                    .entry(t.name().to_owned())
                    .or_default()
                    .push(p.id());
            }
        }
    }
    let mut conns = Conns {
        brokers: &brokers,
        open: HashMap::new(),
    };
    let mut open = Vec::new();
    for (leader, topics) in &by_leader {
        open.extend(describe_producers(conns.get(*leader)?, topics)?);
    }
    report.open = open.len();
    if open.is_empty() {
        return Ok(report);
    }

    let pids: BTreeSet<i64> = open.iter().map(|o| o.producer_id).collect();
    let mut owner_of: HashMap<i64, String> = HashMap::new();
    for id in brokers.keys() {
        for (txn_id, pid) in list_transactions(conns.get(*id)?, &pids)? {
            owner_of.insert(pid, txn_id);
        }
    }
    let mut views: HashMap<String, CoordinatorView> = HashMap::new();
    let any = *brokers
        .keys()
        .next()
        .ok_or_else(|| JanitorError::Protocol("no brokers".into()))?;
    let ids: Vec<String> = owner_of
        .values()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (txn_id, node) in find_coordinators(conns.get(any)?, &ids)? {
        for v in describe_transactions(conns.get(node)?, std::slice::from_ref(&txn_id))? {
            views.insert(v.transactional_id.clone(), v);
        }
    }
    let candidates: Vec<OpenTxn> = open
        .into_iter()
        .filter(|o| {
            let view = owner_of.get(&o.producer_id).and_then(|id| views.get(id));
            !is_live(o, view)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(report);
    }

    std::thread::sleep(CONFIRM_AFTER);
    let mut again: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for c in &candidates {
        let leader = by_leader
            .iter()
            .find(|(_, t)| t.get(&c.topic).is_some_and(|ps| ps.contains(&c.partition)))
            .map(|(l, _)| *l)
            .expect("candidate came from a leader");
        again
            .entry(leader)
            .or_default()
            .entry(c.topic.clone())
            .or_default()
            .push(c.partition);
    }
    let mut still_open = Vec::new();
    for (leader, topics) in &again {
        still_open.extend(describe_producers(conns.get(*leader)?, topics)?);
    }
    for (leader, topics) in &again {
        for c in candidates.iter().filter(|c| {
            topics
                .get(&c.topic)
                .is_some_and(|ps| ps.contains(&c.partition))
        }) {
            if !still_open.contains(c) {
                continue;
            }
            let owner = owner_of.get(&c.producer_id).cloned();
            let ours = owner.as_deref().is_some_and(|id| owners.is_ours(id));
            // Other applications' groups share these partitions: their transactions are
            // neither ours to abort nor ours to report.
            if c.topic == OFFSETS_TOPIC && !ours {
                continue;
            }
            if ours {
                write_abort_marker(conns.get(*leader)?, c)?;
            }
            report.hanging.push(Found {
                open: c.clone(),
                owner,
                aborted: ours,
            });
        }
    }
    Ok(report)
}

fn check(request: &'static str, code: i16) -> Result<(), JanitorError> {
    if code == 0 {
        Ok(())
    } else {
        Err(JanitorError::Broker { request, code })
    }
}

/// Open transactions on the given partitions of one leader.
fn describe_producers(
    conn: &mut Conn,
    topics: &BTreeMap<String, Vec<i32>>,
) -> Result<Vec<OpenTxn>, JanitorError> {
    let mut e = Encoder::default();
    e.array(topics.len());
    for (name, partitions) in topics {
        e.string(name);
        e.array(partitions.len());
        for p in partitions {
            e.i32(*p);
        }
        e.tags();
    }
    e.tags();
    let body = conn.call(api::DESCRIBE_PRODUCERS, 0, &e.buf)?;
    parse_describe_producers(&body)
}

fn parse_describe_producers(body: &[u8]) -> Result<Vec<OpenTxn>, JanitorError> {
    let mut d = Decoder::new(body);
    let _throttle = d.i32()?;
    let mut open = Vec::new();
    for _ in 0..d.array()? {
        let topic = d.string()?;
        for _ in 0..d.array()? {
            let partition = d.i32()?;
            let code = d.i16()?;
            let _message = d.nullable_string()?;
            let producers = d.array()?;
            let mut found = Vec::new();
            for _ in 0..producers {
                let producer_id = d.i64()?;
                let producer_epoch = d.i32()?;
                let _last_sequence = d.i32()?;
                let _last_timestamp = d.i64()?;
                let coordinator_epoch = d.i32()?;
                let start_offset = d.i64()?;
                d.skip_tags()?;
                if start_offset >= 0 {
                    found.push(OpenTxn {
                        topic: topic.clone(),
                        partition,
                        producer_id,
                        producer_epoch,
                        coordinator_epoch,
                        start_offset,
                    });
                }
            }
            d.skip_tags()?;
            // A partition that moved or is not ready is described at the next sweep.
            if code == 0 {
                open.extend(found);
            }
        }
        d.skip_tags()?;
    }
    Ok(open)
}

/// (transactional id, producer id) of every transaction one broker coordinates for `pids`.
fn list_transactions(
    conn: &mut Conn,
    pids: &BTreeSet<i64>,
) -> Result<Vec<(String, i64)>, JanitorError> {
    let mut e = Encoder::default();
    e.array(0);
    e.array(pids.len());
    for p in pids {
        e.i64(*p);
    }
    e.tags();
    let body = conn.call(api::LIST_TRANSACTIONS, 0, &e.buf)?;
    let mut d = Decoder::new(&body);
    let _throttle = d.i32()?;
    check("ListTransactions", d.i16()?)?;
    // Unknown state filters: none were sent.
    for _ in 0..d.array()? {
        d.string()?;
    }
    let mut out = Vec::new();
    for _ in 0..d.array()? {
        let id = d.string()?;
        let pid = d.i64()?;
        let _state = d.string()?;
        d.skip_tags()?;
        out.push((id, pid));
    }
    Ok(out)
}

/// The coordinator (broker id) of each transactional id.
fn find_coordinators(conn: &mut Conn, ids: &[String]) -> Result<Vec<(String, i32)>, JanitorError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut e = Encoder::default();
    // Key type 1: a transactional id.
    e.i8(1);
    e.array(ids.len());
    for id in ids {
        e.string(id);
    }
    e.tags();
    let body = conn.call(api::FIND_COORDINATOR, 4, &e.buf)?;
    let mut d = Decoder::new(&body);
    let _throttle = d.i32()?;
    let mut out = Vec::new();
    for _ in 0..d.array()? {
        let key = d.string()?;
        let node = d.i32()?;
        let _host = d.string()?;
        let _port = d.i32()?;
        let code = d.i16()?;
        let _message = d.nullable_string()?;
        d.skip_tags()?;
        check("FindCoordinator", code)?;
        out.push((key, node));
    }
    Ok(out)
}

/// What a coordinator knows about `ids`.
fn describe_transactions(
    conn: &mut Conn,
    ids: &[String],
) -> Result<Vec<CoordinatorView>, JanitorError> {
    let mut e = Encoder::default();
    e.array(ids.len());
    for id in ids {
        e.string(id);
    }
    e.tags();
    let body = conn.call(api::DESCRIBE_TRANSACTIONS, 0, &e.buf)?;
    let mut d = Decoder::new(&body);
    let _throttle = d.i32()?;
    let mut out = Vec::new();
    for _ in 0..d.array()? {
        let code = d.i16()?;
        let transactional_id = d.string()?;
        let state = d.string()?;
        let _timeout = d.i32()?;
        let _start = d.i64()?;
        let producer_id = d.i64()?;
        let _epoch = d.i16()?;
        let mut partitions = BTreeSet::new();
        for _ in 0..d.array()? {
            let topic = d.string()?;
            for _ in 0..d.array()? {
                partitions.insert((topic.clone(), d.i32()?));
            }
            d.skip_tags()?;
        }
        d.skip_tags()?;
        check("DescribeTransactions", code)?;
        out.push(CoordinatorView {
            transactional_id,
            state,
            producer_id,
            partitions,
        });
    }
    Ok(out)
}

/// Writes the abort marker a coordinator should have written, with the producer and
/// coordinator epochs the partition last saw, as `kafka-transactions.sh abort` does.
fn write_abort_marker(conn: &mut Conn, open: &OpenTxn) -> Result<(), JanitorError> {
    let epoch = i16::try_from(open.producer_epoch)
        .map_err(|_| JanitorError::Protocol(format!("producer epoch {}", open.producer_epoch)))?;
    let mut e = Encoder::default();
    e.array(1);
    e.i64(open.producer_id);
    e.i16(epoch);
    e.bool(false);
    e.array(1);
    e.string(&open.topic);
    e.array(1);
    e.i32(open.partition);
    e.tags();
    e.i32(open.coordinator_epoch);
    e.tags();
    e.tags();
    let body = conn.call(api::WRITE_TXN_MARKERS, 1, &e.buf)?;
    let mut d = Decoder::new(&body);
    for _ in 0..d.array()? {
        let _pid = d.i64()?;
        for _ in 0..d.array()? {
            let _topic = d.string()?;
            for _ in 0..d.array()? {
                let _partition = d.i32()?;
                check("WriteTxnMarkers", d.i16()?)?;
                d.skip_tags()?;
            }
            d.skip_tags()?;
        }
        d.skip_tags()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> OpenTxn {
        OpenTxn {
            topic: "orders.order.events".into(),
            partition: 2,
            producer_id: 6005,
            producer_epoch: 2,
            coordinator_epoch: 12,
            start_offset: 508,
        }
    }

    fn view(state: &str, partitions: &[(&str, i32)]) -> CoordinatorView {
        CoordinatorView {
            transactional_id: "orders.order.processor-0".into(),
            state: state.into(),
            producer_id: 6005,
            partitions: partitions
                .iter()
                .map(|(t, p)| ((*t).to_owned(), *p))
                .collect(),
        }
    }

    #[test]
    fn a_transaction_the_coordinator_is_finishing_is_live() {
        for state in ["Ongoing", "PrepareCommit", "PrepareAbort"] {
            let v = view(state, &[("orders.order.events", 2)]);
            assert!(is_live(&open(), Some(&v)), "{state}");
        }
    }

    #[test]
    fn a_transaction_the_coordinator_completed_or_forgot_hangs() {
        // The case seen after a broker SIGKILL: the abort recorded complete, the marker lost.
        assert!(!is_live(&open(), Some(&view("CompleteAbort", &[]))));
        assert!(!is_live(&open(), Some(&view("Empty", &[]))));
        // A newer transaction of the same producer that does not include this partition.
        let newer = view("Ongoing", &[("orders.order.events", 1)]);
        assert!(!is_live(&open(), Some(&newer)));
        // The transactional id now has another producer id.
        let mut other = view("Ongoing", &[("orders.order.events", 2)]);
        other.producer_id = 7000;
        assert!(!is_live(&open(), Some(&other)));
        // No coordinator knows the producer any more.
        assert!(!is_live(&open(), None));
    }

    #[test]
    fn an_unowned_transaction_is_reported_only_once_open_past_the_longest_timeout() {
        let mut u = Unowned::default();
        let t0 = Instant::now();
        let o = open();
        assert!(u.overdue(t0, [&o].into_iter()).is_empty());
        assert!(
            u.overdue(t0 + Duration::from_secs(60), [&o].into_iter())
                .is_empty()
        );
        assert_eq!(
            u.overdue(t0 + UNOWNED_REPORT_AFTER, [&o].into_iter()),
            vec![o.clone()]
        );
        // Gone from one sweep (its coordinator finished it): the clock starts again.
        assert!(
            u.overdue(t0 + UNOWNED_REPORT_AFTER, std::iter::empty())
                .is_empty()
        );
        assert!(
            u.overdue(t0 + UNOWNED_REPORT_AFTER * 2, [&o].into_iter())
                .is_empty()
        );
    }

    #[test]
    fn a_group_maps_to_the_offsets_partition_kafka_uses() {
        // Partitions read from the 4-partition `__consumer_offsets` of the local stack, where
        // these groups' pending offset commits hung.
        let stock = "chaos_1db392a5a1ae.inventory.stock.processor";
        let reactions = "chaos_1db392a5a1ae.orders.saga.reactions";
        assert_eq!(offsets_partition(stock, 4), 2);
        assert_eq!(offsets_partition(reactions, 4), 3);
        // Kafka's default of 50 partitions, as Java computes them.
        assert_eq!(offsets_partition(stock, 50), 24);
        assert_eq!(offsets_partition(reactions, 50), 27);
        // Java's hash of "polygenelubricants" is i32::MIN, which Kafka maps to partition 0.
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
        assert_eq!(offsets_partition("", 50), 0);
        // Non-ASCII names hash by UTF-16 code unit (a surrogate pair for the emoji), as Java's.
        assert_eq!(offsets_partition("grupo-pedidos-ñ-😀", 50), 20);
    }

    #[test]
    fn only_ids_of_our_loops_are_ours() {
        let owners = Owners {
            topic_prefix: "t1.".into(),
            groups: vec![
                "t1.orders.order.processor".into(),
                "t1.orders.saga.reactions".into(),
            ],
        };
        assert!(owners.is_ours("t1.orders.order.processor-0"));
        assert!(owners.is_ours("t1.orders.saga.reactions-streamcart-7f9c-1"));
        assert!(!owners.is_ours("t1.orders.order.processor"));
        assert!(!owners.is_ours("t1.orders.order.processor-"));
        assert!(!owners.is_ours("t2.orders.order.processor-0"));
        assert!(!owners.is_ours("client-app-tx-1"));
    }

    #[test]
    fn describe_producers_keeps_only_open_transactions_of_healthy_partitions() {
        let mut e = Encoder::default();
        e.i32(0);
        e.array(1);
        e.string("orders.order.events");
        e.array(2);
        // Partition 2: one idle producer, one with an open transaction.
        e.i32(2);
        e.i16(0);
        e.null_string();
        e.array(2);
        for (pid, start) in [(1_i64, -1_i64), (6005, 508)] {
            e.i64(pid);
            e.i32(2);
            e.i32(10);
            e.i64(1_796_077_594_450);
            e.i32(12);
            e.i64(start);
            e.tags();
        }
        e.tags();
        // Partition 3: not the leader any more.
        e.i32(3);
        e.i16(6);
        e.string("not leader");
        e.array(1);
        e.i64(9);
        e.i32(0);
        e.i32(0);
        e.i64(0);
        e.i32(0);
        e.i64(5);
        e.tags();
        e.tags();
        e.tags();
        e.tags();
        assert_eq!(
            parse_describe_producers(&e.buf).expect("decodes"),
            vec![open()]
        );
    }
}
