//! sink-http against a receiving server on loopback: server errors are retried with the
//! configured backoff, Retry-After is honoured, and a record the server refuses is found by
//! bisection and dead-lettered while every other record is delivered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, json, wait_committed};

/// Receives JSON arrays of `{"id": n, ...}` at `POST /in`. Answers the scripted statuses
/// first; then 400 to any batch holding an item with `"poison": true`, 200 to the others.
#[derive(Default)]
pub(crate) struct Receiver {
    script: Mutex<VecDeque<(StatusCode, Option<&'static str>)>>,
    /// Ids of the items accepted, in arrival order.
    accepted: Mutex<Vec<i64>>,
    /// Every request: when, and the status answered.
    attempts: Mutex<Vec<(Instant, u16)>>,
    /// Items accepted at `POST /in/{topic}`, with the topic.
    routed: Mutex<Vec<(String, serde_json::Value)>>,
}

impl Receiver {
    pub(crate) async fn serve(self: &Arc<Self>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let app = Router::new()
            .route("/in", post(receive))
            .route("/in/{topic}", post(receive_routed))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(address)
    }

    pub(crate) fn accepted(&self) -> Vec<i64> {
        self.accepted.lock().unwrap().clone()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    axum::Json(items): axum::Json<Vec<serde_json::Value>>,
) -> Response {
    let now = Instant::now();
    let scripted = receiver.script.lock().unwrap().pop_front();
    let (status, retry_after) = match scripted {
        Some(scripted) => scripted,
        None if items.iter().any(|i| i["poison"] == true) => (StatusCode::BAD_REQUEST, None),
        None => (StatusCode::OK, None),
    };
    receiver
        .attempts
        .lock()
        .unwrap()
        .push((now, status.as_u16()));
    if status == StatusCode::OK {
        let mut accepted = receiver.accepted.lock().unwrap();
        accepted.extend(items.iter().filter_map(|i| i["id"].as_i64()));
    }
    let mut headers = HeaderMap::new();
    if let Some(after) = retry_after {
        headers.insert("retry-after", after.parse().unwrap());
    }
    (status, headers, "scripted answer").into_response()
}

async fn receive_routed(
    State(receiver): State<Arc<Receiver>>,
    Path(topic): Path<String>,
    axum::Json(items): axum::Json<Vec<serde_json::Value>>,
) -> StatusCode {
    let mut routed = receiver.routed.lock().unwrap();
    routed.extend(items.into_iter().map(|item| (topic.clone(), item)));
    StatusCode::OK
}

/// A sink-http connector from `topic` to `http://{address}/in`, granted that host.
pub(crate) fn connector(
    name: &str,
    topic: &str,
    address: &str,
    errors: &str,
) -> anyhow::Result<String> {
    Ok(format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 100, max_wait_ms: 50 }}
    errors: {errors}
    grants:
      http: [\"{address}\"]
    config:
      url: \"http://{address}/in\"
      idempotency_header: Idempotency-Key
",
        plugin = paths::plugin("sink-http")?.display()
    ))
}

async fn wait_accepted(receiver: &Receiver, n: usize) -> anyhow::Result<()> {
    wait_until(
        &format!("{n} items accepted"),
        Duration::from_secs(60),
        || async {
            let have = receiver.accepted().len();
            Ok(if have >= n {
                Ok(())
            } else {
                Err(format!("{have} items"))
            })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_back_off_as_configured_and_retry_after_is_honoured() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let receiver = Arc::new(Receiver::default());
    {
        let mut script = receiver.script.lock().unwrap();
        for _ in 0..3 {
            script.push_back((StatusCode::INTERNAL_SERVER_ERROR, None));
        }
        script.push_back((StatusCode::TOO_MANY_REQUESTS, Some("2")));
    }
    let address = receiver.serve().await?;
    let (topic, name) = (unique("out"), unique("http_sink"));
    broker.create_topic(&topic, 1).await?;
    let errors = "{ retry: { initial_backoff_ms: 200, multiplier: 2, max_backoff_ms: 5000 } }";
    let daemon = Daemon::start(&config(
        &broker,
        &pg,
        &connector(&name, &topic, &address, errors)?,
    ))?;
    let records: Vec<_> = (0..50)
        .map(|i| (None, json(serde_json::json!({"id": i}))))
        .collect();
    broker.produce(&topic, &records).await?;

    wait_accepted(&receiver, 50).await?;
    let mut accepted = receiver.accepted();
    accepted.sort();
    assert_eq!(accepted, (0..50).collect::<Vec<i64>>(), "each item once");
    let attempts = receiver.attempts.lock().unwrap().clone();
    let statuses: Vec<u16> = attempts.iter().take(5).map(|(_, s)| *s).collect();
    assert_eq!(statuses, [500, 500, 500, 429, 200]);
    let gaps: Vec<Duration> = attempts[..5].windows(2).map(|w| w[1].0 - w[0].0).collect();
    // Backoff ceilings 200, 400, 800 ms; each delay is drawn from [ceiling/2, ceiling].
    for (gap, floor) in gaps.iter().zip([100, 200, 400]) {
        assert!(
            *gap >= Duration::from_millis(floor),
            "gaps {gaps:?}: one is shorter than {floor} ms"
        );
    }
    assert!(gaps[2] > gaps[0], "the backoff grows: {gaps:?}");
    assert!(
        gaps[3] >= Duration::from_secs(2),
        "the attempt after Retry-After: 2 came {:?} later",
        gaps[3]
    );
    let status = daemon.status(&name).await?;
    assert_eq!(status["tasks"][0]["counters"]["retries"], 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_the_server_refuses_is_dead_lettered_and_the_rest_delivered() -> anyhow::Result<()>
{
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let receiver = Arc::new(Receiver::default());
    let address = receiver.serve().await?;
    let (topic, dlq, name) = (unique("out"), unique("dlq"), unique("http_sink"));
    broker.create_topic(&topic, 1).await?;
    let errors = format!("{{ tolerance: all, dead_letter_topic: {{ name: {dlq} }} }}");
    let daemon = Daemon::start(&config(
        &broker,
        &pg,
        &connector(&name, &topic, &address, &errors)?,
    ))?;
    let records: Vec<_> = (0..40)
        .map(|i| (None, json(serde_json::json!({"id": i, "poison": i == 17}))))
        .collect();
    broker.produce(&topic, &records).await?;

    wait_committed(&broker, &name, &topic, 40).await?;
    let mut accepted = receiver.accepted();
    accepted.sort();
    let expected: Vec<i64> = (0..40).filter(|i| *i != 17).collect();
    assert_eq!(accepted, expected, "every other record is delivered, once");
    let dead = broker.read_all(&dlq).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header("__connect.errors.offset").as_deref(),
        Some("17")
    );
    let message = dead[0]
        .header("__connect.errors.exception.message")
        .unwrap_or_default();
    assert!(message.contains("HTTP 400"), "{message}");
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_filter_mask_and_route_shapes_what_reaches_the_sink() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let receiver = Arc::new(Receiver::default());
    let address = receiver.serve().await?;
    let (topic, name) = (unique("orders"), unique("http_sink"));
    broker.create_topic(&topic, 1).await?;
    let transform = |crate_name: &str| -> anyhow::Result<String> {
        Ok(paths::plugin(crate_name)?.display().to_string())
    };
    let connector = format!(
        "  - name: {name}
    kind: sink
    plugin: {plugin}
    topics: [{topic}]
    batch: {{ max_records: 100, max_wait_ms: 50 }}
    transforms:
      - plugin: {filter}
        config: {{ field: /amount, op: gt, value: 10 }}
      - plugin: {fields}
        config: {{ mask: [/card], mask_with: \"****\" }}
      - plugin: {route}
        config: {{ field: /region, topic: \"{{topic}}-{{field}}\" }}
    grants:
      http: [\"{address}\"]
    config:
      url: \"http://{address}/in/{{topic}}\"
",
        plugin = paths::plugin("sink-http")?.display(),
        filter = transform("transform-filter")?,
        fields = transform("transform-fields")?,
        route = transform("transform-route")?,
    );
    let _daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let regions = ["eu", "us"];
    let records: Vec<_> = (0..40)
        .map(|i| {
            let order = serde_json::json!({
                "id": i, "amount": i, "card": "4111-1111", "region": regions[i as usize % 2]
            });
            (None, json(order))
        })
        .collect();
    broker.produce(&topic, &records).await?;

    wait_until("the 29 orders over 10", Duration::from_secs(60), || async {
        let n = receiver.routed.lock().unwrap().len();
        Ok(if n >= 29 {
            Ok(())
        } else {
            Err(format!("{n} items"))
        })
    })
    .await?;
    wait_committed(&broker, &name, &topic, 40).await?;
    let routed = receiver.routed.lock().unwrap().clone();
    assert_eq!(routed.len(), 29, "only amounts over 10 pass the filter");
    for (to, item) in &routed {
        let id = item["id"].as_i64().unwrap();
        assert!(id > 10, "{item}");
        assert_eq!(item["card"], "****", "the card is masked: {item}");
        let region = regions[id as usize % 2];
        assert_eq!(to, &format!("{topic}-{region}"), "routed by region: {item}");
    }
    Ok(())
}

/// Issue 21: sink-http to an internal HTTPS service behind a private CA that requires client
/// certificates (a rustls terminator in front of the receiver). With the CA alone trusted
/// (`system_roots: false`) and the client certificate, every record arrives; without the
/// client certificate, and without the CA, the task is FAILED with a trace that says which.
#[tokio::test(flavor = "multi_thread")]
async fn sink_http_reaches_a_service_behind_a_private_ca_with_a_client_certificate()
-> anyhow::Result<()> {
    use wasmconnect_tests::tls::{ClientAuth, ServerAuth, TestCa, TlsTerminator, write_file};

    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let receiver = Arc::new(Receiver::default());
    let plain = receiver.serve().await?;
    let ca = TestCa::new("internal CA")?;
    let terminator = TlsTerminator::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        plain,
        &ca.issue(&["127.0.0.1"], ServerAuth)?,
        Some(&ca.pem),
    )?;
    let client = ca.issue(&["wasmconnect"], ClientAuth)?;
    let dir = tempfile::tempdir()?;
    let (ca_file, certificate, key) = (
        write_file(dir.path(), "ca.pem", &ca.pem)?,
        write_file(dir.path(), "client.pem", &client.certificate)?,
        write_file(dir.path(), "client.key", &client.key)?,
    );
    let topic = unique("out");
    broker.create_topic(&topic, 1).await?;
    let records: Vec<_> = (0..20)
        .map(|i| (None, json(serde_json::json!({"id": i}))))
        .collect();
    broker.produce(&topic, &records).await?;
    // A sink-http connector to the terminator over HTTPS, with `tls` under its grants.
    let https = |name: &str, tls: &str| -> anyhow::Result<String> {
        let entry = connector(name, &topic, &terminator.address, "{ tolerance: none }")?
            .replace("url: \"http://", "url: \"https://");
        Ok(match tls {
            "" => entry,
            tls => entry.replace(
                "    config:\n",
                &format!("      http_tls: {tls}\n    config:\n"),
            ),
        })
    };

    let name = unique("mtls");
    let mutual = format!(
        "{{ ca: {}, system_roots: false, certificate: {}, key: {} }}",
        ca_file.display(),
        certificate.display(),
        key.display()
    );
    let daemon = Daemon::start(&config(&broker, &pg, &https(&name, &mutual)?))?;
    wait_accepted(&receiver, 20).await?;
    drop(daemon);

    for (tls, expected) in [
        (
            format!("{{ ca: {} }}", ca_file.display()),
            "the server refused the client certificate (grants.http_tls.certificate and key)",
        ),
        (
            String::new(),
            "the server's certificate is not trusted: no CA in grants.http_tls.ca (or the system's roots) issued it",
        ),
    ] {
        let name = unique("https");
        let daemon = Daemon::start(&config(&broker, &pg, &https(&name, &tls)?))?;
        let status = daemon
            .wait_task_state(&name, "FAILED", Duration::from_secs(30))
            .await
            .map_err(|e| e.context(daemon.log().join("\n")))?;
        let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
        assert!(trace.contains(expected), "{trace}");
    }
    Ok(())
}

/// Issue 21: a plugin cannot use a granted address to reach another virtual host there: a
/// `Host` header naming another host is refused before anything is sent, and the task is
/// FAILED saying so.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_header_for_another_virtual_host_is_refused() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let receiver = Arc::new(Receiver::default());
    let address = receiver.serve().await?;
    let (topic, name) = (unique("out"), unique("vhost"));
    broker.create_topic(&topic, 1).await?;
    broker
        .produce(&topic, &[(None, json(serde_json::json!({"id": 1})))])
        .await?;
    let entry = connector(&name, &topic, &address, "{ tolerance: none }")?.replace(
        "      idempotency_header:",
        "      headers: { Host: admin.internal }\n      idempotency_header:",
    );
    let daemon = Daemon::start(&config(&broker, &pg, &entry))?;
    let status = daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(30))
        .await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("the Host header \"admin.internal\" names another host"),
        "{trace}"
    );
    assert!(receiver.attempts.lock().unwrap().is_empty());
    Ok(())
}
