//! Secrets out of a config before any response shows it: values of secret-looking keys, and
//! passwords inside URLs.

use serde_json::Value;

/// Key names (lowercase, anywhere in the key) whose values are secrets.
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

pub const REDACTED: &str = "[redacted]";

/// Replaces, at any depth, the values of secret-looking keys with `[redacted]` and the
/// password of any `scheme://user:password@host` string.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                let key = key.to_lowercase();
                if SECRET_KEYS.iter().any(|s| key.contains(s)) {
                    *inner = Value::String(REDACTED.into());
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = url_without_password(s) {
                *s = clean;
            }
        }
        _ => {}
    }
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
}
