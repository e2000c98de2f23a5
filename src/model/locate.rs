//! Finds where a key of a block-style YAML document is written, for checks that run after
//! parsing.
//!
//! serde reports the position of syntax and type errors itself, but a rule that spans
//! several fields (a percentage that must stay under another, a template naming an unknown
//! variable) is checked on the parsed value, which has no positions. Pipelines and releases
//! are written in block style, so a scan of keys and indentation finds the line a
//! release engineer has to edit. When a key cannot be found the nearest ancestor that can
//! is used, and failing that the start of the file: a slightly vague position beats none.

use super::diagnostic::Location;

/// Where each key of a YAML document sits, computed once per file.
pub struct Locator {
    entries: Vec<Entry>,
}

struct Entry {
    path: Vec<String>,
    key_at: Location,
    /// Where an inline value starts; `None` for a nested mapping or a block scalar.
    value_at: Option<Location>,
    /// First line of the content of a `|` or `>` block scalar.
    block_starts: Option<usize>,
    /// The inline value starts with a quote that its line does not close.
    is_unclosed_quote: bool,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut block_indent: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let body = raw.trim();
            if let Some(owner_indent) = block_indent {
                if body.is_empty() || indent > owner_indent {
                    continue;
                }
                block_indent = None;
            }
            if body.is_empty() || body.starts_with('#') || body == "---" {
                continue;
            }
            // A sequence item that starts a mapping (`- key: value`) puts its key two columns in.
            let (key_indent, rest) = match body.strip_prefix("- ") {
                Some(rest) => (indent + 2, rest.trim_start()),
                None => (indent, body),
            };
            let Some((key, after)) = split_key(rest) else {
                continue;
            };
            while stack.last().is_some_and(|(i, _)| *i >= key_indent) {
                stack.pop();
            }
            stack.push((key_indent, key));
            let value = after.trim_start();
            let value_col = raw.len() - value.len() + 1;
            let is_block = value.starts_with('|') || value.starts_with('>');
            if is_block {
                block_indent = Some(key_indent);
            }
            entries.push(Entry {
                path: stack.iter().map(|(_, k)| k.clone()).collect(),
                key_at: Location::new(line_no, key_indent + 1),
                value_at: (!value.is_empty() && !value.starts_with('#') && !is_block)
                    .then(|| Location::new(line_no, value_col)),
                block_starts: is_block.then_some(line_no + 1),
                is_unclosed_quote: is_unclosed_quote(value),
            });
        }
        Locator { entries }
    }

    fn find(&self, path: &[&str]) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.path.len() == path.len() && e.path.iter().zip(path).all(|(a, b)| a == b))
    }

    /// The position of the value at `path` (the key's when the value is not inline),
    /// or of its nearest located ancestor.
    pub fn value(&self, path: &[&str]) -> Location {
        for len in (1..=path.len()).rev() {
            if let Some(entry) = self.find(&path[..len]) {
                return entry.value_at.unwrap_or(entry.key_at);
            }
        }
        Location::START
    }

    /// Whether the key at `path` is written in the document.
    pub fn has(&self, path: &[&str]) -> bool {
        self.find(path).is_some()
    }

    /// The position of the key at `path`, or of its nearest located ancestor.
    pub fn key(&self, path: &[&str]) -> Location {
        for len in (1..=path.len()).rev() {
            if let Some(entry) = self.find(&path[..len]) {
                return entry.key_at;
            }
        }
        Location::START
    }

    /// The key of the second entry at `path`, when the key is written twice.
    pub fn repeated_key(&self, path: &[&str]) -> Option<Location> {
        self.entries
            .iter()
            .filter(|e| e.path.len() == path.len() && e.path.iter().zip(path).all(|(a, b)| a == b))
            .nth(1)
            .map(|e| e.key_at)
    }

    /// The first inline value up to line `line` that opens a quote its line does not
    /// close, with its dotted key path.
    pub fn unclosed_quote(&self, line: usize) -> Option<(Location, String)> {
        self.entries
            .iter()
            .take_while(|e| e.key_at.line <= line)
            .find(|e| e.is_unclosed_quote)
            .and_then(|e| Some((e.value_at?, e.path.join("."))))
    }

    /// The position of line `offset` (from 0) inside the string value at `path`: the line
    /// itself for a block scalar, the key's line for an inline value.
    pub fn line_in_value(&self, path: &[&str], offset: usize) -> Location {
        match self.find(path) {
            Some(Entry {
                block_starts: Some(first),
                ..
            }) => Location::new(first + offset, 1),
            _ => self.value(path),
        }
    }
}

/// Where `ch` first appears in the inline value that starts at `value_at` in `text`, for a
/// rule that names one character of a value. An opening quote is passed over; a character
/// the file writes as an escape (`\t` in double quotes) is not found, and then the value's
/// start is returned.
pub fn char_in_value(text: &str, value_at: Location, ch: char) -> Location {
    let value = text
        .lines()
        .nth(value_at.line.saturating_sub(1))
        .and_then(|line| line.get(value_at.column.saturating_sub(1)..));
    let Some(value) = value else {
        return value_at;
    };
    let opening = usize::from(value.starts_with(['"', '\'']));
    value
        .chars()
        .enumerate()
        .skip(opening)
        .find(|(_, c)| *c == ch)
        .map(|(index, _)| Location::new(value_at.line, value_at.column + index))
        .unwrap_or(value_at)
}

/// Whether `value` starts a single- or double-quoted scalar and does not end it.
fn is_unclosed_quote(value: &str) -> bool {
    let mut chars = value.chars();
    let quote = match chars.next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return false,
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            ('"', '\\') => {
                chars.next();
            }
            ('\'', '\'') if chars.clone().next() == Some('\'') => {
                chars.next();
            }
            (q, c) if q == c => return false,
            _ => {}
        }
    }
    true
}

/// Splits `key: value` (or `key:` alone) into the unquoted key and what follows the colon.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(quote) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = text[1..].find(quote)? + 1;
        (text[1..end].to_string(), &text[end + 1..])
    } else {
        let colon = text.find(':')?;
        let key = &text[..colon];
        if key.contains(' ') && !key.trim().is_empty() && key.trim() != key {
            return None;
        }
        (key.trim().to_string(), &text[colon..])
    };
    let after = rest.strip_prefix(':')?;
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((key, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: sm
# a comment
refresh:
  min_healthy_percentage: 90
  max_healthy_percentage: 100
update:
  script: |
    echo a: b
    echo {{ nope }}
  timeout: 20m
list:
  - name: x
    size: 3
";

    #[test]
    fn finds_nested_keys_and_their_values() {
        let l = Locator::new(DOC);
        assert_eq!(l.value(&["name"]), Location::new(1, 7));
        assert_eq!(
            l.value(&["refresh", "max_healthy_percentage"]),
            Location::new(5, 27)
        );
        assert_eq!(l.key(&["refresh"]), Location::new(3, 1));
        assert_eq!(l.value(&["update", "timeout"]), Location::new(10, 12));
        assert_eq!(l.key(&["list", "size"]), Location::new(13, 5));
    }

    #[test]
    fn block_scalar_content_is_not_read_as_keys() {
        let l = Locator::new(DOC);
        assert_eq!(
            l.line_in_value(&["update", "script"], 1),
            Location::new(9, 1)
        );
        assert_eq!(l.key(&["update", "echo a"]), Location::new(6, 1));
    }

    #[test]
    fn a_character_of_a_value_is_found_on_its_line() {
        let text = "a: 1\nurl: https://x.example/a b\nq: \"x y\"\ne: \"x\\ty\"\n";
        let l = Locator::new(text);
        assert_eq!(
            char_in_value(text, l.value(&["url"]), ' '),
            Location::new(2, 25)
        );
        assert_eq!(
            char_in_value(text, l.value(&["q"]), ' '),
            Location::new(3, 6)
        );
        assert_eq!(
            char_in_value(text, l.value(&["q"]), '"'),
            Location::new(3, 8)
        );
        assert_eq!(
            char_in_value(text, l.value(&["e"]), '\t'),
            Location::new(4, 4)
        );
    }

    #[test]
    fn missing_keys_fall_back_to_the_nearest_ancestor() {
        let l = Locator::new(DOC);
        assert!(
            l.has(&["refresh", "min_healthy_percentage"]) && !l.has(&["refresh", "checkpoints"])
        );
        assert_eq!(l.key(&["refresh", "checkpoints"]), Location::new(3, 1));
        assert_eq!(l.key(&["absent"]), Location::START);
    }
}
