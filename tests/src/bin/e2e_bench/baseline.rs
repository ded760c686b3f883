//! The raw loops, run as a child process so that its CPU and memory are its own.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use serde::Deserialize;
use wasmconnect_tests::unique;

/// When the first batch was written.
pub static FIRST_WRITE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
/// Batches written, and the nanoseconds spent writing them.
pub static WRITES: AtomicU64 = AtomicU64::new(0);
pub static WRITE_NANOS: AtomicU64 = AtomicU64::new(0);

fn consumer(bootstrap: &str, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", "100")
        // As the daemon's sinks: without it, a full prefetch queue stops fetching for 1 s.
        .set("fetch.queue.backoff.ms", "50")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// How long a batch waits for more records, as the daemon's `batch.max_wait_ms` in the
/// benchmarks.
const BATCH_WAIT: Duration = Duration::from_millis(100);

/// A batch closes at 1,000 records or at this many bytes of values, as the daemon's sinks'
/// (`batch.max_records` and `batch.max_bytes` by default).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Reads batches of up to 1,000 records or 1 MiB (or what `wait` brings) until `n` were handled by
/// `write`, storing offsets after each written batch, as the runtime does.
async fn consume<F, Fut>(
    consumer: &BaseConsumer,
    n: u64,
    wait: Duration,
    mut write: F,
) -> anyhow::Result<()>
where
    F: FnMut(Vec<Vec<u8>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut done = 0;
    while done < n {
        let mut batch = Vec::with_capacity(1000);
        let deadline = Instant::now() + wait;
        let (mut last, mut bytes) = (None, 0);
        while batch.len() < 1000 && bytes < MAX_BATCH_BYTES && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    bytes += m.payload_len();
                    batch.push(m.payload().unwrap_or_default().to_vec());
                    last = Some((m.topic().to_owned(), m.partition(), m.offset()));
                }
                Some(Err(e)) => bail!("kafka: {e}"),
                None => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        done += batch.len() as u64;
        let writing = Instant::now();
        write(batch).await?;
        WRITES.fetch_add(1, Ordering::Relaxed);
        WRITE_NANOS.fetch_add(writing.elapsed().as_nanos() as u64, Ordering::Relaxed);
        FIRST_WRITE.get_or_init(Instant::now);
        if let Some((topic, partition, offset)) = last {
            consumer.store_offset(&topic, partition, offset)?;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    Ok(())
}

/// A raw loop's database pool: one connection, every batch one statement on it.
async fn one_connection(url: &str) -> anyhow::Result<sqlx::PgPool> {
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?)
}

#[derive(Deserialize)]
struct Row {
    id: i64,
    pad: String,
}

pub(crate) async fn sql(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, url, table, how] = args else {
        bail!("sql BOOTSTRAP TOPIC N URL TABLE MODE-METHOD");
    };
    let n: u64 = n.parse()?;
    let pool = one_connection(url).await?;
    let consumer = consumer(bootstrap, topic)?;
    let conflict = if how.starts_with("upsert") {
        " ON CONFLICT (id) DO UPDATE SET pad = excluded.pad"
    } else {
        ""
    };
    let unnest = format!(
        "INSERT INTO {table} (id, pad) SELECT * FROM unnest($1::bigint[], $2::text[]){conflict}"
    );
    let copy = format!("COPY {table} (id, pad) FROM STDIN");
    let jsonb = format!(
        "INSERT INTO {table} (id, pad) SELECT id, pad \
         FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb){conflict}"
    );
    let by_copy = how.ends_with("copy");
    let by_jsonb = how.ends_with("jsonb");
    consume(&consumer, n, BATCH_WAIT, |batch| {
        let (pool, unnest, copy, jsonb) = (&pool, &unnest, &copy, &jsonb);
        async move {
            if by_jsonb {
                // The values as they are, as sink-sql sends them.
                let mut array = String::with_capacity(batch.len() * 101 + 2);
                array.push('[');
                for (i, value) in batch.iter().enumerate() {
                    if i > 0 {
                        array.push(',');
                    }
                    array.push_str(std::str::from_utf8(value)?);
                }
                array.push(']');
                let raw: &serde_json::value::RawValue = serde_json::from_str(&array)?;
                sqlx::query(jsonb)
                    .bind(sqlx::types::Json(raw))
                    .execute(pool)
                    .await?;
                return Ok(());
            }
            let rows: Vec<Row> = batch
                .iter()
                .map(|v| serde_json::from_slice(v))
                .collect::<Result<_, _>>()?;
            if by_copy {
                let mut text = Vec::with_capacity(rows.len() * 100);
                for r in &rows {
                    writeln!(text, "{}\t{}", r.id, r.pad)?;
                }
                let mut conn = pool.acquire().await?;
                let mut sink = conn.copy_in_raw(copy).await?;
                sink.send(text).await?;
                sink.finish().await?;
            } else {
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                let pads: Vec<&str> = rows.iter().map(|r| r.pad.as_str()).collect();
                sqlx::query(unnest)
                    .bind(&ids)
                    .bind(&pads)
                    .execute(pool)
                    .await?;
            }
            Ok(())
        }
    })
    .await
}

/// The latency benchmark's raw loop into PostgreSQL: each batch of `{"id", "ts", "pad"}`
/// values, read with a window of `BATCH_WAIT_MS`, inserted with `unnest` into a table whose
/// `arrived` column stamps each row.
pub(crate) async fn sql_stamped(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, url, table, wait_ms] = args else {
        bail!("sql-stamped BOOTSTRAP TOPIC N URL TABLE BATCH_WAIT_MS");
    };
    #[derive(Deserialize)]
    struct Stamped {
        id: i64,
        ts: i64,
        pad: String,
    }
    let n: u64 = n.parse()?;
    let pool = one_connection(url).await?;
    let consumer = consumer(bootstrap, topic)?;
    let insert = format!(
        "INSERT INTO {table} (id, ts, pad) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])"
    );
    let wait = Duration::from_millis(wait_ms.parse()?);
    consume(&consumer, n, wait, |batch| {
        let (pool, insert) = (&pool, &insert);
        async move {
            let rows: Vec<Stamped> = batch
                .iter()
                .map(|v| serde_json::from_slice(v))
                .collect::<Result<_, _>>()?;
            sqlx::query(insert)
                .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.ts).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.pad.as_str()).collect::<Vec<_>>())
                .execute(pool)
                .await?;
            Ok(())
        }
    })
    .await
}

/// Produces each batch to `output` with an idempotent producer (`acks=all`, `linger.ms`
/// 5, as the daemon's) and waits for every delivery before storing the offsets.
pub(crate) async fn kafka(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, output] = args else {
        bail!("kafka BOOTSTRAP TOPIC N OUTPUT");
    };
    let n: u64 = n.parse()?;
    let producer = idempotent_producer(bootstrap)?;
    let consumer = consumer(bootstrap, topic)?;
    consume(&consumer, n, BATCH_WAIT, |batch| {
        let (producer, output) = (&producer, output);
        async move { deliver(producer, output, batch.iter().map(|v| (None, v.as_slice()))).await }
    })
    .await
}

/// Decodes each framed Avro value with apache-avro (the schema parsed once, the 5-byte
/// frame skipped) into the row's two fields and inserts the batch with `unnest`.
pub(crate) async fn avro_sql(args: &[String]) -> anyhow::Result<()> {
    use apache_avro::types::Value;
    let [bootstrap, topic, n, url, table, schema] = args else {
        bail!("avro-sql BOOTSTRAP TOPIC N URL TABLE SCHEMA");
    };
    let n: u64 = n.parse()?;
    let schema = apache_avro::Schema::parse_str(schema)?;
    let pool = one_connection(url).await?;
    let consumer = consumer(bootstrap, topic)?;
    let unnest =
        format!("INSERT INTO {table} (id, pad) SELECT * FROM unnest($1::bigint[], $2::text[])");
    // Built once: it holds the schema resolved.
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build()?;
    consume(&consumer, n, BATCH_WAIT, |batch| {
        let (pool, unnest, reader) = (&pool, &unnest, &reader);
        async move {
            let mut ids = Vec::with_capacity(batch.len());
            let mut pads = Vec::with_capacity(batch.len());
            for framed in &batch {
                let mut datum = framed.get(5..).context("a framed Avro value")?;
                match reader.read_value(&mut datum)? {
                    Value::Record(fields) => {
                        for (name, value) in fields {
                            match (name.as_str(), value) {
                                ("id", Value::Long(id)) => ids.push(id),
                                ("pad", Value::String(pad)) => pads.push(pad),
                                other => bail!("unexpected field {other:?}"),
                            }
                        }
                    }
                    other => bail!("not a record: {other:?}"),
                }
            }
            sqlx::query(unnest)
                .bind(&ids)
                .bind(&pads)
                .execute(pool)
                .await?;
            Ok(())
        }
    })
    .await
}

/// Parses each JSON value, encodes it with apache-avro, frames it with `schema_id` and
/// produces it as [`kafka`] does.
pub(crate) async fn json_avro(args: &[String]) -> anyhow::Result<()> {
    use apache_avro::types::Value;
    let [bootstrap, topic, n, output, schema, schema_id] = args else {
        bail!("json-avro BOOTSTRAP TOPIC N OUTPUT SCHEMA SCHEMA_ID");
    };
    let n: u64 = n.parse()?;
    let schema = apache_avro::Schema::parse_str(schema)?;
    let schema_id: u32 = schema_id.parse()?;
    let producer = idempotent_producer(bootstrap)?;
    let consumer = consumer(bootstrap, topic)?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    consume(&consumer, n, BATCH_WAIT, |batch| {
        let (producer, output, writer) = (&producer, output, &writer);
        async move {
            let mut encoded = Vec::with_capacity(batch.len());
            for value in &batch {
                let row: Row = serde_json::from_slice(value)?;
                let mut framed = vec![0];
                framed.extend_from_slice(&schema_id.to_be_bytes());
                let record = Value::Record(vec![
                    ("id".into(), Value::Long(row.id)),
                    ("pad".into(), Value::String(row.pad)),
                ]);
                framed.extend(writer.write_value_to_vec(record)?);
                encoded.push(framed);
            }
            deliver(
                producer,
                output,
                encoded.iter().map(|v| (None, v.as_slice())),
            )
            .await
        }
    })
    .await
}

/// Kafka -> HTTP: each batch POSTed as one JSON array. `checked` also parses each value as
/// JSON first (natively), as sink-http does before it sends one: the reference that shows how
/// much of the daemon's gap is that check.
pub(crate) async fn http(args: &[String], checked: bool) -> anyhow::Result<()> {
    let (bootstrap, topic, n, url, wait) = match args {
        [bootstrap, topic, n, url] => (bootstrap, topic, n, url, BATCH_WAIT),
        [bootstrap, topic, n, url, wait_ms] => (
            bootstrap,
            topic,
            n,
            url,
            Duration::from_millis(wait_ms.parse()?),
        ),
        _ => bail!("http BOOTSTRAP TOPIC N URL [BATCH_WAIT_MS]"),
    };
    let n: u64 = n.parse()?;
    let client = reqwest::Client::new();
    let consumer = consumer(bootstrap, topic)?;
    consume(&consumer, n, wait, |batch| {
        let (client, url) = (&client, url);
        async move {
            let mut body = Vec::with_capacity(batch.len() * 101 + 2);
            body.push(b'[');
            for (i, value) in batch.iter().enumerate() {
                if checked {
                    serde_json::from_slice::<serde::de::IgnoredAny>(value)?;
                }
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(value);
            }
            body.push(b']');
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?
                .error_for_status()?;
            Ok(())
        }
    })
    .await
}

/// The producer of every raw loop writing to Kafka: idempotent, `acks=all`, `linger.ms` 5, as
/// the daemon's.
fn idempotent_producer(bootstrap: &str) -> anyhow::Result<rdkafka::producer::FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?)
}

/// Produces `records` (key, value) to `topic`, then waits for every delivery.
async fn deliver<'a>(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    records: impl Iterator<Item = (Option<&'a [u8]>, &'a [u8])>,
) -> anyhow::Result<()> {
    let mut deliveries = Vec::new();
    for (key, value) in records {
        let mut record = rdkafka::producer::FutureRecord::<[u8], [u8]>::to(topic).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Records a source loop keeps handed to the producer and not yet acknowledged: the daemon's
/// source tasks' default bound (`in_flight.max_records`). Both make and hand over the next
/// batch while Kafka acknowledges the earlier ones.
const IN_FLIGHT_RECORDS: usize = 10_000;

/// A source loop's producer side: batches of (key, value) handed over and not all
/// acknowledged yet, oldest first, within [`IN_FLIGHT_RECORDS`]. A batch counts as one write
/// from its hand-over to its last acknowledgement.
struct Pipeline<'p> {
    producer: &'p rdkafka::producer::FutureProducer,
    topic: &'p str,
    pending: std::collections::VecDeque<(Instant, Vec<rdkafka::producer::DeliveryFuture>)>,
    records: usize,
}

impl<'p> Pipeline<'p> {
    fn new(producer: &'p rdkafka::producer::FutureProducer, topic: &'p str) -> Self {
        Pipeline {
            producer,
            topic,
            pending: Default::default(),
            records: 0,
        }
    }

    /// Hands `records` to the producer, first waiting for the oldest batches while this one
    /// would pass the bound.
    async fn produce(&mut self, records: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
        while self.records + records.len() > IN_FLIGHT_RECORDS && !self.pending.is_empty() {
            self.settle_oldest().await?;
        }
        let handed = Instant::now();
        let deliveries = records
            .iter()
            .map(|(key, value)| {
                let record = rdkafka::producer::FutureRecord::to(self.topic)
                    .key(key.as_bytes())
                    .payload(value.as_slice());
                self.producer.send_result(record).map_err(|(e, _)| e)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.records += deliveries.len();
        self.pending.push_back((handed, deliveries));
        Ok(())
    }

    /// Waits for every acknowledgement of the oldest batch.
    async fn settle_oldest(&mut self) -> anyhow::Result<()> {
        let Some((handed, deliveries)) = self.pending.pop_front() else {
            return Ok(());
        };
        self.records -= deliveries.len();
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
        WRITES.fetch_add(1, Ordering::Relaxed);
        WRITE_NANOS.fetch_add(handed.elapsed().as_nanos() as u64, Ordering::Relaxed);
        FIRST_WRITE.get_or_init(Instant::now);
        Ok(())
    }

    /// Waits until every batch is acknowledged.
    async fn finish(mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            self.settle_oldest().await?;
        }
        Ok(())
    }
}

/// source-datagen's records made natively (the plugin's own `sample`, orders, seed 42, keyed
/// by their number), produced in batches of 1,000 through a [`Pipeline`].
pub(crate) async fn datagen(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n] = args else {
        bail!("datagen BOOTSTRAP TOPIC N");
    };
    let n: u64 = n.parse()?;
    let producer = idempotent_producer(bootstrap)?;
    let mut pipeline = Pipeline::new(&producer, topic);
    let mut next = 1;
    while next <= n {
        let end = (next + 999).min(n);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        let batch: Vec<(String, Vec<u8>)> = (next..=end)
            .map(|i| {
                let value = source_datagen::sample_json(source_datagen::Kind::Orders, 42, i, now);
                Ok((i.to_string(), value))
            })
            .collect::<anyhow::Result<_>>()?;
        pipeline.produce(&batch).await?;
        next = end + 1;
    }
    pipeline.finish().await
}

/// Reads `table` 1,000 rows at a time after the last id, as JSON text (`row_to_json`, as
/// source-sql), keyed by id, each batch produced through a [`Pipeline`].
pub(crate) async fn source_sql(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, url, table] = args else {
        bail!("source-sql BOOTSTRAP TOPIC N URL TABLE");
    };
    let n: u64 = n.parse()?;
    let pool = one_connection(url).await?;
    let producer = idempotent_producer(bootstrap)?;
    let mut pipeline = Pipeline::new(&producer, topic);
    let select = format!(
        "SELECT id, row_to_json(t)::text FROM {table} t WHERE id > $1 ORDER BY id LIMIT 1000"
    );
    let (mut last, mut done) = (0i64, 0u64);
    while done < n {
        let rows: Vec<(i64, String)> = sqlx::query_as(&select).bind(last).fetch_all(&pool).await?;
        let Some((id, _)) = rows.last() else {
            bail!("the table ran out after {done} rows");
        };
        last = *id;
        done += rows.len() as u64;
        let batch: Vec<(String, Vec<u8>)> = rows
            .into_iter()
            .map(|(id, row)| (id.to_string(), row.into_bytes()))
            .collect();
        pipeline.produce(&batch).await?;
    }
    pipeline.finish().await
}
