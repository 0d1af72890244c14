//! Every topic and subject name, in one place.
//!
//! Names follow `<context>.<aggregate>.commands|events|snapshots`, `command.results` and
//! `<processor>.dlq`. Subjects use the TopicNameStrategy (`<topic>-value`), which is what the
//! registry's converters for Kafka Connect expect too. A prefix lets each test run own its topics
//! and subjects, so runs never see each other's records.

use std::fmt;

/// The four bounded contexts, each with exactly one aggregate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// Products (aggregate `product`, key = sku).
    Catalog,
    /// Stock per sku (aggregate `stock`, key = sku).
    Inventory,
    /// Orders (aggregate `order`, key = order id); the saga's memory.
    Orders,
    /// Payments (aggregate `payment`, key = payment id = order id).
    Payments,
}

impl Context {
    /// Every context, in a stable order.
    pub const ALL: [Context; 4] = [
        Context::Catalog,
        Context::Inventory,
        Context::Orders,
        Context::Payments,
    ];

    /// The context's name as used in topic names and Avro namespaces.
    pub fn name(self) -> &'static str {
        match self {
            Context::Catalog => "catalog",
            Context::Inventory => "inventory",
            Context::Orders => "orders",
            Context::Payments => "payments",
        }
    }

    /// The name of the context's aggregate type, as in `Aggregate::NAME`.
    pub fn aggregate(self) -> &'static str {
        match self {
            Context::Catalog => "product",
            Context::Inventory => "stock",
            Context::Orders => "order",
            Context::Payments => "payment",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an aggregate topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// Command envelopes, key = aggregate id.
    Commands,
    /// Event envelopes, key = aggregate id.
    Events,
    /// Compacted latest state per aggregate, key = aggregate id.
    Snapshots,
}

impl StreamKind {
    /// Suffix of the topic name.
    pub fn suffix(self) -> &'static str {
        match self {
            StreamKind::Commands => "commands",
            StreamKind::Events => "events",
            StreamKind::Snapshots => "snapshots",
        }
    }
}

/// A topic that carries Avro values under one registered schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// One of an aggregate's own topics.
    Aggregate(Context, StreamKind),
    /// The shared `command.results` topic, key = command id.
    CommandResults,
    /// `orders.order.summary`: public, flat, compacted order view for sinks, key = order id.
    OrderSummary,
    /// `catalog.product.summary`: public, flat, compacted product view for sinks, key = sku.
    ProductSummary,
}

impl Stream {
    /// Position of the stream in [`Stream::all`], without building the list.
    pub fn index(self) -> usize {
        match self {
            Stream::Aggregate(context, kind) => {
                let c = match context {
                    Context::Catalog => 0,
                    Context::Inventory => 1,
                    Context::Orders => 2,
                    Context::Payments => 3,
                };
                let k = match kind {
                    StreamKind::Commands => 0,
                    StreamKind::Events => 1,
                    StreamKind::Snapshots => 2,
                };
                c * 3 + k
            }
            Stream::CommandResults => 12,
            Stream::OrderSummary => 13,
            Stream::ProductSummary => 14,
        }
    }

    /// Every stream that has a schema: 4 contexts × 3 kinds, command results and the two summaries.
    pub fn all() -> Vec<Stream> {
        let kinds = [
            StreamKind::Commands,
            StreamKind::Events,
            StreamKind::Snapshots,
        ];
        Context::ALL
            .iter()
            .flat_map(|c| kinds.iter().map(move |k| Stream::Aggregate(*c, *k)))
            .chain([
                Stream::CommandResults,
                Stream::OrderSummary,
                Stream::ProductSummary,
            ])
            .collect()
    }

    /// The topic name without any prefix.
    pub fn base_name(self) -> String {
        match self {
            Stream::Aggregate(context, kind) => {
                format!(
                    "{}.{}.{}",
                    context.name(),
                    context.aggregate(),
                    kind.suffix()
                )
            }
            Stream::CommandResults => "command.results".to_owned(),
            Stream::OrderSummary => "orders.order.summary".to_owned(),
            Stream::ProductSummary => "catalog.product.summary".to_owned(),
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base_name())
    }
}

/// Resolves topic and subject names, optionally under a prefix that isolates a test run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// The production names, without a prefix.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names prefixed verbatim, e.g. `Topics::with_prefix("t123.")` gives `t123.command.results`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix in use (empty in production).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic name of a stream.
    pub fn topic(&self, stream: Stream) -> String {
        format!("{}{}", self.prefix, stream.base_name())
    }

    /// The registry subject of a stream's values (TopicNameStrategy).
    pub fn subject(&self, stream: Stream) -> String {
        value_subject(&self.topic(stream))
    }

    /// `<context>.<aggregate>.commands`.
    pub fn commands(&self, context: Context) -> String {
        self.topic(Stream::Aggregate(context, StreamKind::Commands))
    }

    /// `<context>.<aggregate>.events`.
    pub fn events(&self, context: Context) -> String {
        self.topic(Stream::Aggregate(context, StreamKind::Events))
    }

    /// `<context>.<aggregate>.snapshots` (compacted).
    pub fn snapshots(&self, context: Context) -> String {
        self.topic(Stream::Aggregate(context, StreamKind::Snapshots))
    }

    /// `command.results`.
    pub fn command_results(&self) -> String {
        self.topic(Stream::CommandResults)
    }

    /// `orders.order.summary` (compacted, public).
    pub fn order_summary(&self) -> String {
        self.topic(Stream::OrderSummary)
    }

    /// `catalog.product.summary` (compacted, public).
    pub fn product_summary(&self) -> String {
        self.topic(Stream::ProductSummary)
    }

    /// `<processor>.dlq`; dead letters keep their original bytes, so they have no schema.
    pub fn dlq(&self, processor: &str) -> String {
        format!("{}{}.dlq", self.prefix, processor)
    }

    /// Maps a topic name back to its stream, if it is one of ours under this prefix.
    pub fn stream_of(&self, topic: &str) -> Option<Stream> {
        let base = topic.strip_prefix(self.prefix.as_str())?;
        Stream::all().into_iter().find(|s| s.base_name() == base)
    }
}

/// TopicNameStrategy subject for a topic's values: `<topic>-value`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streams_index_is_its_position_in_the_list() {
        let all = Stream::all();
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.index(), i, "{s}");
        }
        assert_eq!(all.len(), 15);
    }

    #[test]
    fn production_names_follow_the_convention() {
        let t = Topics::new();
        assert_eq!(t.commands(Context::Catalog), "catalog.product.commands");
        assert_eq!(t.events(Context::Inventory), "inventory.stock.events");
        assert_eq!(t.snapshots(Context::Orders), "orders.order.snapshots");
        assert_eq!(t.events(Context::Payments), "payments.payment.events");
        assert_eq!(t.command_results(), "command.results");
        assert_eq!(t.dlq("order-saga"), "order-saga.dlq");
        assert_eq!(t.subject(Stream::CommandResults), "command.results-value");
    }

    #[test]
    fn prefix_isolates_topics_and_subjects() {
        let t = Topics::with_prefix("t123.");
        assert_eq!(
            t.commands(Context::Catalog),
            "t123.catalog.product.commands"
        );
        assert_eq!(
            t.subject(Stream::Aggregate(Context::Orders, StreamKind::Events)),
            "t123.orders.order.events-value"
        );
        assert_eq!(t.dlq("stock-processor"), "t123.stock-processor.dlq");
        assert_eq!(
            t.stream_of("t123.payments.payment.commands"),
            Some(Stream::Aggregate(Context::Payments, StreamKind::Commands))
        );
        assert_eq!(t.stream_of("payments.payment.commands"), None);
    }

    #[test]
    fn fifteen_streams_with_distinct_topics() {
        let all = Stream::all();
        assert_eq!(all.len(), 15);
        let mut names: Vec<String> = all.iter().map(|s| s.base_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 15);
    }
}
