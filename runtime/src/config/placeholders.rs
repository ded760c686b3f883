//! `${...}` placeholders, replaced in the text before YAML parsing so that a problem is
//! reported at its own line and column: `${VAR}` and `${VAR:-default}` take an environment
//! variable; `${file:PATH}` takes a whole file (trimmed) and `${file:PATH:KEY}` one key of a
//! properties file, as Kafka Connect's FileConfigProvider does, so that secrets mounted as
//! files (Kubernetes, Docker) need no environment variable. Comment lines are left alone.

use std::path::{Path, PathBuf};

use super::Diagnostic;

/// Where placeholders take their values. Any `Fn(&str) -> Option<String>` is a source of
/// environment variables that reads no files.
pub trait Sources {
    /// The environment variable `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
    /// The text of the file at `path` (as written in the placeholder).
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

impl<F: Fn(&str) -> Option<String>> Sources for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }

    fn file(&self, _: &Path) -> std::io::Result<String> {
        Err(std::io::Error::other("files are not read here"))
    }
}

/// The process's environment, and files read from disk, a relative path from `dir` (the
/// config file's directory).
pub struct Environment {
    pub dir: PathBuf,
}

impl Sources for Environment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.dir.join(path))
    }
}

/// Text with its placeholders replaced, and the values that came from files: secrets, to be
/// kept out of responses and log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    pub from_files: Vec<String>,
}

/// Replaces every placeholder (see the module docs); `$${` stays a literal `${`. Lines keep
/// their numbers (values containing newlines are refused). Every problem is reported, each at
/// its line and column, and none shows a value.
pub fn expand(text: &str, sources: &dyn Sources) -> Result<Expanded, Vec<Diagnostic>> {
    let mut out = String::with_capacity(text.len());
    let mut from_files = Vec::new();
    let mut problems = Vec::new();
    for (line_index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        let mut column = 1;
        while let Some(start) = rest.find("${") {
            if rest[..start].ends_with('$') {
                out.push_str(&rest[..start - 1]);
                out.push_str("${");
                column += start + 2;
                rest = &rest[start + 2..];
                continue;
            }
            out.push_str(&rest[..start]);
            let problem =
                |message: String| Diagnostic::new(line_index + 1, column + start, message);
            let Some(len) = rest[start..].find('}') else {
                problems.push(problem(
                    "unclosed ${ (expected ${NAME}, ${NAME:-default}, ${file:PATH} or ${file:PATH:KEY})"
                        .into(),
                ));
                rest = "";
                break;
            };
            let inner = &rest[start + 2..start + len];
            let value = match inner.strip_prefix("file:") {
                Some(reference) => file_value(reference, sources)
                    .map_err(|message| format!("${{{inner}}}: {message}"))
                    .inspect(|value| from_files.push(value.clone())),
                None => var_value(inner, sources),
            };
            match value {
                Ok(value) if value.contains('\n') => {
                    problems.push(problem(match inner.strip_prefix("file:") {
                        Some(_) => format!(
                            "${{{inner}}} contains a newline; a multi-line value (a PEM \
                         certificate, say) goes where a setting takes a file's path"
                        ),
                        None => format!(
                            "environment variable {} contains a newline",
                            inner.split(":-").next().unwrap_or(inner)
                        ),
                    }))
                }
                Ok(value) => out.push_str(&value),
                Err(message) => problems.push(problem(message)),
            }
            column += start + len + 1;
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    if problems.is_empty() {
        Ok(Expanded {
            text: out,
            from_files,
        })
    } else {
        Err(problems)
    }
}

/// [`expand`], for the text alone.
pub fn substitute(text: &str, sources: &dyn Sources) -> Result<String, Vec<Diagnostic>> {
    expand(text, sources).map(|expanded| expanded.text)
}

/// `NAME` or `NAME:-default`.
fn var_value(inner: &str, sources: &dyn Sources) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !is_name(name) {
        return Err(format!(
            "${{{inner}}}: {name:?} is not a valid environment variable name"
        ));
    }
    sources
        .var(name)
        .or_else(|| default.map(str::to_owned))
        .ok_or_else(|| {
            format!(
                "environment variable {name} is not set and ${{{name}}} has no default (write ${{{name}:-default}})"
            )
        })
}

/// `PATH` (the whole file, trimmed) or `PATH:KEY` (a key of a properties file). A path that
/// holds a `:` can only be read whole.
fn file_value(reference: &str, sources: &dyn Sources) -> Result<String, String> {
    let read = |path: &str| {
        if path.is_empty() {
            return Err("names no file (write ${file:PATH} or ${file:PATH:KEY})".to_owned());
        }
        sources
            .file(Path::new(path))
            .map_err(|e| format!("cannot read {path}: {e}"))
    };
    match reference.rsplit_once(':') {
        Some((path, key)) => {
            let text = read(path)?;
            property(&text, key).ok_or_else(|| format!("{path} has no key {key:?}"))
        }
        None => read(reference).map(|text| text.trim().to_owned()),
    }
}

/// The value of `key` in a properties file: `key=value`, `key: value` or `key value` lines,
/// `#` and `!` comments; the last line of the key wins. (Line continuations and escapes are
/// not read.)
fn property(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '!']))
        .filter_map(|line| {
            let end = line
                .find(|c: char| c == '=' || c == ':' || c.is_whitespace())
                .unwrap_or(line.len());
            let value = line[end..].trim_start();
            let value = value
                .strip_prefix(['=', ':'])
                .map_or(value, str::trim_start);
            (&line[..end] == key).then(|| value.trim_end().to_owned())
        })
        .next_back()
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;

    use super::*;

    /// Variables and files held in memory.
    struct Fixed {
        vars: HashMap<&'static str, &'static str>,
        files: HashMap<&'static str, &'static str>,
    }

    impl Sources for Fixed {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).map(|v| (*v).to_owned())
        }

        fn file(&self, path: &Path) -> io::Result<String> {
            self.files
                .get(path.to_str().unwrap_or_default())
                .map(|v| (*v).to_owned())
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    fn sources() -> Fixed {
        Fixed {
            vars: HashMap::from([("USER", "app")]),
            files: HashMap::from([
                ("/run/secrets/password", "  hunter2-long\n"),
                (
                    "/etc/db.properties",
                    "# database\nuser=app\npassword = s3cret-value\n! old\nurl: postgres://db\nempty=\nspaced value with spaces\n",
                ),
                ("/run/secrets/pem", "-----BEGIN-----\nabc\n-----END-----\n"),
            ]),
        }
    }

    #[test]
    fn files_and_properties_fill_placeholders_and_are_reported_as_secrets() {
        let text = "user: ${USER}\npassword: ${file:/run/secrets/password}\n\
                    db: ${file:/etc/db.properties:password} ${file:/etc/db.properties:url}\n\
                    empty: '${file:/etc/db.properties:empty}' ${file:/etc/db.properties:spaced}\n";
        let expanded = expand(text, &sources()).unwrap();
        assert_eq!(
            expanded.text,
            "user: app\npassword: hunter2-long\ndb: s3cret-value postgres://db\n\
             empty: '' value with spaces\n"
        );
        assert_eq!(
            expanded.from_files,
            [
                "hunter2-long",
                "s3cret-value",
                "postgres://db",
                "",
                "value with spaces"
            ]
        );
    }

    #[test]
    fn a_file_that_cannot_serve_is_refused_at_its_place_without_its_content() {
        let text = "a: ${file:/missing}\nb: x ${file:/etc/db.properties:nope}\n\
                    c: ${file:/run/secrets/pem}\nd: ${file:}\n";
        let problems = expand(text, &sources()).unwrap_err();
        let rendered: Vec<String> = problems
            .iter()
            .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
            .collect();
        assert_eq!(rendered.len(), 4, "{rendered:?}");
        assert!(rendered[0].starts_with("1:4 ${file:/missing}: cannot read /missing:"));
        assert_eq!(
            rendered[1],
            "2:6 ${file:/etc/db.properties:nope}: /etc/db.properties has no key \"nope\""
        );
        assert!(rendered[2].starts_with("3:4 ${file:/run/secrets/pem} contains a newline"));
        assert!(!rendered[2].contains("BEGIN"));
        assert!(rendered[3].starts_with("4:4 ${file:}: names no file"));
    }

    #[test]
    fn a_plain_lookup_reads_no_file() {
        let lookup = |_: &str| None;
        let problems = expand("a: ${file:/run/secrets/password}\n", &lookup).unwrap_err();
        assert!(problems[0].message.contains("files are not read here"));
    }
}
