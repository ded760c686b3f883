//! Whether the brokers let a client in. A TLS handshake that fails or a login the broker
//! refuses is not an outage: librdkafka would retry it forever and the task would sit RUNNING
//! doing nothing. Told apart here, in one place, from librdkafka's error code and reason, and
//! put in words an operator acts on (which setting to look at).

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::watch;

use super::tls_probe::{self, Trust};

/// Why the brokers refuse a client: retrying with the same settings fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The TLS handshake failed.
    #[error("TLS handshake with the broker failed: {hint} (librdkafka: {reason})")]
    Tls {
        hint: Cow<'static, str>,
        reason: String,
    },
    /// The broker refused the SASL login.
    #[error("the broker refused the SASL login: {hint} (librdkafka: {reason})")]
    Authentication { hint: &'static str, reason: String },
    /// Logged in, but not allowed to do what the task needs.
    #[error("the broker denied access: {hint} (librdkafka: {reason})")]
    Authorization { hint: &'static str, reason: String },
}

/// The refusal `code` and `reason` (librdkafka's error and its text) stand for, if any.
pub fn refusal(code: RDKafkaErrorCode, reason: &str) -> Option<Refusal> {
    let reason = reason.trim().to_owned();
    let says = |words: &[&str]| {
        let lower = reason.to_ascii_lowercase();
        words.iter().any(|w| lower.contains(w))
    };
    // The broker's TLS alert (a client certificate it wants or refuses) reaches librdkafka
    // after its side of the handshake is done: as a failed read, not as an SSL error.
    let tls_alert = code == RDKafkaErrorCode::BrokerTransportFailure
        && says(&["ssl routines", "ssl alert"])
        && says(&["alert"]);
    match code {
        RDKafkaErrorCode::SSL | RDKafkaErrorCode::BrokerTransportFailure
            if code == RDKafkaErrorCode::SSL || tls_alert =>
        {
            let hint = if says(&["hostname mismatch", "ip address mismatch"]) {
                "the broker's certificate is not for the host name or address in \
                 bootstrap_servers (hostname verification: ssl.endpoint.identification.algorithm)"
            } else if says(&["certificate verify failed", "unable to get local issuer"]) {
                "the broker's certificate is not trusted: it was not issued by a CA in \
                 ssl.ca.location / ssl.ca.pem (or the system's roots when neither is set), or \
                 it is not for the host name in bootstrap_servers"
            } else if says(&["certificate required"]) {
                "the broker requires a client certificate: set ssl.certificate.location and \
                 ssl.key.location (or ssl.certificate.pem and ssl.key.pem)"
            } else if says(&[
                "bad certificate",
                "unknown ca",
                "certificate unknown",
                "handshake failure",
            ]) {
                "the broker refused this client's certificate: check ssl.certificate.location / \
                 ssl.key.location (or their .pem forms) and that the broker trusts their CA"
            } else if says(&[
                "wrong version number",
                "packet length too long",
                "record layer",
            ]) {
                "the broker does not speak TLS on this port: check security.protocol and the \
                 port in bootstrap_servers"
            } else {
                "see librdkafka's reason"
            };
            Some(Refusal::Tls {
                hint: hint.into(),
                reason,
            })
        }
        RDKafkaErrorCode::Authentication
        | RDKafkaErrorCode::SaslAuthenticationFailed
        | RDKafkaErrorCode::UnsupportedSASLMechanism
        | RDKafkaErrorCode::IllegalSASLState => {
            let hint = if code == RDKafkaErrorCode::UnsupportedSASLMechanism
                || says(&["mechanism", "unsupported sasl"])
            {
                "the broker does not enable this sasl.mechanism"
            } else if says(&["ssl", "tls", "certificate"]) {
                "the TLS handshake failed (see librdkafka's reason)"
            } else {
                "wrong user name or password (sasl.username, sasl.password, or the credentials \
                 in sasl.oauthbearer.*)"
            };
            Some(Refusal::Authentication { hint, reason })
        }
        RDKafkaErrorCode::TopicAuthorizationFailed => Some(Refusal::Authorization {
            hint: "the user may not use one of the connector's topics",
            reason,
        }),
        RDKafkaErrorCode::GroupAuthorizationFailed => Some(Refusal::Authorization {
            hint: "the user may not use the connector's consumer group",
            reason,
        }),
        RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed => Some(Refusal::Authorization {
            hint: "the user lacks a cluster permission the client needs (idempotent write, \
                   creating topics)",
            reason,
        }),
        _ => None,
    }
}

/// What a task's Kafka clients learned of the brokers' refusals: the first one, kept for the
/// task to fail with. Cloned into every client context of the task.
#[derive(Debug, Clone)]
pub struct AccessWatch {
    first: Arc<watch::Sender<Option<Refusal>>>,
    /// Where the clients' trust in the brokers' certificates comes from: what a refused
    /// certificate is checked against to say why.
    trust: Arc<Mutex<Trust>>,
}

impl Default for AccessWatch {
    fn default() -> Self {
        AccessWatch {
            first: Arc::new(watch::channel(None).0),
            trust: Arc::new(Mutex::new(Trust::System)),
        }
    }
}

impl AccessWatch {
    /// Notes the trust (`ssl.ca.*`) of a client about to be created with `config`.
    pub fn trusting(&self, config: &ClientConfig) {
        let trust = Trust::of(config.get("ssl.ca.location"), config.get("ssl.ca.pem"));
        if let Ok(mut slot) = self.trust.lock() {
            *slot = trust;
        }
    }

    /// Notes `error` (with librdkafka's `reason`) if it is a refusal. Called from the clients'
    /// `ClientContext::error`, on librdkafka's threads; never blocks.
    pub fn observe(&self, error: &KafkaError, reason: &str) {
        let Some(refused) = error.rdkafka_error_code().and_then(|c| refusal(c, reason)) else {
            return;
        };
        self.first.send_if_modified(|first| match first {
            Some(_) => false,
            None => {
                *first = Some(refused);
                true
            }
        });
    }

    /// Resolves with the first refusal, once there is one. A certificate librdkafka could
    /// not verify is looked at again ([`tls_probe::diagnose`]) to say whether its issuer or
    /// its host name is wrong, and who issued it.
    pub async fn refused(&self) -> Refusal {
        let mut seen = self.first.subscribe();
        let first = match seen.wait_for(Option::is_some).await {
            Ok(refused) => refused.clone(),
            // The sender lives in `self`: it cannot be gone.
            Err(_) => None,
        };
        let Some(refused) = first else {
            return std::future::pending().await;
        };
        let Refusal::Tls { reason, .. } = &refused else {
            return refused;
        };
        let unverified = reason.contains("certificate verify failed");
        let trust = self
            .trust
            .lock()
            .map(|t| t.clone())
            .unwrap_or(Trust::System);
        match tls_probe::broker_address(reason) {
            Some(address) if unverified => match tls_probe::diagnose(address, &trust).await {
                Some(diagnosis) => Refusal::Tls {
                    hint: diagnosis.into(),
                    reason: reason.clone(),
                },
                None => refused,
            },
            _ => refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_password_names_the_credentials() {
        let refused = refusal(
            RDKafkaErrorCode::Authentication,
            "sasl_plaintext://127.0.0.1:1/bootstrap: SASL authentication error: SASL SCRAM \
             authentication failed: broker responded with invalid-proof",
        )
        .unwrap();
        let text = refused.to_string();
        assert!(text.contains("wrong user name or password"), "{text}");
        assert!(text.contains("invalid-proof"), "{text}");
    }

    #[test]
    fn an_untrusted_certificate_names_the_ca_settings() {
        let refused = refusal(
            RDKafkaErrorCode::SSL,
            "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL \
             routines::certificate verify failed",
        )
        .unwrap();
        assert!(refused.to_string().contains("ssl.ca.location"), "{refused}");
    }

    #[test]
    fn a_missing_client_certificate_is_told_from_a_dropped_connection() {
        let refused = refusal(
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A00045C:SSL routines::tlsv13 \
             alert certificate required: SSL alert number 116",
        )
        .unwrap();
        assert!(
            refused
                .to_string()
                .contains("requires a client certificate")
        );
        let dropped = refusal(
            RDKafkaErrorCode::BrokerTransportFailure,
            "ssl://127.0.0.1:1/bootstrap: Disconnected (after 5ms in state UP)",
        );
        assert_eq!(dropped, None);
    }

    #[test]
    fn outages_are_not_refusals() {
        for code in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::OperationTimedOut,
        ] {
            assert_eq!(refusal(code, "1/1 brokers are down"), None);
        }
    }

    #[tokio::test]
    async fn the_first_refusal_is_kept() {
        let watch = AccessWatch::default();
        watch.observe(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        watch.observe(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "invalid-proof",
        );
        watch.observe(
            &KafkaError::Global(RDKafkaErrorCode::SSL),
            "certificate verify failed",
        );
        assert!(matches!(
            watch.refused().await,
            Refusal::Authentication { .. }
        ));
    }
}
