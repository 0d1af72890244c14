//! How to reach Kafka and how to batch: one typed struct, filled from the binary's configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::admin::TopicClass;

/// librdkafka properties the runtime sets itself because its guarantees rest on them (exactly
/// once, murmur2 placement, where a group starts); [`KafkaSettings::properties`] may not set
/// them. `bootstrap.servers` and the timeouts have their own keys.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "transaction.timeout.ms",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "partitioner",
    "group.id",
    "group.instance.id",
    "isolation.level",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "fetch.wait.max.ms",
    "linger.ms",
    "queue.buffering.max.ms",
    "statistics.interval.ms",
];

/// How the topics of one class are replicated when the runtime creates them, and what it
/// requires of them when they exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicPolicy {
    /// Copies of each partition (`replication.factor`). 1 on one broker; 3 in production.
    pub replication_factor: i32,
    /// Copies that must hold a record before it is acknowledged (`min.insync.replicas`). 1 on
    /// one broker; 2 in production, so one broker can be down without losing a write.
    pub min_insync_replicas: i32,
}

impl Default for TopicPolicy {
    fn default() -> Self {
        Self {
            replication_factor: 1,
            min_insync_replicas: 1,
        }
    }
}

/// The [`TopicPolicy`] of each [`TopicClass`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicPolicies {
    /// Command topics.
    pub commands: TopicPolicy,
    /// Event topics: the source of truth.
    pub events: TopicPolicy,
    /// Snapshot topics (compacted).
    pub snapshots: TopicPolicy,
    /// The command-results topic.
    pub results: TopicPolicy,
    /// The public summary streams (compacted).
    pub summaries: TopicPolicy,
    /// Dead-letter topics.
    pub dead_letters: TopicPolicy,
}

impl TopicPolicies {
    /// The policy of `class`.
    pub fn of(&self, class: TopicClass) -> TopicPolicy {
        match class {
            TopicClass::Commands => self.commands,
            TopicClass::Events => self.events,
            TopicClass::Snapshots => self.snapshots,
            TopicClass::Results => self.results,
            TopicClass::Summaries => self.summaries,
            TopicClass::DeadLetters => self.dead_letters,
        }
    }

    /// Every class with its policy.
    pub fn all(&self) -> impl Iterator<Item = (TopicClass, TopicPolicy)> + '_ {
        TopicClass::ALL.into_iter().map(|c| (c, self.of(c)))
    }
}

/// Kafka connection and transaction settings shared by every loop.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers, comma-separated `host:port`.
    pub bootstrap_servers: String,
    /// Most input records handled in one transaction: the throughput lever.
    pub batch_max_records: usize,
    /// Longest a transaction stays open collecting records, in milliseconds. A batch closes
    /// earlier once no input is waiting, so this bounds batches only under load.
    pub batch_max_wait_ms: u64,
    /// Broker-side transaction timeout in milliseconds: how long a crashed instance's open
    /// transaction can block readers of its partitions before the broker aborts it.
    pub transaction_timeout_ms: u64,
    /// Consumer session timeout in milliseconds: how fast a dead instance's partitions move.
    pub session_timeout_ms: u64,
    /// A loop with work that has not committed for this long reports itself unhealthy.
    pub stall_after_ms: u64,
    /// A loop that has failed to recover (rebuilding its clients) for this long gives up and
    /// returns an error, for its supervisor to restart it or the process to exit.
    pub give_up_after_ms: u64,
    /// How often a process with transactional loops looks for hanging transactions on the
    /// namespace's partitions (see [`crate::hanging`]), in milliseconds; 0 turns it off. A
    /// hanging transaction blocks its partitions until the next sweep; one sweep is a metadata
    /// request and one DescribeProducers per broker (more only while transactions are open).
    pub hanging_sweep_ms: u64,
    /// Longest a loop's consumer lets the broker hold a fetch that has nothing new
    /// (`fetch.wait.max.ms`): with read_committed, the wait a record can spend between its
    /// transaction's commit and its reader, on every hop of the saga.
    pub fetch_wait_max_ms: u64,
    /// How long a loop's transactional producer holds a record to fill a request
    /// (`linger.ms`). The commit waits for every record's acknowledgement, and librdkafka's
    /// linger applies to that wait too, so it adds to every hop of the saga; batching comes
    /// anyway from the records a loop sends while a request is in flight. At 0 instead of 5,
    /// each saga hop took 2 to 4 ms less at 100 orders/s, with no loss of throughput.
    pub linger_ms: u64,
    /// How often each loop's consumer reports librdkafka's statistics, in milliseconds: the
    /// source of the per-partition consumer lag gauges. 0 turns them (and the gauges) off.
    pub statistics_interval_ms: u64,
    /// Replication of the topics the runtime creates, per class.
    pub topics: TopicPolicies,
    /// librdkafka properties given to every client, after the runtime's own settings (so a
    /// tuning value here wins): `security.protocol`, `sasl.*`, `ssl.*`, tuning. The ones in
    /// [`RESERVED_PROPERTIES`] are refused.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            batch_max_records: 10_000,
            batch_max_wait_ms: 100,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            stall_after_ms: 30_000,
            give_up_after_ms: 600_000,
            hanging_sweep_ms: 5_000,
            fetch_wait_max_ms: 50,
            linger_ms: 0,
            statistics_interval_ms: 1_000,
            topics: TopicPolicies::default(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    /// Longest a batch stays open.
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }

    /// A transactional, idempotent producer. Keys are placed with murmur2 (`murmur2_random`:
    /// murmur2 for keyed records, like the Java client's default partitioner), so JVM producers
    /// and this one agree on the partition of every key.
    pub fn transactional_producer(&self, transactional_id: &str) -> ClientConfig {
        let mut c = self.base_producer();
        // librdkafka requires a record's delivery deadline to fit inside its transaction.
        c.set("transactional.id", transactional_id)
            .set("linger.ms", self.linger_ms.to_string())
            .set(
                "transaction.timeout.ms",
                self.transaction_timeout_ms.to_string(),
            )
            .set(
                "message.timeout.ms",
                self.transaction_timeout_ms.to_string(),
            );
        self.with_properties(c)
    }

    /// What every client of the runtime shares: the brokers, and how soon it reconnects.
    ///
    /// librdkafka backs reconnects off exponentially up to `reconnect.backoff.max.ms` (10 s by
    /// default), so after a broker outage of more than a few seconds a client could wait up to
    /// 10 s more before trying the broker that is back. At 1 s a role resumes within a second of
    /// its broker, for one connection attempt per broker per second while it is down.
    pub fn client(&self) -> ClientConfig {
        self.with_properties(self.base_client())
    }

    fn base_client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("reconnect.backoff.max.ms", "1000");
        c
    }

    /// `c` with [`KafkaSettings::properties`] on top.
    fn with_properties(&self, mut c: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            c.set(key, value);
        }
        c
    }

    /// The properties of [`KafkaSettings::properties`] that it may not set.
    pub fn reserved_properties(&self) -> Vec<&str> {
        self.properties
            .keys()
            .map(String::as_str)
            .filter(|k| RESERVED_PROPERTIES.contains(k))
            .collect()
    }

    /// A plain idempotent producer (murmur2 placement), for clients outside transactions.
    pub fn producer(&self) -> ClientConfig {
        self.with_properties(self.base_producer())
    }

    fn base_producer(&self) -> ClientConfig {
        let mut c = self.base_client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", "30000");
        c
    }

    /// A consumer in `group_id` that reads only committed records and never commits on its own.
    ///
    /// With an `instance_id` it is a static member (`group.instance.id`): an instance restarted
    /// after a crash takes its partitions back at once, instead of waiting for the session of
    /// its dead predecessor to time out and the whole group to rebalance. Two live instances
    /// with the same id fence each other, as with transactional ids.
    pub fn transactional_consumer(
        &self,
        group_id: &str,
        instance_id: Option<&str>,
    ) -> ClientConfig {
        let mut c = self.base_client();
        if let Some(id) = instance_id {
            c.set("group.instance.id", id);
        }
        c.set("group.id", group_id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 4).max(500).to_string(),
            )
            .set("max.poll.interval.ms", "300000")
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("partition.assignment.strategy", "cooperative-sticky");
        if self.statistics_interval_ms > 0 {
            c.set(
                "statistics.interval.ms",
                self.statistics_interval_ms.to_string(),
            );
        }
        self.with_properties(c)
    }

    /// A group-less reader of committed records, for restoring state from a partition.
    pub fn restore_consumer(&self) -> ClientConfig {
        let mut c = self.base_client();
        c.set("group.id", "streamcart-restore-unused")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "20")
            // A restore reads straight through: a prefetch queue deeper than a few fetches only
            // holds memory (librdkafka's default is 64 MB, kept by the allocator afterwards).
            .set("queued.max.messages.kbytes", "4096")
            // A partition whose prefetch queue is over its threshold has its next fetch put off
            // by this long. At librdkafka's default (1 s) a reader that keeps up drained the
            // queue and then idled: a 1,000,000-snapshot read took 3.5 s instead of 0.5 s.
            .set("fetch.queue.backoff.ms", "10")
            .set("auto.offset.reset", "earliest");
        self.with_properties(c)
    }
}
