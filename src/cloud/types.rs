//! The values the [`Cloud`](super::Cloud) verbs take and return: AWS resources in the
//! runner's words, with only what the stages and `status` need.

pub use crate::model::{HeldInstances, StandbyInstances};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Tag keys the runner writes; resources are found by them, never by guessing names.
pub const TAG_PIPELINE: &str = "red5-rollout:pipeline";
pub const TAG_VERSION: &str = "red5-rollout:version";
pub const TAG_COMMIT: &str = "red5-rollout:commit";
pub const TAG_RUN: &str = "red5-rollout:run";
/// Marks a builder instance (value: the version it bakes).
pub const TAG_ROLE: &str = "red5-rollout:role";
/// Set on a builder once the update script succeeded on it.
pub const TAG_UPDATED: &str = "red5-rollout:updated";
/// Set on a group whose refresh failed: "VERSION COMMIT", emptied by the next success. A
/// failed rollout is not tried again until a commit changes its pipeline or release.
pub const TAG_FAILED: &str = "red5-rollout:failed";
/// The launch signature ([`crate::model::LaunchSignature`]) a template version's instances, or
/// the group once it runs one, were launched with.
pub const TAG_LAUNCH: &str = "red5-rollout:launch";
/// Set on an image: the image it was baked from.
pub const TAG_SOURCE_IMAGE: &str = "red5-rollout:source-image";
/// Set on a group when a rollout converges (and by `adopt`): which configuration it left
/// the group on and the image that configuration launches, as `HASH@IMAGE`, HASH standing
/// for the configuration (see [`Group::converged_image`]).
pub const TAG_CONVERGED: &str = "red5-rollout:converged";
/// Set on a group when a rollout converges: the versions whose rollouts to it succeeded,
/// newest last, at most [`SUCCEEDED_KEPT`] (what a pipeline promoting its images asks).
pub const TAG_SUCCEEDED: &str = "red5-rollout:succeeded";
/// How many versions [`TAG_SUCCEEDED`] keeps.
pub const SUCCEEDED_KEPT: usize = 12;

/// The versions a [`TAG_SUCCEEDED`] value holds.
pub fn succeeded_versions(value: &str) -> Vec<semver::Version> {
    value
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// The [`TAG_SUCCEEDED`] value once `version` succeeded too: it moves to the end, and the
/// oldest entries go beyond [`SUCCEEDED_KEPT`].
pub fn succeeded_tag(value: Option<&str>, version: &semver::Version) -> String {
    let mut versions: Vec<semver::Version> = value
        .map(succeeded_versions)
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v != version)
        .collect();
    versions.push(version.clone());
    let skip = versions.len().saturating_sub(SUCCEEDED_KEPT);
    versions
        .iter()
        .skip(skip)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Set on an image copied from another region for a promoting pipeline: `REGION/ami-…`,
/// the image it is a copy of.
pub const TAG_COPY_OF: &str = "red5-rollout:copy-of";
/// Set on such a copy: the pipeline that baked the image (the copy's own
/// `red5-rollout:pipeline` is the promoting pipeline, whose `gc` looks after it).
pub const TAG_BAKED_BY: &str = "red5-rollout:baked-by";

/// Set on a group when a rollout converges (and by `adopt`): its minimum and maximum size
/// then, `min=1 max=4`, to tell a hand change from the runner's.
pub const TAG_BOUNDS: &str = "red5-rollout:bounds";
/// Set on a launch template group when a rollout converges: the template's default version
/// number then, to tell when someone moved it.
pub const TAG_TEMPLATE_DEFAULT: &str = "red5-rollout:template-default";

pub type Tags = BTreeMap<String, String>;

/// An EC2 instance's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl InstanceState {
    pub fn parse(text: &str) -> Option<InstanceState> {
        Some(match text {
            "pending" => InstanceState::Pending,
            "running" => InstanceState::Running,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            "shutting-down" => InstanceState::ShuttingDown,
            "terminated" => InstanceState::Terminated,
            _ => return None,
        })
    }

    /// Whether the instance still exists in a form that costs money or can be adopted.
    pub fn is_alive(self) -> bool {
        !matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub state: InstanceState,
    pub image_id: Option<String>,
    pub tags: Tags,
}

/// An AMI's state as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageStatus {
    Pending,
    Available,
    /// Failed, with AWS's reason when it gave one.
    Failed(Option<String>),
    /// Deregistered, disabled or another state the runner cannot use.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub status: ImageStatus,
    pub tags: Tags,
    /// The root device, when AWS reports it (always for available EBS-backed images).
    pub root_device: Option<RootDevice>,
    /// The EBS snapshots of its block device mappings: what the image costs while it is
    /// kept, and what `gc` deletes after deregistering it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
}

/// An image's root device: its name (`/dev/xvda` on many Linux AMIs, `/dev/sda1` on
/// others) and the size of its snapshot, the smallest volume an instance may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootDevice {
    pub name: String,
    pub snapshot_size_gb: Option<u32>,
}

/// Used where an image does not say (the root device name of most Ubuntu AMIs).
pub const FALLBACK_ROOT_DEVICE: &str = "/dev/sda1";

impl Image {
    /// The root device name instances of this image boot from.
    pub fn root_device_name(&self) -> &str {
        self.root_device
            .as_ref()
            .map_or(FALLBACK_ROOT_DEVICE, |r| r.name.as_str())
    }

    pub fn snapshot_size_gb(&self) -> Option<u32> {
        self.root_device.as_ref().and_then(|r| r.snapshot_size_gb)
    }
}

/// What the group launches instances from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum GroupConfig {
    /// A launch template at a version; `version` is what the group names (`"3"`, `$Latest`).
    Template {
        id: String,
        name: String,
        version: String,
    },
    Configuration {
        name: String,
    },
    /// A mixed instances policy or nothing the runner manages.
    Other,
}

/// The launch template versions a group can name instead of a number. AWS cannot roll back
/// a refresh of a group that names one, and a group on `$Latest` launches every new
/// version for each scale-out.
pub fn is_version_alias(version: &str) -> bool {
    matches!(version, "$Latest" | "$Default")
}

impl GroupConfig {
    /// The alias (`$Latest` / `$Default`) the group names instead of a version number.
    pub fn version_alias(&self) -> Option<&str> {
        match self {
            GroupConfig::Template { version, .. } if is_version_alias(version) => Some(version),
            _ => None,
        }
    }

    /// Whether this is launch template version `id` or launch configuration `id`.
    pub fn is(&self, id: &str) -> bool {
        match self {
            GroupConfig::Template { version, .. } => version == id,
            GroupConfig::Configuration { name } => name == id,
            GroupConfig::Other => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupInstance {
    pub id: String,
    pub lifecycle_state: String,
    pub health_status: String,
    /// The launch template version or configuration this instance was launched with.
    pub config: GroupConfig,
    /// Scale-in protection: a refresh with the preference `Wait` waits an hour for such an
    /// instance, then fails.
    pub protected_from_scale_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub config: GroupConfig,
    pub subnets: Vec<String>,
    /// The target groups the group registers its instances with (their ARNs).
    pub target_groups: Vec<String>,
    pub health_check_type: String,
    pub health_check_grace_period: u32,
    pub instances: Vec<GroupInstance>,
    pub tags: Tags,
    /// New instances are launched protected from scale-in (the guide's advice with WebRTC).
    pub new_instances_protected: bool,
}

impl Group {
    /// Whether any instance is, or new instances will be, protected from scale-in.
    pub fn protects_instances(&self) -> bool {
        self.new_instances_protected || self.instances.iter().any(|i| i.protected_from_scale_in)
    }

    /// The [`TAG_CONVERGED`] value recording that this group, on its present configuration,
    /// launches `image`; none for a group on `$Latest` / `$Default` or on no configuration
    /// the runner manages.
    pub fn converged_tag(&self, image: &str) -> Option<String> {
        Some(format!("{}@{image}", config_key(&self.config)?))
    }

    /// Whether the group is on the configuration its [`TAG_CONVERGED`] record names; none
    /// when there is no record (or the group names an alias).
    pub fn on_recorded_config(&self) -> Option<bool> {
        let (key, _) = self.tags.get(TAG_CONVERGED)?.split_once('@')?;
        Some(key == config_key(&self.config)?)
    }

    /// The instances certainly launched with another configuration than the group's (one
    /// launched from `$Latest` / `$Default`, or a group naming one, may be on any number).
    pub fn strays(&self) -> impl Iterator<Item = &GroupInstance> {
        let alias = |c: &GroupConfig| c.version_alias().is_some();
        self.instances.iter().filter(move |i| {
            !same_config(&i.config, &self.config) && !alias(&i.config) && !alias(&self.config)
        })
    }

    /// The [`TAG_BOUNDS`] value for the group's present bounds.
    pub fn bounds_tag(&self) -> String {
        format!("min={} max={}", self.min_size, self.max_size)
    }

    /// The bounds its [`TAG_BOUNDS`] record holds, (min, max).
    pub fn recorded_bounds(&self) -> Option<(u32, u32)> {
        let text = self.tags.get(TAG_BOUNDS)?;
        let (min, max) = text.split_once(' ')?;
        Some((
            min.strip_prefix("min=")?.parse().ok()?,
            max.strip_prefix("max=")?.parse().ok()?,
        ))
    }

    /// The image the group visibly runs, without reading its configuration: when its
    /// [`TAG_CONVERGED`] record names its present configuration, no failed rollout is
    /// recorded, and exactly the desired number of instances are in service, all launched
    /// with that configuration. A refresh, a scale-out, a hand change or a failed rollout
    /// each break one of these, and the configuration is then read as usual.
    pub fn converged_image(&self) -> Option<&str> {
        let (key, image) = self.tags.get(TAG_CONVERGED)?.split_once('@')?;
        let settled = key == config_key(&self.config)?
            && !image.is_empty()
            && self.tags.get(TAG_FAILED).is_none_or(String::is_empty)
            && self.instances.len() == self.desired_capacity as usize
            && self
                .instances
                .iter()
                .all(|i| same_config(&i.config, &self.config) && i.lifecycle_state == "InService");
        settled.then_some(image)
    }
}

/// Whether an instance's configuration is the group's (DescribeAutoScalingGroups may name a
/// template by id or by name for either).
fn same_config(instance: &GroupConfig, group: &GroupConfig) -> bool {
    match (instance, group) {
        (
            GroupConfig::Template {
                id: a,
                name: b,
                version: c,
            },
            GroupConfig::Template {
                id: x,
                name: y,
                version: z,
            },
        ) => c == z && (a == x || b == y),
        (a, b) => a == b,
    }
}

/// A short key for a configuration, from what DescribeAutoScalingGroups says of it: a hash
/// (tag values allow few characters, configuration names many).
fn config_key(config: &GroupConfig) -> Option<String> {
    let text = match config {
        GroupConfig::Template { name, version, .. } if !is_version_alias(version) => {
            format!("template\n{name}\n{version}")
        }
        GroupConfig::Configuration { name } => format!("configuration\n{name}"),
        _ => return None,
    };
    Some(format!("{:016x}", crate::model::fnv1a(text.as_bytes())))
}

/// A launch template and the version numbers its aliases stand for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub default_version: u64,
    pub latest_version: u64,
}

impl LaunchTemplate {
    /// The version number `version` (a number, `$Latest` or `$Default`) stands for.
    pub fn resolve(&self, version: &str) -> Option<u64> {
        match version {
            "$Latest" => Some(self.latest_version),
            "$Default" => Some(self.default_version),
            number => number.parse().ok(),
        }
    }
}

/// A launch template version or a launch configuration, with the image it launches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchConfig {
    /// The template version number (`"3"`) or the configuration's name.
    pub id: String,
    pub image_id: String,
    /// The template version's description, or the configuration's name.
    pub description: String,
    /// The launch signature recorded in a template version's instance tags
    /// ([`TAG_LAUNCH`]); launch configurations carry no tags.
    pub launch: Option<String>,
    /// When it was made, in seconds since the Unix epoch (CreatedTime / CreateTime).
    pub created: Option<i64>,
}

/// Everything needed to launch a builder instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderSpec {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: String,
    pub key_pair: Option<String>,
    pub volume_size_gb: u32,
    /// The image's root device name, which the volume size applies to.
    pub root_device_name: String,
    /// Idempotency token: a retried launch with the same token launches nothing new. At most
    /// 64 ASCII characters, unique per pipeline, region, version and run (AWS refuses the
    /// same token with other parameters).
    pub client_token: String,
    pub tags: Tags,
}

/// A copy of another region's image into this one (bake once, promote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCopy {
    pub source_region: String,
    pub source_image: String,
    /// The copy's name (unique among the account's images of this region).
    pub name: String,
    /// Idempotency token: a retried copy with the same token copies nothing new. At most 64
    /// ASCII characters.
    pub client_token: String,
    /// On the copy and its snapshots, from the copy's creation on.
    pub tags: Tags,
}

/// Everything needed for a new launch template version or launch configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The configuration name, or the template version's description.
    pub name: String,
    pub image_id: String,
    pub instance_type: String,
    pub security_group_ids: Vec<String>,
    pub key_pair: Option<String>,
    /// Ask for a public IP on the primary network interface; `None` keeps what the template
    /// says (or, for a configuration, what the subnet's auto-assign setting says).
    pub public_ip: Option<bool>,
    pub volume_size_gb: u32,
    /// The image's root device name, which the volume size applies to.
    pub root_device_name: String,
    /// The user data as text; the adapter encodes it.
    pub user_data: String,
    pub tags: Tags,
}

/// An Elastic Load Balancing target group, with what the Red5 Pro guide sets on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    /// `HTTP`, `HTTPS`, `TCP`... as AWS spells it.
    pub protocol: Option<String>,
    pub port: Option<u16>,
    pub health_check_protocol: Option<String>,
    /// Only HTTP and HTTPS health checks have a path.
    pub health_check_path: Option<String>,
    /// The load balancers that route to it (their ARNs).
    pub load_balancers: Vec<String>,
}

/// A load balancer and the subnets it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub subnets: Vec<String>,
}

/// A subnet, with whether instances launched in it get a public IP by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub maps_public_ip: bool,
}

/// One inbound rule of a security group that lets another security group in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressRule {
    /// The security group the rule belongs to (the database's, say).
    pub group_id: String,
    pub group_name: String,
    /// `tcp`, `udp`, `icmp` or `-1` (all traffic), as AWS spells it.
    pub protocol: String,
    /// The port range; AWS leaves it out for all traffic.
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    /// The security groups the rule admits.
    pub sources: Vec<String>,
}

impl IngressRule {
    /// Whether the rule admits TCP traffic on `port`.
    pub fn admits_tcp(&self, port: i32) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => match (self.from_port, self.to_port) {
                (Some(from), Some(to)) => (from..=to).contains(&port),
                _ => true,
            },
            _ => false,
        }
    }
}

/// The policies attached to an IAM role: managed policies by ARN, inline ones by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RolePolicies {
    pub attached: Vec<String>,
    pub inline: Vec<String>,
}

/// A command sent to an instance, as SSM lists it: found again by a run that resumes the
/// work of one that died, so that an install in flight is followed, never sent twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentCommand {
    pub id: String,
    pub comment: String,
    pub status: CommandStatus,
}

/// An SSM command's state on one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandResult {
    pub status: CommandStatus,
    /// The script's exit code; -1 when it never started.
    pub response_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CommandResult {
    /// SSM keeps only the first 24,000 characters of output.
    pub const STDOUT_LIMIT: usize = 24_000;
    pub const STDERR_LIMIT: usize = 8_000;

    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    pub fn is_success(&self) -> bool {
        self.status == CommandStatus::Success
    }

    /// Whether SSM may have cut the output (it reached SSM's limit).
    pub fn is_truncated(&self) -> bool {
        self.stdout.chars().count() >= Self::STDOUT_LIMIT
            || self.stderr.chars().count() >= Self::STDERR_LIMIT
    }
}

/// How an instance refresh runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSpec {
    /// Pin the refresh to this launch template version (and let AWS roll back to the
    /// previous one on failure). `None` refreshes to the group's current configuration.
    pub desired_template: Option<(String, String)>,
    pub auto_rollback: bool,
    pub min_healthy_percentage: u8,
    pub max_healthy_percentage: u8,
    pub instance_warmup: Duration,
    pub skip_matching: bool,
    pub checkpoints: Vec<u8>,
    /// The pause after each checkpoint; AWS's default (one hour) when `None`.
    pub checkpoint_delay: Option<Duration>,
    pub scale_in_protected_instances: HeldInstances,
    pub standby_instances: StandbyInstances,
}

/// A command invocation's status, as SSM names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandStatus {
    Pending,
    InProgress,
    Delayed,
    Success,
    Cancelled,
    TimedOut,
    Failed,
    Cancelling,
    /// A status this runner does not know; treated as still running.
    Other(String),
}

impl CommandStatus {
    pub fn parse(text: &str) -> CommandStatus {
        match text {
            "Pending" => CommandStatus::Pending,
            "InProgress" => CommandStatus::InProgress,
            "Delayed" => CommandStatus::Delayed,
            "Success" => CommandStatus::Success,
            "Cancelled" => CommandStatus::Cancelled,
            "TimedOut" => CommandStatus::TimedOut,
            "Failed" => CommandStatus::Failed,
            "Cancelling" => CommandStatus::Cancelling,
            other => CommandStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            CommandStatus::Pending => "Pending",
            CommandStatus::InProgress => "InProgress",
            CommandStatus::Delayed => "Delayed",
            CommandStatus::Success => "Success",
            CommandStatus::Cancelled => "Cancelled",
            CommandStatus::TimedOut => "TimedOut",
            CommandStatus::Failed => "Failed",
            CommandStatus::Cancelling => "Cancelling",
            CommandStatus::Other(text) => text,
        }
    }

    /// Whether the command has ended (an unknown status has not: keep following it).
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            CommandStatus::Success
                | CommandStatus::Cancelled
                | CommandStatus::TimedOut
                | CommandStatus::Failed
        )
    }
}

impl std::fmt::Display for CommandStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instance refresh's status, as AWS names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackFailed,
    RollbackSuccessful,
    Baking,
    /// A status this runner does not know; treated as still active.
    Other(String),
}

impl RefreshStatus {
    pub fn parse(text: &str) -> RefreshStatus {
        match text {
            "Pending" => RefreshStatus::Pending,
            "InProgress" => RefreshStatus::InProgress,
            "Successful" => RefreshStatus::Successful,
            "Failed" => RefreshStatus::Failed,
            "Cancelling" => RefreshStatus::Cancelling,
            "Cancelled" => RefreshStatus::Cancelled,
            "RollbackInProgress" => RefreshStatus::RollbackInProgress,
            "RollbackFailed" => RefreshStatus::RollbackFailed,
            "RollbackSuccessful" => RefreshStatus::RollbackSuccessful,
            "Baking" => RefreshStatus::Baking,
            other => RefreshStatus::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RefreshStatus::Pending => "Pending",
            RefreshStatus::InProgress => "InProgress",
            RefreshStatus::Successful => "Successful",
            RefreshStatus::Failed => "Failed",
            RefreshStatus::Cancelling => "Cancelling",
            RefreshStatus::Cancelled => "Cancelled",
            RefreshStatus::RollbackInProgress => "RollbackInProgress",
            RefreshStatus::RollbackFailed => "RollbackFailed",
            RefreshStatus::RollbackSuccessful => "RollbackSuccessful",
            RefreshStatus::Baking => "Baking",
            RefreshStatus::Other(text) => text,
        }
    }

    /// Whether AWS is still working on the refresh.
    pub fn is_active(&self) -> bool {
        is_active_refresh_status(self.as_str())
    }
}

impl Serialize for RefreshStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for RefreshStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refresh {
    pub id: String,
    pub status: RefreshStatus,
    pub status_reason: Option<String>,
    pub percentage: u8,
    pub instances_to_update: u32,
    /// The launch template version the refresh moves the group to, when it carries one.
    pub desired_template_version: Option<String>,
    /// When it started, in seconds since the Unix epoch (AWS's StartTime).
    pub started: Option<i64>,
    /// When it ended, in seconds since the Unix epoch (AWS's EndTime).
    pub ended: Option<i64>,
}

/// Whether AWS is still working on a refresh with this status (an unknown status counts as
/// active: the safe answer, since the runner then leaves the group alone).
pub fn is_active_refresh_status(status: &str) -> bool {
    !matches!(
        status,
        "Successful" | "Failed" | "Cancelled" | "RollbackFailed" | "RollbackSuccessful"
    )
}

impl Refresh {
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }
}

/// The content of a group's lease: who holds the group, since when, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Lock {
    pub run: String,
    pub host: String,
    pub commit: String,
    pub started: String,
    /// When the lease ends unless its run renews it (RFC 3339); absent in locks written
    /// before leases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The CI run holding it (`GITHUB_RUN_ID`), and its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(version: &str) -> GroupConfig {
        GroupConfig::Template {
            id: "lt-0abc".into(),
            name: "red5pro-sm".into(),
            version: version.into(),
        }
    }

    fn instance(id: &str, config: GroupConfig, state: &str) -> GroupInstance {
        GroupInstance {
            id: id.into(),
            lifecycle_state: state.into(),
            health_status: "Healthy".into(),
            config,
            protected_from_scale_in: false,
        }
    }

    fn group(config: GroupConfig, instances: Vec<GroupInstance>) -> Group {
        Group {
            name: "red5pro-sm-asg".into(),
            min_size: 1,
            max_size: 4,
            desired_capacity: 2,
            config,
            subnets: Vec::new(),
            target_groups: Vec::new(),
            health_check_type: "ELB".into(),
            health_check_grace_period: 300,
            instances,
            tags: Tags::new(),
            new_instances_protected: false,
        }
    }

    fn settled_on(config: GroupConfig, image: &str) -> Group {
        let both = vec![
            instance("i-1", config.clone(), "InService"),
            instance("i-2", config.clone(), "InService"),
        ];
        let mut g = group(config, both);
        let tag = g
            .converged_tag(image)
            .expect("a numbered version has a key");
        g.tags.insert(TAG_CONVERGED.into(), tag);
        g
    }

    #[test]
    fn a_group_left_as_recorded_is_settled_on_its_image() {
        let g = settled_on(template("3"), "ami-0123");
        assert_eq!(g.converged_image(), Some("ami-0123"));
        let lc = settled_on(
            GroupConfig::Configuration {
                name: "SM-12.4.0".into(),
            },
            "ami-0456",
        );
        assert_eq!(lc.converged_image(), Some("ami-0456"));
    }

    #[test]
    fn any_change_since_the_record_unsettles_the_group() {
        let base = settled_on(template("3"), "ami-0123");

        let mut moved = base.clone();
        moved.config = template("4");
        assert_eq!(
            moved.converged_image(),
            None,
            "configuration changed by hand"
        );

        let mut other_template = base.clone();
        other_template.config = GroupConfig::Template {
            id: "lt-0def".into(),
            name: "another".into(),
            version: "3".into(),
        };
        assert_eq!(other_template.converged_image(), None, "another template");

        let mut refreshing = base.clone();
        refreshing.instances[1] = instance("i-3", template("4"), "InService");
        assert_eq!(
            refreshing.converged_image(),
            None,
            "an instance on another version"
        );

        let mut launching = base.clone();
        launching.instances[1].lifecycle_state = "Pending".into();
        assert_eq!(
            launching.converged_image(),
            None,
            "an instance not in service"
        );

        let mut scaled = base.clone();
        scaled.desired_capacity = 3;
        assert_eq!(
            scaled.converged_image(),
            None,
            "desired capacity not reached"
        );

        let mut failed = base.clone();
        failed
            .tags
            .insert(TAG_FAILED.into(), "12.4.0 abc123".into());
        assert_eq!(failed.converged_image(), None, "a failed rollout recorded");
        failed.tags.insert(TAG_FAILED.into(), String::new());
        assert_eq!(failed.converged_image(), Some("ami-0123"), "cleared record");
    }

    #[test]
    fn an_alias_has_no_record() {
        let g = group(template("$Default"), Vec::new());
        assert_eq!(g.converged_tag("ami-0123"), None);
        let mut tagged = settled_on(template("3"), "ami-0123");
        tagged.config = template("$Latest");
        assert_eq!(tagged.converged_image(), None);
    }
}
