//! `${VAR}` and `${VAR:-default}` substitution, done on the text before YAML parsing so that a
//! missing variable is reported at its own line and column. Comment lines are left alone.

use super::Diagnostic;

/// Substitutes every `${NAME}` / `${NAME:-default}`; `$${` stays a literal `${`. Lines keep
/// their numbers (values containing newlines are refused).
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<Diagnostic>> {
    let mut out = String::with_capacity(text.len());
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
            let at = column + start;
            let Some(len) = rest[start..].find('}') else {
                problems.push(Diagnostic::new(
                    line_index + 1,
                    at,
                    "unclosed ${ (expected ${NAME} or ${NAME:-default})",
                ));
                rest = "";
                break;
            };
            let inner = &rest[start + 2..start + len];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_name(name) {
                problems.push(Diagnostic::new(
                    line_index + 1,
                    at,
                    format!("${{{inner}}}: {name:?} is not a valid environment variable name"),
                ));
            } else {
                match lookup(name).or_else(|| default.map(str::to_owned)) {
                    Some(value) if value.contains('\n') => problems.push(Diagnostic::new(
                        line_index + 1,
                        at,
                        format!("environment variable {name} contains a newline"),
                    )),
                    Some(value) => out.push_str(&value),
                    None => problems.push(Diagnostic::new(
                        line_index + 1,
                        at,
                        format!("environment variable {name} is not set and ${{{name}}} has no default (write ${{{name}:-default}})"),
                    )),
                }
            }
            column += start + len + 1;
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}
