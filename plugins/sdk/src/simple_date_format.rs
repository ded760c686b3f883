//! Java's SimpleDateFormat patterns, which Kafka Connect users write (`TimestampConverter`'s
//! `format`, `TimestampRouter`'s `timestamp.format`), as `time` format descriptions. The
//! subset: `yyyy`, `yy`, `MM`, `dd`, `HH`, `hh`, `a`, `mm`, `ss`, `S` to `SSSSSSSSS` (1, 2, 3,
//! 6 or 9 digits), `X`, `XX`, `XXX`, `Z` and `'quoted text'`; other characters are literal.
//! With the SDK's `time` feature.

use time::format_description::OwnedFormatItem;

/// `pattern` as a `time` format description; a letter outside the subset above is refused,
/// naming it.
pub fn parse(pattern: &str) -> Result<OwnedFormatItem, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == '\'')
                .ok_or_else(|| format!("format {pattern:?}: unterminated quote"))?;
            let literal: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push_str(
                if literal.is_empty() { "'" } else { &literal }
                    .replace('[', "[[")
                    .as_str(),
            );
            i += end + 2;
            continue;
        }
        let item = match (c, run) {
            ('y', 2) => "[year repr:last_two]",
            ('y', _) => "[year]",
            ('M', 2) => "[month]",
            ('d', 2) => "[day]",
            ('H', 2) => "[hour]",
            ('h', 2) => "[hour repr:12]",
            ('a', 1) => "[period]",
            ('m', 2) => "[minute]",
            ('s', 2) => "[second]",
            ('S', 1) => "[subsecond digits:1]",
            ('S', 2) => "[subsecond digits:2]",
            ('S', 3) => "[subsecond digits:3]",
            ('S', 6) => "[subsecond digits:6]",
            ('S', 9) => "[subsecond digits:9]",
            ('X', 1) => "[offset_hour sign:mandatory]",
            ('X', 2) | ('Z', 1) => "[offset_hour sign:mandatory][offset_minute]",
            ('X', 3) => "[offset_hour sign:mandatory]:[offset_minute]",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "format {pattern:?}: {} is not supported (yyyy, yy, MM, dd, HH, hh, a, mm, ss, S.., X, XX, XXX, Z, 'text')",
                    c.to_string().repeat(run)
                ));
            }
            ('[', _) => {
                out.push_str(&"[[".repeat(run));
                i += run;
                continue;
            }
            (c, _) => {
                out.push_str(&c.to_string().repeat(run));
                i += run;
                continue;
            }
        };
        out.push_str(item);
        i += run;
    }
    time::format_description::parse_owned::<2>(&out).map_err(|e| format!("format {pattern:?}: {e}"))
}
