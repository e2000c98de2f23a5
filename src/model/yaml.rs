//! Turns YAML text into raw serde structs, and serde's errors into diagnostics with a fix.

use super::diagnostic::{Diagnostic, Location};
use super::locate::Locator;
use serde::de::DeserializeOwned;

/// Parses `text` (the content of `file`) into `T`, or says where and why it cannot.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic::new(file, Location::START, "the file is empty")
            .with_hint("write the document, or delete the file"));
    }
    // Plain YAML first, so that a syntax error reads as one: the typed pass stops at the
    // first field it misses, and reported a mis-indented `subnet` as a missing one.
    let value: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|err| to_diagnostic(file, text, &err, true))?;
    if value.is_null() && text.lines().all(is_comment_or_blank) {
        return Err(
            Diagnostic::new(file, Location::START, "the file holds only comments")
                .with_hint("write the document, or delete the file"),
        );
    }
    serde_yaml::from_str(text).map_err(|err| to_diagnostic(file, text, &err, false))
}

fn is_comment_or_blank(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
}

/// `is_syntax`: the error comes from reading plain YAML, not from fitting it to `T`.
fn to_diagnostic(file: &str, text: &str, err: &serde_yaml::Error, is_syntax: bool) -> Diagnostic {
    let full = err.to_string();
    let (message, marks) = strip_positions(&full);
    let mut location = err
        .location()
        .map(|l| Location::new(l.line(), l.column()))
        .unwrap_or(Location::START);
    let at = Locator::new(text);
    // serde reports where it noticed the problem; these point where it is to be fixed.
    if let [_, opened] = marks[..] {
        // "... at L:C, while scanning a quoted scalar at L2:C2": the quote or bracket
        // that never closes opened at the second mark.
        if message.contains("while scanning a quoted scalar")
            || message.contains("while parsing a flow")
        {
            location = opened;
        }
    }
    let path_of = |prefix: &str| -> Vec<String> {
        message
            .split_once(prefix)
            .map(|(before, _)| before.trim_end_matches(": "))
            .filter(|before| !before.is_empty())
            .map(|before| before.split('.').map(str::to_string).collect())
            .unwrap_or_default()
    };
    if let Some(key) = quoted_after(&message, "duplicate entry with key \"")
        .or_else(|| quoted_after(&message, "duplicate field `"))
    {
        // serde points at the start of the mapping; the second occurrence is the one to
        // look at.
        let prefix = if message.contains("duplicate entry") {
            "duplicate entry"
        } else {
            "duplicate field"
        };
        let mut path = path_of(prefix);
        path.push(key);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(second) = at.repeated_key(&path) {
            location = second;
        }
    } else if message.contains("missing field") {
        // serde points at the mapping's first entry; the field belongs under its key.
        let path = path_of("missing field");
        if !path.is_empty() {
            let path: Vec<&str> = path.iter().map(String::as_str).collect();
            location = at.key(&path);
        }
    } else if let Some((opened, key)) = at.unclosed_quote(location.line).filter(|_| is_syntax) {
        // A quote left open runs on to the next quote in the file, often many lines
        // later, where the parser finally fails. Quoted values here fit on one line.
        return Diagnostic::new(
            file,
            opened,
            format!("the value of `{key}` opens a quote that is not closed on its line"),
        )
        .with_hint("end the value with the quote it starts with, on the same line");
    }
    let hint = hint_for(&message);
    let diagnostic = Diagnostic::new(file, location, message);
    match hint {
        Some(hint) => diagnostic.with_hint(hint),
        None => diagnostic,
    }
}

/// The text between `prefix` and the next quote or backtick.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split(['"', '`']).next()?.to_string())
}

/// serde_yaml writes positions into its messages (" at line L column C", once for the
/// problem and sometimes again for its context); the diagnostic carries the position
/// itself, so the text keeps only what went wrong, and the positions are returned in
/// order. Inner messages may also carry a path prefix such as
/// `refresh.min_healthy_percentage: `, which is useful and kept.
fn strip_positions(text: &str) -> (String, Vec<Location>) {
    const LINE: &str = " at line ";
    const COLUMN: &str = " column ";
    let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let mut message = String::new();
    let mut marks = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(LINE) {
        message.push_str(&rest[..at]);
        let after = &rest[at + LINE.len()..];
        let line_end = digits(after);
        let mark = after[line_end..].strip_prefix(COLUMN).and_then(|column| {
            let column_end = digits(column);
            let line = after[..line_end].parse().ok()?;
            let col = column[..column_end].parse().ok()?;
            Some((
                Location::new(line, col),
                line_end + COLUMN.len() + column_end,
            ))
        });
        match mark {
            Some((location, len)) => {
                marks.push(location);
                rest = &after[len..];
            }
            None => {
                message.push_str(LINE);
                rest = after;
            }
        }
    }
    message.push_str(rest);
    (message, marks)
}

fn hint_for(message: &str) -> Option<String> {
    for (prefix, otherwise) in [
        (
            "unknown field `",
            "remove `{}`; the known fields are listed above",
        ),
        (
            "unknown variant `",
            "write one of the values listed above instead of `{}`",
        ),
    ] {
        let Some(rest) = message.split(prefix).nth(1) else {
            continue;
        };
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|list| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return Some(match closest(unknown, &expected) {
            Some(name) => format!("did you mean `{name}`?"),
            None => otherwise.replace("{}", unknown),
        });
    }
    if message.contains("duplicate field") || message.contains("duplicate entry") {
        return Some("a key may appear once per mapping: keep one of them".into());
    }
    if message.contains("missing field") {
        return Some("add the field; see README.md for the format".into());
    }
    if message.contains("invalid type") {
        return Some("check the value's type: quote strings that look like numbers".into());
    }
    if message.contains("while scanning a quoted scalar") {
        return Some("end the value with the quote it starts with".into());
    }
    if message.contains("while parsing a flow sequence") {
        return Some("close the list with `]`".into());
    }
    if message.contains("while parsing a flow mapping") {
        return Some("close the mapping with `}`".into());
    }
    if message.contains("did not find expected") || message.contains("mapping values") {
        return Some("check the indentation and the `key: value` syntax on this line".into());
    }
    None
}

/// The expected name nearest to `unknown` by edit distance, ignoring case (`wait` is
/// AWS's `Wait`), when it is close enough to be a typo.
fn closest<'a>(unknown: &str, expected: &[&'a str]) -> Option<&'a str> {
    let unknown = unknown.to_lowercase();
    expected
        .iter()
        .map(|name| (edit_distance(&unknown, &name.to_lowercase()), *name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            closest("min_healthy", &["min_healthy_percentage", "timeout"]),
            None
        );
        assert_eq!(
            closest("timout", &["min_healthy_percentage", "timeout"]),
            Some("timeout")
        );
        assert_eq!(
            closest("WAIT", &["Refresh", "Ignore", "Wait"]),
            Some("Wait")
        );
        assert_eq!(closest("lc", &["template", "configuration"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
