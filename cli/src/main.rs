//! The `streamcart` binary: one subcommand per role, thin wrappers over the library crates.

mod config;
mod demo;
mod process;
mod project;
mod sagas;
mod serve;
mod startup;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use streamcart_kafka_runtime::shutdown;
use streamcart_schemas::topics::Topics;

use crate::config::Config;

/// An event-sourced commerce backbone on Kafka.
#[derive(Debug, Parser)]
#[command(name = "streamcart", version)]
struct Cli {
    /// TOML configuration file (environment variables `STREAMCART_*` override it).
    #[arg(long, global = true, env = "STREAMCART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the command processor of one aggregate type.
    Process {
        /// Aggregate type.
        aggregate: AggregateKind,
    },
    /// Runs the order saga: every reaction and the order deadline timer.
    Sagas,
    /// Runs the live projector of one read model.
    Project {
        /// Read model.
        name: project::ProjectionKind,
    },
    /// Read-model administration.
    Projector {
        #[command(subcommand)]
        action: ProjectorAction,
    },
    /// Runs the HTTP edge: query API and command gateway.
    Serve,
    /// Runs every processor, the saga, every projector and the HTTP edge in one process, for a
    /// single machine.
    Run,
    /// Seeds a small catalog, places orders, checks their outcomes against the announced ones and
    /// shows them as they arrived in PostgreSQL (needs `run` and the Connect pipelines).
    Demo,
    /// Prints an HS256 bearer token signed with the configured secret, for development.
    Token {
        /// The token's subject (a customer's id for customers).
        #[arg(long)]
        sub: String,
        /// Roles, comma-separated: catalog_admin, customer, operator.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Schema registry administration.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
}

#[derive(Debug, Subcommand)]
enum ProjectorAction {
    /// Replays a read model from offset zero into fresh tables, then switches readers to them.
    Rebuild {
        /// Read model.
        name: project::ProjectionKind,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasAction {
    /// Registers every schema under its subject with BACKWARD_TRANSITIVE compatibility.
    Register,
}

/// The aggregate types with a command processor.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AggregateKind {
    /// catalog / Product.
    Product,
    /// inventory / Stock.
    Stock,
    /// orders / Order.
    Order,
    /// payments / Payment.
    Payment,
}

/// Every role in one process: one shutdown token, and the first role to fail stops the rest.
async fn run_all(cfg: Config) -> anyhow::Result<()> {
    let token = shutdown::on_signals();
    let mut roles = tokio::task::JoinSet::new();
    for kind in [
        AggregateKind::Product,
        AggregateKind::Stock,
        AggregateKind::Order,
        AggregateKind::Payment,
    ] {
        let (cfg, token) = (cfg.clone(), token.clone());
        roles.spawn(async move {
            let out = process::run(cfg, kind, token.clone())
                .await
                .with_context(|| format!("{kind:?} processor"));
            token.cancel();
            out
        });
    }
    let (c, t) = (cfg.clone(), token.clone());
    roles.spawn(async move {
        let out = sagas::run(c, t.clone()).await.context("sagas");
        t.cancel();
        out
    });
    for kind in project::ProjectionKind::ALL {
        let (c, t) = (cfg.clone(), token.clone());
        roles.spawn(async move {
            let out = project::run(c, kind, t.clone()).await;
            t.cancel();
            out
        });
    }
    let (c, t) = (cfg.clone(), token.clone());
    roles.spawn(async move {
        let out = serve::run(c, t.clone()).await.context("edge");
        t.cancel();
        out
    });
    let mut first_error = None;
    while let Some(joined) = roles.join_next().await {
        if let Err(e) = joined.context("role task").and_then(|r| r) {
            tracing::error!(error = %format!("{e:#}"), "role stopped with an error");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Process { .. }
            | Command::Sagas
            | Command::Project { .. }
            | Command::Projector { .. }
            | Command::Run => startup::register_contract(&cfg).await?,
            // The edge starts without the registry too (its commands answer 503 meanwhile), so
            // it registers beside serving instead of before.
            Command::Serve => {
                let cfg = cfg.clone();
                tokio::spawn(async move {
                    if let Err(e) = startup::register_contract(&cfg).await {
                        tracing::warn!(error = %format!("{e:#}"), "schema contract not registered");
                    }
                });
            }
            _ => {}
        }
        // The edge is left out: it must start even while Kafka is down.
        if matches!(
            cli.command,
            Command::Process { .. } | Command::Sagas | Command::Project { .. } | Command::Run
        ) {
            startup::prepare_topics(&cfg).await?;
        }
        match cli.command {
            Command::Process { aggregate } => {
                process::run(cfg, aggregate, shutdown::on_signals()).await
            }
            Command::Sagas => sagas::run(cfg, shutdown::on_signals()).await,
            Command::Project { name } => project::run(cfg, name, shutdown::on_signals()).await,
            Command::Projector {
                action: ProjectorAction::Rebuild { name },
            } => project::rebuild(cfg, name, shutdown::on_signals()).await,
            Command::Serve => serve::run(cfg, shutdown::on_signals()).await,
            Command::Run => run_all(cfg).await,
            Command::Demo => demo::run(cfg).await,
            Command::Token { sub, roles, ttl } => {
                let secret = cfg.api.jwt.hs256_secret.as_deref().context(
                    "no HS256 secret configured (api.jwt.hs256_secret or STREAMCART_JWT_HS256_SECRET)",
                )?;
                let token = streamcart_api::auth::mint_hs256(secret, &sub, &roles, ttl)
                    .context("signing the token")?;
                println!("{token}");
                Ok(())
            }
            Command::Schemas {
                action: SchemasAction::Register,
            } => {
                let topics = Topics::with_prefix(cfg.topic_prefix.clone());
                let report = streamcart_schemas::register::register_all(&cfg.registry_url, &topics)
                    .await
                    .context("registering schemas")?;
                for s in &report.subjects {
                    let version = s.version.map_or_else(|| "-".to_owned(), |v| v.to_string());
                    println!(
                        "{:<60} id {:>6}  version {:>4}  {:?}",
                        s.subject, s.schema_id, version, s.outcome
                    );
                }
                println!(
                    "{} subjects, {} newly registered",
                    report.subjects.len(),
                    report.newly_registered()
                );
                Ok(())
            }
        }
    })
}
