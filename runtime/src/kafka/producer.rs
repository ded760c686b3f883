//! The producer a source task writes with: idempotent, `acks=all`, every delivery report
//! handed to the task.

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header as KafkaHeader, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::mpsc;

use super::AccessWatch;
use crate::config::{ConnectorConfig, KafkaConfig};
use crate::connector::Header;

/// What a produced message was, carried through librdkafka to its delivery report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A record of the source, by the sequence number its position tracker gave it.
    Record(u64),
    /// A position written to the offsets topic, by the number of the flush it belongs to.
    Position(u64),
}

impl Delivery {
    /// The delivery as the one word librdkafka carries through to its report, without an
    /// allocation per message: the number shifted left, the low bit telling a position from a
    /// record. Numbers count messages from 0, so they never reach 2^63.
    pub fn tag(self) -> usize {
        let (number, kind) = match self {
            Delivery::Record(seq) => (seq, 0),
            Delivery::Position(id) => (id, 1),
        };
        debug_assert!(number < 1 << 63, "delivery numbers stay below 2^63");
        ((number << 1) | kind) as usize
    }

    /// The delivery [`Delivery::tag`] made `tag` of.
    pub fn of_tag(tag: usize) -> Delivery {
        let number = tag as u64 >> 1;
        if tag & 1 == 0 {
            Delivery::Record(number)
        } else {
            Delivery::Position(number)
        }
    }
}

/// A delivery report: what was produced, and `Err` with the reason (naming the topic) when
/// Kafka did not take it.
pub type Report = (Delivery, Result<(), String>);

/// An idempotent producer whose delivery reports go to the source task's channel.
pub type SourceProducer = ThreadedProducer<SourceContext>;

/// Hands every delivery report to the task, and TLS and login refusals to its
/// [`AccessWatch`].
pub struct SourceContext {
    reports: mpsc::UnboundedSender<Report>,
    access: AccessWatch,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!("librdkafka: {error}: {reason}");
        self.access.observe(&error, reason);
    }
}

impl ProducerContext for SourceContext {
    /// A [`Delivery::tag`].
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, message)) => Err(format!(
                "Kafka did not take the record for topic {}: {e}",
                message.topic()
            )),
        };
        // The task is gone: it no longer cares.
        let _ = self.reports.send((Delivery::of_tag(tag), outcome));
    }
}

/// Builds the producer of task `task` of a source connector (see [`idempotent_config`]; the
/// client id names the task unless the connector's properties set one). Its own queue is
/// sized above the task's in-flight bound so that a send is never refused for lack of room.
/// Returns the receiver of delivery reports.
pub fn source_producer(
    kafka: &KafkaConfig,
    connector: &ConnectorConfig,
    task: u32,
    access: AccessWatch,
) -> KafkaResult<(SourceProducer, mpsc::UnboundedReceiver<Report>)> {
    let mut config = idempotent_config(kafka, connector);
    if config.get("client.id") == Some(format!("wasmconnect-{}", connector.name).as_str()) {
        config.set(
            "client.id",
            format!("wasmconnect-{}-{task}", connector.name),
        );
    }
    let queue_messages = (connector.in_flight.max_records + 100_000).min(10_000_000);
    let queue_kbytes = (connector.in_flight.max_bytes / 1024 + 64 * 1024).min(2_097_151);
    config
        .set("queue.buffering.max.messages", queue_messages.to_string())
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string());
    access.trusting(&config);
    let (tx, rx) = mpsc::unbounded_channel();
    let producer = config.create_with_context(SourceContext {
        reports: tx,
        access,
    })?;
    Ok((producer, rx))
}

/// Producer settings of a connector: `kafka.properties`, `kafka.producer`, the connector's
/// `producer` properties, then what delivery depends on (idempotence, `acks=all`).
pub(super) fn idempotent_config(kafka: &KafkaConfig, connector: &ConnectorConfig) -> ClientConfig {
    let mut config = super::client_defaults();
    config
        .set("client.id", format!("wasmconnect-{}", connector.name))
        .set("linger.ms", "5");
    for (key, value) in kafka
        .properties
        .iter()
        .chain(&kafka.producer)
        .chain(&connector.producer)
    {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("enable.idempotence", "true")
        .set("acks", "all");
    super::trust_system_roots(&mut config);
    config
}

/// A record's headers as librdkafka takes them, with room for `more` headers after them.
pub fn kafka_headers(headers: &[Header], more: usize) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len() + more);
    for h in headers {
        owned = owned.insert(KafkaHeader {
            key: &h.key,
            value: h.value.as_deref(),
        });
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::Delivery;

    #[test]
    fn a_delivery_comes_back_from_its_tag_as_it_went() {
        for delivery in [
            Delivery::Record(0),
            Delivery::Position(0),
            Delivery::Record(1),
            Delivery::Position(41),
            Delivery::Record((1 << 63) - 1),
            Delivery::Position((1 << 63) - 1),
        ] {
            assert_eq!(Delivery::of_tag(delivery.tag()), delivery);
        }
        assert_ne!(Delivery::Record(5).tag(), Delivery::Position(5).tag());
    }
}
