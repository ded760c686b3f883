//! What an operator watches: /health says which connectors are not running and why, the
//! liveness probe only that the process is up, and /metrics counts what the tasks did, in a
//! format promtool accepts.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmconnect_tests::{Daemon, paths, unique, wait_until};

use crate::common::{Pipeline, config, json, sample, sink};

#[tokio::test(flavor = "multi_thread")]
async fn health_names_the_failed_connector_and_metrics_count_what_tasks_did() -> anyhow::Result<()>
{
    let p = Pipeline::new("orders", 1, "id bigint, amount bigint").await?;
    let (good, broken) = (unique("good"), unique("broken"));
    let connectors = format!(
        "{}{}",
        p.sink_sql(&good, "")?,
        sink(
            &broken,
            &p.topic,
            &paths::repo_root().join("no-such-plugin.wasm"),
            &[],
            "{}",
        )
    );
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connectors))?;
    daemon
        .wait_task_state(&good, "RUNNING", Duration::from_secs(60))
        .await?;
    let records: Vec<_> = (0..25)
        .map(|i| (None, json(serde_json::json!({"id": i, "amount": i}))))
        .collect();
    p.broker.produce(&p.topic, &records).await?;
    wait_until("25 rows", Duration::from_secs(60), || async {
        let n =
            p.pg.count(&format!("SELECT count(*) FROM {}", p.table))
                .await?;
        Ok(if n == 25 { Ok(()) } else { Err(format!("{n}")) })
    })
    .await?;

    let health = reqwest::get(format!("http://{}/health", daemon.admin)).await?;
    assert_eq!(health.status(), 503);
    let health: serde_json::Value = health.json().await?;
    assert_eq!(health["status"], "unhealthy");
    let why = health["connectors"][&broken][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("FAILED") && why.contains("no-such-plugin.wasm"),
        "{health}"
    );
    assert!(health["connectors"].get(&good).is_none(), "{health}");
    let live = reqwest::get(format!("http://{}/health/live", daemon.admin)).await?;
    assert_eq!(live.status(), 200);

    let url = format!("http://{}/metrics", daemon.admin);
    let labels = format!("connector=\"{good}\",task=\"0\"");
    let text = wait_until(
        "the written records and a lag of 0 in /metrics",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(&url).await?.text().await?;
            // The task measures its lag every 5 s.
            let lag = sample(
                &text,
                "wasmconnect_sink_consumer_lag_records",
                &format!(
                    "connector=\"{good}\",partition=\"0\",task=\"0\",topic=\"{}\"",
                    p.topic
                ),
            );
            let written = sample(&text, "wasmconnect_sink_records_written_total", &labels);
            Ok(match (written, lag) {
                (Some(25.0), Some(0.0)) => Ok(text),
                other => Err(format!("written, lag: {other:?}")),
            })
        },
    )
    .await?;
    assert_eq!(
        sample(&text, "wasmconnect_sink_records_read_total", &labels),
        Some(25.0)
    );
    assert_eq!(
        sample(
            &text,
            "wasmconnect_task_state",
            &format!("connector=\"{good}\",state=\"RUNNING\",task=\"0\"")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "wasmconnect_task_state",
            &format!("connector=\"{broken}\",state=\"FAILED\",task=\"0\"")
        ),
        Some(1.0)
    );
    let writes = sample(
        &text,
        "wasmconnect_plugin_call_duration_seconds_count",
        &format!("call=\"write\",{labels}"),
    )
    .unwrap_or_default();
    assert!(writes >= 1.0, "write calls are timed: {writes}");
    assert_eq!(
        sample(&text, "wasmconnect_task_records_active", &labels),
        Some(0.0),
        "everything read is done"
    );
    let memory = sample(&text, "wasmconnect_plugin_memory_bytes", &labels).unwrap_or_default();
    assert!(memory >= 65536.0, "the instance's linear memory: {memory}");

    // promtool lints the exposition: names, units, help, types.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("promtool (the README test command installs it): {e}"))?;
    promtool
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())?;
    let out = promtool.wait_with_output()?;
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {complaints}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_connector_and_task_as_fields() -> anyhow::Result<()> {
    let p = Pipeline::new("orders", 1, "id bigint").await?;
    let name = unique("logged");
    let connector = p.sink_sql(&name, "")?;
    let daemon = Daemon::start_with(
        &["--log-format", "json"],
        &config(&p.broker, &p.pg, &connector),
    )?;
    let line = daemon
        .wait_log(&["sink task started"], Duration::from_secs(60))
        .await?;
    let event: serde_json::Value = serde_json::from_str(&line)
        .map_err(|e| anyhow::anyhow!("not one JSON object per line ({e}): {line}"))?;
    assert_eq!(event["level"], "INFO", "{event}");
    assert_eq!(event["connector"], name.as_str(), "{event}");
    assert_eq!(event["task"], 0, "{event}");
    assert!(event["timestamp"].is_string(), "{event}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_restarts_only_the_changed_connector_and_a_bad_file_changes_nothing()
-> anyhow::Result<()> {
    let p = Pipeline::new("orders", 1, "id bigint").await?;
    let (other_topic, other_table) = (unique("events"), unique("events"));
    p.broker.create_topic(&other_topic, 1).await?;
    p.pg.execute(&format!("CREATE TABLE {other_table} (id bigint)"))
        .await?;
    let (kept, changed) = (unique("kept"), unique("changed"));
    let plugin = paths::plugin("sink-sql")?;
    let connector = |name: &str, topic: &str, table: &str| {
        sink(
            name,
            topic,
            &plugin,
            &["main"],
            &format!("database: main\ntable: {table}"),
        )
    };
    let text = |batch: &str| {
        let changed =
            connector(&changed, &other_topic, &other_table).replace("max_records: 500", batch);
        config(
            &p.broker,
            &p.pg,
            &format!("{}{changed}", connector(&kept, &p.topic, &p.table)),
        )
    };
    let daemon = Daemon::start(&text("max_records: 500"))?;
    for name in [&kept, &changed] {
        daemon
            .wait_task_state(name, "RUNNING", Duration::from_secs(60))
            .await?;
    }
    let started = |name: &str| {
        daemon
            .log()
            .iter()
            .filter(|l| l.contains("sink task started") && l.contains(name))
            .count()
    };

    daemon.rewrite_config(&text("max_records: 400"))?;
    daemon.sighup()?;
    daemon
        .wait_log(
            &["reloaded:", "1 connector(s) started or restarted", &changed],
            Duration::from_secs(60),
        )
        .await?;
    wait_until(
        "the changed connector to start again",
        Duration::from_secs(60),
        || async {
            Ok(if started(&changed) == 2 {
                Ok(())
            } else {
                Err(format!("{}", started(&changed)))
            })
        },
    )
    .await?;
    assert_eq!(
        started(&kept),
        1,
        "the unchanged connector was not restarted"
    );
    assert!(
        !daemon
            .log()
            .iter()
            .any(|l| l.contains("sink task stopped") && l.contains(&kept)),
        "the unchanged connector was never stopped"
    );

    // A file that does not parse: refused, reported, and everything keeps running.
    daemon.rewrite_config("connectors: [")?;
    daemon.sighup()?;
    daemon
        .wait_log(&["reload refused"], Duration::from_secs(30))
        .await?;
    let health: serde_json::Value = reqwest::get(format!("http://{}/health", daemon.admin))
        .await?
        .json()
        .await?;
    assert!(
        health["reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("connectors.yaml")),
        "{health}"
    );
    p.broker
        .produce(&p.topic, &[(None, json(serde_json::json!({"id": 1})))])
        .await?;
    p.broker
        .produce(&other_topic, &[(None, json(serde_json::json!({"id": 2})))])
        .await?;
    for (table, name) in [(&p.table, &kept), (&other_table, &changed)] {
        let row = wait_until(
            &format!("a row in {table}"),
            Duration::from_secs(60),
            || async {
                let n = p.pg.count(&format!("SELECT count(*) FROM {table}")).await?;
                Ok(if n == 1 { Ok(()) } else { Err(format!("{n}")) })
            },
        )
        .await;
        if let Err(e) = row {
            return Err(e.context(daemon.evidence(name).await));
        }
    }
    assert_eq!(started(&kept), 1);
    assert_eq!(started(&changed), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_task_is_restarted_and_a_stopped_connector_resumed_through_the_api()
-> anyhow::Result<()> {
    let p = Pipeline::new("orders", 1, "id bigint").await?;
    let name = unique("managed");
    let missing = unique("later");
    let connector = sink(
        &name,
        &p.topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {missing}"),
    );
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connector))?;
    let api = format!("http://{}", daemon.admin);
    let client = reqwest::Client::new();
    let rows = |table: String| {
        let pg = &p.pg;
        async move { pg.count(&format!("SELECT count(*) FROM {table}")).await }
    };
    let record = |id: i64| (None, json(serde_json::json!({ "id": id })));

    // The table does not exist yet: the first batch fails the task.
    p.broker.produce(&p.topic, &[record(1)]).await?;
    daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(60))
        .await?;
    let only_failed = format!("{api}/connectors/{name}/restart?includeTasks=true&onlyFailed=true");
    p.pg.execute(&format!("CREATE TABLE {missing} (id bigint)"))
        .await?;
    let restarted = client.post(&only_failed).send().await?;
    assert_eq!(restarted.status(), 202);
    daemon
        .wait_task_state(&name, "RUNNING", Duration::from_secs(60))
        .await?;
    wait_until(
        "the record written after the restart",
        Duration::from_secs(60),
        || async {
            let n = rows(missing.clone()).await?;
            Ok(if n == 1 { Ok(()) } else { Err(format!("{n}")) })
        },
    )
    .await?;
    // Nothing failed now: onlyFailed leaves the running task alone.
    let untouched = client.post(&only_failed).send().await?;
    assert_eq!(untouched.status(), 202);
    let started = daemon
        .log()
        .iter()
        .filter(|l| l.contains("sink task started") && l.contains(&name))
        .count();
    assert_eq!(started, 2, "started once, restarted once");

    // Stop: the task finishes and commits, the config stays; resume starts it again.
    let stopped = client
        .put(format!("{api}/connectors/{name}/stop"))
        .send()
        .await?;
    assert_eq!(stopped.status(), 204);
    let status = daemon.status(&name).await?;
    assert_eq!(status["connector"]["state"], "STOPPED", "{status}");
    assert_eq!(status["tasks"][0]["state"], "STOPPED", "{status}");
    let committed = p.broker.committed(&name, &p.topic, 0).await?;
    p.broker.produce(&p.topic, &[record(2), record(3)]).await?;
    assert_eq!(
        rows(missing.clone()).await?,
        1,
        "no task writes while stopped"
    );
    assert_eq!(p.broker.committed(&name, &p.topic, 0).await?, committed);
    let config: serde_json::Value = client
        .get(format!("{api}/connectors/{name}/config"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(config["config"]["table"], missing.as_str(), "{config}");
    let resumed = client
        .put(format!("{api}/connectors/{name}/resume"))
        .send()
        .await?;
    assert_eq!(resumed.status(), 202);
    wait_until(
        "the records produced while stopped",
        Duration::from_secs(60),
        || async {
            let n = rows(missing.clone()).await?;
            Ok(if n == 3 { Ok(()) } else { Err(format!("{n}")) })
        },
    )
    .await?;

    let expanded: serde_json::Value = client
        .get(format!("{api}/connectors?expand=status&expand=info"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        expanded[&name]["status"]["tasks"][0]["state"], "RUNNING",
        "{expanded}"
    );
    assert_eq!(expanded[&name]["info"]["type"], "sink", "{expanded}");
    let unknown = client
        .post(format!("{api}/connectors/nope/restart"))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await?;
    assert_eq!(body["error_code"], 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_mutating_calls_need_it_and_reads_do_not() -> anyhow::Result<()> {
    let p = Pipeline::new("orders", 1, "id bigint").await?;
    let name = unique("guarded");
    let connector = p.sink_sql(&name, "")?;
    let token = "s3cret-token-0123456789";
    let text = config(&p.broker, &p.pg, &connector).replace(
        "  listen: \"{admin}\"\n",
        &format!("  listen: \"{{admin}}\"\n  token: {token}\n"),
    );
    let daemon = Daemon::start(&text)?;
    daemon
        .wait_task_state(&name, "RUNNING", Duration::from_secs(60))
        .await?;
    let client = reqwest::Client::new();
    let restart = format!("http://{}/connectors/{name}/restart", daemon.admin);
    let anonymous = client.post(&restart).send().await?;
    assert_eq!(anonymous.status(), 401);
    let body: serde_json::Value = anonymous.json().await?;
    assert_eq!(body["error_code"], 401);
    let wrong = client
        .post(&restart)
        .bearer_auth("s3cret-token-0123456780")
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        daemon.status(&name).await?["tasks"][0]["state"],
        "RUNNING",
        "reads need no token"
    );
    let allowed = client.post(&restart).bearer_auth(token).send().await?;
    assert_eq!(allowed.status(), 204);
    Ok(())
}
