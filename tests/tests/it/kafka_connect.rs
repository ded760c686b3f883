//! Kafka Connect's config vocabulary over the REST API, as a Kafka Connect user brings it: a
//! flat map of strings created and driven by a third-party Kafka Connect client
//! (kafka-connect-py's `kc`), `topics.regex` picking up a topic created after start, a
//! transform applied under a predicate, a value that does not convert refused by key, and a
//! Confluent JDBC sink config (with SMTs by their class names) writing into PostgreSQL.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wasmconnect_tests::{Daemon, paths, unique, wait_until};

use crate::common::{Pipeline, config, json as value};

const WAIT: Duration = Duration::from_secs(60);

/// A daemon on the pipeline's broker and database with no connector, listing the plugins
/// this repository builds (`worker.plugin_path`), as an operator's `plugins/` would.
fn daemon(p: &Pipeline) -> anyhow::Result<Daemon> {
    let plugins = paths::plugin("sink-sql")?
        .parent()
        .expect("a plugin's directory")
        .display()
        .to_string();
    let text = config(&p.broker, &p.pg, "  []\n").replace(
        "worker:\n",
        &format!("worker:\n  plugin_path: [\"{plugins}\"]\n"),
    );
    Daemon::start(&text)
}

/// Runs kafka-connect-py's `kc` on the daemon's API; its output as JSON (`null` when it
/// printed nothing or `null`).
fn kc(daemon: &Daemon, args: &[&str]) -> anyhow::Result<Value> {
    let output = Command::new(paths::kc()?)
        .args(["--url", &format!("http://{}", daemon.admin)])
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "kc {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout.trim();
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("kc {args:?} printed {text:?}: {e}"))
}

/// The JSON body of `response`, once its status is `want` (the body told otherwise).
async fn answer(response: reqwest::Response, want: StatusCode) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status == want, "answered {status}, not {want}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `GET url`, answered 200 with JSON.
async fn get(api: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    answer(api.get(url).send().await?, StatusCode::OK).await
}

async fn rows(p: &Pipeline, filter: &str) -> anyhow::Result<i64> {
    p.pg.count(&format!(
        "SELECT count(DISTINCT id) FROM {} WHERE {filter}",
        p.table
    ))
    .await
}

async fn wait_rows(p: &Pipeline, filter: &str, want: i64) -> anyhow::Result<()> {
    wait_until(&format!("{want} rows where {filter}"), WAIT, || async {
        let got = rows(p, filter).await?;
        Ok(if got == want {
            Ok(())
        } else {
            Err(got.to_string())
        })
    })
    .await
}

async fn produce(
    p: &Pipeline,
    topic: &str,
    ids: std::ops::RangeInclusive<i64>,
) -> anyhow::Result<()> {
    let records: Vec<_> = ids
        .map(|id| (None, value(json!({ "id": id, "src": "raw" }))))
        .collect();
    p.broker.produce(topic, &records).await
}

async fn wait_state(daemon: &Daemon, name: &str, state: &str) -> anyhow::Result<()> {
    wait_until(&format!("{name} {state} (kc status)"), WAIT, || async {
        let status = kc(daemon, &["status", name])?;
        Ok(
            if status["connector"]["state"] == state && status["tasks"][0]["state"] == state {
                Ok(())
            } else {
                Err(status.to_string())
            },
        )
    })
    .await
}

/// Waits until `kc list-topics` answers `want`.
async fn wait_topics(daemon: &Daemon, name: &str, want: &Value) -> anyhow::Result<()> {
    wait_until(&format!("the active topics {want}"), WAIT, || async {
        let topics = kc(daemon, &["list-topics", name])?;
        Ok(if &topics == want {
            Ok(())
        } else {
            Err(topics.to_string())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_connect_shaped_connector_lives_its_whole_life_through_kafka_connect_py()
-> anyhow::Result<()> {
    let p = Pipeline::new("kcpy", 2, "id bigint PRIMARY KEY, src text").await?;
    let mut daemon = daemon(&p)?;
    let name = unique("kcpy");
    // Strings throughout, as Kafka Connect has them; `key` and `mode` are sink-sql's own keys,
    // converted to the types its config spec declares (a list, a choice).
    let config = json!({
        "connector.class": "sink_sql",
        "tasks.max": "1",
        "topics": p.topic,
        "errors.retry.timeout": "2000",
        "errors.retry.delay.max.ms": "500",
        "consumer.override.auto.offset.reset": "earliest",
        "grants.databases": "main",
        "batch.max_wait_ms": "50",
        "database": "main",
        "table": p.table,
        "mode": "upsert",
        "key": "id",
    });

    let created = kc(
        &daemon,
        &[
            "create",
            "--config-data",
            &json!({ "name": name, "config": config }).to_string(),
        ],
    )?;
    assert_eq!(created["name"], name.as_str(), "{created}");
    assert_eq!(created["type"], "sink", "{created}");
    // GET .../config answers in the shape the connector was created in.
    let mut expected = config.clone();
    expected["name"] = json!(name);
    assert_eq!(kc(&daemon, &["config", &name])?, expected);
    let listed = kc(&daemon, &["list"])?;
    assert_eq!(listed, json!([name]));
    wait_state(&daemon, &name, "RUNNING").await?;
    produce(&p, &p.topic, 1..=20).await?;
    wait_rows(&p, "true", 20).await?;

    // Active topics: the topic it reads (a sink reports its assigned topics every few
    // seconds); empty after a reset, then seen again.
    let in_use = json!({ name.clone(): { "topics": [p.topic] } });
    wait_topics(&daemon, &name, &in_use).await?;
    kc(&daemon, &["reset-topics", &name])?;
    assert_eq!(
        kc(&daemon, &["list-topics", &name])?,
        json!({ name.clone(): { "topics": [] } })
    );
    wait_topics(&daemon, &name, &in_use).await?;

    // Pause and resume: records produced while paused arrive after the resume.
    kc(&daemon, &["pause", &name])?;
    wait_state(&daemon, &name, "PAUSED").await?;
    produce(&p, &p.topic, 21..=30).await?;
    kc(&daemon, &["resume", &name])?;
    wait_state(&daemon, &name, "RUNNING").await?;
    wait_rows(&p, "true", 30).await?;

    // A change in the same shape: two tasks now, each listed with its config.
    let mut changed = config.clone();
    changed["tasks.max"] = json!("2");
    let updated = kc(
        &daemon,
        &["update", &name, "--config-data", &changed.to_string()],
    )?;
    assert_eq!(updated["config"]["tasks.max"], "2", "{updated}");
    wait_until("two tasks listed", WAIT, || async {
        let tasks = kc(&daemon, &["list-tasks", &name])?;
        Ok(match tasks.as_array() {
            Some(t) if t.len() == 2 => Ok(()),
            _ => Err(tasks.to_string()),
        })
    })
    .await?;
    let tasks = kc(&daemon, &["list-tasks", &name])?;
    assert_eq!(tasks[1]["id"]["task"], 1, "{tasks}");
    assert_eq!(tasks[1]["config"]["connector.class"], "sink_sql", "{tasks}");
    kc(&daemon, &["restart", &name, "--include-tasks"])?;
    wait_state(&daemon, &name, "RUNNING").await?;
    produce(&p, &p.topic, 31..=40).await?;
    wait_rows(&p, "true", 40).await?;

    // The shape is kept across a restart of the process (killed, so nothing is saved late).
    daemon.restart()?;
    assert_eq!(kc(&daemon, &["config", &name])?["tasks.max"], "2");
    wait_state(&daemon, &name, "RUNNING").await?;
    produce(&p, &p.topic, 41..=50).await?;
    wait_rows(&p, "true", 50).await?;

    kc(&daemon, &["delete", &name])?;
    assert_eq!(kc(&daemon, &["list"])?, json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_regex_picks_up_a_topic_created_after_start_and_a_predicate_picks_records()
-> anyhow::Result<()> {
    let p = Pipeline::new("kcre", 1, "id bigint PRIMARY KEY, src text").await?;
    let daemon = daemon(&p)?;
    let api = reqwest::Client::new();
    let base = format!("http://{}", daemon.admin);
    let name = unique("kcre");
    let late = format!("{}-late", p.topic);
    // The transform stamps records of the late topic only (TopicNameMatches), so a row says
    // which topic it came from.
    let config = json!({
        "name": name,
        "connector.class": "sink_sql",
        "topics.regex": format!("{}.*", p.topic),
        "consumer.override.topic.metadata.refresh.interval.ms": "1000",
        "grants.databases": "main",
        "batch.max_wait_ms": "50",
        "database": "main",
        "table": p.table,
        "transforms": "stamp",
        "transforms.stamp.type": "transform_fields",
        "transforms.stamp.insert": "{\"/src\": \"late\"}",
        "transforms.stamp.predicate": "isLate",
        "predicates": "isLate",
        "predicates.isLate.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        "predicates.isLate.pattern": ".*-late",
    });
    let response = api
        .put(format!("{base}/connectors/{name}/config"))
        .json(&config)
        .send()
        .await?;
    answer(response, StatusCode::CREATED).await?;
    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;
    produce(&p, &p.topic, 1..=10).await?;
    wait_rows(&p, "src = 'raw'", 10).await?;

    // PATCH in the shape given: a merge over the flat map, answered in it.
    let response = api
        .patch(format!("{base}/connectors/{name}/config"))
        .json(&json!({ "batch.max_wait_ms": "20", "errors.log.enable": "false" }))
        .send()
        .await?;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await?
    );
    let shown = get(&api, format!("{base}/connectors/{name}/config")).await?;
    let mut expected = config.clone();
    expected["batch.max_wait_ms"] = json!("20");
    expected["errors.log.enable"] = json!("false");
    assert_eq!(shown, expected);
    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;
    let response = api
        .patch(format!("{base}/connectors/{name}/config"))
        .json(&json!({ "connector.class": null }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("connector.class: "),
        "{body}"
    );

    p.broker.create_topic(&late, 1).await?;
    produce(&p, &late, 11..=20).await?;
    wait_rows(&p, "src = 'late'", 10).await?;
    assert_eq!(rows(&p, "src = 'raw'").await?, 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_string_that_does_not_convert_is_refused_naming_its_key() -> anyhow::Result<()> {
    let p = Pipeline::new("kcbad", 1, "id bigint").await?;
    let daemon = daemon(&p)?;
    let api = reqwest::Client::new();
    let base = format!("http://{}", daemon.admin);
    let config = json!({
        "connector.class": "sink_sql",
        "topics": p.topic,
        "tasks.max": "two",
        "grants.databases": "main",
        "batch.max_records": "lots",
        "database": "main",
        "table": p.table,
        "tabel": "typo",
    });
    let name = unique("kcbad");
    let response = api
        .post(format!("{base}/connectors"))
        .json(&json!({ "name": name, "config": config }))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    let message = body["message"].as_str().unwrap_or_default();
    for part in [
        "tasks.max: \"two\" does not convert: expected a whole number",
        "batch.max_records: \"lots\" does not convert",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }

    // Validate answers per key as given; the typo is named with the plugin's keys.
    let mut typo = config.clone();
    typo["tasks.max"] = json!("1");
    typo["batch.max_records"] = json!("100");
    let url = format!("{base}/connector-plugins/sink_sql/config/validate");
    let body = answer(api.put(url).json(&typo).send().await?, StatusCode::OK).await?;
    assert_eq!(body["error_count"], 1, "{body}");
    let tabel = body["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["value"]["name"] == "tabel")
        .cloned()
        .unwrap_or_default();
    let errors = tabel["value"]["errors"].to_string();
    assert!(errors.contains("did you mean \\\"table\\\"?"), "{body}");
    assert_eq!(
        api.get(format!("{base}/connectors/{name}"))
            .send()
            .await?
            .status(),
        StatusCode::NOT_FOUND
    );
    Ok(())
}

/// The JDBC URL, user and password Kafka Connect's JDBC sink would be given for `url`.
pub(crate) fn jdbc(url: &str) -> anyhow::Result<(String, String, String)> {
    let url = reqwest::Url::parse(url)?;
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    Ok((
        format!("jdbc:postgresql://{host}:{port}{}", url.path()),
        url.username().to_owned(),
        url.password().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confluent_jdbc_sink_config_writes_into_postgresql_on_its_own_database()
-> anyhow::Result<()> {
    let p = Pipeline::new(
        "kcjdbc",
        1,
        "id bigint PRIMARY KEY, name text, card text, src text",
    )
    .await?;
    let daemon = daemon(&p)?;
    let api = reqwest::Client::new();
    let base = format!("http://{}", daemon.admin);

    // The classes the shipped plugins answer to are listed beside their file names.
    let listed = get(
        &api,
        format!("{base}/connector-plugins?connectorsOnly=false"),
    )
    .await?;
    let aliases = |class: &str| {
        listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["class"] == class)
            .map(|p| p["aliases"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        aliases("sink_sql"),
        json!(["io.confluent.connect.jdbc.JdbcSinkConnector"])
    );
    assert_eq!(
        aliases("sink_http"),
        json!(["io.confluent.connect.http.HttpSinkConnector"])
    );
    assert_eq!(
        aliases("transform_fields"),
        json!([
            "org.apache.kafka.connect.transforms.InsertField$Value",
            "org.apache.kafka.connect.transforms.MaskField$Value",
            "org.apache.kafka.connect.transforms.ReplaceField$Value"
        ])
    );
    let kc = |name: &str| format!("org.apache.kafka.connect.transforms.{name}");
    for (class, classes) in [
        ("transform_filter", vec![kc("Filter")]),
        ("transform_flatten", vec![kc("Flatten$Value")]),
        (
            "transform_route",
            vec![kc("RegexRouter"), kc("TimestampRouter")],
        ),
        (
            "transform_unwrap",
            vec!["io.debezium.transforms.ExtractNewRecordState".to_owned()],
        ),
        ("transform_cast", vec![kc("Cast$Key"), kc("Cast$Value")]),
        (
            "transform_timestamp",
            vec![kc("TimestampConverter$Key"), kc("TimestampConverter$Value")],
        ),
        (
            "transform_extract",
            vec![
                kc("ExtractField$Key"),
                kc("ExtractField$Value"),
                kc("HoistField$Key"),
                kc("HoistField$Value"),
            ],
        ),
        ("transform_key", vec![kc("ValueToKey")]),
        (
            "transform_headers",
            vec![
                kc("DropHeaders"),
                kc("HeaderFrom$Key"),
                kc("HeaderFrom$Value"),
                kc("InsertHeader"),
            ],
        ),
    ] {
        assert_eq!(aliases(class), json!(classes), "{listed}");
    }

    // As Confluent documents the JDBC sink (PostgreSQL, upsert by a value field), with SMTs
    // by their Kafka Connect class names (ReplaceField, MaskField, InsertField, and Filter
    // under a predicate). No `grants`: connection.url is the connector's own.
    let (url, user, password) = jdbc(&p.pg.url)?;
    let name = unique("kcjdbc");
    let config = json!({
        "name": name,
        "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": p.topic,
        "connection.url": url,
        "connection.user": user,
        "connection.password": password,
        "dialect.name": "PostgreSqlDatabaseDialect",
        "insert.mode": "upsert",
        "pk.mode": "record_value",
        "pk.fields": "id",
        "table.name.format": p.table,
        "auto.create": "false",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "consumer.override.auto.offset.reset": "earliest",
        "transforms": "dropDebug,maskCard,stamp,dropTest",
        "transforms.dropDebug.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "transforms.dropDebug.exclude": "debug",
        "transforms.dropDebug.renames": "full_name:name",
        "transforms.maskCard.type": "org.apache.kafka.connect.transforms.MaskField$Value",
        "transforms.maskCard.fields": "card",
        "transforms.maskCard.replacement": "****",
        "transforms.stamp.type": "org.apache.kafka.connect.transforms.InsertField$Value",
        "transforms.stamp.static.field": "src",
        "transforms.stamp.static.value": "kafka",
        "transforms.dropTest.type": "org.apache.kafka.connect.transforms.Filter",
        "transforms.dropTest.predicate": "isTest",
        "predicates": "isTest",
        "predicates.isTest.type": "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
        "predicates.isTest.name": "test",
    });
    let response = api
        .post(format!("{base}/connectors"))
        .json(&json!({ "name": name, "config": config }))
        .send()
        .await?;
    answer(response, StatusCode::CREATED).await?;
    daemon.wait_task_state(&name, "RUNNING", WAIT).await?;

    // Two versions of each id (the later wins), and records marked as tests (dropped).
    let mut records = Vec::new();
    for round in ["first", "second"] {
        for id in 1..=10 {
            let body = json!({ "id": id, "full_name": format!("{round}-{id}"),
                               "card": "4111111111111111", "debug": "x" });
            records.push((None, value(body)));
        }
    }
    p.broker.produce(&p.topic, &records).await?;
    for id in 100..=104 {
        let test = (None, value(json!({ "id": id, "full_name": "test" })));
        p.broker
            .produce_with_headers(&p.topic, &test, &[("test", Some(b"1".as_slice()))])
            .await?;
    }
    wait_rows(
        &p,
        "name LIKE 'second-%' AND card = '****' AND src = 'kafka'",
        10,
    )
    .await?;
    assert_eq!(rows(&p, "true").await?, 10, "test records are filtered out");

    // The config answers as given, its password redacted; its native form shows the
    // connector's own database, named by the plugin's `database` key.
    let shown = get(&api, format!("{base}/connectors/{name}/config")).await?;
    assert_eq!(shown["insert.mode"], "upsert", "{shown}");
    assert_eq!(shown["connection.password"], "[redacted]", "{shown}");
    let native = get(
        &api,
        format!("{base}/connectors/{name}/config?shape=native"),
    )
    .await?;
    assert_eq!(native["config"]["database"], "connection", "{native}");
    let own = native["databases"]["connection"]["url"]
        .as_str()
        .unwrap_or_default();
    let host_port = url
        .trim_start_matches("jdbc:postgresql://")
        .split('/')
        .next()
        .unwrap_or_default();
    assert!(own.contains(&format!("@{host_port}/")), "{native}");
    assert!(!own.contains(&format!(":{password}@")), "{native}");

    // What the JDBC sink can do that sink-sql cannot is refused, naming the key and why.
    let mut unsupported = config.clone();
    unsupported["pk.mode"] = json!("kafka");
    unsupported["batch.size"] = json!("500");
    let url = format!("{base}/connectors/{name}/config");
    let response = api.put(url).json(&unsupported).send().await?;
    let refused = answer(response, StatusCode::BAD_REQUEST).await?;
    let message = refused["message"].as_str().unwrap_or_default();
    for part in [
        "batch.size: is not supported: a batch is the runtime's",
        "pk.mode: only \"record_value\" or \"none\" is supported",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    Ok(())
}
