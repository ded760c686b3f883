//! `wasmconnect`: run or validate a `connectors.yaml`; create, inspect and test plugins.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmconnect::worker::{LiveStatus, Worker};
use wasmconnect::{admin, config, kafka, logging};

/// The daemon's allocator (the `mimalloc` feature, on by default). librdkafka's own C
/// allocations stay with the system's `malloc`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Runs the connectors of a config until SIGTERM or Ctrl-C. SIGHUP reloads the file.
    Run {
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
        /// Also reload when the file changes (checked every second).
        #[arg(long)]
        watch: bool,
        /// No live status at the bottom of the terminal (it is never shown when stderr is
        /// not a terminal, or with --log-format json).
        #[arg(long)]
        no_status: bool,
    },
    /// Checks a config and loads its plugins, without touching Kafka or any database. Exits 1
    /// on any error, printing each as file:line:column.
    Validate {
        #[arg(default_value = "connectors.yaml")]
        config: PathBuf,
    },
    /// Runs plugins offline against test cases (YAML files naming a plugin, its config, the
    /// records or polls to give it, the sql and http calls it must make with their replies,
    /// and what each call must return): no Kafka, database or network. Exits 1 when any case
    /// fails.
    Test {
        /// Case files, or directories of them.
        #[arg(default_value = "fixtures")]
        cases: Vec<PathBuf>,
        /// The plugin every case runs, instead of the one each names (for a build elsewhere
        /// than the cases expect, e.g. another CARGO_TARGET_DIR).
        #[arg(long)]
        plugin: Option<PathBuf>,
    },
    /// Writing plugins: create a plugin crate, or see what a plugin file is.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Creates a plugin crate NAME (in the current directory) that builds and tests as it is:
    /// Cargo.toml, src/lib.rs with a working example and its unit test, README.md.
    New {
        name: String,
        #[arg(long, value_enum)]
        kind: wasmconnect::kit::Kind,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The wasmconnect-sdk crate to depend on (plugins/sdk of a wasmconnect checkout);
        /// by default the one of the checkout this binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Prints what a plugin file is: kind, contract version, whether this runtime loads it
    /// (and why not), the imports it needs and its config keys. Exits 1 when it does not load.
    Inspect { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let loggers = logging::init(match cli.log_format {
        LogFormat::Text => logging::Format::Text,
        LogFormat::Json => logging::Format::Json,
    });
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
            Command::Run {
                config,
                watch,
                no_status,
            } => {
                let live = !no_status
                    && matches!(cli.log_format, LogFormat::Text)
                    && std::io::IsTerminal::is_terminal(&std::io::stderr());
                run(config, watch, live, loggers).await
            }
            Command::Validate { config } => validate(config),
            Command::Plugin { command } => plugin(command),
            Command::Test { cases, plugin } => test(cases, plugin).await,
        }
    });
    // Tasks bound their last calls to Kafka and abandon what does not answer in time; a
    // thread still blocked in such a call does not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = match load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let connectors = config.connectors.len();
    // The API's certificate and key are read and matched as `run` would.
    let tls = config.admin.tls.as_ref().map(admin::tls::server_config);
    let worker = Worker::build_offline(config)?;
    let mut problems: Vec<(String, String)> =
        tokio::task::block_in_place(|| worker.check_plugins())
            .into_iter()
            .map(|p| (p.key, format!("connector {:?}: {}", p.connector, p.message)))
            .collect();
    if let Some(Err(e)) = tls {
        problems.push(e.at());
    }
    if !problems.is_empty() {
        eprintln!("{}", config::locate(&path, problems));
        return Ok(ExitCode::from(1));
    }
    println!("{}: ok ({connectors} connectors)", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn test(paths: Vec<PathBuf>, plugin: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cases = wasmconnect::kit::collect_cases(&paths).context("listing test cases")?;
    if cases.is_empty() {
        eprintln!(
            "error: no test cases (*.yaml) in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    let engine = wasmconnect::wasm::WasmEngine::replaying().map_err(anyhow::Error::from)?;
    let mut failed = 0;
    for case in &cases {
        let outcome = wasmconnect::kit::run_case(&engine, case, plugin.as_deref()).await;
        if outcome.passed() {
            println!("ok    {} ({} steps)", case.display(), outcome.steps);
        } else {
            failed += 1;
            println!("FAIL  {}", case.display());
            for problem in &outcome.problems {
                println!("      {problem}");
            }
        }
    }
    println!(
        "test cases: {} passed, {failed} failed",
        cases.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
        } => {
            let sdk = sdk.unwrap_or_else(wasmconnect::kit::default_sdk);
            match wasmconnect::kit::scaffold(&name, kind, &dir, &sdk) {
                Ok(root) => {
                    println!(
                        "created {}: `cargo test` runs its unit test, `cargo build --release \
                         --target wasm32-wasip2` builds the component (see its README.md)",
                        root.display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        PluginCommand::Inspect { file } => {
            let engine = wasmconnect::wasm::WasmEngine::new().map_err(anyhow::Error::from)?;
            match tokio::task::block_in_place(|| engine.inspect(&file)) {
                Ok(inspection) => {
                    print!(
                        "{}",
                        wasmconnect::kit::render_inspection(&file, &inspection)
                    );
                    Ok(if inspection.loads.is_ok() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn run(
    path: PathBuf,
    watch: bool,
    live: bool,
    loggers: logging::Loggers,
) -> anyhow::Result<ExitCode> {
    let mut config = match load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Dropped at the end of `run`, after the drain: the last commits reach it.
    let embedded = match config.kafka.bootstrap_servers.trim() == config::EMBEDDED_BROKER {
        false => None,
        true => match kafka::EmbeddedBroker::start(&config) {
            Ok(broker) => {
                tracing::warn!(
                    "kafka.bootstrap_servers is embedded: a broker inside this process on {}, \
                     in memory; its topics and the sources' positions are gone when it exits",
                    broker.bootstrap_servers()
                );
                Some(broker)
            }
            Err(e) => {
                eprintln!(
                    "error: cannot start the embedded broker (kafka.bootstrap_servers: embedded): {e}"
                );
                return Ok(ExitCode::from(1));
            }
        },
    };
    embed(&mut config, embedded.as_ref());
    let admin = config.admin.clone();
    let listen = admin.listen.clone();
    let worker = match Worker::build(config) {
        Ok(worker) => std::sync::Arc::new(worker),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    // Before the connectors start and the worker joins its cluster, which can take seconds:
    // a SIGHUP or SIGTERM meanwhile waits for the loop below instead of being lost.
    let mut signals = Signals::new()?;
    let listener = admin::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on admin.listen {listen}"))?;
    let api_shutdown = worker.shutdown_token();
    let api = match &admin.tls {
        None => {
            tracing::info!("admin API listening on http://{}", listener.local_addr()?);
            let worker = worker.clone();
            tokio::spawn(async move {
                admin::serve(listener, worker, &admin, Some(loggers), api_shutdown).await
            })
        }
        Some(tls) => {
            let tls = match admin::tls::server_config(tls) {
                Ok(tls) => tls,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let listener = admin::tls::TlsListener::new(listener, tls)?;
            tracing::info!("admin API listening on https://{}", listen);
            let worker = worker.clone();
            tokio::spawn(async move {
                admin::serve(listener, worker, &admin, Some(loggers), api_shutdown).await
            })
        }
    };
    worker.start().await;
    worker.join_cluster().await;
    let mut seen = modified(&path);
    let mut poll = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut status = LiveStatus::new(worker.status());
    loop {
        tokio::select! {
            signal = signals.next() => match signal? {
                Signal::Stop => break,
                Signal::Reload => reload(&worker, &path, embedded.as_ref()).await,
            },
            _ = poll.tick() => {
                if live {
                    logging::show_status(Some(status.frame()));
                }
                if watch {
                    let now = modified(&path);
                    if now != seen {
                        seen = now;
                        reload(&worker, &path, embedded.as_ref()).await;
                    }
                }
            }
        }
    }
    logging::show_status(None);
    tracing::info!("shutting down: finishing batches and committing offsets");
    let clean = worker.shutdown().await;
    for line in status.summary() {
        tracing::info!("summary: {line}");
    }
    api.await.context("admin API task")?.context("admin API")?;
    if clean {
        tracing::info!("stopped");
    } else {
        tracing::warn!("stopped before every task finished within worker.shutdown_grace_ms");
    }
    drop(embedded);
    Ok(ExitCode::SUCCESS)
}

/// Points a config naming the embedded broker at the one this process runs, if it runs one;
/// a reload does the same, so an unchanged `embedded` is no change of `kafka`.
fn embed(config: &mut config::Config, embedded: Option<&kafka::EmbeddedBroker>) {
    if let Some(broker) = embedded
        && config.kafka.bootstrap_servers.trim() == config::EMBEDDED_BROKER
    {
        config.kafka.bootstrap_servers = broker.bootstrap_servers();
        config.kafka.embedded = true;
    }
}

/// Reads the config again and applies it; an invalid file, or a change a reload cannot
/// apply, keeps everything running as it was and is reported in the log and in /health.
async fn reload(worker: &Worker, path: &std::path::Path, embedded: Option<&kafka::EmbeddedBroker>) {
    tracing::info!("reloading {}", path.display());
    let outcome = match load(path) {
        Ok(mut config) => {
            embed(&mut config, embedded);
            worker.reload(config).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(reloaded) => {
            tracing::info!(added = ?reloaded.added, changed = ?reloaded.changed,
                removed = ?reloaded.removed, "reloaded: {} connector(s) started or restarted, {} stopped",
                reloaded.added.len() + reloaded.changed.len(), reloaded.removed.len());
            worker.status().set_reload_error(None);
        }
        Err(e) => {
            tracing::error!("reload refused, everything keeps running as it was: {e}");
            worker.status().set_reload_error(Some(e));
        }
    }
}

/// Loads the config at `path` and reads the TLS certificates and keys (Kafka's and the
/// databases') and the record schemas it names, as `run`, a reload and `validate` all must: a
/// file that is missing or holds no PEM or no schema is named with its setting now, not by a
/// handshake or a task later.
fn load(path: &std::path::Path) -> Result<config::Config, config::ConfigError> {
    let config = config::load(path)?;
    let mut problems = wasmconnect::pem::check(&config);
    problems.extend(wasmconnect::format::check(&config));
    match problems.is_empty() {
        true => Ok(config),
        false => Err(config::locate(path, problems)),
    }
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

enum Signal {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> std::io::Result<Signal> {
        tokio::select! {
            _ = self.term.recv() => Ok(Signal::Stop),
            _ = self.hup.recv() => Ok(Signal::Reload),
            result = tokio::signal::ctrl_c() => result.map(|()| Signal::Stop),
        }
    }
}
