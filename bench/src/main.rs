//! Benchmarks on the real stack. Each one measures, in the same run, the ceiling it is compared
//! with (a tool of Kafka's own, or `redis-benchmark` for the query API) and ends with `ratio: X`.
//!
//! Run through `scripts/bench NAME`, which builds in release mode and brings the stack up.

mod harness;
mod lag;
mod query_api;
mod saga;
mod throughput;

fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match name.as_str() {
        "command-throughput" => rt.block_on(throughput::run()),
        "saga" => rt.block_on(saga::run()),
        "projection-lag" => rt.block_on(lag::run()),
        "query-api" => rt.block_on(query_api::run()),
        other => anyhow::bail!(
            "unknown benchmark {other:?}; known: command-throughput, saga, projection-lag, query-api"
        ),
    }
}
