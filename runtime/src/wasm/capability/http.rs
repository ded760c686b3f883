//! `wasmconnect:plugin/http`: HTTP requests to the hosts granted to a connector, on reqwest.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::Policy;
use wasmtime::component::{HasData, Linker};

use crate::config::{HttpGrant, HttpTls, Limits};
use crate::http_client::{HttpTlsError, error_chain, with_tls};
use crate::tls_failure;
use crate::wasm::bindings::wasmconnect::plugin::http as wit;

/// What a connector's HTTP TLS settings are called, for failures that name them.
const HTTP_TLS_SETTINGS: tls_failure::Settings = tls_failure::Settings {
    ca: "grants.http_tls.ca (or the system's roots)",
    client: "grants.http_tls.certificate and key",
    host: "the host in the request's URL",
};

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// One connector's HTTP client: its grants, timeout and response cap. Proxies from the
/// environment are ignored, so a request goes straight to the granted host.
#[derive(Debug)]
pub struct HttpGrants {
    connector: String,
    grants: Arc<Vec<HttpGrant>>,
    /// `None` when nothing is granted: every request is denied before it needs a client, and
    /// a client (its TLS roots, ~80 KiB) is not kept for nothing.
    client: Option<reqwest::Client>,
    timeout: Duration,
    max_response_bytes: u64,
}

/// A redirect that left the granted hosts.
#[derive(Debug, thiserror::Error)]
#[error("redirect to {0}, which is not granted")]
struct RedirectDenied(String);

impl HttpGrants {
    /// Nothing granted: every request is denied, and no client is built, so this cannot fail.
    pub fn nothing(connector: &str, limits: &Limits) -> Self {
        HttpGrants {
            connector: connector.to_owned(),
            grants: Arc::new(Vec::new()),
            client: None,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: limits.http_max_response_bytes,
        }
    }

    /// Builds the client of a connector (none if nothing is granted), trusting and presenting
    /// what `tls` says. `grants` were checked by config validation; an entry that does not
    /// parse grants nothing.
    pub fn new(
        connector: &str,
        grants: &[String],
        tls: Option<&HttpTls>,
        limits: &Limits,
    ) -> Result<Self, HttpTlsError> {
        let grants: Arc<Vec<HttpGrant>> = Arc::new(
            grants
                .iter()
                .filter_map(|g| HttpGrant::parse(g).ok())
                .collect(),
        );
        if grants.is_empty() {
            return Ok(HttpGrants::nothing(connector, limits));
        }
        let for_redirects = grants.clone();
        let builder = match tls {
            Some(tls) => with_tls(reqwest::Client::builder(), tls, "grants.http_tls")?,
            None => reqwest::Client::builder(),
        };
        let client = builder
            .no_proxy()
            .redirect(Policy::custom(move |attempt| {
                if !for_redirects.iter().any(|g| g.allows(attempt.url())) {
                    let url = attempt.url().to_string();
                    attempt.error(RedirectDenied(url))
                } else if attempt.previous().len() > MAX_REDIRECTS {
                    attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|e| HttpTlsError::Client {
                at: "grants.http_tls".into(),
                message: error_chain(&e),
            })?;
        Ok(HttpGrants {
            connector: connector.to_owned(),
            grants,
            client: Some(client),
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: limits.http_max_response_bytes,
        })
    }

    fn denied(&self, url: &str) -> wit::HttpError {
        let granted: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
        tracing::warn!(url, "plugin asked for a host it was not granted");
        wit::HttpError::AccessDenied(format!(
            "{url} is not on a host granted to connector {:?} (grants.http: {granted:?})",
            self.connector
        ))
    }

    async fn send(&self, request: wit::Request) -> Result<wit::Response, wit::HttpError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| wit::HttpError::InvalidRequest(format!("url {:?}: {e}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(wit::HttpError::InvalidRequest(format!(
                "url {:?} is not http or https",
                request.url
            )));
        }
        let client = match &self.client {
            Some(client) if self.grants.iter().any(|g| g.allows(&url)) => client,
            _ => return Err(self.denied(url.as_str())),
        };
        let timeout = request.timeout_ms.map_or(self.timeout, |ms| {
            self.timeout.min(Duration::from_millis(ms.into()))
        });
        let method = match request.method {
            wit::Method::Get => reqwest::Method::GET,
            wit::Method::Head => reqwest::Method::HEAD,
            wit::Method::Post => reqwest::Method::POST,
            wit::Method::Put => reqwest::Method::PUT,
            wit::Method::Patch => reqwest::Method::PATCH,
            wit::Method::Delete => reqwest::Method::DELETE,
        };
        if let Some(host) = foreign_host(&url, &request.headers) {
            tracing::warn!(url = %url, host, "plugin sent a Host header for another host");
            return Err(wit::HttpError::AccessDenied(format!(
                "the Host header {host:?} names another host than {url}: a plugin reaches only \
                 the virtual hosts it was granted"
            )));
        }
        let mut builder = client.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| self.classify(e, timeout))?;
        let too_large = || {
            wit::HttpError::TooLarge(format!(
                "the response body is larger than limits.http_max_response_bytes ({} bytes)",
                self.max_response_bytes
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_response_bytes)
        {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.classify(e, timeout))?
        {
            if (body.len() + chunk.len()) as u64 > self.max_response_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(wit::Response {
            status,
            headers,
            body,
        })
    }

    fn classify(&self, e: reqwest::Error, timeout: Duration) -> wit::HttpError {
        let mut source = e.source();
        while let Some(cause) = source {
            if let Some(RedirectDenied(url)) = cause.downcast_ref::<RedirectDenied>() {
                return self.denied(url);
            }
            source = cause.source();
        }
        if let Some(tls) = tls_failure::rustls_error(&e) {
            return wit::HttpError::AccessDenied(tls_failure::describe(tls, &HTTP_TLS_SETTINGS));
        }
        let message = error_chain(&e);
        if e.is_timeout() {
            wit::HttpError::Timeout(format!(
                "no complete response within {} ms: {message}",
                timeout.as_millis()
            ))
        } else if e.is_builder() {
            wit::HttpError::InvalidRequest(message)
        } else {
            wit::HttpError::Unavailable(message)
        }
    }
}

/// The value of a `Host` header in `headers` that does not name `url`'s host (and port,
/// when the URL gives one other than its scheme's default), if any: a request to a granted
/// address must not reach another virtual host there.
fn foreign_host<'a>(url: &url::Url, headers: &'a [(String, String)]) -> Option<&'a str> {
    let host = url.host_str()?;
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let with_default_port = url
        .port_or_known_default()
        .map(|port| format!("{host}:{port}"));
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim())
        .find(|value| {
            !value.eq_ignore_ascii_case(&authority)
                && !with_default_port
                    .as_deref()
                    .is_some_and(|d| value.eq_ignore_ascii_case(d))
        })
}

/// What the http capability sees of a task.
pub struct HttpView<'a> {
    pub grants: &'a HttpGrants,
}

struct Http;

impl HasData for Http {
    type Data<'a> = HttpView<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> HttpView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Http>(linker, get)
}

impl wit::Host for HttpView<'_> {
    async fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::HttpError> {
        self.grants.send(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::foreign_host;

    fn headers(host: &str) -> Vec<(String, String)> {
        vec![("Host".to_owned(), host.to_owned())]
    }

    #[test]
    fn a_host_header_may_only_name_the_urls_host() {
        let url = url::Url::parse("https://api.example.com/in").unwrap();
        assert_eq!(foreign_host(&url, &headers("api.example.com")), None);
        assert_eq!(foreign_host(&url, &headers("API.example.com:443")), None);
        assert_eq!(
            foreign_host(&url, &headers("admin.example.com")),
            Some("admin.example.com")
        );
        let port = url::Url::parse("http://10.0.0.1:8080/").unwrap();
        assert_eq!(foreign_host(&port, &headers("10.0.0.1:8080")), None);
        assert_eq!(foreign_host(&port, &headers("10.0.0.1")), Some("10.0.0.1"));
        assert_eq!(foreign_host(&port, &[]), None);
    }
}
