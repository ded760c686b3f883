//! `wasmconnect`: run or validate a `connectors.yaml`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wasmconnect::{admin, config, worker::Worker};

#[derive(Parser)]
#[command(
    name = "wasmconnect",
    version,
    about = "A connector runtime whose connectors are WebAssembly components"
)]
struct Cli {
    /// Log lines as text (colored on a terminal) or as one JSON object per line, with the
    /// connector and task as fields.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WASMCONNECT_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the connectors of a config until SIGTERM or Ctrl-C.
    Run {
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
    },
    /// Checks a config and loads its plugins, without touching Kafka or any database. Exits 1
    /// on any error, printing each as file:line:column.
    Validate {
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::Validate { config } => validate(config),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let connectors = config.connectors.len();
    let worker = Worker::build(config)?;
    let failures = worker.check_plugins();
    for (connector, error) in &failures {
        eprintln!("{}: connector {connector:?}: {error}", path.display());
    }
    if !failures.is_empty() {
        return Ok(ExitCode::from(1));
    }
    println!("{}: ok ({connectors} connectors)", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let listen = config.admin.listen.clone();
    let worker = Worker::build(config)?;
    let listener = admin::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {listen}"))?;
    tracing::info!("admin API listening on http://{}", listener.local_addr()?);
    let api_shutdown = worker.shutdown_token();
    let api = tokio::spawn(admin::serve(listener, worker.status(), api_shutdown));
    worker.start();
    shutdown_signal().await?;
    tracing::info!("shutting down: finishing batches and committing offsets");
    let clean = worker.shutdown().await;
    api.await.context("admin API task")?.context("admin API")?;
    if clean {
        tracing::info!("stopped");
    } else {
        tracing::warn!("stopped before every task finished within worker.shutdown_grace_ms");
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}
