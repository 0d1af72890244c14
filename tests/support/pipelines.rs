//! Kafka Connect pipelines of one test world: registering the sinks as an operator would, and
//! comparing what reached PostgreSQL with the ScyllaDB read model.

use std::collections::HashMap;

use streamcart_projectors::CassandraStore;

use crate as support;
use crate::read_models::Expected;

/// `scripts/connect`.
pub fn connect_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/connect")
}

/// Runs `scripts/connect <action>` for this world's prefix, as an operator would.
pub fn run_connect_script(world_prefix: &str, action: &str) -> std::process::Output {
    std::process::Command::new(connect_script())
        .arg(action)
        .env("STREAMCART_TOPIC_PREFIX", world_prefix)
        .env("STREAMCART_CONNECT_URL", support::connect_url())
        .env("STREAMCART_POSTGRES_URL", support::postgres_url())
        .env("STREAMCART_REGISTRY_URL", support::registry_url())
        .env("STREAMCART_CONNECT_WAIT", "90")
        .output()
        .expect("run scripts/connect")
}

/// Removes this world's connectors and tables however the test ends, so a failed run does not
/// leave sinks consuming on the shared Connect worker.
#[derive(Debug)]
pub struct Pipelines {
    /// The world's topic prefix.
    pub prefix: String,
    /// PostgreSQL tables the sinks write.
    pub tables: Vec<String>,
}

impl Drop for Pipelines {
    fn drop(&mut self) {
        let out = run_connect_script(&self.prefix, "delete");
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        let tables = self.tables.clone();
        // Drop runs inside the test's runtime; a fresh thread may start its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&support::postgres_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    for t in tables {
                        let _ = client
                            .batch_execute(&format!("drop table if exists {t}"))
                            .await;
                    }
                }
            });
        })
        .join();
    }
}

/// (status, total, version) per order id, as the PostgreSQL table holds them, and the row count.
pub async fn pg_orders(
    pg: &tokio_postgres::Client,
    table: &str,
) -> (HashMap<String, (String, i64, i64)>, usize) {
    let rows = match pg
        .query(
            &format!("select order_id, status, total_minor, version from {table}"),
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        // The sink creates the table with its first batch.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return (HashMap::new(), 0);
        }
        Err(e) => panic!("reading {table}: {e}"),
    };
    let n = rows.len();
    let map = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (
                    r.get::<_, String>(1),
                    r.get::<_, i64>(2),
                    r.get::<_, i64>(3),
                ),
            )
        })
        .collect();
    (map, n)
}

/// Differences between the PostgreSQL rows and the ScyllaDB orders read model, for every order
/// the events know.
pub async fn pg_differences(
    pg: &tokio_postgres::Client,
    table: &str,
    store: &CassandraStore,
    x: &Expected,
) -> Vec<String> {
    let (rows, n) = pg_orders(pg, table).await;
    let mut diffs = Vec::new();
    if n != x.orders.len() {
        diffs.push(format!("{n} rows in {table}, {} orders", x.orders.len()));
    }
    for id in x.orders.keys() {
        let Some(scylla) = store.order(id).await.expect("read order") else {
            diffs.push(format!("{id} not in ScyllaDB"));
            continue;
        };
        let want = (
            scylla.status.as_str().to_owned(),
            scylla.total_minor,
            scylla.version as i64,
        );
        match rows.get(id) {
            Some(got) if *got == want => {}
            other => diffs.push(format!("{id}: postgres {other:?}, scylla {want:?}")),
        }
    }
    diffs
}
