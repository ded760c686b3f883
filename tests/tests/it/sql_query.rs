//! The sql capability's `query`: bound to granted databases, values mapped by column type,
//! column names even for an empty result, unmapped types refused naming the column.

use std::time::Duration;

use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

use crate::common::{config, sink};

#[tokio::test(flavor = "multi_thread")]
async fn queries_return_typed_rows_from_granted_databases_only() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table) = (unique("queries"), unique("things"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (id int8, name text, ok bool, ratio float8, doc jsonb, note json, grade \"char\", blob bytea, at timestamptz)"
    ))
    .await?;
    pg.execute(&format!(
        "INSERT INTO {table} VALUES (1, 'one', true, 0.5, '{{\"a\":1}}', '{{\"b\" : [1,2]}}', 'A', '\\x0102', now()), (2, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await?;
    let commands = [
        format!(
            "sql:main:SELECT id, name, ok, ratio, doc, note, grade, blob FROM {table} ORDER BY id"
        ),
        format!("sql:main:SELECT id, name FROM {table} WHERE false"),
        format!("sql:main:SELECT at FROM {table}"),
        "sql:other:SELECT 1".to_owned(),
    ];
    let daemon = probe(&broker, &pg, &topic, &commands).await?;

    let wait = Duration::from_secs(60);
    daemon
        .wait_log(
            &[r#"probe sql: columns ["id", "name", "ok", "ratio", "doc", "note", "grade", "blob"], rows [[Integer(1), Text("one"), Boolean(true), Double(0.5), Json("{\"a\": 1}"), Json("{\"b\" : [1,2]}"), Text("A"), Bytes([1, 2])], [Integer(2), Null, Boolean(false), Null, Null, Null, Null, Null]]"#],
            wait,
        )
        .await?;
    daemon
        .wait_log(&[r#"probe sql: columns ["id", "name"], rows []"#], wait)
        .await?;
    daemon
        .wait_log(
            &[
                "probe sql: statement rejected: column \"at\" has type TIMESTAMPTZ",
                "at::text",
            ],
            wait,
        )
        .await?;
    daemon
        .wait_log(
            &["probe sql: access denied: database \"other\" is not granted"],
            wait,
        )
        .await?;
    Ok(())
}

/// A `json` parameter goes to PostgreSQL as `jsonb` text the host does not parse: it lands in
/// `jsonb` and `json` columns as the JSON it is, and text that is not JSON is refused by the
/// server (`rejected`, SQLSTATE 22P02), naming the statement and the parameter, with nothing
/// written.
#[tokio::test(flavor = "multi_thread")]
async fn json_parameters_are_stored_as_json_and_text_that_is_not_is_refused() -> anyhow::Result<()>
{
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (topic, table) = (unique("json_params"), unique("docs"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (doc jsonb, note json)"))
        .await?;
    let commands = [
        format!(
            "exec:main:INSERT INTO {table} (doc, note) VALUES ($1, $1)\n{{\"a\": [1, \"é\"], \"b\": null}}"
        ),
        format!("exec:main:INSERT INTO {table} (doc) VALUES ($1)\n{{\"a\": 1"),
    ];
    let daemon = probe(&broker, &pg, &topic, &commands).await?;

    let wait = Duration::from_secs(60);
    daemon.wait_log(&["probe exec: 1 rows"], wait).await?;
    daemon
        .wait_log(
            &[
                "probe exec: statement rejected: statement 0: invalid input syntax for type json",
                "(SQLSTATE 22P02); parameter 1 is not valid JSON: EOF while parsing an object",
            ],
            wait,
        )
        .await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as(&format!("SELECT doc::text, note::text FROM {table}"))
            .fetch_all(&pg.pool)
            .await?;
    assert_eq!(
        rows,
        [(
            r#"{"a": [1, "é"], "b": null}"#.to_owned(),
            r#"{"a": [1, "é"], "b": null}"#.to_owned()
        )],
        "the one valid document, in both columns; nothing of the refused one"
    );
    Ok(())
}

/// A daemon running the probe sink (granted database `main`) on `topic`, with `commands`
/// produced to it, one record each.
async fn probe(
    broker: &Broker,
    pg: &Postgres,
    topic: &str,
    commands: &[String],
) -> anyhow::Result<Daemon> {
    let connector = sink(
        &unique("probe"),
        topic,
        &paths::plugin("sink-probe")?,
        &["main"],
        "{}",
    );
    let daemon = Daemon::start(&config(broker, pg, &connector))?;
    let records: Vec<_> = commands
        .iter()
        .map(|c| (None, Some(c.as_bytes().to_vec())))
        .collect();
    broker.produce(topic, &records).await?;
    Ok(daemon)
}
