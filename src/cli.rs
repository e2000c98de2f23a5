//! The command line: clap definitions only. What each command does lives in `commands.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a pipeline, release or plan is invalid; nothing was changed in AWS
  2  the command line is wrong
  3  a stage failed and the fleet was rolled back
  4  a stage failed before the fleet was touched
  5  interrupted (Ctrl-C / SIGTERM); the builder was cleaned up
  6  another run holds the group's lock
  7  git, AWS or a file could not be read";

/// GitOps rollouts for Red5 Pro Stream Manager fleets on AWS.
///
/// Merge a release into releases/ and red5-rollout bakes a new Stream Manager image,
/// points the Auto Scaling group at it and refreshes the fleet. `git revert` the bump and
/// it rolls the fleet back, reusing the image that is already baked.
#[derive(Debug, Parser)]
#[command(name = "red5-rollout", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every pipeline and release as committed, and print every problem.
    ///
    /// Problems are printed as `file:line:column: message` with a hint, so editors and CI
    /// annotations can jump to them. Files are read from git at --rev, not from the working
    /// tree: commit your change first.
    #[command(after_help = "Example:\n  red5-rollout validate --repo . --rev HEAD")]
    Validate(RepoArgs),

    /// Show what a run would do for each pipeline: which stages run, resume or skip, and why.
    ///
    /// Compares the release each pipeline wants (as committed at --rev) with what its
    /// Auto Scaling group runs. Nothing is changed.
    #[command(
        after_help = "Examples:\n  red5-rollout plan --fleet-state fleet.json\n  red5-rollout plan stream-manager --fleet-state fleet.json --format markdown > comment.md"
    )]
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The GitOps repository (any directory inside its work tree).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".",
        env = "RED5_ROLLOUT_REPO"
    )]
    pub repo: PathBuf,

    /// The commit to read pipelines and releases from.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub rev: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Pipelines to plan (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    /// Read the observed fleet from this JSON file instead of AWS (see README.md).
    #[arg(long, value_name = "FILE")]
    pub fleet_state: Option<PathBuf>,

    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for a terminal or a CI log.
    Text,
    /// A pull request comment.
    Markdown,
    /// The documented JSON schema (docs/plan-schema.md).
    Json,
}
