//! Secrets out of everything the worker shows: configs in API responses (values of
//! secret-looking keys, passwords inside URLs, values read from files), traces and log lines
//! (the same passwords, bearer tokens, and every secret value of a config the worker runs).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::RwLock;

use serde_json::Value;

/// Key names (lowercase, `-` read as `_`, anywhere in the key) whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "credential",
    "api_key",
    "apikey",
    "private_key",
];

/// Parts of a key (between `.`, `_` and `-`) that make it a secret on their own.
const SECRET_PARTS: &[&str] = &["pass", "pwd"];

/// Whether the value of `key` is a secret: a key naming one of [`SECRET_KEYS`], with a part in
/// [`SECRET_PARTS`], a PEM (`ssl.key.pem`) or a SASL login (`sasl.jaas.config`,
/// `sasl.oauthbearer.config`).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_lowercase().replace('-', "_");
    SECRET_KEYS.iter().any(|s| key.contains(s))
        || key
            .split(['.', '_'])
            .any(|part| SECRET_PARTS.contains(&part))
        || key.ends_with(".pem")
        || (key.starts_with("sasl.") && key.ends_with(".config"))
}

pub const REDACTED: &str = "[redacted]";

/// Replaces, at any depth, the values of secret-looking keys with `[redacted]`, and in every
/// other string what [`scrub`] hides (URL passwords, bearer tokens, remembered secrets such as
/// the values read from files).
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if is_secret_key(key) {
                    *inner = Value::String(REDACTED.into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Cow::Owned(clean) = scrub(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// Secret values shorter than this are not scrubbed from log lines: they would match too
/// much ordinary text to be worth hiding there (they are still redacted from responses).
const MIN_SCRUBBED_LEN: usize = 4;

/// Every secret value of the configs the worker runs, scrubbed from every log line.
static SECRETS: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Remembers the secret values in `value` (a config as JSON) for [`scrub`].
pub fn remember_secrets(value: &Value) {
    let mut found = Vec::new();
    collect_secrets(value, false, &mut found);
    if found.is_empty() {
        return;
    }
    SECRETS.write().expect("secrets lock").extend(found);
}

/// Remembers `values` (secrets wherever they stand, such as those read from files) for
/// [`scrub`] and [`redact`].
pub fn remember_values(values: &[String]) {
    let found = values
        .iter()
        .filter(|v| v.len() >= MIN_SCRUBBED_LEN)
        .cloned();
    SECRETS.write().expect("secrets lock").extend(found);
}

fn collect_secrets(value: &Value, secret: bool, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                collect_secrets(inner, secret || is_secret_key(key), found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_secrets(v, secret, found)),
        Value::String(s) => {
            if secret && s.len() >= MIN_SCRUBBED_LEN {
                found.push(s.clone());
                if let Some(token) = s.strip_prefix("Bearer ") {
                    found.push(token.to_owned());
                }
            }
            if let Some(password) = url_password(s) {
                found.push(password.to_owned());
            }
        }
        Value::Number(n) if secret => found.push(n.to_string()),
        _ => {}
    }
}

/// `text` with URL passwords, bearer tokens and every remembered secret value replaced by
/// `[redacted]`; borrowed when there was nothing to hide.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().expect("secrets lock");
        for secret in secrets.iter().filter(|s| s.len() >= MIN_SCRUBBED_LEN) {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
    }
    if out.contains("://") {
        let mut scrubbed = String::with_capacity(out.len());
        let mut changed = false;
        for (i, word) in out.split(' ').enumerate() {
            if i > 0 {
                scrubbed.push(' ');
            }
            let core = word.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | ',' | '`'));
            match url_without_password(core) {
                Some(clean) => {
                    scrubbed.push_str(&word.replace(core, &clean));
                    changed = true;
                }
                None => scrubbed.push_str(word),
            }
        }
        if changed {
            out = Cow::Owned(scrubbed);
        }
    }
    if let Some(i) = out.find("Bearer ") {
        let start = i + "Bearer ".len();
        let end = out[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ','))
            .map_or(out.len(), |n| start + n);
        if end > start && &out[start..end] != REDACTED {
            out = Cow::Owned(format!("{}{REDACTED}{}", &out[..start], &out[end..]));
        }
    }
    out
}

fn url_password(s: &str) -> Option<&str> {
    let (_, rest) = s.split_once("://")?;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty() && password != REDACTED).then_some(password)
}

fn url_without_password(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:{REDACTED}@{host}{path}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_keys_and_url_passwords_are_redacted_at_any_depth() {
        let mut config = json!({
            "name": "c",
            "config": {
                "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
                "api_token": "t",
                "url": "postgres://app:hunter2@db:5432/main",
                "table": "orders",
                "key": ["id"],
                "nested": [{"password": "p"}]
            }
        });
        redact(&mut config);
        assert_eq!(config["config"]["headers"]["Authorization"], REDACTED);
        assert_eq!(config["config"]["headers"]["Accept"], "application/json");
        assert_eq!(config["config"]["api_token"], REDACTED);
        assert_eq!(
            config["config"]["url"],
            "postgres://app:[redacted]@db:5432/main"
        );
        assert_eq!(config["config"]["table"], "orders");
        assert_eq!(config["config"]["key"], json!(["id"]));
        assert_eq!(config["config"]["nested"][0]["password"], REDACTED);
    }

    #[test]
    fn log_lines_lose_remembered_secrets_url_passwords_and_bearer_tokens() {
        remember_secrets(&json!({"config": {"api_token": "s3cr3t-value", "table": "orders"}}));
        let line = "calling with s3cr3t-value for table orders";
        assert_eq!(scrub(line), "calling with [redacted] for table orders");
        assert_eq!(
            scrub("cannot connect to postgres://app:hunter2@db:5432/main: refused"),
            "cannot connect to postgres://app:[redacted]@db:5432/main: refused"
        );
        assert_eq!(
            scrub("header Authorization: Bearer abc.def, next"),
            "header Authorization: Bearer [redacted], next"
        );
        assert!(matches!(scrub("nothing to hide"), Cow::Borrowed(_)));
    }

    #[test]
    fn kafka_and_http_secret_keys_are_recognised() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "x-api-key",
            "Api-Key",
            "db_pass",
            "pwd",
            "sasl.oauthbearer.client.secret",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "table",
            "passthrough",
            "compass",
            "ssl.ca.location",
            "sasl.mechanism",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn values_read_from_files_are_hidden_wherever_they_stand() {
        remember_values(&["db.internal.example:5432".to_owned(), "ab".to_owned()]);
        let mut config = json!({"url": "postgres://db.internal.example:5432/main", "table": "ab"});
        redact(&mut config);
        assert_eq!(config["url"], "postgres://[redacted]/main");
        assert_eq!(
            config["table"], "ab",
            "too short to hide without hiding too much"
        );
        assert_eq!(
            scrub("cannot reach db.internal.example:5432"),
            "cannot reach [redacted]"
        );
    }
}
