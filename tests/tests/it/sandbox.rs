//! Hostile plugins are contained. Each runs beside a well-behaved sink-sql connector (the
//! bystander) in one daemon; every test shows, by counting its rows, that the bystander keeps
//! writing after the hostile one did its worst, and reads what happened from the status and
//! /metrics. A trap (panic, endless loop past the call deadline, memory cap, stack overflow)
//! drops the instance and re-creates it with backoff; after `restart.max_consecutive_traps`
//! the task fails with the reason.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, config_on, connection_counter, json, sink, source};

const LONG: Duration = Duration::from_secs(120);

/// A daemon running one hostile connector beside the bystander.
struct Scene {
    broker: Broker,
    pg: Postgres,
    daemon: Daemon,
    /// The hostile connector's name and (for a sink) topic.
    bad: String,
    bad_topic: String,
    good: String,
    good_topic: String,
    table: String,
    /// Rows the bystander was fed so far.
    fed: usize,
}

impl Scene {
    /// `entry` builds the hostile connector's entry from its name and topic.
    async fn start(kind: &str, entry: impl FnOnce(&str, &str) -> String) -> anyhow::Result<Self> {
        let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
        let (bad_topic, good_topic, table) = (unique("bad"), unique("good"), unique("good"));
        broker.create_topic(&bad_topic, 1).await?;
        broker.create_topic(&good_topic, 1).await?;
        pg.execute(&format!("CREATE TABLE {table} (id int)"))
            .await?;
        let (bad, good) = (unique(kind), unique("bystander"));
        let connectors = entry(&bad, &bad_topic)
            + &sink(
                &good,
                &good_topic,
                &paths::plugin("sink-sql")?,
                &["main"],
                &format!("database: main\ntable: {table}"),
            );
        let daemon = Daemon::start(&config(&broker, &pg, &connectors))?;
        Ok(Scene {
            broker,
            pg,
            daemon,
            bad,
            bad_topic,
            good,
            good_topic,
            table,
            fed: 0,
        })
    }

    /// Produces `values` to the hostile sink's topic.
    async fn feed_bad(&self, values: &[&str]) -> anyhow::Result<()> {
        let records: Vec<_> = values
            .iter()
            .map(|v| (None, Some(v.as_bytes().to_vec())))
            .collect();
        self.broker.produce(&self.bad_topic, &records).await
    }

    /// Feeds the bystander 20 more rows and waits until they are all written: proof, measured
    /// now, that it still moves records.
    async fn bystander_moves(&mut self) -> anyhow::Result<()> {
        let records: Vec<_> = (self.fed..self.fed + 20)
            .map(|i| (None, json(json!({"id": i}))))
            .collect();
        self.broker.produce(&self.good_topic, &records).await?;
        self.fed += 20;
        let (pg, table, fed) = (&self.pg, &self.table, self.fed as i64);
        wait_until("the bystander connector to write", LONG, || async {
            let n = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
            Ok(if n == fed {
                Ok(())
            } else {
                Err(format!("{n} of {fed} rows"))
            })
        })
        .await?;
        assert_eq!(
            self.daemon.status(&self.good).await?["tasks"][0]["state"],
            "RUNNING"
        );
        Ok(())
    }

    /// Waits for the hostile connector to fail and returns its trace.
    async fn failed_with(&self) -> anyhow::Result<String> {
        let status = self
            .daemon
            .wait_task_state(&self.bad, "FAILED", LONG)
            .await?;
        Ok(status["tasks"][0]["trace"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The hostile connector trapped 3 times, was re-created after the first two with backoff,
    /// then failed naming the trap; /metrics counts the traps.
    async fn trapped_three_times(&self, expected_trace: &str) -> anyhow::Result<()> {
        let trace = self.failed_with().await?;
        assert!(
            trace.contains("trapped 3 times in a row") && trace.contains(expected_trace),
            "{trace}"
        );
        let retries: Vec<String> = self
            .daemon
            .log()
            .into_iter()
            .filter(|l| l.contains("re-instantiating") && l.contains(&self.bad))
            .collect();
        assert_eq!(
            retries.len(),
            2,
            "the instance was re-created after each of the first two traps: {retries:#?}"
        );
        let delays: Vec<f64> = retries.iter().map(|l| delay_ms(l)).collect();
        assert!(
            (25.0..=50.0).contains(&delays[0]) && (50.0..=100.0).contains(&delays[1]),
            "the backoff doubles from restart.initial_backoff_ms (50), jittered down to half: {delays:?}"
        );
        let connector = format!("connector=\"{}\"", self.bad);
        assert_eq!(
            self.daemon
                .metric("wasmconnect_plugin_traps_total", &[&connector])
                .await?,
            Some(3.0)
        );
        assert_eq!(
            self.daemon
                .metric("wasmconnect_task_state", &[&connector, "state=\"FAILED\""])
                .await?,
            Some(1.0)
        );
        Ok(())
    }
}

/// The delay of a `re-instantiating in 37.5ms: ...` log line, in milliseconds.
fn delay_ms(line: &str) -> f64 {
    let text = line
        .split("re-instantiating in ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default();
    let number = |suffix: &str| text.strip_suffix(suffix)?.parse::<f64>().ok();
    number("ms")
        .or_else(|| number("µs").map(|us| us / 1000.0))
        .or_else(|| number("s").map(|s| s * 1000.0))
        .unwrap_or(f64::NAN)
}

/// A hostile sink: a record whose value is `command` makes it misbehave.
async fn sink_contained(command: &str, expected_trace: &str) -> anyhow::Result<()> {
    let misbehave = paths::plugin("sink-misbehave")?;
    let mut scene = Scene::start(command, |name, topic| {
        sink(name, topic, &misbehave, &[], "{}")
    })
    .await?;
    scene.bystander_moves().await?;
    scene.feed_bad(&["fine", command]).await?;
    scene.trapped_three_times(expected_trace).await?;
    scene.bystander_moves().await?;
    assert_eq!(
        scene
            .broker
            .committed(&scene.bad, &scene.bad_topic, 0)
            .await?,
        None,
        "the batch that trapped is not committed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_plugin_is_reinstantiated_then_failed() -> anyhow::Result<()> {
    sink_contained("panic", "wasm `unreachable` instruction executed").await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_is_interrupted_at_the_call_deadline() -> anyhow::Result<()> {
    sink_contained("spin", "ran longer than limits.call_timeout_ms (2000 ms)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_growth_is_stopped_at_the_cap() -> anyhow::Result<()> {
    sink_contained("grow", "limits.memory_mb (32 MiB)").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_overflow_traps_without_touching_the_host() -> anyhow::Result<()> {
    sink_contained("overflow", "call stack exhausted").await
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_traps_at_the_stack_limit() -> anyhow::Result<()> {
    sink_contained("recurse", "call stack exhausted").await
}

/// A hostile source: its poll misbehaves as `behaviour` says.
async fn source_scene(behaviour: &str) -> anyhow::Result<Scene> {
    let misbehave = paths::plugin("source-misbehave")?;
    let mut scene = Scene::start(behaviour, |name, topic| {
        source(
            name,
            topic,
            &misbehave,
            "",
            &format!("behaviour: {behaviour}"),
        )
    })
    .await?;
    scene.bystander_moves().await?;
    Ok(scene)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_poll_is_interrupted_at_the_call_deadline() -> anyhow::Result<()> {
    let mut scene = source_scene("spin").await?;
    scene
        .trapped_three_times("ran longer than limits.call_timeout_ms (10000 ms)")
        .await?;
    scene.bystander_moves().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_overflow_in_poll_traps() -> anyhow::Result<()> {
    let mut scene = source_scene("overflow").await?;
    scene.trapped_three_times("call stack exhausted").await?;
    scene.bystander_moves().await
}

/// A source whose `task-configs` misbehaves, with `tasks_max: 2`: the connector is FAILED
/// with `expected` in its trace and the connector beside it goes on.
async fn a_bad_split(behaviour: &str, expected: &str) -> anyhow::Result<()> {
    let misbehave = paths::plugin("source-misbehave")?;
    let mut scene = Scene::start(behaviour, |name, topic| {
        source(
            name,
            topic,
            &misbehave,
            "tasks_max: 2",
            &format!("behaviour: {behaviour}"),
        )
    })
    .await?;
    let status = scene
        .daemon
        .wait_task_state(&scene.bad, "FAILED", LONG)
        .await?;
    let trace = status["connector"]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains(expected), "{status}");
    assert_eq!(status["connector"]["state"], "FAILED", "{status}");
    scene.bystander_moves().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_into_more_tasks_than_asked_fails_the_connector_alone() -> anyhow::Result<()> {
    a_bad_split(
        "split-too-many",
        "task-configs returned 3 task configs for tasks_max 2",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_that_traps_fails_the_connector_alone() -> anyhow::Result<()> {
    a_bad_split("split-panic", "the plugin's task-configs: plugin trapped").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poll_returning_more_than_asked_is_refused_and_nothing_is_produced() -> anyhow::Result<()>
{
    let mut scene = source_scene("oversize").await?;
    let trace = scene.failed_with().await?;
    assert!(
        trace.contains("plugin returned 5000 records from poll(500)"),
        "{trace}"
    );
    assert!(scene.broker.read_all(&scene.bad_topic).await?.is_empty());
    scene.bystander_moves().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_giant_record_is_refused_naming_its_position_and_nothing_is_produced()
-> anyhow::Result<()> {
    let mut scene = source_scene("giant").await?;
    let trace = scene.failed_with().await?;
    assert!(
        trace.contains("Kafka refused the record of source partition \"only\" at position \"1\"")
            && trace.contains("too large"),
        "{trace}"
    );
    assert!(scene.broker.read_all(&scene.bad_topic).await?.is_empty());
    scene.bystander_moves().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_on_stdout_and_stderr_is_rate_limited_into_the_log() -> anyhow::Result<()> {
    let misbehave = paths::plugin("sink-misbehave")?;
    // The flood is 90,000 lines (three streams) in one write, some 300 µs a host call in a debug
    // build: a deadline long enough for that.
    let mut scene = Scene::start("flood", |name, topic| {
        sink(name, topic, &misbehave, &[], "{}")
            .replace("call_timeout_ms: 2000", "call_timeout_ms: 60000")
    })
    .await?;
    let started = std::time::Instant::now();
    scene.feed_bad(&["flood"]).await?;
    let daemon = &scene.daemon;
    daemon
        .wait_log(&["dropping lines of stdout", &scene.bad], LONG)
        .await?;
    daemon
        .wait_log(&["dropping lines of stderr", &scene.bad], LONG)
        .await?;
    daemon
        .wait_log(&["dropping lines of log", &scene.bad], LONG)
        .await?;
    wait_until("the flood's offset to be committed", LONG, || async {
        let committed = scene
            .broker
            .committed(&scene.bad, &scene.bad_topic, 0)
            .await?;
        Ok(if committed == Some(1) {
            Ok(())
        } else {
            Err(format!("{committed:?}"))
        })
    })
    .await
    .map_err(|e| {
        let log = daemon.log();
        let tail: Vec<_> = log.iter().filter(|l| !l.contains("flood 0 line")).collect();
        e.context(format!("{tail:#?}"))
    })?;
    let flood_lines = |offset: i64, log: &[String]| {
        let mark = format!("flood {offset} line");
        log.iter()
            .filter(|l| l.contains(&mark) && l.contains("on stdout"))
            .count()
    };
    let logged_first = flood_lines(0, &daemon.log());
    // No faster than the budget: the burst, then 100 lines per second of the flood.
    let budget = 200.0 + 100.0 * started.elapsed().as_secs_f64();
    assert!(
        logged_first >= 200 && logged_first as f64 <= budget,
        "{logged_first} of 30,000 lines logged, budget {budget:.0}"
    );
    // The host's `log` has a budget of its own, the same.
    let logged_by_host = daemon
        .log()
        .iter()
        .filter(|l| l.contains("flood 0 line") && l.contains("on log"))
        .count();
    assert!(
        logged_by_host >= 200 && logged_by_host as f64 <= budget,
        "{logged_by_host} of 30,000 log calls logged, budget {budget:.0}"
    );

    // Each line logged after some were dropped first says how many. Up to the first line of
    // a second flood, those counts and the lines logged make up the whole first flood.
    scene.feed_bad(&["flood"]).await?;
    daemon
        .wait_log(&["flood 1 line", "on stdout", &scene.bad], LONG)
        .await?;
    let log = daemon.log();
    let second = log
        .iter()
        .position(|l| l.contains("flood 1 line") && l.contains("on stdout"))
        .unwrap_or(log.len());
    let dropped: usize = log[..second]
        .iter()
        .filter_map(|l| {
            let count = l
                .split(" lines of stdout were dropped before this one")
                .next()?;
            (count.len() < l.len()).then(|| count.rsplit(' ').next()?.parse::<usize>().ok())?
        })
        .sum();
    assert_eq!(flood_lines(0, &log[..second]) + dropped, 30_000);
    assert_eq!(
        daemon.status(&scene.bad).await?["tasks"][0]["state"],
        "RUNNING"
    );
    scene.bystander_moves().await
}

/// Issue 21: a plugin's line, through the host's `log` or on stdout, cannot start a line of
/// its own in the log (a newline, a carriage return) nor colour the operator's terminal (an
/// escape sequence): control characters are written escaped.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_line_cannot_forge_another_log_line() -> anyhow::Result<()> {
    let misbehave = paths::plugin("sink-misbehave")?;
    let mut scene = Scene::start("forge", |name, topic| {
        sink(name, topic, &misbehave, &[], "{}")
    })
    .await?;
    scene.feed_bad(&["forge"]).await?;
    let daemon = &scene.daemon;
    let host = daemon.wait_log(&["forge one", &scene.bad], LONG).await?;
    assert!(
        host.contains(r"forge one\nFORGED by the log capability"),
        "{host}"
    );
    let stdout = daemon.wait_log(&["forge two", &scene.bad], LONG).await?;
    assert!(
        stdout.contains(r"forge two\rFORGED by stdout \u{1b}[31mred"),
        "{stdout}"
    );
    let forged: Vec<String> = daemon
        .log()
        .into_iter()
        .filter(|l| l.contains("FORGED") && !l.contains("forge "))
        .collect();
    assert!(forged.is_empty(), "lines of their own: {forged:?}");
    assert!(!daemon.log().iter().any(|l| l.contains('\u{1b}')));
    scene.bystander_moves().await
}

#[tokio::test(flavor = "multi_thread")]
async fn files_environment_and_sockets_are_denied_and_no_connection_arrives() -> anyhow::Result<()>
{
    let (probe, accepted) = connection_counter().await?;
    // The plugin sends its datagram to the same address.
    let udp = std::net::UdpSocket::bind(&probe)?;
    udp.set_nonblocking(true)?;
    let misbehave = paths::plugin("sink-misbehave")?;
    let mut scene = Scene::start("escape", |name, topic| {
        sink(name, topic, &misbehave, &[], &format!("probe: \"{probe}\""))
    })
    .await?;
    scene.feed_bad(&["escape"]).await?;
    let daemon = &scene.daemon;
    for what in ["file", "env", "socket", "udp"] {
        let line = daemon
            .wait_log(&[&format!("escape {what}:"), &scene.bad], LONG)
            .await?;
        assert!(line.contains(&format!("escape {what}: denied")), "{line}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "no TCP connection reached the probe"
    );
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "no datagram reached {probe}"
    );
    assert_eq!(
        daemon.status(&scene.bad).await?["tasks"][0]["state"],
        "RUNNING"
    );
    scene.bystander_moves().await
}

/// Issue 21: SQL session state cannot leak between connectors through the pool. Two sinks
/// share database `main` through a pool of one connection. The first leaves a transaction
/// block open (`BEGIN` alone) and points `search_path` elsewhere; the second then inserts rows
/// that must be there for everyone (before, they went into the first one's open transaction and
/// vanished with it, or into no table at all).
#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_open_transaction_and_settings_do_not_reach_another_connector()
-> anyhow::Result<()> {
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let (careless, careful) = (unique("careless"), unique("careful"));
    let (careless_topic, careful_topic, table) = (unique("in"), unique("in"), unique("t"));
    broker.create_topic(&careless_topic, 1).await?;
    broker.create_topic(&careful_topic, 1).await?;
    pg.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    let probe = paths::plugin("sink-probe")?;
    let connectors = format!(
        "{}{}",
        sink(&careless, &careless_topic, &probe, &["main"], "{}"),
        sink(&careful, &careful_topic, &probe, &["main"], "{}")
    );
    let daemon =
        Daemon::start(&config(&broker, &pg, &connectors).replace("pool_size: 4", "pool_size: 1"))?;
    let command = |text: &str| (None, Some(text.as_bytes().to_vec()));
    broker
        .produce(
            &careless_topic,
            &[
                command("exec:main:BEGIN"),
                command("exec:main:SET search_path TO pg_catalog"),
            ],
        )
        .await?;
    daemon
        .wait_log(&[&careless, "probe exec: 0 rows"], LONG)
        .await?;
    let inserts: Vec<_> = (1..=3)
        .map(|id| command(&format!("exec:main:INSERT INTO {table} VALUES ({id})")))
        .collect();
    broker.produce(&careful_topic, &inserts).await?;
    wait_until("the careful sink's three rows", LONG, || async {
        let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
        Ok(if rows == 3 {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        })
    })
    .await
    .map_err(|e| e.context(daemon.log().join("\n")))
}

/// A daemon with two probe sinks, `careless` and `careful`, sharing database `main` at `db`
/// through a pool of one connection; the topics they read, in that order.
async fn two_probes_on(
    broker: &Broker,
    db: &TestDb,
    careless: &str,
    careful: &str,
) -> anyhow::Result<(Daemon, String, String)> {
    let (careless_topic, careful_topic) = (unique("in"), unique("in"));
    broker.create_topic(&careless_topic, 1).await?;
    broker.create_topic(&careful_topic, 1).await?;
    let probe = paths::plugin("sink-probe")?;
    let connectors = format!(
        "{}{}",
        sink(careless, &careless_topic, &probe, &["main"], "{}"),
        sink(careful, &careful_topic, &probe, &["main"], "{}")
    );
    let daemon = Daemon::start(
        &config_on(broker, &db.url, &connectors).replace("pool_size: 4", "pool_size: 1"),
    )?;
    Ok((daemon, careless_topic, careful_topic))
}

fn command(text: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (None, Some(text.as_bytes().to_vec()))
}

/// Issue 21: MySQL and SQLite cannot reset a session, so a connection whose session a plugin
/// changed (`change`) is closed rather than handed to another connector. On a pool of one
/// connection, the careful sink's three rows must land after the careless one's change (before,
/// on MariaDB they went into the transaction `SET autocommit = 0` had left open and were
/// rolled back as the connection was released; on SQLite `PRAGMA query_only` refused them).
async fn a_session_a_plugin_changed_is_not_handed_on(
    kind: Kind,
    change: &str,
) -> anyhow::Result<()> {
    let (broker, db) = (Broker::start().await?, TestDb::connect(kind).await?);
    let (careless, careful, table) = (unique("careless"), unique("careful"), unique("t"));
    db.execute(&format!("CREATE TABLE {table} (id int)"))
        .await?;
    let (daemon, careless_topic, careful_topic) =
        two_probes_on(&broker, &db, &careless, &careful).await?;
    broker
        .produce(&careless_topic, &[command(&format!("exec:main:{change}"))])
        .await?;
    daemon
        .wait_log(&[&careless, "probe exec: 0 rows"], LONG)
        .await?;
    let inserts: Vec<_> = (1..=3)
        .map(|id| command(&format!("exec:main:INSERT INTO {table} VALUES ({id})")))
        .collect();
    broker.produce(&careful_topic, &inserts).await?;
    daemon
        .wait_log(&[&careful, "probe exec: 1 rows"], LONG)
        .await?;
    wait_until("the careful sink's three rows", LONG, || async {
        let rows = db.count(&format!("SELECT count(*) FROM {table}")).await?;
        Ok(if rows == 3 {
            Ok(())
        } else {
            Err(format!("{rows} rows"))
        })
    })
    .await
    .map_err(|e| e.context(daemon.log().join("\n")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mariadb_session_with_autocommit_off_is_not_handed_on() -> anyhow::Result<()> {
    a_session_a_plugin_changed_is_not_handed_on(Kind::MariaDb, "SET autocommit = 0").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_sqlite_session_is_not_handed_on() -> anyhow::Result<()> {
    a_session_a_plugin_changed_is_not_handed_on(Kind::Sqlite, "PRAGMA query_only = 1").await
}

/// Issue 21: on SQLite a plugin reaches only the file it is granted: `ATTACH` (which would
/// open or create any file the daemon may write) and `VACUUM INTO` (which would copy the
/// database anywhere) are refused with access-denied, and neither file appears.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_attach_and_vacuum_into_are_refused() -> anyhow::Result<()> {
    let (broker, db) = (Broker::start().await?, TestDb::connect(Kind::Sqlite).await?);
    let (careless, careful) = (unique("careless"), unique("careful"));
    let elsewhere = tempfile::tempdir()?;
    let (attached, copy) = (
        elsewhere.path().join("attached.db"),
        elsewhere.path().join("copy.db"),
    );
    let (daemon, careless_topic, _) = two_probes_on(&broker, &db, &careless, &careful).await?;
    broker
        .produce(
            &careless_topic,
            &[
                command(&format!(
                    "exec:main:ATTACH DATABASE '{}' AS other",
                    attached.display()
                )),
                command(&format!("exec:main:VACUUM INTO '{}'", copy.display())),
            ],
        )
        .await?;
    daemon
        .wait_log(
            &[&careless, "access denied: statement 0: ATTACH is refused"],
            LONG,
        )
        .await?;
    daemon
        .wait_log(
            &[
                &careless,
                "access denied: statement 0: VACUUM INTO is refused",
            ],
            LONG,
        )
        .await?;
    assert!(!attached.exists(), "ATTACH created {}", attached.display());
    assert!(!copy.exists(), "VACUUM INTO wrote {}", copy.display());
    Ok(())
}
