//! The real binary against the emulator: a bump, a revert, idempotence, crash-resume at every
//! stage boundary, failures through the fault switches, and two runs racing for one group.
//!
//! Each test gets a pipeline and a fleet of its own (unique names), whose base image is
//! tagged for that pipeline as 12.3.0, so tests can share the emulator. Tests that count
//! calls or set faults hold it alone.

use crate::emulator::{Emulator, Fleet, unique_name};
use crate::support::{git, promoting_text, release_text};
use red5_rollout::cloud::aws::AwsCloud;
use red5_rollout::cloud::{
    BuilderSpec, Cloud, GroupConfig, ImageStatus, InstanceState, RefreshStatus, TAG_CONVERGED,
    TAG_PIPELINE, TAG_ROLE, TAG_VERSION,
};
use red5_rollout::observe::tags;
use red5_rollout::priors::{Priors, Step, TAG_TIMINGS};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

/// A test's own pipeline: a git repository with the pipeline and release 12.3.0, and the
/// fleet it rolls.
struct Setup {
    repo: TempDir,
    pipeline: String,
    fleet: Fleet,
    endpoint: String,
}

/// Images a 12.3.0 base image of the fleet's own, named as an operator names it: with
/// none of the runner's tags (the test adopts it).
pub(crate) async fn base_image(cloud: &AwsCloud, emulator: &Emulator, pipeline: &str) -> String {
    let seeded = emulator.seeded_image("stream-manager").await;
    let subnet = cloud.resolve_subnet("red5pro-sm-subnet-a").await.unwrap();
    let groups = cloud
        .resolve_security_groups(&["red5pro-sm-sg".to_string()])
        .await
        .unwrap();
    let instance = cloud
        .run_builder(&BuilderSpec {
            image_id: seeded,
            instance_type: "m5.large".into(),
            subnet_id: subnet,
            security_group_ids: groups,
            instance_profile: "red5pro-sm-builder".into(),
            key_pair: None,
            volume_size_gb: 16,
            root_device_name: "/dev/xvda".into(),
            client_token: unique_name("base-token"),
            tags: tags(&[("Name", "base image source")]),
        })
        .await
        .unwrap();
    crate::emulator::eventually("the base instance to run", async || {
        (cloud.instance(&instance).await.ok()?.state == InstanceState::Running).then_some(())
    })
    .await;
    let image = cloud
        .create_image(
            &instance,
            &unique_name(&format!("{pipeline}-12.3.0-base")),
            &tags(&[("Name", &format!("red5pro-{pipeline}-12.3.0"))]),
        )
        .await
        .unwrap();
    crate::emulator::eventually("the base image to be available", async || {
        (cloud.image(&image).await.ok()?.status == ImageStatus::Available).then_some(())
    })
    .await;
    cloud.terminate_instance(&instance).await.unwrap();
    image
}

/// A pipeline named after `label`, of the shipped kind `shipped`, on a new fleet of
/// `desired` instances, committed with release 12.3.0.
async fn setup(emulator: &Emulator, label: &str, shipped: &str, desired: i32) -> Setup {
    let cloud = emulator.cloud().await;
    let pipeline = unique_name(label);
    let image = base_image(&cloud, emulator, &pipeline).await;
    let fleet = if shipped == "stream-manager" {
        emulator
            .guide_template_fleet(&pipeline, desired, &image)
            .await
    } else {
        emulator
            .configuration_fleet_on(&pipeline, desired, Some(&image))
            .await
    };
    let text = std::fs::read_to_string(
        crate::support::crate_root().join(format!("pipelines/{shipped}.yaml")),
    )
    .unwrap()
    .replace(
        &format!("name: {shipped}\n"),
        &format!("name: {pipeline}\n"),
    )
    .replace(
        "auto_scaling_group: red5pro-sm-legacy-asg",
        &format!("auto_scaling_group: {}", fleet.group),
    )
    .replace(
        "auto_scaling_group: red5pro-sm-asg",
        &format!("auto_scaling_group: {}", fleet.group),
    )
    .replace(
        "template: red5pro-sm\n",
        &format!("template: {}\n", fleet.template.clone().unwrap_or_default()),
    )
    // Image and configuration names are global in a region: make them the pipeline's own.
    .replace(
        "SM-red5pro-server-{{ version }}",
        "{{ pipeline }}-{{ version }}",
    );
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(repo.path().join("releases")).unwrap();
    std::fs::write(repo.path().join(format!("pipelines/{pipeline}.yaml")), text).unwrap();
    std::fs::write(
        repo.path().join("releases/12.3.0.yaml"),
        release_text("12.3.0"),
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "fleet on 12.3.0"]);
    let setup = Setup {
        repo,
        pipeline,
        fleet,
        endpoint: emulator.endpoint().to_string(),
    };
    // As the README tells a user with a fleet built by hand: adopt it first.
    let adopted = setup.run(&["adopt", &setup.pipeline, "--version", "12.3.0", "--yes"]);
    assert!(
        adopted.status.success(),
        "adopt: {}{}",
        stdout(&adopted),
        stderr(&adopted)
    );
    setup
}

impl Setup {
    /// Adds pipeline `name` of `region` on `fleet`, promoting this pipeline's images (its
    /// file is this one's, renamed, without the bake), commits it and adopts its fleet as
    /// running 12.3.0.
    fn promoting_pipeline(&self, name: &str, region: &str, fleet: &Fleet) {
        let own = self
            .repo
            .path()
            .join(format!("pipelines/{}.yaml", self.pipeline));
        let text = std::fs::read_to_string(own)
            .unwrap()
            .replace(
                &format!("name: {}\n", self.pipeline),
                &format!("name: {name}\n"),
            )
            .replace("region: us-east-1", &format!("region: {region}"))
            .replace(
                &format!("auto_scaling_group: {}", self.fleet.group),
                &format!("auto_scaling_group: {}", fleet.group),
            )
            .replace(
                &format!("template: {}\n", self.fleet.template()),
                &format!("template: {}\n", fleet.template()),
            );
        std::fs::write(
            self.repo.path().join(format!("pipelines/{name}.yaml")),
            promoting_text(&text, &self.pipeline),
        )
        .unwrap();
        git(self.repo.path(), &["add", "-A"]);
        git(
            self.repo.path(),
            &[
                "commit",
                "-q",
                "-m",
                &format!("{name} promotes {}", self.pipeline),
            ],
        );
        let adopted = self.run(&["adopt", name, "--version", "12.3.0", "--yes"]);
        assert!(adopted.status.success(), "{}", stderr(&adopted));
    }

    fn bump(&self, version: &str) {
        std::fs::write(
            self.repo.path().join(format!("releases/{version}.yaml")),
            release_text(version),
        )
        .unwrap();
        git(self.repo.path(), &["add", "-A"]);
        git(
            self.repo.path(),
            &["commit", "-q", "-m", &format!("release {version}")],
        );
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_red5-rollout"));
        command
            .args(args)
            .current_dir(self.repo.path())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("CI", "true")
            // The emulator runs AWS's pace twenty times faster, and so may the calls.
            .env("RED5_ROLLOUT_AWS_CALLS_PER_SECOND", "100")
            .env_remove("RED5_ROLLOUT_REPO");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }

    fn apply(&self) -> Output {
        self.run(&["apply", "--output", "json"])
    }

    async fn cloud(&self) -> AwsCloud {
        AwsCloud::connect_with(
            "us-east-1",
            Some(&self.endpoint),
            Some(("testing".into(), "testing".into())),
        )
        .await
    }

    /// The group's lease, if a run holds it.
    async fn lease(&self) -> Option<red5_rollout::cloud::Lock> {
        self.cloud()
            .await
            .read_lock(&red5_rollout::run::lock_name(&self.fleet.group))
            .await
            .unwrap()
    }

    async fn images_of(&self, version: &str) -> Vec<String> {
        let cloud = self.cloud().await;
        cloud
            .find_images(&tags(&[
                (TAG_PIPELINE, &self.pipeline),
                (TAG_VERSION, version),
            ]))
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.status == ImageStatus::Available)
            .map(|i| i.id)
            .collect()
    }

    async fn live_builders(&self) -> Vec<String> {
        let cloud = self.cloud().await;
        cloud
            .find_instances(&tags(&[
                (TAG_PIPELINE, &self.pipeline),
                (TAG_ROLE, "builder"),
            ]))
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.state.is_alive())
            .map(|i| i.id)
            .collect()
    }

    /// The configurations that launch an image baked for `version`.
    async fn configs_of(&self, version: &str) -> Vec<String> {
        let cloud = self.cloud().await;
        let images = self.images_of(version).await;
        let configs = match &self.fleet.template {
            Some(template) => cloud.template_versions(template).await.unwrap(),
            None => cloud.launch_configurations("").await.unwrap(),
        };
        configs
            .into_iter()
            .filter(|c| images.contains(&c.image_id))
            .map(|c| c.id)
            .collect()
    }

    /// Asserts the group, and every instance, run `config`, and the group is tagged `version`.
    async fn assert_fleet_on(&self, config: &str, version: &str) {
        let group = self.cloud().await.group(&self.fleet.group).await.unwrap();
        // A guide-built group names $Default, which is version 1 until someone moves it.
        let on_default = config == "1" && group.config.version_alias() == Some("$Default");
        assert!(
            group.config.is(config) || on_default,
            "group on {:?}, not {config}",
            group.config
        );
        assert!(!group.instances.is_empty());
        for instance in &group.instances {
            assert!(
                instance.config.is(config),
                "{} on {:?}, not {config}",
                instance.id,
                instance.config
            );
        }
        assert_eq!(
            group.tags.get(TAG_VERSION).map(String::as_str),
            Some(version)
        );
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of calls of each mutating action since the last reset.
fn mutating(emulator: &Emulator) -> Vec<(String, u64)> {
    let calls = emulator.calls();
    let mut counts: Vec<(String, u64)> = calls["mutating_counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    counts.sort();
    counts
}

fn count(counts: &[(String, u64)], action: &str) -> u64 {
    counts
        .iter()
        .find(|(k, _)| k == action)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bump_rolls_a_template_fleet_and_a_second_apply_changes_nothing() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-bump", "stream-manager", 2).await;
    setup.bump("12.4.0");
    emulator.reset_calls();

    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "{}: group {} runs 12.4.0",
            setup.pipeline, setup.fleet.group
        )),
        "{}",
        stdout(&out)
    );
    let images = setup.images_of("12.4.0").await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(setup.configs_of("12.4.0").await, vec!["2".to_string()]);
    assert!(setup.live_builders().await.is_empty());
    setup.assert_fleet_on("2", "12.4.0").await;
    let calls = mutating(&emulator);
    for action in [
        "ec2:RunInstances",
        "ssm:SendCommand",
        "ec2:StopInstances",
        "ec2:CreateImage",
        "ec2:CreateLaunchTemplateVersion",
        "autoscaling:StartInstanceRefresh",
        "ec2:TerminateInstances",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
    ] {
        assert_eq!(count(&calls, action), 1, "{action} in {calls:?}");
    }
    // The only UpdateAutoScalingGroup pins the group from $Default to version 1 before the
    // new version exists; the group moves to version 2 only when the refresh succeeds.
    assert_eq!(
        count(&calls, "autoscaling:UpdateAutoScalingGroup"),
        1,
        "{calls:?}"
    );
    assert_template_settings_survive(&emulator, setup.fleet.template(), "2").await;

    emulator.reset_calls();
    let again = setup.apply();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to do"),
        "{}",
        stdout(&again)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());
    // The group is visibly settled on what the rollout left: neither its template's
    // versions nor its refreshes are read again.
    let read = emulator.calls();
    for action in [
        "ec2:DescribeLaunchTemplateVersions",
        "autoscaling:DescribeInstanceRefreshes",
    ] {
        assert!(
            read["counts"].get(action).is_none(),
            "{action} read for a settled group: {}",
            read["counts"]
        );
    }
    assert!(read["total"].as_u64().unwrap() <= 4, "{}", read["counts"]);

    let status = setup.run(&["status", &setup.pipeline]);
    assert!(
        stdout(&status).contains(&format!(
            "group {} (us-east-1) runs 12.4.0",
            setup.fleet.group
        )),
        "{}",
        stdout(&status)
    );
    assert!(
        stdout(&status).contains("refresh:       none needed"),
        "{}",
        stdout(&status)
    );

    // What the next rollout's waits expect was recorded in AWS, and reads back through
    // the SDK: the bake's timings on its image, the refresh's start and end.
    let cloud = setup.cloud().await;
    let group = cloud.group(&setup.fleet.group).await.unwrap();
    let image = &images[0];
    assert!(
        group
            .tags
            .get(TAG_CONVERGED)
            .is_some_and(|t| t.ends_with(&format!("@{image}"))),
        "{:?}",
        group.tags
    );
    assert_eq!(group.converged_image(), Some(image.as_str()));
    let tagged = cloud.image(image).await.unwrap();
    let timings = tagged.tags.get(TAG_TIMINGS).cloned().unwrap_or_default();
    for step in ["ready=", "update=", "stop=", "image="] {
        assert!(timings.contains(step), "{step} missing from {timings:?}");
    }
    let priors = Priors::from_history(
        &[tagged],
        &cloud.refreshes(&setup.fleet.group).await.unwrap(),
    );
    for step in [
        Step::BuilderReady,
        Step::Update,
        Step::Stop,
        Step::Image,
        Step::Refresh,
    ] {
        assert!(priors.expected(step).is_some(), "{step:?}: {priors:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bump_rolls_a_launch_configuration_fleet() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-legacy", "stream-manager-legacy", 1).await;
    setup.bump("12.4.0");
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let configs = setup.configs_of("12.4.0").await;
    assert_eq!(configs.len(), 1, "{configs:?}");
    assert!(
        configs[0].starts_with(&format!("{}-12.4.0-", setup.pipeline)),
        "{configs:?}"
    );
    assert_eq!(setup.images_of("12.4.0").await.len(), 1);
    assert!(setup.live_builders().await.is_empty());
    setup.assert_fleet_on(&configs[0], "12.4.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revert_rolls_back_without_launching_or_imaging() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-revert", "stream-manager", 2).await;
    setup.bump("12.4.0");
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    git(setup.repo.path(), &["revert", "--no-edit", "HEAD"]);
    let plan = setup.run(&["plan", &setup.pipeline]);
    assert!(
        stdout(&plan).contains("rollback 12.4.0 -> 12.3.0"),
        "{}",
        stdout(&plan)
    );
    emulator.reset_calls();
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:RunInstances"), 0, "{calls:?}");
    assert_eq!(count(&calls, "ec2:CreateImage"), 0, "{calls:?}");
    assert_eq!(
        count(&calls, "autoscaling:StartInstanceRefresh"),
        1,
        "{calls:?}"
    );
    setup.assert_fleet_on("1", "12.3.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_launch_block_is_rolled_out_on_the_same_image_without_a_release() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-launch", "stream-manager", 2).await;
    setup.bump("12.4.0");
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let path = setup
        .repo
        .path()
        .join(format!("pipelines/{}.yaml", setup.pipeline));
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen(
        "  instance_type: m5.large\n  security_groups",
        "  instance_type: m5.xlarge\n  security_groups",
        1,
    );
    assert!(
        edited.matches("instance_type: m5.xlarge").count() == 1
            && edited.find("instance_type: m5.xlarge") > edited.find("launch:"),
        "the launch block's instance type is edited, not the builder's"
    );
    std::fs::write(&path, edited).unwrap();
    git(
        setup.repo.path(),
        &["commit", "-qam", "bigger Stream Managers"],
    );

    let plan = setup.run(&["plan", &setup.pipeline]);
    let shown = stdout(&plan);
    assert!(shown.contains("launch change"), "{shown}");
    assert!(
        shown.contains("launch.instance_type (now m5.xlarge) changed"),
        "{shown}"
    );
    emulator.reset_calls();
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:RunInstances"), 0, "{calls:?}");
    assert_eq!(count(&calls, "ec2:CreateImage"), 0, "{calls:?}");
    assert_eq!(
        count(&calls, "ec2:CreateLaunchTemplateVersion"),
        1,
        "{calls:?}"
    );
    assert_eq!(
        count(&calls, "autoscaling:StartInstanceRefresh"),
        1,
        "{calls:?}"
    );
    // Version 3 launches the 12.4.0 image that version 2 launches, as an m5.xlarge.
    assert_eq!(
        setup.configs_of("12.4.0").await,
        vec!["2".to_string(), "3".to_string()]
    );
    setup.assert_fleet_on("3", "12.4.0").await;
    assert_template_settings_survive(&emulator, setup.fleet.template(), "3").await;

    emulator.reset_calls();
    let again = setup.apply();
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());
}

/// Asserts that version `version` of `template`, made by the runner, kept what the guide's
/// template holds and the runner does not manage, and put its root volume on the image's
/// root device.
async fn assert_template_settings_survive(emulator: &Emulator, template: &str, version: &str) {
    let data = emulator.template_data(template, version).await;
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some("red5pro-sm-builder"),
        "{data:?}"
    );
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required"),
        "{data:?}"
    );
    assert_eq!(
        data.monitoring().and_then(|m| m.enabled()),
        Some(true),
        "{data:?}"
    );
    let volumes: Vec<(Option<&str>, Option<i32>, Option<bool>)> = data
        .block_device_mappings()
        .iter()
        .map(|m| {
            (
                m.device_name(),
                m.ebs().and_then(|e| e.volume_size()),
                m.ebs().and_then(|e| e.encrypted()),
            )
        })
        .collect();
    assert!(
        volumes.contains(&(Some("/dev/xvda"), Some(16), Some(true))),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&(Some("/dev/sdf"), Some(50), Some(true))),
        "{volumes:?}"
    );
    assert!(
        !volumes
            .iter()
            .any(|(device, ..)| *device == Some("/dev/sda1")),
        "{volumes:?}"
    );
    let instance_tags: Vec<(&str, &str)> = data
        .tag_specifications()
        .iter()
        .filter(|t| t.resource_type().map(|r| r.as_str()) == Some("instance"))
        .flat_map(|t| t.tags())
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert!(
        instance_tags.contains(&("team", "streaming")),
        "{instance_tags:?}"
    );
    assert!(
        instance_tags
            .iter()
            .any(|(k, _)| *k == "red5-rollout:version"),
        "{instance_tags:?}"
    );
}

/// Starts apply with JSON events and SIGKILLs it once `stage` has finished; returns the run id.
fn kill_after(setup: &Setup, stage: &str) -> Option<String> {
    kill_after_with(setup, stage, &[])
}

/// [`kill_after`] with more arguments to apply.
fn kill_after_with(setup: &Setup, stage: &str, extra: &[&str]) -> Option<String> {
    kill_when(setup, extra, |event| {
        event["event"] == "stage-finished" && event["stage"] == stage
    })
}

/// Starts apply with JSON events and more arguments, and SIGKILLs it at the first event
/// that `now` picks; returns the run id when it was killed.
fn kill_when(setup: &Setup, extra: &[&str], now: impl Fn(&Value) -> bool) -> Option<String> {
    let mut args = vec!["apply", "--output", "json"];
    args.extend_from_slice(extra);
    let mut child = setup
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut run = None;
    let mut killed = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["event"] == "run-started" {
            run = event["run"].as_str().map(str::to_string);
        }
        if now(&event) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    killed.then_some(run).flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_at_every_stage_boundary_converges_with_one_of_everything() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-crash", "stream-manager", 2).await;
    setup.bump("12.4.0");
    for stage in [
        "launch-builder",
        "apply-update",
        "create-image",
        "create-launch-config",
        "swap-asg",
        "instance-refresh",
    ] {
        let Some(run) = kill_after(&setup, stage) else {
            panic!("the run ended before {stage} finished");
        };
        // SIGKILL leaves the lock behind; the on-call engineer removes it explicitly.
        let out = setup.run(&["unlock", &setup.fleet.group, "--run", &run]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).starts_with(&format!("removed the lock of run {run}")),
            "{}",
            stdout(&out)
        );
        assert!(setup.live_builders().await.len() <= 1);
    }
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(setup.images_of("12.4.0").await.len(), 1);
    assert_eq!(setup.configs_of("12.4.0").await.len(), 1);
    assert!(setup.live_builders().await.is_empty());
    setup.assert_fleet_on("2", "12.4.0").await;
}

/// The same without `unlock`: each killed run leaves its lease, and the next run, started
/// once that lease has expired past its grace, takes it over and resumes.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_at_every_stage_boundary_is_taken_over_once_its_lease_expires() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-lease", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let short = ["--lease", "2s", "--lease-grace", "1s"];
    for stage in [
        "launch-builder",
        "apply-update",
        "create-image",
        "create-launch-config",
        "swap-asg",
        "instance-refresh",
    ] {
        if kill_after_with(&setup, stage, &short).is_none() {
            panic!("the run ended before {stage} finished");
        }
        // The dead run's lease ran out 2 s after its last renewal; its grace is 1 s.
        std::thread::sleep(std::time::Duration::from_millis(3200));
    }
    let mut args = vec!["apply", "--output", "json"];
    args.extend_from_slice(&short);
    let out = setup.run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The last killed run's lease is taken over (or, had nothing been left to do,
    // removed): never left to block the group.
    assert!(
        stderr(&out).contains("\"event\":\"lease-taken-over\"")
            || stderr(&out).contains("\"event\":\"lease-cleared\""),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.images_of("12.4.0").await.len(), 1);
    assert_eq!(setup.configs_of("12.4.0").await.len(), 1);
    assert!(setup.live_builders().await.is_empty());
    let lease = setup.lease().await;
    assert_eq!(lease, None);
    setup.assert_fleet_on("2", "12.4.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_update_script_fails_untouched_with_its_output() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-ssm", "stream-manager", 1).await;
    setup.bump("12.4.0");
    emulator.set_faults(serde_json::json!({"ssm_fail_next": {"output": "downloading\nsha256sum: WARNING: 1 computed checksum did NOT match", "exit_code": 1}}));
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("apply-update: the update script failed on i-"),
        "{err}"
    );
    assert!(
        err.contains("sha256sum: WARNING: 1 computed checksum did NOT match"),
        "{err}"
    );
    assert!(setup.live_builders().await.is_empty());
    setup.assert_fleet_on("1", "12.3.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_image_fails_untouched_with_the_reason() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-image", "stream-manager", 1).await;
    setup.bump("12.4.0");
    emulator
        .set_faults(serde_json::json!({"image_fail_next": {"reason": "snapshot creation failed"}}));
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failed: snapshot creation failed"),
        "{}",
        stderr(&out)
    );
    assert!(setup.live_builders().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_refresh_is_rolled_back_and_exits_3() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-refresh", "stream-manager", 2).await;
    setup.bump("12.4.0");
    emulator.set_faults(serde_json::json!({"refresh_fail_at_percent": 50}));
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the group was rolled back to template version 1"),
        "{}",
        stderr(&out)
    );
    let group = setup.cloud().await.group(&setup.fleet.group).await.unwrap();
    assert!(
        matches!(&group.config, GroupConfig::Template { version, .. } if version == "1"),
        "{:?}",
        group.config
    );
    assert!(setup.live_builders().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_refresh_of_a_launch_configuration_is_rolled_back_by_the_runner() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-lc-refresh", "stream-manager-legacy", 1).await;
    setup.bump("12.4.0");
    emulator.set_faults(serde_json::json!({"refresh_fail_at_percent": 50}));
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let previous = setup.fleet.configuration.clone().unwrap();
    assert!(
        stderr(&out).contains(&format!("rolled back to launch configuration {previous}")),
        "{}",
        stderr(&out)
    );
    let group = setup.cloud().await.group(&setup.fleet.group).await.unwrap();
    assert_eq!(group.config, GroupConfig::Configuration { name: previous });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_refresh_that_failed_after_its_run_was_killed_is_moved_back_by_the_next_run()
 {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-lc-dead", "stream-manager-legacy", 1).await;
    setup.bump("12.4.0");
    emulator.set_faults(serde_json::json!({"refresh_fail_at_percent": 50}));
    let short = ["--lease", "2s", "--lease-grace", "1s"];
    let killed = kill_when(&setup, &short, |event| {
        event["event"] == "stage-progress" && event["stage"] == "instance-refresh"
    });
    assert!(killed.is_some(), "the run ended before its refresh started");
    let cloud = setup.cloud().await;
    let previous = setup.fleet.configuration.clone().unwrap();
    let group = cloud.group(&setup.fleet.group).await.unwrap();
    assert_ne!(
        group.config,
        GroupConfig::Configuration {
            name: previous.clone()
        }
    );
    // The refresh fails while no run follows it; AWS does not move a configuration back.
    for _ in 0..600 {
        let refreshes = cloud.refreshes(&setup.fleet.group).await.unwrap();
        if refreshes.first().is_some_and(|r| !r.is_active()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ended = cloud.refreshes(&setup.fleet.group).await.unwrap();
    assert_eq!(ended[0].status, RefreshStatus::Failed, "{ended:?}");
    assert!(ended[0].started.is_some(), "{ended:?}");
    std::thread::sleep(std::time::Duration::from_millis(3200));

    let plan = setup.run(&["plan", &setup.pipeline]);
    assert!(
        stdout(&plan).contains("ended Failed while no run followed it"),
        "{}",
        stdout(&plan)
    );
    emulator.reset_calls();
    let mut args = vec!["apply", "--output", "json"];
    args.extend_from_slice(&short);
    let out = setup.run(&args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("rolled back to launch configuration {previous}")),
        "{}",
        stderr(&out)
    );
    let calls = mutating(&emulator);
    assert_eq!(
        count(&calls, "autoscaling:StartInstanceRefresh"),
        1,
        "only the refresh back: {calls:?}"
    );
    let group = cloud.group(&setup.fleet.group).await.unwrap();
    assert_eq!(group.config, GroupConfig::Configuration { name: previous });
    assert_eq!(setup.lease().await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_a_fifth_of_calls_still_converges() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-throttle", "stream-manager", 1).await;
    setup.bump("12.4.0");
    emulator.set_faults(serde_json::json!({"throttle_fraction": 0.2}));
    let out = setup.apply();
    emulator.clear_faults();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let throttled = emulator.calls()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["fault"] == "throttled")
        .count();
    assert!(throttled > 5, "only {throttled} calls were throttled");
    setup.assert_fleet_on("2", "12.4.0").await;
}

/// EC2's eventual consistency: every new instance, image and template version stays
/// invisible to Describe calls for a while after it was made. "Not found" right after a
/// create is taken as pending, cleanup terminates the builder it launched by its id (a tag
/// filter does not list it yet), and the rollout converges with one of everything.
#[tokio::test(flavor = "multi_thread")]
async fn new_resources_invisible_for_a_while_do_not_fail_the_rollout() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-invisible", "stream-manager", 1).await;
    setup.bump("12.4.0");
    // 100 emulated seconds at the tests' time scale of 0.02: 2 real seconds.
    emulator.set_faults(serde_json::json!({"invisible_for_seconds": 100}));
    let out = setup.apply();
    emulator.clear_faults();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not visible yet (EC2 is eventually consistent)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(setup.images_of("12.4.0").await.len(), 1);
    assert!(setup.live_builders().await.is_empty());
    setup.assert_fleet_on("2", "12.4.0").await;
}

/// Every call throttled for 30 s (beyond the SDK's own retries) in the middle of the
/// image wait: the wait counts the failures as "still pending", says so, and the rollout
/// completes.
#[tokio::test(flavor = "multi_thread")]
async fn thirty_seconds_of_throttling_in_the_image_wait_is_ridden_out() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-throttle-window", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let mut child = setup
        .command(&["apply", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut throttled = false;
    let mut tolerated = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let message = event["message"].as_str().unwrap_or_default();
        if !throttled
            && event["event"] == "stage-progress"
            && event["stage"] == "create-image"
            && message.contains("to be available")
        {
            // 1500 emulated seconds at the tests' time scale of 0.02: 30 real seconds.
            emulator.set_faults(serde_json::json!({"throttle_for_seconds": 1500}));
            throttled = true;
        }
        tolerated |= message.contains("failures in a row tolerated");
    }
    let status = child.wait().unwrap();
    assert!(throttled, "the image wait was never seen");
    assert!(
        tolerated,
        "no progress line said the failures were tolerated"
    );
    assert_eq!(status.code(), Some(0));
    setup.assert_fleet_on("2", "12.4.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_applies_on_one_group_one_proceeds_the_other_exits_6() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-race", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let first = setup
        .command(&["apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = setup
        .command(&["apply"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    let mut codes = vec![a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(
        codes,
        vec![Some(0), Some(6)],
        "{}\n---\n{}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if a.status.code() == Some(6) { &a } else { &b };
    assert!(
        stderr(loser).contains(&format!("group {} is leased by run ", setup.fleet.group)),
        "{}",
        stderr(loser)
    );
    assert!(setup.live_builders().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unlock_removes_only_the_lock_of_the_run_it_names() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-unlock", "stream-manager", 1).await;
    let lock = red5_rollout::cloud::Lock {
        run: "run-gone".into(),
        host: "ci-3".into(),
        commit: "abc".into(),
        started: "2026-11-24T06:00:00Z".into(),
        expires: Some("2099-01-01T00:00:00Z".into()),
        ci_run: None,
        ci_url: None,
    };
    let name = red5_rollout::run::lock_name(&setup.fleet.group);
    setup.cloud().await.put_lock(&name, &lock).await.unwrap();
    // status names the holder.
    let status = setup.run(&["status", &setup.pipeline]);
    assert!(
        stdout(&status).contains(
            "  lease:         held by run run-gone on ci-3 (commit abc) since 2026-11-24T06:00:00Z, lease until 2099-01-01T00:00:00Z"
        ),
        "{}",
        stdout(&status)
    );

    let out = setup.run(&["unlock", &setup.fleet.group, "--run", "run-other"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with(&format!(
        "error: the lock of group {} is held by run run-gone on ci-3, not by run-other: nothing was removed",
        setup.fleet.group
    )), "{}", stderr(&out));
    assert!(
        setup
            .cloud()
            .await
            .read_lock(&name)
            .await
            .unwrap()
            .is_some()
    );

    let out = setup.run(&["unlock", &setup.fleet.group, "--run", "run-gone"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(setup.cloud().await.read_lock(&name).await.unwrap(), None);
    let out = setup.run(&["unlock", &setup.fleet.group, "--run", "run-gone"]);
    assert_eq!(
        stdout(&out),
        format!("group {} is not locked\n", setup.fleet.group)
    );
}

/// The seeded fleet, as the Red5 Pro guide builds it: not known until adopted; then both
/// shipped pipelines roll out in one run (distinct idempotency tokens: the emulator refuses
/// a token reused with other parameters), calling only what the shipped IAM policy allows;
/// and a revert rolls both back without launching or imaging.
#[tokio::test(flavor = "multi_thread")]
async fn the_guide_built_fleet_is_adopted_rolled_out_in_one_run_and_reverted_without_baking() {
    let emulator = Emulator::alone().await;
    let repo = crate::support::shipped_repo();
    // The shipped repository asks for 12.4.0; start from the commit that asked for 12.3.0.
    std::fs::remove_file(repo.path().join("releases/12.4.0.yaml")).unwrap();
    git(repo.path(), &["commit", "-q", "-am", "fleet on 12.3.0"]);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_red5-rollout"))
            .args(args)
            .current_dir(repo.path())
            .env("AWS_ENDPOINT_URL", emulator.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("CI", "true")
            .env_remove("RED5_ROLLOUT_REPO")
            .output()
            .unwrap()
    };

    let out = run(&["status", "stream-manager"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(
            "stream-manager: group red5pro-sm-asg (us-east-1) is not adopted: red5-rollout does not know which release it runs\n  adopt it once: red5-rollout adopt stream-manager --version <VERSION>\n"
        ),
        "{}",
        stdout(&out)
    );
    let out = run(&["plan", "stream-manager"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("group red5pro-sm-asg is not known to red5-rollout yet")
            && stderr(&out).contains("red5-rollout adopt stream-manager --version <VERSION>"),
        "{}",
        stderr(&out)
    );

    for pipeline in ["stream-manager", "stream-manager-legacy"] {
        let out = run(&["adopt", pipeline, "--version", "12.3.0", "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stdout(&out).starts_with("adopt will tag:\n  image ami-"),
            "{}",
            stdout(&out)
        );
    }
    let again = run(&["adopt", "stream-manager", "--version", "12.3.0", "--yes"]);
    assert!(
        stdout(&again).starts_with("nothing to do"),
        "{}",
        stdout(&again)
    );
    let other = run(&["adopt", "stream-manager", "--version", "12.2.0", "--yes"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).contains("is already tagged as release 12.3.0, not 12.2.0"),
        "{}",
        stderr(&other)
    );
    let out = run(&["plan"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));

    std::fs::write(
        repo.path().join("releases/12.4.0.yaml"),
        release_text("12.4.0"),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "release 12.4.0"]);
    emulator.reset_calls();
    let out = run(&["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:RunInstances"), 2, "{calls:?}");
    assert_eq!(count(&calls, "ec2:CreateImage"), 2, "{calls:?}");
    // The template group is pinned from $Default, the legacy group swapped.
    assert_eq!(
        count(&calls, "autoscaling:UpdateAutoScalingGroup"),
        2,
        "{calls:?}"
    );
    assert_template_settings_survive(&emulator, "red5pro-sm", "2").await;

    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::crate_root().join("docs/iam/apply.json")).unwrap(),
    )
    .unwrap();
    let allowed: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    let called = emulator.calls();
    let not_allowed: Vec<&String> = called["counts"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|action| !allowed.contains(action))
        .collect();
    assert!(
        not_allowed.is_empty(),
        "docs/iam/apply.json lacks {not_allowed:?}"
    );

    git(repo.path(), &["revert", "--no-edit", "HEAD"]);
    emulator.reset_calls();
    let out = run(&["apply", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:RunInstances"), 0, "{calls:?}");
    assert_eq!(count(&calls, "ec2:CreateImage"), 0, "{calls:?}");
    assert_eq!(
        count(&calls, "autoscaling:StartInstanceRefresh"),
        2,
        "{calls:?}"
    );
}

/// Once the old release's image is deregistered, a rollback is refused with its choices,
/// never baked on top of the newer image (a mixed install), and nothing is changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_whose_image_was_deregistered_is_refused_with_its_choices() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-deregistered", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    emulator.deregister_image(&setup.fleet.image_id).await;
    git(setup.repo.path(), &["revert", "--no-edit", "HEAD"]);
    emulator.reset_calls();
    let out = setup.run(&["plan", &setup.pipeline]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "no image of 12.3.0 exists any more, and the group runs 12.4.0: baking 12.3.0 on top of the 12.4.0 image would mix two installs"
        ) && stderr(&out).contains(&format!(
            "red5-rollout adopt {} --version 12.3.0 --image <AMI>",
            setup.pipeline
        )),
        "{}",
        stderr(&out)
    );
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cleans_up_releases_the_lock_and_exits_5() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-sigterm", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let mut child = setup
        .command(&["apply", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut signalled = false;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        seen.push(line.clone());
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["event"] == "stage-started" && event["stage"] == "apply-update" {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            signalled = true;
            break;
        }
    }
    assert!(
        signalled,
        "apply-update never started:\n{}",
        seen.join("\n")
    );
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(5), "{}", seen.join("\n"));
    let finished: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("\"pipeline-finished\""))
        .collect();
    assert_eq!(finished.len(), 1, "{}", seen.join("\n"));
    assert!(
        finished[0].contains("\"result\":\"interrupted\""),
        "{}",
        finished[0]
    );
    assert!(setup.live_builders().await.is_empty());
    let lock = setup.lease().await;
    assert_eq!(lock, None);
    setup.assert_fleet_on("1", "12.3.0").await;
}

/// GitHub Actions cancels a job with SIGINT, SIGTERM about 7.5 s later, and SIGKILL 2.5 s
/// after that. Here SIGTERM follows SIGINT at once (the harder case: the second signal
/// must not cut the cleanup short) and SIGKILL comes 10 s after SIGINT: the run starts
/// nothing new, terminates the builder, releases the lease and exits 5 before it.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_as_github_actions_cancels_it_exits_5_within_the_window_with_nothing_left() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-cancel", "stream-manager", 1).await;
    setup.bump("12.4.0");
    let mut child = setup
        .command(&["apply", "--output", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, &pid])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut cancelled_at = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        seen.push(line.clone());
        if line.contains("\"stage-started\"") && line.contains("\"apply-update\"") {
            assert!(signal("-INT"));
            cancelled_at = Some(std::time::Instant::now());
            std::thread::sleep(std::time::Duration::from_millis(100));
            signal("-TERM");
            break;
        }
    }
    let Some(cancelled_at) = cancelled_at else {
        panic!("apply-update never started:\n{}", seen.join("\n"));
    };
    // The runner kills the process tree 10 s after SIGINT, as GitHub does.
    let killer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(10));
        // The run has normally exited long before: nothing to kill then.
        Command::new("kill")
            .args(["-KILL", &pid])
            .stderr(Stdio::null())
            .status()
            .ok();
    });
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    let took = cancelled_at.elapsed();
    assert_eq!(status.code(), Some(5), "{}", seen.join("\n"));
    assert!(took.as_secs_f64() < 10.0, "took {took:?}");
    assert!(setup.live_builders().await.is_empty());
    let lease = setup.lease().await;
    assert_eq!(lease, None);
    drop(killer);
}

/// Crashes happen between any two instructions: SIGKILL at seeded random moments spread over
/// a whole rollout, each followed by plain re-runs (no `unlock`: the short test lease runs
/// out) until the rollout converges. Every trial ends with the group on the new version,
/// one image and one template version for it, the install script sent at most once per
/// builder, no builder and no lease left. `RED5_KILL_TRIALS` sets the number of trials (20
/// here; `benches/kill-anywhere.sh` runs 50 and prints the figures); `RED5_KILL_SEED` the
/// seed.
#[tokio::test(flavor = "multi_thread")]
async fn killed_at_random_moments_every_run_converges_with_one_of_everything() {
    use rand::{Rng, SeedableRng};
    let emulator = Emulator::shared().await;
    let trials: usize = std::env::var("RED5_KILL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("RED5_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261130);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let lease = ["--lease", "2s", "--lease-grace", "1s"];
    let apply_args: Vec<&str> = ["apply", "--output", "json"]
        .into_iter()
        .chain(lease)
        .collect();

    // How long a whole rollout takes here: the moments are drawn over it.
    let reference = setup(&emulator, "e2e-kill-reference", "stream-manager", 1).await;
    reference.bump("12.4.0");
    let started = std::time::Instant::now();
    let out = reference.run(&apply_args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let whole = started.elapsed();

    let mut reruns = Vec::new();
    for trial in 0..trials {
        let setup = setup(&emulator, "e2e-kill", "stream-manager", 1).await;
        setup.bump("12.4.0");
        let moment = whole.mul_f64(rng.random::<f64>());
        let mut child = setup
            .command(&apply_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(moment);
        let _ = child.kill();
        let _ = child.wait();
        let mut runs = 0;
        loop {
            runs += 1;
            let out = setup.run(&apply_args);
            match out.status.code() {
                Some(0) => break,
                // The killed run's lease has not run out yet.
                Some(6) if runs < 10 => std::thread::sleep(std::time::Duration::from_secs(1)),
                other => panic!(
                    "trial {trial} (seed {seed}, killed after {moment:?}): re-run {runs} exited {other:?}\n{}",
                    stderr(&out)
                ),
            }
        }
        reruns.push(runs);
        let context = format!("trial {trial} (seed {seed}, killed after {moment:?})");
        assert_eq!(setup.images_of("12.4.0").await.len(), 1, "{context}");
        assert_eq!(setup.configs_of("12.4.0").await.len(), 1, "{context}");
        assert!(setup.live_builders().await.is_empty(), "{context}");
        let lease = setup.lease().await;
        assert_eq!(lease, None, "{context}");
        for (builder, installs) in emulator.installs_per_builder(&setup.pipeline).await {
            assert!(installs <= 1, "{context}: {installs} installs on {builder}");
        }
        setup.assert_fleet_on("2", "12.4.0").await;
    }
    println!(
        "kill-anywhere: {trials} trials (seed {seed}) over a {whole:?} rollout; re-runs until converged: {reruns:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verbose_logs_every_aws_call_on_stderr_and_only_when_asked() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-verbose", "stream-manager", 1).await;
    let quiet = setup.run(&["status", &setup.pipeline]);
    assert_eq!(quiet.status.code(), Some(0), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("AWS call"), "{}", stderr(&quiet));
    let verbose = setup.run(&["-v", "status", &setup.pipeline]);
    assert_eq!(verbose.status.code(), Some(0), "{}", stderr(&verbose));
    let log = stderr(&verbose);
    assert!(
        log.contains("AWS call") && log.contains("operation=\"DescribeAutoScalingGroups\""),
        "{log}"
    );
    // The log goes to stderr: what status prints stays as it was.
    assert_eq!(stdout(&verbose), stdout(&quiet));
    // RUST_LOG decides when set.
    let filtered = setup
        .command(&["-v", "status", &setup.pipeline])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(
        !stderr(&filtered).contains("AWS call"),
        "{}",
        stderr(&filtered)
    );
}

/// When the emulator received each call since it last forgot them, in seconds.
fn call_times(emulator: &Emulator) -> Vec<f64> {
    emulator.calls()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["time"].as_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_call_budget_spaces_calls_after_the_burst_and_every_call_is_counted() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-budget", "stream-manager", 1).await;

    // Without a budget, status's reads go out back to back.
    emulator.reset_calls();
    let free = setup.run(&["status", &setup.pipeline, "--aws-calls-per-second", "0"]);
    assert_eq!(free.status.code(), Some(0), "{}", stderr(&free));
    let unlimited = call_times(&emulator);
    assert!(unlimited.len() > 4, "{unlimited:?}");
    // With two at once and then two a second, every call after the second waits its turn.
    emulator.reset_calls();
    let held = setup.run(&[
        "status",
        &setup.pipeline,
        "--aws-calls-per-second",
        "2",
        "--aws-calls-burst",
        "2",
    ]);
    assert_eq!(held.status.code(), Some(0), "{}", stderr(&held));
    assert_eq!(stdout(&held), stdout(&free));
    let limited = call_times(&emulator);
    assert_eq!(limited.len(), unlimited.len());
    let gaps: Vec<f64> = limited.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps[1..] {
        assert!(
            *gap >= 0.45,
            "calls closer than the budget allows: {gaps:?}"
        );
    }
    let spread = |times: &[f64]| times[times.len() - 1] - times[0];
    assert!(
        spread(&limited) >= 0.45 * (limited.len() - 2) as f64,
        "{limited:?}"
    );
    assert!(
        spread(&unlimited) < spread(&limited),
        "{unlimited:?} {limited:?}"
    );

    // A rollout's end counts its calls: every mutating call AWS received is in it.
    setup.bump("12.4.0");
    emulator.reset_calls();
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let finished: Value = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "pipeline-finished")
        .unwrap();
    let counted = &finished["aws_calls"];
    let received = emulator.calls();
    let mutating: u64 = mutating(&emulator).iter().map(|(_, n)| n).sum();
    assert_eq!(counted["mutating"].as_u64(), Some(mutating), "{finished}");
    // Planning before the run (its reads) is not the pipeline's run: AWS saw more reads.
    let total = counted["reads"].as_u64().unwrap() + mutating;
    assert!(
        total <= received["total"].as_u64().unwrap(),
        "{finished} {received}"
    );
    assert!(total > mutating, "{finished}");
}

/// A bare copy of the setup's repository, as a remote a watcher follows, and a directory
/// for the watcher's mirror.
struct Watched {
    remote: TempDir,
    mirrors: TempDir,
}

impl Setup {
    fn remote(&self) -> Watched {
        let remote = tempfile::tempdir().unwrap();
        let status = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(self.repo.path())
            .arg(remote.path())
            .status()
            .unwrap();
        assert!(status.success());
        Watched {
            remote,
            mirrors: tempfile::tempdir().unwrap(),
        }
    }

    /// Pushes the setup's main to the watched remote.
    fn push(&self, watched: &Watched) {
        let remote = watched.remote.path().to_str().unwrap();
        git(self.repo.path(), &["push", "-q", remote, "main"]);
    }

    /// `watch --once` against the watched remote, with the mirror `mirror` (a name under
    /// the watched mirrors' directory) and `extra` arguments.
    fn watch_once(&self, watched: &Watched, mirror: &str, extra: &[&str]) -> Output {
        let remote = watched.remote.path().to_str().unwrap().to_string();
        let mirror = watched.mirrors.path().join(mirror);
        let mut args = vec![
            "watch",
            "--once",
            "--output",
            "json",
            "--remote",
            &remote,
            "--mirror",
            mirror.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(&self.pipeline);
        self.run(&args)
    }
}

/// The JSON events of `out`'s stderr named `event`.
fn events_named(out: &Output, event: &str) -> Vec<Value> {
    stderr(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == event)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_applies_a_pushed_bump_once_whatever_restarts_or_hosts_follow() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-watch", "stream-manager", 1).await;
    let watched = setup.remote();

    // The adopted fleet runs what git asks for: nothing to apply.
    emulator.reset_calls();
    let idle = setup.watch_once(&watched, "host-a", &[]);
    assert_eq!(idle.status.code(), Some(0), "{}", stderr(&idle));
    assert!(
        stdout(&idle).contains("nothing to apply"),
        "{}",
        stdout(&idle)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    setup.bump("12.4.0");
    setup.push(&watched);
    let applied = setup.watch_once(&watched, "host-a", &[]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    setup.assert_fleet_on("2", "12.4.0").await;
    assert_eq!(count(&mutating(&emulator), "ec2:CreateImage"), 1);

    // A restart, and a watcher on another host (a fresh mirror), read what is applied from
    // AWS: neither applies again.
    emulator.reset_calls();
    for mirror in ["host-a", "host-b"] {
        let again = setup.watch_once(&watched, mirror, &[]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert!(
            stdout(&again).contains("nothing to apply"),
            "{mirror}: {}",
            stdout(&again)
        );
    }
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    // Two watchers at once on the next bump: one applies, the other finds the group
    // leased (or, after it, converged); the release is baked and rolled out once.
    setup.bump("12.5.0");
    setup.push(&watched);
    emulator.reset_calls();
    let racers: Vec<_> = ["host-a", "host-b"]
        .iter()
        .map(|mirror| {
            let remote = watched.remote.path().to_str().unwrap().to_string();
            let mirror = watched.mirrors.path().join(mirror);
            setup
                .command(&[
                    "watch",
                    "--once",
                    "--output",
                    "json",
                    "--remote",
                    &remote,
                    "--mirror",
                    mirror.to_str().unwrap(),
                    &setup.pipeline,
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<Option<i32>> = racers
        .into_iter()
        .map(|child| child.wait_with_output().unwrap().status.code())
        .collect();
    assert!(codes.contains(&Some(0)), "{codes:?}");
    assert!(
        codes.iter().all(|c| matches!(c, Some(0) | Some(6))),
        "{codes:?}"
    );
    let calls = mutating(&emulator);
    for action in [
        "ec2:RunInstances",
        "ec2:CreateImage",
        "autoscaling:StartInstanceRefresh",
    ] {
        assert_eq!(count(&calls, action), 1, "{action} in {calls:?}");
    }
    setup.assert_fleet_on("3", "12.5.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reports_a_hand_change_as_drift_and_heals_it_only_when_asked() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-drift", "stream-manager", 1).await;
    let watched = setup.remote();
    setup.bump("12.4.0");
    setup.push(&watched);
    let applied = setup.watch_once(&watched, "m", &[]);
    assert_eq!(applied.status.code(), Some(0), "{}", stderr(&applied));
    setup.assert_fleet_on("2", "12.4.0").await;

    // By hand: the group back on version 1 of its template, its maximum raised, the
    // template's default version moved.
    let cloud = setup.cloud().await;
    let template = setup.fleet.template().to_string();
    cloud
        .set_group_template_version(&setup.fleet.group, &template, "1")
        .await
        .unwrap();
    let group = cloud.group(&setup.fleet.group).await.unwrap();
    cloud
        .set_group_bounds(&setup.fleet.group, group.min_size, group.max_size + 3)
        .await
        .unwrap();
    cloud
        .set_default_template_version(&template, 2)
        .await
        .unwrap();

    emulator.reset_calls();
    let reported = setup.watch_once(&watched, "m", &[]);
    assert_eq!(reported.status.code(), Some(0), "{}", stderr(&reported));
    let kinds: Vec<String> = events_named(&reported, "drifted")
        .iter()
        .map(|e| e["drift"]["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    for kind in ["configuration", "instances", "bounds", "default-version"] {
        assert!(kinds.contains(&kind.to_string()), "{kind} not in {kinds:?}");
    }
    assert!(
        events_named(&reported, "drifted")
            .iter()
            .all(|e| e["healing"] == false)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    let healed = setup.watch_once(&watched, "m", &["--heal"]);
    assert_eq!(healed.status.code(), Some(0), "{}", stderr(&healed));
    setup.assert_fleet_on("2", "12.4.0").await;
    let group = cloud.group(&setup.fleet.group).await.unwrap();
    assert_eq!(group.max_size, group.recorded_bounds().unwrap().1);
    assert_eq!(
        cloud
            .launch_template(&template)
            .await
            .unwrap()
            .default_version,
        1
    );
    // Healed, nothing drifts any more, and nothing was baked for it.
    let calm = setup.watch_once(&watched, "m", &[]);
    assert!(
        events_named(&calm, "drifted").is_empty(),
        "{}",
        stderr(&calm)
    );
    assert_eq!(count(&mutating(&emulator), "ec2:CreateImage"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_watch_apply_waits_for_a_new_commit_or_retry_failed() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-watch-fail", "stream-manager", 1).await;
    let watched = setup.remote();
    setup.bump("12.4.0");
    setup.push(&watched);
    emulator.set_faults(serde_json::json!({"ssm_fail_next": {"output": "sha256sum: WARNING: 1 computed checksum did NOT match", "exit_code": 1}}));
    let failed = setup.watch_once(&watched, "m", &[]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));

    // The next cycles (this host or another) do not bake it again: the failure is on the
    // group, for every watcher.
    emulator.reset_calls();
    for mirror in ["m", "other"] {
        let held = setup.watch_once(&watched, mirror, &[]);
        assert_eq!(held.status.code(), Some(0), "{}", stderr(&held));
        assert!(
            stdout(&held).contains("nothing to apply"),
            "{}",
            stdout(&held)
        );
    }
    assert_eq!(count(&mutating(&emulator), "ec2:RunInstances"), 0);

    // Asked to, it tries again (and the script passes this time).
    let retried = setup.watch_once(&watched, "m", &["--retry-failed"]);
    assert_eq!(retried.status.code(), Some(0), "{}", stderr(&retried));
    setup.assert_fleet_on("2", "12.4.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_lived_watch_converges_a_push_and_stops_at_once_on_sigterm_when_idle() {
    let emulator = Emulator::shared().await;
    let setup = setup(&emulator, "e2e-watch-loop", "stream-manager", 1).await;
    let watched = setup.remote();
    let remote = watched.remote.path().to_str().unwrap().to_string();
    let mirror = watched.mirrors.path().join("m");
    let mut child = setup
        .command(&[
            "watch",
            "--interval",
            "1s",
            "--output",
            "json",
            "--remote",
            &remote,
            "--mirror",
            mirror.to_str().unwrap(),
            &setup.pipeline,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    setup.bump("12.4.0");
    setup.push(&watched);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        seen.push(line.clone());
        if line.contains("\"run-finished\"") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("\"result\":\"converged\"")),
        "{}",
        seen.join("\n")
    );
    setup.assert_fleet_on("2", "12.4.0").await;
    // Idle again: a SIGTERM ends it at once, with success.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
}

/// A launch specification as a person writes one by hand: none of the runner's tags.
async fn by_hand(cloud: &AwsCloud, name: &str, image: &str) -> red5_rollout::cloud::LaunchSpec {
    red5_rollout::cloud::LaunchSpec {
        name: name.to_owned(),
        image_id: image.to_owned(),
        instance_type: "m5.large".into(),
        security_group_ids: cloud
            .resolve_security_groups(&["red5pro-sm-sg".to_string()])
            .await
            .unwrap(),
        key_pair: None,
        public_ip: None,
        volume_size_gb: 16,
        root_device_name: "/dev/xvda".into(),
        user_data: "#!/bin/bash\n".into(),
        tags: tags(&[("team", "streaming")]),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_keeps_what_a_revert_needs_deletes_the_rest_and_never_what_a_person_made() {
    let emulator = Emulator::alone().await;
    let setup = setup(&emulator, "e2e-gc", "stream-manager", 1).await;
    // Five bumps (template versions 2 to 6), then the revert of the last: 12.7.0 runs.
    for version in ["12.4.0", "12.5.0", "12.6.0", "12.7.0", "12.8.0"] {
        setup.bump(version);
        let out = setup.apply();
        assert_eq!(out.status.code(), Some(0), "{version}: {}", stderr(&out));
    }
    git(setup.repo.path(), &["revert", "--no-edit", "HEAD"]);
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "revert: {}", stderr(&out));
    setup.assert_fleet_on("5", "12.7.0").await;

    // What a person made by hand: an image without the runner's tags, a template version
    // launching it, and a launch configuration launching the runner's 12.5.0 image.
    let cloud = setup.cloud().await;
    let untagged = base_image(&cloud, &emulator, &setup.pipeline).await;
    let template = setup.fleet.template().to_owned();
    let hand_version = cloud
        .create_template_version(
            &template,
            "1",
            &by_hand(&cloud, "made by hand", &untagged).await,
        )
        .await
        .unwrap()
        .id;
    let image_125 = setup.images_of("12.5.0").await[0].clone();
    let hand_configuration = unique_name("by-hand-LC");
    cloud
        .create_launch_configuration(&by_hand(&cloud, &hand_configuration, &image_125).await)
        .await
        .unwrap();
    let image_124 = setup.images_of("12.4.0").await[0].clone();
    let image_126 = setup.images_of("12.6.0").await[0].clone();
    let mut snapshots = Vec::new();
    for image in [&image_124, &image_126] {
        snapshots.extend(cloud.image(image).await.unwrap().snapshots);
    }
    assert!(!snapshots.is_empty());

    emulator.reset_calls();
    let dry = setup.run(&["gc", "--keep", "2", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());
    let shown = stdout(&dry);
    for line in [
        "delete template version 2".to_owned(),
        "delete template version 3".to_owned(),
        "delete template version 4".to_owned(),
        format!("delete image {image_124}"),
        format!("delete image {image_126}"),
        "dry run: nothing was deleted".to_owned(),
    ] {
        assert!(shown.contains(&line), "{line} missing from:\n{shown}");
    }
    for (kept, why) in [
        (
            "keep   template version 5",
            "runs now, newest 2, selected at HEAD",
        ),
        ("keep   template version 6", "newest 2, revert target at"),
        (
            &format!("keep   image {image_125}") as &str,
            &format!("launch configuration {hand_configuration} launches it") as &str,
        ),
    ] {
        let line = shown
            .lines()
            .find(|l| l.trim_start().starts_with(kept))
            .unwrap_or_else(|| panic!("{kept} missing from:\n{shown}"));
        assert!(line.contains(why), "{line}");
    }
    assert!(!shown.contains(&untagged), "{shown}");
    assert!(
        !shown.contains(&format!("template version {hand_version}")),
        "{shown}"
    );

    emulator.reset_calls();
    let out = setup.run(&["gc", "--keep", "2", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(
        calls,
        vec![
            ("autoscaling:DeleteLaunchConfiguration".to_owned(), 0),
            ("ec2:DeleteLaunchTemplateVersions".to_owned(), 1),
            ("ec2:DeleteSnapshot".to_owned(), snapshots.len() as u64),
            ("ec2:DeregisterImage".to_owned(), 2),
            ("ssm:DeleteParameter".to_owned(), 1),
            ("ssm:PutParameter".to_owned(), 1),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect::<Vec<_>>()
    );
    for (version, left) in [
        ("12.4.0", 0),
        ("12.5.0", 1),
        ("12.6.0", 0),
        ("12.7.0", 1),
        ("12.8.0", 1),
    ] {
        assert_eq!(setup.images_of(version).await.len(), left, "{version}");
    }
    let versions: Vec<String> = cloud
        .template_versions(&template)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(versions, vec!["1", "5", "6", hand_version.as_str()]);
    assert_eq!(
        cloud.image(&untagged).await.unwrap().status,
        ImageStatus::Available
    );
    assert!(
        cloud
            .launch_configurations(&hand_configuration)
            .await
            .unwrap()
            .len()
            == 1
    );
    // Adopted 12.3.0 stays: a person built it.
    assert!(
        cloud
            .image(&setup.fleet.image_id)
            .await
            .unwrap()
            .tags
            .contains_key(TAG_PIPELINE)
    );

    emulator.reset_calls();
    let again = setup.run(&["gc", "--keep", "2", "--yes"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("nothing to delete"),
        "{}",
        stdout(&again)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    // What a revert needs is still there: reverting the revert rolls 12.8.0 out again
    // without a bake.
    git(setup.repo.path(), &["revert", "--no-edit", "HEAD"]);
    emulator.reset_calls();
    let out = setup.apply();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:RunInstances"), 0, "{calls:?}");
    assert_eq!(count(&calls, "ec2:CreateImage"), 0, "{calls:?}");
    setup.assert_fleet_on("6", "12.8.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn production_rolls_out_the_image_staging_baked_and_only_after_staging_succeeded() {
    let emulator = Emulator::alone().await;
    let staging = setup(&emulator, "e2e-staging", "stream-manager", 1).await;
    // Production: a fleet of its own (built as the guide builds one, on its own 12.3.0
    // image), and a pipeline that promotes staging's images.
    let cloud = emulator.cloud().await;
    let production = unique_name("e2e-production");
    let image = base_image(&cloud, &emulator, &production).await;
    let fleet = emulator.guide_template_fleet(&production, 1, &image).await;
    staging.promoting_pipeline(&production, "us-east-1", &fleet);

    staging.bump("12.4.0");
    emulator.reset_calls();
    let early = staging.run(&["apply", &production, "--output", "json"]);
    assert_eq!(early.status.code(), Some(1), "{}", stderr(&early));
    assert!(
        stderr(&early).contains(&format!("{} has no image of 12.4.0", staging.pipeline)),
        "{}",
        stderr(&early)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    let baked = staging.run(&["apply", &staging.pipeline, "--output", "json"]);
    assert_eq!(baked.status.code(), Some(0), "{}", stderr(&baked));
    let staged = staging.images_of("12.4.0").await;
    assert_eq!(staged.len(), 1, "{staged:?}");

    emulator.reset_calls();
    let promoted = staging.run(&["apply", &production, "--output", "json"]);
    assert_eq!(promoted.status.code(), Some(0), "{}", stderr(&promoted));
    assert!(
        stdout(&promoted).contains("promoted:"),
        "{}",
        stdout(&promoted)
    );
    let calls = mutating(&emulator);
    for action in ["ec2:RunInstances", "ec2:CreateImage", "ssm:SendCommand"] {
        assert_eq!(count(&calls, action), 0, "{action} in {calls:?}");
    }
    assert_eq!(count(&calls, "autoscaling:StartInstanceRefresh"), 1);
    // The very image staging baked and rolled out.
    let group = cloud.group(&fleet.group).await.unwrap();
    let running = cloud.config_image(&group.config).await.unwrap();
    assert_eq!(running.as_deref(), Some(staged[0].as_str()));

    // Watched, one commit bumps both: the first cycle rolls staging out and lets
    // production wait, the next one promotes.
    let watched = staging.remote();
    staging.bump("12.5.0");
    staging.push(&watched);
    let remote = watched.remote.path().to_str().unwrap().to_string();
    let mirror = watched.mirrors.path().join("m");
    let cycle = || {
        staging.run(&[
            "watch",
            "--once",
            "--output",
            "json",
            "--remote",
            &remote,
            "--mirror",
            mirror.to_str().unwrap(),
        ])
    };
    let first = cycle();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(
        events_named(&first, "watched").iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{production}: not now"))),
        "{}",
        stderr(&first)
    );
    assert_eq!(staging.images_of("12.5.0").await.len(), 1);
    emulator.reset_calls();
    let second = cycle();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let calls = mutating(&emulator);
    assert_eq!(count(&calls, "ec2:CreateImage"), 0, "{calls:?}");
    assert_eq!(
        count(&calls, "autoscaling:StartInstanceRefresh"),
        1,
        "{calls:?}"
    );
    let group = cloud.group(&fleet.group).await.unwrap();
    let running = cloud.config_image(&group.config).await.unwrap();
    assert_eq!(running, staging.images_of("12.5.0").await.first().cloned());
}

/// Bake once, promote to another region: production in us-west-2 promotes the images
/// staging bakes in us-east-1. It is refused before staging succeeded; then create-image
/// copies staging's image (tagged at creation); a copy AWS fails is made again; a run
/// killed while the copy is pending, followed by one that cannot see it yet, makes no
/// second copy; and the group rolls out the copy.
#[tokio::test(flavor = "multi_thread")]
async fn production_in_another_region_rolls_out_a_copy_of_the_image_staging_baked() {
    const WEST: &str = "us-west-2";
    let emulator = Emulator::alone().await;
    let staging = setup(&emulator, "e2e-staging-east", "stream-manager", 1).await;
    let west = emulator.cloud_in(WEST).await;
    let production = unique_name("e2e-production-west");
    let fleet = emulator
        .guide_template_fleet_in(WEST, &production, 1, &staging.fleet.image_id)
        .await;
    staging.promoting_pipeline(&production, WEST, &fleet);

    staging.bump("12.4.0");
    emulator.reset_calls();
    let early = staging.run(&["apply", &production, "--output", "json"]);
    assert_eq!(early.status.code(), Some(1), "{}", stderr(&early));
    assert!(
        stderr(&early).contains(&format!(
            "{} has no available image of 12.4.0 in us-east-1",
            staging.pipeline
        )),
        "{}",
        stderr(&early)
    );
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());

    let baked = staging.run(&["apply", &staging.pipeline, "--output", "json"]);
    assert_eq!(baked.status.code(), Some(0), "{}", stderr(&baked));
    let staged = staging.images_of("12.4.0").await;
    assert_eq!(staged.len(), 1, "{staged:?}");

    // The plan says what runs: a copy of that very image, and no bake.
    let plan = staging.run(&["plan", &production]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains(&format!("copy {} of us-east-1", staged[0])),
        "{text}"
    );
    assert!(text.contains("create-image copies it here"), "{text}");
    // Its preflight reads the fleet it has: no builder to check.
    assert!(!text.contains("not checked"), "{text}");

    // A copy that AWS fails is reported with its reason, before the fleet is touched.
    emulator.set_faults(serde_json::json!({"image_fail_next": {"reason": "snapshot copy failed"}}));
    let failed = staging.run(&["apply", &production, "--output", "json"]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("snapshot copy failed"),
        "{}",
        stderr(&failed)
    );

    // Killed while the copy is pending; the next run (once the lease expired) waits for
    // that copy instead of making another. EC2 is eventually consistent: the copy stays
    // missing from DescribeImages for 10 s (500 emulated seconds), well past the start of
    // the next run, so that run asks again with the same client token and gets the same
    // copy back.
    emulator.reset_calls();
    emulator.set_faults(serde_json::json!({"invisible_for_seconds": 500}));
    let short = ["--lease", "2s", "--lease-grace", "1s"];
    let mut args = vec![production.as_str()];
    args.extend_from_slice(&short);
    let killed = kill_when(&staging, &args, |event| {
        event["event"] == "stage-progress"
            && event["stage"] == "create-image"
            && event["message"]
                .as_str()
                .is_some_and(|m| m.contains("to be available"))
    });
    assert!(
        killed.is_some(),
        "the run ended before the copy was pending"
    );
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let mut args = vec!["apply", production.as_str(), "--output", "json"];
    args.extend_from_slice(&short);
    let promoted = staging.run(&args);
    assert_eq!(promoted.status.code(), Some(0), "{}", stderr(&promoted));
    emulator.clear_faults();
    let calls = mutating(&emulator);
    // One copy (asserted below), asked for by the killed run and again by the next one.
    assert_eq!(count(&calls, "ec2:CopyImage"), 2, "{calls:?}");
    for action in ["ec2:RunInstances", "ec2:CreateImage", "ssm:SendCommand"] {
        assert_eq!(count(&calls, action), 0, "{action} in {calls:?}");
    }
    assert_eq!(count(&calls, "autoscaling:StartInstanceRefresh"), 1);

    // The group runs the copy, which is tagged as production's image of 12.4.0, copied
    // from staging's, and so are its snapshots.
    let group = west.group(&fleet.group).await.unwrap();
    // The version made while new resources were hidden shows a moment later.
    let running = crate::emulator::eventually("the group's version to show", async || {
        west.config_image(&group.config).await.ok().flatten()
    })
    .await;
    assert_ne!(running, staged[0]);
    let copy = west.image(&running).await.unwrap();
    assert_eq!(copy.status, ImageStatus::Available);
    let tag = |key: &str| copy.tags.get(key).cloned().unwrap_or_default();
    assert_eq!(tag(TAG_PIPELINE), production);
    assert_eq!(tag(TAG_VERSION), "12.4.0");
    assert_eq!(
        tag("red5-rollout:copy-of"),
        format!("us-east-1/{}", staged[0])
    );
    assert_eq!(tag("red5-rollout:baked-by"), staging.pipeline);
    assert!(!copy.snapshots.is_empty());
    // The failed copy, and one more: the runs after it asked under another client token.
    let copies = west
        .find_images(&tags(&[
            (TAG_PIPELINE, &production),
            (TAG_VERSION, "12.4.0"),
        ]))
        .await
        .unwrap();
    let states: Vec<&ImageStatus> = copies.iter().map(|c| &c.status).collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert!(
        states.contains(&&ImageStatus::Available)
            && states.iter().any(|s| matches!(s, ImageStatus::Failed(_))),
        "{states:?}"
    );
    let snapshots = emulator
        .ec2_in(WEST)
        .await
        .describe_snapshots()
        .set_snapshot_ids(Some(copy.snapshots.clone()))
        .send()
        .await
        .unwrap();
    for snapshot in snapshots.snapshots() {
        assert!(
            snapshot
                .tags()
                .iter()
                .any(|t| t.key() == Some(TAG_VERSION) && t.value() == Some("12.4.0")),
            "{snapshot:?}"
        );
    }

    let status = staging.run(&["status", &production]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let shown = stdout(&status);
    assert!(
        shown.contains(&format!(
            "  promotes:      the images of {} in us-east-1 (copied here); its rollouts of 12.4.0 succeeded",
            staging.pipeline
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("(available, copy of us-east-1/{})", staged[0])),
        "{shown}"
    );

    // Converged: a second apply changes nothing, and gc (which reads production's fleet
    // in its region to keep what it promotes) deletes nothing that is used.
    emulator.reset_calls();
    let again = staging.run(&["apply", &production, "--output", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(mutating(&emulator), Vec::<(String, u64)>::new());
    let gc = staging.run(&["gc", "--dry-run"]);
    assert_eq!(gc.status.code(), Some(0), "{}", stderr(&gc));
    let listed = stdout(&gc);
    for image in [&running, &staged[0]] {
        assert!(
            listed.contains(&format!("keep   image {image}")),
            "{listed}"
        );
    }
}
