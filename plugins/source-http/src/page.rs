//! One response, read: its items and the cursor of the next page, or what the host should do
//! instead. Pure, so every rule is tested natively.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use wasmconnect_sdk::{HttpResponse, PluginError, json_kind};

use crate::config::{Config, Next};

/// The items of a page and where the next page is (`None`: caught up).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// The URL that fetches the page at `cursor`. A link cursor is the URL itself (a relative one
/// is resolved against the template's origin); any other cursor fills `{cursor}`.
pub fn url_for(config: &Config, cursor: &str) -> String {
    if config.next.is_link() && !cursor.is_empty() {
        if cursor.starts_with("http://") || cursor.starts_with("https://") {
            return cursor.to_owned();
        }
        if cursor.starts_with('/') {
            return format!("{}{cursor}", origin(&config.url));
        }
    }
    let encoded = utf8_percent_encode(cursor, NON_ALPHANUMERIC).to_string();
    config.url.replace("{cursor}", &encoded)
}

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Reads a response of `GET url`. 2xx: the page. 429 and 503: retry, after the time the
/// server named in Retry-After if it did. Other 5xx: retry. Any other status: fatal, with
/// the status and the start of the body.
pub fn read(config: &Config, url: &str, response: &HttpResponse) -> Result<Page, PluginError> {
    if !(200..300).contains(&response.status) {
        return Err(response
            .transient_error(&format!("GET {url}"))
            .unwrap_or_else(|| {
                PluginError::Fatal(format!(
                    "GET {url}: HTTP {}: {}",
                    response.status,
                    response.body_excerpt()
                ))
            }));
    }
    let body: Value = serde_json::from_slice(&response.body).map_err(|e| {
        PluginError::Fatal(format!(
            "GET {url}: the response is not JSON ({e}): {}",
            response.body_excerpt()
        ))
    })?;
    let items = match body.pointer(&config.items) {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(PluginError::Fatal(format!(
                "GET {url}: items {:?} is {}, not an array",
                config.items,
                json_kind(other)
            )));
        }
        None => {
            return Err(PluginError::Fatal(format!(
                "GET {url}: the response has nothing at items {:?}",
                config.items
            )));
        }
    };
    let next = match &config.next {
        Next::Field(pointer) | Next::LinkField(pointer) => match body.pointer(pointer) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
        Next::Header(name) => response.header(name).map(str::to_owned),
        Next::LinkHeader => response.header("link").and_then(next_link),
    };
    Ok(Page {
        items,
        next: next.filter(|n| !n.is_empty()),
    })
}

/// The target of `rel="next"` in an RFC 8288 Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(next: Next) -> Config {
        Config {
            url: "http://api.test/v1/items?after={cursor}".into(),
            initial_cursor: String::new(),
            headers: Default::default(),
            items: "/data".into(),
            next,
            key: None,
            topic_field: None,
            partition: None,
        }
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn cursors_fill_the_template_encoded_and_links_are_fetched_as_they_are() {
        let c = config(Next::Field("/next".into()));
        assert_eq!(
            url_for(&c, "a b&c"),
            "http://api.test/v1/items?after=a%20b%26c"
        );
        let l = config(Next::LinkHeader);
        assert_eq!(url_for(&l, ""), "http://api.test/v1/items?after=");
        assert_eq!(url_for(&l, "https://other/x?p=2"), "https://other/x?p=2");
        assert_eq!(
            url_for(&l, "/v1/items?page=3"),
            "http://api.test/v1/items?page=3"
        );
    }

    #[test]
    fn a_page_yields_its_items_and_the_next_cursor_from_body_or_header() {
        let body = r#"{"data": [{"id": 1}, {"id": 2}], "next": 17}"#;
        let page = read(
            &config(Next::Field("/next".into())),
            "u",
            &response(200, &[], body),
        )
        .unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next.as_deref(), Some("17"));
        let page = read(
            &config(Next::Header("X-Next".into())),
            "u",
            &response(200, &[("x-next", "abc")], body),
        )
        .unwrap();
        assert_eq!(page.next.as_deref(), Some("abc"));
        let caught_up = r#"{"data": [], "next": null}"#;
        let page = read(
            &config(Next::Field("/next".into())),
            "u",
            &response(200, &[], caught_up),
        )
        .unwrap();
        assert_eq!(
            page,
            Page {
                items: vec![],
                next: None
            }
        );
    }

    #[test]
    fn link_headers_are_parsed_for_rel_next_only() {
        let h = r#"<http://a/p1>; rel="prev", <http://a/p3>; rel="next""#;
        assert_eq!(next_link(h).as_deref(), Some("http://a/p3"));
        assert_eq!(next_link(r#"<http://a/p1>; rel="prev""#), None);
        assert_eq!(
            next_link("<http://a/p2>;rel=next"),
            Some("http://a/p2".into())
        );
    }

    #[test]
    fn statuses_map_to_retry_retry_after_or_fatal() {
        let c = config(Next::Field("/next".into()));
        assert!(matches!(
            read(&c, "u", &response(500, &[], "boom")),
            Err(PluginError::Retry(m)) if m.contains("HTTP 500: boom")
        ));
        assert!(matches!(
            read(&c, "u", &response(429, &[("Retry-After", "2")], "")),
            Err(PluginError::RetryAfter { after_ms: 2000, .. })
        ));
        assert!(matches!(
            read(&c, "u", &response(429, &[], "")),
            Err(PluginError::Retry(_))
        ));
        let long = "x".repeat(500);
        match read(&c, "u", &response(404, &[], &long)) {
            Err(PluginError::Fatal(m)) => {
                assert!(m.starts_with("GET u: HTTP 404: xxx"), "{m}");
                assert!(m.ends_with("..."), "{m}");
                assert!(m.len() < 300, "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_body_without_the_items_array_is_fatal_and_says_what_it_found() {
        let c = config(Next::Field("/next".into()));
        match read(&c, "u", &response(200, &[], r#"{"data": {"id": 1}}"#)) {
            Err(PluginError::Fatal(m)) => assert!(m.contains("an object, not an array"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read(&c, "u", &response(200, &[], "<html>")),
            Err(PluginError::Fatal(m)) if m.contains("not JSON")
        ));
    }
}
