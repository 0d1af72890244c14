//! The `streamcart` binary: one subcommand per role, thin wrappers over the library crates.

mod config;
mod demo;
mod process;
mod project;
mod sagas;
mod serve;
mod startup;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use streamcart_kafka_runtime::shutdown;
use streamcart_schemas::topics::Topics;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// An event-sourced commerce backbone on Kafka.
#[derive(Debug, Parser)]
#[command(name = "streamcart", version)]
struct Cli {
    /// TOML configuration file; environment variables override it, `STREAMCART_<SECTION>__<KEY>`
    /// for any key (docs/configuration.md).
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
    /// single machine; a role that fails is restarted with backoff while the others keep running.
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
    /// Prints the effective configuration (defaults, then `--config`, then the environment)
    /// as TOML, with secrets masked; fails, naming the key, on a value out of bounds.
    Config,
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

impl AggregateKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Product => "product",
            AggregateKind::Stock => "stock",
            AggregateKind::Order => "order",
            AggregateKind::Payment => "payment",
        }
    }
}

/// How long `run` waits, after SIGTERM, for its roles to finish their open batches and stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long the process waits, once its work is done, for stray blocking threads.
const RUNTIME_GRACE: Duration = Duration::from_secs(5);

/// Every role in one process, each supervised: a role that fails is restarted with backoff
/// while the others keep running; SIGTERM stops them all within [`SHUTDOWN_GRACE`].
async fn run_all(cfg: Config) -> anyhow::Result<()> {
    let token = shutdown::on_signals();
    let counters = supervise::RestartCounters::default();
    let policy = supervise::RestartPolicy::default();
    let mut roles = tokio::task::JoinSet::new();
    let mut add = |name: String, start: Box<dyn FnMut(CancellationToken) -> RoleFuture + Send>| {
        roles.spawn(supervise::supervise(
            name,
            policy,
            counters.clone(),
            token.clone(),
            start,
        ));
    };
    for kind in [
        AggregateKind::Product,
        AggregateKind::Stock,
        AggregateKind::Order,
        AggregateKind::Payment,
    ] {
        let cfg = cfg.clone();
        add(
            format!("{} processor", kind.name()),
            Box::new(move |t| Box::pin(process::run(cfg.clone(), kind, t))),
        );
    }
    let c = cfg.clone();
    add(
        "sagas".to_owned(),
        Box::new(move |t| Box::pin(sagas::run(c.clone(), t))),
    );
    for kind in project::ProjectionKind::ALL {
        let c = cfg.clone();
        add(
            format!("{kind:?} projector").to_lowercase(),
            Box::new(move |t| Box::pin(project::run(c.clone(), kind, t))),
        );
    }
    let c = cfg.clone();
    add(
        "edge".to_owned(),
        Box::new(move |t| Box::pin(serve::run(c.clone(), t))),
    );
    token.cancelled().await;
    let stopped = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while roles.join_next().await.is_some() {}
    })
    .await;
    let restarts: Vec<String> = counters
        .all()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(role, n)| format!("{role}: {n}"))
        .collect();
    if !restarts.is_empty() {
        tracing::info!(restarts = %restarts.join(", "), "restarts while running");
    }
    if stopped.is_err() {
        roles.abort_all();
        anyhow::bail!(
            "{} role(s) did not stop within {} s of the shutdown request",
            roles.len(),
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// One attempt of a supervised role.
type RoleFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

/// The role a command runs, for its exit message.
fn role_of(command: &Command) -> String {
    match command {
        Command::Process { aggregate } => format!("process {}", aggregate.name()),
        Command::Sagas => "sagas".to_owned(),
        Command::Project { name } => format!("project {name:?}").to_lowercase(),
        Command::Projector {
            action: ProjectorAction::Rebuild { name },
        } => format!("projector rebuild {name:?}").to_lowercase(),
        Command::Serve => "serve".to_owned(),
        Command::Run => "run".to_owned(),
        Command::Demo => "demo".to_owned(),
        Command::Token { .. } => "token".to_owned(),
        Command::Config => "config".to_owned(),
        Command::Schemas { .. } => "schemas register".to_owned(),
    }
}

/// A role that ends with an error exits 1 with one line naming the role and the cause; the log
/// above it has the details.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let role = role_of(&cli.command);
    // The configuration says how to log, so it is read before logging starts; a refused one
    // is reported on standard error like any failure.
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("streamcart {role}: {}", one_line(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    init_logging(&cfg.log);
    let service = format!("streamcart-{}", role.replace(' ', "-"));
    // Kept for the life of the process: dropping it flushes the spans still queued.
    let _telemetry = match streamcart_kafka_runtime::telemetry::init(&cfg.tracing, &service) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("streamcart {role}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run_command(cli, cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(role = %role, error = %format!("{e:#}"), "stopped with an error");
            eprintln!("streamcart {role}: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(log: &config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        config::LogFormat::Text => builder.init(),
        config::LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Starts the role's `/metrics` and `/health/*` listener on `metrics.listen`, before anything
/// that may take long (registering schemas, creating topics), so a probe sees the role starting.
/// Commands that are no long-running role start none.
async fn serve_metrics(
    cfg: &Config,
    command: &Command,
) -> anyhow::Result<Option<streamcart_kafka_runtime::metrics::TargetFile>> {
    let expects_loops = match command {
        Command::Process { .. }
        | Command::Sagas
        | Command::Project { .. }
        | Command::Projector { .. }
        | Command::Run => true,
        Command::Serve => false,
        _ => return Ok(None),
    };
    // The listener lives as long as the process: it must answer while the role shuts down.
    let addr = streamcart_kafka_runtime::metrics::serve(
        &cfg.metrics.listen,
        expects_loops,
        CancellationToken::new(),
    )
    .await
    .context("starting the metrics listener")?;
    let Some(dir) = cfg.metrics.prometheus_targets_dir.as_deref() else {
        return Ok(None);
    };
    // Prometheus finding a role is worth a warning, not a refusal to run.
    match streamcart_kafka_runtime::metrics::TargetFile::announce(
        dir,
        addr,
        &role_of(command),
        &cfg.instance_id,
        &cfg.topic_prefix,
    ) {
        Ok(file) => Ok(Some(file)),
        Err(e) => {
            tracing::warn!(dir, error = %e, "no Prometheus target file written");
            Ok(None)
        }
    }
}

fn run_command(cli: Cli, cfg: Config) -> anyhow::Result<()> {
    if let Command::Config = cli.command {
        print!(
            "{}",
            cfg.to_masked_toml().context("printing the configuration")?
        );
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let out = rt.block_on(async move {
        let _target = serve_metrics(&cfg, &cli.command).await?;
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
                let mut registering = tokio::spawn(async move {
                    if let Err(e) = startup::register_contract(&cfg).await {
                        tracing::warn!(error = %format!("{e:#}"), "schema contract not registered");
                    }
                });
                // With the registry up this takes a moment, and commands sent right after the
                // edge starts find their schemas; with it down, the edge serves anyway.
                if tokio::time::timeout(Duration::from_secs(30), &mut registering)
                    .await
                    .is_err()
                {
                    tracing::warn!("schema contract still registering; serving meanwhile");
                }
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
        if matches!(
            cli.command,
            Command::Process { .. } | Command::Sagas | Command::Run
        ) {
            startup::start_hanging_sweep(&cfg)?;
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
            Command::Config => Ok(()),
            Command::Token { sub, roles, ttl } => {
                let secret = cfg.api.jwt.hs256_secret.as_deref().context(
                    "no HS256 secret configured (api.jwt.hs256_secret or STREAMCART_JWT_HS256_SECRET)",
                )?;
                let token = streamcart_api::auth::mint_hs256(secret, &sub, &roles, ttl)
                    .context("minting the token")?;
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
    });
    // A blocking thread that ignores shutdown (a hung client call) must not keep the process
    // alive after its work is done.
    rt.shutdown_timeout(RUNTIME_GRACE);
    out
}
