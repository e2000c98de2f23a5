//! What AWS runs for one Auto Scaling group, as plain values: the planner's other input.
//!
//! The AWS adapter fills it from tags the runner writes; `plan --fleet-state FILE` reads
//! it from JSON (the same shape, see README.md) for offline use and tests.

use semver::Version;
use serde::{Deserialize, Serialize};

/// The observed state of one group and of the resources the runner made for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetState {
    /// The Auto Scaling group's name.
    pub group: String,
    /// The group's desired capacity.
    #[serde(default)]
    pub desired_capacity: u32,
    /// The release the group runs, from its `red5-rollout:version` tag or its image's.
    #[serde(default)]
    pub running_version: Option<Version>,
    /// The launch template version number or launch configuration name the group uses (an
    /// alias resolved to the number it stands for).
    #[serde(default)]
    pub current_config: Option<String>,
    /// `$Latest` or `$Default` when the group names one instead of a version number.
    #[serde(default)]
    pub config_alias: Option<String>,
    /// How many of the group's instances run another configuration than the group's (a
    /// refresh that did not finish, a configuration changed by hand).
    #[serde(default)]
    pub stale_instances: u32,
    /// Whether any instance is, or new instances will be, protected from scale-in.
    #[serde(default)]
    pub protects_instances: bool,
    /// The size of the root snapshot of the image the group runs now, in GB.
    #[serde(default)]
    pub base_snapshot_gb: Option<u32>,
    /// The last rollout whose refresh failed, until one succeeds.
    #[serde(default)]
    pub failed: Option<FailedRollout>,
    /// The launch signature the group was last moved to by the runner (its
    /// `red5-rollout:launch` tag; see [`crate::model::LaunchSignature`]).
    #[serde(default)]
    pub launch: Option<String>,
    /// Images tagged for this pipeline.
    #[serde(default)]
    pub images: Vec<ImageRecord>,
    /// Launch template versions or launch configurations made for this pipeline.
    #[serde(default)]
    pub launch_configs: Vec<LaunchConfigRecord>,
    /// A builder instance left running (a run was interrupted, or is in progress).
    #[serde(default)]
    pub builder: Option<BuilderRecord>,
    /// The newest instance refresh of the group, when it is still active.
    #[serde(default)]
    pub refresh: Option<RefreshRecord>,
    /// The newest instance refresh of the group, when it has ended.
    #[serde(default)]
    pub last_refresh: Option<RefreshRecord>,
    /// The configuration the group used before the runner swapped it (launch configurations
    /// only; its `red5-rollout:previous-config` tag).
    #[serde(default)]
    pub previous_config: Option<String>,
    /// For a promoted pipeline (`image.from_pipeline`), the versions whose rollout the
    /// baking pipeline's group records as succeeded (its `red5-rollout:succeeded` tag).
    #[serde(default)]
    pub promoted_succeeded: Option<Vec<Version>>,
}

/// A rollout whose refresh failed: the version it moved to and the commit that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailedRollout {
    pub version: Version,
    pub commit: String,
}

impl FailedRollout {
    /// Reads the group tag `red5-rollout:failed` ("VERSION COMMIT"; empty once cleared).
    pub fn from_tag(value: &str) -> Option<FailedRollout> {
        let (version, commit) = value.trim().split_once(' ')?;
        Some(FailedRollout {
            version: version.parse().ok()?,
            commit: commit.trim().to_owned(),
        })
    }

    pub fn to_tag(&self) -> String {
        format!("{} {}", self.version, self.commit)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    pub id: String,
    pub version: Version,
    pub state: ImageState,
    /// The size of its root snapshot, in GB, when known.
    #[serde(default)]
    pub snapshot_gb: Option<u32>,
    /// The pipeline that baked it, when another one did (a promoted pipeline's images, and
    /// their copies).
    #[serde(default)]
    pub baked_by: Option<String>,
    /// The region it lives in, when not the pipeline's: an image its baking pipeline made
    /// in another region, which is copied before it is rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageState {
    Pending,
    Available,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfigRecord {
    /// A launch template version number ("3") or a launch configuration name.
    pub id: String,
    pub version: Version,
    pub image_id: String,
    /// The hash of the launch signature it was made with, when known (a template version's
    /// instance tag, the group's tag for the configuration it uses, the name of a launch
    /// configuration made for an edited `launch` block).
    #[serde(default)]
    pub launch_hash: Option<String>,
    /// When it was made, in seconds since the Unix epoch.
    #[serde(default)]
    pub created: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderRecord {
    pub instance_id: String,
    pub version: Version,
    pub run_id: String,
    /// True once the update script succeeded on it (the runner tags it so).
    #[serde(default)]
    pub is_updated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRecord {
    pub id: String,
    /// AWS's status: Pending, InProgress, Successful, Failed, Cancelling, Cancelled,
    /// RollbackInProgress, RollbackFailed, RollbackSuccessful, Baking.
    pub status: String,
    #[serde(default)]
    pub percentage: u8,
    /// The release the refresh moves the group to, when known.
    #[serde(default)]
    pub target_version: Option<Version>,
    /// When it started, in seconds since the Unix epoch.
    #[serde(default)]
    pub started: Option<i64>,
}

impl RefreshRecord {
    /// Whether AWS is still working on this refresh.
    pub fn is_active(&self) -> bool {
        crate::cloud::is_active_refresh_status(&self.status)
    }
}

/// The `--fleet-state` file: the observed state of several groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetStates {
    pub fleets: Vec<FleetState>,
}

impl FleetStates {
    pub fn group(&self, name: &str) -> Option<&FleetState> {
        self.fleets.iter().find(|f| f.group == name)
    }
}
