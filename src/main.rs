//! The pimsync binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use pimsync::config::Config;
use pimsync::daemon::{self, Daemon};

#[derive(Parser)]
#[command(
    name = "pimsync",
    version,
    about = "Keeps e-commerce targets in step with a PIM"
)]
struct Cli {
    /// Log format: human-readable text, or JSON lines for journald/ELK.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: receive webhooks and store them durably.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file, report every problem, and print a summary.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Pull a source's catalog from the PIM and commit what differs (resumes an
    /// interrupted run of the same kind).
    Reconcile {
        #[arg(long, short)]
        config: PathBuf,
        /// The source (its `[sources.api]`) to pull.
        #[arg(long)]
        source: String,
        /// Only products updated since: a time (RFC 3339, "YYYY-MM-DD HH:MM:SS" UTC,
        /// YYYY-MM-DD), a duration ago (24h), or "last" (since the last completed
        /// reconcile). Without it, the whole catalog, reporting what the PIM no longer has.
        #[arg(long)]
        since: Option<String>,
    },
    /// Run a self-contained demo on a temporary database with built-in simulated targets.
    Demo {
        /// How many product edits the simulated PIM sends.
        #[arg(long, default_value_t = 2000)]
        edits: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(loaded) => {
                println!("{} is valid\n{}", config.display(), loaded.summary());
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!(
                    "{} has {} problem(s):\n{errors}",
                    config.display(),
                    errors.0.len()
                );
                Ok(ExitCode::from(2))
            }
        },
        Command::Serve { config } => {
            let loaded = Config::load(&config)
                .map_err(|errors| anyhow::anyhow!("{} is invalid:\n{errors}", config.display()))?;
            runtime()?.block_on(serve(loaded))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile {
            config,
            source,
            since,
        } => {
            let loaded = Config::load(&config)
                .map_err(|errors| anyhow::anyhow!("{} is invalid:\n{errors}", config.display()))?;
            runtime()?.block_on(pimsync::pull::cli::run(loaded, &source, since.as_deref()))
        }
        Command::Demo { edits } => {
            runtime()?.block_on(pimsync::demo::run(edits))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let daemon = Daemon::start(config).await.context("starting pimsync")?;
    let listener = daemon::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    // Tests and scripts read this line to find a port chosen with `:0`.
    println!("pimsync listening on {local}");
    tracing::info!(%local, store = %daemon.store().path().display(), "pimsync ready");
    daemon.serve(listener, shutdown_signal()).await?;
    tracing::info!("pimsync stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
