//! A tansu broker (Kafka protocol, SQLite storage) of the test's own, on a free loopback port.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::tls::{Issued, TlsTerminator};
use crate::{Proxy, paths, wait_until};

/// A record to produce: key and value (a `None` value is a tombstone).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The consumer group of sink connector `connector` under the runtime's default
/// `kafka.group_prefix` (`connect-`, Kafka Connect's naming).
pub fn group_of(connector: &str) -> String {
    format!("connect-{connector}")
}

/// A running broker; killed when dropped. Its data lives in a temporary directory.
pub struct Broker {
    pub bootstrap: String,
    /// Where tansu itself listens (behind a proxy or TLS terminator, if any).
    pub listener: String,
    /// In front of the broker when started with [`Broker::start_behind_proxy`]: clients reach
    /// the broker only through it.
    pub proxy: Option<Proxy>,
    /// In front of the broker when started with TLS ([`Secured::tls`]).
    pub tls: Option<TlsTerminator>,
    /// librdkafka properties the test's own clients connect with (the first user's
    /// credentials, the CA and client certificate of a secured broker).
    pub client: Vec<(String, String)>,
    child: Child,
    dir: tempfile::TempDir,
}

/// How a broker started with [`Broker::start_secured`] is secured.
#[derive(Default)]
pub struct Secured {
    /// SCRAM users as (name, password, `scram256` or `scram512`); with any, the broker
    /// requires SASL authentication. The test's own clients log in as the first.
    pub users: Vec<(String, String, &'static str)>,
    /// TLS in front of the broker: its certificate, and the CA (PEM) client certificates
    /// must come from when it requires them.
    pub tls: Option<(Issued, Option<String>)>,
    /// librdkafka properties the test's own clients add for TLS (`ssl.ca.pem`, their client
    /// certificate): the broker's users and TLS decide `security.protocol` and the rest.
    pub client_tls: Vec<(String, String)>,
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Consumed {
    /// The first header named `key`, as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts tansu in `dir` listening on `listen` and advertising `advertised`; it appends to
/// `dir/tansu.log`.
fn spawn_tansu(
    dir: &Path,
    storage: &str,
    listen: &str,
    advertised: &str,
    authentication: bool,
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))?;
    let mut command = Command::new(paths::tansu()?);
    command
        .current_dir(dir)
        .args(["broker", "--storage-engine", storage])
        .args(["--listener-url", &format!("tcp://{listen}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised}")]);
    if authentication {
        command.arg("--authentication");
    }
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tansu")
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(false, "sqlite://tansu.db").await
    }

    /// Starts a broker on tansu's in-memory engine: several times faster, but it skips
    /// records when a consumer resumes inside a producer batch. Only for benchmarks that read
    /// every topic from its start.
    pub async fn start_in_memory() -> anyhow::Result<Self> {
        Self::launch(false, "memory://tansu/").await
    }

    /// Starts a broker that advertises a [`Proxy`] in front of it, so that every client
    /// connection goes through the proxy and the test can cut them all.
    pub async fn start_behind_proxy() -> anyhow::Result<Self> {
        Self::launch(true, "sqlite://tansu.db").await
    }

    /// Starts a broker that requires SASL (SCRAM) from its users and/or sits behind a TLS
    /// terminator, as `secured` says. tansu 0.6 creates users only while it does not require
    /// authentication, so a broker with users starts twice on the same storage: first open,
    /// to create them, then with `--authentication`.
    pub async fn start_secured(secured: Secured) -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir()?;
        let port = free_port()?;
        let direct = format!("127.0.0.1:{port}");
        let storage = "sqlite://tansu.db";
        let mut client = Vec::new();
        if let Some((name, password, mechanism)) = secured.users.first() {
            let child = spawn_tansu(dir.path(), storage, &direct, &direct, false)?;
            let open = Broker {
                bootstrap: direct.clone(),
                listener: direct.clone(),
                proxy: None,
                tls: None,
                client: Vec::new(),
                child,
                dir,
            };
            open.wait_ready().await?;
            for (name, password, mechanism) in &secured.users {
                let created = Command::new(paths::tansu()?)
                    .args(["user", "create", name, password, "--mechanism", mechanism])
                    .args(["--broker", &format!("tcp://{direct}")])
                    .output()
                    .context("running tansu user create")?;
                if !created.status.success() {
                    bail!(
                        "tansu user create {name}: {}",
                        String::from_utf8_lossy(&created.stderr)
                    );
                }
            }
            let mechanism = match *mechanism {
                "scram256" => "SCRAM-SHA-256",
                _ => "SCRAM-SHA-512",
            };
            client.extend([
                ("sasl.mechanism".to_owned(), mechanism.to_owned()),
                ("sasl.username".to_owned(), name.clone()),
                ("sasl.password".to_owned(), password.clone()),
            ]);
            dir = open.stop()?;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let tls = match &secured.tls {
            Some((server, client_ca)) => Some(TlsTerminator::serve(
                listener,
                direct.clone(),
                server,
                client_ca.as_deref(),
            )?),
            None => None,
        };
        let bootstrap = tls.as_ref().map_or(direct.clone(), |t| t.address.clone());
        let protocol = match (secured.users.is_empty(), tls.is_some()) {
            (true, false) => "PLAINTEXT",
            (true, true) => "SSL",
            (false, false) => "SASL_PLAINTEXT",
            (false, true) => "SASL_SSL",
        };
        client.push(("security.protocol".to_owned(), protocol.to_owned()));
        client.extend(secured.client_tls);
        let authentication = !secured.users.is_empty();
        let child = spawn_tansu(dir.path(), storage, &direct, &bootstrap, authentication)?;
        let broker = Broker {
            bootstrap,
            listener: direct,
            proxy: None,
            tls,
            client,
            child,
            dir,
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    async fn launch(behind_proxy: bool, storage: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let direct = format!("127.0.0.1:{port}");
        let proxy = match behind_proxy {
            true => Some(Proxy::start(direct.clone()).await?),
            false => None,
        };
        let bootstrap = match &proxy {
            Some(proxy) => proxy.address.clone(),
            None => direct.clone(),
        };
        let child = spawn_tansu(dir.path(), storage, &direct, &bootstrap, false)?;
        let broker = Broker {
            bootstrap,
            listener: direct,
            proxy,
            tls: None,
            client: Vec::new(),
            child,
            dir,
        };
        broker.wait_ready().await?;
        Ok(broker)
    }

    /// Waits until the broker answers a metadata request from the test's own clients.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_until(
            "the broker to answer metadata requests",
            Duration::from_secs(30),
            || async move {
                let consumer: BaseConsumer = self.client().create()?;
                Ok(tokio::task::spawn_blocking(move || {
                    consumer.fetch_metadata(None, Duration::from_secs(1))
                })
                .await?
                .map(drop)
                .map_err(|e| e.to_string()))
            },
        )
        .await
        .with_context(|| self.log())
    }

    /// Stops the broker and hands back its storage.
    fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.child.kill()?;
        self.child.wait()?;
        let dir = tempfile::tempdir()?;
        Ok(std::mem::replace(&mut self.dir, dir))
    }

    /// What the broker wrote to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }

    /// A librdkafka configuration that reaches the broker as the test's own clients do.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.client().create()?;
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await?;
        for result in results {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating topic {topic}: {code}"))?;
        }
        Ok(())
    }

    /// A producer that waits for every record to be acknowledged by the broker.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(self
            .client()
            .set("acks", "all")
            .set("linger.ms", "5")
            // Room for the tests' giant records.
            .set("message.max.bytes", "33554432")
            .create()?)
    }

    /// Produces one record with headers (`None` is a header without a value) and waits for
    /// its ack.
    pub async fn produce_with_headers(
        &self,
        topic: &str,
        (key, value): &KeyValue,
        headers: &[(&str, Option<&[u8]>)],
    ) -> anyhow::Result<()> {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: *value });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(owned);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        let producer = self.producer()?;
        producer
            .send_result(record)
            .map_err(|(e, _)| e)?
            .await?
            .map_err(|(e, _)| e)?;
        Ok(())
    }

    /// Produces `(key, value)` pairs (a `None` value is a tombstone) and waits for every ack.
    pub async fn produce(&self, topic: &str, records: &[KeyValue]) -> anyhow::Result<()> {
        let producer = self.producer()?;
        for chunk in records.chunks(5_000) {
            let mut pending = Vec::with_capacity(chunk.len());
            for (key, value) in chunk {
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
                if let Some(key) = key {
                    record = record.key(key.as_slice());
                }
                if let Some(value) = value {
                    record = record.payload(value.as_slice());
                }
                pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for delivery in pending {
                delivery.await?.map_err(|(e, _)| e)?;
            }
        }
        Ok(())
    }

    /// The offsets `topic` holds now, summed over its partitions: its records without reading
    /// them (a transaction's commit markers count too). Cheap enough to poll a busy topic.
    pub async fn offsets_held(&self, topic: &str) -> anyhow::Result<i64> {
        let consumer: BaseConsumer = self.client().create()?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<i64> {
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let mut held = 0;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout)?;
                held += high - low;
            }
            Ok(held)
        })
        .await?
    }

    /// Every record in `topic` now, partition by partition in offset order.
    pub async fn read_all(&self, topic: &str) -> anyhow::Result<Vec<Consumed>> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", "wasmconnect-tests-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Consumed>> {
            let timeout = Duration::from_secs(10);
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            let mut ends = std::collections::HashMap::new();
            let mut assignment = TopicPartitionList::new();
            for p in partitions {
                let (low, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
                if high > low {
                    ends.insert(p, high);
                    assignment.add_partition_offset(&topic, p, Offset::Beginning)?;
                }
            }
            let mut records = Vec::new();
            if ends.is_empty() {
                return Ok(records);
            }
            consumer.assign(&assignment)?;
            while !ends.is_empty() {
                let message = match consumer.poll(timeout) {
                    None => bail!("reading {topic}: nothing within {timeout:?}"),
                    Some(m) => m?,
                };
                records.push(Consumed {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default(),
                });
                if ends
                    .get(&message.partition())
                    .is_some_and(|&end| message.offset() + 1 >= end)
                {
                    ends.remove(&message.partition());
                }
            }
            records.sort_by_key(|r| (r.partition, r.offset));
            Ok(records)
        })
        .await?
    }

    /// The offset sink connector `connector` committed for `topic`/`partition`, if any (in
    /// its group under the runtime's default prefix, [`group_of`]).
    pub async fn committed(
        &self,
        connector: &str,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Option<i64>> {
        self.group_committed(&group_of(connector), topic, partition)
            .await
    }

    /// The offset the consumer group `group` committed for `topic`/`partition`, if any.
    pub async fn group_committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> anyhow::Result<Option<i64>> {
        let consumer: BaseConsumer = self.client().set("group.id", group).create()?;
        let mut list = TopicPartitionList::new();
        list.add_partition(topic, partition);
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(list, Duration::from_secs(5))
        })
        .await??;
        let offset = committed
            .find_partition(topic, partition)
            .map(|e| e.offset())
            .unwrap_or(Offset::Invalid);
        Ok(match offset {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
    }
}

/// Another member of a consumer group, polled on a thread of its own: it takes part in the
/// group's rebalances (eager, librdkafka's default assignors), reads nothing it keeps and
/// commits nothing. Leaves the group when dropped.
pub struct Member {
    assigned: std::sync::Arc<std::sync::Mutex<Vec<i32>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    /// The partitions the group gives this member now.
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned.lock().expect("assignment lock").clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Broker {
    /// Joins the group of sink connector `connector` ([`group_of`]) on `topic` as one more
    /// member, which starts a rebalance of the group.
    pub fn join_group(&self, connector: &str, topic: &str) -> anyhow::Result<Member> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", group_of(connector))
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .create()?;
        consumer.subscribe(&[topic])?;
        let assigned = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, done) = (assigned.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let _ = consumer.poll(Duration::from_millis(100));
                if let Ok(list) = consumer.assignment() {
                    *seen.lock().expect("assignment lock") =
                        list.elements().iter().map(|e| e.partition()).collect();
                }
            }
            consumer.unsubscribe();
            drop(consumer);
        });
        Ok(Member {
            assigned,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
