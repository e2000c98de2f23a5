//! Which release a pipeline wants, and the names its resources get for that release.
//!
//! Pure: selection looks only at the pipeline's `track` or `pin` and the release files.

use super::diagnostic::{Diagnostic, Diagnostics, Location};
use super::pipeline::{LaunchKind, MAX_AMI_NAME, Pipeline, Target};
use super::release::Release;
use super::template::{RenderError, TemplateValues};
use semver::Version;
use serde::Serialize;
use time::Date;

/// Why no release can be chosen for a pipeline, said so that the fix is obvious.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRelease {
    #[error("pin {pin} has no release file")]
    PinMissing { pin: Version },
    #[error("no release matches track `{track}` (releases: {available})")]
    NothingMatches { track: String, available: String },
    #[error(
        "no release matches track `{track}`: only pre-releases do ({prereleases}), and the track names none"
    )]
    OnlyPrereleases { track: String, prereleases: String },
}

impl NoRelease {
    pub fn hint(&self) -> String {
        match self {
            NoRelease::PinMissing { pin } => {
                format!("add releases/{pin}.yaml, or change `pin` to a version that has a file")
            }
            NoRelease::NothingMatches { .. } => {
                "add a matching release to releases/, or widen `track`".into()
            }
            NoRelease::OnlyPrereleases { .. } => {
                "name the pre-release in the track to opt in, e.g. \">=12.5.0-rc.1\"".into()
            }
        }
    }

    /// This problem as a diagnostic on the pipeline's `track` / `pin` line.
    pub fn diagnostic(&self, pipeline: &Pipeline) -> Diagnostic {
        Diagnostic::new(
            pipeline.origin.file.clone(),
            pipeline.origin.target_at,
            format!("pipeline {}: {self}", pipeline.name),
        )
        .with_hint(self.hint())
    }
}

/// The release a pipeline wants: its `pin`, else the highest release matching its `track`.
/// Pre-releases match only a requirement that names a pre-release of the same version
/// (semver's rule, as in Cargo).
pub fn desired_release<'a>(
    pipeline: &Pipeline,
    releases: &'a [Release],
) -> Result<&'a Release, NoRelease> {
    match &pipeline.target {
        Target::Pin(pin) => releases
            .iter()
            .find(|r| &r.version == pin)
            .ok_or_else(|| NoRelease::PinMissing { pin: pin.clone() }),
        Target::Track(req) => {
            if let Some(best) = releases
                .iter()
                .filter(|r| req.matches(&r.version))
                .max_by(|a, b| a.version.cmp(&b.version))
            {
                return Ok(best);
            }
            let list = |pre: bool| {
                let mut versions: Vec<&Version> = releases
                    .iter()
                    .map(|r| &r.version)
                    .filter(|v| v.pre.is_empty() != pre)
                    .collect();
                versions.sort();
                versions.iter().map(|v| v.to_string()).collect::<Vec<_>>()
            };
            let prereleases: Vec<String> = releases
                .iter()
                .filter(|r| !r.version.pre.is_empty())
                .filter(|r| {
                    let mut plain = r.version.clone();
                    plain.pre = semver::Prerelease::EMPTY;
                    req.matches(&plain)
                })
                .map(|r| r.version.to_string())
                .collect();
            if !prereleases.is_empty() {
                return Err(NoRelease::OnlyPrereleases {
                    track: req.to_string(),
                    prereleases: prereleases.join(", "),
                });
            }
            let stable = list(false);
            Err(NoRelease::NothingMatches {
                track: req.to_string(),
                available: if stable.is_empty() {
                    "none".into()
                } else {
                    stable.join(", ")
                },
            })
        }
    }
}

/// The names and scripts of one pipeline for one release, rendered and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub image_name: String,
    pub launch_name: String,
    /// The bake's install script (none for a pipeline that promotes another's images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_script: Option<String>,
    pub user_data: String,
}

/// The values every template of `pipeline` sees for `release`, made on `date` from `commit`.
pub fn template_values(
    pipeline: &Pipeline,
    release: &Release,
    date: Date,
    commit: &str,
) -> TemplateValues {
    TemplateValues {
        version: release.version.to_string(),
        artifact_url: release.artifact.url.clone(),
        artifact_sha256: release.artifact.sha256.clone(),
        date: format!(
            "{:04}{:02}{:02}",
            date.year(),
            u8::from(date.month()),
            date.day()
        ),
        month_day: format!(
            "{}{:02}",
            &date.month().to_string().to_ascii_lowercase()[..3],
            date.day()
        ),
        instance_type: pipeline.launch.instance_type.clone(),
        instance_type_short: pipeline.launch.instance_type.replace('.', ""),
        pipeline: pipeline.name.clone(),
        commit: commit.to_string(),
    }
}

/// Renders the pipeline's templates for `release` and checks the names against AWS's limits.
pub fn render(
    pipeline: &Pipeline,
    release: &Release,
    date: Date,
    commit: &str,
) -> Result<Rendered, Diagnostics> {
    let values = template_values(pipeline, release, date, commit);
    let file = &pipeline.origin.file;
    let mut problems = Diagnostics::default();
    let mut render_one = |template: &super::template::Template, what: &str, at: Location| {
        template.render(&values).unwrap_or_else(|err: RenderError| {
            // `at` is the template's first line; the error names the line inside it.
            let at = Location::new(at.line + err.line_offset(), at.column);
            problems.push(
                Diagnostic::new(
                    file.clone(),
                    at,
                    format!(
                        "{what} cannot be rendered for {}: {}",
                        release.version,
                        err.reason()
                    ),
                )
                .with_hint("check the filters the template uses"),
            );
            String::new()
        })
    };
    let image_name = render_one(
        &pipeline.image.name,
        "image.name",
        pipeline.origin.image_name_at,
    );
    let launch_name = render_one(
        &pipeline.launch.name,
        "launch.name",
        pipeline.origin.launch_name_at,
    );
    let update_script = pipeline
        .update
        .as_ref()
        .map(|update| render_one(&update.script, "update.script", pipeline.origin.script_at));
    let user_data = render_one(
        &pipeline.launch.user_data,
        "launch.user_data",
        pipeline.origin.user_data_at,
    );

    let image_name = image_name.trim().to_string();
    let launch_name = launch_name.trim().to_string();
    if image_name.len() < 3 || image_name.len() > MAX_AMI_NAME {
        problems.push(
            Diagnostic::new(
                file.clone(),
                pipeline.origin.image_name_at,
                format!(
                    "image.name renders to {} characters for {}; an AMI name must have 3 to {MAX_AMI_NAME}",
                    image_name.len(),
                    release.version
                ),
            )
            .with_hint(format!("shorten the template; it renders `{image_name}`")),
        );
    } else if let Some(bad) = image_name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(*c)))
    {
        problems.push(
            Diagnostic::new(
                file.clone(),
                pipeline.origin.image_name_at,
                format!("image.name renders `{image_name}`, and AMI names may not contain {bad:?}"),
            )
            .with_hint("AMI names allow letters, digits, spaces and ( ) [ ] . / - ' @ _"),
        );
    }
    let max = pipeline.max_launch_name();
    let what = match pipeline.launch.kind() {
        LaunchKind::Template => "with `kind: template` it",
        LaunchKind::Configuration => "a launch configuration name",
    };
    if launch_name.is_empty() || launch_name.len() > max {
        problems.push(
            Diagnostic::new(
                file.clone(),
                pipeline.origin.launch_name_at,
                format!(
                    "launch.name renders to {} characters for {}; {what} must have 1 to {max}",
                    launch_name.len(),
                    release.version
                ),
            )
            .with_hint("shorten the template"),
        );
    }
    if problems.is_empty() {
        Ok(Rendered {
            image_name,
            launch_name,
            update_script,
            user_data,
        })
    } else {
        Err(problems)
    }
}
