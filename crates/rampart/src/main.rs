//! The `rampart` command: run, check, upgrade and demo.

mod ban;
mod demo;
mod upgrade;
mod waf;

/// mimalloc: the request path allocates many small, short-lived objects across threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rampart_config::{LogFormat, Snapshot};
use rampart_proxy::{InheritedSocket, Phases, Proxy, SocketKind, SocketRole};

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
        /// Take the listening sockets over from the Rampart process serving
        /// `runtime.upgrade_socket`; it stops accepting and drains once this one serves.
        #[arg(long)]
        takeover: bool,
    },
    /// Replace the running process without closing a listening socket: start this binary
    /// with `run --takeover`, wait until it serves, then return (the old process drains).
    Upgrade {
        #[arg(short, long, env = "RAMPART_CONFIG")]
        config: PathBuf,
        /// How long the new process may take to start serving.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Kernel firewall: print the nftables table a config gives.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// Manage bans of the running process (through its admin API).
    Ban {
        /// The config of the running process (its [admin] section is used).
        #[arg(short, long, env = "RAMPART_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: ban::BanCommand,
    },
    /// Web application firewall tools.
    Waf {
        #[command(subcommand)]
        command: WafCommand,
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

#[derive(Subcommand)]
enum WafCommand {
    /// Run one request (a file as sent on the wire) through a rule set and explain every rule
    /// that matched. Exit status 0: passed, 1: blocked, 2: rules or request unreadable.
    Test(waf::TestArgs),
}

#[derive(Subcommand)]
enum FirewallCommand {
    /// Print the nftables ruleset (Rampart's table) this config applies, without applying it.
    Plan {
        #[arg(short, long, env = "RAMPART_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Upgrade { config, timeout } => upgrade::run(&config, timeout),
        Command::Run { config, takeover } => match rampart_config::load_file(&config) {
            Ok(snapshot) => run_blocking(snapshot, Some(config), None, takeover),
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
        Command::Waf {
            command: WafCommand::Test(args),
        } => waf::test(&args),
        Command::Firewall {
            command: FirewallCommand::Plan { config },
        } => firewall_plan(&config),
        Command::Ban { config, command } => match config {
            Some(config) => ban::run(&config, command),
            None => {
                eprintln!("rampart ban: --config FILE (or RAMPART_CONFIG) is required");
                ExitCode::from(2)
            }
        },
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

/// `rampart firewall plan`: the table the config gives, with empty ban sets.
fn firewall_plan(path: &Path) -> ExitCode {
    let snapshot = match rampart_config::load_file(path) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            return ExitCode::from(1);
        }
    };
    let registry = rampart_proxy::upstream::Registry::new(1);
    let rt = match rampart_proxy::Runtime::build(
        Arc::new(snapshot),
        0,
        None,
        &registry,
        &rampart_proxy::Metrics::new(),
    ) {
        Ok(rt) => rt,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: {e}", path.display());
            }
            return ExitCode::from(1);
        }
    };
    let off = rampart_config::Nftables {
        table: "rampart".into(),
        reconcile_interval: std::time::Duration::from_secs(10),
        ban_all_traffic: false,
        nft: "nft".into(),
    };
    let settings = rt.snapshot.firewall.nftables.clone();
    if settings.is_none() {
        eprintln!(
            "note: kernel enforcement is off in {} ([firewall.nftables] enabled = false); this is the table it would apply",
            path.display()
        );
    }
    let plan = rampart_proxy::kernel::plan(
        &rt.snapshot,
        &rt.firewall,
        settings.as_ref().unwrap_or(&off),
        &|_| None,
        &[],
    );
    println!(
        "# Rampart's nftables table for {}; the running process adds bans to banned4/banned6.",
        path.display()
    );
    print!("{}", rampart_firewall::nft::render(&plan));
    ExitCode::SUCCESS
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
    takeover: bool,
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
    match runtime.block_on(serve(snapshot, config_path, on_start, takeover)) {
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
    takeover: bool,
) -> anyhow::Result<()> {
    // Signal handlers first, so a SIGHUP during start-up cannot kill the process.
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let admin = snapshot.admin.clone();
    let query_api = snapshot.observability.query.clone();
    let grace = snapshot.runtime.shutdown_grace;
    let upgrade_socket = snapshot.runtime.upgrade_socket.clone();
    // Taking over: the running process's sockets, received before anything binds.
    let (takeover, handed_over) = if takeover {
        let path = upgrade_socket
            .clone()
            .context("--takeover needs runtime.upgrade_socket in the config")?;
        let (takeover, sockets) = tokio::task::spawn_blocking(move || {
            rampart_handover::Takeover::connect::<SocketRole>(&path)
        })
        .await
        .context("hand-off task")??;
        tracing::info!(
            from = takeover.pid,
            sockets = sockets.len(),
            "received the listening sockets of the running process"
        );
        let sockets = sockets
            .into_iter()
            .map(|(role, fd)| InheritedSocket {
                role: Some(role),
                socket: std::net::TcpListener::from(fd),
            })
            .collect();
        (Some(takeover), sockets)
    } else {
        (None, Vec::new())
    };
    // Without a takeover, refuse to start while another process answers on the upgrade
    // socket: it would be serving the same ports.
    let mut handover = match (&upgrade_socket, &takeover) {
        (Some(path), None) => Some(
            rampart_handover::HandoverSocket::bind(path)
                .with_context(|| format!("upgrade socket {}", path.display()))?,
        ),
        _ => None,
    };
    let proxy = Proxy::start_with_sockets(snapshot, config_path, Phases::default(), handed_over)
        .await
        .context("cannot start")?;
    let mut admin_task = None;
    if let Some(admin) = admin {
        let listener = proxy
            .service_socket(SocketKind::Admin, admin.address)
            .with_context(|| format!("cannot listen on {} for the admin API", admin.address))?;
        tracing::info!(address = %admin.address, "admin API listening");
        admin_task = Some(tokio::spawn(rampart_admin::serve(
            listener,
            proxy.clone(),
            admin.token.clone(),
        )));
    }
    let mut query_task = None;
    if let Some(q) = query_api {
        let listener = proxy
            .service_socket(SocketKind::Query, q.address)
            .with_context(|| format!("cannot listen on {} for the query API", q.address))?;
        tracing::info!(address = %q.address, remote_write = q.remote_write_receiver, admin = q.admin_api, "query API listening");
        let api = rampart_tsdb::api::Api {
            head: Arc::new(rampart_tsdb::Head::new(q.max_series)),
            limits: rampart_tsdb::remote_write::Limits {
                max_body: 16 << 20,
                max_decoded: 32 << 20,
                max_series: 200_000,
                ..Default::default()
            },
            remote_write: q.remote_write_receiver,
            admin: q.admin_api,
        };
        query_task = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, rampart_tsdb::api::router(api)).await {
                tracing::error!(error = %e, "query API stopped");
            }
        }));
    }
    proxy.close_unused_inherited(&[SocketKind::Admin, SocketKind::Metrics, SocketKind::Query]);
    if let Some(addr) = proxy.metrics_addr() {
        tracing::info!(address = %addr, "metrics listening");
    }
    if let Some(takeover) = takeover {
        // Serving now: the old process may stop accepting and drain.
        let old = tokio::task::spawn_blocking(move || takeover.finish())
            .await
            .context("hand-off task")?
            .context("the old process did not confirm the hand-off")?;
        tracing::info!(old_pid = old, "took over; the old process drains");
        if let Some(path) = &upgrade_socket {
            handover = Some(
                rampart_handover::HandoverSocket::bind_replacing(path)
                    .with_context(|| format!("upgrade socket {}", path.display()))?,
            );
        }
        upgrade::notify_systemd(&format!("MAINPID={}\nREADY=1", std::process::id()));
    } else {
        upgrade::notify_systemd("READY=1");
    }
    if let Some(f) = on_start {
        f(&proxy);
    }
    let (upgraded_tx, mut upgraded) = tokio::sync::mpsc::channel::<u32>(1);
    let takeover_busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handed_over = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                let _ = proxy.reload_from_file().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(request) = accept_handover(handover.as_ref()) => {
                tokio::spawn(upgrade::answer(
                    request,
                    proxy.clone(),
                    takeover_busy.clone(),
                    upgraded_tx.clone(),
                ));
            }
            Some(pid) = upgraded.recv() => {
                tracing::info!(new_pid = pid, "handed over to a new process");
                proxy.hand_over_kernel_state();
                handed_over = true;
                break;
            }
        }
    }
    upgrade::notify_systemd("STOPPING=1");
    // No more takeovers. After one, the socket file is the new process's.
    if let Some(handover) = handover.take() {
        if handed_over {
            handover.close_after_takeover();
        } else {
            drop(handover);
        }
    }
    if let Some(task) = admin_task {
        task.abort();
    }
    if let Some(task) = query_task {
        task.abort();
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

/// The next client of the upgrade socket; never resolves without one.
async fn accept_handover(
    handover: Option<&rampart_handover::HandoverSocket>,
) -> Option<rampart_handover::Request> {
    let Some(handover) = handover else {
        return std::future::pending().await;
    };
    match handover.accept().await {
        Ok(request) => Some(request),
        Err(e) => {
            tracing::warn!(error = %e, "upgrade socket: accept failed");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            None
        }
    }
}
