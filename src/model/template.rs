//! The one template engine of the runner: image and launch names, the SSM update script and
//! the user data are all rendered here, from values that were validated first.
//!
//! A template is checked when its pipeline is loaded: it must parse, every variable it
//! names must be one of [`VARIABLES`], and a template a shell runs must print the
//! release's values only through `shell_quote`. Rendering is strict, so a value that is missing at
//! render time is an error rather than an empty string in a shell script.

use super::quoting::{Unquoted, find_unquoted};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::sync::OnceLock;

/// The variables a template may use, with what they hold. Shown in errors and in README.md.
pub const VARIABLES: &[(&str, &str)] = &[
    ("version", "the release's semver version, e.g. 12.4.0"),
    (
        "artifact_url",
        "the release's artifact URL (https:// or s3://)",
    ),
    (
        "artifact_sha256",
        "the release's artifact SHA-256, 64 hex digits",
    ),
    (
        "date",
        "the day the resource is first created, e.g. 20261124",
    ),
    ("month_day", "the same day in the guide's style, e.g. nov24"),
    ("instance_type", "the launch instance type, e.g. m5.large"),
    (
        "instance_type_short",
        "the instance type without dots, e.g. m5large",
    ),
    ("pipeline", "the pipeline's name"),
    ("commit", "the git commit being applied (full SHA)"),
];

/// A template that parsed and names only known variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template {
    source: String,
}

/// Why a template was refused, with the line inside the template (from 0) to point at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    pub line_offset: usize,
    pub message: String,
    pub hint: String,
}

/// The values a template is rendered with. Every field comes from a validated type.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateValues {
    pub version: String,
    pub artifact_url: String,
    pub artifact_sha256: String,
    pub date: String,
    pub month_day: String,
    pub instance_type: String,
    pub instance_type_short: String,
    pub pipeline: String,
    pub commit: String,
}

/// A render failure: only possible when a template uses a filter on a value it does not
/// fit, since variables are checked at load time.
#[derive(Debug, thiserror::Error)]
#[error("cannot render template")]
pub struct RenderError(#[source] minijinja::Error);

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // The quoting check evaluates templates in an environment of its own; a filter
        // added here goes there too, or the check stops at the first use of it.
        env.add_filter("shell_quote", shell_quote);
        env
    })
}

/// Quotes a value for POSIX sh: single quotes, with embedded single quotes closed, escaped
/// and reopened. Safe for any input, including empty strings.
pub fn shell_quote(value: String) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

impl Template {
    /// Checks `source` and keeps it. The problem names the template line to fix.
    pub fn parse(source: &str) -> Result<Template, TemplateProblem> {
        let env = environment();
        let compiled = env.template_from_str(source).map_err(|err| TemplateProblem {
            line_offset: err.line().unwrap_or(1).saturating_sub(1),
            message: format!("template does not parse: {}", err.detail().unwrap_or("syntax error")),
            hint: "templates use minijinja (Jinja2) syntax: {{ date }}, {{ artifact_url | shell_quote }}".into(),
        })?;
        let mut unknown: Vec<String> = compiled
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !VARIABLES.iter().any(|(known, _)| known == name))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            let line_offset = line_using(source, name);
            let known: Vec<&str> = VARIABLES.iter().map(|(n, _)| *n).collect();
            return Err(TemplateProblem {
                line_offset,
                message: format!("template uses unknown variable `{name}`"),
                hint: format!("use one of: {}", known.join(", ")),
            });
        }
        Ok(Template {
            source: source.to_string(),
        })
    }

    /// Like [`Template::parse`], for a template whose output a shell runs (the update
    /// script, the user data): every release value it prints must go through
    /// `shell_quote` (see the `quoting` module).
    pub fn parse_shell(source: &str) -> Result<Template, TemplateProblem> {
        let template = Template::parse(source)?;
        if let Some(Unquoted {
            line_offset,
            variable,
        }) = find_unquoted(source)
        {
            return Err(TemplateProblem {
                line_offset,
                message: format!("template prints `{variable}` without shell_quote"),
                hint: format!(
                    "a release value reaches the shell only quoted: write {{{{ {variable} | shell_quote }}}}, or set it once ({variable}={{{{ {variable} | shell_quote }}}}) and use \"${variable}\""
                ),
            });
        }
        Ok(template)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, values: &TemplateValues) -> Result<String, RenderError> {
        environment()
            .render_str(&self.source, values)
            .map_err(RenderError)
    }
}

impl RenderError {
    /// The line of the template (from 0) that failed.
    pub fn line_offset(&self) -> usize {
        self.0.line().unwrap_or(1).saturating_sub(1)
    }

    /// What went wrong, without minijinja's "(in <string>:N)" suffix: the diagnostic
    /// carries the position itself.
    pub fn reason(&self) -> String {
        match self.0.detail() {
            Some(detail) => format!("{}: {detail}", self.0.kind()),
            None => self.0.kind().to_string(),
        }
    }
}

/// The line (from 0) where the template uses `name` as a variable: the first line where
/// `name` stands as a whole word inside a `{{ }}` or `{% %}` tag. A plain search for the
/// text would stop at shell text such as `/tmp` before the `{{ tmp }}` that is wrong.
fn line_using(source: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let in_tag = |line: &str, at: usize| {
        let before = &line[..at];
        let opened = before.rfind("{{").max(before.rfind("{%"));
        let closed = before.rfind("}}").max(before.rfind("%}"));
        opened.is_some() && opened > closed
    };
    let mut plain = None;
    for (index, line) in source.lines().enumerate() {
        for (at, _) in line.match_indices(name) {
            let whole =
                !line[..at].ends_with(is_ident) && !line[at + name.len()..].starts_with(is_ident);
            if !whole {
                continue;
            }
            if in_tag(line, at) {
                return index;
            }
            plain.get_or_insert(index);
        }
    }
    plain.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn values() -> TemplateValues {
        TemplateValues {
            version: "12.4.0".into(),
            artifact_url: "https://example.com/red5pro-12.4.0.zip".into(),
            artifact_sha256: "a".repeat(64),
            date: "20261124".into(),
            month_day: "nov24".into(),
            instance_type: "m5.large".into(),
            instance_type_short: "m5large".into(),
            pipeline: "stream-manager".into(),
            commit: "0123abc".into(),
        }
    }

    #[test]
    fn renders_known_variables() {
        let t = Template::parse(
            "SM-red5pro-server-{{ version }}-{{ month_day }}-{{ instance_type_short }}-LC",
        )
        .unwrap();
        assert_eq!(
            t.render(&values()).unwrap(),
            "SM-red5pro-server-12.4.0-nov24-m5large-LC"
        );
    }

    #[test]
    fn shell_quote_survives_quotes_and_metacharacters() {
        assert_eq!(shell_quote("it's; rm -rf /".into()), r"'it'\''s; rm -rf /'");
        assert_eq!(shell_quote(String::new()), "''");
        let t = Template::parse("curl -o x {{ artifact_url | shell_quote }}").unwrap();
        assert_eq!(
            t.render(&values()).unwrap(),
            "curl -o x 'https://example.com/red5pro-12.4.0.zip'"
        );
    }

    #[test]
    fn unknown_variable_names_its_line() {
        let err = Template::parse("echo ok\necho {{ verison }}\n").unwrap_err();
        assert_eq!(err.line_offset, 1);
        assert_eq!(err.message, "template uses unknown variable `verison`");
    }

    #[test]
    fn syntax_errors_are_refused() {
        let err = Template::parse("line\n{{ version ").unwrap_err();
        assert!(
            err.message.starts_with("template does not parse"),
            "{}",
            err.message
        );
    }
}
