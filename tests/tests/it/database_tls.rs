//! Issue 21: sink-sql over TLS to PostgreSQL and MariaDB, with the URL parameters their users
//! know. The servers serve a certificate the test command's own CA issued
//! (`WASMCONNECT_TEST_DB_TLS`); PostgreSQL lets `wasmconnect_cert` in by its client certificate
//! alone, MariaDB lets `wasmconnect_tls` in over TLS only.

use std::path::PathBuf;
use std::time::Duration;

use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::tls::{TestCa, write_file};
use wasmconnect_tests::{Broker, Daemon, unique, wait_until};

use crate::databases::sink_config;

const WAIT: Duration = Duration::from_secs(30);

/// The directory of the test databases' CA and client certificate.
fn tls_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var("WASMCONNECT_TEST_DB_TLS").map_err(|_| {
        anyhow::anyhow!("WASMCONNECT_TEST_DB_TLS is not set: the README test command sets it")
    })?;
    Ok(PathBuf::from(dir))
}

fn ids(n: i64) -> Vec<wasmconnect_tests::broker::KeyValue> {
    (0..n)
        .map(|id| (None, Some(format!(r#"{{"id":{id}}}"#).into_bytes())))
        .collect()
}

/// Waits until `table` of `db` holds `n` rows.
async fn wait_rows(db: &TestDb, daemon: &Daemon, table: &str, n: i64) -> anyhow::Result<()> {
    wait_until(&format!("{n} rows in {table}"), WAIT, || async {
        let rows = db.count(&format!("SELECT count(*) FROM {table}")).await?;
        Ok(if rows == n {
            Ok(())
        } else {
            Err(format!("{rows}"))
        })
    })
    .await
    .map_err(|e| e.context(daemon.log().join("\n")))
}

/// A daemon whose sink-sql connector `name` writes `topic` into `table` of the database at
/// `url`.
fn daemon(broker: &Broker, url: &str, [name, topic, table]: [&str; 3]) -> anyhow::Result<Daemon> {
    Daemon::start(&sink_config(
        broker,
        url,
        [name, topic, table],
        "restart: { initial_backoff_ms: 50, max_backoff_ms: 500, max_consecutive_traps: 3 }\nerrors: { retry: { initial_backoff_ms: 50, max_backoff_ms: 500 } }",
        "",
    )?)
}

/// PostgreSQL: `sslmode=verify-full` with the CA and a client certificate, as a role that may
/// log in by certificate only, writes every row; the same with a CA that did not issue the
/// server's certificate is a FAILED task that says why and writes nothing; with the URL
/// fixed, what came meanwhile is written.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_verify_full_with_a_client_certificate() -> anyhow::Result<()> {
    let tls = tls_dir()?;
    let broker = Broker::start().await?;
    let db = TestDb::connect(Kind::Postgres).await?;
    let (topic, table, name) = (unique("in"), unique("t"), unique("pg_tls"));
    broker.create_topic(&topic, 1).await?;
    db.execute(&format!("CREATE TABLE {table} (id bigint)"))
        .await?;
    db.execute(&format!("GRANT ALL ON {table} TO wasmconnect_cert"))
        .await?;
    broker.produce(&topic, &ids(10)).await?;

    let file = |name: &str| tls.join(name).display().to_string();
    let url = format!(
        "postgres://wasmconnect_cert@127.0.0.1:5432/postgres?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );
    let mut trusted = daemon(&broker, &url, [&name, &topic, &table])?;
    wait_rows(&db, &trusted, &table, 10).await?;
    trusted.terminate(WAIT).await?;

    // The server's certificate checked against a CA that did not issue it: FAILED, saying
    // so, and the records that came meanwhile are neither written nor lost.
    let dir = tempfile::tempdir()?;
    let other = write_file(dir.path(), "other.pem", &TestCa::new("another CA")?.pem)?;
    let doubting_url = url.replace(&file("ca.pem"), &other.display().to_string());
    broker.produce(&topic, &ids(15)[10..]).await?;
    let mut doubting = daemon(&broker, &doubting_url, [&name, &topic, &table])?;
    let status = doubting
        .wait_task_state(&name, "FAILED", WAIT)
        .await
        .map_err(|e| e.context(doubting.log().join("\n")))?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("TLS: the server's certificate is not trusted: no CA in sslrootcert"),
        "{trace}"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {table}")).await?,
        10
    );
    doubting.terminate(WAIT).await?;

    let trusted = daemon(&broker, &url, [&name, &topic, &table])?;
    wait_rows(&db, &trusted, &table, 15).await
}

/// MariaDB: `ssl-mode=VERIFY_IDENTITY` with the CA, as a user MariaDB lets in over TLS only,
/// writes every row.
#[tokio::test(flavor = "multi_thread")]
async fn mariadb_verify_identity() -> anyhow::Result<()> {
    let tls = tls_dir()?;
    let broker = Broker::start().await?;
    let db = TestDb::connect(Kind::MariaDb).await?;
    let (topic, table, name) = (unique("in"), unique("t"), unique("my_tls"));
    broker.create_topic(&topic, 1).await?;
    db.execute(&format!("CREATE TABLE {table} (id bigint)"))
        .await?;
    broker.produce(&topic, &ids(10)).await?;
    let url = format!(
        "mysql://wasmconnect_tls:wasmconnect@127.0.0.1:3306/wasmconnect?ssl-mode=VERIFY_IDENTITY&ssl-ca={}",
        tls.join("ca.pem").display()
    );
    let daemon = daemon(&broker, &url, [&name, &topic, &table])?;
    wait_rows(&db, &daemon, &table, 10).await
}
