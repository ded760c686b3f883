//! `sink-http`: sends batches of records to an HTTP endpoint through the host's `http`
//! capability.
//!
//! - One request per run of records of the same topic and partition, in order; the body is a
//!   JSON array of the values or NDJSON (`format`).
//! - Connection errors, timeouts and 5xx ask the host to retry the batch; 429 and 503 pass on
//!   the server's Retry-After. Another 4xx means the server refuses the records: by default the
//!   request is halved until exactly the refused records are found (`on_client_error:
//!   bisect`); they are rejected (and dead-lettered by the host's policy), the others are
//!   delivered. `reject` rejects every record of the refused request instead.
//! - `idempotency_header` names a header carrying `topic/partition/first-last` offsets: the
//!   same on every retry of the same records, so a receiver can drop duplicates.
//!
//! Layout: `config`, `body` (records -> request bodies, pure), this file (the [`Sink`] glue).
#![forbid(unsafe_code)]

mod body;
mod config;

use wasmconnect_sdk::{
    ConfigKey, Host, HttpRequest, Level, PluginError, Record, RecordView, Rejected, Sink,
    export_sink,
};

pub use body::{Body, encode, runs};
pub use config::{Config, Format, Method, OnClientError};

/// The sink: one per task.
pub struct HttpSink {
    config: Config,
}

impl Sink for HttpSink {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(config::spec())
    }

    fn open(config: Config, host: &dyn Host) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        host.log(
            Level::Info,
            &format!(
                "sending {:?} batches to {} ({:?} on client errors)",
                config.format, config.url, config.on_client_error
            ),
        );
        Ok(HttpSink { config })
    }

    fn write(&mut self, records: Vec<Record>, host: &dyn Host) -> Result<(), PluginError> {
        self.write_views(&records.iter().map(Record::view).collect::<Vec<_>>(), host)
    }

    /// Reads the records where the host put them: a value goes into its request body with
    /// one copy, made there.
    fn write_views(
        &mut self,
        records: &[RecordView<'_>],
        host: &dyn Host,
    ) -> Result<(), PluginError> {
        let mut rejected = Vec::new();
        for run in runs(records) {
            self.send(&records[run.clone()], run.start, host, &mut rejected)?;
        }
        PluginError::reject_if_any(rejected)
    }
}

impl HttpSink {
    /// Sends `records` (batch indices from `first`, one topic and partition) in one request,
    /// adding the records that are refused to `rejected`.
    fn send(
        &self,
        records: &[RecordView<'_>],
        first: usize,
        host: &dyn Host,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), PluginError> {
        let Body {
            bytes,
            sent,
            unusable,
        } = encode(self.config.format, records);
        if !sent.is_empty() {
            let request = self.request(records, bytes);
            let what = format!("{} {}", self.config.method.as_str(), request.url);
            let response = host.http_send(&request).map_err(|e| {
                let message = format!("{what}: {e}");
                if e.is_transient() {
                    PluginError::Retry(message)
                } else {
                    PluginError::Fatal(message)
                }
            })?;
            if !(200..300).contains(&response.status) {
                if let Some(transient) = response.transient_error(&what) {
                    return Err(transient);
                }
                if !(400..500).contains(&response.status) {
                    return Err(PluginError::Fatal(format!(
                        "{what}: unexpected HTTP {}: {}",
                        response.status,
                        response.body_excerpt()
                    )));
                }
                let reason = format!(
                    "the server refused it: HTTP {}: {}",
                    response.status,
                    response.body_excerpt()
                );
                match self.config.on_client_error {
                    OnClientError::Bisect if sent.len() > 1 => {
                        let middle = records.len() / 2;
                        self.send(&records[..middle], first, host, rejected)?;
                        return self.send(&records[middle..], first + middle, host, rejected);
                    }
                    OnClientError::Bisect | OnClientError::Reject => {
                        rejected.extend(sent.iter().map(|&i| Rejected {
                            index: (first + i) as u32,
                            reason: reason.clone(),
                        }));
                    }
                }
            }
        }
        rejected.extend(unusable.into_iter().map(|(i, reason)| Rejected {
            index: (first + i) as u32,
            reason,
        }));
        Ok(())
    }

    fn request(&self, records: &[RecordView<'_>], body: Vec<u8>) -> HttpRequest {
        let (head, last) = (&records[0], &records[records.len() - 1]);
        let url = self
            .config
            .url
            .replace("{topic}", head.topic)
            .replace("{partition}", &head.partition.to_string());
        let mut request = HttpRequest::get(url);
        request.method = match self.config.method {
            config::Method::Post => wasmconnect_sdk::Method::Post,
            config::Method::Put => wasmconnect_sdk::Method::Put,
        };
        request.headers = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !request
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            let content_type = match self.config.format {
                Format::JsonArray => "application/json",
                Format::Ndjson => "application/x-ndjson",
            };
            request
                .headers
                .push(("Content-Type".into(), content_type.into()));
        }
        if let Some(name) = &self.config.idempotency_header {
            request.headers.push((
                name.clone(),
                format!(
                    "{}/{}/{}-{}",
                    head.topic, head.partition, head.offset, last.offset
                ),
            ));
        }
        request.body = Some(body);
        request
    }
}

/// What Kafka Connect users know this sink as: the common HTTP sink keys onto ours.
pub const KAFKA_CONNECT: &str = r#"{"classes": {
  "io.confluent.connect.http.HttpSinkConnector": {
    "keys": {
      "http.api.url": "url",
      "request.method": "method",
      "headers": {"key": "headers", "entries": {"separator": "|", "assign": ":"}},
      "batch.max.size": {"runtime": "batch.max_records"}
    },
    "settings": [
      {"key": "header.separator", "accepted": ["|"], "because": "headers are written NAME:VALUE|NAME:VALUE"},
      {"key": "request.body.format", "accepted": ["json"], "because": "bodies are JSON (format: json_array or ndjson)"},
      {"key": "batch.json.as.array", "accepted": ["true"], "because": "a batch goes as one JSON array (or as ndjson, sink-http's format key)"}
    ]
  }
}}"#;
wasmconnect_sdk::kafka_connect!(KAFKA_CONNECT);

export_sink!(HttpSink);

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::FakeHost;
    use wasmconnect_sdk::{HttpError, HttpResponse};

    use super::*;

    fn sink(extra: serde_json::Value) -> HttpSink {
        let mut config = serde_json::json!({"url": "http://api.test/in/{topic}/{partition}"});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        HttpSink::open(serde_json::from_value(config).unwrap(), &FakeHost::new()).unwrap()
    }

    fn record(partition: i32, offset: i64, value: &str) -> Record {
        Record {
            topic: "orders".into(),
            partition,
            offset,
            value: Some(value.as_bytes().to_vec()),
            ..Record::default()
        }
    }

    fn status(code: u16) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status: code,
            headers: vec![],
            body: b"nope".to_vec(),
        })
    }

    #[test]
    fn one_request_per_partition_run_with_the_idempotency_key_and_content_type() {
        let host = FakeHost::new();
        let mut sink = sink(serde_json::json!({"idempotency_header": "Idempotency-Key"}));
        let batch = vec![record(0, 7, "1"), record(0, 8, "2"), record(1, 3, "3")];
        sink.write(batch, &host).unwrap();
        let requests = host.http_requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].url, "http://api.test/in/orders/0");
        assert_eq!(requests[0].body.as_deref(), Some(&b"[1,2]"[..]));
        assert!(
            requests[0]
                .headers
                .contains(&("Idempotency-Key".into(), "orders/0/7-8".into()))
        );
        assert!(
            requests[0]
                .headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert_eq!(requests[1].url, "http://api.test/in/orders/1");
    }

    #[test]
    fn a_refused_request_is_halved_until_the_refused_record_is_found() {
        let host = FakeHost::new();
        let mut sink = sink(serde_json::json!({}));
        // [0 1 2 3] 400 -> [0 1] ok, [2 3] 400 -> [2] ok, [3] 400.
        for reply in [400, 200, 400, 200, 400] {
            host.reply_http(status(reply));
        }
        let batch = (0..4).map(|i| record(0, i, "{}")).collect();
        let Err(PluginError::Reject(rejected)) = sink.write(batch, &host) else {
            panic!("expected a reject")
        };
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].index, 3);
        assert!(rejected[0].reason.contains("HTTP 400: nope"));
    }

    #[test]
    fn reject_mode_rejects_the_whole_request_and_bad_json_is_rejected_before_sending() {
        let host = FakeHost::new();
        let mut sink = sink(serde_json::json!({"on_client_error": "reject"}));
        host.reply_http(status(422));
        let batch = vec![
            record(0, 0, "{}"),
            record(0, 1, "not json"),
            record(0, 2, "{}"),
        ];
        let Err(PluginError::Reject(rejected)) = sink.write(batch, &host) else {
            panic!("expected a reject")
        };
        let indices: Vec<u32> = rejected.iter().map(|r| r.index).collect();
        assert_eq!(indices, [0, 1, 2]);
        assert!(rejected[1].reason.contains("not valid JSON"));
        assert_eq!(
            host.http_requests()[0].body.as_deref(),
            Some(&b"[{},{}]"[..])
        );
    }

    #[test]
    fn server_errors_and_timeouts_retry_and_429_passes_retry_after_on() {
        let host = FakeHost::new();
        let mut sink = sink(serde_json::json!({}));
        host.reply_http(status(502));
        assert!(matches!(
            sink.write(vec![record(0, 0, "{}")], &host),
            Err(PluginError::Retry(m)) if m == "POST http://api.test/in/orders/0: HTTP 502: nope"
        ));
        host.reply_http(Err(HttpError::Timeout("after 10000 ms".into())));
        assert!(matches!(
            sink.write(vec![record(0, 0, "{}")], &host),
            Err(PluginError::Retry(_))
        ));
        host.reply_http(Ok(HttpResponse {
            status: 429,
            headers: vec![("Retry-After".into(), "2".into())],
            body: vec![],
        }));
        assert!(matches!(
            sink.write(vec![record(0, 0, "{}")], &host),
            Err(PluginError::RetryAfter { after_ms: 2000, .. })
        ));
    }
}
