//! A batch the plugin keeps asking to retry: the task waits with its partitions paused and
//! keeps polling, so it stays in its consumer group, and nothing is committed past the batch
//! until it is written.

use std::time::Duration;

use wasmconnect_tests::{Broker, Daemon, Postgres, paths, unique, wait_until};

use crate::common::{config, sink};

#[tokio::test(flavor = "multi_thread")]
async fn retries_longer_than_max_poll_interval_keep_the_consumer_in_its_group() -> anyhow::Result<()>
{
    let (broker, pg) = (Broker::start().await?, Postgres::connect().await?);
    let topic = unique("flaky");
    broker.create_topic(&topic, 1).await?;
    let name = unique("patient");
    // 40 retries with backoff from 50 ms to 500 ms wait ~10-20 s in all: longer than the test
    // config's max.poll.interval.ms (10 s), after which a consumer that stops polling is
    // thrown out of its group.
    let connector = sink(
        &name,
        &topic,
        &paths::plugin("sink-misbehave")?,
        &[],
        "retries: 40",
    );
    let daemon = Daemon::start(&config(&broker, &pg, &connector))?;
    daemon
        .wait_log(
            &["partitions assigned", &name, &topic],
            Duration::from_secs(60),
        )
        .await?;
    let mut records = vec![(None, Some(b"flaky".to_vec()))];
    records.extend((0..10).map(|_| (None, Some(b"fine".to_vec()))));
    broker.produce(&topic, &records).await?;

    wait_until(
        "all 11 records to be committed",
        Duration::from_secs(120),
        || async {
            let committed = broker.committed(&name, &topic, 0).await?;
            Ok(if committed == Some(11) {
                Ok(())
            } else {
                Err(format!("{committed:?}"))
            })
        },
    )
    .await?;
    let log = daemon.log();
    let retries = log
        .iter()
        .filter(|l| l.contains("plugin asked for a retry") && l.contains(&name))
        .count();
    assert_eq!(retries, 40, "every retry the plugin asked for was made");
    let revoked: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("partitions revoked") || l.contains("max.poll"))
        .collect();
    assert!(
        revoked.is_empty(),
        "the consumer left its group while retrying: {revoked:?}"
    );
    assert_eq!(daemon.status(&name).await?["tasks"][0]["state"], "RUNNING");
    Ok(())
}
