//! Turns YAML text into raw serde structs, and serde's errors into diagnostics with a fix.

use super::diagnostic::{Diagnostic, Location};
use serde::de::DeserializeOwned;

/// Parses `text` (the content of `file`) into `T`, or says where and why it cannot.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic::new(file, Location::START, "the file is empty")
            .with_hint("write the document, or delete the file"));
    }
    serde_yaml::from_str(text).map_err(|err| to_diagnostic(file, &err))
}

fn to_diagnostic(file: &str, err: &serde_yaml::Error) -> Diagnostic {
    let location = err
        .location()
        .map(|l| Location::new(l.line(), l.column()))
        .unwrap_or(Location::START);
    let text = err.to_string();
    let message = strip_position(&text);
    let hint = hint_for(message);
    let diagnostic = Diagnostic::new(file, location, message);
    match hint {
        Some(hint) => diagnostic.with_hint(hint),
        None => diagnostic,
    }
}

/// serde_yaml appends " at line L column C" to its messages; the diagnostic carries the
/// position itself, so the text keeps only what went wrong. Inner messages may also carry
/// a path prefix such as `refresh.min_healthy_percentage: `, which is useful and kept.
fn strip_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(at) if text[at..].contains(" column ") => &text[..at],
        _ => text,
    }
}

fn hint_for(message: &str) -> Option<String> {
    if let Some(rest) = message.split("unknown field `").nth(1) {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .map(|list| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        return Some(match closest(unknown, &expected) {
            Some(name) => format!("did you mean `{name}`?"),
            None => format!("remove `{unknown}`; the known fields are listed above"),
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
    if message.contains("did not find expected") || message.contains("mapping values") {
        return Some("check the indentation and the `key: value` syntax on this line".into());
    }
    None
}

/// The expected name nearest to `unknown` by edit distance, when it is close enough to be a typo.
fn closest<'a>(unknown: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|name| (edit_distance(unknown, name), *name))
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
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
