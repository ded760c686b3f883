//! `source-http`: reads the pages of a JSON HTTP API into Kafka through the host's `http`
//! capability.
//!
//! - Each page is fetched by a cursor (a `{cursor}` in the URL template, or a page link from a
//!   body field or a `Link` header); `items` points at the array of items; each item becomes
//!   one record (value: the item's JSON; key: the field `key` points at; topic: the field
//!   `topic_field` points at, else the connector's).
//! - A record's position is the cursor of its page and how many of the page's items have been
//!   emitted, so a restart fetches that page again and continues at the exact next item.
//! - When a page names no next page the source is caught up: it asks for the same page again
//!   after the connector's poll interval and emits only the items that are new.
//! - Connection errors, timeouts and 5xx are retried; 429 and 503 wait for the server's
//!   Retry-After; any other 4xx fails the task with the status and the start of the body.
//!
//! Layout: `config`, `page` (a response read into items and the next cursor, pure), this file
//! (the [`Source`] glue: cursor, positions, records).
#![forbid(unsafe_code)]

mod config;
mod page;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmconnect_sdk::{
    ConfigKey, Host, HttpRequest, Level, PluginError, Source, SourcePosition, SourceRecord,
    export_source, json_bytes,
};

pub use config::{Config, Next};
pub use page::{Page, next_link, read, url_for};

/// How many pages one `poll` may fetch (pages that add nothing, such as one fully emitted
/// before a restart, do not stop a poll).
const MAX_FETCHES_PER_POLL: usize = 4;

/// Where the source is: the page at `cursor`, of which `skip` items were emitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub cursor: String,
    pub skip: usize,
}

/// The source: one per task.
pub struct HttpSource {
    config: Config,
    partition: String,
    at: Position,
    /// The page at `at.cursor`, while it has items left to emit.
    page: Option<Page>,
}

impl Source for HttpSource {
    type Config = Config;

    fn config_spec() -> Option<Vec<ConfigKey>> {
        Some(config::spec())
    }

    fn open(
        config: Config,
        positions: Vec<SourcePosition>,
        host: &dyn Host,
    ) -> Result<Self, PluginError> {
        config.check().map_err(PluginError::Fatal)?;
        let partition = config
            .partition
            .clone()
            .unwrap_or_else(|| config.url.clone());
        let at = match positions.iter().find(|p| p.partition == partition) {
            Some(stored) => serde_json::from_str(&stored.position).map_err(|e| {
                PluginError::Fatal(format!(
                    "stored position {:?} of partition {partition:?} is not this plugin's ({e})",
                    stored.position
                ))
            })?,
            None => Position {
                cursor: config.initial_cursor.clone(),
                skip: 0,
            },
        };
        host.log(
            Level::Info,
            &format!(
                "reading {} from cursor {:?} (skipping {})",
                partition, at.cursor, at.skip
            ),
        );
        Ok(HttpSource {
            config,
            partition,
            at,
            page: None,
        })
    }

    fn poll(&mut self, max: u32, host: &dyn Host) -> Result<Vec<SourceRecord>, PluginError> {
        let max = max as usize;
        let mut records = Vec::new();
        let mut fetches = 0;
        while records.len() < max {
            if self.page.is_none() {
                if fetches == MAX_FETCHES_PER_POLL {
                    break;
                }
                fetches += 1;
                match self.fetch(host) {
                    Ok(page) => self.page = Some(page),
                    // What this poll already has is kept; the error comes back next poll.
                    Err(e) if !records.is_empty() => {
                        host.log(Level::Debug, &format!("deferred: {e}"));
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let page = self.page.as_ref().expect("fetched above");
            while self.at.skip < page.items.len() && records.len() < max {
                let item = &page.items[self.at.skip];
                self.at.skip += 1;
                records.push(self.record(item));
            }
            if self.at.skip < page.items.len() {
                break;
            }
            match page.next.clone() {
                Some(next) if next != self.at.cursor => {
                    self.at = Position {
                        cursor: next,
                        skip: 0,
                    };
                    self.page = None;
                }
                _ => {
                    // Caught up: the next poll asks for this page again.
                    self.page = None;
                    break;
                }
            }
        }
        Ok(records)
    }
}

impl HttpSource {
    fn fetch(&self, host: &dyn Host) -> Result<Page, PluginError> {
        let url = url_for(&self.config, &self.at.cursor);
        let mut request = HttpRequest::get(url.clone());
        request.headers = self
            .config
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !request
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            request
                .headers
                .push(("Accept".into(), "application/json".into()));
        }
        let response = host.http_send(&request).map_err(|e| {
            let message = format!("GET {url}: {e}");
            if e.is_transient() {
                PluginError::Retry(message)
            } else {
                PluginError::Fatal(message)
            }
        })?;
        read(&self.config, &url, &response)
    }

    /// The record of the item just emitted (`self.at` already counts it).
    fn record(&self, item: &Value) -> SourceRecord {
        let key = self
            .config
            .key
            .as_deref()
            .and_then(|pointer| item.pointer(pointer))
            .map(|k| match k {
                Value::String(s) => s.clone().into_bytes(),
                other => json_bytes(other),
            });
        let topic = self
            .config
            .topic_field
            .as_deref()
            .and_then(|pointer| item.pointer(pointer))
            .and_then(Value::as_str)
            .map(str::to_owned);
        SourceRecord {
            partition: self.partition.clone(),
            position: serde_json::to_string(&self.at).expect("positions serialize"),
            topic,
            key,
            value: Some(json_bytes(item)),
            ..Default::default()
        }
    }
}

export_source!(HttpSource);

#[cfg(test)]
mod tests {
    use wasmconnect_sdk::testing::FakeHost;
    use wasmconnect_sdk::{HttpError, HttpResponse};

    use super::*;

    fn config() -> Config {
        serde_json::from_value(serde_json::json!({
            "url": "http://api.test/items?after={cursor}",
            "initial_cursor": "0",
            "items": "/data",
            "next": {"field": "/next"},
            "key": "/id",
        }))
        .unwrap()
    }

    fn page(ids: &[u32], next: Option<&str>) -> Result<HttpResponse, HttpError> {
        let data: Vec<Value> = ids.iter().map(|id| serde_json::json!({"id": id})).collect();
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: serde_json::json!({"data": data, "next": next})
                .to_string()
                .into_bytes(),
        })
    }

    fn keys(records: &[SourceRecord]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn pages_are_followed_and_a_short_poll_keeps_the_rest_of_the_page() {
        let host = FakeHost::new();
        host.reply_http(page(&[1, 2, 3], Some("3")));
        host.reply_http(page(&[4], None));
        let mut source = HttpSource::open(config(), vec![], &host).unwrap();
        let first = source.poll(2, &host).unwrap();
        assert_eq!(keys(&first), ["1", "2"]);
        assert_eq!(first[1].position, r#"{"cursor":"0","skip":2}"#);
        let second = source.poll(10, &host).unwrap();
        assert_eq!(keys(&second), ["3", "4"]);
        assert_eq!(second[1].position, r#"{"cursor":"3","skip":1}"#);
        let urls: Vec<String> = host.http_requests().into_iter().map(|r| r.url).collect();
        assert_eq!(
            urls,
            [
                "http://api.test/items?after=0",
                "http://api.test/items?after=3"
            ]
        );
    }

    #[test]
    fn a_restart_continues_at_the_item_after_the_stored_position() {
        let host = FakeHost::new();
        host.reply_http(page(&[1, 2, 3], Some("3")));
        host.reply_http(page(&[4, 5], None));
        let stored = SourcePosition {
            partition: "http://api.test/items?after={cursor}".into(),
            position: r#"{"cursor":"0","skip":2}"#.into(),
        };
        let mut source = HttpSource::open(config(), vec![stored], &host).unwrap();
        assert_eq!(keys(&source.poll(10, &host).unwrap()), ["3", "4", "5"]);
    }

    #[test]
    fn an_item_field_can_name_the_topic() {
        let host = FakeHost::new();
        host.reply_http(Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"data": [{"id": 1, "kind": "clicks"}, {"id": 2}], "next": null}"#.to_vec(),
        }));
        let mut config = config();
        config.topic_field = Some("/kind".into());
        let mut source = HttpSource::open(config, vec![], &host).unwrap();
        let records = source.poll(10, &host).unwrap();
        assert_eq!(records[0].topic.as_deref(), Some("clicks"));
        assert_eq!(records[1].topic, None);
    }

    #[test]
    fn when_caught_up_the_same_page_is_asked_again_and_only_new_items_are_emitted() {
        let host = FakeHost::new();
        host.reply_http(page(&[1], None));
        host.reply_http(page(&[1], None));
        host.reply_http(page(&[1, 2], None));
        let mut source = HttpSource::open(config(), vec![], &host).unwrap();
        assert_eq!(keys(&source.poll(10, &host).unwrap()), ["1"]);
        assert!(source.poll(10, &host).unwrap().is_empty());
        assert_eq!(keys(&source.poll(10, &host).unwrap()), ["2"]);
    }

    #[test]
    fn a_failure_after_some_records_keeps_them_and_a_failure_before_any_is_returned() {
        let host = FakeHost::new();
        host.reply_http(page(&[1], Some("1")));
        host.reply_http(Err(HttpError::Unavailable("connection refused".into())));
        host.reply_http(Err(HttpError::Unavailable("connection refused".into())));
        let mut source = HttpSource::open(config(), vec![], &host).unwrap();
        assert_eq!(keys(&source.poll(10, &host).unwrap()), ["1"]);
        assert!(matches!(
            source.poll(10, &host),
            Err(PluginError::Retry(m)) if m.contains("after=1") && m.contains("connection refused")
        ));
    }

    #[test]
    fn an_ungranted_host_is_fatal_and_a_foreign_position_is_refused() {
        let host = FakeHost::new();
        host.reply_http(Err(HttpError::AccessDenied(
            "api.test is not granted".into(),
        )));
        let mut source = HttpSource::open(config(), vec![], &host).unwrap();
        assert!(
            matches!(source.poll(10, &host), Err(PluginError::Fatal(m)) if m.contains("not granted"))
        );
        let stored = SourcePosition {
            partition: "http://api.test/items?after={cursor}".into(),
            position: "17".into(),
        };
        assert!(matches!(
            HttpSource::open(config(), vec![stored], &host),
            Err(PluginError::Fatal(m)) if m.contains("not this plugin's")
        ));
    }
}
