//! Benchmarks on the real stack. Each one measures, in the same run, the ceiling it is compared
//! with (a tool of Kafka's own, or `redis-benchmark` for the query API) and ends with `ratio: X`.
//!
//! Run through `scripts/bench NAME`, which builds in release mode and brings the stack up.
//!
//! Every run ends by itself: within `BENCH_TIMEOUT_SECONDS` (a default per benchmark, sized for
//! the default workload) and sooner when a wait stops progressing or a role exits, with an error
//! naming what stalled and which consumer group lags on which topic.

mod harness;
mod hops;
mod lag;
mod query_api;
mod report;
mod restore;
mod saga;
mod throughput;

/// Default time limit of a whole run per benchmark, in seconds, at the default sizes; override
/// with `BENCH_TIMEOUT_SECONDS` (needed for larger sizes).
fn default_limit(name: &str) -> u64 {
    match name {
        "command-throughput" => 3_600,
        "saga" => 3_600,
        "projection-lag" => 900,
        "query-api" => 1_800,
        "restore" => 1_800,
        _ => 600,
    }
}

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let limit = std::time::Duration::from_secs(harness::env_num(
        "BENCH_TIMEOUT_SECONDS",
        default_limit(&name),
    ));
    let out = rt.block_on(async {
        match name.as_str() {
            "command-throughput" => harness::bounded(&name, limit, throughput::run()).await,
            "saga" => harness::bounded(&name, limit, saga::run()).await,
            "projection-lag" => harness::bounded(&name, limit, lag::run()).await,
            "query-api" => harness::bounded(&name, limit, query_api::run()).await,
            "restore" => harness::bounded(&name, limit, restore::run()).await,
            other => anyhow::bail!(
                "unknown benchmark {other:?}; known: command-throughput, saga, projection-lag, query-api, restore"
            ),
        }
    });
    // Threads still blocked on a stalled call must not keep the process from ending.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    out
}
