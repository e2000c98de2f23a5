//! The top-level error of a command, its exit code, and how it is shown: a headline, the
//! chain of causes, and a hint that says what to do next.

use crate::model::{Diagnostics, NoRelease};
use crate::plan::PlanError;
use crate::repo::RepoError;
use std::fmt::Write;
use std::path::PathBuf;

/// Exit codes, documented in README.md and `red5-rollout --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went as planned.
    Success = 0,
    /// A pipeline, release or plan is invalid, or a preflight check fails; nothing was
    /// changed in AWS.
    Invalid = 1,
    /// The command line was wrong (clap's own code).
    Usage = 2,
    /// A stage failed and the fleet was rolled back to its previous configuration.
    FailedRolledBack = 3,
    /// A stage failed before the fleet was touched.
    FailedUntouched = 4,
    /// Interrupted by Ctrl-C or SIGTERM; the builder was cleaned up.
    Interrupted = 5,
    /// Another run holds the group's lock.
    LockHeld = 6,
    /// AWS or another outside system could not be read.
    Environment = 7,
    /// A refresh ended without a full rollback: the group runs a mix of configurations.
    MixedFleet = 8,
    /// A stage failed after the fleet was touched, and it was not moved back.
    FailedTouched = 9,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Fetch(#[from] crate::repo::FetchError),
    #[error("{} problem(s) in the repository", .0.len())]
    Invalid(Diagnostics),
    #[error("no pipeline named `{name}` (known: {known})")]
    UnknownPipeline { name: String, known: String },
    #[error("pipeline {pipeline} cannot select a release")]
    NoRelease {
        pipeline: String,
        #[source]
        source: NoRelease,
    },
    #[error("pipeline {pipeline} cannot be planned")]
    Plan {
        pipeline: String,
        #[source]
        source: Box<PlanError>,
    },
    #[error("cannot read the fleet state file {}", path.display())]
    FleetStateFile {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the fleet state file {} has no entry for group {group}", path.display())]
    FleetStateMissing { path: PathBuf, group: String },
    #[error(transparent)]
    Prepare(#[from] crate::run::PrepareError),
    #[error("not confirmed: nothing was changed")]
    NotConfirmed,
    #[error("run {run} did not converge every pipeline:\n{summary}")]
    Apply {
        run: String,
        summary: String,
        results: Vec<crate::events::PipelineResult>,
    },
    #[error("plan --comment needs {0}")]
    GitHubSetting(String),
    #[error("no pipeline rolls group {group}")]
    UnknownGroup { group: String },
    #[error(
        "the lock of group {group} is held by run {held_by} on {host}, not by {given}: nothing was removed"
    )]
    LockMismatch {
        group: String,
        held_by: String,
        host: String,
        given: String,
    },
    #[error("cannot adopt the fleet of pipeline {pipeline}: {reason}")]
    AdoptRefused { pipeline: String, reason: String },
    #[error("{failed} preflight check(s) fail (see the lines above)")]
    PreflightFailed { failed: usize },
    #[error("gc did not delete everything it planned:\n{summary}")]
    Gc { summary: String, lease_held: bool },
    #[error("cannot read the fleet of pipeline {pipeline} from AWS")]
    Cloud {
        pipeline: String,
        #[source]
        source: crate::cloud::CloudError,
    },
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Repo(_)
            | Error::Fetch(_)
            | Error::FleetStateFile { .. }
            | Error::Cloud { .. }
            | Error::GitHubSetting(_) => Exit::Environment,
            Error::Prepare(crate::run::PrepareError::Cloud { .. }) => Exit::Environment,
            Error::Prepare(_)
            | Error::NotConfirmed
            | Error::UnknownGroup { .. }
            | Error::AdoptRefused { .. }
            | Error::PreflightFailed { .. }
            | Error::LockMismatch { .. } => Exit::Invalid,
            Error::Gc {
                lease_held: true, ..
            } => Exit::LockHeld,
            Error::Gc { .. } => Exit::Environment,
            Error::Apply { results, .. } => results
                .iter()
                .map(|r| match r {
                    crate::events::PipelineResult::Converged
                    | crate::events::PipelineResult::UpToDate => Exit::Success,
                    crate::events::PipelineResult::RolledBack => Exit::FailedRolledBack,
                    crate::events::PipelineResult::FailedUntouched => Exit::FailedUntouched,
                    crate::events::PipelineResult::MixedFleet => Exit::MixedFleet,
                    crate::events::PipelineResult::FailedTouched => Exit::FailedTouched,
                    crate::events::PipelineResult::Interrupted => Exit::Interrupted,
                    crate::events::PipelineResult::LockHeld => Exit::LockHeld,
                })
                .max_by_key(|e| *e as u8)
                .unwrap_or(Exit::Success),
            Error::Invalid(_)
            | Error::UnknownPipeline { .. }
            | Error::NoRelease { .. }
            | Error::Plan { .. }
            | Error::FleetStateMissing { .. } => Exit::Invalid,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Repo(e) => Some(e.hint().to_string()),
            Error::Fetch(e) => Some(e.hint().to_string()),
            Error::GitHubSetting(_) => Some(
                "run it in a pull_request workflow with `permissions: pull-requests: write`, or drop --comment".into(),
            ),
            Error::Invalid(_) => {
                Some("fix the problems above; `red5-rollout validate` lists them all".into())
            }
            Error::UnknownPipeline { .. } => {
                Some("pass the name of a file under pipelines/, without .yaml".into())
            }
            Error::NoRelease { source, .. } => Some(source.hint()),
            Error::Plan { source, .. } => Some(source.hint()),
            Error::FleetStateFile { .. } | Error::FleetStateMissing { .. } => Some(
                "the file is JSON: {\"fleets\": [{\"group\": NAME, ...}]}; see README.md".into(),
            ),
            Error::Cloud { source, .. } => Some(source.hint().to_string()),
            Error::Prepare(crate::run::PrepareError::Cloud { source, .. }) => {
                Some(source.hint().to_string())
            }
            Error::Prepare(crate::run::PrepareError::Plan { source, .. }) => Some(source.hint()),
            Error::Prepare(crate::run::PrepareError::Render { .. }) => {
                Some("shorten the name templates; `red5-rollout validate` shows them".into())
            }
            Error::NotConfirmed => {
                Some("answer yes at the prompt, or pass --yes (CI=true implies it)".into())
            }
            Error::Apply { run, .. } => Some(format!(
                "every stage resumes where it stopped: fix the cause and run apply again (this was run {run})"
            )),
            Error::UnknownGroup { .. } => Some("pass --region REGION".into()),
            Error::Gc {
                lease_held: true, ..
            } => Some(
                "a rollout holds the group: run gc again once it is done (`red5-rollout status` shows the holder)".into(),
            ),
            Error::Gc { .. } => Some(
                "gc decides again from what is left: fix the cause above and run it again".into(),
            ),
            Error::AdoptRefused { .. } => Some(
                "nothing was tagged; `red5-rollout status` shows the group, its instances and their configurations".into(),
            ),
            Error::LockMismatch { .. } => {
                Some("check that run is really gone, then pass its id with --run".into())
            }
            Error::PreflightFailed { .. } => Some(
                "each FAIL line ends with its fix; apply them, then run preflight again".into(),
            ),
        }
    }

    /// The error as shown on stderr: problems first (when it carries them), the headline,
    /// each cause, then the hint.
    /// The problems as GitHub Actions annotations, when the error is made of problems.
    pub fn github_annotations(&self) -> Option<String> {
        match self {
            Error::Invalid(problems)
            | Error::Prepare(crate::run::PrepareError::Render { problems, .. }) => {
                Some(problems.github_annotations())
            }
            _ => None,
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        match self {
            Error::Invalid(problems)
            | Error::Prepare(crate::run::PrepareError::Render { problems, .. }) => {
                let _ = writeln!(out, "{problems}");
            }
            Error::Plan { source, .. }
            | Error::Prepare(crate::run::PrepareError::Plan { source, .. }) => {
                if let PlanError::WouldTerminateOnlyInstance { diagnostic, .. } = source.as_ref() {
                    let shown = crate::model::Diagnostic {
                        hint: None,
                        ..(**diagnostic).clone()
                    };
                    let _ = writeln!(out, "{shown}");
                }
            }
            _ => {}
        }
        let _ = writeln!(out, "error: {self}");
        let mut cause = std::error::Error::source(self);
        while let Some(err) = cause {
            let _ = writeln!(out, "  caused by: {err}");
            cause = err.source();
        }
        if let Some(hint) = self.hint() {
            let _ = writeln!(out, "  hint: {hint}");
        }
        out
    }
}
