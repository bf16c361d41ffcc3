//! The `rampart` command: run, check and demo.

mod demo;

/// mimalloc: the request path allocates many small, short-lived objects across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rampart_config::{LogFormat, Snapshot};
use rampart_proxy::{Phases, Proxy};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "The network edge of an API platform: load balancer, firewall, WAF, VPN, monitoring in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Rampart with a config file (SIGHUP or a change of the file reloads it).
    Run {
        #[arg(short, long, env = "RAMPART_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file: print every error with file:line:column, or a one-line summary.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Start Rampart with a built-in config and three demo backends on 127.0.0.1.
    Demo {
        /// Port of the demo's HTTP listener.
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => match rampart_config::load_file(&config) {
            Ok(snapshot) => run_blocking(snapshot, Some(config), None),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "{}: {} error(s); not starting",
                    config.display(),
                    errors.len()
                );
                ExitCode::from(1)
            }
        },
        Command::Demo { port } => demo::run(port),
    }
}

fn check(path: &Path) -> ExitCode {
    let snapshot = match rampart_config::load_file(path) {
        Ok(s) => s,
        Err(errors) => {
            println!("{errors}");
            println!("{}: {} error(s)", path.display(), errors.len());
            return ExitCode::from(1);
        }
    };
    // Certificates and keys are part of a valid config: load them as a reload would.
    let registry = rampart_proxy::upstream::Registry::new(1);
    match rampart_proxy::Runtime::build(
        Arc::new(snapshot),
        0,
        None,
        &registry,
        &rampart_proxy::Metrics::new(),
    ) {
        Ok(rt) => {
            println!("{}", rt.snapshot.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{}: {e}", path.display());
            }
            println!("{}: {} error(s)", path.display(), errors.len());
            ExitCode::from(1)
        }
    }
}

/// Called once the proxy is up (the demo prints its banner).
pub(crate) type OnStart = Box<dyn FnOnce(&Arc<Proxy>) + Send>;

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs until SIGTERM/SIGINT. The data plane starts its own worker threads (`runtime.threads`);
/// this runtime carries the control plane: signals, reloads, health checks, admin and metrics.
pub(crate) fn run_blocking(
    snapshot: Snapshot,
    config_path: Option<PathBuf>,
    on_start: Option<OnStart>,
) -> ExitCode {
    init_logging(snapshot.observability.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rampart-control")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(snapshot, config_path, on_start)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "rampart stopped");
            eprintln!("rampart: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(
    snapshot: Snapshot,
    config_path: Option<PathBuf>,
    on_start: Option<OnStart>,
) -> anyhow::Result<()> {
    // Signal handlers first, so a SIGHUP during start-up cannot kill the process.
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let admin = snapshot.admin.clone();
    let grace = snapshot.runtime.shutdown_grace;
    let proxy = Proxy::start(snapshot, config_path, Phases::default())
        .await
        .context("cannot start")?;
    if let Some(admin) = admin {
        let listener = rampart_proxy::server::bind(admin.address)
            .with_context(|| format!("cannot listen on {} for the admin API", admin.address))?;
        tracing::info!(address = %admin.address, "admin API listening");
        tokio::spawn(rampart_admin::serve(
            listener,
            proxy.clone(),
            admin.token.clone(),
        ));
    }
    if let Some(addr) = proxy.metrics_addr() {
        tracing::info!(address = %addr, "metrics listening");
    }
    if let Some(f) = on_start {
        f(&proxy);
    }
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = proxy.reload_from_file().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
    let left = proxy.shutdown(grace).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "grace period over; closing remaining connections"
        );
    }
    Ok(())
}
