//! JDBC connection URLs (`jdbc:postgresql://host:5432/db?user=...`), as Kafka Connect's JDBC
//! connectors take them, read as the URLs wasmconnect's database pools take.

use url::Url;

/// The database URL `connection.url` (a `jdbc:` URL, or a native `postgres://`, `mysql://`,
/// `mariadb://` or `sqlite:` one) stands for, with `user` and `password` (Kafka Connect's
/// `connection.user` and `connection.password`, which win over the URL's own) as its
/// credentials. JDBC's `user` and `password` parameters become the URL's credentials and
/// PostgreSQL's `ssl=true` becomes `sslmode=require`; other parameters pass as they are.
pub(super) fn database_url(
    given: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<String, String> {
    let url = given.trim();
    let url = url.strip_prefix("jdbc:").unwrap_or(url);
    if let Some(path) = url.strip_prefix("sqlite:") {
        if user.is_some() || password.is_some() {
            return Err(
                "SQLite takes no user or password: leave connection.user and \
                        connection.password out"
                    .into(),
            );
        }
        return Ok(format!("sqlite:{path}"));
    }
    let scheme = url.split(':').next().unwrap_or_default();
    let native = match scheme {
        "postgresql" | "postgres" => "postgres",
        "mysql" | "mariadb" => scheme,
        other => {
            return Err(format!(
                "{other:?} databases are not supported: wasmconnect speaks to PostgreSQL, \
                 MySQL/MariaDB and SQLite"
            ));
        }
    };
    let rest = url[scheme.len()..].strip_prefix("://").ok_or_else(|| {
        format!(
            "{given:?} is not a database URL: expected jdbc:postgresql://HOST[:PORT]/DATABASE, \
             jdbc:mysql://..., jdbc:mariadb://... or jdbc:sqlite:PATH"
        )
    })?;
    let mut parsed = Url::parse(&format!("{native}://{rest}"))
        .map_err(|e| format!("{given:?} does not parse as a URL: {e}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{given:?} names no host"));
    }
    let mut params: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let mut take = |name: &str| {
        let i = params.iter().position(|(k, _)| k == name)?;
        Some(params.remove(i).1)
    };
    let url_user = take("user");
    let url_password = take("password");
    if native == "postgres" && take("ssl").is_some_and(|v| v == "true") {
        params.retain(|(k, _)| k != "sslmode");
        params.push(("sslmode".into(), "require".into()));
    }
    let user = user.map(str::to_owned).or(url_user);
    let password = password.map(str::to_owned).or(url_password);
    let refused = |_| format!("{given:?} cannot carry credentials");
    if let Some(user) = user {
        parsed.set_username(&user).map_err(refused)?;
    }
    if let Some(password) = password {
        parsed.set_password(Some(&password)).map_err(refused)?;
    }
    if params.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(params);
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn a_jdbc_postgresql_url_with_its_user_and_password_becomes_a_postgres_url() {
        assert_eq!(
            database_url(
                "jdbc:postgresql://localhost:5432/shop",
                Some("connect"),
                Some("p@ss:word/1")
            )
            .unwrap(),
            "postgres://connect:p%40ss%3Aword%2F1@localhost:5432/shop"
        );
    }

    #[test]
    fn jdbc_parameters_become_credentials_and_the_given_keys_win() {
        assert_eq!(
            database_url(
                "jdbc:postgresql://db/shop?user=a&password=b&ssl=true&application_name=x",
                Some("given"),
                None
            )
            .unwrap(),
            "postgres://given:b@db/shop?application_name=x&sslmode=require"
        );
    }

    #[test]
    fn mysql_mariadb_sqlite_and_native_urls_are_read() {
        assert_eq!(
            database_url("jdbc:mariadb://h:3306/d", Some("u"), Some("p")).unwrap(),
            "mariadb://u:p@h:3306/d"
        );
        assert_eq!(
            database_url("jdbc:mysql://h/d", None, None).unwrap(),
            "mysql://h/d"
        );
        assert_eq!(
            database_url("jdbc:sqlite:data/test.db", None, None).unwrap(),
            "sqlite:data/test.db"
        );
        assert_eq!(
            database_url("postgres://u:p@h/d", None, None).unwrap(),
            "postgres://u:p@h/d"
        );
    }

    #[test]
    fn what_is_not_a_database_url_here_is_refused_saying_why() {
        let err = database_url("jdbc:sqlserver://h;databaseName=d", None, None).unwrap_err();
        assert!(
            err.contains("\"sqlserver\" databases are not supported"),
            "{err}"
        );
        let err = database_url("jdbc:postgresql:shop", None, None).unwrap_err();
        assert!(err.contains("is not a database URL"), "{err}");
        let err = database_url("jdbc:sqlite:x.db", Some("u"), None).unwrap_err();
        assert!(err.contains("SQLite takes no user"), "{err}");
        let err = database_url("jdbc:postgresql:///shop", None, None).unwrap_err();
        assert!(err.contains("names no host"), "{err}");
    }
}
