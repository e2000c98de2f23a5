//! A Red5 Pro release, one file each under `releases/`: which version, which artifact, and
//! the checksum that artifact must have.
//!
//! The raw form mirrors the YAML and refuses unknown fields; [`Release`] exists only when
//! every rule holds, because its values end up in image names and in a shell script run as
//! root on the builder.

use super::diagnostic::{Diagnostic, Diagnostics};
use super::locate::{Locator, char_in_value};
use super::yaml;
use semver::Version;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    version: Scalar,
    artifact: RawArtifact,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    requires_database_migration: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    url: String,
    #[serde(default)]
    sha256: Option<Scalar>,
}

/// A YAML scalar read as the text it was written as, so that `version: 12.4` is reported
/// as "not semver" instead of "expected a string, found a float".
#[derive(Debug, Clone)]
pub(crate) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A release that passed every check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: Version,
    pub artifact: Artifact,
    pub notes: Option<String>,
    pub requires_database_migration: bool,
    /// The path of the release file in the repository, e.g. `releases/12.4.0.yaml`.
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// An `https://` or `s3://` URL without whitespace, control characters or shell
    /// metacharacters.
    pub url: String,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// Parses a semver version as written in a release or a `pin`, with a message that names
/// what is wrong with it. Shared by releases and pipelines.
pub(crate) fn parse_version(text: &str) -> Result<Version, (String, String)> {
    let hint = "a version is MAJOR.MINOR.PATCH, optionally with -prerelease or +build made of letters, digits, '.' and '-', e.g. 12.4.0 or 12.5.0-rc.1";
    if let Some(rest) = text.strip_prefix('v')
        && Version::parse(rest).is_ok()
    {
        return Err((
            format!("version `{text}` is not semver"),
            format!("write `{rest}` without the leading `v`"),
        ));
    }
    Version::parse(text).map_err(|err| {
        (
            format!("version `{text}` is not semver ({err})"),
            hint.to_string(),
        )
    })
}

impl Release {
    /// Parses and checks the release file at `file` (a repository path) with content `text`.
    pub fn from_yaml(file: &str, text: &str) -> Result<Release, Diagnostics> {
        let raw: RawRelease = yaml::parse(file, text).map_err(|d| Diagnostics(vec![d]))?;
        let at = Locator::new(text);
        let mut problems = Diagnostics::default();

        let version = match parse_version(raw.version.0.trim()) {
            Ok(v) => Some(v),
            Err((message, hint)) => {
                problems
                    .push(Diagnostic::new(file, at.value(&["version"]), message).with_hint(hint));
                None
            }
        };
        if let Some(version) = &version {
            let stem = file_stem(file);
            if stem != version.to_string() {
                problems.push(
                    Diagnostic::new(
                        file,
                        at.value(&["version"]),
                        format!("version {version} does not match the file name `{stem}`"),
                    )
                    .with_hint(format!(
                        "name the file releases/{version}.yaml, or fix the version"
                    )),
                );
            }
        }

        let url = raw.artifact.url.trim();
        if let Err(refusal) = check_artifact_url(url) {
            let value_at = at.value(&["artifact", "url"]);
            let location = match refusal.character {
                Some(bad) => char_in_value(text, value_at, bad),
                None => value_at,
            };
            problems.push(Diagnostic::new(file, location, refusal.message).with_hint(refusal.hint));
        }

        let sha256 = match raw.artifact.sha256 {
            None => {
                problems.push(
                    Diagnostic::new(file, at.key(&["artifact"]), "artifact has no sha256")
                        .with_hint("add `sha256:` with the artifact's SHA-256 (`sha256sum FILE`); the builder refuses to install an unverified artifact"),
                );
                None
            }
            Some(Scalar(parsed)) => {
                // YAML reads an unquoted checksum made only of digits (or digits and one
                // `e`) as a number; what counts is the text as written in the file.
                let location = at.value(&["artifact", "sha256"]);
                let written = text
                    .lines()
                    .nth(location.line - 1)
                    .and_then(|line| line.get(location.column - 1..))
                    .map(|value| {
                        value
                            .split(" #")
                            .next()
                            .unwrap_or(value)
                            .trim()
                            .trim_matches(['"', '\''])
                    })
                    .filter(|value| {
                        value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit())
                    });
                let text = written.unwrap_or(&parsed).trim().to_ascii_lowercase();
                // Name a character that is not hex before counting: "found 64 characters"
                // would say nothing about a checksum of the right length.
                let found = match text.chars().find(|c| !c.is_ascii_hexdigit()) {
                    Some(bad) => Some(format!("{bad:?}, which is not a hex digit")),
                    None if text.len() != 64 => Some(format!("{} characters", text.len())),
                    None => None,
                };
                match found {
                    None => Some(text),
                    Some(found) => {
                        problems.push(
                            Diagnostic::new(
                                file,
                                at.value(&["artifact", "sha256"]),
                                format!("artifact.sha256 must be 64 hex digits, found {found}"),
                            )
                            .with_hint(
                                "paste the full output of `sha256sum FILE` (the first column)",
                            ),
                        );
                        None
                    }
                }
            }
        };

        match (version, sha256, problems.is_empty()) {
            (Some(version), Some(sha256), true) => Ok(Release {
                version,
                artifact: Artifact {
                    url: url.to_string(),
                    sha256,
                },
                notes: raw.notes,
                requires_database_migration: raw.requires_database_migration,
                file: file.to_string(),
            }),
            _ => Err(problems),
        }
    }
}

/// Why an artifact URL is refused, and the character to point at when one is to blame.
struct UrlRefusal {
    message: String,
    hint: String,
    character: Option<char>,
}

/// Characters a shell gives a meaning to. Templates must pass the URL through
/// `shell_quote`; refusing these too keeps the URL harmless where it is pasted unquoted,
/// into a command line or a terminal.
const SHELL_CHARACTERS: &[char] = &[
    '`', '$', ';', '&', '|', '<', '>', '(', ')', '\\', '"', '\'', '*', '?', '{', '}', '!',
];

fn check_artifact_url(url: &str) -> Result<(), UrlRefusal> {
    let refuse = |message: String, hint: &str| UrlRefusal {
        message,
        hint: hint.into(),
        character: None,
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("s3://"));
    let Some(rest) = rest else {
        let scheme = url.split("://").next().filter(|_| url.contains("://"));
        let message = match scheme {
            Some(scheme) => format!("artifact.url must use https:// or s3://, not {scheme}://"),
            None => format!("artifact.url `{url}` is not an https:// or s3:// URL"),
        };
        return Err(refuse(
            message,
            "host the artifact on HTTPS or S3: a plain download can be altered in transit",
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(refuse(
            format!("artifact.url `{url}` has no host or bucket"),
            "write it as https://host/path or s3://bucket/key",
        ));
    }
    let Some(bad) = url
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || SHELL_CHARACTERS.contains(c))
    else {
        return Ok(());
    };
    let encoded: String = bad
        .to_string()
        .bytes()
        .map(|byte| format!("%{byte:02X}"))
        .collect();
    let (message, hint) = if bad.is_whitespace() || bad.is_control() {
        (
            format!("artifact.url contains {bad:?}, which a URL may not hold unescaped"),
            format!("percent-encode it as {encoded}"),
        )
    } else if matches!(bad, '?' | '&') {
        (
            format!("artifact.url contains {bad:?}, which a shell would read as syntax"),
            "a URL with a query string (a presigned URL) cannot be used: give the builder's instance profile read access and write the artifact as s3://bucket/key".to_string(),
        )
    } else {
        (
            format!("artifact.url contains {bad:?}, which a shell would read as syntax"),
            format!("percent-encode it as {encoded}; the URL reaches a shell on the builder"),
        )
    };
    Err(UrlRefusal {
        message,
        hint,
        character: Some(bad),
    })
}

/// The file name without its directory and `.yaml` / `.yml` extension.
pub(crate) fn file_stem(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
}
