//! What a web page the operator happens to visit cannot make the API do. A browser sends some
//! cross-site requests without asking anyone: a form posts `application/x-www-form-urlencoded`,
//! `multipart/form-data` or `text/plain` to any address, loopback included; a script's
//! `fetch` may send a body-less `POST`; a DNS-rebinding page reaches the API under a host name
//! of its own, which makes the browser treat the API as that page's own site. So:
//!
//! - a call that changes the worker (POST, PUT, PATCH, DELETE) and carries a body, or declares
//!   a type, must declare `application/json` (415 otherwise); one with neither may leave the
//!   type out, as `curl -X PUT .../pause` and Kafka Connect's tooling do;
//! - a request with an `Origin` other than the API's own (the scheme and `Host` it was sent
//!   to) is refused (403), whatever its method: browsers send `Origin` on every cross-site
//!   `fetch` and on every form post;
//! - a request whose `Host` is neither an IP address, `localhost`, nor a name in
//!   `admin.hosts` is refused (403), so a rebinding page can neither read nor change.
//!
//! Clients other than browsers (curl, Kafka Connect's clients, scripts) send no `Origin` and
//! address the API by the name the operator gave it, so they pass.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error_response;

/// The host names the API answers to besides IP addresses and `localhost` (`admin.hosts`),
/// lowercased.
#[derive(Debug, Clone, Default)]
pub(super) struct Hosts(Arc<[String]>);

impl Hosts {
    pub fn new(names: &[String]) -> Self {
        Hosts(names.iter().map(|n| n.to_ascii_lowercase()).collect())
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host.parse::<IpAddr>().is_ok() || host == "localhost" || self.0.contains(&host)
    }
}

/// Refuses what a browser could have sent on a web page's behalf (see the module docs).
pub(super) async fn refuse_browser_requests(
    State(hosts): State<Hosts>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    match refusal(&hosts, request.method(), request.headers()) {
        Some((code, message)) => error_response(code, &message),
        None => next.run(request).await,
    }
}

/// Why a request is refused, if it is.
fn refusal(hosts: &Hosts, method: &Method, headers: &HeaderMap) -> Option<(StatusCode, String)> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(HOST);
    if let Some(host) = host
        && !hosts.allows(host_name(host))
    {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a name this API answers to: use its IP address or \
                 localhost, or add the name to admin.hosts"
            ),
        ));
    }
    if let Some(origin) = text(ORIGIN)
        && !host.is_some_and(|host| same_origin(origin, host))
    {
        return Some((
            StatusCode::FORBIDDEN,
            format!("requests from web pages of other sites are refused (Origin {origin:?})"),
        ));
    }
    let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let declared = text(CONTENT_TYPE);
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || text(CONTENT_LENGTH).is_some_and(|length| length.trim() != "0");
    if mutating && (declared.is_some() || has_body) && !declared.is_some_and(is_json) {
        return Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a call that changes the worker takes a body of Content-Type: application/json \
                 (got {})",
                declared.map_or("none".to_owned(), |t| format!("{t:?}"))
            ),
        ));
    }
    None
}

/// The name in a `Host` header: without its port, IPv6 brackets removed.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the `host` (`Host` header) the request was
/// sent to. `null` (a sandboxed or file page) never does.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host.trim()))
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn code(method: Method, pairs: &[(&'static str, &str)]) -> Option<u16> {
        let hosts = Hosts::new(&["Connect.Internal".to_owned()]);
        refusal(&hosts, &method, &headers(pairs)).map(|(code, _)| code.as_u16())
    }

    #[test]
    fn clients_that_are_not_browsers_pass() {
        let host = ("host", "127.0.0.1:8083");
        assert_eq!(code(Method::GET, &[host]), None);
        // curl -X PUT .../pause: no body, no type.
        assert_eq!(code(Method::PUT, &[host]), None);
        assert_eq!(code(Method::PUT, &[host, ("content-length", "0")]), None);
        let json = ("content-type", "application/json; charset=utf-8");
        assert_eq!(
            code(Method::POST, &[host, json, ("content-length", "12")]),
            None
        );
        assert_eq!(code(Method::GET, &[("host", "localhost:8083")]), None);
        assert_eq!(code(Method::GET, &[("host", "[::1]:8083")]), None);
        assert_eq!(
            code(Method::GET, &[("host", "connect.internal:8083")]),
            None
        );
        assert_eq!(code(Method::GET, &[("host", "10.1.2.3")]), None);
        // The page the API itself would serve.
        assert_eq!(
            code(Method::DELETE, &[host, ("origin", "http://127.0.0.1:8083")]),
            None
        );
    }

    #[test]
    fn what_a_web_page_can_send_is_refused() {
        let host = ("host", "127.0.0.1:8083");
        for form in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
        ] {
            assert_eq!(
                code(Method::POST, &[host, ("content-type", form)]),
                Some(415),
                "{form}"
            );
        }
        // A body without a declared type.
        assert_eq!(
            code(Method::PUT, &[host, ("content-length", "2")]),
            Some(415)
        );
        assert_eq!(
            code(Method::POST, &[host, ("transfer-encoding", "chunked")]),
            Some(415)
        );
        // A script of another site, even without a body, and even reading.
        assert_eq!(
            code(Method::PUT, &[host, ("origin", "https://evil.example")]),
            Some(403)
        );
        assert_eq!(
            code(Method::GET, &[host, ("origin", "http://127.0.0.1:9999")]),
            Some(403)
        );
        assert_eq!(code(Method::POST, &[host, ("origin", "null")]), Some(403));
        // DNS rebinding: the page's own name pointing at loopback.
        assert_eq!(
            code(Method::GET, &[("host", "rebind.evil.example:8083")]),
            Some(403)
        );
        assert_eq!(
            code(Method::GET, &[("host", "localhost.evil.example")]),
            Some(403)
        );
    }
}
