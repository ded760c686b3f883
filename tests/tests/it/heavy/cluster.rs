//! Cluster mode: worker processes of one group divide the tasks of the file's connectors
//! through Kafka's consumer-group protocol, and a killed worker's tasks move to the others.
//!
//! Failover and the rolling restart run on librdkafka's mock cluster, served from this test
//! process on real loopback ports: its group coordinator expires a member that stops
//! heartbeating after the session timeout, and rebalances the group when one leaves, as
//! Kafka's does, where tansu 0.6 can leave the survivors without an assignment (STACK-NOTES).
//! It refuses offset commits while it waits for members to rejoin, where Kafka accepts those
//! of the current generation: the rolling restart checks every record written twice against
//! the commits its workers logged as refused. The mock cluster answers no CreateTopics, so
//! the test creates the topics, the cluster's slots topic among them, through the mock's own
//! API. What needs a broker that stores topics (sources, the config topic) runs on tansu.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use wasmconnect_tests::{Broker, Daemon, Namespace, Postgres, paths, unique, wait_until};

use crate::common::{heavy, json as json_bytes, sink, source, wait_count};

const LONG: Duration = Duration::from_secs(120);
/// The cluster's and the sink consumers' session timeout in this test.
const SESSION: Duration = Duration::from_secs(6);

/// A worker config of cluster `group` on `bootstrap`, with `connectors`.
fn worker_config(bootstrap: &str, pg: &Postgres, group: &str, connectors: &str) -> String {
    format!(
        "kafka:
  bootstrap_servers: {bootstrap}
  consumer:
    session.timeout.ms: {session}
    max.poll.interval.ms: 10000
    heartbeat.interval.ms: 500
    fetch.wait.max.ms: 50
    auto.commit.interval.ms: 200
databases:
  main:
    url: {url}
    pool_size: 4
admin:
  listen: \"{{admin}}\"
worker:
  shutdown_grace_ms: 5000
  cluster:
    group: {group}
    session_timeout_ms: {session}
connectors:
{connectors}",
        url = pg.url,
        session = SESSION.as_millis(),
    )
}

/// Creates the cluster's topics on the mock cluster, which answers no CreateTopics: `slots`
/// task slots, and the config and status topics (one partition each).
fn cluster_topics(
    mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    group: &str,
    slots: i32,
) -> anyhow::Result<()> {
    mock.create_topic(&format!("{group}-slots"), slots, 1)?;
    mock.create_topic(&format!("{group}-configs"), 1, 1)?;
    mock.create_topic(&format!("{group}-status"), 1, 1)?;
    Ok(())
}

/// Which of `workers` (by index) runs each task of `connector`, from each worker's own
/// status (the tasks it reports with its own `worker_id`; it shows the others' as they
/// reported them): `None` when no worker runs it, or more than one says it does (while a
/// task is handed over, or if two ran it: not a settled placement either way).
async fn placement(workers: &[&Daemon], connector: &str, tasks: u32) -> Vec<Option<usize>> {
    placement_in(workers, connector, tasks, "RUNNING").await
}

/// [`placement`] of the tasks in `state`.
async fn placement_in(
    workers: &[&Daemon],
    connector: &str,
    tasks: u32,
    state: &str,
) -> Vec<Option<usize>> {
    let mut claims: Vec<Vec<usize>> = vec![Vec::new(); tasks as usize];
    for (w, worker) in workers.iter().enumerate() {
        let Ok(status) = worker.status(connector).await else {
            continue;
        };
        for task in status["tasks"].as_array().into_iter().flatten() {
            if task["state"] == state
                && task["worker_id"] == worker.admin.as_str()
                && let Some(id) = task["id"].as_u64()
                && let Some(claim) = claims.get_mut(id as usize)
            {
                claim.push(w);
            }
        }
    }
    claims
        .into_iter()
        .map(|c| if c.len() == 1 { Some(c[0]) } else { None })
        .collect()
}

/// Produces `{"seq": N, ...}` for each N of `seqs`, keyed by N; returns where each went
/// (seq, partition, offset).
async fn produce(
    producer: &FutureProducer,
    topic: &str,
    seqs: std::ops::Range<i64>,
) -> anyhow::Result<Vec<(i64, i32, i64)>> {
    let mut located = Vec::new();
    for seq in seqs {
        let key = seq.to_string();
        let value = json!({"seq": seq, "payload": "x"}).to_string();
        let delivery = producer
            .send(
                FutureRecord::to(topic).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing {seq}: {e}"))?;
        located.push((seq, delivery.partition, delivery.offset));
    }
    Ok(located)
}

/// The offsets of `topic` that the workers logged as written but refused at commit when
/// their partitions were revoked (partition, from, to excluded), from every run of each.
fn refused_commits(workers: &[Daemon], topic: &str) -> Vec<(i32, i64, i64)> {
    let mut refused = Vec::new();
    for line in workers.iter().flat_map(Daemon::log_of_every_run) {
        let Some(at) = line.find("commit on revoke failed") else {
            continue;
        };
        let rest = &line[at..];
        let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
            continue;
        };
        for item in rest[open + 1..close].split(", ") {
            let Some((partition, offsets)) = item
                .strip_prefix(&format!("{topic}/"))
                .and_then(|i| i.split_once(" offsets "))
            else {
                continue;
            };
            let Ok(partition) = partition.parse() else {
                continue;
            };
            let range = match offsets.split_once("..") {
                Some((from, to)) => from.parse().ok().zip(to.parse().ok()),
                None => offsets
                    .strip_prefix("from the group's last commit up to ")
                    .and_then(|to| to.parse().ok())
                    .map(|to| (0, to)),
            };
            if let Some((from, to)) = range {
                refused.push((partition, from, to));
            }
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_run_one_sink_task_each_and_a_killed_workers_task_moves_with_nothing_lost()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let (topic, table, name, group) = (
        unique("cluster"),
        unique("cluster"),
        unique("sink"),
        unique("workers"),
    );
    mock.create_topic(&topic, 6, 1)?;
    cluster_topics(&mock, &group, 3)?;
    let pg = Postgres::connect().await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let entry = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    )
    .replacen("    kind: ", "    tasks_max: 3\n    kind: ", 1);
    let config = worker_config(&bootstrap, &pg, &group, &entry);
    let mut workers = [
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];

    // The three tasks run on three different workers.
    let spread = wait_until("one task on each of the three workers", LONG, || async {
        let placed = placement(&workers.iter().collect::<Vec<_>>(), &name, 3).await;
        let mut on: Vec<Option<usize>> = placed.clone();
        on.sort();
        on.dedup();
        Ok(if on.len() == 3 && on.iter().all(Option::is_some) {
            Ok(placed)
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    produce(&producer, &topic, 0..600).await?;
    wait_count(&pg, &distinct, 600, LONG).await?;

    // kill -9 the worker of task 0 in the middle of the stream: another worker runs it. It
    // has recorded when its slot's task ran (what the new owner measures the gap from; the
    // mock cluster refuses commits, that record among them, while its group rebalances).
    let victim = spread[0].expect("placed");
    wait_until(
        "task 0's slot to record when its task ran",
        LONG,
        || async {
            Ok(if slot_recorded(&bootstrap, &group, 0)? {
                Ok(())
            } else {
                Err("no record yet".to_owned())
            })
        },
    )
    .await?;
    let gaps_before = slot_gaps(&workers, victim).await?;
    let killed = Instant::now();
    workers[victim].kill()?;
    let writing = produce(&producer, &topic, 600..1200);
    let moved = async {
        let survivors: Vec<&Daemon> = workers
            .iter()
            .enumerate()
            .filter(|(w, _)| *w != victim)
            .map(|(_, d)| d)
            .collect();
        wait_until("task 0 running on another worker", LONG, || async {
            let placed = placement(&survivors, &name, 3).await;
            Ok(if placed.iter().all(Option::is_some) {
                Ok(killed.elapsed())
            } else {
                Err(format!("{placed:?}"))
            })
        })
        .await
    };
    let (written, failover) = tokio::join!(writing, moved);
    written?;
    let failover = failover?;
    println!(
        "failover: the killed worker's task ran again on another worker {:.1} s after the kill \
         (session timeout {} s)",
        failover.as_secs_f64(),
        SESSION.as_secs()
    );
    wait_count(&pg, &distinct, 1200, LONG).await?;
    let missing = missing(&pg, &table, 1200).await?;
    assert_eq!(missing, 0, "every record arrives");
    // The survivors' metrics count the change of ownership.
    let mut rebalances = 0.0;
    for (w, worker) in workers.iter().enumerate() {
        if w != victim {
            rebalances += worker
                .metric("wasmconnect_cluster_rebalances_total", &[])
                .await?
                .unwrap_or(0.0);
        }
    }
    assert!(
        rebalances >= 3.0,
        "each survivor applied its own slot and the moved one: {rebalances}"
    );
    // The new owner measured how long the task ran nowhere: at least the session timeout
    // (the group cannot give the slot away sooner), from the victim's last record.
    let (count, sum) = slot_gaps(&workers, victim).await?;
    let (gained, gap) = (count - gaps_before.0, sum - gaps_before.1);
    println!("slot gap: task 0 ran nowhere for {gap:.1} s, as its new owner measured it");
    assert_eq!(gained, 1.0, "one slot gained that ran elsewhere before");
    assert!(
        gap >= SESSION.as_secs_f64() - 0.5 && gap < LONG.as_secs_f64(),
        "the gap the new owner measured: {gap} s"
    );
    Ok(())
}

/// Whether cluster `group` holds a record of when the task of slot `slot` last ran (the
/// metadata of the slot's committed offset, which its owner writes every fifth of the
/// session).
fn slot_recorded(bootstrap: &str, group: &str, slot: i32) -> anyhow::Result<bool> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()?;
    let mut slots = rdkafka::TopicPartitionList::new();
    slots.add_partition(&format!("{group}-slots"), slot);
    let committed =
        rdkafka::consumer::Consumer::committed_offsets(&consumer, slots, Duration::from_secs(5))?;
    Ok(committed
        .elements()
        .iter()
        .any(|e| !e.metadata().is_empty()))
}

/// The count and sum of the slot gaps (`wasmconnect_cluster_slot_gap_seconds`) the workers
/// other than `except` measured.
async fn slot_gaps(workers: &[Daemon], except: usize) -> anyhow::Result<(f64, f64)> {
    let (mut count, mut sum) = (0.0, 0.0);
    for (w, worker) in workers.iter().enumerate() {
        if w != except {
            let metric = |part| format!("wasmconnect_cluster_slot_gap_seconds_{part}");
            count += worker.metric(&metric("count"), &[]).await?.unwrap_or(0.0);
            sum += worker.metric(&metric("sum"), &[]).await?.unwrap_or(0.0);
        }
    }
    Ok((count, sum))
}

/// Waits until the three tasks of `connector` run on three different workers; returns the
/// worker (index) of each task.
async fn wait_spread(workers: &[&Daemon], connector: &str) -> anyhow::Result<Vec<usize>> {
    wait_until("one task on each of the three workers", LONG, || async {
        let placed = placement(workers, connector, 3).await;
        let mut on = placed.clone();
        on.sort();
        on.dedup();
        Ok(if on.len() == 3 && on.iter().all(Option::is_some) {
            Ok(placed.into_iter().flatten().collect())
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await
}

/// What the workers logged about their membership and slots: evidence for a failure.
fn membership_log(workers: &[Daemon]) -> String {
    let mut evidence = String::new();
    for (w, worker) in workers.iter().enumerate() {
        for line in worker.log() {
            if line.contains("slot") || line.contains("cluster") || line.contains("reload") {
                evidence.push_str(&format!("worker {w}: {line}\n"));
            }
        }
    }
    evidence
}

/// How many times `worker` logged stopping task `task` because its slot moved.
fn stops(worker: &Daemon, task: usize) -> usize {
    worker
        .log()
        .iter()
        .filter(|l| {
            l.contains("its slot moved to another worker") && l.contains(&format!("task={task}"))
        })
        .count()
}

/// How many tasks the workers other than `except` logged stopping because their slot moved.
fn handed_over(workers: &[Daemon], except: usize) -> usize {
    (0..workers.len())
        .filter(|w| *w != except)
        .map(|w| (0..3).map(|t| stops(&workers[w], t)).sum::<usize>())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_of_three_workers_loses_nothing_and_moves_only_the_restarted_workers_tasks()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let (topic, table, name, group) = (
        unique("rolling"),
        unique("rolling"),
        unique("sink"),
        unique("workers"),
    );
    mock.create_topic(&topic, 6, 1)?;
    cluster_topics(&mock, &group, 3)?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let pg = Postgres::connect().await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let entry = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    )
    .replacen("    kind: ", "    tasks_max: 3\n    kind: ", 1);
    let config = worker_config(&bootstrap, &pg, &group, &entry);
    let mut workers = [
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];
    wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;

    let mut n = 0;
    let mut located = produce(&producer, &topic, 0..300).await?;
    n += 300;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    wait_count(&pg, &distinct, n, LONG).await?;

    for restarted in 0..3 {
        let before = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
        let stops_before: Vec<usize> = (0..3).map(|t| stops(&workers[before[t]], t)).collect();
        let handed_before = handed_over(&workers, restarted);
        let status = workers[restarted].terminate(LONG).await?;
        assert!(
            status.success(),
            "worker {restarted} exits cleanly: {status}"
        );
        located.extend(produce(&producer, &topic, n..n + 300).await?);
        n += 300;
        // Its task runs on another worker while it is away...
        let survivors: Vec<&Daemon> = workers
            .iter()
            .enumerate()
            .filter(|(w, _)| *w != restarted)
            .map(|(_, d)| d)
            .collect();
        wait_until("every task running on the two others", LONG, || async {
            let placed = placement(&survivors, &name, 3).await;
            Ok(if placed.iter().all(Option::is_some) {
                Ok(())
            } else {
                Err(format!("{placed:?}"))
            })
        })
        .await?;
        wait_count(&pg, &distinct, n, LONG).await?;
        // ...and it gets one back when it rejoins.
        workers[restarted].restart()?;
        let after = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
        // A survivor stopped the task it gave back (and the check below can see a stop: the
        // logs are read from the processes' pipes as they come).
        wait_until("a survivor to log the task it hands back", LONG, || async {
            let handed = handed_over(&workers, restarted);
            Ok(if handed > handed_before {
                Ok(())
            } else {
                Err(handed.to_string())
            })
        })
        .await?;
        for task in 0..3 {
            if before[task] != restarted && after[task] == before[task] {
                assert_eq!(
                    stops(&workers[before[task]], task),
                    stops_before[task],
                    "task {task} stayed on worker {} and was never stopped",
                    before[task]
                );
            }
        }
    }
    located.extend(produce(&producer, &topic, n..n + 300).await?);
    n += 300;
    wait_count(&pg, &distinct, n, LONG).await?;
    let missing = missing(&pg, &table, n).await?;
    assert_eq!(missing, 0, "every record arrives");
    // A sink task's partitions move between the consumers of the connector's group as the
    // task moves. Each consumer commits what it wrote before it lets them go (the rebalance
    // waits for a write in progress), so on Kafka nothing is written twice. The mock cluster
    // refuses that commit while it waits for members to rejoin (`REBALANCE_IN_PROGRESS` in
    // its JOINING state, where Kafka's coordinator accepts commits of the current
    // generation in PreparingRebalance): the consumer logs what it could not commit, and
    // only those records may be written twice, by a new owner.
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    let twice: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT seq FROM {table} GROUP BY seq HAVING count(*) > 1 ORDER BY seq"
    ))
    .fetch_all(&pg.pool)
    .await?;
    let refused = refused_commits(&workers, &topic);
    let unexplained: Vec<(i64, i32, i64)> = located
        .iter()
        .filter(|(seq, partition, offset)| {
            twice.contains(seq)
                && !refused
                    .iter()
                    .any(|(p, from, to)| p == partition && from <= offset && offset < to)
        })
        .copied()
        .collect();
    assert!(
        unexplained.is_empty(),
        "records written twice that no refused commit covers (seq, partition, offset): \
         {unexplained:?}; refused: {refused:?}"
    );
    println!(
        "rolling restart: {n} records, {} written twice, all within the {} ranges whose commit \
         the mock cluster refused",
        rows - n,
        refused.len()
    );
    Ok(())
}

/// Adding a connector (or tasks) needs the slots topic to gain partitions (CreatePartitions). tansu 0.6 does
/// not answer it (nor does the mock cluster), so what is shown here is the failure path: the
/// workers say so, naming the topic, and the tasks that have slots keep running. On Kafka the
/// new slots are added and assigned.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_needing_slots_the_broker_cannot_add_says_so_and_the_running_task_goes_on()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let (topic, table, name, group) = (
        unique("grow"),
        unique("grow"),
        unique("sink"),
        unique("workers"),
    );
    broker.create_topic(&topic, 4).await?;
    let pg = Postgres::connect().await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let entry = |name: &str| -> anyhow::Result<String> {
        Ok(sink(
            name,
            &topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &format!("database: main\ntable: {table}"),
        ))
    };
    // A second connector whose name sorts after the first: the first keeps slot 0 and is not
    // touched by the reload, the second needs slot 1.
    let second = format!("z{name}");
    let one = worker_config(&broker.bootstrap, &pg, &group, &entry(&name)?);
    let workers = [Daemon::start(&one)?, Daemon::start(&one)?];
    let both: Vec<&Daemon> = workers.iter().collect();
    let running = || async {
        wait_until("task 0 running on a worker", LONG, || async {
            let placed = placement(&both, &name, 1).await;
            Ok(if placed[0].is_some() {
                Ok(())
            } else {
                Err(format!("{placed:?}"))
            })
        })
        .await
    };
    running().await?;

    for worker in &workers {
        let both_entries = format!("{}{}", entry(&name)?, entry(&second)?);
        worker.rewrite_config(&worker_config(
            &broker.bootstrap,
            &pg,
            &group,
            &both_entries,
        ))?;
        worker.sighup()?;
    }
    let slots = format!("{group}-slots");
    for worker in &workers {
        worker
            .wait_log(&["slots topic", &slots, "cannot add partitions"], LONG)
            .await
            .map_err(|e| e.context(membership_log(&workers)))?;
    }
    running().await?;
    let records: Vec<_> = (0..200)
        .map(|i| {
            (
                Some(i.to_string().into_bytes()),
                json_bytes(json!({"seq": i, "payload": "x"})),
            )
        })
        .collect();
    broker.produce(&topic, &records).await?;
    wait_count(
        &pg,
        &format!("SELECT count(DISTINCT seq) FROM {table}"),
        200,
        LONG,
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fourth_worker_joining_takes_one_task_and_no_other_task_stops() -> anyhow::Result<()> {
    let _heavy = heavy().await;
    let mock = MockCluster::new(1)?;
    let bootstrap = mock.bootstrap_servers();
    let (topic, table, name, group) = (
        unique("join"),
        unique("join"),
        unique("sink"),
        unique("workers"),
    );
    mock.create_topic(&topic, 8, 1)?;
    cluster_topics(&mock, &group, 4)?;
    let pg = Postgres::connect().await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let entry = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    )
    .replacen("    kind: ", "    tasks_max: 4\n    kind: ", 1);
    let config = worker_config(&bootstrap, &pg, &group, &entry);
    let mut workers = vec![
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];
    // Four tasks on three workers: one runs two.
    let before = wait_until("four tasks on three workers", LONG, || async {
        let placed = placement(&workers.iter().collect::<Vec<_>>(), &name, 4).await;
        let mut on = placed.clone();
        on.sort();
        on.dedup();
        Ok(if on.len() == 3 && on.iter().all(Option::is_some) {
            Ok(placed.into_iter().flatten().collect::<Vec<_>>())
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await?;
    let stops_before: Vec<usize> = (0..4).map(|t| stops(&workers[before[t]], t)).collect();

    workers.push(Daemon::start(&config)?);
    let after = wait_until("one task on each of four workers", LONG, || async {
        let placed = placement(&workers.iter().collect::<Vec<_>>(), &name, 4).await;
        let mut on = placed.clone();
        on.sort();
        on.dedup();
        Ok(if on.len() == 4 && on.iter().all(Option::is_some) {
            Ok(placed.into_iter().flatten().collect::<Vec<_>>())
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await
    .map_err(|e| e.context(membership_log(&workers)))?;
    let moved: Vec<usize> = (0..4).filter(|&t| after[t] != before[t]).collect();
    assert_eq!(
        moved.len(),
        1,
        "only the newcomer's task moved: {before:?} -> {after:?}"
    );
    assert_eq!(after[moved[0]], 3, "to the newcomer");
    // Wait for the log line of the task that moved, then check the others logged no stop.
    wait_until("the moved task's stop to be logged", LONG, || async {
        let t = moved[0];
        let n = stops(&workers[before[t]], t);
        Ok(if n > stops_before[t] {
            Ok(())
        } else {
            Err(n.to_string())
        })
    })
    .await?;
    for t in (0..4).filter(|t| !moved.contains(t)) {
        assert_eq!(
            stops(&workers[before[t]], t),
            stops_before[t],
            "task {t} stayed on worker {} and never stopped",
            before[t]
        );
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    produce(&producer, &topic, 0..400).await?;
    wait_count(
        &pg,
        &format!("SELECT count(DISTINCT seq) FROM {table}"),
        400,
        LONG,
    )
    .await?;
    Ok(())
}

/// How often each record key of `topic` is there.
async fn keys(
    broker: &Broker,
    topic: &str,
) -> anyhow::Result<std::collections::HashMap<String, usize>> {
    let mut keys = std::collections::HashMap::new();
    for r in broker.read_all(topic).await? {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        *keys.entry(key).or_insert(0) += 1;
    }
    Ok(keys)
}

/// A source's task moves when its worker is killed, and resumes from its stored positions.
/// On tansu: one kill (not a storm), so its group rebalances after the expiry.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_task_whose_worker_is_killed_resumes_on_another_from_its_positions()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let pg = Postgres::connect().await?;
    let (topic, name, group) = (unique("moving"), unique("datagen"), unique("workers"));
    broker.create_topic(&topic, 2).await?;
    let (count, in_flight) = (2_000, 200);
    let entry = source(
        &name,
        &topic,
        &paths::plugin("source-datagen")?,
        &format!("in_flight: {{ max_records: {in_flight} }}"),
        &format!("rate: 200\ncount: {count}\nstreams: 2"),
    )
    .replacen("    kind: ", "    tasks_max: 2\n    kind: ", 1);
    let config = worker_config(&broker.bootstrap, &pg, &group, &entry);
    let mut workers = [
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];
    wait_until("both source tasks running", LONG, || async {
        let placed = placement(&workers.iter().collect::<Vec<_>>(), &name, 2).await;
        Ok(if placed.iter().all(Option::is_some) {
            Ok(())
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await?;
    // Some records of stream 0 (task 0's) are out, then its worker is killed.
    wait_until("task 0 to have written 300 records", LONG, || async {
        let n = keys(&broker, &topic)
            .await?
            .keys()
            .filter(|k| !k.contains('-'))
            .count();
        Ok(if n >= 300 { Ok(()) } else { Err(n.to_string()) })
    })
    .await?;
    // Where task 0 runs now (a worker joining late may have moved it meanwhile).
    let victim = wait_until("task 0 running on one worker", LONG, || async {
        let placed = placement(&workers.iter().collect::<Vec<_>>(), &name, 2).await;
        Ok(placed[0].ok_or(format!("{placed:?}")))
    })
    .await?;
    let killed = Instant::now();
    workers[victim].kill()?;
    let survivors: Vec<&Daemon> = workers
        .iter()
        .enumerate()
        .filter(|(w, _)| *w != victim)
        .map(|(_, d)| d)
        .collect();
    wait_until("task 0 running on another worker", LONG, || async {
        let placed = placement(&survivors, &name, 2).await;
        Ok(if placed[0].is_some() {
            Ok(())
        } else {
            Err(format!("{placed:?}"))
        })
    })
    .await
    .map_err(|e| e.context(membership_log(&workers)))?;
    println!(
        "source failover: task 0 ran again {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    let expected: Vec<String> = (1..=count)
        .flat_map(|n| [n.to_string(), format!("1-{n}")])
        .collect();
    let keys = wait_until("every record of both streams", LONG, || async {
        let keys = keys(&broker, &topic).await?;
        let missing = expected.iter().filter(|k| !keys.contains_key(*k)).count();
        Ok(if missing == 0 {
            Ok(keys)
        } else {
            Err(format!("{missing} missing"))
        })
    })
    .await?;
    let again: usize = keys.values().map(|n| n - 1).sum();
    println!("source failover: {again} records produced again");
    assert!(
        again <= in_flight,
        "a kill re-produces at most in_flight.max_records ({in_flight}): {again}"
    );
    assert_eq!(keys.len(), expected.len(), "no record beyond count");
    Ok(())
}

/// The ports of a `host:port,host:port` list.
fn ports(addresses: &str) -> anyhow::Result<Vec<u16>> {
    addresses
        .split(',')
        .map(|a| {
            let port = a.rsplit(':').next().unwrap_or_default();
            port.parse()
                .map_err(|e| anyhow::anyhow!("the port of {a}: {e}"))
        })
        .collect()
}

/// Three workers of a `tasks_max: 3` sink on the mock cluster, the last
/// ([`CutOffCluster::CUT`]) in a network namespace of its own: the broker and PostgreSQL at the
/// same addresses as for the others, the broker through links the test can stall.
struct CutOffCluster {
    workers: [Daemon; 3],
    links: Vec<wasmconnect_tests::Proxy>,
    _pg_link: wasmconnect_tests::Proxy,
    _namespace: Namespace,
    pg: Postgres,
    topic: String,
    table: String,
    name: String,
    group: String,
    bootstrap: String,
    _mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl CutOffCluster {
    const CUT: usize = 2;

    async fn start() -> anyhow::Result<Self> {
        let mock = MockCluster::new(1)?;
        let bootstrap = mock.bootstrap_servers();
        let (topic, table, name, group) = (
            unique("cut"),
            unique("cut"),
            unique("sink"),
            unique("workers"),
        );
        mock.create_topic(&topic, 6, 1)?;
        cluster_topics(&mock, &group, 3)?;
        let pg = Postgres::connect().await?;
        pg.execute(&format!(
            "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
        ))
        .await?;
        let entry = sink(
            &name,
            &topic,
            &paths::plugin("sink-sql")?,
            &["main"],
            &format!("database: main\ntable: {table}"),
        )
        .replacen("    kind: ", "    tasks_max: 3\n    kind: ", 1);
        let config = worker_config(&bootstrap, &pg, &group, &entry);
        let namespace = Namespace::create()?;
        let links = ports(&bootstrap)?
            .into_iter()
            .map(|port| namespace.reach_host(port))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pg_port = pg
            .url
            .rsplit('@')
            .next()
            .and_then(|host| host.split('/').next())
            .map(ports)
            .transpose()?
            .and_then(|p| p.first().copied())
            .ok_or_else(|| anyhow::anyhow!("no port in {}", pg.url))?;
        let pg_link = namespace.reach_host(pg_port)?;
        let workers = [
            Daemon::start(&config)?,
            Daemon::start(&config)?,
            Daemon::start_in(&namespace, &config)?,
        ];
        Ok(CutOffCluster {
            workers,
            links,
            _pg_link: pg_link,
            _namespace: namespace,
            pg,
            topic,
            table,
            name,
            group,
            bootstrap,
            _mock: mock,
        })
    }
}

/// A worker cut off from the broker but left running (its own network namespace, its broker
/// connections through a proxy the test stalls: packets held, nothing closed, as a cable pulled
/// out) notices that its session is lost and stops its task; another worker takes it. The time
/// both ran it is measured and stays within the session timeout. When the link comes back the
/// worker rejoins and takes a task again, and nothing is lost. On the mock cluster, whose
/// coordinator expires the silent member after the session timeout as Kafka's does.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_from_the_broker_stops_its_task_before_another_runs_it_long_and_rejoins()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    // Bound by name, not `..`: the namespace, its links and the mock cluster live to the end.
    let CutOffCluster {
        workers,
        links,
        _pg_link,
        _namespace,
        pg,
        topic,
        table,
        name,
        group: _,
        bootstrap,
        _mock,
    } = CutOffCluster::start().await?;
    let cut_worker = CutOffCluster::CUT;
    let spread = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    produce(&producer, &topic, 0..600).await?;
    wait_count(&pg, &distinct, 600, LONG).await?;

    // librdkafka notices a lost session only between rebalances (README): cut once the
    // placement has held for a session timeout, not in the middle of a rebalance.
    let mut settled = (spread, Instant::now());
    let deadline = Instant::now() + LONG;
    while settled.1.elapsed() < SESSION {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the placement never held for a session timeout\n{}",
            membership_log(&workers)
        );
        let now = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
        if now != settled.0 {
            settled = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let task = settled
        .0
        .iter()
        .position(|w| *w == cut_worker)
        .expect("one task on each worker");

    // Pull the cable: every byte to and from the broker held, no connection closed.
    let cut = Instant::now();
    for link in &links {
        link.stall();
    }
    produce(&producer, &topic, 600..1200).await?;
    let task_field = format!("task={task}");
    let survivors = [&workers[0], &workers[1]];
    let taken_over = wait_until(
        &format!("task {task} running on a worker that still reaches the broker"),
        LONG,
        || async {
            let placed = placement(&survivors, &name, 3).await;
            let started = survivors
                .iter()
                .find_map(|w| w.logged_after(cut, &["starting the task", &name, &task_field]));
            Ok(match (placed[task], started) {
                (Some(_), Some(at)) => Ok(at),
                _ => Err(format!("{placed:?}\n{}", membership_log(&workers))),
            })
        },
    )
    .await?;
    let cut_off = &workers[cut_worker];
    cut_off
        .wait_log(&["the cluster session was lost"], LONG)
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", membership_log(&workers)))?;
    let stopped = wait_until("the cut-off worker to stop its task", LONG, || async {
        Ok(cut_off
            .logged_after(cut, &["its slot moved to another worker", &task_field])
            .ok_or_else(|| membership_log(&workers)))
    })
    .await?;
    let both = stopped.saturating_duration_since(taken_over);
    println!(
        "cut off: the worker stopped its task {:.1} s after the cut, another started it {:.1} s \
         after the cut; both ran it for {:.1} s (session timeout {} s)",
        (stopped - cut).as_secs_f64(),
        (taken_over - cut).as_secs_f64(),
        both.as_secs_f64(),
        SESSION.as_secs()
    );
    assert!(
        both < SESSION,
        "two workers ran task {task} for {both:?}, longer than the session timeout"
    );
    wait_count(&pg, &distinct, 1200, LONG).await?;

    // The link comes back: the worker rejoins and runs a task again.
    for link in &links {
        link.restore();
    }
    wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
    produce(&producer, &topic, 1200..1800).await?;
    wait_count(&pg, &distinct, 1800, LONG).await?;
    let missing = missing(&pg, &table, 1800).await?;
    assert_eq!(missing, 0, "every record arrives");
    Ok(())
}

/// Static membership (`worker.cluster.instance_id`): a worker restarted within the session
/// timeout gets its slot back and the others do nothing: nobody runs its task while it is
/// away, no other worker's ownership changes, no other task stops. On tansu, whose coordinator
/// gives a static member that rejoins its place back (the mock cluster's waits for the old
/// member's session to expire).
#[tokio::test(flavor = "multi_thread")]
async fn a_static_member_restarted_within_its_session_gets_its_task_back_and_nothing_else_moves()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let bootstrap = broker.bootstrap.clone();
    let (topic, table, name, group) = (
        unique("static"),
        unique("static"),
        unique("sink"),
        unique("workers"),
    );
    broker.create_topic(&topic, 6).await?;
    let pg = Postgres::connect().await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let entry = sink(
        &name,
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    )
    .replacen("    kind: ", "    tasks_max: 3\n    kind: ", 1);
    // A session long enough for a restart of a debug build on a loaded machine.
    let session = Duration::from_secs(30);
    let config = |w: usize| {
        worker_config(&bootstrap, &pg, &group, &entry).replace(
            &format!("    session_timeout_ms: {}\n", SESSION.as_millis()),
            &format!(
                "    session_timeout_ms: {}\n    instance_id: worker-{w}\n",
                session.as_millis()
            ),
        )
    };
    assert!(config(0).contains("instance_id: worker-0"));
    let mut workers = [
        Daemon::start(&config(0))?,
        Daemon::start(&config(1))?,
        Daemon::start(&config(2))?,
    ];
    let spread = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    produce(&producer, &topic, 0..300).await?;
    wait_count(&pg, &distinct, 300, LONG).await?;

    let restarted = 1;
    let task = spread
        .iter()
        .position(|w| *w == restarted)
        .expect("a task on each");
    let others: Vec<usize> = (0..3).filter(|w| *w != restarted).collect();
    let mut changes_before = Vec::new();
    for &w in &others {
        changes_before.push(
            workers[w]
                .metric("wasmconnect_cluster_rebalances_total", &[])
                .await?
                .unwrap_or(0.0),
        );
    }
    let stops_before: Vec<usize> = (0..3).map(|t| stops(&workers[spread[t]], t)).collect();

    let away = Instant::now();
    let status = workers[restarted].terminate(LONG).await?;
    assert!(status.success(), "the worker exits cleanly: {status}");
    produce(&producer, &topic, 300..600).await?;
    workers[restarted].restart()?;
    let back = wait_until(
        "the restarted worker running its task again",
        LONG,
        || async {
            let all: Vec<&Daemon> = workers.iter().collect();
            let placed = placement(&all, &name, 3).await;
            if let Some(Some(w)) = placed.get(task)
                && *w != restarted
            {
                // A stop, not a wait: nothing can undo it.
                return Err(anyhow::anyhow!(
                    "worker {w} took task {task} while its static member was away\n{}",
                    membership_log(&workers)
                ));
            }
            Ok(if placed[task] == Some(restarted) {
                Ok(away.elapsed())
            } else {
                Err(format!("{placed:?}"))
            })
        },
    )
    .await?;
    println!(
        "static member: SIGTERM to its task running again on the same worker {:.1} s (session \
         timeout {} s); no other worker took it",
        back.as_secs_f64(),
        session.as_secs()
    );
    assert!(
        back < session,
        "the slot came back before the session expired, not after: {back:?}"
    );
    assert_eq!(
        wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?,
        spread,
        "every task where it was"
    );
    for (i, &w) in others.iter().enumerate() {
        let changes = workers[w]
            .metric("wasmconnect_cluster_rebalances_total", &[])
            .await?
            .unwrap_or(0.0);
        assert_eq!(
            changes,
            changes_before[i],
            "worker {w}'s slots never changed\n{}",
            membership_log(&workers)
        );
    }
    for t in (0..3).filter(|t| *t != task) {
        assert_eq!(
            stops(&workers[spread[t]], t),
            stops_before[t],
            "task {t} was never stopped"
        );
    }
    produce(&producer, &topic, 600..900).await?;
    wait_count(&pg, &distinct, 900, LONG).await?;
    let missing = missing(&pg, &table, 900).await?;
    assert_eq!(missing, 0, "every record arrives");
    let rows = pg.count(&format!("SELECT count(*) FROM {table}")).await?;
    println!("static member: 900 records, {} written twice", rows - 900);
    Ok(())
}

/// The same cut, right after the worker asked to join a rebalance (its JoinGroup forwarded,
/// every answer held): librdkafka checks the session only between rebalances, so here the
/// worker's own guard (no answer from the brokers for the session timeout) stops its task
/// before another worker can run it for long. On the mock cluster.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_in_the_middle_of_a_rebalance_stops_its_task_before_another_runs_it_long()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let CutOffCluster {
        mut workers,
        links,
        _pg_link,
        _namespace,
        pg,
        topic,
        table,
        name,
        group,
        bootstrap,
        _mock,
    } = CutOffCluster::start().await?;
    let cut_worker = CutOffCluster::CUT;
    let spread = wait_spread(&workers.iter().collect::<Vec<_>>(), &name).await?;
    let task = spread
        .iter()
        .position(|w| *w == cut_worker)
        .expect("one task on each worker");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()?;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    produce(&producer, &topic, 0..300).await?;
    wait_count(&pg, &distinct, 300, LONG).await?;

    // Worker 0 leaves: a rebalance. The cut-off worker's first JoinGroup (API key 11) in the
    // cluster's group goes through, then nothing more.
    for link in &links {
        link.stall_after_request(11, &group);
    }
    let cut = Instant::now();
    let status = workers[0].terminate(LONG).await?;
    assert!(status.success(), "worker 0 exits cleanly: {status}");
    produce(&producer, &topic, 300..600).await?;
    let task_field = format!("task={task}");
    let taken_over = wait_until(
        &format!("task {task} running on worker 1"),
        LONG,
        || async {
            let started = workers[1].logged_after(cut, &["starting the task", &name, &task_field]);
            Ok(started.ok_or_else(|| membership_log(&workers)))
        },
    )
    .await?;
    let stopped = wait_until("the cut-off worker to stop its task", LONG, || async {
        Ok(workers[cut_worker]
            .logged_after(cut, &["its slot moved to another worker", &task_field])
            .ok_or_else(|| membership_log(&workers)))
    })
    .await?;
    let both = stopped.saturating_duration_since(taken_over);
    println!(
        "cut off mid-rebalance: the worker stopped its task {:.1} s after worker 0 left, \
         another started it {:.1} s after; both ran it for {:.1} s (session timeout {} s)",
        (stopped - cut).as_secs_f64(),
        (taken_over - cut).as_secs_f64(),
        both.as_secs_f64(),
        SESSION.as_secs()
    );
    assert!(
        both < SESSION,
        "two workers ran task {task} for {both:?}, longer than the session timeout"
    );
    for link in &links {
        link.restore();
    }
    produce(&producer, &topic, 600..900).await?;
    wait_count(&pg, &distinct, 900, LONG).await?;
    let missing = missing(&pg, &table, 900).await?;
    assert_eq!(missing, 0, "every record arrives");
    Ok(())
}

/// How many of the sequence numbers `0..n` have no row in `table`.
async fn missing(pg: &Postgres, table: &str, n: i64) -> anyhow::Result<i64> {
    pg.count(&format!(
        "SELECT count(*) FROM generate_series(0, {}) s WHERE NOT EXISTS \
         (SELECT 1 FROM {table} t WHERE t.seq = s)",
        n - 1
    ))
    .await
}

/// Waits until `worker`'s API answers (the process has bound its admin address).
async fn answering(worker: &Daemon) -> anyhow::Result<()> {
    wait_until(&format!("{} to answer", worker.admin), LONG, || async {
        Ok(
            match call(worker, reqwest::Method::GET, "/connectors", None).await {
                Ok((200, _)) => Ok(()),
                Ok((code, body)) => Err(format!("{code} {body}")),
                Err(e) => Err(e.to_string()),
            },
        )
    })
    .await
}

/// Sends `method path` (with a JSON `body`) to `worker`'s API: the status code and the JSON
/// answer (`null` when empty).
async fn call(
    worker: &Daemon,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut request =
        reqwest::Client::new().request(method, format!("http://{}{path}", worker.admin));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let code = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        code,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    ))
}

/// Waits until every worker shows task 0 of `connector` in `state` (the connector in
/// `connector_state`) on one and the same worker, which shows it so itself; returns that
/// worker's index. (tansu reshuffles every slot when a member joins, so where a task runs is
/// read again at each step rather than assumed.)
async fn wait_agreed(
    workers: &[Daemon],
    connector: &str,
    state: &str,
    connector_state: &str,
) -> anyhow::Result<usize> {
    let all: Vec<&Daemon> = workers.iter().collect();
    wait_until(
        &format!("every worker to show task 0 of {connector} {state} on one worker"),
        LONG,
        || async {
            let placed = placement_in(&all, connector, 1, state).await;
            let Some(owner) = placed[0] else {
                return Ok(Err(format!("{placed:?}")));
            };
            for worker in workers {
                let status = worker.status(connector).await?;
                let task = &status["tasks"][0];
                if task["state"] != state
                    || task["worker_id"] != workers[owner].admin.as_str()
                    || status["connector"]["state"] != connector_state
                {
                    return Ok(Err(format!("{}: {status}", worker.admin)));
                }
            }
            Ok(Ok(owner))
        },
    )
    .await
}

/// A sink connector in the native shape, as `POST /connectors` takes it.
fn sink_json(topic: &str, table: &str) -> anyhow::Result<serde_json::Value> {
    Ok(json!({
        "kind": "sink",
        "plugin": paths::plugin("sink-sql")?.display().to_string(),
        "topics": [topic],
        "batch": { "max_records": 500, "max_wait_ms": 50 },
        "grants": { "databases": ["main"] },
        "config": { "database": "main", "table": table },
    }))
}

/// 4c: a connector created through worker A's API runs on some worker of the cluster; B's
/// status shows where; paused through C it pauses where it runs; a task restarted through a
/// worker that does not run it restarts where it runs; deleted through B it stops everywhere.
/// On tansu: the workers create the cluster's config and status topics, as on Kafka.
#[tokio::test(flavor = "multi_thread")]
async fn a_connector_made_through_one_workers_api_runs_once_and_any_worker_changes_it()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let pg = Postgres::connect().await?;
    let (topic, table, name, group) = (
        unique("shared"),
        unique("shared"),
        unique("made"),
        unique("workers"),
    );
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    // Two slots, for the two connectors made below (tansu cannot add partitions later).
    broker.create_topic(&format!("{group}-slots"), 2).await?;
    let config = worker_config(&broker.bootstrap, &pg, &group, "  []\n");
    let workers = [
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];
    let all: Vec<&Daemon> = workers.iter().collect();
    for worker in &workers {
        answering(worker).await?;
    }

    let (code, created) = call(
        &workers[0],
        reqwest::Method::POST,
        "/connectors",
        Some(json!({ "name": name, "config": sink_json(&topic, &table)? })),
    )
    .await?;
    assert_eq!(code, 201, "{created}");
    // Every worker, B among them, shows where it runs.
    let owner = wait_agreed(&workers, &name, "RUNNING", "RUNNING").await?;
    let (b, c) = ((owner + 1) % 3, (owner + 2) % 3);
    println!("created through worker 0, runs on worker {owner}");
    let producer = broker.producer()?;
    let distinct = format!("SELECT count(DISTINCT seq) FROM {table}");
    produce(&producer, &topic, 0..300).await?;
    wait_count(&pg, &distinct, 300, LONG).await?;

    // Paused through C: the task pauses where it runs, and every worker shows it so.
    let (code, body) = call(
        &workers[c],
        reqwest::Method::PUT,
        &format!("/connectors/{name}/pause"),
        None,
    )
    .await?;
    assert_eq!(code, 202, "{body}");
    wait_agreed(&workers, &name, "PAUSED", "PAUSED").await?;
    let (code, body) = call(
        &workers[b],
        reqwest::Method::PUT,
        &format!("/connectors/{name}/resume"),
        None,
    )
    .await?;
    assert_eq!(code, 202, "{body}");
    wait_agreed(&workers, &name, "RUNNING", "RUNNING").await?;
    produce(&producer, &topic, 300..600).await?;
    wait_count(&pg, &distinct, 600, LONG).await?;

    // Its active topics (KIP-558), as the worker that runs it reported them, on any worker.
    wait_until("worker C to show the topic the task uses", LONG, || async {
        let (code, topics) = call(
            &workers[c],
            reqwest::Method::GET,
            &format!("/connectors/{name}/topics"),
            None,
        )
        .await?;
        Ok(
            if code == 200 && topics[&name]["topics"] == json!([topic]) {
                Ok(())
            } else {
                Err(format!("{code} {topics}"))
            },
        )
    })
    .await?;

    // Stopped through C, its offsets reset through B once the task's worker reported it
    // stopped, resumed through A: every record is read again where it runs.
    let (code, body) = call(
        &workers[c],
        reqwest::Method::PUT,
        &format!("/connectors/{name}/stop"),
        None,
    )
    .await?;
    assert_eq!(code, 204, "{body}");
    let reset = wait_until("B to reset the offsets", LONG, || async {
        let (code, body) = call(
            &workers[b],
            reqwest::Method::DELETE,
            &format!("/connectors/{name}/offsets"),
            None,
        )
        .await?;
        Ok(match code {
            200 => Ok(body),
            // The worker that ran the task has not reported it stopped yet: in words.
            409 if body["message"]
                .as_str()
                .is_some_and(|m| m.contains("not reported it stopped")) =>
            {
                Err(body.to_string())
            }
            _ => anyhow::bail!("resetting the offsets: {code} {body}"),
        })
    })
    .await?;
    println!("offsets reset through a worker that did not run the task: {reset}");
    let (code, body) = call(
        &workers[0],
        reqwest::Method::PUT,
        &format!("/connectors/{name}/resume"),
        None,
    )
    .await?;
    assert_eq!(code, 202, "{body}");
    wait_count(&pg, &format!("SELECT count(*) FROM {table}"), 1200, LONG).await?;

    // Task 0 restarted through a worker that does not run it restarts where it runs.
    let owner = wait_agreed(&workers, &name, "RUNNING", "RUNNING").await?;
    let b = (owner + 1) % 3;
    let restarts = format!("connector=\"{name}\"");
    let before = workers[owner]
        .metric("wasmconnect_task_restarts_total", &[&restarts])
        .await?
        .unwrap_or(0.0);
    let (code, body) = call(
        &workers[b],
        reqwest::Method::POST,
        &format!("/connectors/{name}/tasks/0/restart"),
        None,
    )
    .await?;
    assert_eq!(code, 204, "{body}");
    wait_until("the owner to restart task 0", LONG, || async {
        let now = workers[owner]
            .metric("wasmconnect_task_restarts_total", &[&restarts])
            .await?
            .unwrap_or(0.0);
        Ok(if now > before {
            Ok(())
        } else {
            Err(now.to_string())
        })
    })
    .await?;

    // A second connector made through C, whose name sorts before the first's: it takes the
    // next slot, and the first's task neither moves nor stops.
    let second = format!("a{name}");
    let made_second = Instant::now();
    let (code, body) = call(
        &workers[c],
        reqwest::Method::POST,
        "/connectors",
        Some(json!({ "name": second, "config": sink_json(&topic, &table)? })),
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    wait_until("the second connector's task running", LONG, || async {
        let placed = placement(&all, &second, 1).await;
        Ok(placed[0].ok_or(format!("{placed:?}")))
    })
    .await?;
    assert_eq!(
        wait_agreed(&workers, &name, "RUNNING", "RUNNING").await?,
        owner,
        "the first connector's task stays where it ran"
    );
    let connector = format!("connector={name}");
    for worker in &workers {
        assert_eq!(
            worker.logged_after(made_second, &["its slot moved", &connector]),
            None,
            "the first connector's task was not stopped for a slot move"
        );
    }

    // Deleted through B: gone from every worker, its task stopped where it ran.
    let (code, body) = call(
        &workers[b],
        reqwest::Method::DELETE,
        &format!("/connectors/{name}"),
        None,
    )
    .await?;
    assert_eq!(code, 204, "{body}");
    for worker in &workers {
        wait_until(
            &format!("{} to forget {name}", worker.admin),
            LONG,
            || async {
                let (code, body) = call(
                    worker,
                    reqwest::Method::GET,
                    &format!("/connectors/{name}/status"),
                    None,
                )
                .await?;
                Ok(if code == 404 {
                    Ok(())
                } else {
                    Err(body.to_string())
                })
            },
        )
        .await?;
    }
    let state = workers[owner]
        .metric("wasmconnect_task_state", &[&restarts])
        .await?;
    assert_eq!(state, None, "the owner no longer runs a task of {name}");
    let missing = missing(&pg, &table, 600).await?;
    assert_eq!(missing, 0, "every record arrived");
    Ok(())
}

/// 4f: the whole cluster stopped (SIGTERM) and started again comes back with the same
/// connectors (the file's and one made through the API), the same target states (the API's
/// connector paused) and the same positions (what was produced meanwhile arrives once). On
/// tansu.
#[tokio::test(flavor = "multi_thread")]
async fn the_whole_cluster_stopped_and_started_again_has_the_same_connectors_states_and_positions()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let pg = Postgres::connect().await?;
    let (kept_topic, made_topic) = (unique("kept"), unique("made"));
    let (kept_table, made_table) = (unique("kept"), unique("made"));
    let (kept, made, group) = (unique("kept"), unique("made"), unique("workers"));
    for (topic, table) in [(&kept_topic, &kept_table), (&made_topic, &made_table)] {
        broker.create_topic(topic, 2).await?;
        pg.execute(&format!(
            "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
        ))
        .await?;
    }
    // Two slots: one per connector (tansu cannot add partitions to the slots topic later).
    broker.create_topic(&format!("{group}-slots"), 2).await?;
    let entry = sink(
        &kept,
        &kept_topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {kept_table}"),
    );
    let config = worker_config(&broker.bootstrap, &pg, &group, &entry);
    let mut workers = [
        Daemon::start(&config)?,
        Daemon::start(&config)?,
        Daemon::start(&config)?,
    ];
    answering(&workers[1]).await?;
    let (code, body) = call(
        &workers[1],
        reqwest::Method::POST,
        "/connectors",
        Some(json!({ "name": made, "config": sink_json(&made_topic, &made_table)? })),
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    let producer = broker.producer()?;
    let count = |table: &str| format!("SELECT count(*) FROM {table}");
    produce(&producer, &kept_topic, 0..200).await?;
    produce(&producer, &made_topic, 0..200).await?;
    wait_count(&pg, &count(&kept_table), 200, LONG).await?;
    wait_count(&pg, &count(&made_table), 200, LONG).await?;
    let (code, body) = call(
        &workers[2],
        reqwest::Method::PUT,
        &format!("/connectors/{made}/pause"),
        None,
    )
    .await?;
    assert_eq!(code, 202, "{body}");
    wait_until("the made connector paused where it runs", LONG, || async {
        for worker in &workers {
            let status = worker.status(&made).await?;
            if status["tasks"][0]["state"] == "PAUSED"
                && status["tasks"][0]["worker_id"] == worker.admin.as_str()
            {
                return Ok(Ok(()));
            }
        }
        Ok(Err("not paused yet".to_owned()))
    })
    .await?;

    for worker in &mut workers {
        let exit = worker.terminate(LONG).await?;
        assert!(exit.success(), "a worker stops cleanly: {exit}");
    }
    produce(&producer, &kept_topic, 200..400).await?;
    produce(&producer, &made_topic, 200..400).await?;
    for worker in &mut workers {
        worker.restart()?;
    }

    // The file's connector runs on from its positions: every record once.
    wait_count(&pg, &count(&kept_table), 400, LONG).await?;
    let all: Vec<&Daemon> = workers.iter().collect();
    // The API's connector is back on every worker, still paused, where it runs.
    wait_agreed(&workers, &made, "PAUSED", "PAUSED").await?;
    let paused_rows = pg.count(&count(&made_table)).await?;
    assert_eq!(paused_rows, 200, "a paused connector writes nothing");
    let (code, body) = call(
        &workers[0],
        reqwest::Method::PUT,
        &format!("/connectors/{made}/resume"),
        None,
    )
    .await?;
    assert_eq!(code, 202, "{body}");
    wait_count(&pg, &count(&made_table), 400, LONG).await?;
    wait_until(
        "the file's connector running on one worker",
        LONG,
        || async {
            let placed = placement(&all, &kept, 1).await;
            Ok(placed[0].ok_or(format!("{placed:?}")))
        },
    )
    .await?;
    for table in [&kept_table, &made_table] {
        let distinct = pg
            .count(&format!("SELECT count(DISTINCT seq) FROM {table}"))
            .await?;
        let rows = pg.count(&count(table)).await?;
        println!("whole-cluster restart: {table}: {rows} rows, {distinct} distinct");
        assert_eq!(distinct, 400, "every record of {table} arrived");
        assert_eq!(rows, 400, "no record of {table} arrived twice");
    }
    Ok(())
}

/// Moving from one process to a cluster: the connectors made through a single process's API
/// (its connectors.json) become the cluster's when the process restarts as the first worker
/// of a new cluster, and run on from their positions. A second worker whose connectors.yaml
/// differs says so. On tansu.
#[tokio::test(flavor = "multi_thread")]
async fn a_single_process_becomes_a_cluster_with_its_api_made_connectors_and_a_differing_file_is_told()
-> anyhow::Result<()> {
    let _heavy = heavy().await;
    let broker = Broker::start().await?;
    let pg = Postgres::connect().await?;
    let (topic, table, name, group) = (
        unique("moved"),
        unique("moved"),
        unique("made"),
        unique("workers"),
    );
    broker.create_topic(&topic, 2).await?;
    pg.execute(&format!(
        "CREATE TABLE {table} (seq bigint NOT NULL, payload text)"
    ))
    .await?;
    let mut single = Daemon::start(&crate::common::config(&broker, &pg, "  []\n"))?;
    answering(&single).await?;
    let (code, body) = call(
        &single,
        reqwest::Method::POST,
        "/connectors",
        Some(json!({ "name": name, "config": sink_json(&topic, &table)? })),
    )
    .await?;
    assert_eq!(code, 201, "{body}");
    let producer = broker.producer()?;
    let rows = format!("SELECT count(*) FROM {table}");
    produce(&producer, &topic, 0..200).await?;
    wait_count(&pg, &rows, 200, LONG).await?;
    let exit = single.terminate(LONG).await?;
    assert!(exit.success(), "{exit}");

    // The same process, now the first worker of a cluster.
    single.rewrite_config(&worker_config(&broker.bootstrap, &pg, &group, "  []\n"))?;
    single.restart()?;
    single
        .wait_log(&["now the cluster's", &format!("{group}-configs")], LONG)
        .await?;
    produce(&producer, &topic, 200..400).await?;
    wait_count(&pg, &rows, 400, LONG).await?;
    let distinct = pg
        .count(&format!("SELECT count(DISTINCT seq) FROM {table}"))
        .await?;
    assert_eq!(
        (distinct, pg.count(&rows).await?),
        (400, 400),
        "every record once"
    );

    // A second worker with another file: both say the files differ, naming the other.
    let other = sink(
        &unique("other"),
        &topic,
        &paths::plugin("sink-sql")?,
        &["main"],
        &format!("database: main\ntable: {table}"),
    );
    let second = Daemon::start(&worker_config(&broker.bootstrap, &pg, &group, &other))?;
    second
        .wait_log(&["connectors.yaml differs", &single.admin], LONG)
        .await?;
    single
        .wait_log(&["connectors.yaml differs", &second.admin], LONG)
        .await?;
    Ok(())
}
