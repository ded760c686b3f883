//! The records of the offsets topic, pure: how a source position is encoded (in the shape of
//! Kafka Connect's `connect-offsets`: key `["connector", "partition"]`, value
//! `{"position": ...}`, a null value deletes), the header that marks a record as the
//! runtime's own, and the fold that turns what the topic holds back into positions.

use std::collections::{HashMap, HashSet};

/// The header the runtime puts on every record it writes to the offsets topic. Source plugins
/// may not produce it (the source task refuses a record that carries it), so a position read
/// back with it was written by a wasmconnect task or the offsets REST API.
pub const POSITION_MARK: &str = "wasmconnect.position";

/// The value of [`POSITION_MARK`]: the version of the encoding.
pub const POSITION_MARK_VERSION: &[u8] = b"1";

#[derive(serde::Serialize, serde::Deserialize)]
struct Value {
    position: String,
}

/// The key of a source partition's position in the offsets topic.
pub fn position_key(connector: &str, partition: &str) -> Vec<u8> {
    serde_json::to_vec(&(connector, partition)).expect("strings serialize")
}

/// The value of a position in the offsets topic.
pub fn position_value(position: &str) -> Vec<u8> {
    serde_json::to_vec(&Value {
        position: position.to_owned(),
    })
    .expect("strings serialize")
}

/// What one record of the offsets topic was to the connector reading it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A position (or, `None`, a deletion) of this connector, taken.
    Taken {
        partition: String,
        position: Option<String>,
    },
    /// Another connector's record, or a key that is not a position's.
    NotMine,
    /// This connector's key without the runtime's mark, after a marked record of the same
    /// source partition: not written by the runtime, so ignored.
    Unmarked { partition: String },
    /// This connector's key with a value that is not a position: ignored.
    Unreadable { partition: String, error: String },
}

/// Reads one connector's positions back from the records of the offsets topic, in the order
/// the topic holds them.
///
/// Guarantee: a position is taken from a record the runtime marked ([`POSITION_MARK`]); an
/// unmarked record is taken only while no marked record of its source partition has been seen
/// (positions stored by versions of wasmconnect that did not mark them, so an upgrade resumes
/// where it was), and is ignored after one. The last record taken for a source partition wins;
/// a deletion removes it. Arbitrary bytes never panic the fold.
#[derive(Debug)]
pub struct PositionLog {
    connector: String,
    positions: HashMap<String, Option<String>>,
    marked: HashSet<String>,
}

impl PositionLog {
    pub fn new(connector: &str) -> Self {
        PositionLog {
            connector: connector.to_owned(),
            positions: HashMap::new(),
            marked: HashSet::new(),
        }
    }

    /// Folds in the next record of the topic; `marked` is whether it carries
    /// [`POSITION_MARK`].
    pub fn read(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, marked: bool) -> Read {
        let Some((connector, partition)) =
            key.and_then(|k| serde_json::from_slice::<(String, String)>(k).ok())
        else {
            return Read::NotMine;
        };
        if connector != self.connector {
            return Read::NotMine;
        }
        if marked {
            // Before the value is read: a marked record the fold cannot read (a later
            // encoding, say) still says the runtime owns this key from here on.
            self.marked.insert(partition.clone());
        } else if self.marked.contains(&partition) {
            return Read::Unmarked { partition };
        }
        let position = match value.map(serde_json::from_slice::<Value>) {
            None => None,
            Some(Ok(v)) => Some(v.position),
            Some(Err(e)) => {
                return Read::Unreadable {
                    partition,
                    error: e.to_string(),
                };
            }
        };
        self.positions.insert(partition.clone(), position.clone());
        Read::Taken {
            partition,
            position,
        }
    }

    /// The last position taken per source partition, deleted ones left out, sorted by
    /// partition.
    pub fn positions(self) -> Vec<(String, String)> {
        let mut positions: Vec<(String, String)> = self
            .positions
            .into_iter()
            .filter_map(|(partition, position)| Some((partition, position?)))
            .collect();
        positions.sort();
        positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_other_connectors_are_not_read() {
        let key = position_key("orders", "table \"orders\"");
        assert_eq!(key, br#"["orders","table \"orders\""]"#);
        let value = position_value("{\"id\":7}");
        let mut log = PositionLog::new("orders");
        assert_eq!(
            log.read(Some(&key), Some(&value), true),
            Read::Taken {
                partition: "table \"orders\"".into(),
                position: Some("{\"id\":7}".into())
            }
        );
        assert_eq!(
            PositionLog::new("other").read(Some(&key), Some(&value), true),
            Read::NotMine
        );
        assert_eq!(
            log.read(Some(b"not json"), Some(&value), true),
            Read::NotMine
        );
        assert_eq!(log.read(None, Some(&value), true), Read::NotMine);
        assert!(matches!(
            log.read(Some(&key), Some(b"{}"), true),
            Read::Unreadable { .. }
        ));
        assert_eq!(
            log.positions(),
            [("table \"orders\"".to_owned(), "{\"id\":7}".to_owned())]
        );
    }

    #[test]
    fn an_unmarked_record_after_a_marked_one_of_its_partition_is_ignored() {
        let mut log = PositionLog::new("gen");
        let key = position_key("gen", "datagen");
        let other = position_key("gen", "other");
        // Written before positions were marked: taken, and overridden by a later mark.
        log.read(Some(&key), Some(&position_value("3")), false);
        log.read(Some(&key), Some(&position_value("5")), true);
        assert_eq!(
            log.read(Some(&key), Some(&position_value("1000000")), false),
            Read::Unmarked {
                partition: "datagen".into()
            }
        );
        // An unmarked deletion is no more the runtime's than an unmarked position.
        assert!(matches!(
            log.read(Some(&key), None, false),
            Read::Unmarked { .. }
        ));
        // Another partition of the same connector has no mark yet: its unmarked record counts.
        assert!(matches!(
            log.read(Some(&other), Some(&position_value("9")), false),
            Read::Taken { .. }
        ));
        assert_eq!(
            log.positions(),
            [
                ("datagen".to_owned(), "5".to_owned()),
                ("other".to_owned(), "9".to_owned())
            ]
        );
    }

    #[test]
    fn a_marked_record_that_cannot_be_read_still_marks_its_partition() {
        let mut log = PositionLog::new("gen");
        let key = position_key("gen", "datagen");
        log.read(Some(&key), Some(&position_value("3")), false);
        assert!(matches!(
            log.read(Some(&key), Some(br#"{"position":{"v":2}}"#), true),
            Read::Unreadable { .. }
        ));
        assert!(matches!(
            log.read(Some(&key), Some(&position_value("1000000")), false),
            Read::Unmarked { .. }
        ));
        assert_eq!(log.positions(), [("datagen".to_owned(), "3".to_owned())]);
    }

    #[test]
    fn a_marked_deletion_removes_the_position() {
        let mut log = PositionLog::new("gen");
        let key = position_key("gen", "datagen");
        log.read(Some(&key), Some(&position_value("5")), true);
        log.read(Some(&key), None, true);
        assert!(log.positions().is_empty());
    }
}
