//! The pimsync binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use pimsync::config::Config;
use pimsync::daemon::{self, Daemon};
use pimsync::systemd;

mod cli;

/// The writer thread frees what the request threads allocated: glibc's malloc spent a tenth
/// of the daemon's CPU on that under ingest load (arena locking, consolidation).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Mark products pending again for targets, and follow the daemon applying them.
    Resync(cli::resync::ResyncArgs),
    /// Per target: pending, in flight, dead, applied in the last hour, last error; the store.
    Status(cli::status::StatusArgs),
    /// Dead-lettered rows: list, show, retry, discard.
    #[command(subcommand)]
    Dead(cli::dead::DeadCommand),
    /// Stored webhooks: list, show, replay.
    #[command(subcommand)]
    Inbox(cli::inbox::InboxCommand),
    /// Re-enable a target its receiver disabled (410 Gone), or disable one by hand.
    #[command(subcommand)]
    Target(cli::target::TargetCommand),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; its simulated outage would otherwise flood the terminal
    // with (expected) retry warnings.
    let default_filter = match cli.command {
        Command::Demo { .. } => "error",
        _ => "info",
    };
    init_logging(cli.log_format, default_filter);
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
            // Taken before the runtime starts its threads: it edits the environment.
            let activated = pimsync::systemd::activated_listener();
            runtime(daemon::worker_threads(loaded.server.worker_threads))?
                .block_on(serve(loaded, activated))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reconcile {
            config,
            source,
            since,
        } => {
            let loaded = Config::load(&config)
                .map_err(|errors| anyhow::anyhow!("{} is invalid:\n{errors}", config.display()))?;
            let threads = daemon::worker_threads(loaded.server.worker_threads);
            runtime(threads)?.block_on(pimsync::pull::cli::run(loaded, &source, since.as_deref()))
        }
        Command::Demo { edits } => {
            runtime(daemon::worker_threads(None))?.block_on(pimsync::demo::run(edits))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Resync(args) => cli::resync::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Dead(command) => cli::dead::run(command),
        Command::Inbox(command) => cli::inbox::run(command),
        Command::Target(command) => cli::target::run(command),
        Command::Completions { shell } => Ok(cli::completions(shell, &mut Cli::command())),
    }
}

async fn serve(config: Config, activated: Option<std::net::TcpListener>) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let listen = config.server.listen;
    let admin_listen = config.admin.as_ref().map(|admin| admin.listen);
    let mut daemon = Daemon::start(config).await.context("starting pimsync")?;
    if let Some(admin_listen) = admin_listen {
        let listener = daemon::bind(admin_listen)
            .await
            .with_context(|| format!("binding the admin API to {admin_listen}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        println!("pimsync admin listening on {local}");
        daemon = daemon.with_admin_listener(listener);
    }
    let listener = match activated {
        Some(socket) => {
            socket
                .set_nonblocking(true)
                .context("preparing the socket systemd passed")?;
            tokio::net::TcpListener::from_std(socket).context("using the socket systemd passed")?
        }
        None => daemon::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?,
    };
    let local = listener.local_addr().context("reading the bound address")?;
    // Tests and scripts read this line to find a port chosen with `:0`.
    println!("pimsync listening on {local}");
    tracing::info!(%local, store = %daemon.store().path().display(), "pimsync ready");
    if let Some(interval) = systemd::watchdog_interval() {
        let liveness = daemon.liveness();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if liveness.check().await {
                    systemd::notify("WATCHDOG=1");
                } else {
                    tracing::error!("unhealthy: not pinging the systemd watchdog");
                }
            }
        });
    }
    systemd::notify(&format!("READY=1\nSTATUS=receiving webhooks on {local}"));
    daemon
        .serve(listener, async {
            shutdown.await;
            systemd::notify("STOPPING=1");
        })
        .await?;
    tracing::info!("pimsync stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now (a signal that arrives before the daemon
/// serves must still mean "shut down gracefully", not the default "die") and returns the
/// future that resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
