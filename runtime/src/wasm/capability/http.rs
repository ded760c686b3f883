//! `wasmconnect:plugin/http`: HTTP requests to the hosts granted to a connector, on reqwest.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::redirect::Policy;
use wasmtime::component::{HasData, Linker};

use crate::config::HttpGrant;
use crate::config::Limits;
use crate::wasm::bindings::wasmconnect::plugin::http as wit;

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

    /// Builds the client of a connector (none if nothing is granted). `grants` were checked
    /// by config validation; an entry that does not parse grants nothing.
    pub fn new(
        connector: &str,
        grants: &[String],
        limits: &Limits,
    ) -> Result<Self, reqwest::Error> {
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
        let client = reqwest::Client::builder()
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
            .build()?;
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

fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
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
