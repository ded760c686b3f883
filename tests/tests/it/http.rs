//! The http capability: granted hosts answer, anything else is denied before a connection is
//! made (a redirect included), and timeouts and the response cap hold.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

use crate::common::{config, connection_counter};

/// The granted server: `/ok`, `/big` (2 MiB), `/slow` (never answers), `/away` (redirects
/// to `elsewhere`).
async fn granted_server(elsewhere: String) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let app = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route("/big", get(|| async { vec![b'x'; 2 << 20] }))
        .route(
            "/slow",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .route(
            "/away",
            get(move || async move { Redirect::temporary(&format!("http://{elsewhere}/stolen")) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_granted_hosts_are_reached_within_the_limits() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (forbidden, connections) = connection_counter().await?;
    let granted = granted_server(forbidden.clone()).await?;
    let topic = unique("urls");
    broker.create_topic(&topic, 1).await?;
    let name = unique("probe");
    let connector = format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 1 }}
    limits: {{ call_timeout_ms: 5000, http_timeout_ms: 1000, http_max_response_bytes: 1048576 }}
    grants:
      http: [\"{granted}\"]
    config: {{}}
",
        plugin = paths::plugin("sink-probe")?.display()
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let urls = [
        format!("http://{granted}/ok"),
        format!("http://{forbidden}/direct"),
        format!("http://{granted}/away"),
        format!("http://{granted}/big"),
        format!("http://{granted}/slow"),
        "file:///etc/passwd".to_owned(),
    ];
    broker
        .produce(
            &topic,
            &urls
                .iter()
                .map(|u| (None, Some(u.as_bytes().to_vec())))
                .collect::<Vec<_>>(),
        )
        .await?;

    let wait = Duration::from_secs(60);
    daemon
        .wait_log(&[&format!("probe {}: status 200, 5 bytes", urls[0])], wait)
        .await?;
    daemon
        .wait_log(
            &[
                &format!("probe {}: access denied", urls[1]),
                "is not on a host granted",
            ],
            wait,
        )
        .await?;
    daemon
        .wait_log(
            &[
                &format!("probe {}: access denied", urls[2]),
                &format!("http://{forbidden}/stolen"),
            ],
            wait,
        )
        .await?;
    daemon
        .wait_log(
            &[
                &format!("probe {}: response too large", urls[3]),
                "1048576 bytes",
            ],
            wait,
        )
        .await?;
    daemon
        .wait_log(&[&format!("probe {}: timeout", urls[4]), "1000 ms"], wait)
        .await?;
    daemon
        .wait_log(&[&format!("probe {}: invalid request", urls[5])], wait)
        .await?;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached the ungranted host"
    );
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");
    Ok(())
}
