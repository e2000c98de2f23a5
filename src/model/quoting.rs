//! The rule that a release's values reach a shell only through `shell_quote`.
//!
//! A release file is data, written by whoever cuts the release, while the update script
//! runs as root on the builder and the user data on every instance. So in those two
//! templates every printed value that holds `version`, `artifact_url` or `artifact_sha256`
//! must be the output of `shell_quote`: `{{ version | shell_quote }}` and
//! `{{ version | upper | shell_quote }}` pass; `{{ version }}`, `{{ "v" ~ version }}` and
//! `{{ artifact_url | safe }}` do not. Name templates are not shell and are not checked.
//!
//! The check asks minijinja itself, with stand-in values: each release value is a marker
//! word, and `shell_quote` returns text without one, so a marker that is printed is a
//! release value that was not quoted. It looks twice:
//! 1. every `{{ … }}` tag of the source is evaluated on its own, so that a tag in a branch
//!    the stand-ins do not take (`{% if artifact_url.startswith("s3://") %}`) is still seen;
//! 2. the whole template is rendered with a formatter that refuses a printed marker, which
//!    follows values through `{% set %}`, loops and macros.
//!
//! What neither sees: a value carried by `set`, a loop or a macro into a branch the
//! stand-ins do not take, or a value printed piecewise (sliced, one character at a time).
//! Those are deliberate detours, not slips; the rule is there for the slips.

use super::template::TemplateValues;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};
use std::sync::OnceLock;

/// Each release value's variable and the marker that stands in for it. Letters only, so
/// that case filters keep them findable.
const RELEASE_VALUES: [(&str, &str); 3] = [
    ("version", "zqxversionzqx"),
    ("artifact_url", "zqxartifacturlzqx"),
    ("artifact_sha256", "zqxartifactshazqx"),
];

/// What `shell_quote` returns during the check: quoted text that holds no marker.
const QUOTED: &str = "'quoted'";

/// The start of the detail of the render error the formatter raises; the variable follows.
const UNQUOTED: &str = "unquoted release value ";

/// A release value printed without `shell_quote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unquoted {
    /// The line of the template (from 0) that prints it.
    pub line_offset: usize,
    pub variable: &'static str,
}

/// The first line of `source` (a template that parses) that prints a release value
/// without `shell_quote`, if any.
pub(crate) fn find_unquoted(source: &str) -> Option<Unquoted> {
    let by_tag = print_tags(source)
        .into_iter()
        .find_map(|(line_offset, expr)| {
            let value = environment()
                .compile_expression(expr)
                .ok()?
                .eval(stand_ins())
                .ok()?;
            let variable = release_value_in(&value)?;
            Some(Unquoted {
                line_offset,
                variable,
            })
        });
    let by_render = environment()
        .template_from_str(source)
        .and_then(|template| template.render(stand_ins()))
        .err()
        .and_then(|err| {
            let variable = err.detail()?.strip_prefix(UNQUOTED)?;
            let variable = RELEASE_VALUES.iter().find(|(v, _)| *v == variable)?.0;
            Some(Unquoted {
                line_offset: err.line()?.saturating_sub(1),
                variable,
            })
        });
    [by_tag, by_render]
        .into_iter()
        .flatten()
        .min_by_key(|u| u.line_offset)
}

/// The environment of the check: the runner's filters, except that `shell_quote` drops
/// its input, undefined values are lenient (a tag evaluated on its own may name a loop
/// variable), and printing a marker is an error that carries the template line.
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.add_filter("shell_quote", |_: Value| QUOTED);
        env.set_formatter(|out, state, value| match release_value_in(value) {
            Some(variable) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("{UNQUOTED}{variable}"),
            )),
            None => minijinja::escape_formatter(out, state, value),
        });
        env
    })
}

fn stand_ins() -> TemplateValues {
    let marker = |name: &str| {
        RELEASE_VALUES
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, marker)| marker.to_string())
            .unwrap_or_default()
    };
    TemplateValues {
        version: marker("version"),
        artifact_url: marker("artifact_url"),
        artifact_sha256: marker("artifact_sha256"),
        date: "20261124".into(),
        month_day: "nov24".into(),
        instance_type: "m5.large".into(),
        instance_type_short: "m5large".into(),
        pipeline: "stream-manager".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
    }
}

/// The release variable whose marker `value` prints, if any.
fn release_value_in(value: &Value) -> Option<&'static str> {
    let printed = value.to_string().to_lowercase();
    RELEASE_VALUES
        .iter()
        .find(|(_, marker)| printed.contains(marker))
        .map(|(variable, _)| *variable)
}

/// The expression of every `{{ … }}` tag of `source`, with the line (from 0) the tag
/// starts on. Comments and `{% raw %}` blocks are passed over; strings and brackets inside
/// a tag are followed as minijinja's lexer does, so a `}}` inside them does not end it.
fn print_tags(source: &str) -> Vec<(usize, &str)> {
    let mut tags = Vec::new();
    let mut at = 0;
    while let Some(found) = source[at..].find('{') {
        let start = at + found;
        let rest = &source[start..];
        at = if rest.starts_with("{#") {
            source[start..]
                .find("#}")
                .map_or(source.len(), |end| start + end + 2)
        } else if rest.starts_with("{%") {
            let (inner, end) = tag_body(source, start + 2, "%}");
            if trim_tag(inner).trim() == "raw" {
                end_of_raw(source, end)
            } else {
                end
            }
        } else if rest.starts_with("{{") {
            let (inner, end) = tag_body(source, start + 2, "}}");
            let line = source[..start].matches('\n').count();
            tags.push((line, trim_tag(inner)));
            end
        } else {
            start + 1
        };
    }
    tags
}

/// The text of the tag whose body starts at `from`, up to `close` outside strings and
/// brackets, and the offset after `close`.
fn tag_body<'a>(source: &'a str, from: usize, close: &str) -> (&'a str, usize) {
    let bytes = source.as_bytes();
    let mut depth = 0i32;
    let mut quote = None;
    let mut i = from;
    while i < bytes.len() {
        let byte = bytes[i];
        match quote {
            Some(_) if byte == b'\\' => i += 1,
            Some(q) if byte == q => quote = None,
            Some(_) => {}
            None if depth <= 0 && source[i..].starts_with(close) => {
                return (&source[from..i], i + close.len());
            }
            None => match byte {
                b'\'' | b'"' => quote = Some(byte),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    (&source[from..], source.len())
}

/// A tag's text without its whitespace control (`{{-`, `+}}`).
fn trim_tag(inner: &str) -> &str {
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    inner.strip_suffix(['-', '+']).unwrap_or(inner)
}

/// The offset after the `{% endraw %}` that closes a raw block whose body starts at `from`.
fn end_of_raw(source: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(found) = source[at..].find("{%") {
        let start = at + found + 2;
        let Some(end) = source[start..].find("%}") else {
            break;
        };
        if trim_tag(&source[start..start + end]).trim() == "endraw" {
            return start + end + 2;
        }
        at = start;
    }
    source.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unquoted(source: &str) -> Option<(usize, &'static str)> {
        find_unquoted(source).map(|u| (u.line_offset, u.variable))
    }

    #[test]
    fn quoted_release_values_pass() {
        for source in [
            "echo {{ version | shell_quote }}",
            "echo {{ version | upper | shell_quote }}",
            "echo {{ \"v\" ~ version | shell_quote }}",
            "echo {{ version | shell_quote | upper }}",
            "curl {{ artifact_url | shell_quote }} && echo {{ artifact_sha256 | shell_quote }}",
            "{% set v = version | shell_quote %}echo {{ v }}",
            "{% if version is startingwith('12') %}echo 12{% endif %}",
            "echo {{ date }}-{{ instance_type_short }} {{ pipeline }} {{ commit }}",
            "{# {{ version }} #}echo {% raw %}{{ version }}{% endraw %}",
            "echo {{ version | int | shell_quote }}",
        ] {
            assert_eq!(unquoted(source), None, "{source}");
        }
    }

    #[test]
    fn unquoted_release_values_are_found_on_their_line() {
        let cases: &[(&str, (usize, &str))] = &[
            ("echo ok\necho {{ version }}\n", (1, "version")),
            ("echo {{ \"v\" ~ version }}", (0, "version")),
            (
                "{% if true %}{{ artifact_url }}{% endif %}",
                (0, "artifact_url"),
            ),
            ("echo {{ version | upper }}", (0, "version")),
            ("echo {{ version | safe }}", (0, "version")),
            ("echo {{- artifact_sha256 -}}", (0, "artifact_sha256")),
            ("echo {{ {'a': {'b': version}} }}", (0, "version")),
            (
                "{% if artifact_url.startswith('s3://') %}\naws s3 cp {{ artifact_url }} x\n{% endif %}",
                (1, "artifact_url"),
            ),
            ("{% set v = version %}\n\necho {{ v }}", (2, "version")),
            (
                "{% for u in [artifact_url] %}\necho {{ u }}\n{% endfor %}",
                (1, "artifact_url"),
            ),
            (
                "{% macro say(x) %}\necho {{ x }}\n{% endmacro %}\n{{ say(version) }}",
                (1, "version"),
            ),
            (
                "echo {{ version | shell_quote }}\necho {{ version }}",
                (1, "version"),
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(unquoted(source), Some(*expected), "{source}");
        }
    }

    #[test]
    fn tags_are_read_as_minijinja_reads_them() {
        let source =
            "a {{ x }} {# {{ c }} #}\n{{ \"}}\" ~ y -}} {% raw %}{{ r }}{%- endraw %}{{+ z }}";
        assert_eq!(
            print_tags(source),
            vec![(0, " x "), (1, " \"}}\" ~ y "), (1, " z ")]
        );
    }
}
