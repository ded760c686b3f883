//! The operator's kit shipped in `runtime/ops`: the alerting rules pass their promtool unit
//! tests, and every expression of the Grafana dashboard returns data, without error, from a
//! real Prometheus that scraped a real run.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, sink, source};

const LONG: Duration = Duration::from_secs(120);

fn ops() -> std::path::PathBuf {
    paths::repo_root().join("runtime/ops")
}

/// Runs `promtool` with `args` in `runtime/ops`; its output when it fails.
fn promtool(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ops())
        .output()
        .map_err(|e| anyhow::anyhow!("promtool (the README test command installs it): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "promtool {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() -> anyhow::Result<()> {
    promtool(&["check", "rules", "alerts.yaml"])?;
    promtool(&["test", "rules", "alerts.test.yaml"])
}

/// A Prometheus server (Debian's, installed with promtool) scraping one target every second,
/// its data in a temporary directory; killed when dropped.
struct Prometheus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 scrape_configs:\n  - job_name: wasmconnect\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )?;
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.to_string()
        };
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("prometheus (the README test command installs it): {e}")
            })?;
        Ok(Prometheus {
            child,
            address,
            _dir: dir,
        })
    }

    /// An instant query: its result series, or the error Prometheus answered.
    async fn query(&self, expr: &str) -> anyhow::Result<Result<Vec<serde_json::Value>, String>> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://{}/api/v1/query", self.address),
            [("query", expr)],
        )?;
        let response: serde_json::Value = reqwest::get(url).await?.json().await?;
        if response["status"] != "success" {
            return Ok(Err(response.to_string()));
        }
        Ok(Ok(response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every PromQL expression of the dashboard with Grafana's variables as a dashboard showing
/// every connector sets them.
fn dashboard_expressions() -> anyhow::Result<Vec<(String, String)>> {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ops().join("dashboard.json"))?)?;
    let mut expressions = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("a target of {} has no expr", panel["title"]))?
                .replace("$connector", ".*")
                .replace("$__rate_interval", "30s")
                .replace("$__range", "5m");
            expressions.push((panel["title"].as_str().unwrap_or("?").to_owned(), expr));
        }
    }
    Ok(expressions)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_expression_returns_data_from_a_real_scrape() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table) = (unique("orders"), unique("orders"));
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, customer text, product text, \
         quantity integer, price double precision, amount double precision, status text, \
         created_at bigint)"
    ))
    .await?;
    let (from, into) = (unique("datagen"), unique("to_sql"));
    let connectors = source(
        &from,
        &topic,
        &paths::plugin("source-datagen")?,
        "",
        "rate: 200",
    ) + &sink(
        &into,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}\nmode: upsert\nkey: [id]"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connectors))?;
    daemon.wait_task_state(&into, "RUNNING", LONG).await?;
    daemon.wait_task_state(&from, "RUNNING", LONG).await?;

    let prometheus = Prometheus::start(&daemon.admin)?;
    let expressions = dashboard_expressions()?;
    assert!(expressions.len() >= 10, "{expressions:?}");
    wait_until(
        "every dashboard expression to return data",
        LONG,
        || async {
            let mut empty = Vec::new();
            for (panel, expr) in &expressions {
                match prometheus.query(expr).await {
                    Err(e) => return Ok(Err(format!("prometheus not answering yet: {e}"))),
                    Ok(Err(error)) => anyhow::bail!("panel {panel:?}: {expr} is refused: {error}"),
                    Ok(Ok(series)) if series.is_empty() => empty.push(format!("{panel}: {expr}")),
                    Ok(Ok(_)) => {}
                }
            }
            Ok(if empty.is_empty() {
                Ok(())
            } else {
                Err(format!("no data yet for {}", empty.join("; ")))
            })
        },
    )
    .await?;
    Ok(())
}

/// The systemd unit passes `systemd-analyze verify` (its ExecStart names the daemon built
/// here); its start check, run as written against the shipped connectors.yaml, passes; its
/// reload and stop send the signals the daemon reloads and drains on.
#[test]
fn the_systemd_unit_verifies_and_its_commands_are_the_daemons() -> anyhow::Result<()> {
    let bin = paths::wasmconnect_bin()?;
    let shipped = paths::repo_root().join("connectors.yaml");
    let unit = std::fs::read_to_string(ops().join("wasmconnect.service"))?
        .replace("/usr/local/bin/wasmconnect", &bin.display().to_string())
        .replace(
            "/etc/wasmconnect/connectors.yaml",
            &shipped.display().to_string(),
        );
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wasmconnect.service");
    std::fs::write(&path, &unit)?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .map_err(|e| {
            anyhow::anyhow!("systemd-analyze (the README test command installs it): {e}")
        })?;
    anyhow::ensure!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let command = |key: &str| -> anyhow::Result<Vec<String>> {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .ok_or_else(|| anyhow::anyhow!("the unit has no {key}"))?;
        Ok(line.split_whitespace().map(str::to_owned).collect())
    };
    let validate = command("ExecStartPre")?;
    let out = Command::new(&validate[0]).args(&validate[1..]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{validate:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = command("ExecStart")?;
    assert_eq!(run[1..3], ["--log-format", "json"], "{run:?}");
    assert_eq!(run[3], "run", "{run:?}");
    let reload = command("ExecReload")?;
    assert_eq!(
        reload[1..3],
        ["-HUP", "$MAINPID"],
        "SIGHUP reloads: {reload:?}"
    );
    assert!(unit.contains("\nKillSignal=SIGTERM\n"), "SIGTERM drains");
    Ok(())
}
