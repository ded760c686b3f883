//! Issue 21: the daemon reaches a secured Kafka. tansu with its own SCRAM user store (SASL),
//! and a rustls terminator in front of it for TLS (tansu 0.6 does not terminate TLS itself):
//! every client the runtime makes (sink consumers, source producers, the offsets topic, admin
//! clients) logs in; wrong credentials and untrusted certificates are FAILED statuses that say
//! which.

use std::time::Duration;

use wasmconnect_tests::broker::Secured;
use wasmconnect_tests::tls::{ClientAuth, Issued, ServerAuth, TestCa, write_file};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

use crate::common::{config, sink, source, wait_count, wait_for_ids};

const WAIT: Duration = Duration::from_secs(60);

/// `config` (made by [`config`]) with librdkafka `properties` for every client of the daemon.
fn with_properties(config: &str, properties: &[(&str, &str)]) -> String {
    let lines: String = properties
        .iter()
        .map(|(key, value)| format!("    {key}: \"{value}\"\n"))
        .collect();
    config.replacen(
        "  consumer:\n",
        &format!("  properties:\n{lines}  consumer:\n"),
        1,
    )
}

/// A sink-sql connector `name` from `topic` into `table` and a datagen source connector
/// `name_src` producing `count` records into `out`.
fn sink_and_source(name: &str, topic: &str, table: &str, out: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}{}",
        sink(
            name,
            topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &format!("database: main\ntable: {table}"),
        ),
        source(
            &format!("{name}_src"),
            out,
            &paths::plugin("source-datagen")?,
            "",
            "rate: 0\ncount: 50",
        )
    ))
}

fn ids(n: i64) -> Vec<wasmconnect_tests::broker::KeyValue> {
    (0..n)
        .map(|id| (None, Some(format!(r#"{{"id":{id}}}"#).into_bytes())))
        .collect()
}

/// SASL/SCRAM against tansu's own user store (the test's clients log in with SCRAM-SHA-256,
/// the daemon with SCRAM-SHA-512): with the right password a sink and a source move records;
/// with a wrong one both are FAILED and their traces say the broker refused the credentials
/// (without showing them); a mechanism the broker does not enable says so; once the password
/// is fixed and the daemon restarted, every record arrives, those produced meanwhile too.
#[tokio::test(flavor = "multi_thread")]
async fn sasl_scram_logs_in_and_a_wrong_password_is_a_failed_status_that_says_so()
-> anyhow::Result<()> {
    let broker = Broker::start_secured(Secured {
        users: vec![
            ("admin".into(), "admin-secret".into(), "scram256"),
            ("connect".into(), "connect-secret".into(), "scram512"),
        ],
        ..Secured::default()
    })
    .await?;
    let pg = Postgres::connect().await?;
    let (topic, out, table, name) = (unique("in"), unique("out"), unique("t"), unique("sasl"));
    broker.create_topic(&topic, 1).await?;
    broker.create_topic(&out, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id bigint)"))
        .await?;
    broker.produce(&topic, &ids(20)).await?;

    let connectors = sink_and_source(&name, &topic, &table, &out)?;
    let base = config(&broker, &pg, &connectors);
    let good = with_properties(
        &base,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "connect"),
            ("sasl.password", "connect-secret"),
        ],
    );
    let daemon = Daemon::start(&good)?;
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 20, WAIT).await?;
    let produced = wait_for_ids(&broker, &out, 50, WAIT).await?;
    assert_eq!(produced.unique(), 50);
    drop(daemon);

    let wrong = good.replace("connect-secret", "not-the-password");
    let daemon = Daemon::start(&wrong)?;
    for connector in [name.clone(), format!("{name}_src")] {
        let status = daemon.wait_task_state(&connector, "FAILED", WAIT).await?;
        let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
        assert!(
            trace.contains("refused the SASL login: wrong user name or password")
                && trace.contains("invalid-proof"),
            "{connector}: {trace}"
        );
        assert!(!trace.contains("not-the-password"), "{trace}");
    }
    // Records that arrive while the credentials are wrong are read once they are fixed.
    broker.produce(&topic, &ids(30)[20..]).await?;
    drop(daemon);

    let unsupported = with_properties(
        &base,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "connect"),
            ("sasl.password", "connect-secret"),
        ],
    );
    let daemon = Daemon::start(&unsupported)?;
    let status = daemon.wait_task_state(&name, "FAILED", WAIT).await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("does not enable this sasl.mechanism") && trace.contains("PLAIN"),
        "{trace}"
    );
    drop(daemon);

    let _daemon = Daemon::start(&good)?;
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 30, WAIT).await?;
    let rows = pg
        .count(&format!("SELECT count(DISTINCT id) FROM {table}"))
        .await?;
    assert_eq!(rows, 30, "every record written once the login works");
    Ok(())
}
