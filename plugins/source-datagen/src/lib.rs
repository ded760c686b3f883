//! `source-datagen`: sample data for demos and load tests, like Kafka Connect's datagen.
//!
//! ```yaml
//! config:
//!   kind: orders        # orders (default) or clickstream
//!   rate: 10            # records per second (0: as fast as the host polls)
//!   seed: 42            # the same seed gives the same records
//!   count: 0            # stop after this many (0: never)
//! ```
//!
//! Record `n` (1, 2, ...) is a pure function of the seed and `n`, keyed by `n`, in one source
//! partition (`datagen <kind>`) whose position is `n`: after a restart the source continues
//! right after the last record Kafka has, with exactly the records it would have made.
//! Timestamps (`created_at`, `at`) are the time a record is made.
#![forbid(unsafe_code)]

mod sample;

use serde::Deserialize;
use wasmconnect_sdk::{
    ConfigKey, Host, PluginError, Source, SourcePosition, SourceRecord, export_source, info,
};

pub use sample::{Kind, sample};

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
}

fn default_rate() -> u64 {
    10
}

/// The keys of [`Config`], as the plugin's `config-spec` describes them.
pub fn spec() -> Vec<ConfigKey> {
    vec![
        ConfigKey::text("kind", "What to make: orders or clickstream events")
            .choices(&["orders", "clickstream"])
            .default("orders"),
        ConfigKey::integer("rate", "Records per second; 0: as fast as the host polls")
            .default(default_rate()),
        ConfigKey::integer("seed", "The same seed gives the same records").default(0),
        ConfigKey::integer("count", "Stop after this many records; 0: never").default(0),
    ]
}

/// The source: one per task.
pub struct Datagen {
    config: Config,
    partition: String,
    /// The last record handed to the host.
    last: u64,
    /// When the task opened, and `last` then: the rate counts from there.
    started: std::time::Instant,
    base: u64,
}

impl Datagen {
    /// How many records may exist by now: `rate` per second since the task opened.
    fn due(&self) -> u64 {
        if self.config.rate == 0 {
            return u64::MAX;
        }
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.base
            .saturating_add(elapsed.saturating_mul(self.config.rate) / 1000)
            .saturating_add(1)
    }
}

impl Source for Datagen {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(spec())
    }

    fn open(
        config: Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        let partition = format!("datagen {}", config.kind.as_str());
        let last = SourcePosition::find::<u64>(&positions, &partition)?.unwrap_or(0);
        info!(
            host,
            "making {} at {}/s from seed {}, after record {last}",
            config.kind.as_str(),
            config.rate,
            config.seed
        );
        Ok(Datagen {
            config,
            partition,
            last,
            started: std::time::Instant::now(),
            base: last,
        })
    }

    fn poll(&mut self, max: u32, _host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        let mut end = self.due().min(self.last.saturating_add(u64::from(max)));
        if self.config.count > 0 {
            end = end.min(self.config.count);
        }
        let now = unix_millis();
        let records = (self.last + 1..=end)
            .map(|n| {
                SourceRecord::new(&self.partition, n.to_string())
                    .with_key(n.to_string())
                    .with_json(&sample(self.config.kind, self.config.seed, n, now))
            })
            .collect();
        self.last = self.last.max(end);
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
        }
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
