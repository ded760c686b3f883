//! Avro in and out against raw loops on the same library.

use std::path::Path;

use anyhow::bail;
use wasmconnect_tests::schema_registry::Stored;
use wasmconnect_tests::{Broker, Postgres, SchemaRegistry, unique};

use crate::cost::Trials;
use crate::harness::{
    Contender, bench_table, config, fill, run_baseline, run_daemon, sql_sink, topic_count,
};

/// The Avro schema of the benchmarks' records: the ~100 B JSON value's two fields.
pub(crate) const BENCH_SCHEMA: &str = r#"{"type": "record", "name": "Row", "namespace": "bench",
  "fields": [{"name": "id", "type": "long"}, {"name": "pad", "type": "string"}]}"#;

/// Value `id` as Confluent's Avro serializer frames it under schema `schema_id`.
pub(crate) fn avro_value(
    schema: &apache_avro::Schema,
    schema_id: u32,
    id: u64,
) -> anyhow::Result<Vec<u8>> {
    use apache_avro::types::Value;
    let mut framed = vec![0];
    framed.extend_from_slice(&schema_id.to_be_bytes());
    let record = Value::Record(vec![
        ("id".into(), Value::Long(id as i64)),
        ("pad".into(), Value::String("x".repeat(80))),
    ]);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build()?;
    framed.extend(writer.write_value_to_vec(record)?);
    Ok(framed)
}

/// `config` with the schema registry `main` at `url`.
pub(crate) fn with_registry(config: String, url: &str) -> String {
    config.replace(
        "admin:\n",
        &format!("schema_registries:\n  main:\n    url: {url}\nadmin:\n"),
    )
}

/// Kafka Avro -> PostgreSQL (sink-sql, insert) against a raw loop decoding with the same Avro
/// library, and JSON -> Avro topic (a sink without a plugin converting the topic) against a
/// raw consume -> encode -> produce loop. The schema is registered before either side runs;
/// the raw loops are handed it (the daemon fetches it once, by id).
pub(crate) async fn bench_avro(
    broker: &Broker,
    pg: &Postgres,
    data: &Path,
    n: u64,
    rounds: usize,
) -> anyhow::Result<()> {
    let registry = SchemaRegistry::start().await?;
    let schema = apache_avro::Schema::parse_str(BENCH_SCHEMA)?;
    let topic = unique("bench_avro");
    let schema_id = registry.register(
        &format!("{topic}-value"),
        Stored {
            schema: BENCH_SCHEMA.into(),
            schema_type: None,
            references: vec![],
        },
    );
    broker.create_topic(&topic, 1).await?;
    let records: Vec<_> = (1..=n)
        .map(|id| Ok((None, Some(avro_value(&schema, schema_id, id)?))))
        .collect::<anyhow::Result<_>>()?;
    broker.produce(&topic, &records).await?;
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let table = bench_table(pg, "bench").await?;
                let count = format!("SELECT count(*) FROM {table}");
                let connector = sql_sink(&unique("avro"), &topic, &table, "insert")?.replace(
                    "    grants:",
                    "    format: { value: avro, schema_registry: main }\n    grants:",
                );
                let config = with_registry(config(broker, pg, data, &connector), &registry.url);
                let cost = run_daemon(&config, Contender::Deployed, false, n, || async {
                    Ok(pg.count(&count).await? as u64)
                })
                .await?;
                trials.runtime.push(cost);
            } else {
                let cost = run_baseline(&[
                    "avro-sql".into(),
                    broker.bootstrap.clone(),
                    topic.clone(),
                    n.to_string(),
                    pg.url.clone(),
                    bench_table(pg, "bench").await?,
                    BENCH_SCHEMA.into(),
                ])?;
                trials.baseline("raw rdkafka + apache-avro + sqlx insert (unnest)", cost);
            }
        }
    }
    trials.report("wasmconnect sink-sql insert, value avro (vs raw)");

    // JSON -> Avro, on tansu's SQLite engine as `bench_kafka` (see there).
    let broker = &Broker::start().await?;
    let json_topic = unique("bench_json");
    fill(broker, &json_topic, n, 100, 1).await?;
    let mut trials = Trials::new();
    for round in 0..rounds {
        for side in [round % 2, 1 - round % 2] {
            let output = unique("bench_avro_out");
            broker.create_topic(&output, 1).await?;
            if side == 0 {
                let connector = format!(
                    "  - name: {}
    kind: sink
    topics: [{json_topic}]
    topic: {output}
    batch: {{ max_records: 1000, max_wait_ms: 100 }}
    format:
      value: json
      schema_registry: main
      output: {{ value: avro, value_schema: {{ inline: '{}' }} }}
",
                    unique("to_avro"),
                    BENCH_SCHEMA.replace('\n', " ")
                );
                let config = with_registry(config(broker, pg, data, &connector), &registry.url);
                let cost = run_daemon(&config, Contender::Deployed, false, n, || async {
                    topic_count(&broker.bootstrap, &output)
                })
                .await?;
                trials.runtime.push(cost);
            } else {
                let output_id = registry.register(
                    &format!("{output}-value"),
                    Stored {
                        schema: BENCH_SCHEMA.into(),
                        schema_type: None,
                        references: vec![],
                    },
                );
                let cost = run_baseline(&[
                    "json-avro".into(),
                    broker.bootstrap.clone(),
                    json_topic.clone(),
                    n.to_string(),
                    output.clone(),
                    BENCH_SCHEMA.into(),
                    output_id.to_string(),
                ])?;
                if topic_count(&broker.bootstrap, &output)? < n {
                    bail!("the raw loop did not write every record to {output}");
                }
                trials.baseline(
                    "raw rdkafka consume -> serde_json + apache-avro -> produce",
                    cost,
                );
            }
        }
    }
    trials.report("wasmconnect sink to a topic, JSON -> Avro (vs raw)");
    Ok(())
}
