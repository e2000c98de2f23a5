//! The command line: clap definitions only. What each command does lives in `commands.rs`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  a pipeline, release or plan is invalid, or a preflight check fails; nothing was
     changed in AWS
  2  the command line is wrong
  3  a stage failed and the fleet was rolled back
  4  a stage failed before the fleet was touched
  5  interrupted (Ctrl-C / SIGTERM); the builder was cleaned up
  6  another run holds the group's lock
  7  git, AWS or a file could not be read
  8  a refresh ended without a full rollback: the fleet runs a mix of versions
  9  a stage failed after the fleet was touched and it was not moved back";

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

    /// Log more on stderr: -v for red5-rollout's own calls (every AWS and GitHub call),
    /// -vv for the AWS SDK's too. RUST_LOG (e.g. RUST_LOG=red5_rollout=debug) overrides.
    /// Logs never break the progress bars; with `--output json` they are off unless asked.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
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

    /// Show where each pipeline's fleet stands in AWS.
    ///
    /// Reads the group, its configuration and the version it runs, its instances and the
    /// configuration each was launched with, any refresh in flight, builders left running
    /// and the images baked for the pipeline. Nothing is changed.
    #[command(
        after_help = "Examples:\n  red5-rollout status\n  red5-rollout status stream-manager --format json\n  red5-rollout status --endpoint-url http://127.0.0.1:5000   # the local emulator"
    )]
    Status(StatusArgs),

    /// Converge each pipeline's group onto the release git asks for.
    ///
    /// Plans, prints the plan, asks before the first change (unless --yes, or CI=true),
    /// then runs the stages: launch a builder from the group's image, install the release
    /// over SSM, stop it and create the image, create the launch template version (or
    /// launch configuration), refresh the group, and always terminate the builder. A
    /// pipeline with image.from_pipeline bakes nothing: it rolls out the image that
    /// pipeline baked once its rollout there succeeded, copied first (CopyImage) when that
    /// pipeline runs in another region. Every
    /// stage first looks for its own result, so a second apply changes nothing and an
    /// interrupted one resumes. One run per group at a time (an SSM parameter lock). A
    /// failed refresh leaves the group on its previous configuration.
    #[command(
        after_help = "Examples:\n  red5-rollout apply --yes\n  red5-rollout apply stream-manager --rev origin/main\n  red5-rollout apply --endpoint-url http://127.0.0.1:5000 --yes   # the local emulator"
    )]
    Apply(ApplyArgs),

    /// Check each pipeline's account against the Red5 Pro guide and what AWS documents.
    ///
    /// One line per check, pass / warn / FAIL, with the fix when it does not pass:
    /// the builder's instance profile allows SSM (AmazonSSMManagedInstanceCore or
    /// equivalent) and its subnet can reach SSM (public IP or VPC endpoints); the group's
    /// subnets are its load balancer's; the target group serves HTTP 5080 with health
    /// check path /; health check type ELB with a grace period of at least 300 s; some
    /// security group admits the Stream Managers' on 3306 (the database's); volumes of at
    /// least 16 GB and not smaller than the image's snapshot; instance protection and the
    /// refresh's protected-instances preference; a one-instance group with max healthy
    /// 100; launch configurations (new accounts cannot create them); a group on
    /// $Latest / $Default; a unique streammanager.ip in the user data. Nothing is changed.
    /// Exits 1 when a check fails (warnings do not); `plan` shows the failing ones too.
    #[command(
        after_help = "Examples:\n  red5-rollout preflight\n  red5-rollout preflight stream-manager --format json\n  red5-rollout preflight --endpoint-url http://127.0.0.1:5000   # the local emulator"
    )]
    Preflight(PreflightArgs),

    /// Remove a group's run lock left by a run that died.
    ///
    /// Never automatic: check that the run named in the lock is really gone first
    /// (`apply` prints the holder when it meets the lock).
    #[command(
        after_help = "Example:\n  red5-rollout unlock red5pro-sm-asg --run 20261124T080000Z-4f2a"
    )]
    Unlock(UnlockArgs),

    /// Tell red5-rollout which release a fleet runs that it did not roll out itself.
    ///
    /// A fleet built by hand, as the Red5 Pro guide does, carries none of red5-rollout's
    /// tags, so `status` and `plan` cannot say which release it runs. `adopt` shows, then
    /// tags, the image the group launches now and the group with the pipeline and VERSION
    /// (its launch template version or launch configuration is known by that image). It
    /// refuses when the group's instances run different configurations, or when the image
    /// already carries another version. With --image it tags only that image, so that a
    /// rollback to VERSION reuses it instead of baking again.
    #[command(
        after_help = "Examples:\n  red5-rollout adopt stream-manager --version 12.3.0\n  red5-rollout adopt stream-manager --version 12.3.0 --image ami-0123456789abcdef0 --yes"
    )]
    Adopt(AdoptArgs),

    /// Delete the images, snapshots, launch template versions and launch configurations the
    /// runner made that no rollback needs any more.
    ///
    /// Launch configurations have a quota of 200 per region, and every image's snapshots
    /// cost money. For each pipeline, gc keeps the --keep newest versions, every version the
    /// pipeline selected at the newest commits of git's first-parent history until --keep
    /// distinct ones are found (what a `git revert` rolls back to: the version selected at
    /// HEAD first, pinned or not), and whatever the group runs, its instances were launched
    /// with, a refresh in flight targets or an unsettled rollout returns to, the template's default
    /// version, and every image a kept or hand-made configuration launches. It deletes the
    /// rest, configurations first, then their images, then the images' snapshots.
    ///
    /// Only what the runner made is ever deleted: images it baked or copied from another
    /// region (tagged red5-rollout:pipeline and red5-rollout:run; an adopted image is never
    /// deleted),
    /// template versions it made (tagged red5-rollout:launch), and launch configurations that
    /// launch an image it baked for the pipeline. Untagged resources are never touched.
    ///
    /// It prints one line per resource with why it goes or stays, asks before deleting
    /// (unless --yes, or CI=true), and holds each group's lease while it deletes: a pipeline
    /// whose group a rollout holds is skipped (exit code 6). --dry-run prints the same list
    /// and deletes nothing.
    #[command(
        after_help = "Examples:\n  red5-rollout gc --dry-run                 # what would go, and why the rest stays\n  red5-rollout gc stream-manager --keep 5 --yes\n  red5-rollout gc --endpoint-url http://127.0.0.1:5000 --yes   # the local emulator"
    )]
    Gc(GcArgs),

    /// Print, as JSON for a workflow's `strategy.matrix`, the pipelines a range of commits
    /// changes.
    ///
    /// A pipeline changes when its own file changes or when the release it selects (by
    /// `track` or `pin`) changes: a new release, a reverted one, a raised pin. Removed
    /// pipelines are not listed (their fleets are left as they are). When --base cannot be
    /// read (a new branch, a force push, a shallow clone), every pipeline is listed. The
    /// JSON goes to stdout, e.g. {"pipeline":["stream-manager"]}; what changed and how goes
    /// to stderr.
    #[command(
        after_help = "Examples:\n  red5-rollout matrix --base HEAD^ --head HEAD\n  red5-rollout matrix --base \"$BEFORE\" --head \"$GITHUB_SHA\"   # in a push workflow, BEFORE=${{ github.event.before }}"
    )]
    Matrix(MatrixArgs),

    /// Follow a branch and apply what changes on it; between commits, report drift.
    ///
    /// A long-lived process for hosts without GitHub Actions: every --interval it fetches
    /// --branch of --remote (https with RED5_ROLLOUT_GIT_TOKEN, ssh through ssh-agent, or
    /// a local path) into a bare copy (--mirror), and applies each pipeline whose file or
    /// selected release changed since the commit its group was last converged at. What was
    /// applied is read from the groups' tags in AWS, not from this host, so a restart or a
    /// second host neither repeats nor skips work; the groups' leases keep two watchers
    /// from acting on one group at once. A failed rollout is recorded on its group and
    /// waits for a commit that changes its pipeline or release (or --retry-failed).
    /// Between commits (every --drift-interval) it reports drift: a group moved to another
    /// configuration by hand, instances on another configuration, changed size bounds, a
    /// launch template's default version moved; --heal corrects it. SIGTERM or Ctrl-C
    /// stops it: at once when idle, after cleaning up as `apply` does when applying.
    #[command(
        after_help = "Examples:\n  red5-rollout watch --remote https://github.com/acme/red5-gitops.git --branch main\n  red5-rollout watch --remote /srv/git/red5-gitops.git --once   # one cycle, for cron\n  red5-rollout watch --remote git@github.com:acme/red5-gitops.git --heal --output json"
    )]
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Pipelines to watch (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    /// The repository to follow: an https or ssh URL, or a local path.
    #[arg(long, value_name = "URL", env = "RED5_ROLLOUT_REMOTE")]
    pub remote: String,

    /// The branch to follow.
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub branch: String,

    /// Where to keep the bare copy of the branch (default: a directory per remote and
    /// branch under ~/.cache/red5-rollout/watch). Nothing there is state: it may be removed.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,

    /// How often to fetch the branch.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub interval: std::time::Duration,

    /// How often to look for drift between commits.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub drift_interval: std::time::Duration,

    /// Correct drift: roll a group moved off its configuration back to the release git
    /// asks for, set changed size bounds and a moved default template version back.
    #[arg(long)]
    pub heal: bool,

    /// Do one cycle (fetch, apply, look for drift) and exit, with apply's exit codes.
    #[arg(long)]
    pub once: bool,

    /// Try again rollouts that failed at their commit (without it they wait for a commit
    /// that changes their pipeline or release).
    #[arg(long)]
    pub retry_failed: bool,

    #[command(flatten)]
    pub aws: AwsArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Pipelines to collect (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    /// How many versions to keep per pipeline, newest first (and as many distinct ones
    /// from git's history, for a revert), at least 1.
    #[arg(long, value_name = "N", default_value_t = crate::gc::DEFAULT_KEEP, value_parser = at_least_one)]
    pub keep: usize,

    /// Print what would be deleted and why the rest stays; delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Do not ask before deleting (implied when CI=true).
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// A count of at least one.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("keep at least 1 version: the one the group runs".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[derive(Debug, Args)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub dir: RepoDir,

    /// The commit before the range (a push's `github.event.before`).
    #[arg(long, value_name = "REV", default_value = "HEAD^")]
    pub base: String,

    /// The commit the range ends at.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub head: String,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The pipeline whose group to adopt (a file name under pipelines/ without .yaml).
    #[arg(value_name = "PIPELINE")]
    pub pipeline: String,

    /// The Red5 Pro release the group (or --image) runs now, e.g. 12.3.0.
    #[arg(long, value_name = "VERSION")]
    pub version: semver::Version,

    /// Tag only this image as VERSION, not the group (an image kept from an earlier
    /// install, so that a rollback reuses it).
    #[arg(long, value_name = "AMI")]
    pub image: Option<String>,

    /// Do not ask before tagging (implied when CI=true).
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Pipelines to apply (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Do not ask before changing anything (implied when CI=true).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Leave the builder instance running at the end, to inspect it.
    #[arg(long)]
    pub keep_builder: bool,

    /// Try again a rollout whose refresh failed, although nothing changed its pipeline or
    /// release since (without it, such a rollout is held).
    #[arg(long)]
    pub retry: bool,

    /// The repository to report to, OWNER/NAME (default: GITHUB_REPOSITORY). With a
    /// GITHUB_TOKEN, each pipeline gets a commit status, a deployment and a comment on the
    /// pull request that brought the commit in (`github.report: false` turns it off).
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// How a run that changes fleets goes and what it shows: `apply`'s and `watch`'s.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How many pipelines run at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,

    /// What stderr carries: `auto` for people (see --progress), `plain` lines with full
    /// timestamps, or `json` lines for tools (docs/events-schema.md).
    #[arg(long, value_enum, default_value_t = crate::report::OutputChoice::Auto)]
    pub output: crate::report::OutputChoice,

    /// How progress shows with `--output auto`: `auto` draws bars on a terminal outside CI
    /// (`CI` set) and plain lines elsewhere; `bar` draws bars on any terminal; `plain`
    /// prints lines; `none` prints nothing until the end.
    #[arg(long, value_enum, default_value_t = crate::report::ProgressChoice::Auto)]
    pub progress: crate::report::ProgressChoice,

    /// How long a group's lease lasts unless renewed (it is renewed every third of it).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub lease: std::time::Duration,

    /// How long after a lease ran out the next run takes it over (its run died).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration)]
    pub lease_grace: std::time::Duration,
}

/// A duration as pipelines write them: `90s`, `20m`, `1h30m`, or seconds.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::model::parse_duration(text)
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The Auto Scaling group whose lock to remove.
    #[arg(value_name = "GROUP")]
    pub group: String,

    /// The run id the lock names (a safety check: the lock is removed only if it matches).
    #[arg(long, value_name = "ID")]
    pub run: String,

    /// The group's region (default: the region of the pipeline that rolls the group).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct AwsArgs {
    /// Send AWS calls to this endpoint instead of AWS (e.g. the local emulator).
    /// Region and credentials come from the standard AWS chain (profile, environment,
    /// instance role); the region of each call is the pipeline's.
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// At most this many AWS calls per second per region, on average, so that a rollout
    /// never crowds out the Stream Manager's own EC2 calls on the account's rate limits.
    /// 0: no limit.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::cloud::meter::DEFAULT_CALLS_PER_SECOND,
        env = "RED5_ROLLOUT_AWS_CALLS_PER_SECOND"
    )]
    pub aws_calls_per_second: f64,

    /// How many AWS calls may go at once after a quiet spell (the budget's burst).
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::cloud::meter::DEFAULT_BURST,
        env = "RED5_ROLLOUT_AWS_CALLS_BURST"
    )]
    pub aws_calls_burst: u32,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pipelines to show (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// How to print the status.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// Pipelines to check (file names under pipelines/ without .yaml); all when none.
    #[arg(value_name = "PIPELINE")]
    pub pipelines: Vec<String>,

    #[command(flatten)]
    pub repo: RepoArgs,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// How to print the checks: `text` (one line each) or `json`.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RepoDir {
    /// The GitOps repository (any directory inside its work tree).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".",
        env = "RED5_ROLLOUT_REPO"
    )]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(flatten)]
    pub dir: RepoDir,

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

    #[command(flatten)]
    pub aws: AwsArgs,

    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Plan to try again a rollout whose refresh failed (as `apply --retry`).
    #[arg(long)]
    pub retry: bool,

    /// Also post the plan as a comment on the pull request (one per pipeline, edited in
    /// place on later pushes). Reads the pull request from GITHUB_EVENT_PATH, the token
    /// from GITHUB_TOKEN and the API from GITHUB_API_URL.
    #[arg(long)]
    pub comment: bool,

    /// The repository to report to, OWNER/NAME (default: GITHUB_REPOSITORY).
    #[arg(long, value_name = "OWNER/NAME")]
    pub github_repo: Option<String>,
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

impl Command {
    /// Whether this command's stderr is a stream of JSON lines (`apply` or `watch` with
    /// `--output json`): its errors are JSON lines too.
    pub fn writes_json_events(&self) -> bool {
        let json = |run: &RunArgs| run.output == crate::report::OutputChoice::Json;
        match self {
            Command::Apply(args) => json(&args.run),
            Command::Watch(args) => json(&args.run),
            _ => false,
        }
    }
}
