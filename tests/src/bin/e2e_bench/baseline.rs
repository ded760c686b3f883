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

/// Reads batches of up to 1,000 records (or what 100 ms brings) until `n` were handled by
/// `write`, storing offsets after each written batch, as the runtime does.
async fn consume<F, Fut>(consumer: &BaseConsumer, n: u64, mut write: F) -> anyhow::Result<()>
where
    F: FnMut(Vec<Vec<u8>>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut done = 0;
    while done < n {
        let mut batch = Vec::with_capacity(1000);
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut last = None;
        while batch.len() < 1000 && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
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
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
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
    consume(&consumer, n, |batch| {
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

/// Produces each batch to `output` with an idempotent producer (`acks=all`, `linger.ms`
/// 5, as the daemon's) and waits for every delivery before storing the offsets.
pub(crate) async fn kafka(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, output] = args else {
        bail!("kafka BOOTSTRAP TOPIC N OUTPUT");
    };
    let n: u64 = n.parse()?;
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let consumer = consumer(bootstrap, topic)?;
    consume(&consumer, n, |batch| {
        let (producer, output) = (&producer, output);
        async move {
            let mut deliveries = Vec::with_capacity(batch.len());
            for value in &batch {
                let record: rdkafka::producer::FutureRecord<'_, [u8], [u8]> =
                    rdkafka::producer::FutureRecord::to(output).payload(value.as_slice());
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for delivery in deliveries {
                delivery.await?.map_err(|(e, _)| e)?;
            }
            Ok(())
        }
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
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let consumer = consumer(bootstrap, topic)?;
    let unnest =
        format!("INSERT INTO {table} (id, pad) SELECT * FROM unnest($1::bigint[], $2::text[])");
    // Built once: it holds the schema resolved.
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema).build()?;
    consume(&consumer, n, |batch| {
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
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let consumer = consumer(bootstrap, topic)?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    consume(&consumer, n, |batch| {
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
            let mut deliveries = Vec::with_capacity(encoded.len());
            for value in &encoded {
                let record: rdkafka::producer::FutureRecord<'_, [u8], [u8]> =
                    rdkafka::producer::FutureRecord::to(output).payload(value.as_slice());
                deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
            }
            for delivery in deliveries {
                delivery.await?.map_err(|(e, _)| e)?;
            }
            Ok(())
        }
    })
    .await
}

pub(crate) async fn http(args: &[String]) -> anyhow::Result<()> {
    let [bootstrap, topic, n, url] = args else {
        bail!("http BOOTSTRAP TOPIC N URL");
    };
    let n: u64 = n.parse()?;
    let client = reqwest::Client::new();
    let consumer = consumer(bootstrap, topic)?;
    consume(&consumer, n, |batch| {
        let (client, url) = (&client, url);
        async move {
            let mut body = Vec::with_capacity(batch.len() * 101 + 2);
            body.push(b'[');
            for (i, value) in batch.iter().enumerate() {
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
