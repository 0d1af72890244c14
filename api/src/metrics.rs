//! Counters of what the edge did, served at `/metrics` in Prometheus' text format. They are how
//! operators (and the tests) see the cache and single-flight at work.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// The edge's counters, all monotonic.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Prometheus text exposition of every counter.
            pub fn render(&self) -> String {
                let mut out = String::new();
                $(
                    let _ = writeln!(out, "# HELP streamcart_api_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE streamcart_api_{} counter", stringify!($name));
                    let _ = writeln!(
                        out,
                        "streamcart_api_{} {}",
                        stringify!($name),
                        self.$name.load(Ordering::Relaxed)
                    );
                )*
                out
            }
        }
    };
}

counters! {
    product_cache_hits: "Product reads answered from Redis.",
    product_negative_hits: "Product reads answered by a cached not-found.",
    product_cache_misses: "Product reads that found nothing in Redis.",
    product_store_loads: "Product loads from ScyllaDB (collapsed misses count once).",
    cache_failures: "Redis calls that failed or timed out.",
    store_failures: "ScyllaDB calls that failed or timed out.",
    commands_sent: "Commands produced to Kafka.",
    commands_answered: "Commands whose result arrived in time.",
    commands_pending: "Commands answered 202 because their result was late.",
    kafka_failures: "Commands Kafka did not take.",
}

/// Adds one to `counter`.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
