//! A pipeline, one file each under `pipelines/`: which Auto Scaling group follows which
//! releases, and how its image is baked, launched and rolled out.
//!
//! The raw form mirrors the YAML and refuses unknown fields. [`Pipeline`] exists only when
//! every rule holds: values AWS would refuse (percentages, sizes, names) and values that
//! would hurt (a template naming a variable that does not exist) are caught here, before
//! anything touches AWS. Defaults follow the Red5 Pro guide: 180 s warm-up, 16 GB volumes,
//! the builder stopped before imaging.

use super::diagnostic::{Diagnostic, Diagnostics, Location};
use super::locate::{Locator, char_in_value};
use super::release::{Scalar, file_stem, parse_version};
use super::template::{Template, TemplateProblem};
use super::yaml;
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    region: String,
    auto_scaling_group: String,
    #[serde(default)]
    track: Option<Scalar>,
    #[serde(default)]
    pin: Option<Scalar>,
    /// Required unless `image.from_pipeline` is set (a promoted pipeline never bakes).
    #[serde(default)]
    builder: Option<RawBuilder>,
    #[serde(default)]
    update: Option<RawUpdate>,
    image: RawImage,
    launch: RawLaunch,
    #[serde(default)]
    refresh: RawRefresh,
    #[serde(default)]
    github: RawGithub,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuilder {
    #[serde(default = "from_group")]
    base_image: String,
    instance_type: String,
    subnet: String,
    security_groups: Vec<String>,
    instance_profile: String,
    #[serde(default)]
    key_pair: Option<String>,
    #[serde(default = "min_volume")]
    volume_size_gb: i64,
    #[serde(default)]
    ready_timeout: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    script: String,
    #[serde(default)]
    execution_timeout: Option<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: String,
    #[serde(default = "yes")]
    stop_before_imaging: bool,
    #[serde(default)]
    timeout: Option<Scalar>,
    #[serde(default)]
    from_pipeline: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunch {
    #[serde(default)]
    kind: LaunchKind,
    #[serde(default)]
    template: Option<String>,
    name: String,
    instance_type: String,
    security_groups: Vec<String>,
    #[serde(default)]
    key_pair: Option<String>,
    #[serde(default)]
    public_ip: Option<bool>,
    #[serde(default = "min_volume")]
    volume_size_gb: i64,
    user_data: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefresh {
    #[serde(default = "default_min_healthy")]
    min_healthy_percentage: i64,
    #[serde(default = "default_max_healthy")]
    max_healthy_percentage: i64,
    #[serde(default)]
    instance_warmup: Option<Scalar>,
    #[serde(default)]
    checkpoints: Vec<i64>,
    #[serde(default)]
    checkpoint_delay: Option<Scalar>,
    #[serde(default)]
    skip_matching: bool,
    #[serde(default)]
    scale_in_protected_instances: HeldInstances,
    #[serde(default)]
    standby_instances: StandbyInstances,
    #[serde(default)]
    timeout: Option<Scalar>,
}

impl Default for RawRefresh {
    fn default() -> Self {
        RawRefresh {
            min_healthy_percentage: default_min_healthy(),
            max_healthy_percentage: default_max_healthy(),
            instance_warmup: None,
            checkpoints: Vec::new(),
            checkpoint_delay: None,
            skip_matching: false,
            scale_in_protected_instances: HeldInstances::default(),
            standby_instances: StandbyInstances::default(),
            timeout: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    #[serde(default = "yes")]
    report: bool,
    /// The GitHub deployment environment (default: the pipeline's name).
    #[serde(default)]
    environment: Option<String>,
}

impl Default for RawGithub {
    fn default() -> Self {
        RawGithub {
            report: true,
            environment: None,
        }
    }
}

fn from_group() -> String {
    FROM_GROUP.to_string()
}
fn min_volume() -> i64 {
    MIN_VOLUME_GB
}
fn yes() -> bool {
    true
}
fn default_min_healthy() -> i64 {
    90
}
fn default_max_healthy() -> i64 {
    100
}

const FROM_GROUP: &str = "from-group";
/// The guide asks for at least 16 GB: a Red5 Pro install with logs fills less very quickly.
pub const MIN_VOLUME_GB: i64 = 16;
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(180);
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
pub const MAX_AMI_NAME: usize = 128;
pub const MAX_LAUNCH_CONFIGURATION_NAME: usize = 255;
pub const MAX_TEMPLATE_NAME: usize = 128;
/// AWS's default pause at each checkpoint of an instance refresh.
pub const DEFAULT_CHECKPOINT_DELAY: Duration = Duration::from_secs(3600);
/// The longest pause AWS accepts at a checkpoint (48 hours).
pub const MAX_CHECKPOINT_DELAY: Duration = Duration::from_secs(172_800);

/// How a new image reaches the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchKind {
    /// A new numbered version of the group's launch template (the default).
    #[default]
    Template,
    /// A new launch configuration, for accounts that still have them.
    Configuration,
}

/// What an instance refresh does with an instance it may not simply replace: one protected
/// from scale-in, or one in standby. AWS's `ScaleInProtectedInstances` and
/// `StandbyInstances` preferences take these three values, written in YAML as AWS spells
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum HeldInstances {
    /// Replace them like every other instance.
    Refresh,
    /// Leave them on the old configuration and replace the others.
    Ignore,
    /// Wait for them to be released, and fail the refresh after an hour (AWS's default).
    #[default]
    Wait,
}

impl HeldInstances {
    /// The value as AWS's RefreshPreferences spell it.
    pub fn as_aws(self) -> &'static str {
        match self {
            HeldInstances::Refresh => "Refresh",
            HeldInstances::Ignore => "Ignore",
            HeldInstances::Wait => "Wait",
        }
    }
}

/// What an instance refresh does with an instance in standby: AWS's `StandbyInstances`
/// takes `Terminate`, `Ignore` or `Wait` (not `Refresh`, unlike protected instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum StandbyInstances {
    /// Terminate them without a replacement.
    Terminate,
    /// Leave them on the old configuration.
    Ignore,
    /// Wait for them to return to service, and fail the refresh after an hour (AWS's
    /// default).
    #[default]
    Wait,
}

impl StandbyInstances {
    /// The value as AWS's RefreshPreferences spell it.
    pub fn as_aws(self) -> &'static str {
        match self {
            StandbyInstances::Terminate => "Terminate",
            StandbyInstances::Ignore => "Ignore",
            StandbyInstances::Wait => "Wait",
        }
    }
}

/// The image the builder starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    /// The AMI the group runs now, read from its launch template version or configuration.
    FromGroup,
    Ami(String),
}

/// Which release a pipeline wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Track(VersionReq),
    Pin(Version),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    pub name: String,
    pub region: String,
    pub auto_scaling_group: String,
    pub target: Target,
    /// How the pipeline bakes; `None` for a pipeline that promotes another's images
    /// (`image.from_pipeline`), which never bakes.
    pub builder: Option<Builder>,
    /// The install the bake runs; `None` exactly when `builder` is.
    pub update: Option<Update>,
    pub image: Image,
    pub launch: Launch,
    pub refresh: Refresh,
    pub github_report: bool,
    /// The GitHub deployment environment its rollouts are recorded in.
    pub github_environment: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    pub base_image: BaseImage,
    pub instance_type: String,
    /// A subnet id, or the value of a subnet's `Name` tag.
    pub subnet: String,
    /// Security group ids, or group names.
    pub security_groups: Vec<String>,
    pub instance_profile: String,
    pub key_pair: Option<String>,
    pub volume_size_gb: u32,
    /// How long the builder may take to run and register with SSM.
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub script: Template,
    pub execution_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: Template,
    pub stop_before_imaging: bool,
    pub timeout: Duration,
    /// Bake once, promote: the pipeline whose images this one rolls out (it never bakes).
    pub from_pipeline: Option<Promotion>,
}

/// Where a promoted pipeline's images come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// The pipeline that bakes them.
    pub pipeline: String,
    /// Its Auto Scaling group, whose tags say which of its rollouts succeeded (set when the
    /// repository's pipelines are checked together; empty until then).
    pub group: String,
    /// Its region (set with `group`). In another region than this pipeline's, each image is
    /// copied here (CopyImage) before it is rolled out.
    pub region: String,
}

impl Promotion {
    /// The baking pipeline's region, when it is not `region` (the promoting pipeline's).
    pub fn other_region(&self, region: &str) -> Option<&str> {
        (!self.region.is_empty() && self.region != region).then_some(self.region.as_str())
    }
}

/// What the group launches from, with what that needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchTarget {
    /// New numbered versions of this launch template (a name or an `lt-` id).
    Template { template: String },
    /// New launch configurations.
    Configuration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub target: LaunchTarget,
    /// The launch configuration name, or the template version's description.
    pub name: Template,
    pub instance_type: String,
    pub security_groups: Vec<String>,
    pub key_pair: Option<String>,
    /// Ask for a public IP on the primary network interface; unset keeps what the launch
    /// template's network interface (or the subnet's auto-assign setting) says.
    pub public_ip: Option<bool>,
    pub volume_size_gb: u32,
    pub user_data: Template,
}

impl Launch {
    /// Template or configuration, without what each needs.
    pub fn kind(&self) -> LaunchKind {
        match self.target {
            LaunchTarget::Template { .. } => LaunchKind::Template,
            LaunchTarget::Configuration => LaunchKind::Configuration,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub min_healthy_percentage: u8,
    pub max_healthy_percentage: u8,
    pub instance_warmup: Duration,
    /// Ascending percentages ending at 100, or empty for no checkpoints.
    pub checkpoints: Vec<u8>,
    /// The pause at each checkpoint below 100 (AWS's `CheckpointDelay`). Meaningful only
    /// with checkpoints: AWS refuses a delay without them, so it is sent only with them.
    pub checkpoint_delay: Duration,
    /// Never true with `launch.kind: configuration`, which AWS does not support.
    pub skip_matching: bool,
    /// AWS's `ScaleInProtectedInstances`.
    pub scale_in_protected_instances: HeldInstances,
    /// AWS's `StandbyInstances`.
    pub standby_instances: StandbyInstances,
    /// Longer than the checkpoint pauses together.
    pub timeout: Duration,
}

impl Refresh {
    /// How long the refresh pauses at its checkpoints in all: one `checkpoint_delay` for
    /// each checkpoint below 100 (the refresh ends at 100).
    pub fn checkpoint_pauses(&self) -> Duration {
        let pausing = self.checkpoints.iter().filter(|p| **p < 100).count();
        self.checkpoint_delay * pausing as u32
    }
}

/// Where the pipeline came from, so that later checks (against a release or the fleet) can
/// still point at the line to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub target_at: Location,
    pub max_healthy_at: Location,
    pub image_name_at: Location,
    /// Where `image.from_pipeline` is, when it is.
    pub from_pipeline_at: Location,
    pub launch_name_at: Location,
    /// The first line of the update script, to which a render error's line is added.
    pub script_at: Location,
    /// The first line of the user data, likewise.
    pub user_data_at: Location,
}

/// Collects the problems of one file while the validated value is built.
struct Checker<'a> {
    file: &'a str,
    at: Locator,
    problems: Diagnostics,
}

impl Checker<'_> {
    fn fail(&mut self, path: &[&str], message: impl Into<String>, hint: impl Into<String>) {
        let location = self.at.value(path);
        self.problems
            .push(Diagnostic::new(self.file, location, message).with_hint(hint));
    }

    fn duration(&mut self, path: &[&str], value: Option<Scalar>, default: Duration) -> Duration {
        self.try_duration(path, value, default).unwrap_or(default)
    }

    /// The duration written at `path`, `default` when none is, and `None` (reported) when
    /// it does not parse, so that rules comparing it with others can stay silent.
    fn try_duration(
        &mut self,
        path: &[&str],
        value: Option<Scalar>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(Scalar(text)) = value else {
            return Some(default);
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(message) => {
                self.fail(
                    path,
                    format!("{}: {message}", path.join(".")),
                    "write a duration such as 90s, 20m, 1h30m, or a number of seconds",
                );
                None
            }
        }
    }

    /// Checks the template at `path` with `parse`: [`Template::parse`] for names,
    /// [`Template::parse_shell`] for what a shell runs.
    fn template(
        &mut self,
        path: &[&str],
        source: &str,
        parse: fn(&str) -> Result<Template, TemplateProblem>,
    ) -> Option<Template> {
        match parse(source) {
            Ok(t) => Some(t),
            Err(problem) => {
                let location = self.at.line_in_value(path, problem.line_offset);
                self.problems.push(
                    Diagnostic::new(
                        self.file,
                        location,
                        format!("{}: {}", path.join("."), problem.message),
                    )
                    .with_hint(problem.hint),
                );
                None
            }
        }
    }

    fn volume(&mut self, path: &[&str], size: i64) -> u32 {
        if !(MIN_VOLUME_GB..=16384).contains(&size) {
            self.fail(
                path,
                format!(
                    "{} is {size} GB; it must be between 16 and 16384",
                    path.join(".")
                ),
                "the Red5 Pro guide asks for volumes of at least 16 GB",
            );
        }
        size.clamp(MIN_VOLUME_GB, 16384) as u32
    }

    fn instance_type(&mut self, path: &[&str], value: &str) {
        let ok = value.split_once('.').is_some_and(|(family, size)| {
            !family.is_empty()
                && !size.is_empty()
                && family
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && size
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
        if !ok {
            self.fail(
                path,
                format!("{} `{value}` is not an EC2 instance type", path.join(".")),
                "write it as AWS names it, e.g. m5.large",
            );
        }
    }

    fn security_groups(&mut self, path: &[&str], groups: &[String]) {
        if groups.is_empty() {
            self.fail(
                path,
                format!("{} is empty", path.join(".")),
                "name at least one security group (an id such as sg-0abc, or a group name)",
            );
        }
    }

    /// Checks the refresh preferences, some against the launch kind, and returns them.
    fn refresh(&mut self, r: RawRefresh, launch_kind: LaunchKind) -> Refresh {
        let (min, max) = (r.min_healthy_percentage, r.max_healthy_percentage);
        if !(0..=100).contains(&min) {
            self.fail(
                &["refresh", "min_healthy_percentage"],
                format!("refresh.min_healthy_percentage is {min}; it must be between 0 and 100"),
                "100 keeps every instance serving during the refresh",
            );
        }
        if !(100..=200).contains(&max) {
            self.fail(
                &["refresh", "max_healthy_percentage"],
                format!("refresh.max_healthy_percentage is {max}; it must be between 100 and 200"),
                "200 launches replacements before terminating (the safe choice for small groups)",
            );
        } else if (0..=100).contains(&min) && max - min > 100 {
            self.fail(
                &["refresh", "max_healthy_percentage"],
                format!("refresh.max_healthy_percentage ({max}) is more than 100 above min_healthy_percentage ({min})"),
                format!("AWS refuses a spread over 100: raise min_healthy_percentage to at least {}", max - 100),
            );
        }
        let mut are_checkpoints_valid = true;
        let mut previous = 0;
        for &point in &r.checkpoints {
            if !(1..=100).contains(&point) || point <= previous {
                self.fail(
                    &["refresh", "checkpoints"],
                    "refresh.checkpoints must be ascending percentages between 1 and 100",
                    "e.g. [50, 100] pauses once half of the group is replaced",
                );
                are_checkpoints_valid = false;
                break;
            }
            previous = point;
        }
        if are_checkpoints_valid
            && let Some(&last) = r.checkpoints.last()
            && last != 100
        {
            self.fail(
                &["refresh", "checkpoints"],
                format!("refresh.checkpoints ends at {last}; the last checkpoint must be 100"),
                "AWS stops replacing at the last checkpoint and calls the refresh successful, leaving old instances: end the list with 100, e.g. [50, 100]",
            );
            are_checkpoints_valid = false;
        }
        let is_delay_written = r.checkpoint_delay.is_some();
        let checkpoint_delay = self.try_duration(
            &["refresh", "checkpoint_delay"],
            r.checkpoint_delay,
            DEFAULT_CHECKPOINT_DELAY,
        );
        let checkpoint_delay = match checkpoint_delay {
            Some(delay) if delay > MAX_CHECKPOINT_DELAY => {
                self.fail(
                    &["refresh", "checkpoint_delay"],
                    format!(
                        "refresh.checkpoint_delay is {}; it must be between 0s and 48h",
                        format_duration(delay)
                    ),
                    "AWS accepts 0 to 172800 seconds",
                );
                None
            }
            Some(_) if is_delay_written && r.checkpoints.is_empty() => {
                self.fail(
                    &["refresh", "checkpoint_delay"],
                    "refresh.checkpoint_delay is set but refresh.checkpoints is not",
                    "AWS accepts a checkpoint delay only with checkpoints: add `checkpoints: [50, 100]`, or remove checkpoint_delay",
                );
                None
            }
            delay => delay,
        };
        if r.skip_matching && launch_kind == LaunchKind::Configuration {
            self.fail(
                &["refresh", "skip_matching"],
                "refresh.skip_matching is true but launch.kind is `configuration`",
                "AWS supports skip matching only when the refresh carries a launch template: remove skip_matching",
            );
        }
        let instance_warmup = self.duration(
            &["refresh", "instance_warmup"],
            r.instance_warmup,
            DEFAULT_WARMUP,
        );
        let refresh_timeout =
            self.try_duration(&["refresh", "timeout"], r.timeout, DEFAULT_REFRESH_TIMEOUT);
        let refresh = Refresh {
            min_healthy_percentage: min as u8,
            max_healthy_percentage: max as u8,
            instance_warmup,
            checkpoints: r.checkpoints.iter().map(|p| *p as u8).collect(),
            checkpoint_delay: checkpoint_delay.unwrap_or(DEFAULT_CHECKPOINT_DELAY),
            skip_matching: r.skip_matching,
            scale_in_protected_instances: r.scale_in_protected_instances,
            standby_instances: r.standby_instances,
            timeout: refresh_timeout.unwrap_or(DEFAULT_REFRESH_TIMEOUT),
        };
        if are_checkpoints_valid
            && checkpoint_delay.is_some()
            && refresh_timeout.is_some()
            && refresh.checkpoint_pauses() >= refresh.timeout
        {
            // Point at the value to change: the timeout if written, else the delay, else
            // the checkpoints that pause for AWS's default delay.
            let path = [["refresh", "timeout"], ["refresh", "checkpoint_delay"]]
                .into_iter()
                .find(|path| self.at.has(path))
                .unwrap_or(["refresh", "checkpoints"]);
            let pausing = refresh.checkpoints.iter().filter(|p| **p < 100).count();
            self.fail(
                &path,
                format!(
                    "refresh.timeout is {}, and the checkpoints alone pause {} ({pausing} × checkpoint_delay {})",
                    format_duration(refresh.timeout),
                    format_duration(refresh.checkpoint_pauses()),
                    format_duration(refresh.checkpoint_delay),
                ),
                format!(
                    "raise refresh.timeout above {} plus the time the replacements take, or lower refresh.checkpoint_delay",
                    format_duration(refresh.checkpoint_pauses()),
                ),
            );
        }
        refresh
    }
}

impl Checker<'_> {
    /// Checks the pipeline's name against its file, its region and its group's name.
    fn identity(&mut self, raw: &RawPipeline, text: &str) {
        let file = self.file;
        let stem = file_stem(file);
        if raw.name != stem {
            self.fail(
                &["name"],
                format!(
                    "pipeline name `{}` does not match the file name `{stem}`",
                    raw.name
                ),
                format!(
                    "name the file pipelines/{}.yaml, or set `name: {stem}`",
                    raw.name
                ),
            );
        } else if raw.name.is_empty()
            || !raw
                .name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            self.fail(
                &["name"],
                format!(
                    "pipeline name `{}` may only hold a-z, 0-9 and '-'",
                    raw.name
                ),
                "the name goes into AWS tags and lock names; e.g. stream-manager",
            );
        }
        if !is_region(&raw.region) {
            self.fail(
                &["region"],
                format!("region `{}` is not an AWS region", raw.region),
                "write a region code such as us-east-1",
            );
        }
        let group = raw.auto_scaling_group.trim();
        if group.is_empty() || group.len() > 255 {
            self.fail(
                &["auto_scaling_group"],
                "auto_scaling_group must be 1 to 255 characters",
                "write the name of the Auto Scaling group this pipeline rolls",
            );
        } else if let Some(bad) = group.chars().find(|ch| !is_lock_name_char(*ch)) {
            // The run lock is the SSM parameter /red5-rollout/locks/<group>; a group whose
            // name SSM refuses could be planned but never applied.
            let at = char_in_value(text, self.at.value(&["auto_scaling_group"]), bad);
            self.problems.push(
                Diagnostic::new(
                    file,
                    at,
                    format!("auto_scaling_group `{group}` contains {bad:?}, which the run lock's SSM parameter name may not hold"),
                )
                .with_hint(format!(
                    "the runner locks the group in the SSM parameter /red5-rollout/locks/{group}, whose name allows only a-z, A-Z, 0-9, '_', '.' and '-': roll a group named with those"
                )),
            );
        }
    }

    /// Which releases the pipeline follows: `track` or `pin`, never both.
    fn target(&mut self, track: Option<Scalar>, pin: Option<Scalar>) -> Option<Target> {
        match (track, pin) {
            (Some(_), Some(_)) => {
                self.fail(
                    &["pin"],
                    "a pipeline has either `track` or `pin`, not both",
                    "keep `pin` to hold one exact version, or `track` to follow the newest match",
                );
                None
            }
            (None, None) => {
                self.fail(
                    &["name"],
                    "the pipeline has neither `track` nor `pin`",
                    "add `track: \"^12\"` to follow the newest 12.x release, or `pin: 12.4.0`",
                );
                None
            }
            (Some(Scalar(track)), None) => match VersionReq::parse(track.trim()) {
                Ok(req) => Some(Target::Track(req)),
                Err(err) => {
                    self.fail(
                        &["track"],
                        format!("track `{track}` is not a semver requirement ({err})"),
                        "write a requirement such as \"^12\", \"~12.4\" or \">=12.3, <13\" (quoted)",
                    );
                    None
                }
            },
            (None, Some(Scalar(pin))) => match parse_version(pin.trim()) {
                Ok(v) => Some(Target::Pin(v)),
                Err((message, hint)) => {
                    self.fail(&["pin"], format!("pin: {message}"), hint);
                    None
                }
            },
        }
    }

    /// The `builder` and `update` blocks: both for a pipeline that bakes, neither for one
    /// that promotes another's images. `update` is `None` also when its script is wrong
    /// (reported).
    fn bake(
        &mut self,
        builder: Option<RawBuilder>,
        update: Option<RawUpdate>,
        promoted: bool,
    ) -> (Option<Builder>, Option<Update>) {
        if promoted {
            let unused: Vec<&str> = [("builder", builder.is_some()), ("update", update.is_some())]
                .into_iter()
                .filter_map(|(block, present)| present.then_some(block))
                .collect();
            if let Some(first) = unused.first() {
                let (blocks, verb, them) = match unused.as_slice() {
                    [one] => ((*one).to_string(), "is", "block"),
                    _ => (unused.join(" and "), "are", "blocks"),
                };
                let location = self.at.key(&[first]);
                self.problems.push(
                    Diagnostic::new(
                        self.file,
                        location,
                        format!("{blocks} {verb} not used: a pipeline with image.from_pipeline never bakes, it rolls out the images of the pipeline it names"),
                    )
                    .with_hint(format!("remove the {blocks} {them}, or image.from_pipeline to bake here")),
                );
            }
            return (None, None);
        }
        for (block, present) in [("builder", builder.is_some()), ("update", update.is_some())] {
            if !present {
                self.problems.push(
                    Diagnostic::new(
                        self.file,
                        Location::START,
                        format!("missing field `{block}`: a pipeline bakes its images with a builder and an update script"),
                    )
                    .with_hint(format!("add the {block} block (see README.md, \"Writing a pipeline\"), or set image.from_pipeline to roll out another pipeline's images")),
                );
            }
        }
        let builder = builder.map(|b| self.builder(b));
        let update = update.and_then(|u| self.update(u));
        (builder, update)
    }

    fn builder(&mut self, b: RawBuilder) -> Builder {
        let base_image = if b.base_image == FROM_GROUP {
            BaseImage::FromGroup
        } else if is_ami_id(&b.base_image) {
            BaseImage::Ami(b.base_image.clone())
        } else {
            self.fail(
                &["builder", "base_image"],
                format!("builder.base_image `{}` is neither `from-group` nor an AMI id", b.base_image),
                "use `from-group` to start from the image the group runs now, or an id such as ami-0abc1234",
            );
            BaseImage::FromGroup
        };
        self.instance_type(&["builder", "instance_type"], &b.instance_type);
        self.security_groups(&["builder", "security_groups"], &b.security_groups);
        if b.subnet.trim().is_empty() {
            self.fail(
                &["builder", "subnet"],
                "builder.subnet is empty",
                "name the subnet the builder runs in: an id (subnet-0abc) or its Name tag",
            );
        }
        if b.instance_profile.trim().is_empty() {
            self.fail(
                &["builder", "instance_profile"],
                "builder.instance_profile is empty",
                "the builder needs an instance profile with AmazonSSMManagedInstanceCore to receive the update",
            );
        }
        Builder {
            base_image,
            instance_type: b.instance_type,
            subnet: b.subnet,
            security_groups: b.security_groups,
            instance_profile: b.instance_profile,
            key_pair: b.key_pair,
            volume_size_gb: self.volume(&["builder", "volume_size_gb"], b.volume_size_gb),
            ready_timeout: self.duration(
                &["builder", "ready_timeout"],
                b.ready_timeout,
                Duration::from_secs(15 * 60),
            ),
        }
    }

    fn update(&mut self, u: RawUpdate) -> Option<Update> {
        let execution_timeout = self.duration(
            &["update", "execution_timeout"],
            u.execution_timeout,
            Duration::from_secs(3600),
        );
        if !(1..=172_800).contains(&execution_timeout.as_secs()) {
            self.fail(
                &["update", "execution_timeout"],
                "update.execution_timeout must be between 1s and 48h",
                "SSM's AWS-RunShellScript accepts 1 to 172800 seconds",
            );
        }
        let script = self.template(&["update", "script"], &u.script, Template::parse_shell);

        Some(Update {
            script: script?,
            execution_timeout,
        })
    }

    fn image(&mut self, i: RawImage) -> Option<Image> {
        let image_name = self.template(&["image", "name"], &i.name, Template::parse);
        let image_timeout = self.duration(
            &["image", "timeout"],
            i.timeout,
            Duration::from_secs(45 * 60),
        );

        let from_pipeline = match i.from_pipeline.as_deref().map(str::trim) {
            Some("") => {
                self.fail(
                    &["image", "from_pipeline"],
                    "image.from_pipeline is empty",
                    "name the pipeline whose images this one rolls out (its file name under pipelines/ without .yaml), or remove the line to bake here",
                );
                None
            }
            Some(name) => Some(Promotion {
                pipeline: name.to_string(),
                group: String::new(),
                region: String::new(),
            }),
            None => None,
        };
        Some(Image {
            name: image_name?,
            stop_before_imaging: i.stop_before_imaging,
            timeout: image_timeout,
            from_pipeline,
        })
    }

    /// Checks the launch settings, the volume against the builder's (whose volume becomes
    /// the image's root snapshot).
    fn launch(&mut self, l: RawLaunch, builder_volume: Option<u32>) -> Option<Launch> {
        match (l.kind, &l.template) {
            (LaunchKind::Template, None) => self.fail(
                &["launch", "kind"],
                "launch.kind is `template` but launch.template is missing",
                "add `template: NAME` naming the group's launch template",
            ),
            (LaunchKind::Configuration, Some(_)) => self.fail(
                &["launch", "template"],
                "launch.template is set but launch.kind is `configuration`",
                "remove `template`, or set `kind: template`",
            ),
            (LaunchKind::Template, Some(name))
                if name.trim().is_empty() || name.len() > MAX_TEMPLATE_NAME =>
            {
                self.fail(
                    &["launch", "template"],
                    "launch.template must be 1 to 128 characters",
                    "write the name of the group's launch template",
                )
            }
            _ => {}
        }
        self.instance_type(&["launch", "instance_type"], &l.instance_type);
        self.security_groups(&["launch", "security_groups"], &l.security_groups);
        let launch_name = self.template(&["launch", "name"], &l.name, Template::parse);
        let user_data = self.template(
            &["launch", "user_data"],
            &l.user_data,
            Template::parse_shell,
        );
        let launch_volume = self.volume(&["launch", "volume_size_gb"], l.volume_size_gb);
        // The new image's root snapshot is the builder's root volume: a fleet volume smaller
        // than it fails every launch. (A promoted image's snapshot is checked by the plan.)
        if let Some(builder_volume) = builder_volume
            && l.volume_size_gb >= MIN_VOLUME_GB
            && launch_volume < builder_volume
        {
            self.fail(
                &["launch", "volume_size_gb"],
                format!(
                    "launch.volume_size_gb ({launch_volume}) is smaller than builder.volume_size_gb ({}): the new image's root snapshot is the builder's volume, and AWS fails every launch with a smaller volume (InvalidBlockDeviceMapping)",
                    builder_volume
                ),
                format!(
                    "set launch.volume_size_gb to at least {}, or make the builder's volume smaller",
                    builder_volume
                ),
            );
        }

        Some(Launch {
            target: match (l.kind, l.template) {
                (LaunchKind::Template, Some(template)) => LaunchTarget::Template { template },
                _ => LaunchTarget::Configuration,
            },
            name: launch_name?,
            instance_type: l.instance_type,
            security_groups: l.security_groups,
            key_pair: l.key_pair,
            public_ip: l.public_ip,
            volume_size_gb: launch_volume,
            user_data: user_data?,
        })
    }
}

impl Pipeline {
    /// Parses and checks the pipeline file at `file` (a repository path) with content `text`.
    /// Every problem is collected, each with its line and fix, before any is returned.
    pub fn from_yaml(file: &str, text: &str) -> Result<Pipeline, Diagnostics> {
        let raw: RawPipeline = yaml::parse(file, text).map_err(|d| Diagnostics(vec![d]))?;
        let mut c = Checker {
            file,
            at: Locator::new(text),
            problems: Diagnostics::default(),
        };
        c.identity(&raw, text);
        let group = raw.auto_scaling_group.trim().to_string();
        let target = c.target(raw.track, raw.pin);
        let promoted = raw.image.from_pipeline.is_some();
        let image = c.image(raw.image);
        let (builder, update) = c.bake(raw.builder, raw.update, promoted);
        let launch_kind = raw.launch.kind;
        let launch = c.launch(raw.launch, builder.as_ref().map(|b| b.volume_size_gb));
        let refresh = c.refresh(raw.refresh, launch_kind);
        let origin = Origin {
            file: file.to_string(),
            target_at: c.at.value(&[if c.at.key(&["pin"]).line > 1 {
                "pin"
            } else {
                "track"
            }]),
            max_healthy_at: c.at.value(&["refresh", "max_healthy_percentage"]),
            image_name_at: c.at.value(&["image", "name"]),
            from_pipeline_at: c.at.value(&["image", "from_pipeline"]),
            launch_name_at: c.at.value(&["launch", "name"]),
            script_at: c.at.line_in_value(&["update", "script"], 0),
            user_data_at: c.at.line_in_value(&["launch", "user_data"], 0),
        };
        match (target, update, image, launch) {
            (Some(target), update, Some(image), Some(launch)) if c.problems.is_empty() => {
                let github_environment = raw
                    .github
                    .environment
                    .filter(|e| !e.trim().is_empty())
                    .unwrap_or_else(|| raw.name.clone());
                Ok(Pipeline {
                    name: raw.name,
                    region: raw.region,
                    auto_scaling_group: group,
                    target,
                    builder,
                    update,
                    image,
                    launch,
                    refresh,
                    github_report: raw.github.report,
                    github_environment,
                    origin,
                })
            }
            _ => Err(c.problems),
        }
    }

    /// The most a launch name may hold for this pipeline's launch kind.
    pub fn max_launch_name(&self) -> usize {
        match self.launch.kind() {
            LaunchKind::Template => MAX_TEMPLATE_NAME,
            LaunchKind::Configuration => MAX_LAUNCH_CONFIGURATION_NAME,
        }
    }
}

/// Parses `90s`, `20m`, `1h30m`, `2h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let unit = match ch {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("`{text}` is not a duration")),
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration"))?;
        total = value
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs(total))
}

/// A duration in the syntax [`parse_duration`] reads, shortest form: `45s`, `3m`, `1h30m`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, 'h'), (m, 'm'), (s, 's')] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Whether `ch` may appear in the group's part of the lock's SSM parameter name. SSM allows
/// `a-zA-Z0-9_.-` and `/`, which would split the name into levels.
fn is_lock_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-')
}

fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

fn is_ami_id(text: &str) -> bool {
    text.strip_prefix("ami-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("180"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("9999999999999999h"),
            Err("`9999999999999999h` is too long a duration".to_string())
        );
    }

    #[test]
    fn durations_are_written_as_they_are_read() {
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (3600, "1h"),
            (5400, "1h30m"),
            (7261, "2h1m1s"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)));
        }
    }

    #[test]
    fn lock_names_take_what_ssm_takes_but_slashes() {
        assert!("Red5Pro_SM.asg-2".chars().all(is_lock_name_char));
        for bad in [' ', '/', '@', ':', 'é'] {
            assert!(!is_lock_name_char(bad), "{bad:?}");
        }
    }

    #[test]
    fn regions_and_amis() {
        assert!(is_region("us-east-1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("useast1"));
        assert!(is_ami_id("ami-0abc1234"));
        assert!(!is_ami_id("ami-xyz"));
    }
}
