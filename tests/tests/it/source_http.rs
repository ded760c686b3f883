//! source-http against a paginated JSON API on loopback: every item lands once, restarts
//! continue at the exact item, server errors and Retry-After are waited out, ungranted hosts
//! are never reached, and a Kafka outage stops polling at the in-flight bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique};

use crate::common::{Tally, config, connection_counter, source, wait_for_ids, wait_for_records};

/// A paginated API of items `1..=total`: `GET /items?after=N` answers the next `page` items
/// and `next` (the last id, or null at the end), after `delay` per page. Scripted statuses are
/// answered first, one per request.
struct Api {
    total: usize,
    page: usize,
    delay: Duration,
    script: Mutex<VecDeque<(StatusCode, Option<&'static str>)>>,
    /// Items sent in 200 answers.
    served: AtomicUsize,
    /// Every request: when, and the status answered.
    requests: Mutex<Vec<(Instant, u16)>>,
}

#[derive(serde::Deserialize)]
struct Cursor {
    after: usize,
}

impl Api {
    fn new(total: usize, page: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Api {
            total,
            page,
            delay,
            script: Mutex::new(VecDeque::new()),
            served: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// Serves on a free loopback port; returns `host:port`.
    async fn serve(self: &Arc<Self>) -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let app = Router::new()
            .route("/items", get(items))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(address)
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(Instant, u16)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn items(State(api): State<Arc<Api>>, Query(cursor): Query<Cursor>) -> Response {
    let scripted = api.script.lock().unwrap().pop_front();
    if let Some((status, retry_after)) = scripted {
        api.requests
            .lock()
            .unwrap()
            .push((Instant::now(), status.as_u16()));
        let mut headers = HeaderMap::new();
        if let Some(after) = retry_after {
            headers.insert("retry-after", after.parse().unwrap());
        }
        return (status, headers, "scripted failure").into_response();
    }
    tokio::time::sleep(api.delay).await;
    let first = cursor.after + 1;
    let last = (cursor.after + api.page).min(api.total);
    let data: Vec<serde_json::Value> = (first..=last)
        .map(|id| serde_json::json!({"id": id, "name": format!("item {id}")}))
        .collect();
    api.served.fetch_add(data.len(), Ordering::SeqCst);
    api.requests.lock().unwrap().push((Instant::now(), 200));
    let next = (last < api.total).then_some(last);
    axum::Json(serde_json::json!({"data": data, "next": next})).into_response()
}

/// The source-http config for `api` at `address`.
fn plugin_config(address: &str) -> String {
    format!(
        "url: \"http://{address}/items?after={{cursor}}\"
initial_cursor: \"0\"
items: /data
next: {{ field: /next }}
key: /id"
    )
}

/// A broker (behind a proxy when asked), a topic of 3 partitions and a daemon running one
/// source-http connector on `api`.
async fn start(
    api: &Arc<Api>,
    behind_proxy: bool,
    settings: &str,
) -> anyhow::Result<(Broker, Daemon, String, String)> {
    let broker = match behind_proxy {
        true => Broker::start_behind_proxy().await?,
        false => Broker::start().await?,
    };
    let pg = Postgres::connect().await?;
    let address = api.serve().await?;
    let topic = unique("items");
    broker.create_topic(&topic, 3).await?;
    let name = unique("http_source");
    let settings = format!("grants: {{ http: [\"{address}\"] }}\n{settings}");
    let connector = source(
        &name,
        &topic,
        &paths::plugin("source-http")?,
        &settings,
        &plugin_config(&address),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    Ok((broker, daemon, topic, name))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_item_of_a_paginated_api_lands_once_keyed_by_id() -> anyhow::Result<()> {
    let api = Api::new(10_000, 100, Duration::ZERO);
    let (broker, mut daemon, topic, name) = start(&api, false, "").await?;
    let tally = wait_for_ids(&broker, &topic, 10_000, Duration::from_secs(120)).await?;
    assert_eq!(
        tally.duplicates(),
        0,
        "a clean run produces every item once"
    );
    for record in broker.read_all(&topic).await? {
        let value: serde_json::Value = serde_json::from_slice(record.value.as_deref().unwrap())?;
        assert_eq!(
            record.key.as_deref(),
            Some(value["id"].to_string().as_bytes()),
            "the key is the item's id"
        );
    }
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");

    // A graceful restart continues after the stored position: nothing is produced again.
    assert!(daemon.terminate(Duration::from_secs(30)).await?.success());
    let requests_before = api.requests().len();
    daemon.restart()?;
    daemon
        .wait_log(
            &["continuing from 1 stored position(s)"],
            Duration::from_secs(30),
        )
        .await?;
    wasmconnect_tests::wait_until(
        "two polls after the restart",
        Duration::from_secs(30),
        || async {
            let n = api.requests().len();
            Ok(if n >= requests_before + 2 {
                Ok(())
            } else {
                Err(format!("{n} requests"))
            })
        },
    )
    .await?;
    assert!(daemon.terminate(Duration::from_secs(30)).await?.success());
    let tally = Tally::of(&broker.read_all(&topic).await?)?;
    assert_eq!(
        (tally.unique(), tally.total),
        (10_000, 10_000),
        "a restart re-read something"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_mid_run_loses_nothing_and_re_reads_at_most_the_in_flight_bound()
-> anyhow::Result<()> {
    const BOUND: usize = 1_000;
    let api = Api::new(10_000, 100, Duration::from_millis(20));
    let settings = format!("in_flight: {{ max_records: {BOUND} }}");
    let (broker, mut daemon, topic, _) = start(&api, false, &settings).await?;
    wait_for_records(&broker, &topic, 2_000, Duration::from_secs(60)).await?;
    daemon.kill()?;
    let at_kill = Tally::of(&broker.read_all(&topic).await?)?;
    assert!(
        at_kill.unique() < 10_000,
        "the run finished before the kill; the test proves nothing"
    );
    daemon.restart()?;
    let tally = wait_for_ids(&broker, &topic, 10_000, Duration::from_secs(120)).await?;
    println!(
        "source-http kill -9 after {} items: {} duplicates (bound {BOUND})",
        at_kill.unique(),
        tally.duplicates()
    );
    assert!(
        tally.duplicates() <= BOUND,
        "{} duplicates after one kill, more than in_flight.max_records {BOUND}",
        tally.duplicates()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_retry_after_is_honoured() -> anyhow::Result<()> {
    let api = Api::new(1_000, 100, Duration::ZERO);
    {
        let mut script = api.script.lock().unwrap();
        for _ in 0..3 {
            script.push_back((StatusCode::INTERNAL_SERVER_ERROR, None));
        }
        for _ in 0..2 {
            script.push_back((StatusCode::TOO_MANY_REQUESTS, Some("2")));
        }
    }
    let (broker, daemon, topic, name) = start(&api, false, "").await?;
    let tally = wait_for_ids(&broker, &topic, 1_000, Duration::from_secs(120)).await?;
    assert_eq!(tally.duplicates(), 0);
    let requests = api.requests();
    let statuses: Vec<u16> = requests.iter().take(6).map(|(_, s)| *s).collect();
    assert_eq!(statuses, [500, 500, 500, 429, 429, 200]);
    for pair in requests[3..6].windows(2) {
        let waited = pair[1].0 - pair[0].0;
        assert!(
            waited >= Duration::from_millis(1_900),
            "the request after a 429 with Retry-After: 2 came {waited:?} later"
        );
    }
    daemon
        .wait_log(&["polling again in", "HTTP 429"], Duration::from_secs(5))
        .await?;
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ungranted_host_is_denied_without_a_connection() -> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (forbidden, connections) = connection_counter().await?;
    let granted = Api::new(10, 10, Duration::ZERO).serve().await?;
    let topic = unique("items");
    broker.create_topic(&topic, 1).await?;
    let name = unique("http_source");
    let connector = source(
        &name,
        &topic,
        &paths::plugin("source-http")?,
        &format!("grants: {{ http: [\"{granted}\"] }}"),
        &plugin_config(&forbidden),
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    let status = daemon
        .wait_task_state(&name, "FAILED", Duration::from_secs(60))
        .await?;
    let trace = status["tasks"][0]["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains("access denied") && trace.contains(&forbidden),
        "trace: {trace}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "no connection reached it"
    );
    assert!(broker.read_all(&topic).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_outage_stops_polling_at_the_in_flight_bound_and_loses_nothing()
-> anyhow::Result<()> {
    const BOUND: usize = 300;
    const PAGE: usize = 100;
    let api = Api::new(10_000, PAGE, Duration::from_millis(10));
    let settings = format!("in_flight: {{ max_records: {BOUND} }}");
    let (broker, daemon, topic, name) = start(&api, true, &settings).await?;
    let proxy = broker.proxy.as_ref().expect("behind a proxy");
    wait_for_records(&broker, &topic, 1_000, Duration::from_secs(60)).await?;
    proxy.cut();
    let served_at_cut = api.served();
    daemon
        .wait_log(
            &["waiting for Kafka", "not polling the plugin"],
            Duration::from_secs(60),
        )
        .await?;
    // Kafka stays away while the test watches the plugin: it must not be polled past the bound.
    wasmconnect_tests::wait_until(
        "the producer to retry the cut broker",
        Duration::from_secs(30),
        || async {
            let refused = proxy.refused();
            Ok(if refused >= 3 {
                Ok(())
            } else {
                Err(format!("{refused} refused connections"))
            })
        },
    )
    .await?;
    let served_in_outage = api.served() - served_at_cut;
    assert!(
        served_in_outage <= BOUND + PAGE,
        "{served_in_outage} items fetched while Kafka was away; the bound is {BOUND} (plus one page of {PAGE} buffered)"
    );
    proxy.restore();
    let tally = wait_for_ids(&broker, &topic, 10_000, Duration::from_secs(180)).await?;
    println!(
        "source-http Kafka outage: {served_in_outage} items fetched during the outage, {} duplicates",
        tally.duplicates()
    );
    daemon
        .wait_log(
            &["Kafka caught up; polling the plugin again"],
            Duration::from_secs(5),
        )
        .await?;
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");
    Ok(())
}
