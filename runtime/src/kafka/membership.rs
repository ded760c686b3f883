//! A worker's membership of its cluster: a consumer of the cluster's slots topic, in the
//! cluster's group, whose assigned partitions are the task slots the worker owns. Kafka's group
//! protocol does the rest: membership (join, leave), failure detection (the session timeout)
//! and ownership (the cooperative-sticky assignor moves only the slots that change owner).
//!
//! Guarantees:
//! - A slot is reported [`Ownership::Gained`] only once Kafka assigned it to this worker, and
//!   [`Ownership::Lost`] before the worker gives it up: the rebalance (or, when the session is
//!   lost, the worker's own revocation) waits until the receiver acknowledges, so the worker
//!   stops a slot's task before another worker can be assigned the slot.
//! - A worker cut off from the brokers revokes its slots itself once it has not heartbeated
//!   for the session timeout (librdkafka's lost assignment), the same time after which the
//!   group gives them to the others. librdkafka checks this only between rebalances; a
//!   member cut off in the middle of one is caught by the worker's own guard ([`fence`]):
//!   no byte from any broker for the session timeout stops the tasks just the same.
//! - Leaving (shutdown) revokes every slot through the same path, then leaves the group at
//!   once, so the others take the slots over without waiting for the session timeout.
//! - When a slot's tasks last ran is kept in the group itself, as the metadata of the slot's
//!   committed offset (the slots topic holds no records): its owner records the time every
//!   fifth of the session timeout and when it stops them. A worker gaining the slot reads it
//!   ([`Ownership::Gained`]'s `last_ran`), to tell how long the tasks ran nowhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::admin::{TopicError, TopicSpec, client_config, ensure_topic, partitions_of};
use crate::config::{ClusterConfig, KafkaConfig};

/// How long a poll of the slots topic waits, which bounds how late a leave starts.
const POLL: Duration = Duration::from_millis(100);

/// A change of the slots this worker owns.
#[derive(Debug)]
pub enum Ownership {
    /// Kafka assigned these slots to the worker: it starts their tasks.
    Gained {
        slots: Vec<u32>,
        /// When the tasks of those slots that ran before last ran (on the previous owner).
        last_ran: Vec<SystemTime>,
    },
    /// The worker gives these slots up (a rebalance moves them, its session was lost, or it
    /// leaves): it stops their tasks, then answers on `done`, which the rebalance waits for.
    Lost {
        slots: Vec<u32>,
        /// Whether the group already took them (the session was lost) rather than asking.
        session_lost: bool,
        done: std::sync::mpsc::Sender<()>,
    },
}

/// Passes the group's decisions on to the worker, and waits for it on a revocation.
struct MemberContext {
    changes: mpsc::UnboundedSender<Ownership>,
    /// How long no byte came from any broker, as of librdkafka's last statistics (-1: not
    /// known yet).
    silent_ms: std::sync::atomic::AtomicI64,
}

impl MemberContext {
    /// Hands `change` to the worker. Without a receiver the worker is gone, and its tasks
    /// with it (a loss's `done` is dropped with the change, so nothing waits).
    fn tell(&self, change: Ownership) {
        self.changes.send(change).ok();
    }
}

impl ClientContext for MemberContext {
    /// Keeps the shortest time since a broker connection last received anything.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let silent_us = statistics
            .brokers
            .values()
            .map(|b| b.rxidle)
            .filter(|idle| *idle >= 0)
            .min()
            .unwrap_or(-1);
        let silent_ms = if silent_us < 0 { -1 } else { silent_us / 1000 };
        self.silent_ms.store(silent_ms, Ordering::Release);
    }
}

impl ConsumerContext for MemberContext {
    /// Before librdkafka gives slots up: the worker stops their tasks first.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let slots = slots_of(list);
            if slots.is_empty() {
                return;
            }
            let (done, stopped) = std::sync::mpsc::channel();
            let session_lost = consumer.assignment_lost();
            let change = Ownership::Lost {
                slots,
                session_lost,
                done,
            };
            self.tell(change);
            let _ = stopped.recv();
            if !session_lost {
                record_running(consumer, list, CommitMode::Sync);
            }
        }
    }

    /// Once librdkafka took slots on: the worker starts their tasks.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let slots = slots_of(list);
            if !slots.is_empty() {
                let last_ran = last_ran(consumer, list);
                self.tell(Ownership::Gained { slots, last_ran });
            }
        }
    }
}

/// The worker's own guard for what librdkafka checks only between rebalances: slots owned
/// while no broker has said anything for the session timeout are given up (their tasks
/// stopped, as for a lost session), since the group gives them away after that time whatever
/// state this member's join is in. Once the brokers answer again and the slots are still this
/// member's, they are taken back. Returns whether the slots are given up.
fn fence(
    member: &MemberContext,
    owned: &TopicPartitionList,
    session: Duration,
    fenced: bool,
) -> bool {
    let slots = slots_of(owned);
    if slots.is_empty() {
        return false;
    }
    let silent_ms = member.silent_ms.load(Ordering::Acquire);
    if silent_ms < 0 {
        // Not known (no statistics yet, or no broker connection has received anything
        // since it was made): nothing changes, a fence included, until the brokers answer.
        return fenced;
    }
    let silence = Duration::from_millis(silent_ms as u64);
    if !fenced && silence >= session {
        tracing::warn!(
            ?slots,
            silent_s = silence.as_secs(),
            "the cluster session was lost (no answer from the brokers): stopping the tasks of its slots"
        );
        let (done, stopped) = std::sync::mpsc::channel();
        member.tell(Ownership::Lost {
            slots,
            session_lost: true,
            done,
        });
        let _ = stopped.recv();
        return true;
    }
    if fenced && silence < session {
        tracing::info!(
            ?slots,
            "the brokers answer again: the slots are still this worker's"
        );
        member.tell(Ownership::Gained {
            slots,
            last_ran: Vec::new(),
        });
        return false;
    }
    fenced
}

/// Records, as the committed offset's metadata of each slot in `slots`, that their tasks ran
/// until now. Best effort: a failed record only makes the next owner's gap look longer.
fn record_running<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    slots: &TopicPartitionList,
    mode: CommitMode,
) {
    if slots.count() == 0 {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string();
    let mut marks = TopicPartitionList::new();
    for slot in slots.elements() {
        marks
            .add_partition(slot.topic(), slot.partition())
            .set_metadata(now.as_str());
    }
    if marks.set_all_offsets(Offset::Offset(0)).is_err() {
        return;
    }
    if let Err(e) = consumer.commit(&marks, mode) {
        tracing::debug!("cannot record when the slots' tasks ran: {e}");
    }
}

/// When the tasks of the slots in `slots` last ran, for those that ran before (read from the
/// group's committed offsets; nothing when the group cannot say).
fn last_ran<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    slots: &TopicPartitionList,
) -> Vec<SystemTime> {
    match consumer.committed_offsets(slots.clone(), Duration::from_secs(5)) {
        Ok(committed) => committed
            .elements()
            .iter()
            .filter_map(|e| e.metadata().parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            .collect(),
        Err(e) => {
            tracing::debug!("cannot read when the gained slots' tasks last ran: {e}");
            Vec::new()
        }
    }
}

fn slots_of(list: &TopicPartitionList) -> Vec<u32> {
    let mut slots: Vec<u32> = list
        .elements()
        .iter()
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect();
    slots.sort_unstable();
    slots
}

/// A worker's membership of its cluster, until [`Membership::leave`].
pub struct Membership {
    leaving: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Makes sure the slots topic has at least `slots` partitions (creating it, or adding
    /// partitions), then joins the cluster's group as `member` (the worker's id, which the
    /// group shows as the client id). Changes of ownership arrive on the returned channel
    /// from then on.
    pub async fn join(
        kafka: &KafkaConfig,
        cluster: &ClusterConfig,
        member: &str,
        slots: u32,
    ) -> Result<(Membership, mpsc::UnboundedReceiver<Ownership>), TopicError> {
        let topic = cluster.slots_topic();
        ensure_slots(kafka, &topic, slots).await?;
        let (changes, receiver) = mpsc::unbounded_channel();
        // One beat paces the heartbeats, the statistics the guard reads and the records of
        // when the slots' tasks ran: a fifth of the session timeout.
        let beat = Duration::from_millis((cluster.session_timeout_ms / 5).max(100));
        let mut config = client_config(kafka);
        config
            .set("group.id", &cluster.group)
            .set("client.id", member)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", cluster.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", beat.as_millis().to_string())
            // Nothing is ever written to the slots topic; its committed offsets only carry
            // when each slot's tasks last ran (record_running).
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // New partitions (slots) are seen within seconds, not librdkafka's 5 minutes.
            .set("topic.metadata.refresh.interval.ms", "5000")
            // How long the brokers have been silent, for the worker's own guard (fence).
            .set("statistics.interval.ms", beat.as_millis().to_string());
        if let Some(id) = &cluster.instance_id {
            config.set("group.instance.id", id);
        }
        let consumer: BaseConsumer<MemberContext> = config
            .create_with_context(MemberContext {
                changes,
                silent_ms: std::sync::atomic::AtomicI64::new(-1),
            })
            .map_err(|e| TopicError::Unavailable(format!("cannot create the member: {e}")))?;
        consumer
            .subscribe(&[&topic])
            .map_err(|e| TopicError::Unavailable(format!("cannot subscribe to {topic}: {e}")))?;
        let leaving = Arc::new(AtomicBool::new(false));
        let flag = leaving.clone();
        let session = Duration::from_millis(cluster.session_timeout_ms);
        let thread = std::thread::Builder::new()
            .name("cluster-member".into())
            .spawn(move || {
                let mut recorded = std::time::Instant::now();
                let mut fenced = false;
                while !flag.load(Ordering::Acquire) {
                    // The slots topic holds no records: a poll serves the group's events.
                    let _ = consumer.poll(POLL);
                    if recorded.elapsed() < beat {
                        continue;
                    }
                    recorded = std::time::Instant::now();
                    let Ok(owned) = consumer.assignment() else {
                        continue;
                    };
                    record_running(&consumer, &owned, CommitMode::Async);
                    fenced = fence(consumer.context(), &owned, session, fenced);
                }
                // Revokes every slot (through pre_rebalance) and leaves the group; a static
                // member (instance_id) keeps its place until the session timeout instead.
                consumer.unsubscribe();
                let _ = consumer.poll(POLL);
                drop(consumer);
            })
            .map_err(|e| TopicError::Unavailable(format!("cannot start the member: {e}")))?;
        Ok((
            Membership {
                leaving,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    /// Gives every slot up (their tasks are stopped first) and leaves the group, so the other
    /// workers take the slots over at once; a static member keeps its place (and its slots)
    /// until the session timeout, for its restart.
    pub async fn leave(mut self) {
        self.leaving.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leaving.store(true, Ordering::Release);
    }
}

/// Creates the slots topic with `slots` partitions, or adds partitions to it when it has
/// fewer (a slot is never taken away: a topic's partitions cannot shrink). A topic that
/// exists with enough partitions is left alone, so the workers need no right to create or
/// change topics once it is there.
pub async fn ensure_slots(kafka: &KafkaConfig, topic: &str, slots: u32) -> Result<(), TopicError> {
    let wanted = usize::try_from(slots.max(1)).unwrap_or(usize::MAX);
    let named = |m: String| TopicError::Unavailable(format!("slots topic {topic}: {m}"));
    let have = partitions_of(kafka, topic)
        .await
        .map_err(|e| named(format!("cannot read its partitions: {e}")))?;
    if have == 0 {
        let spec = TopicSpec {
            name: topic,
            partitions: i32::try_from(wanted).unwrap_or(i32::MAX),
            replication_factor: -1,
            compacted: false,
        };
        return ensure_topic(kafka, &spec)
            .await
            .map_err(|e| named(e.to_string()));
    }
    if have < wanted {
        let admin: AdminClient<DefaultClientContext> = client_config(kafka)
            .create()
            .map_err(|e| named(e.to_string()))?;
        let grow = NewPartitions::new(topic, wanted);
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for result in admin
            .create_partitions(&[grow], &options)
            .await
            .map_err(|e| named(format!("cannot add partitions: {e}")))?
        {
            result.map_err(|(_, code)| named(format!("cannot add partitions: {code}")))?;
        }
        tracing::info!(
            topic,
            from = have,
            to = wanted,
            "slots added to the cluster"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(slots: &[i32]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for &slot in slots {
            list.add_partition("cluster-slots", slot);
        }
        list
    }

    /// Runs [`fence`] on another thread, acknowledging a loss it reports as the worker does;
    /// returns its answer and the changes it reported.
    fn fenced_after(
        member: &Arc<MemberContext>,
        changes: &mut mpsc::UnboundedReceiver<Ownership>,
        silent_ms: i64,
        fenced: bool,
    ) -> (bool, Vec<Vec<u32>>) {
        member.silent_ms.store(silent_ms, Ordering::Release);
        let guard = {
            let member = member.clone();
            std::thread::spawn(move || {
                fence(&member, &owned(&[0, 1]), Duration::from_secs(6), fenced)
            })
        };
        let mut told = Vec::new();
        while !guard.is_finished() || !changes.is_empty() {
            match changes.try_recv() {
                Ok(Ownership::Lost { slots, done, .. }) => {
                    told.push(slots);
                    done.send(()).expect("fence waits for the loss");
                }
                Ok(Ownership::Gained { slots, .. }) => told.push(slots),
                Err(_) => std::thread::yield_now(),
            }
        }
        (guard.join().expect("fence"), told)
    }

    #[test]
    fn a_fenced_worker_takes_its_slots_back_once_the_brokers_answer_even_after_a_blank_statistic() {
        let (tx, mut changes) = mpsc::unbounded_channel();
        let member = Arc::new(MemberContext {
            changes: tx,
            silent_ms: std::sync::atomic::AtomicI64::new(-1),
        });
        // Silent for the session timeout: the slots' tasks stop.
        let (fenced, told) = fenced_after(&member, &mut changes, 7_000, false);
        assert!(fenced);
        assert_eq!(told, vec![vec![0, 1]]);
        // A statistic that knows nothing (every connection new) keeps the fence as it is.
        let (fenced, told) = fenced_after(&member, &mut changes, -1, fenced);
        assert!(
            fenced,
            "an unknown silence lifted the fence without the slots coming back"
        );
        assert!(told.is_empty());
        // The brokers answer: the slots come back.
        let (fenced, told) = fenced_after(&member, &mut changes, 200, fenced);
        assert!(!fenced);
        assert_eq!(told, vec![vec![0, 1]]);
        // And nothing more while they keep answering.
        let (fenced, told) = fenced_after(&member, &mut changes, 200, fenced);
        assert!(!fenced);
        assert!(told.is_empty());
    }
}
