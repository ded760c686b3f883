//! The REST API as an operator drives it: connectors created, paused, stopped, their offsets
//! read and reset, changed, restarted and deleted, all through HTTP, and kept across restarts.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{
    Pipeline, Tally, config, json as value, sample, source, wait_for_ids, wait_for_records,
};

const WAIT: Duration = Duration::from_secs(60);

/// An HTTP client on one daemon's API.
struct Api {
    client: Client,
    base: String,
}

impl Api {
    fn new(daemon: &Daemon) -> Self {
        Api {
            client: Client::new(),
            base: format!("http://{}", daemon.admin),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, body))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Option<Value>) -> anyhow::Result<(StatusCode, Value)> {
        self.call(reqwest::Method::PUT, path, body).await
    }
}

/// Rows of `table`, and distinct ids among them.
async fn rows(p: &Pipeline, table: &str) -> anyhow::Result<(i64, i64)> {
    Ok((
        p.pg.count(&format!("SELECT count(*) FROM {table}")).await?,
        p.pg.count(&format!("SELECT count(DISTINCT id) FROM {table}"))
            .await?,
    ))
}

async fn wait_rows(p: &Pipeline, table: &str, want: (i64, i64)) -> anyhow::Result<()> {
    wait_until(&format!("{want:?} rows in {table}"), WAIT, || async {
        let got = rows(p, table).await?;
        Ok(if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        })
    })
    .await
}

async fn produce_ids(p: &Pipeline, ids: std::ops::RangeInclusive<i64>) -> anyhow::Result<()> {
    let records: Vec<_> = ids.map(|id| (None, value(json!({ "id": id })))).collect();
    p.broker.produce(&p.topic, &records).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connector_lives_its_whole_life_through_the_rest_api() -> anyhow::Result<()> {
    let p = Pipeline::new("lifecycle", 1, "id bigint").await?;
    let mut daemon = Daemon::start(&config(&p.broker, &p.pg, "  []\n"))?;
    let api = Api::new(&daemon);
    let name = unique("api");
    let connector = json!({
        "kind": "sink",
        "plugin": paths::plugin("sink-sql")?.display().to_string(),
        "topics": [p.topic],
        "batch": { "max_records": 100, "max_wait_ms": 50 },
        "restart": { "initial_backoff_ms": 50, "max_backoff_ms": 500 },
        "errors": { "retry": { "initial_backoff_ms": 50, "max_backoff_ms": 500, "timeout_ms": 2000 } },
        "grants": { "databases": ["main"] },
        "config": { "database": "main", "table": p.table },
    });

    // Create: 201 with the connector's info; a second create of the name is a conflict; an
    // invalid config names the key.
    let (code, created) = api
        .call(
            reqwest::Method::POST,
            "/connectors",
            Some(json!({ "name": name, "config": connector })),
        )
        .await?;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["type"], "sink");
    let (code, again) = api
        .call(
            reqwest::Method::POST,
            "/connectors",
            Some(json!({ "name": name, "config": connector })),
        )
        .await?;
    assert_eq!(code, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error_code"], 409);
    let mut bad = connector.clone();
    bad["batch"]["max_records"] = json!("many");
    let (code, invalid) = api
        .call(
            reqwest::Method::POST,
            "/connectors",
            Some(json!({ "name": unique("bad"), "config": bad })),
        )
        .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{invalid}");
    let message = invalid["message"].as_str().unwrap_or_default();
    assert!(message.contains("batch.max_records"), "{invalid}");

    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;
    produce_ids(&p, 1..=10).await?;
    wait_rows(&p, &p.table, (10, 10)).await?;

    // Pause: the task holds still; nothing is written until it resumes.
    let (code, _) = api.put(&format!("/connectors/{name}/pause"), None).await?;
    assert_eq!(code, StatusCode::ACCEPTED);
    let status = daemon.wait_task_state(&name, "PAUSED", WAIT).await?;
    assert_eq!(status["connector"]["state"], "PAUSED", "{status}");
    produce_ids(&p, 11..=20).await?;
    // The lag it measures (the broker's high watermark minus its position) shows the ten
    // new records there and not one of them read, so none can have been written.
    let metrics = format!("http://{}/metrics", daemon.admin);
    let labels = format!(
        "connector=\"{name}\",partition=\"0\",task=\"0\",topic=\"{}\"",
        p.topic
    );
    wait_until("a lag of 10 while paused", WAIT, || async {
        let text = reqwest::get(&metrics).await?.text().await?;
        Ok(
            match sample(&text, "wasmconnect_sink_consumer_lag_records", &labels) {
                Some(10.0) => Ok(()),
                other => Err(format!("lag {other:?}")),
            },
        )
    })
    .await?;
    assert_eq!(rows(&p, &p.table).await?, (10, 10), "written while paused");
    let (code, refused) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/connectors/{name}/offsets"),
            Some(json!({ "offsets": [] })),
        )
        .await?;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "offsets change only while STOPPED"
    );
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("STOPPED"),
        "{refused}"
    );
    let (code, _) = api.put(&format!("/connectors/{name}/resume"), None).await?;
    assert_eq!(code, StatusCode::ACCEPTED);
    wait_rows(&p, &p.table, (20, 20)).await?;
    let status = daemon.wait_task_state(&name, "RUNNING", WAIT).await?;
    assert_eq!(status["connector"]["state"], "RUNNING", "{status}");

    // Stop, read the offsets, move them back to 15: records 15..=19 (ids 16..=20) come again.
    let (code, _) = api.put(&format!("/connectors/{name}/stop"), None).await?;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(daemon.status(&name).await?["connector"]["state"], "STOPPED");
    let partition = json!({ "kafka_topic": p.topic, "kafka_partition": 0 });
    let (code, offsets) = api.get(&format!("/connectors/{name}/offsets")).await?;
    assert_eq!(code, StatusCode::OK, "{offsets}");
    assert_eq!(
        offsets,
        json!({ "offsets": [{ "partition": partition, "offset": { "kafka_offset": 20 } }] })
    );
    let (code, altered) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/connectors/{name}/offsets"),
            Some(json!({ "offsets": [{ "partition": partition, "offset": { "kafka_offset": 15 } }] })),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{altered}");
    let (_, offsets) = api.get(&format!("/connectors/{name}/offsets")).await?;
    assert_eq!(
        offsets["offsets"][0]["offset"]["kafka_offset"], 15,
        "{offsets}"
    );
    let (code, _) = api.put(&format!("/connectors/{name}/resume"), None).await?;
    assert_eq!(code, StatusCode::ACCEPTED);
    wait_rows(&p, &p.table, (25, 20)).await?;
    let twice =
        p.pg.count(&format!(
            "SELECT count(*) FROM (SELECT id FROM {} GROUP BY id HAVING count(*) = 2) d \
             WHERE id BETWEEN 16 AND 20",
            p.table
        ))
        .await?;
    assert_eq!(
        twice, 5,
        "exactly the records after the reset point came again"
    );

    // Reset every offset: the whole topic comes again.
    api.put(&format!("/connectors/{name}/stop"), None).await?;
    let (code, reset) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/connectors/{name}/offsets"),
            None,
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{reset}");
    let (_, offsets) = api.get(&format!("/connectors/{name}/offsets")).await?;
    assert_eq!(
        offsets["offsets"][0]["offset"]["kafka_offset"], 0,
        "{offsets}"
    );
    api.put(&format!("/connectors/{name}/resume"), None).await?;
    wait_rows(&p, &p.table, (45, 20)).await?;

    // Change the config to a table that does not exist: the task fails; create the table,
    // restart the task, and it writes there.
    let missing = unique("later");
    let (code, patched) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/connectors/{name}/config"),
            Some(json!({ "config": { "table": missing } })),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["config"]["config"]["table"], missing.as_str());
    assert_eq!(
        patched["config"]["batch"]["max_records"], 100,
        "other keys stay"
    );
    produce_ids(&p, 21..=21).await?;
    let failed = daemon.wait_task_state(&name, "FAILED", WAIT).await?;
    assert!(failed["tasks"][0]["trace"].is_string(), "{failed}");
    p.pg.execute(&format!("CREATE TABLE {missing} (id bigint)"))
        .await?;
    let (code, _) = api
        .call(
            reqwest::Method::POST,
            &format!("/connectors/{name}/tasks/0/restart"),
            None,
        )
        .await?;
    assert_eq!(code, StatusCode::NO_CONTENT);
    wait_rows(&p, &missing, (1, 1)).await?;

    // Paused, then the process restarts: the API's connector comes back, changed and paused.
    api.put(&format!("/connectors/{name}/pause"), None).await?;
    daemon.wait_task_state(&name, "PAUSED", WAIT).await?;
    let exit = daemon.terminate(WAIT).await?;
    assert!(exit.success(), "{exit}");
    daemon.restart()?;
    let status = daemon.wait_task_state(&name, "PAUSED", WAIT).await?;
    assert_eq!(status["connector"]["state"], "PAUSED", "{status}");
    let (_, config) = api.get(&format!("/connectors/{name}/config")).await?;
    assert_eq!(config["config"]["table"], missing.as_str(), "{config}");
    produce_ids(&p, 22..=22).await?;
    api.put(&format!("/connectors/{name}/resume"), None).await?;
    wait_rows(&p, &missing, (2, 2)).await?;

    // Delete: gone at once, and after a restart too.
    let (code, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/connectors/{name}"),
            None,
        )
        .await?;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, gone) = api.get(&format!("/connectors/{name}")).await?;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(gone["error_code"], 404);
    daemon.terminate(WAIT).await?;
    daemon.restart()?;
    wait_until("the API after the restart", WAIT, || async {
        Ok(match api.get("/connectors").await {
            Ok((StatusCode::OK, list)) => Ok(list),
            Ok((code, _)) => Err(code.to_string()),
            Err(e) => Err(e.to_string()),
        })
    })
    .await
    .map(|list| assert_eq!(list, json!([])))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_listed_and_validated_and_log_levels_change_at_runtime() -> anyhow::Result<()> {
    let p = Pipeline::new("plugins", 1, "id bigint").await?;
    let name = unique("levels");
    let connector = p.sink_sql(&name, "")?;
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connector))?;
    let api = Api::new(&daemon);
    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;

    let (code, plugins) = api.get("/connector-plugins").await?;
    assert_eq!(code, StatusCode::OK);
    let listed = |plugins: &serde_json::Value, class: &str| {
        plugins
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["class"] == class)
            .cloned()
    };
    let sink_sql = listed(&plugins, "sink_sql").ok_or_else(|| anyhow::anyhow!("{plugins}"))?;
    assert_eq!(sink_sql["type"], "sink");
    assert!(
        listed(&plugins, "transform_filter").is_none(),
        "transforms only on request"
    );
    // A plugin installed in `plugins/` next to the config is listed though no connector uses
    // it, from the next call on.
    let installed = daemon.dir().join("plugins");
    std::fs::create_dir(&installed)?;
    std::fs::copy(
        paths::plugin("source-datagen")?,
        installed.join("installed_source.wasm"),
    )?;
    let (_, plugins) = api.get("/connector-plugins").await?;
    let source =
        listed(&plugins, "installed_source").ok_or_else(|| anyhow::anyhow!("{plugins}"))?;
    assert_eq!(source["type"], "source", "{source}");
    assert_eq!(
        source["path"],
        installed
            .join("installed_source.wasm")
            .display()
            .to_string()
    );
    let (_, all) = api.get("/connector-plugins?connectorsOnly=false").await?;
    assert!(
        all.as_array()
            .into_iter()
            .flatten()
            .any(|p| p["class"] == "transform_filter" && p["type"] == "transformation"),
        "{all}"
    );

    let (code, checked) = api
        .put(
            "/connector-plugins/sink_sql/config/validate",
            Some(json!({ "topics": [p.topic], "batch": { "max_records": "many" } })),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{checked}");
    assert_eq!(checked["error_count"], 1, "{checked}");
    let batch = checked["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["value"]["name"] == "batch")
        .ok_or_else(|| anyhow::anyhow!("{checked}"))?;
    assert!(
        batch["value"]["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("batch.max_records"),
        "{checked}"
    );
    let (_, fine) = api
        .put(
            "/connector-plugins/sink_sql/config/validate",
            Some(json!({ "topics": [p.topic], "config": { "database": "main", "table": "t" } })),
        )
        .await?;
    assert_eq!(fine["error_count"], 0, "{fine}");
    // The plugin's own config spec: a value of the wrong type is named, in the plugin's words.
    let (_, wrong) = api
        .put(
            "/connector-plugins/sink_sql/config/validate",
            Some(json!({ "topics": [p.topic],
                "config": { "database": "main", "table": "t", "key": "id" } })),
        )
        .await?;
    assert_eq!(wrong["error_count"], 1, "{wrong}");
    let errors = wrong["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["value"]["name"] == "config")
        .map(|c| c["value"]["errors"].clone())
        .ok_or_else(|| anyhow::anyhow!("{wrong}"))?;
    assert_eq!(
        errors,
        json!([
            "config.key: expected a list, got \"id\" (sink_sql: Key columns: the conflict \
            target of upserts and what a tombstone deletes by)"
        ]),
        "{wrong}"
    );
    let (code, keys) = api.get("/connector-plugins/sink_sql/config").await?;
    assert_eq!(code, StatusCode::OK, "{keys}");
    let mode = keys
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["name"] == "mode")
        .ok_or_else(|| anyhow::anyhow!("{keys}"))?;
    assert_eq!(mode["type"], "STRING", "{keys}");
    assert_eq!(mode["default_value"], "insert", "{keys}");
    assert_eq!(mode["choices"], json!(["insert", "upsert"]), "{keys}");
    assert_eq!(keys[0]["name"], "database", "{keys}");
    assert_eq!(keys[0]["required"], true, "{keys}");
    let (code, _) = api
        .put("/connector-plugins/nope/config/validate", Some(json!({})))
        .await?;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Log levels: INFO by default, so no per-batch debug line; DEBUG for the task module
    // shows them from then on.
    let (_, loggers) = api.get("/admin/loggers").await?;
    assert_eq!(loggers["root"]["level"], "INFO", "{loggers}");
    produce_ids(&p, 1..=1).await?;
    wait_rows(&p, &p.table, (1, 1)).await?;
    assert!(!daemon.log().iter().any(|l| l.contains("batch written")));
    let (code, changed) = api
        .put(
            "/admin/loggers/wasmconnect::task",
            Some(json!({ "level": "DEBUG" })),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{changed}");
    assert_eq!(changed, json!(["wasmconnect::task"]));
    produce_ids(&p, 2..=2).await?;
    daemon.wait_log(&["batch written", &name], WAIT).await?;
    let (_, level) = api.get("/admin/loggers/wasmconnect::task").await?;
    assert_eq!(level["level"], "DEBUG");
    let (code, _) = api
        .put("/admin/loggers/root", Some(json!({ "level": "LOUD" })))
        .await?;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_connectors_positions_are_read_moved_and_deleted_through_the_api()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table) = (unique("rows"), unique("orders"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, amount int NOT NULL)"
    ))
    .await?;
    pg.execute(&format!(
        "INSERT INTO {table} (amount) SELECT g FROM generate_series(1, 50) g"
    ))
    .await?;
    let name = unique("positions");
    let connector = source(
        &name,
        &topic,
        &paths::plugin("source-sql")?,
        "grants: { databases: [main] }",
        &format!("database: main\ntable: {table}\nincrementing: id"),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let api = Api::new(&daemon);
    wait_for_ids(&broker, &topic, 50, WAIT).await?;
    // A source's active topics are those it wrote to.
    let (code, topics) = api.get(&format!("/connectors/{name}/topics")).await?;
    assert_eq!(code, StatusCode::OK, "{topics}");
    assert_eq!(topics, json!({ name.clone(): { "topics": [topic] } }));

    api.put(&format!("/connectors/{name}/stop"), None).await?;
    let (code, offsets) = api.get(&format!("/connectors/{name}/offsets")).await?;
    assert_eq!(code, StatusCode::OK, "{offsets}");
    let partition = offsets["offsets"][0]["partition"].clone();
    assert_eq!(
        partition,
        json!({ "partition": format!("table {table}") }),
        "{offsets}"
    );
    assert_eq!(
        offsets["offsets"][0]["offset"],
        json!({ "position": r#"{"incrementing":"50"}"# }),
        "{offsets}"
    );

    // Back to 40: rows 41..=50 are read again.
    let (code, altered) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/connectors/{name}/offsets"),
            Some(json!({ "offsets": [{
                "partition": partition,
                "offset": { "position": r#"{"incrementing":"40"}"# },
            }] })),
        )
        .await?;
    assert_eq!(code, StatusCode::OK, "{altered}");
    api.put(&format!("/connectors/{name}/resume"), None).await?;
    wait_for_records(&broker, &topic, 60, WAIT).await?;
    let tally = Tally::of(&broker.read_all(&topic).await?)?;
    assert_eq!(tally.total, 60, "nothing but 41..=50 again");
    assert!((41..=50).all(|id| tally.copies[&id] == 2));

    // Deleted: the plugin starts from nothing and reads every row again.
    api.put(&format!("/connectors/{name}/stop"), None).await?;
    let (code, _) = api
        .call(
            reqwest::Method::DELETE,
            &format!("/connectors/{name}/offsets"),
            None,
        )
        .await?;
    assert_eq!(code, StatusCode::OK);
    let (_, offsets) = api.get(&format!("/connectors/{name}/offsets")).await?;
    assert_eq!(offsets, json!({ "offsets": [] }));
    api.put(&format!("/connectors/{name}/resume"), None).await?;
    wait_for_records(&broker, &topic, 110, WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_log_lines_and_responses() -> anyhow::Result<()> {
    let p = Pipeline::new("secrets", 1, "id bigint").await?;
    let (address, _) = crate::common::connection_counter().await?;
    let name = unique("secretive");
    let (password, token) = ("pw-s3cr3t-2718", "tok-s3cr3t-31415926");
    let connector = format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    grants:
      http: [\"{address}\"]
    config:
      url: \"http://user:{password}@{address}/in\"
      headers:
        Authorization: \"Bearer {token}\"
",
        plugin = paths::plugin("sink-http")?.display(),
        topic = p.topic,
    );
    let daemon = Daemon::start(&config(&p.broker, &p.pg, &connector))?;
    // The plugin opens with the first batch, and logs where it sends.
    produce_ids(&p, 1..=1).await?;
    let line = daemon.wait_log(&["sending", &name], WAIT).await?;
    assert!(line.contains("user:[redacted]@"), "{line}");
    let (_, shown) = Api::new(&daemon)
        .get(&format!("/connectors/{name}/config"))
        .await?;
    assert_eq!(
        shown["config"]["headers"]["Authorization"], "[redacted]",
        "{shown}"
    );
    let everything = format!("{}{shown}", daemon.log().join("\n"));
    assert!(!everything.contains(password), "the URL password leaked");
    assert!(!everything.contains(token), "the bearer token leaked");
    Ok(())
}

/// Issue 21, secrets from files: `${file:PATH}` (a whole file, trimmed) and
/// `${file:PATH:KEY}` (a properties file) fill a connector's config, the values are used, and
/// none is shown: not in the config served, not in a FAILED trace served by `/status` and
/// `/health`, not in the log; nor is the value of a key a plugin marks secret, whatever its
/// name. `connectors.json`, which holds configs, is readable by the worker's user alone.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_from_files_are_used_and_never_shown() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = Pipeline::new("filed", 1, "id bigint").await?;
    let secrets = tempfile::tempdir()?;
    let (whole, properties) = (
        secrets.path().join("table"),
        secrets.path().join("sink.properties"),
    );
    let absent = unique("absent_table");
    std::fs::write(&whole, format!("  {}\n", p.table))?;
    std::fs::write(
        &properties,
        format!("# the failing sink's\ntable = {absent}\nother=1\n"),
    )?;
    let (good, failing) = (unique("filed"), unique("failing"));
    let plugin = paths::plugin("sink-sql")?;
    let entry = |name: &str, table: String| {
        crate::common::sink(
            name,
            &p.topic,
            &plugin,
            &["main"],
            &format!("database: main\ntable: {table}"),
        )
    };
    // `license`: a key transform-identity marks secret.
    let license = unique("opaque-licence");
    let connectors = format!(
        "{}    transforms:\n      - plugin: {}\n        config: {{ license: {license} }}\n{}",
        entry(&good, format!("${{file:{}}}", whole.display())),
        paths::plugin("transform-identity")?.display(),
        entry(
            &failing,
            format!("${{file:{}:table}}", properties.display())
        )
    );
    let data = secrets.path().join("data");
    let config = config(&p.broker, &p.pg, &connectors).replace(
        "worker:\n",
        &format!("worker:\n  data_dir: {}\n", data.display()),
    );
    let mut daemon = Daemon::start(&config)?;
    produce_ids(&p, 1..=5).await?;
    if let Err(e) = wait_rows(&p, &p.table, (5, 5)).await {
        return Err(e.context(daemon.evidence(&good).await));
    }
    let status = daemon.wait_task_state(&failing, "FAILED", WAIT).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("[redacted]"), "{trace}");

    let api = Api::new(&daemon);
    let (_, shown) = api.get(&format!("/connectors/{good}/config")).await?;
    assert_eq!(shown["config"]["table"], "[redacted]", "{shown}");
    assert_eq!(
        shown["transforms"][0]["config"]["license"], "[redacted]",
        "{shown}"
    );
    let (_, health) = api.get("/health").await?;
    let (_, failing_config) = api.get(&format!("/connectors/{failing}/config")).await?;
    let everything = format!(
        "{}{shown}{status}{health}{failing_config}",
        daemon.log().join("\n")
    );
    assert!(
        !everything.contains(&p.table),
        "the whole file's value leaked"
    );
    assert!(!everything.contains(&absent), "the property's value leaked");
    assert!(
        !everything.contains(&license),
        "the secret key's value leaked"
    );

    let (code, body) = api
        .put(&format!("/connectors/{failing}/stop"), None)
        .await?;
    assert!(code.is_success(), "{code}: {body}");
    let mode = std::fs::metadata(data.join("connectors.json"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "connectors.json is {mode:o}");

    // A connector that comes back STOPPED after a restart runs no task, and its plugin's
    // secret key is hidden all the same.
    let (code, body) = api.put(&format!("/connectors/{good}/stop"), None).await?;
    assert!(code.is_success(), "{code}: {body}");
    daemon.restart()?;
    daemon.wait_task_state(&good, "STOPPED", WAIT).await?;
    let (_, shown) = Api::new(&daemon)
        .get(&format!("/connectors/{good}/config"))
        .await?;
    assert_eq!(
        shown["transforms"][0]["config"]["license"], "[redacted]",
        "{shown}"
    );
    Ok(())
}

/// One HTTP/1.1 request written by hand to `address`, as a browser or a script could send
/// it: `request` (`METHOD /path`), then `headers`, then `body` (with its length). Returns the
/// status code and the response body.
async fn raw_request(
    address: &str,
    request: &str,
    headers: &[&str],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut text = format!("{request} HTTP/1.1\r\nConnection: close\r\n");
    for header in headers {
        text.push_str(&format!("{header}\r\n"));
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str(&format!("\r\n{body}"));
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(text.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    Ok((code, body))
}

/// Issue 21, the admin API's defenses against web pages: a form post (the three types a form
/// can send), a script of another site and a DNS-rebinding page can neither create nor pause a
/// connector nor read the list, while the same calls as curl or a Kafka Connect client send
/// them work, and so does a name the operator listed in `admin.hosts`.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_drive_the_api() -> anyhow::Result<()> {
    let p = Pipeline::new("browser", 1, "id bigint").await?;
    let config =
        config(&p.broker, &p.pg, "  []\n").replace("admin:\n", "admin:\n  hosts: [connect.test]\n");
    let daemon = Daemon::start(&config)?;
    let admin = daemon.admin.clone();
    let port = admin.rsplit(':').next().unwrap_or_default().to_owned();
    let name = unique("api");
    let create = json!({ "name": name, "config": {
        "kind": "sink",
        "plugin": paths::plugin("sink-sql")?.display().to_string(),
        "topics": [p.topic],
        "grants": { "databases": ["main"] },
        "config": { "database": "main", "table": p.table },
    }})
    .to_string();
    let host = format!("Host: {admin}");
    let json_type = "Content-Type: application/json";
    let ready = wait_until("the API to answer", WAIT, || async {
        Ok(
            match raw_request(&admin, "GET /connectors", &[&host], "").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
    })
    .await;
    if let Err(e) = ready {
        return Err(e.context(daemon.log().join("\n")));
    }

    for form in [
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
        "Content-Type: text/plain",
    ] {
        let (code, body) = raw_request(&admin, "POST /connectors", &[&host, form], &create).await?;
        assert_eq!(code, 415, "{form}: {body}");
        assert!(body.contains("application/json"), "{body}");
    }
    let (code, body) = raw_request(&admin, "POST /connectors", &[&host], &create).await?;
    assert_eq!(code, 415, "a body without a type: {body}");
    let from_elsewhere = "Origin: https://evil.example";
    let (code, body) = raw_request(
        &admin,
        "POST /connectors",
        &[&host, json_type, from_elsewhere],
        &create,
    )
    .await?;
    assert_eq!(code, 403, "another site's script: {body}");
    assert!(body.contains("evil.example"), "{body}");
    let rebound = format!("Host: rebind.evil.example:{port}");
    for (request, headers, body) in [
        ("GET /connectors", vec![rebound.as_str()], ""),
        (
            "POST /connectors",
            vec![rebound.as_str(), json_type],
            create.as_str(),
        ),
    ] {
        let (code, answer) = raw_request(&admin, request, &headers, body).await?;
        assert_eq!(code, 403, "rebinding, {request}: {answer}");
        assert!(answer.contains("admin.hosts"), "{answer}");
    }
    let (code, body) = raw_request(&admin, "GET /connectors", &[&host], "").await?;
    assert_eq!((code, body.trim()), (200, "[]"), "nothing was created");

    // The calls as clients send them: JSON from the API's own origin, a listed host name.
    let own_origin = format!("Origin: http://{admin}");
    let (code, body) = raw_request(
        &admin,
        "POST /connectors",
        &[&host, json_type, &own_origin],
        &create,
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    let listed = format!("Host: CONNECT.test:{port}");
    let (code, body) = raw_request(&admin, "GET /connectors", &[&listed], "").await?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&name), "{body}");

    // A form's pause is refused; curl's body-less, typeless `PUT .../pause` is obeyed.
    let pause = format!("PUT /connectors/{name}/pause");
    let form = "Content-Type: application/x-www-form-urlencoded";
    let (code, body) = raw_request(&admin, &pause, &[&host, form], "").await?;
    assert_eq!(code, 415, "{body}");
    let (code, body) = raw_request(&admin, &pause, &[&host, from_elsewhere], "").await?;
    assert_eq!(code, 403, "{body}");
    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;
    let (code, body) = raw_request(&admin, &pause, &[&host], "").await?;
    assert_eq!(code, 202, "{body}");
    daemon.wait_task_state(&name, "PAUSED", WAIT).await?;
    Ok(())
}

/// Issue 21, the admin API over HTTPS with client certificates: a client that trusts the
/// test CA and presents a certificate it issued is served; one without a certificate, one that
/// does not trust the API's certificate, and one speaking plain HTTP are not. A key that does
/// not belong to the certificate stops the daemon at start, naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_serves_https_to_the_clients_its_ca_vouches_for() -> anyhow::Result<()> {
    use wasmconnect_tests::tls::{ClientAuth, Issued, ServerAuth, TestCa};
    let p = Pipeline::new("https", 1, "id bigint").await?;
    let dir = tempfile::tempdir()?;
    let file = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let ca = TestCa::new("wasmconnect test CA")?;
    let Issued {
        certificate: server,
        key: server_key,
    } = ca.issue(&["127.0.0.1", "localhost"], ServerAuth)?;
    let Issued {
        certificate: client,
        key: client_key,
    } = ca.issue(&["operator"], ClientAuth)?;
    let other = TestCa::new("another CA")?;
    let (ca_file, server_file, key_file) = (
        file("ca.pem", &ca.pem)?,
        file("server.pem", &server)?,
        file("server.key", &server_key)?,
    );
    let tls = |key: &str| {
        format!(
            "admin:\n  tls: {{ certificate: {server_file}, key: {key}, client_ca: {ca_file} }}\n"
        )
    };
    let config = config(&p.broker, &p.pg, "  []\n");
    let daemon = Daemon::start(&config.replace("admin:\n", &tls(&key_file)))?;
    let url = format!("https://{}/connectors", daemon.admin);

    let trusting = |ca: &str| -> anyhow::Result<reqwest::ClientBuilder> {
        Ok(Client::builder()
            .tls_backend_rustls()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes())?]))
    };
    let identity = reqwest::Identity::from_pem(format!("{client}{client_key}").as_bytes())?;
    let operator = trusting(&ca.pem)?.identity(identity.clone()).build()?;
    let answered = wait_until("the API to answer over HTTPS", WAIT, || async {
        Ok(match operator.get(&url).send().await {
            Ok(response) => Ok(response.status()),
            Err(e) => Err(format!("{e:?}")),
        })
    })
    .await;
    let status = match answered {
        Ok(status) => status,
        Err(e) => return Err(e.context(daemon.log().join("\n"))),
    };
    assert_eq!(status, StatusCode::OK);

    let anonymous = trusting(&ca.pem)?.build()?;
    let refused = anonymous.get(&url).send().await;
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
    let doubting = trusting(&other.pem)?.identity(identity).build()?;
    let refused = doubting.get(&url).send().await;
    assert!(
        refused.is_err(),
        "a client trusted a certificate its CA did not issue: {refused:?}"
    );
    let plain = Client::new()
        .get(format!("http://{}/connectors", daemon.admin))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|r| !r.status().is_success()),
        "served plain HTTP: {plain:?}"
    );

    // The CA's key does not belong to the server's certificate.
    let wrong_key = file("wrong.key", &ca.key_pem())?;
    let config_file = file(
        "wrong.yaml",
        &config
            .replace("{admin}", "127.0.0.1:0")
            .replace("admin:\n", &tls(&wrong_key)),
    )?;
    let run = tokio::process::Command::new(paths::wasmconnect_bin()?)
        .args(["run", "--no-status", &config_file])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, run).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("admin.tls"), "{stderr}");
    Ok(())
}
