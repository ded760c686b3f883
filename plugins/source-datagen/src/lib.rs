//! `source-datagen`: sample data for demos and load tests, like Kafka Connect's datagen.
//!
//! ```yaml
//! config:
//!   kind: orders        # orders (default) or clickstream
//!   rate: 10            # records per second, per stream (0: as fast as the host polls)
//!   seed: 42            # the same seed gives the same records
//!   count: 0            # stop each stream after this many (0: never)
//!   streams: 1          # independent streams, which tasks_max splits among the tasks
//! ```
//!
//! Record `n` (1, 2, ...) of stream `s` is a pure function of the seed, `s` and `n`, in the
//! stream's own source partition (`datagen <kind>` for stream 0, `datagen <kind> <s>` for the
//! others) whose position is `n`, keyed `n` (stream 0) or `s-n`: after a restart, or when a
//! stream moves to another task, it continues right after the last record Kafka has, with
//! exactly the records it would have made. Timestamps (`created_at`, `at`) are the time a
//! record is made.
#![forbid(unsafe_code)]

mod sample;

use serde::Deserialize;
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Source, SourcePosition, SourceRecord, export_source, info,
};

pub use sample::{Kind, sample, sample_json};

/// The connector's `config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub kind: Kind,
    #[serde(default = "default_rate")]
    pub rate: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub count: u64,
    #[serde(default = "default_streams")]
    pub streams: u32,
    /// The streams this task makes, as `task-configs` assigned them (not a key of the
    /// connector's config); all of them when absent.
    #[serde(default)]
    pub task_streams: Option<Vec<u32>>,
}

fn default_rate() -> u64 {
    10
}

fn default_streams() -> u32 {
    1
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text("kind", "What to make: orders or clickstream events")
            .choices(&["orders", "clickstream"])
            .default("orders"),
        ConfigKey::integer(
            "rate",
            "Records per second of each stream; 0: as fast as the host polls",
        )
        .default(default_rate()),
        ConfigKey::integer("seed", "The same seed gives the same records").default(0),
        ConfigKey::integer(
            "count",
            "Stop each stream after this many records; 0: never",
        )
        .default(0),
        ConfigKey::integer(
            "streams",
            "Independent streams (source partitions), split among the connector's tasks",
        )
        .default(default_streams()),
    ]
}

/// Assigns the streams round-robin to at most `max_tasks` tasks: each task's config is the
/// connector's with its `task_streams`.
pub fn task_configs(config: serde_json::Value, max_tasks: u32) -> Vec<serde_json::Value> {
    let streams = config
        .get("streams")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let tasks = streams.clamp(1, u64::from(max_tasks.max(1)));
    (0..tasks)
        .map(|task| {
            let mut own = config.clone();
            own["task_streams"] = (task..streams).step_by(tasks as usize).collect();
            own
        })
        .collect()
}

/// The source: one per task, making its streams in turn.
pub struct Datagen {
    config: Config,
    streams: Vec<Stream>,
    /// When the task opened: the rate counts from there.
    started: std::time::Instant,
}

/// One stream: its number, source partition, and the last record handed to the host (and
/// that number when the task opened).
struct Stream {
    number: u32,
    partition: String,
    last: u64,
    base: u64,
}

impl Datagen {
    /// How many records of a stream that opened at `base` may exist by now: `rate` per second
    /// since the task opened.
    fn due(&self, base: u64) -> u64 {
        if self.config.rate == 0 {
            return u64::MAX;
        }
        let elapsed = self.started.elapsed().as_millis() as u64;
        base.saturating_add(elapsed.saturating_mul(self.config.rate) / 1000)
            .saturating_add(1)
    }
}

impl Source for Datagen {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn task_configs(
        config: serde_json::Value,
        max_tasks: u32,
    ) -> Result<Vec<serde_json::Value>, PluginError> {
        Ok(task_configs(config, max_tasks))
    }

    fn open(
        config: Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        if config.streams == 0 {
            return Err(PluginError::Fatal("streams must be at least 1".into()));
        }
        let numbers = config
            .task_streams
            .clone()
            .unwrap_or_else(|| (0..config.streams).collect());
        let mut streams = Vec::with_capacity(numbers.len());
        for number in numbers {
            let partition = match number {
                0 => format!("datagen {}", config.kind.as_str()),
                n => format!("datagen {} {n}", config.kind.as_str()),
            };
            let last = SourcePosition::find::<u64>(&positions, &partition)?.unwrap_or(0);
            info!(
                host,
                "making {} at {}/s from seed {}, after record {last}",
                partition,
                config.rate,
                config.seed
            );
            streams.push(Stream {
                number,
                partition,
                last,
                base: last,
            });
        }
        Ok(Datagen {
            config,
            streams,
            started: std::time::Instant::now(),
        })
    }

    fn poll(&mut self, max: u32, _host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        let now = unix_millis();
        let mut records = Vec::new();
        for i in 0..self.streams.len() {
            let room = u64::from(max) - records.len() as u64;
            let due = self.due(self.streams[i].base);
            let stream = &mut self.streams[i];
            let mut end = due.min(stream.last.saturating_add(room));
            if self.config.count > 0 {
                end = end.min(self.config.count);
            }
            let seed = self.config.seed.wrapping_add(u64::from(stream.number));
            let mut digits = itoa::Buffer::new();
            records.extend((stream.last + 1..=end).map(|n| {
                // The position is the record's number; so is the key of stream 0.
                let position = digits.format(n).to_owned();
                let key = match stream.number {
                    0 => position.clone(),
                    s => format!("{s}-{n}"),
                };
                let mut record = SourceRecord::new(&stream.partition, position).with_key(key);
                record.value = Some(sample_json(self.config.kind, seed, n, now));
                record
            }));
            stream.last = stream.last.max(end);
        }
        Ok(records)
    }
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

export_source!(Datagen);

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::FakeHost;

    use super::*;

    fn config(rate: u64, count: u64) -> Config {
        Config {
            kind: Kind::Orders,
            rate,
            seed: 7,
            count,
            streams: 1,
            task_streams: None,
        }
    }

    #[test]
    fn streams_split_among_tasks_and_each_resumes_after_its_own_position() {
        let connector = serde_json::json!({ "rate": 0, "count": 4, "streams": 3 });
        let split = task_configs(connector.clone(), 2);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0]["task_streams"], serde_json::json!([0, 2]));
        assert_eq!(split[1]["task_streams"], serde_json::json!([1]));
        assert_eq!(task_configs(connector.clone(), 10).len(), 3);
        assert_eq!(task_configs(serde_json::json!({}), 4).len(), 1);

        let host = FakeHost::new();
        let stored = vec![SourcePosition {
            partition: "datagen orders 2".into(),
            position: "3".into(),
        }];
        let own: Config = serde_json::from_value(split[0].clone()).unwrap();
        let mut task = Datagen::open(own, stored, &host).unwrap();
        let records = task.poll(100, &host).unwrap();
        let made: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.partition.as_str(), r.position.as_str()))
            .collect();
        assert_eq!(
            made,
            [
                ("datagen orders", "1"),
                ("datagen orders", "2"),
                ("datagen orders", "3"),
                ("datagen orders", "4"),
                ("datagen orders 2", "4"),
            ]
        );
        assert_eq!(records[4].key.as_deref(), Some(&b"2-4"[..]));
        // The same record of stream 2 whichever task makes it.
        let whole: Config = serde_json::from_value(connector).unwrap();
        let all = Datagen::open(whole, vec![], &host)
            .unwrap()
            .poll(100, &host)
            .unwrap();
        let fourth_of_2 = all
            .iter()
            .find(|r| r.key.as_deref() == Some(&b"2-4"[..]))
            .unwrap();
        let made_at = |r: &SourceRecord| {
            let mut value: serde_json::Value =
                serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            value.as_object_mut().unwrap().remove("created_at");
            value
        };
        assert_eq!(made_at(fourth_of_2), made_at(&records[4]));
        assert_ne!(made_at(fourth_of_2), made_at(&all[3]), "streams differ");
        assert_eq!(all.len(), 12);
    }

    #[test]
    fn it_stops_at_count_and_resumes_after_the_stored_position() {
        let host = FakeHost::new();
        let mut source = Datagen::open(config(0, 5), vec![], &host).unwrap();
        let first = source.poll(3, &host).unwrap();
        let rest = source.poll(100, &host).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(rest.len(), 2);
        assert!(source.poll(100, &host).unwrap().is_empty());
        assert_eq!(rest[1].position, "5");
        assert_eq!(rest[1].partition, "datagen orders");

        let stored = vec![SourcePosition {
            partition: "datagen orders".into(),
            position: "3".into(),
        }];
        let mut again = Datagen::open(config(0, 5), stored, &host).unwrap();
        let resumed = again.poll(100, &host).unwrap();
        assert_eq!(resumed.len(), 2);
        let id = |r: &SourceRecord| {
            serde_json::from_slice::<serde_json::Value>(r.value.as_deref().unwrap()).unwrap()["id"]
                .clone()
        };
        assert_eq!(id(&resumed[0]), id(&rest[0]));
    }

    #[test]
    fn the_rate_bounds_what_a_poll_returns() {
        let host = FakeHost::new();
        let mut source = Datagen::open(config(1, 0), vec![], &host).unwrap();
        // At 1 record/s, right after opening only the first record is due.
        assert_eq!(source.poll(100, &host).unwrap().len(), 1);
        assert!(source.poll(100, &host).unwrap().is_empty());
    }
}
