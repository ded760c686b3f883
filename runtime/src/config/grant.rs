//! HTTP host grants: which URLs a connector's plugin may reach.

use std::fmt;

use url::Url;

/// One entry of `grants.http`: `host`, `host:port`, `scheme://host` or `scheme://host:port`.
///
/// Without a port, a grant allows the default port of its scheme (both 80 and 443 when no
/// scheme is given); without a scheme, both `http` and `https`. Hosts compare
/// case-insensitively; nothing else (no wildcard, no path) is part of a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    scheme: Option<&'static str>,
    host: String,
    port: Option<u16>,
}

impl HttpGrant {
    /// Parses a grant; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Some("http"), rest),
            Some(("https", rest)) => (Some("https"), rest),
            Some((other, _)) => return Err(format!("scheme {other:?} is not http or https")),
            None => (None, text),
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', '*', ' ']) {
            return Err(format!(
                "{text:?} is not a host grant: write host, host:port or scheme://host[:port]"
            ));
        }
        let probe = Url::parse(&format!("{}://{rest}", scheme.unwrap_or("http")))
            .map_err(|e| format!("{text:?} is not a host grant: {e}"))?;
        let host = probe
            .host_str()
            .ok_or_else(|| format!("{text:?} names no host"))?
            .to_ascii_lowercase();
        let port = match rest.rsplit_once(':') {
            Some((_, port)) if !rest.ends_with(']') => {
                Some(port.parse::<u16>().map_err(|_| {
                    format!("{text:?}: port {port:?} is not a number from 0 to 65535")
                })?)
            }
            _ => None,
        };
        Ok(HttpGrant { scheme, host, port })
    }

    /// Whether `url` is on this granted host.
    pub fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        if !host.eq_ignore_ascii_case(&self.host) {
            return false;
        }
        if let Some(scheme) = self.scheme
            && url.scheme() != scheme
        {
            return false;
        }
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        match self.port {
            Some(granted) => port == granted,
            None => match self.scheme {
                Some("https") => port == 443,
                Some(_) => port == 80,
                None => port == 80 || port == 443,
            },
        }
    }
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = self.scheme {
            write!(f, "{scheme}://")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(grant: &str, url: &str) -> bool {
        HttpGrant::parse(grant)
            .unwrap()
            .allows(&Url::parse(url).unwrap())
    }

    #[test]
    fn a_bare_host_allows_its_default_ports_on_both_schemes() {
        assert!(allows("api.example.com", "https://api.example.com/v1?x=1"));
        assert!(allows("api.example.com", "http://API.example.com/"));
        assert!(!allows("api.example.com", "http://api.example.com:8080/"));
        assert!(!allows("api.example.com", "https://evil.example.com/"));
        assert!(!allows(
            "api.example.com",
            "https://api.example.com.evil.net/"
        ));
    }

    #[test]
    fn a_port_or_scheme_narrows_the_grant() {
        assert!(allows("127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(!allows("127.0.0.1:8080", "http://127.0.0.1:8081/x"));
        assert!(allows(
            "https://api.example.com",
            "https://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(!allows(
            "https://api.example.com",
            "https://api.example.com:8443/"
        ));
        assert!(allows(
            "https://api.example.com:8443",
            "https://api.example.com:8443/"
        ));
    }

    #[test]
    fn malformed_grants_are_refused_with_a_reason() {
        for bad in [
            "",
            "ftp://host",
            "host/path",
            "*.example.com",
            "host:99999",
            "user@host",
        ] {
            assert!(HttpGrant::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            HttpGrant::parse("HTTPS://Api.Example.com:8443").map(|g| g.to_string()),
            Err("scheme \"HTTPS\" is not http or https".into())
        );
        assert_eq!(
            HttpGrant::parse("https://Api.Example.com:8443")
                .unwrap()
                .to_string(),
            "https://api.example.com:8443"
        );
    }
}
