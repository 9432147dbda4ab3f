//! The `hookd` binary: runs the control plane or a dispatcher, and is the command-line client
//! of the control plane's gRPC API.

mod client;
mod settings;
mod telemetry;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

/// mimalloc instead of glibc's allocator: a delivery allocates and frees many short-lived
/// buffers across threads, and glibc's malloc/free took about a fifth of the dispatcher's CPU
/// (perf, benchmark scenario 1).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookd",
    version,
    about = "Webhook delivery: control plane, dispatcher and client"
)]
struct Cli {
    /// TOML settings file; `HOOKD_*` environment variables override it.
    #[arg(long, global = true, env = "HOOKD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (gRPC API, database owner).
    Control,
    /// Run a dispatcher (fan-out and HTTP delivery); run as many as the load needs.
    Dispatcher,
    /// Apply pending database migrations to the control plane's `database_url` and exit
    /// (the control plane also migrates when it starts).
    Migrate,
    #[command(flatten)]
    Client(client::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Control => run_control(cli.config).await,
            Command::Dispatcher => run_dispatcher(cli.config).await,
            Command::Migrate => run_migrate(cli.config).await,
            Command::Client(command) => client::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds the service's listener first, so a taken port fails before any connection is made.
async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Runs `work` with logs and (when configured) trace export set up for `service`, and
/// exports the spans still buffered whatever `work` returns.
async fn traced(
    service: &'static str,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let telemetry = telemetry::init(service)?;
    let result = work.await;
    telemetry.shutdown().await;
    result
}

async fn run_control(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    traced("hookd-control", async {
        let config: hookd_control::Config = settings::load(config_file.as_deref())?;
        let (listener, addr) = bind(config.listen).await?;
        let control = hookd_control::ControlPlane::start(config).await?;
        if let Some(metrics) = control.metrics_addr() {
            println!("hookd control metrics on {metrics}");
        }
        if let Some(console) = control.console_addr() {
            println!("hookd control console on http://{console}");
        }
        // The one line on stdout: scripts and tests wait for it.
        println!("hookd control ready on {addr}");
        control.serve(listener, shutdown_signal()).await?;
        Ok(())
    })
    .await
}

/// Reads the control plane's settings (file and environment, like `hookd control`) and
/// migrates; prints one line per migration applied.
async fn run_migrate(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    traced("hookd-migrate", async {
        let config: hookd_control::Config = settings::load(config_file.as_deref())?;
        let applied = hookd_control::migrate(&config).await?;
        if applied.is_empty() {
            println!("database schema is up to date");
        }
        for name in applied {
            println!("applied migration {name}");
        }
        Ok(())
    })
    .await
}

async fn run_dispatcher(config_file: Option<PathBuf>) -> anyhow::Result<()> {
    traced("hookd-dispatcher", async {
        let config: hookd_dispatcher::Config = settings::load(config_file.as_deref())?;
        let (listener, addr) = bind(config.listen).await?;
        let dispatcher = hookd_dispatcher::Dispatcher::start(config).await?;
        println!("hookd dispatcher ready on {addr}");
        dispatcher.serve(listener, shutdown_signal()).await?;
        Ok(())
    })
    .await
}
