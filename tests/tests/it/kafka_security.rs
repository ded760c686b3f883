//! Issue 21: the daemon reaches a secured Kafka. tansu with its own SCRAM user store (SASL),
//! and a rustls terminator in front of it for TLS (tansu 0.6 does not terminate TLS itself):
//! every client the runtime makes (sink consumers, source producers, the offsets topic, admin
//! clients) logs in; wrong credentials and untrusted certificates are FAILED statuses that say
//! which.

use std::time::Duration;

use wasmconnect_tests::broker::Secured;
use wasmconnect_tests::tls::{ClientAuth, ServerAuth, TestCa, TlsTerminator, write_file};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

use crate::common::{config, sink, source, wait_count, wait_for_ids};

const WAIT: Duration = Duration::from_secs(20);

/// `config` (made by [`config`]) with librdkafka `properties` for every client of the daemon.
fn with_properties(config: &str, properties: &[(&str, &str)]) -> String {
    let lines: String = properties
        .iter()
        .map(|(key, value)| format!("    {key}: {}\n", serde_json::Value::from(*value)))
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
    let mut daemon = Daemon::start(&good)?;
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 20, WAIT).await?;
    let produced = wait_for_ids(&broker, &out, 50, WAIT).await?;
    assert_eq!(produced.unique(), 50);
    // A clean stop: the consumer leaves the group (tansu 0.6 may leave a killed member's
    // partitions unassigned, see STACK-NOTES).
    daemon.terminate(WAIT).await?;

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

/// One sink-sql connector `name` from `topic` into `table`, in a daemon config whose Kafka
/// clients connect with `properties`.
async fn sink_daemon(
    broker: &Broker,
    pg: &Postgres,
    (name, topic, table): (&str, &str, &str),
    properties: &[(&str, &str)],
) -> anyhow::Result<Daemon> {
    let connector = sink(
        name,
        topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    );
    Daemon::start(&with_properties(
        &config(broker, pg, &connector),
        properties,
    ))
}

/// The FAILED trace of task 0 of `connector`.
async fn failed_trace(daemon: &Daemon, connector: &str) -> anyhow::Result<String> {
    let status = daemon
        .wait_task_state(connector, "FAILED", WAIT)
        .await
        .map_err(|e| e.context(daemon.log().join("\n")))?;
    Ok(status["tasks"][0]["trace"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// TLS to Kafka through a rustls terminator in front of tansu that requires client
/// certificates: `security.protocol: SSL` with the test CA and a client certificate (files for
/// the CA, inline PEM for the certificate and key) moves records; a CA that did not issue the
/// broker's certificate, a missing client certificate and a certificate for another host name
/// are FAILED statuses that say which.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_moves_records_and_each_tls_mistake_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("wasmconnect test CA")?;
    let server = ca.issue(&["127.0.0.1", "localhost"], ServerAuth)?;
    let client = ca.issue(&["wasmconnect"], ClientAuth)?;
    let broker = Broker::start_secured(Secured {
        tls: Some((server, Some(ca.pem.clone()))),
        client_tls: vec![
            ("ssl.ca.pem".into(), ca.pem.clone()),
            ("ssl.certificate.pem".into(), client.certificate.clone()),
            ("ssl.key.pem".into(), client.key.clone()),
        ],
        ..Secured::default()
    })
    .await?;
    let pg = Postgres::connect().await?;
    let (topic, table) = (unique("in"), unique("t"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id bigint)"))
        .await?;
    broker.produce(&topic, &ids(10)).await?;

    let ca_file = write_file(dir.path(), "ca.pem", &ca.pem)?;
    let ca_file = ca_file.display().to_string();
    let trusted = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca_file.as_str()),
        ("ssl.certificate.pem", client.certificate.as_str()),
        ("ssl.key.pem", client.key.as_str()),
    ];
    let name = unique("tls");
    let daemon = sink_daemon(&broker, &pg, (&name, &topic, &table), &trusted).await?;
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 10, WAIT)
        .await
        .map_err(|e| e.context(daemon.log().join("\n")))?;
    drop(daemon);

    // A CA that did not issue the broker's certificate.
    let other = TestCa::new("another CA")?;
    let other_file = write_file(dir.path(), "other.pem", &other.pem)?;
    let mut doubting = trusted;
    doubting[1].1 = other_file.to_str().unwrap_or_default();
    let name = unique("untrusted");
    let daemon = sink_daemon(&broker, &pg, (&name, &topic, &table), &doubting).await?;
    let trace = failed_trace(&daemon, &name).await?;
    assert!(
        trace.contains("TLS handshake with the broker failed")
            && trace.contains(
                "issued by CN=wasmconnect test CA: not trusted: the CA in ssl.ca.location"
            )
            && trace.contains("other.pem"),
        "{trace}"
    );
    drop(daemon);

    // No client certificate.
    let name = unique("anonymous");
    let daemon = sink_daemon(&broker, &pg, (&name, &topic, &table), &trusted[..2]).await?;
    let trace = failed_trace(&daemon, &name).await?;
    assert!(trace.contains("requires a client certificate"), "{trace}");
    drop(daemon);

    // A terminator whose certificate is for another host, in front of the same broker.
    let elsewhere = ca.issue(&["kafka.example.com"], ServerAuth)?;
    let terminator = TlsTerminator::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        broker.listener.clone(),
        &elsewhere,
        None,
    )?;
    let name = unique("mismatch");
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    );
    let config = with_properties(&config(&broker, &pg, &connector), &trusted)
        .replace(&broker.bootstrap, &terminator.address);
    let daemon = Daemon::start(&config)?;
    let trace = failed_trace(&daemon, &name).await?;
    assert!(
        trace.contains("presented a certificate for kafka.example.com issued by CN=wasmconnect test CA: hostname mismatch: it is not for 127.0.0.1"),
        "{trace}"
    );
    Ok(())
}

/// SASL_SSL, what managed Kafka services ask for: SCRAM-SHA-256 over TLS, the broker's
/// certificate verified against the test CA (a file) and its host name.
#[tokio::test(flavor = "multi_thread")]
async fn sasl_ssl_with_scram_moves_records() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("wasmconnect test CA")?;
    let broker = Broker::start_secured(Secured {
        users: vec![("connect".into(), "connect-secret".into(), "scram256")],
        tls: Some((ca.issue(&["127.0.0.1", "localhost"], ServerAuth)?, None)),
        client_tls: vec![("ssl.ca.pem".into(), ca.pem.clone())],
    })
    .await?;
    let pg = Postgres::connect().await?;
    let (topic, table, name) = (unique("in"), unique("t"), unique("sasl_ssl"));
    broker.create_topic(&topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id bigint)"))
        .await?;
    broker.produce(&topic, &ids(10)).await?;
    let ca_file = write_file(dir.path(), "ca.pem", &ca.pem)?;
    let properties = [
        ("security.protocol", "SASL_SSL"),
        ("ssl.ca.location", ca_file.to_str().unwrap_or_default()),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.username", "connect"),
        ("sasl.password", "connect-secret"),
    ];
    let daemon = sink_daemon(&broker, &pg, (&name, &topic, &table), &properties).await?;
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 10, WAIT)
        .await
        .map_err(|e| e.context(daemon.log().join("\n")))?;
    Ok(())
}

/// OAUTHBEARER with OIDC client credentials (`sasl.oauthbearer.method: oidc`, which needs the
/// libcurl this build links): the daemon's clients fetch a token from the identity provider's
/// token endpoint, a real HTTP server on loopback, with their client id and secret. tansu 0.6
/// does not offer OAUTHBEARER, so the broker refuses the login itself: a FAILED trace naming
/// the mechanism. What is proven against a broker is the token flow, not a broker's check of
/// the token.
#[tokio::test(flavor = "multi_thread")]
async fn oauthbearer_fetches_its_token_from_the_oidc_endpoint() -> anyhow::Result<()> {
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let claims =
        serde_json::json!({"sub": "connect", "iat": now.as_secs(), "exp": now.as_secs() + 3600});
    let token = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/token",
            post(move |headers: HeaderMap, body: String| async move {
                let authorization = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock()
                    .expect("not poisoned")
                    .push((authorization, body));
                axum::Json(serde_json::json!({
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": 3600,
                }))
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/token", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let broker = Broker::start().await?;
    let pg = Postgres::connect().await?;
    let (topic, table, name) = (unique("in"), unique("t"), unique("oauth"));
    broker.create_topic(&topic, 1).await?;
    let properties = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("sasl.oauthbearer.method", "oidc"),
        ("sasl.oauthbearer.client.id", "wasmconnect"),
        ("sasl.oauthbearer.client.secret", "oidc-secret"),
        ("sasl.oauthbearer.token.endpoint.url", endpoint.as_str()),
    ];
    let daemon = sink_daemon(&broker, &pg, (&name, &topic, &table), &properties).await?;
    let trace = failed_trace(&daemon, &name).await?;
    assert!(
        trace.contains("does not enable this sasl.mechanism") && trace.contains("OAUTHBEARER"),
        "{trace}"
    );
    assert!(!trace.contains("oidc-secret"), "{trace}");
    let requests = seen.lock().expect("not poisoned").clone();
    let basic = format!("Basic {}", STANDARD.encode("wasmconnect:oidc-secret"));
    assert!(
        requests
            .iter()
            .any(|(auth, body)| *auth == basic && body.contains("grant_type=client_credentials")),
        "no client-credentials token request: {requests:?}"
    );
    Ok(())
}
