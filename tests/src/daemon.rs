//! The `wasmconnect` binary as a child process, with its log captured.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Namespace, paths, wait_until};

/// A running daemon; killed (SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    /// The `wasmconnect` binary it runs.
    binary: PathBuf,
    pub admin: String,
    /// Every line of stderr, with the time it arrived.
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    /// The thread that reads stderr into `log`; done once the process's stderr closes.
    reader: std::thread::JoinHandle<()>,
    /// Every line of the runs before the last [`Daemon::restart`].
    earlier: Vec<String>,
    config: PathBuf,
    /// The command that runs the binary (`ip netns exec NAME`, say), empty for a plain start.
    launcher: Vec<String>,
    /// Options before `run` (`--log-format json`, say), kept for restarts.
    options: Vec<String>,
    /// Environment variables of the process, kept for restarts.
    env: Vec<(String, String)>,
    _dir: Arc<tempfile::TempDir>,
}

impl Daemon {
    /// Writes `config` (with `{admin}` replaced by a free loopback address) to a temporary file
    /// and starts `wasmconnect run` on it; returns once its admin API accepts connections (or
    /// the process exited, or 30 s passed). So does [`Daemon::restart`].
    pub fn start(config: &str) -> anyhow::Result<Self> {
        Self::start_with(&[], config)
    }

    /// Like [`Daemon::start`], with global options before `run`.
    pub fn start_with(options: &[&str], config: &str) -> anyhow::Result<Self> {
        Self::launch(options, &[], config)
    }

    /// Like [`Daemon::start`], with these environment variables, and `WASMCONNECT_ADMIN` set
    /// to the admin address (what the shipped `connectors.yaml` listens on).
    pub fn start_with_env(env: &[(&str, &str)], config: &str) -> anyhow::Result<Self> {
        Self::launch(&[], env, config)
    }

    /// Like [`Daemon::start`], inside `namespace`: the daemon's admin address is served on the
    /// host's loopback too (so the test reaches it as any other), the rest of its network is
    /// what the namespace gives it.
    pub fn start_in(namespace: &Namespace, config: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        namespace.expose(listener)?;
        Self::launch_at(
            port,
            paths::wasmconnect_bin()?,
            namespace.launcher(),
            &[],
            &[],
            config,
        )
    }

    /// Like [`Daemon::start_with_env`], running `binary` (an earlier build, for a benchmark
    /// that compares two; `None`: the build under test) through `launcher` (`valgrind
    /// --tool=callgrind ...`, say; empty: directly).
    pub fn start_launched(
        launcher: &[String],
        binary: Option<&std::path::Path>,
        env: &[(&str, &str)],
        config: &str,
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let binary = match binary {
            Some(binary) => binary.to_owned(),
            None => paths::wasmconnect_bin()?,
        };
        Self::launch_at(port, binary, launcher.to_vec(), &[], env, config)
    }

    fn launch(options: &[&str], env: &[(&str, &str)], config: &str) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::launch_at(
            port,
            paths::wasmconnect_bin()?,
            Vec::new(),
            options,
            env,
            config,
        )
    }

    fn launch_at(
        port: u16,
        binary: PathBuf,
        launcher: Vec<String>,
        options: &[&str],
        env: &[(&str, &str)],
        config: &str,
    ) -> anyhow::Result<Self> {
        let dir = Arc::new(tempfile::tempdir()?);
        let path = dir.path().join("connectors.yaml");
        let admin = format!("127.0.0.1:{port}");
        std::fs::write(&path, config.replace("{admin}", &admin))?;
        let options = options.iter().map(|o| o.to_string()).collect();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("WASMCONNECT_ADMIN".into(), admin.clone()));
        Self::spawn(binary, path, admin, launcher, options, env, dir)
    }

    /// The directory of the daemon's config file (a temporary one, removed with the daemon).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Starts the daemon again on the same config file (after a kill, say).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The last lines may still be on their way from the pipe: the reader ends at its
        // close (bounded, in case a launcher's child holds it open).
        let closed = Instant::now() + Duration::from_secs(10);
        while !self.reader.is_finished() && Instant::now() < closed {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut earlier = std::mem::take(&mut self.earlier);
        earlier.extend(self.log());
        *self = Self::spawn(
            self.binary.clone(),
            self.config.clone(),
            self.admin.clone(),
            self.launcher.clone(),
            self.options.clone(),
            self.env.clone(),
            self._dir.clone(),
        )?;
        self.earlier = earlier;
        Ok(())
    }

    fn spawn(
        binary: PathBuf,
        config: PathBuf,
        admin: String,
        launcher: Vec<String>,
        options: Vec<String>,
        env: Vec<(String, String)>,
        dir: Arc<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let mut child = command
            .args(&options)
            .arg("run")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wasmconnect")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("daemon stderr")?;
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("WASMCONNECT_TEST_ECHO").is_some() {
                    eprintln!("[daemon] {line}");
                }
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let mut daemon = Daemon {
            child,
            binary,
            admin,
            log,
            reader,
            earlier: Vec::new(),
            config,
            launcher,
            options,
            env,
            _dir: dir,
        };
        daemon.wait_listening(Duration::from_secs(30));
        Ok(daemon)
    }

    /// Returns once the admin address accepts a connection, the process has exited, or
    /// `limit` has passed, whichever comes first: a test's first API call must not race the
    /// daemon's start (it did once, on a loaded machine). Whatever went wrong is left for the
    /// test's own checks to report.
    fn wait_listening(&mut self, limit: Duration) {
        let Ok(address) = self.admin.parse::<std::net::SocketAddr>() else {
            return;
        };
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
                || matches!(self.child.try_wait(), Ok(Some(_)))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line of every run so far, restarts included (a run's last lines once its
    /// process has exited; see [`Daemon::restart`]).
    pub fn log_of_every_run(&self) -> Vec<String> {
        let mut lines = self.earlier.clone();
        lines.extend(self.log());
        lines
    }

    /// Every log line of the current run so far.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// When the first log line after `since` containing every one of `parts` arrived, if one
    /// did.
    pub fn logged_after(&self, since: Instant, parts: &[&str]) -> Option<Instant> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(at, line)| *at >= since && parts.iter().all(|p| line.contains(p)))
            .map(|(at, _)| *at)
    }

    /// Waits until a log line contains every one of `parts`; returns it.
    pub async fn wait_log(&self, parts: &[&str], timeout: Duration) -> anyhow::Result<String> {
        wait_until(&format!("a log line with {parts:?}"), timeout, || async {
            Ok(self
                .log()
                .into_iter()
                .find(|line| parts.iter().all(|p| line.contains(p)))
                .ok_or_else(|| format!("{} log lines", self.log().len())))
        })
        .await
    }

    /// What to look at when a wait on `connector` timed out: its status and the last 40 log
    /// lines, for an error's context.
    pub async fn evidence(&self, connector: &str) -> String {
        let status = match self.status(connector).await {
            Ok(status) => status.to_string(),
            Err(e) => format!("no status: {e}"),
        };
        let log = self.log();
        let tail = log[log.len().saturating_sub(40)..].join("\n");
        format!("status of {connector}: {status}\nlast log lines:\n{tail}")
    }

    /// GET /connectors/{name}/status.
    pub async fn status(&self, connector: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("http://{}/connectors/{connector}/status", self.admin);
        Ok(reqwest::get(&url).await?.json().await?)
    }

    /// The value of one Prometheus sample of GET /metrics: `name` with every label of
    /// `labels` (`connector="x"`); `None` when no sample matches.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> anyhow::Result<Option<f64>> {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
            .await?
            .text()
            .await?;
        Ok(text.lines().find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let matches = (series == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| series.contains(l));
            matches.then(|| value.parse().ok()).flatten()
        }))
    }

    /// Waits until task 0 of `connector` is in `state`; returns the status document.
    pub async fn wait_task_state(
        &self,
        connector: &str,
        state: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        wait_until(
            &format!("task 0 of {connector} to be {state}"),
            timeout,
            || async {
                match self.status(connector).await {
                    Ok(status) if status["tasks"][0]["state"] == state => Ok(Ok(status)),
                    Ok(status) => Ok(Err(status.to_string())),
                    Err(e) => Ok(Err(e.to_string())),
                }
            },
        )
        .await
    }

    /// Replaces the config file (with `{admin}` filled in as at start); the daemon sees it on
    /// its next reload.
    pub fn rewrite_config(&self, config: &str) -> anyhow::Result<()> {
        std::fs::write(&self.config, config.replace("{admin}", &self.admin))?;
        Ok(())
    }

    /// SIGHUP: reload the config file.
    pub fn sighup(&self) -> anyhow::Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP)?;
        Ok(())
    }

    /// SIGKILL: no drain, no commit.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM)?;
        let child = &mut self.child;
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                anyhow::bail!("the daemon did not exit within {timeout:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How many of a daemon's last log lines its drop prints.
const LOG_TAIL: usize = 60;

/// Whether a dropped daemon keeps its last log lines to itself ([`quiet_drops`]).
static QUIET_DROPS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on a dropped daemon prints nothing: for programs outside the test harness (the
/// benchmarks), where nothing hides a passing run's output.
pub fn quiet_drops() {
    QUIET_DROPS.store(true, std::sync::atomic::Ordering::Relaxed);
}

impl Drop for Daemon {
    /// Kills the process, then prints its last log lines: the test harness shows a test's
    /// output only when it fails, so a failing test says what its daemons did last.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if QUIET_DROPS.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let tail = &log[log.len().saturating_sub(LOG_TAIL)..];
        eprintln!(
            "--- the last {} log lines of the daemon at {}:",
            tail.len(),
            self.admin
        );
        for (_, line) in tail {
            eprintln!("    {line}");
        }
    }
}
