//! Shared test helpers: the shipped pipelines, releases made to order, a planner scenario
//! builder, and temporary git repositories holding the shipped content.

use red5_rollout::fleet::{
    BuilderRecord, FleetState, ImageRecord, ImageState, LaunchConfigRecord, RefreshRecord,
};
use red5_rollout::model::{Pipeline, Release, desired_release, render};
use red5_rollout::plan::{Plan, PlanError, plan_rollout};
use std::path::{Path, PathBuf};
use std::process::Command;
use time::Date;
use time::macros::date;

pub const DATE: Date = date!(2026 - 11 - 24);
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped pipeline, as committed under pipelines/.
pub fn shipped_pipeline(name: &str) -> Pipeline {
    let path = format!("pipelines/{name}.yaml");
    let text = std::fs::read_to_string(crate_root().join(&path)).unwrap();
    Pipeline::from_yaml(&path, &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The text of a valid release file for `version`.
pub fn release_text(version: &str) -> String {
    format!(
        "version: {version}\nartifact:\n  url: https://downloads.example.com/red5pro-{version}.zip\n  sha256: {}\n",
        "ab".repeat(32)
    )
}

pub fn release(version: &str) -> Release {
    Release::from_yaml(&format!("releases/{version}.yaml"), &release_text(version))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The pipeline file `text` made to promote the images of pipeline `from`: its `builder`
/// and `update` blocks removed (a promoted pipeline never bakes), `image.from_pipeline` set.
pub fn promoting_text(text: &str, from: &str) -> String {
    let start = text.find("\nbuilder:\n").expect("a builder block") + 1;
    let end = text.find("\nimage:\n").expect("an image block") + 1;
    let mut out = String::new();
    out.push_str(&text[..start]);
    out.push_str(&text[end..].replacen(
        "image:\n",
        &format!("image:\n  from_pipeline: {from}\n"),
        1,
    ));
    out
}

/// A planner scenario: a pipeline, its releases and the observed fleet, read as a sentence:
/// `Scenario::new("stream-manager").release("12.4.0").fleet_on("12.3.0").plan()`.
pub struct Scenario {
    pipeline: Pipeline,
    releases: Vec<Release>,
    fleet: FleetState,
}

impl Scenario {
    pub fn new(pipeline: &str) -> Self {
        let pipeline = shipped_pipeline(pipeline);
        let fleet = FleetState {
            group: pipeline.auto_scaling_group.clone(),
            desired_capacity: 2,
            ..FleetState::default()
        };
        Scenario {
            pipeline,
            releases: Vec::new(),
            fleet,
        }
    }

    /// Replaces the pipeline's `track` / `pin` line.
    pub fn target(mut self, line: &str) -> Self {
        let path = self.pipeline.origin.file.clone();
        let text = std::fs::read_to_string(crate_root().join(&path)).unwrap();
        let text = text.replace("track: \"^12\"", line);
        self.pipeline = Pipeline::from_yaml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    pub fn release(mut self, version: &str) -> Self {
        self.releases.push(release(version));
        self
    }

    /// Replaces `old` with `new` in the pipeline's file.
    pub fn replacing(mut self, old: &str, new: &str) -> Self {
        let path = self.pipeline.origin.file.clone();
        let text = std::fs::read_to_string(crate_root().join(&path)).unwrap();
        assert!(text.contains(old), "{path} has no {old:?}");
        self.pipeline =
            Pipeline::from_yaml(&path, &text.replace(old, new)).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    /// The group protects its instances from scale-in.
    pub fn protecting_instances(mut self) -> Self {
        self.fleet.protects_instances = true;
        self
    }

    /// Replaces the pipeline's `builder.base_image`.
    pub fn base_image(mut self, ami: &str) -> Self {
        let path = self.pipeline.origin.file.clone();
        let text = std::fs::read_to_string(crate_root().join(&path)).unwrap();
        let text = text.replace("base_image: from-group", &format!("base_image: {ami}"));
        self.pipeline = Pipeline::from_yaml(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        self
    }

    /// The group names `alias` (`$Latest`, `$Default`) instead of its version number.
    pub fn alias(mut self, alias: &str) -> Self {
        self.fleet.config_alias = Some(alias.into());
        self
    }

    /// The group runs `version` through `alias` (its configuration for `version` exists).
    pub fn running(mut self, version: &str, alias: &str) -> Self {
        self.fleet.running_version = Some(version.parse().unwrap());
        self.fleet.current_config = Some(config_id(version));
        self.alias(alias)
    }

    /// The image the group runs has a root snapshot of `gb`.
    pub fn base_snapshot(mut self, gb: u32) -> Self {
        self.fleet.base_snapshot_gb = Some(gb);
        self
    }

    pub fn capacity(mut self, desired: u32) -> Self {
        self.fleet.desired_capacity = desired;
        self
    }

    /// The group runs `version` from its image and configuration, both tagged by the runner.
    pub fn fleet_on(mut self, version: &str) -> Self {
        self = self.image(version, ImageState::Available).config(version);
        self.fleet.running_version = Some(version.parse().unwrap());
        self.fleet.current_config = Some(config_id(version));
        self
    }

    pub fn image(mut self, version: &str, state: ImageState) -> Self {
        self.fleet.images.push(ImageRecord {
            snapshot_gb: None,
            id: image_id(version),
            version: version.parse().unwrap(),
            state,
            baked_by: None,
            region: None,
        });
        self
    }

    /// An available image of `version` that pipeline `source` baked.
    pub fn baked_by(mut self, version: &str, source: &str) -> Self {
        self.fleet.images.push(ImageRecord {
            snapshot_gb: None,
            id: format!("ami-{source}-{version}"),
            version: version.parse().unwrap(),
            state: ImageState::Available,
            baked_by: Some(source.into()),
            region: None,
        });
        self
    }

    /// The pipeline promotes the images of pipeline `source` of `region` (the repository's
    /// check links them so).
    pub fn promoting(mut self, source: &str, region: &str) -> Self {
        let path = self.pipeline.origin.file.clone();
        let text = std::fs::read_to_string(crate_root().join(&path)).unwrap();
        self.pipeline = Pipeline::from_yaml(&path, &promoting_text(&text, source))
            .unwrap_or_else(|e| panic!("{e}"));
        self.pipeline.image.from_pipeline = Some(red5_rollout::model::Promotion {
            pipeline: source.into(),
            group: format!("{source}-asg"),
            region: region.into(),
        });
        self
    }

    /// An image of `version` that pipeline `source` baked in `region` (another one), in
    /// `state`.
    pub fn baked_in(
        mut self,
        version: &str,
        source: &str,
        region: &str,
        state: ImageState,
    ) -> Self {
        self.fleet.images.push(ImageRecord {
            snapshot_gb: Some(8),
            id: format!("ami-{region}-{version}"),
            version: version.parse().unwrap(),
            state,
            baked_by: Some(source.into()),
            region: Some(region.into()),
        });
        self
    }

    /// A copy (in the pipeline's region) of the image `source` baked in another region,
    /// in `state`.
    pub fn copied(mut self, version: &str, source: &str, state: ImageState) -> Self {
        self.fleet.images.push(ImageRecord {
            snapshot_gb: Some(8),
            id: format!("ami-copy-{version}"),
            version: version.parse().unwrap(),
            state,
            baked_by: Some(source.into()),
            region: None,
        });
        self
    }

    /// The versions the baking pipeline's group records as rolled out successfully.
    pub fn succeeded_there(mut self, versions: &[&str]) -> Self {
        self.fleet.promoted_succeeded = Some(versions.iter().map(|v| v.parse().unwrap()).collect());
        self
    }

    /// A launch template version / configuration for `version` exists.
    pub fn config(mut self, version: &str) -> Self {
        self.fleet.launch_configs.push(LaunchConfigRecord {
            id: config_id(version),
            version: version.parse().unwrap(),
            image_id: image_id(version),
            launch_hash: None,
            created: None,
        });
        self
    }

    pub fn builder(mut self, version: &str, is_updated: bool) -> Self {
        self.fleet.builder = Some(BuilderRecord {
            instance_id: "i-0b1d000000000001".into(),
            version: version.parse().unwrap(),
            run_id: "run-1".into(),
            is_updated,
        });
        self
    }

    pub fn refresh(mut self, version: &str, status: &str, percentage: u8) -> Self {
        self.fleet.refresh = Some(RefreshRecord {
            id: "refresh-0001".into(),
            status: status.into(),
            percentage,
            target_version: Some(version.parse().unwrap()),
            started: None,
        });
        self
    }

    /// A refresh to `version` failed at `commit`.
    pub fn failed(mut self, version: &str, commit: &str) -> Self {
        self.fleet.failed = Some(red5_rollout::fleet::FailedRollout {
            version: version.parse().unwrap(),
            commit: commit.into(),
        });
        self
    }

    pub fn plan_with(&self, retry: red5_rollout::plan::RetryRule) -> Plan {
        let release =
            desired_release(&self.pipeline, &self.releases).unwrap_or_else(|e| panic!("{e}"));
        let names = render(&self.pipeline, release, DATE, COMMIT).unwrap_or_else(|e| panic!("{e}"));
        red5_rollout::plan::plan_rollout_with(&self.pipeline, release, &names, &self.fleet, retry)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_plan(&self) -> Result<Plan, PlanError> {
        let release =
            desired_release(&self.pipeline, &self.releases).unwrap_or_else(|e| panic!("{e}"));
        let names = render(&self.pipeline, release, DATE, COMMIT).unwrap_or_else(|e| panic!("{e}"));
        plan_rollout(&self.pipeline, release, &names, &self.fleet)
    }

    pub fn plan(&self) -> Plan {
        self.try_plan().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A stable fake AMI id per version, so plans read the same in every run.
pub fn image_id(version: &str) -> String {
    let digits: String = version.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("ami-{digits:0>17}")
}

/// A stable configuration id per version: template version numbers 1, 2, 3 for 12.3, 12.4, 12.5.
pub fn config_id(version: &str) -> String {
    let minor: u32 = version.split('.').nth(1).unwrap().parse().unwrap();
    (minor - 2).to_string()
}

/// Runs git in `dir` with a fixed identity, failing the test when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Release Engineer",
            "-c",
            "user.email=re@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary git repository holding the shipped pipelines and releases 12.3.0, 12.4.0,
/// committed.
pub fn shipped_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["pipelines", "releases"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for name in ["stream-manager", "stream-manager-legacy"] {
        std::fs::copy(
            crate_root().join(format!("pipelines/{name}.yaml")),
            dir.path().join(format!("pipelines/{name}.yaml")),
        )
        .unwrap();
    }
    for version in ["12.3.0", "12.4.0"] {
        std::fs::write(
            dir.path().join(format!("releases/{version}.yaml")),
            release_text(version),
        )
        .unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "fleet on 12.4.0"]);
    dir
}
