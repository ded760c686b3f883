//! The shipped `connectors.yaml`, as the README's first command runs it: datagen orders ->
//! topic `orders` -> a filter -> upserts into SQLite, pointed at the test broker only through
//! `KAFKA_BOOTSTRAP_SERVERS` and bounded with `DATAGEN_COUNT`; and the quickstart script
//! itself, stopped with Ctrl-C as a newcomer stops it.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wasmconnect_tests::sql::{Kind, TestDb};
use wasmconnect_tests::{Broker, Daemon, paths, wait_until};

const WAIT: Duration = Duration::from_secs(90);
const COUNT: i64 = 300;

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_pipeline_fills_sqlite_with_the_orders_that_are_not_cancelled()
-> anyhow::Result<()> {
    let broker = Broker::start().await?;
    broker.create_topic("orders", 1).await?;
    let db = TestDb::connect(Kind::Sqlite).await?;
    let shipped = std::fs::read_to_string(paths::repo_root().join("connectors.yaml"))?;
    let plugins = paths::plugin("sink-sql")?
        .parent()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    let config = shipped.replace("target/wasm32-wasip2/plugin/", &plugins);
    assert_ne!(config, shipped, "the shipped plugins moved");
    let count = COUNT.to_string();
    let daemon = Daemon::start_with_env(
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap),
            ("DATABASE_URL", &db.url),
            ("DATAGEN_RATE", "1000"),
            ("DATAGEN_COUNT", &count),
        ],
        &config,
    )?;

    // Every order reached the topic, and exactly the ones not cancelled reached the table.
    let produced = wait_until("the datagen orders in the topic", WAIT, || async {
        let records = broker.read_all("orders").await?;
        Ok(if records.len() as i64 == COUNT {
            Ok(records)
        } else {
            Err(format!("{} records", records.len()))
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", daemon.log().join("\n")))?;
    let kept = produced
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r.value.as_deref()?).ok())
        .filter(|v| v["status"] != "cancelled")
        .count() as i64;
    assert!(
        kept > 0 && kept < COUNT,
        "{kept} of {COUNT} kept: the filter is not seen"
    );
    wait_until("the kept orders in SQLite", WAIT, || async {
        // The table appears when the sink's task opens (its `init`).
        Ok(match db.count("SELECT count(*) FROM orders").await {
            Ok(rows) if rows == kept => Ok(()),
            Ok(rows) => Err(format!("{rows} rows of {kept}")),
            Err(e) => Err(format!("{e:#}")),
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", daemon.log().join("\n")))?;
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE status = 'cancelled'")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE amount > 0 AND customer IS NOT NULL")
            .await?,
        kept
    );

    // Stopping prints a summary per connector (the log is not a terminal: no live status).
    let mut daemon = daemon;
    let status = daemon.terminate(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status:?}");
    let log = daemon.log().join("\n");
    assert!(
        log.contains(&format!(
            "summary: orders-datagen: {COUNT} records produced ("
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("summary: orders-to-sql: {kept} records written (")),
        "{log}"
    );
    assert!(
        !log.contains("\x1b["),
        "no terminal control codes in a plain log: {log}"
    );
    Ok(())
}

/// Ctrl-C on a terminal signals the whole foreground process group: the quickstart script
/// and the daemon. Run as a newcomer runs it (no broker named: the daemon's embedded one),
/// the daemon fills SQLite, reloads the file on SIGHUP (still `embedded`: no change), then
/// drains against its broker, which it stops last: no broker errors, every task finished,
/// and the broker's port closed once the quickstart exited.
#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_on_its_embedded_broker_fills_sqlite_and_stops_cleanly_on_ctrl_c()
-> anyhow::Result<()> {
    let root = paths::repo_root();
    let plugins = paths::plugin("sink-sql")?;
    anyhow::ensure!(
        plugins
            .canonicalize()?
            .starts_with(root.join("target").canonicalize()?),
        "the quickstart runs the shipped connectors.yaml, whose plugins are under target/ of \
         the repository; these were built into {}",
        plugins.display()
    );
    let db = TestDb::connect(Kind::Sqlite).await?;
    let cache = tempfile::tempdir()?;
    let free =
        || -> anyhow::Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
    let log_path = cache.path().join("quickstart.log");
    let log = std::fs::File::create(&log_path)?;
    let script = Command::new("bash")
        .arg(root.join("tests/scripts/quickstart.sh"))
        .env("WASMCONNECT_BIN", paths::wasmconnect_bin()?)
        .env("WASMCONNECT_CACHE", cache.path())
        .env("WASMCONNECT_ADMIN", format!("127.0.0.1:{}", free()?))
        .env("DATABASE_URL", &db.url)
        .env("DATAGEN_RATE", "200")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // A process group of its own, as a terminal's foreground job has.
        .process_group(0)
        .spawn()?;
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    wait_until("orders in SQLite", Duration::from_secs(90), || async {
        Ok(match db.count("SELECT count(*) FROM orders").await {
            Ok(rows) if rows >= 100 => Ok(()),
            Ok(rows) => Err(format!("{rows} rows")),
            Err(e) => Err(format!("{e:#}")),
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", read_log()))?;

    let script = Job(std::sync::Mutex::new(script));
    // SIGHUP reloads the unchanged file: still `embedded`, so no change of `kafka`.
    script.signal(Signal::SIGHUP)?;
    wait_until("the reload", Duration::from_secs(30), || async {
        let log = read_log();
        Ok(if log.contains("reloaded:") {
            Ok(())
        } else if log.contains("reload refused") {
            Err(format!("refused: {log}"))
        } else {
            Err("not yet".to_string())
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", read_log()))?;

    // Ctrl-C: SIGINT to the foreground process group.
    script.signal(Signal::SIGINT)?;
    let status = wait_until(
        "the quickstart to exit",
        Duration::from_secs(60),
        || async {
            let exited = script.0.lock().expect("not poisoned").try_wait()?;
            Ok(match exited {
                Some(status) => Ok(status),
                None => Err("still running".to_string()),
            })
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", read_log()))?;
    let log = read_log();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        log.contains("summary: orders-to-sql:"),
        "no summary of the drained sink:\n{log}"
    );
    assert!(
        !log.contains("not every task finished") && !log.contains("abandoned"),
        "the drain did not finish:\n{log}"
    );
    assert!(
        !log.contains("BrokerTransportFailure") && !log.contains("AllBrokersDown"),
        "the broker went away under the drain:\n{log}"
    );
    // The embedded broker went with the daemon.
    let at = "a broker inside this process on ";
    let address = log
        .split_once(at)
        .and_then(|(_, rest)| rest.split(',').next())
        .ok_or_else(|| anyhow::anyhow!("no embedded broker announced:\n{log}"))?;
    assert!(
        TcpStream::connect(address).is_err(),
        "the embedded broker outlived the quickstart:\n{log}"
    );
    Ok(())
}

/// A script run as a terminal's foreground job; on drop (a failed test) it gets SIGTERM, as
/// a closed terminal would send, so the daemon stops.
struct Job(std::sync::Mutex<std::process::Child>);

impl Job {
    /// Signals the whole process group, as the terminal does.
    fn signal(&self, signal: Signal) -> nix::Result<()> {
        let id = self.0.lock().expect("not poisoned").id();
        kill(Pid::from_raw(-(id as i32)), signal)
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let mut child = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGTERM);
            let _ = child.wait();
        }
    }
}
