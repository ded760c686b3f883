//! What a sink consumer stored for commit and what it knows Kafka committed, per partition:
//! which records a refused commit leaves for a partition's next owner to read again, and
//! where a partition that comes straight back to the same consumer resumes instead. Pure:
//! the consumer's rebalance hooks feed it (see `consumer.rs`).

use std::collections::HashMap;
use std::fmt;

/// A partition: (topic, partition).
type Key = (String, i32);

/// The offsets stored for commit that a partition's next owner reads again: from the last
/// commit known to have succeeded (`None`: none known to this consumer, so the group's last
/// one) up to the stored next offset `to`, excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncommitted {
    pub topic: String,
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

impl fmt::Display for Uncommitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(from) => write!(
                f,
                "{}/{} offsets {from}..{}",
                self.topic, self.partition, self.to
            ),
            None => write!(
                f,
                "{}/{} offsets from the group's last commit up to {}",
                self.topic, self.partition, self.to
            ),
        }
    }
}

/// The ledger of one consumer. Guarantees: a partition is said to resume at a stored offset
/// only when the assignment right after the revoke that refused its commit gives it back, so
/// every record below that offset was written by this consumer's task and none is skipped
/// unwritten. Normally no other member held it in between; after an assignment this
/// consumer lost (its session expired), one may have, and then the records that member wrote
/// past the stored offset are written again, never lost. Offsets of partitions the consumer
/// no longer holds are forgotten.
#[derive(Debug, Default)]
pub struct CommitLedger {
    /// The next offset to read, stored for commit, by partition held.
    stored: HashMap<Key, i64>,
    /// The highest next offset known committed, by partition held.
    committed: HashMap<Key, i64>,
    /// Partitions revoked while their stored offsets were not committed: where they resume
    /// if the next assignment gives them back.
    returning: HashMap<Key, i64>,
}

/// What is stored now, to be passed to [`CommitLedger::committed`] once a commit that
/// started after it succeeded.
pub type Snapshot = Vec<(Key, i64)>;

impl CommitLedger {
    /// `offsets` (topic, partition, next offset) were stored for commit.
    pub fn stored(&mut self, offsets: impl IntoIterator<Item = (String, i32, i64)>) {
        for (topic, partition, next) in offsets {
            let entry = self.stored.entry((topic, partition)).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// What is stored now.
    pub fn snapshot(&self) -> Snapshot {
        self.stored.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A commit that started after `snapshot` was taken succeeded: at least that is
    /// committed, for the partitions still held.
    pub fn committed(&mut self, snapshot: Snapshot) {
        for (key, next) in snapshot {
            if self.stored.contains_key(&key) {
                let entry = self.committed.entry(key).or_insert(next);
                *entry = (*entry).max(next);
            }
        }
    }

    /// `partitions` were revoked after a commit of what was stored, which Kafka `refused` or
    /// not. If it refused, returns for each partition the stored offsets not known committed
    /// (what the next owner reads again) and remembers them for [`CommitLedger::assigned`].
    /// The partitions are forgotten.
    pub fn revoked(&mut self, partitions: &[(String, i32)], refused: bool) -> Vec<Uncommitted> {
        let mut uncommitted = Vec::new();
        for key in partitions {
            let stored = self.stored.remove(key);
            let committed = self.committed.remove(key);
            let Some(to) = stored else { continue };
            if committed.is_some_and(|c| c >= to) {
                continue;
            }
            if refused {
                self.returning.insert(key.clone(), to);
                uncommitted.push(Uncommitted {
                    topic: key.0.clone(),
                    partition: key.1,
                    from: committed,
                    to,
                });
            }
        }
        uncommitted
    }

    /// `partitions` were assigned: returns where those that come straight back after a
    /// refused commit resume (topic, partition, next offset), and stores those offsets (the
    /// next commit carries them). Everything else remembered from the last revoke is
    /// forgotten.
    pub fn assigned(&mut self, partitions: &[(String, i32)]) -> Vec<(String, i32, i64)> {
        let returning = std::mem::take(&mut self.returning);
        let back: Vec<(String, i32, i64)> = partitions
            .iter()
            .filter_map(|key| returning.get(key).map(|&to| (key.0.clone(), key.1, to)))
            .collect();
        self.stored(back.iter().cloned());
        back
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(partition: i32) -> (String, i32) {
        ("t".to_owned(), partition)
    }

    #[test]
    fn a_revoke_after_a_commit_that_succeeded_leaves_nothing_to_read_again() {
        let mut ledger = CommitLedger::default();
        ledger.stored([("t".to_owned(), 0, 10)]);
        let snapshot = ledger.snapshot();
        ledger.committed(snapshot);
        assert!(ledger.revoked(&[p(0)], false).is_empty());
        assert!(ledger.assigned(&[p(0)]).is_empty());
    }

    #[test]
    fn a_refused_commit_names_what_is_read_again_and_a_partition_back_at_once_resumes_after_it() {
        let mut ledger = CommitLedger::default();
        ledger.stored([("t".to_owned(), 0, 10), ("t".to_owned(), 1, 4)]);
        let snapshot = ledger.snapshot();
        ledger.committed(snapshot);
        ledger.stored([("t".to_owned(), 0, 25)]);
        let uncommitted = ledger.revoked(&[p(0), p(1)], true);
        assert_eq!(
            uncommitted,
            vec![Uncommitted {
                topic: "t".into(),
                partition: 0,
                from: Some(10),
                to: 25
            }]
        );
        assert_eq!(uncommitted[0].to_string(), "t/0 offsets 10..25");
        assert_eq!(ledger.assigned(&[p(0)]), vec![("t".to_owned(), 0, 25)]);
        // Stored again, so the next commit carries it.
        assert_eq!(ledger.snapshot(), vec![(p(0), 25)]);
    }

    #[test]
    fn only_the_assignment_right_after_the_refused_revoke_resumes_from_it() {
        let mut ledger = CommitLedger::default();
        ledger.stored([("t".to_owned(), 0, 7)]);
        let uncommitted = ledger.revoked(&[p(0)], true);
        assert_eq!(uncommitted[0].from, None);
        // The next assignment gives partition 0 to another member...
        assert!(ledger.assigned(&[p(1)]).is_empty());
        // ...so when it comes back later, the group's commit holds.
        assert!(ledger.assigned(&[p(0)]).is_empty());
    }

    #[test]
    fn a_commit_that_came_back_late_for_a_partition_no_longer_held_is_ignored() {
        let mut ledger = CommitLedger::default();
        ledger.stored([("t".to_owned(), 0, 7)]);
        let snapshot = ledger.snapshot();
        ledger.revoked(&[p(0)], true);
        ledger.committed(snapshot);
        ledger.assigned(&[]);
        assert!(ledger.snapshot().is_empty());
        assert!(ledger.committed.is_empty());
    }
}
