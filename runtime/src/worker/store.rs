//! What the REST API changed, kept across restarts: connectors created, changed or deleted
//! through it, and the target state (paused, stopped) of any connector.
//!
//! `connectors.yaml` stays the declared base; the store is laid over it. An API change to a
//! connector the file declares remembers the file's version it replaced: when the file's
//! entry later changes, the file wins again (the last change wins, whichever side made it).
//!
//! A single process keeps the store in `<data_dir>/connectors.json`; a cluster in its config
//! topic, one record per connector (key `connector/<name>`, a tombstone once nothing is left
//! to remember), which every worker replays in the same order.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::ConnectorConfig;
use crate::kafka::{SharedRecord, SharedTopic, TopicError};

/// The config topic's key prefix of a connector's record.
const CONNECTOR_KEY: &str = "connector/";

/// A connector config in Kafka Connect's shape, as it was given.
pub type Shape = serde_json::Map<String, serde_json::Value>;

/// What a connector should be doing, as Kafka Connect's target states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    #[default]
    Started,
    /// Tasks run but neither poll nor write; consumers keep their partitions.
    Paused,
    /// No task runs; the config is kept.
    Stopped,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read {}: {source} (fix or remove the file; it holds the connectors created or changed through the REST API)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid connector store: {source} (fix or remove the file; it holds the connectors created or changed through the REST API)", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The cluster's config topic did not take the change; nothing changed.
    #[error("{0}")]
    Topic(#[from] TopicError),
}

/// One connector's API changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    /// The config set through the API (`None`: the file's, or deleted when `deleted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<ConnectorConfig>,
    /// Deleted through the API although the file declares it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    /// The Kafka Connect-shaped config `config` was set with (a flat map of strings), which
    /// `GET /connectors/{name}/config` answers; `None` when it was set in the native shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect: Option<Shape>,
    /// The file's entry when the API replaced or deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replaced: Option<ConnectorConfig>,
    #[serde(default)]
    target: Target,
    /// In a cluster: the config topic's offset of the record that created the connector
    /// through the API (a record without it is the creating one). The cluster's connectors
    /// made through the API take their task slots in this order, after the file's, so one
    /// created later never moves another's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<i64>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.config.is_none() && !self.deleted && self.target == Target::Started
    }

    /// Completes an entry written at `offset` of the config topic: a config without a
    /// creation offset was created by that very record; an entry without a config has none.
    fn created_at(&mut self, offset: i64) {
        if self.config.is_none() {
            self.since = None;
        } else if self.since.is_none() {
            self.since = Some(offset);
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    connectors: BTreeMap<String, Entry>,
}

/// The API's changes, in memory and where they are kept ([`Backing`]). Every change is
/// written before it is applied, so what the API acknowledged survives a crash.
#[derive(Debug)]
pub struct Store {
    backing: Backing,
    entries: BTreeMap<String, Entry>,
}

/// Where the store is kept.
#[derive(Debug)]
enum Backing {
    /// `<data_dir>/connectors.json`, written to a temporary file, then renamed over the old one.
    File(PathBuf),
    /// The cluster's config topic, the change acknowledged by the brokers.
    Topic(Arc<SharedTopic>),
}

/// The connectors to run: the file's, with the API's changes laid over it.
#[derive(Debug, Default, PartialEq)]
pub struct Effective {
    /// The file's order first, then those created through the API: by name in a single
    /// process, in the order they were created in a cluster.
    pub connectors: Vec<ConnectorConfig>,
    pub targets: BTreeMap<String, Target>,
}

impl Effective {
    pub fn target(&self, name: &str) -> Target {
        self.targets.get(name).copied().unwrap_or_default()
    }
}

impl Store {
    /// Opens the store in `data_dir`; a missing file is an empty store.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("connectors.json");
        let entries = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<File>(&bytes)
                    .map_err(|source| StoreError::Parse {
                        path: path.clone(),
                        source,
                    })?
                    .connectors
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        Ok(Store {
            backing: Backing::File(path),
            entries,
        })
    }

    /// The store of a cluster, in its config `topic`, from the `records` it holds (read from
    /// its beginning); records of other keys are left out.
    pub fn in_topic(topic: Arc<SharedTopic>, records: &[SharedRecord]) -> Self {
        let mut store = Store {
            backing: Backing::Topic(topic),
            entries: BTreeMap::new(),
        };
        for record in records {
            store.absorb(record);
        }
        store
    }

    /// Where the store is kept, for the log.
    pub fn location(&self) -> String {
        match &self.backing {
            Backing::File(path) => path.display().to_string(),
            Backing::Topic(topic) => format!("the cluster's config topic {}", topic.name()),
        }
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes a record of the config topic (written by any worker, this one included): the
    /// entry of its connector becomes the record's. Returns whether it was a connector's
    /// record and changed the entry. An unreadable record is logged and left out.
    pub fn absorb(&mut self, record: &SharedRecord) -> bool {
        let Some(name) = record.key.strip_prefix(CONNECTOR_KEY) else {
            return false;
        };
        let entry = match &record.value {
            None => None,
            Some(bytes) => match serde_json::from_slice::<Entry>(bytes) {
                Ok(mut entry) => {
                    entry.created_at(record.offset);
                    Some(entry)
                }
                Err(e) => {
                    tracing::error!(connector = %name, "ignoring an unreadable record of the cluster's config topic: {e}");
                    return false;
                }
            },
        };
        let before = self.entries.get(name);
        if before == entry.as_ref() {
            return false;
        }
        match entry {
            Some(entry) => self.entries.insert(name.to_owned(), entry),
            None => self.entries.remove(name),
        };
        true
    }

    /// Copies every entry of `other` (a single process's store) into this one: how the
    /// connectors made through a single process's API come along into a new cluster.
    pub async fn import(&mut self, other: &Store) -> Result<usize, StoreError> {
        for (name, entry) in &other.entries {
            let entry = entry.clone();
            self.change(name, |e| *e = entry).await?;
        }
        Ok(other.entries.len())
    }

    /// Lays the API's changes over the file's connectors. Changes made over a file entry that
    /// has changed since are dropped (and forgotten at the next write): the file wins.
    pub fn effective(&mut self, file: &[ConnectorConfig]) -> Effective {
        for (name, entry) in &mut self.entries {
            if entry.replaced.is_none() {
                continue;
            }
            let declared = file.iter().find(|c| &c.name == name);
            if declared != entry.replaced.as_ref() {
                tracing::info!(connector = %name,
                    "connectors.yaml changed this connector since the REST API changed or deleted it: the file's version applies");
                entry.config = None;
                entry.connect = None;
                entry.deleted = false;
                entry.replaced = None;
            }
        }
        let mut effective = Effective::default();
        for declared in file {
            match self.entries.get(&declared.name) {
                Some(entry) if entry.deleted => continue,
                Some(Entry {
                    config: Some(config),
                    ..
                }) => effective.connectors.push(config.clone()),
                _ => effective.connectors.push(declared.clone()),
            }
        }
        let mut made: Vec<(Option<i64>, &ConnectorConfig)> = self
            .entries
            .iter()
            .filter(|(name, _)| !file.iter().any(|c| &c.name == *name))
            .filter_map(|(_, entry)| Some((entry.since, entry.config.as_ref()?)))
            .collect();
        // Stable: entries are by name, so equal offsets (none, alone) stay by name.
        made.sort_by_key(|(since, _)| *since);
        effective
            .connectors
            .extend(made.into_iter().map(|(_, config)| config.clone()));
        for (name, entry) in &self.entries {
            if entry.target != Target::Started
                && effective.connectors.iter().any(|c| &c.name == name)
            {
                effective.targets.insert(name.clone(), entry.target);
            }
        }
        effective
    }

    /// Sets a connector's config through the API, with the Kafka Connect-shaped config it
    /// was given as (`connect`), if it was; `declared` is the file's entry of that name, if
    /// any.
    pub async fn set_config(
        &mut self,
        config: ConnectorConfig,
        connect: Option<Shape>,
        declared: Option<&ConnectorConfig>,
    ) -> Result<(), StoreError> {
        self.change(&config.name.clone(), |entry| {
            entry.replaced = declared.cloned();
            entry.config = Some(config);
            entry.connect = connect;
            entry.deleted = false;
        })
        .await
    }

    /// The Kafka Connect-shaped configs of the connectors set through the API in that shape.
    pub fn shapes(&self) -> BTreeMap<String, Shape> {
        self.entries
            .iter()
            .filter(|(_, e)| e.config.is_some())
            .filter_map(|(name, e)| Some((name.clone(), e.connect.clone()?)))
            .collect()
    }

    /// Deletes a connector through the API, target state included.
    pub async fn delete(
        &mut self,
        name: &str,
        declared: Option<&ConnectorConfig>,
    ) -> Result<(), StoreError> {
        self.change(name, |entry| {
            *entry = Entry {
                deleted: declared.is_some(),
                replaced: declared.cloned(),
                ..Entry::default()
            };
        })
        .await
    }

    pub async fn set_target(&mut self, name: &str, target: Target) -> Result<(), StoreError> {
        self.change(name, |entry| entry.target = target).await
    }

    /// Applies `edit` to a copy, writes the result, then keeps it.
    async fn change(
        &mut self,
        name: &str,
        edit: impl FnOnce(&mut Entry),
    ) -> Result<(), StoreError> {
        let mut entries = self.entries.clone();
        let entry = entries.entry(name.to_owned()).or_default();
        edit(entry);
        if entry.is_empty() {
            entries.remove(name);
        }
        match &self.backing {
            Backing::File(path) => write_file(path, &entries)?,
            Backing::Topic(topic) => {
                if let Some(entry) = entries.get_mut(name) {
                    if entry.config.is_none() {
                        entry.since = None;
                    }
                    let value = serde_json::to_vec(entry).expect("connector configs serialize");
                    let offset = topic
                        .publish(&format!("{CONNECTOR_KEY}{name}"), Some(&value))
                        .await?;
                    entry.created_at(offset);
                } else {
                    topic
                        .publish(&format!("{CONNECTOR_KEY}{name}"), None)
                        .await?;
                }
            }
        }
        self.entries = entries;
        Ok(())
    }
}

fn write_file(path: &Path, entries: &BTreeMap<String, Entry>) -> Result<(), StoreError> {
    let error = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(error)?;
    }
    let body = serde_json::to_vec_pretty(&File {
        connectors: entries.clone(),
    })
    .expect("connector configs serialize");
    let temporary = path.with_extension("json.tmp");
    // Readable by the worker's user alone: the configs hold the connectors' secrets.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(error)?;
    file.write_all(&body).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(name: &str, topic: &str) -> ConnectorConfig {
        serde_yaml::from_str(&format!(
            "{{name: {name}, kind: sink, plugin: p.wasm, topics: [{topic}]}}"
        ))
        .unwrap()
    }

    fn names(effective: &Effective) -> Vec<&str> {
        effective
            .connectors
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    #[tokio::test]
    async fn api_changes_lay_over_the_file_and_survive_reopening() {
        let dir = tempdir();
        let file = [connector("a", "t1"), connector("b", "t1")];
        let mut store = Store::open(&dir).unwrap();
        store
            .set_config(connector("c", "t3"), None, None)
            .await
            .unwrap();
        store
            .set_config(connector("a", "t9"), None, Some(&file[0]))
            .await
            .unwrap();
        store.delete("b", Some(&file[1])).await.unwrap();
        store.set_target("c", Target::Paused).await.unwrap();

        let mut reopened = Store::open(&dir).unwrap();
        let effective = reopened.effective(&file);
        assert_eq!(names(&effective), ["a", "c"]);
        assert_eq!(effective.connectors[0].topics, ["t9"]);
        assert_eq!(effective.target("c"), Target::Paused);
        assert_eq!(effective.target("a"), Target::Started);
    }

    #[tokio::test]
    async fn a_later_change_to_the_file_wins_over_an_earlier_api_change() {
        let dir = tempdir();
        let file = [connector("a", "t1"), connector("b", "t1")];
        let mut store = Store::open(&dir).unwrap();
        store
            .set_config(connector("a", "t9"), None, Some(&file[0]))
            .await
            .unwrap();
        store.delete("b", Some(&file[1])).await.unwrap();
        let edited = [connector("a", "t2"), connector("b", "t2")];
        let effective = store.effective(&edited);
        assert_eq!(names(&effective), ["a", "b"]);
        assert_eq!(effective.connectors[0].topics, ["t2"]);
    }

    /// The first topic of each connector the store makes effective over an empty file.
    fn topics(store: &mut Store) -> Vec<String> {
        let effective = store.effective(&[]);
        effective
            .connectors
            .iter()
            .map(|c| c.topics[0].clone())
            .collect()
    }

    /// A record of the config topic holding `entry` for connector `name`, at `offset`.
    fn record(name: &str, entry: &Entry, offset: i64) -> SharedRecord {
        SharedRecord {
            key: format!("{CONNECTOR_KEY}{name}"),
            value: Some(serde_json::to_vec(entry).unwrap()),
            offset,
        }
    }

    #[test]
    fn a_clusters_api_connectors_come_in_the_order_they_were_created_whatever_their_names() {
        let mut store = Store::open(&tempdir()).unwrap();
        let made = |topic| Entry {
            config: Some(connector("_", topic)),
            ..Entry::default()
        };
        assert!(store.absorb(&record("z", &made("t1"), 5)));
        assert!(store.absorb(&record("a", &made("t2"), 9)));
        assert_eq!(topics(&mut store), ["t1", "t2"], "z was created first");
        // A later change of z carries its creation offset: the order holds.
        let mut changed = store.entries["z"].clone();
        assert_eq!(changed.since, Some(5));
        changed.target = Target::Paused;
        assert!(store.absorb(&record("z", &changed, 12)));
        assert_eq!(store.entries["z"].since, Some(5));
        // Deleted, then made again: created anew, after a.
        assert!(store.absorb(&SharedRecord {
            key: format!("{CONNECTOR_KEY}z"),
            value: None,
            offset: 13,
        }));
        assert!(store.absorb(&record("z", &made("t3"), 14)));
        assert_eq!(topics(&mut store), ["t2", "t3"]);
        // The worker's own record coming back changes nothing.
        let own = store.entries["z"].clone();
        assert!(!store.absorb(&record("z", &own, 14)));
    }

    #[test]
    fn a_store_that_is_not_json_is_an_error_naming_the_file() {
        let dir = tempdir();
        std::fs::write(dir.join("connectors.json"), "{not json").unwrap();
        let error = Store::open(&dir).unwrap_err().to_string();
        assert!(error.contains("connectors.json"), "{error}");
        assert!(error.contains("fix or remove"), "{error}");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "wasmconnect-store-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
