//! What a plugin's SQL text does beyond its own statement, read without a database, for the
//! pools that cannot reset a session (MySQL/MariaDB and SQLite through sqlx's `Any` driver;
//! PostgreSQL's connections are reset as they are released, see `PG_CLEAN`).
//!
//! Guarantees, for MySQL and SQLite:
//! - A statement is [`Effect::Plain`] only if it starts with a keyword from a short list of
//!   statements that leave the session as they found it (`SELECT`, `INSERT`, `UPDATE`,
//!   `DELETE`, `REPLACE`, `WITH`, `VALUES`, `CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `SHOW`,
//!   `DESCRIBE`, `COMMIT`, `ROLLBACK`) and names no temporary object, no variable (MySQL's
//!   `@x`, `@@x`), no named lock (`GET_LOCK`) and no executable comment (`/*! ... */`).
//!   Everything else (`SET`, `USE`, `BEGIN`, `LOCK TABLES`, `PRAGMA`, `CREATE TEMPORARY`, a
//!   statement this reader does not know) is [`Effect::Session`]: the connection it ran on is
//!   closed instead of going back to the pool, so nothing it changed reaches another call.
//!   Reading too much as `Session` costs a reconnect, never a wrong result.
//! - On SQLite, `ATTACH` and `VACUUM ... INTO` are [`Effect::Refused`]: they would open or
//!   write a file other than the granted database.
//! - Quotes and comments are read as each database reads them (SQLite: `'..'`, `".."`,
//!   `` `..` ``, `[..]`, quotes doubled to escape; MySQL: backslash escapes too), so a keyword
//!   inside a string or a comment is not taken for a statement, and `;` splits statements only
//!   outside them.

use crate::wasm::bindings::wasmconnect::plugin::sql::DatabaseKind;

/// What running a piece of SQL text does to the connection it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Effect {
    /// Nothing that outlives the statement.
    Plain,
    /// It may change the session (settings, variables, transactions, temporary objects, locks).
    Session,
    /// It is not run: the message says why.
    Refused(String),
}

/// First keywords of statements that leave the session as they found it.
const PLAIN: &[&str] = &[
    "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "VALUES", "CREATE", "ALTER", "DROP",
    "TRUNCATE", "SHOW", "DESCRIBE", "DESC", "COMMIT", "ROLLBACK",
];

/// Words that make any statement touch the session.
const SESSION_WORDS: &[&str] = &["TEMP", "TEMPORARY", "GET_LOCK"];

/// The effect of `sql` (one or more statements separated by `;`) on `kind`: the strongest of
/// its statements' effects, the first refusal if any.
pub(super) fn effect(sql: &str, kind: DatabaseKind) -> Effect {
    let mut effect = Effect::Plain;
    for statement in statements(sql, kind) {
        match statement_effect(&statement, kind) {
            Effect::Plain => {}
            Effect::Session => effect = Effect::Session,
            refused @ Effect::Refused(_) => return refused,
        }
    }
    effect
}

fn statement_effect(statement: &Lexed, kind: DatabaseKind) -> Effect {
    let Some(first) = statement.words.first() else {
        return Effect::Plain;
    };
    if kind == DatabaseKind::Sqlite {
        if first == "ATTACH" {
            return Effect::Refused(
                "ATTACH is refused: a plugin reaches only the database file it is granted".into(),
            );
        }
        if first == "VACUUM" && statement.words.iter().any(|w| w == "INTO") {
            return Effect::Refused(
                "VACUUM INTO is refused: a plugin writes only the database file it is granted"
                    .into(),
            );
        }
    }
    let plain = PLAIN.contains(&first.as_str())
        && !statement.variable
        && !statement
            .words
            .iter()
            .any(|w| SESSION_WORDS.contains(&w.as_str()));
    if plain {
        Effect::Plain
    } else {
        Effect::Session
    }
}

/// A statement as far as this module cares: its words outside quotes and comments, upper
/// case, and whether it names a variable or holds an executable comment (MySQL).
#[derive(Debug, Default)]
struct Lexed {
    words: Vec<String>,
    variable: bool,
}

/// The statements of `sql`, split at `;` outside quotes and comments. An unterminated quote
/// or comment runs to the end of the text (the database refuses it anyway).
fn statements(sql: &str, kind: DatabaseKind) -> Vec<Lexed> {
    let mysql = kind == DatabaseKind::Mysql;
    let mut out = vec![Lexed::default()];
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let current = out.last_mut().expect("never empty");
        match c {
            ';' => out.push(Lexed::default()),
            '\'' | '"' | '`' => skip_quoted(&mut chars, c, mysql && c != '`'),
            '[' if !mysql => skip_quoted(&mut chars, ']', false),
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '#' if mysql => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                if mysql && chars.peek() == Some(&'!') {
                    // MySQL runs what an executable comment holds.
                    current.variable = true;
                }
                skip_block_comment(&mut chars);
            }
            '@' if mysql => current.variable = true,
            c if c.is_alphabetic() || c == '_' => {
                let mut word = c.to_uppercase().collect::<String>();
                while let Some(&next) = chars.peek() {
                    if !(next.is_alphanumeric() || next == '_' || next == '$') {
                        break;
                    }
                    word.extend(next.to_uppercase());
                    chars.next();
                }
                current.words.push(word);
            }
            _ => {}
        }
    }
    out
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Skips to the end of a quoted run closed by `close` (doubled to escape; with `backslash`,
/// also escaped by a backslash).
fn skip_quoted(chars: &mut Chars<'_>, close: char, backslash: bool) {
    while let Some(c) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == close {
            if chars.peek() == Some(&close) {
                chars.next();
            } else {
                return;
            }
        }
    }
}

fn skip_line(chars: &mut Chars<'_>) {
    for c in chars.by_ref() {
        if c == '\n' {
            return;
        }
    }
}

fn skip_block_comment(chars: &mut Chars<'_>) {
    while let Some(c) = chars.next() {
        if c == '*' && chars.peek() == Some(&'/') {
            chars.next();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DatabaseKind::{Mysql, Sqlite};

    fn refused(effect: Effect) -> bool {
        matches!(effect, Effect::Refused(_))
    }

    #[test]
    fn the_statements_a_sink_runs_are_plain() {
        for kind in [Mysql, Sqlite] {
            for sql in [
                "INSERT INTO t (a, b) VALUES (?, ?)",
                "insert into t values (1) on duplicate key update a = values(a)",
                "UPDATE t SET a = 1 WHERE id = 2",
                "DELETE FROM t WHERE id = ?",
                "CREATE TABLE IF NOT EXISTS t (id int)",
                "  select count(*) from t;  ",
                "WITH x AS (SELECT 1) SELECT * FROM x",
            ] {
                assert_eq!(effect(sql, kind), Effect::Plain, "{kind:?}: {sql}");
            }
        }
    }

    #[test]
    fn statements_that_change_the_session_are_seen() {
        for kind in [Mysql, Sqlite] {
            for sql in [
                "SET autocommit = 0",
                "BEGIN",
                "start transaction",
                "PRAGMA query_only = 1",
                "CREATE TEMPORARY TABLE x (a int)",
                "create temp table x (a int)",
                "CREATE TABLE temp.x (a int)",
                "USE other",
                "LOCK TABLES t WRITE",
                "SELECT 1; SET sql_mode = ''",
                "/* a comment */ SET x = 1",
                "SELECT GET_LOCK('x', 1)",
                "a statement nobody knows",
            ] {
                assert_eq!(effect(sql, kind), Effect::Session, "{kind:?}: {sql}");
            }
        }
        for sql in [
            "SELECT @x := 1",
            "SELECT @@session.sql_mode",
            "INSERT INTO t VALUES (1) /*!, (@x := 2) */",
            "SELECT 1 INTO @x",
        ] {
            assert_eq!(effect(sql, Mysql), Effect::Session, "{sql}");
        }
    }

    #[test]
    fn keywords_in_quotes_and_comments_are_not_statements() {
        for kind in [Mysql, Sqlite] {
            for sql in [
                "INSERT INTO t VALUES ('; SET autocommit = 0')",
                "INSERT INTO t VALUES ('it''s; BEGIN')",
                "INSERT INTO \"begin; x\" VALUES (1)",
                "INSERT INTO t VALUES (1) -- ; SET x = 1",
                "INSERT INTO t VALUES (1) /* ; SET x = 1 */",
            ] {
                assert_eq!(effect(sql, kind), Effect::Plain, "{kind:?}: {sql}");
            }
        }
        assert_eq!(
            effect("INSERT INTO t VALUES ('a\\'; SET x = 1; -- ')", Mysql),
            Effect::Plain
        );
        assert_eq!(
            effect("INSERT INTO t VALUES (1) # ; SET x", Mysql),
            Effect::Plain
        );
        assert_eq!(effect("SELECT [a;BEGIN] FROM t", Sqlite), Effect::Plain);
        // SQLite has no backslash escape: the quote ends at the second ', and SET runs.
        assert_eq!(
            effect("INSERT INTO t VALUES ('a\\'); SET x = 1; -- ')", Sqlite),
            Effect::Session
        );
    }

    #[test]
    fn sqlite_attach_and_vacuum_into_are_refused_wherever_they_stand() {
        for sql in [
            "ATTACH DATABASE '/tmp/other.db' AS other",
            "attach '/tmp/other.db' as other",
            "SELECT 1; ATTACH '/tmp/x' AS x",
            "/* hidden */ ATTACH '/tmp/x' AS x",
            "VACUUM INTO '/tmp/copy.db'",
            "vacuum main into '/tmp/copy.db'",
        ] {
            assert!(refused(effect(sql, Sqlite)), "{sql}");
        }
        assert_eq!(effect("VACUUM", Sqlite), Effect::Session);
        assert_eq!(
            effect("INSERT INTO t VALUES ('ATTACH x')", Sqlite),
            Effect::Plain
        );
        assert!(!refused(effect("ATTACH x", Mysql)));
    }
}
