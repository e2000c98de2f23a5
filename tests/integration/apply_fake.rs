//! The run against the in-memory cloud with paused time: every stage, resumption,
//! idempotence, failures and rollback, in milliseconds of real time.

use crate::support::{release, shipped_pipeline};
use red5_rollout::cloud::fake::FakeCloud;
use red5_rollout::cloud::{Cloud, ErrorClass, GroupConfig, Lock, RefreshStatus};
use red5_rollout::events::{Emitter, Event, PipelineResult, Recorder, StageOutcome};
use red5_rollout::model::{Pipeline, Template};
use red5_rollout::plan::{PlanKind, RetryRule, Stage};
use red5_rollout::run::{Job, PipelineEnd, RunOptions, lock_name, prepare, run_all};
use std::sync::Arc;
use tokio::sync::watch;

const BASE_IMAGE: &str = "ami-0base00000000001";
const OPTIONS: RunOptions = RunOptions {
    keep_builder: false,
    concurrency: 2,
    lease: red5_rollout::lease::LeaseTerms::DEFAULT,
    ci_run: None,
    ci_url: None,
    record_failures: false,
};

pub(crate) fn template_fleet() -> Arc<FakeCloud> {
    Arc::new(FakeCloud::with_template_group(
        "red5pro-sm-asg",
        "red5pro-sm",
        BASE_IMAGE,
        "stream-manager",
        "12.3.0",
        2,
    ))
}

pub(crate) fn configuration_fleet() -> Arc<FakeCloud> {
    Arc::new(FakeCloud::with_configuration_group(
        "red5pro-sm-legacy-asg",
        "SM-red5pro-server-12.3.0-nov01-m5large-LC",
        BASE_IMAGE,
        "stream-manager-legacy",
        "12.3.0",
        1,
    ))
}

/// Plans and applies `version` of `pipeline` on `cloud`; returns how it ended and its events.
pub(crate) async fn apply(
    cloud: &Arc<FakeCloud>,
    pipeline: &str,
    version: &str,
) -> (PipelineEnd, Vec<Event>) {
    let (_tx, rx) = watch::channel(false);
    apply_with(cloud, pipeline, version, rx).await
}

async fn apply_with(
    cloud: &Arc<FakeCloud>,
    pipeline: &str,
    version: &str,
    interrupted: watch::Receiver<bool>,
) -> (PipelineEnd, Vec<Event>) {
    apply_pipeline(cloud, shipped_pipeline(pipeline), version, interrupted).await
}

/// Plans and applies `version` of `pipeline` (as given, e.g. edited) on `cloud`.
async fn apply_pipeline(
    cloud: &Arc<FakeCloud>,
    pipeline: Pipeline,
    version: &str,
    interrupted: watch::Receiver<bool>,
) -> (PipelineEnd, Vec<Event>) {
    let job = prepare_job(cloud, &pipeline, version).await;
    run_job(job, interrupted).await
}

/// Observes and plans as `apply` does, at the commit every apply here uses.
async fn prepare_job(cloud: &Arc<FakeCloud>, pipeline: &Pipeline, version: &str) -> Job {
    let release = release(version);
    let dyn_cloud: Arc<dyn Cloud> = cloud.clone();
    // Every apply here is at the same commit: nothing changed the pipeline or the release.
    let same_commit = |_: &red5_rollout::fleet::FailedRollout| RetryRule {
        forced: false,
        changed_since_failure: false,
    };
    prepare(
        dyn_cloud,
        pipeline,
        &release,
        "c0ffee0000000000000000000000000000000000",
        crate::support::DATE,
        &same_commit,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a prepared job as a new run (every invocation of the binary is one).
async fn run_job(job: Job, interrupted: watch::Receiver<bool>) -> (PipelineEnd, Vec<Event>) {
    let recorder = Arc::new(Recorder::default());
    let events = Emitter::new(vec![recorder.clone()]);
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    let run = format!(
        "run-test-{}",
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut ends = run_all(
        vec![job],
        &run,
        "c0ffee0000000000000000000000000000000000",
        "test-host",
        events,
        interrupted,
        OPTIONS,
    )
    .await;
    (ends.remove(0), recorder.events())
}

fn finished(events: &[Event]) -> Vec<(Stage, &'static str)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StageFinished { stage, outcome, .. } => Some((
                *stage,
                match outcome {
                    StageOutcome::Done { .. } => "done",
                    StageOutcome::Skipped { .. } => "skipped",
                    StageOutcome::Failed { .. } => "failed",
                },
            )),
            _ => None,
        })
        .collect()
}

fn group_template_version(cloud: &FakeCloud) -> String {
    cloud.with_world(|w| match &w.group.config {
        GroupConfig::Template { version, .. } => version.clone(),
        other => panic!("not a template group: {other:?}"),
    })
}

#[tokio::test(start_paused = true)]
async fn a_bump_bakes_once_refreshes_and_leaves_no_builder() {
    let cloud = template_fleet();
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert_eq!(
        finished(&events),
        vec![
            (Stage::LaunchBuilder, "done"),
            (Stage::ApplyUpdate, "done"),
            (Stage::CreateImage, "done"),
            (Stage::CreateLaunchConfig, "done"),
            (Stage::SwapAsg, "skipped"),
            (Stage::InstanceRefresh, "done"),
            (Stage::Cleanup, "done"),
        ]
    );
    assert_eq!(group_template_version(&cloud), "2");
    assert!(cloud.live_builders().is_empty());
    assert_eq!(cloud.image_count(), 2);
    let calls = cloud.mutating_calls();
    for once in [
        "RunInstances",
        "SendCommand",
        "StopInstances",
        "CreateImage",
        "CreateLaunchTemplateVersion",
        "StartInstanceRefresh",
        "TerminateInstances",
    ] {
        assert_eq!(
            calls.iter().filter(|c| **c == once).count(),
            1,
            "{once} in {calls:?}"
        );
    }
    assert!(
        !calls.contains(&"UpdateAutoScalingGroup"),
        "a template group is not updated before the refresh"
    );
    let tags = cloud.with_world(|w| w.group.tags.clone());
    assert_eq!(
        tags.get("red5-rollout:version").map(String::as_str),
        Some("12.4.0")
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_apply_makes_no_mutating_call() {
    let cloud = template_fleet();
    apply(&cloud, "stream-manager", "12.4.0").await;
    cloud.clear_calls();
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    assert_eq!(cloud.mutating_calls(), Vec::<&str>::new());
}

#[tokio::test(start_paused = true)]
async fn a_revert_rolls_back_without_baking() {
    let cloud = template_fleet();
    apply(&cloud, "stream-manager", "12.4.0").await;
    // The seeded base image is tagged for the pipeline and 12.3.0, as the runner tags its own.
    cloud.clear_calls();
    let pipeline = shipped_pipeline("stream-manager");
    let job = prepare(
        cloud.clone(),
        &pipeline,
        &release("12.3.0"),
        "c0",
        crate::support::DATE,
        &|_| RetryRule::ALWAYS,
    )
    .await
    .unwrap();
    assert_eq!(job.plan.kind, PlanKind::Rollback);
    let (end, _) = apply(&cloud, "stream-manager", "12.3.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let calls = cloud.mutating_calls();
    assert!(
        !calls.contains(&"RunInstances") && !calls.contains(&"CreateImage"),
        "{calls:?}"
    );
    assert_eq!(group_template_version(&cloud), "1");
}

#[tokio::test(start_paused = true)]
async fn a_configuration_group_is_swapped_then_refreshed() {
    let cloud = configuration_fleet();
    let (end, events) = apply(&cloud, "stream-manager-legacy", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert_eq!(finished(&events)[4], (Stage::SwapAsg, "done"));
    let config = cloud.with_world(|w| w.group.config.clone());
    assert_eq!(
        config,
        GroupConfig::Configuration {
            name: "SM-red5pro-server-12.4.0-nov24-m5large-LC".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_update_shows_its_output_and_cleans_up_the_builder() {
    let cloud = template_fleet();
    cloud.fail_next_command(
        "downloading\nsha256sum: WARNING: 1 computed checksum did NOT match",
        1,
    );
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::FailedUntouched);
    assert!(
        end.message
            .starts_with("apply-update: the update script failed on i-"),
        "{}",
        end.message
    );
    assert!(
        end.message.contains("(Failed, exit code 1)"),
        "{}",
        end.message
    );
    // The output's tail is carried once, typed, by the stage's failure.
    let tails: Vec<&Vec<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageFinished {
                outcome: StageOutcome::Failed { output_tail, .. },
                ..
            } => Some(output_tail),
            _ => None,
        })
        .collect();
    assert_eq!(
        tails,
        vec![&vec![
            "downloading".to_string(),
            "sha256sum: WARNING: 1 computed checksum did NOT match".to_string()
        ]]
    );
    assert!(!end.message.contains("sha256sum"), "{}", end.message);
    assert!(cloud.live_builders().is_empty());
    assert_eq!(group_template_version(&cloud), "1");
}

#[tokio::test(start_paused = true)]
async fn a_failed_image_fails_the_stage_with_the_reason() {
    let cloud = template_fleet();
    cloud.fail_next_image("snapshot creation failed");
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::FailedUntouched);
    assert!(
        end.message.contains("failed: snapshot creation failed"),
        "{}",
        end.message
    );
    assert!(cloud.live_builders().is_empty());
    // The next run bakes again and converges.
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_rolled_back_by_aws_for_templates() {
    let cloud = template_fleet();
    cloud.fail_refresh_at(50);
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    // Only AWS's RollbackSuccessful counts as rolled back.
    assert!(
        end.message.contains(
            "ended RollbackSuccessful: an instance failed its health check; the group was rolled back to template version 1"
        ),
        "{}",
        end.message
    );
    assert_eq!(group_template_version(&cloud), "1");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_is_rolled_back_by_the_runner_for_configurations() {
    let cloud = configuration_fleet();
    cloud.fail_refresh_at(50);
    let (end, _) = apply(&cloud, "stream-manager-legacy", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    assert!(
        end.message.contains(
            "rolled back to launch configuration SM-red5pro-server-12.3.0-nov01-m5large-LC"
        ),
        "{}",
        end.message
    );
    let config = cloud.with_world(|w| w.group.config.clone());
    assert_eq!(
        config,
        GroupConfig::Configuration {
            name: "SM-red5pro-server-12.3.0-nov01-m5large-LC".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_lock_stops_the_run_at_once_naming_the_holder() {
    let cloud = template_fleet();
    let holder = Lock {
        run: "run-other".into(),
        host: "ci-7".into(),
        commit: "abcdef0123456789".into(),
        started: "2026-11-24T08:00:00Z".into(),
        // Renewed by a run that is alive.
        expires: Some("2099-01-01T00:00:00Z".into()),
        ci_run: None,
        ci_url: None,
    };
    cloud
        .put_lock(&lock_name("red5pro-sm-asg"), &holder)
        .await
        .unwrap();
    cloud.clear_calls();
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::LockHeld);
    assert_eq!(
        end.message,
        "group red5pro-sm-asg is leased by run run-other on ci-7 (commit abcdef012345) since 2026-11-24T08:00:00Z, lease until 2099-01-01T00:00:00Z; if that run died, the next apply takes its lease over 2m after it ends (or remove it now with `red5-rollout unlock red5pro-sm-asg --run <RUN>`)"
    );
    assert_eq!(cloud.mutating_calls(), vec!["PutParameter"]);
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_run_cleans_up_and_the_next_one_resumes() {
    let cloud = template_fleet();
    let (tx, rx) = watch::channel(false);
    let interrupter = {
        let cloud = cloud.clone();
        tokio::spawn(async move {
            // Interrupt once the builder is being updated.
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if cloud.calls().contains(&"SendCommand") {
                    tx.send(true).unwrap();
                    return;
                }
            }
        })
    };
    let (end, _) = apply_with(&cloud, "stream-manager", "12.4.0", rx).await;
    interrupter.await.unwrap();
    assert_eq!(end.result, PipelineResult::Interrupted, "{}", end.message);
    assert!(
        end.message
            .starts_with("interrupted during apply-update; run apply again to resume"),
        "{}",
        end.message
    );
    assert!(cloud.live_builders().is_empty());
    let lock = cloud.read_lock(&lock_name("red5pro-sm-asg")).await.unwrap();
    assert_eq!(lock, None, "the lock is released");
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
}

#[tokio::test(start_paused = true)]
async fn throttling_that_outlasts_retries_is_reported_with_its_class() {
    let cloud = template_fleet();
    cloud.fail_next(
        "RunInstances",
        ErrorClass::Throttled,
        "RequestLimitExceeded",
    );
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::FailedUntouched);
    assert!(
        end.message.starts_with(
            "launch-builder: AWS call failed: RunInstances failed (throttled): RequestLimitExceeded"
        ),
        "{}",
        end.message
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_outlives_its_timeout_is_rolled_back() {
    let cloud = template_fleet();
    cloud.with_world(|w| w.delays.refresh_batch = std::time::Duration::from_secs(24 * 3600));
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    assert!(
        end.message
            .starts_with("instance-refresh: refresh refresh-"),
        "{}",
        end.message
    );
    assert!(
        end.message
            .contains("ended TimedOut: gave up waiting for refresh"),
        "{}",
        end.message
    );
    assert!(
        end.message
            .contains("the group was rolled back to the previous template version"),
        "{}",
        end.message
    );
    assert_eq!(group_template_version(&cloud), "1");
    assert!(cloud.calls().contains(&"RollbackInstanceRefresh"));
}

#[tokio::test(start_paused = true)]
async fn a_swapped_configuration_group_is_moved_back_when_the_refresh_cannot_start() {
    let cloud = configuration_fleet();
    cloud.fail_next(
        "StartInstanceRefresh",
        ErrorClass::Transient,
        "InternalFailure",
    );
    let (end, events) = apply(&cloud, "stream-manager-legacy", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    // The end is typed: which stage failed, that the fleet was touched, what was undone.
    let finished = events
        .iter()
        .find_map(|e| match e {
            Event::PipelineFinished {
                failed_stage,
                touched,
                recovery,
                ..
            } => Some((*failed_stage, *touched, recovery.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        finished,
        (
            Some(Stage::InstanceRefresh),
            true,
            Some(red5_rollout::events::Recovery::SwapUndone {
                previous: "SM-red5pro-server-12.3.0-nov01-m5large-LC".into()
            })
        )
    );
    assert!(
        end.message.ends_with("the group was moved back to launch configuration SM-red5pro-server-12.3.0-nov01-m5large-LC before any instance was replaced"),
        "{}",
        end.message
    );
    let config = cloud.with_world(|w| w.group.config.clone());
    assert_eq!(
        config,
        GroupConfig::Configuration {
            name: "SM-red5pro-server-12.3.0-nov01-m5large-LC".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_fails_without_rollback_leaves_a_mixed_fleet_and_says_which_instances_run_what()
 {
    for status in [
        RefreshStatus::Failed,
        RefreshStatus::Cancelled,
        RefreshStatus::RollbackFailed,
    ] {
        let cloud = template_fleet();
        cloud.fail_refresh_at(50);
        cloud.refresh_fails_as(status.clone());
        let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
        assert_eq!(
            end.result,
            PipelineResult::MixedFleet,
            "{status}: {}",
            end.message
        );
        assert!(
            end.message.contains(&format!("ended {status}"))
                && end.message.contains(
                    "it was not rolled back, so the fleet is mixed: group red5pro-sm-asg: 2 instance(s) on template version 1"
                ),
            "{status}: {}",
            end.message
        );
        assert!(cloud.live_builders().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_on_default_is_pinned_to_its_number_before_the_new_version_and_refreshed_with_rollback()
 {
    let cloud = template_fleet();
    cloud.with_world(|w| {
        if let GroupConfig::Template { version, .. } = &mut w.group.config {
            *version = "$Default".into();
        }
    });
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert_eq!(group_template_version(&cloud), "2");
    let calls = cloud.calls();
    let pin = calls
        .iter()
        .position(|c| *c == "UpdateAutoScalingGroup")
        .expect("the group is pinned");
    let create = calls
        .iter()
        .position(|c| *c == "CreateLaunchTemplateVersion")
        .expect("a version is made");
    assert!(pin < create, "pinned before the new version: {calls:?}");
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == "UpdateAutoScalingGroup")
            .count(),
        1
    );
    // The pin is typed in what create-launch-config produced; the sentence is the sink's.
    let pinned = events
        .iter()
        .find_map(|e| match e {
            Event::StageFinished {
                stage: Stage::CreateLaunchConfig,
                outcome: StageOutcome::Done { produced },
                ..
            } => Some(produced.clone()),
            _ => None,
        })
        .expect("create-launch-config is done");
    assert_eq!(
        red5_rollout::report::done(Stage::CreateLaunchConfig, &pinned),
        "pinned group red5pro-sm-asg from $Default to version 1 of red5pro-sm (same configuration), so that AWS can roll the refresh back; then template version 2 for ami-00000000000000005"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_started_by_someone_else_is_reported_not_adopted() {
    // A refresh back to version 1 (12.3.0), started by hand, is in flight.
    let cloud = template_fleet();
    let spec = red5_rollout::cloud::RefreshSpec {
        desired_template: Some(("red5pro-sm".into(), "1".into())),
        auto_rollback: true,
        min_healthy_percentage: 90,
        max_healthy_percentage: 100,
        instance_warmup: std::time::Duration::from_secs(60),
        skip_matching: false,
        checkpoints: Vec::new(),
        checkpoint_delay: None,
        scale_in_protected_instances: Default::default(),
        standby_instances: Default::default(),
    };
    let id = cloud.start_refresh("red5pro-sm-asg", &spec).await.unwrap();
    let pipeline = shipped_pipeline("stream-manager");
    let job = prepare(
        cloud.clone(),
        &pipeline,
        &release("12.4.0"),
        "c0ffee0000000000000000000000000000000000",
        crate::support::DATE,
        &|_| RetryRule::ALWAYS,
    )
    .await;
    let Err(error) = job else {
        panic!("a refresh towards another configuration must stop the plan");
    };
    assert_eq!(
        format!("{}", std::error::Error::source(&error).unwrap()),
        format!("refresh {id} of group red5pro-sm-asg is InProgress towards 12.3.0, not 12.4.0")
    );
}

/// The lease of a run that died on 2026-11-24: it expired long ago.
fn lease_of_a_dead_run() -> Lock {
    Lock {
        run: "run-dead".into(),
        host: "ci-9".into(),
        commit: "abcdef0123456789".into(),
        started: "2026-11-24T08:00:00Z".into(),
        expires: Some("2026-11-24T08:10:00Z".into()),
        ci_run: None,
        ci_url: None,
    }
}

#[tokio::test(start_paused = true)]
async fn the_expired_lease_of_a_run_that_died_is_taken_over_and_its_work_resumed() {
    let cloud = template_fleet();
    let dead = Lock {
        ci_run: Some("4242".into()),
        ci_url: Some("https://github.com/acme/fleet/actions/runs/4242".into()),
        ..lease_of_a_dead_run()
    };
    cloud
        .put_lock(&lock_name("red5pro-sm-asg"), &dead)
        .await
        .unwrap();
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::LeaseTakenOver { holder, .. } if holder == "run run-dead on ci-9 (commit abcdef012345, CI run https://github.com/acme/fleet/actions/runs/4242) since 2026-11-24T08:00:00Z, lease until 2026-11-24T08:10:00Z"
    )), "{events:?}");
    assert_eq!(
        cloud.read_lock(&lock_name("red5pro-sm-asg")).await.unwrap(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn an_apply_with_nothing_to_do_clears_the_expired_lease_of_a_run_that_died() {
    let cloud = template_fleet();
    let (end, _) = apply(&cloud, "stream-manager", "12.3.0").await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    let dead = lease_of_a_dead_run();
    let alive = Lock {
        expires: Some("2099-01-01T00:00:00Z".into()),
        ..dead.clone()
    };
    cloud
        .put_lock(&lock_name("red5pro-sm-asg"), &alive)
        .await
        .unwrap();
    let (_, events) = apply(&cloud, "stream-manager", "12.3.0").await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::LeaseCleared { .. }))
    );
    assert_eq!(
        cloud.read_lock(&lock_name("red5pro-sm-asg")).await.unwrap(),
        Some(alive)
    );
    cloud
        .renew_lock(&lock_name("red5pro-sm-asg"), &dead)
        .await
        .unwrap();
    let (end, events) = apply(&cloud, "stream-manager", "12.3.0").await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::LeaseCleared { .. }))
    );
    assert_eq!(
        cloud.read_lock(&lock_name("red5pro-sm-asg")).await.unwrap(),
        None
    );
}

/// A builder for 12.4.0 launched by a run that died, as that run left it.
async fn builder_left_by_a_dead_run(cloud: &FakeCloud) -> String {
    use red5_rollout::cloud::{BuilderSpec, TAG_PIPELINE, TAG_ROLE, TAG_VERSION};
    let id = cloud
        .run_builder(&BuilderSpec {
            image_id: BASE_IMAGE.into(),
            instance_type: "m5.large".into(),
            subnet_id: "subnet-0fake".into(),
            security_group_ids: vec!["sg-0fake".into()],
            instance_profile: "red5pro-sm-builder".into(),
            key_pair: None,
            volume_size_gb: 16,
            root_device_name: "/dev/xvda".into(),
            client_token: "r5r-run-dead-0000000000000000".into(),
            tags: red5_rollout::observe::tags(&[
                (TAG_PIPELINE, "stream-manager"),
                (TAG_VERSION, "12.4.0"),
                (TAG_ROLE, "builder"),
            ]),
        })
        .await
        .unwrap();
    // Long enough for it to run and reach SSM.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    id
}

#[tokio::test(start_paused = true)]
async fn an_updated_builder_left_stopping_goes_on_to_the_image() {
    let cloud = template_fleet();
    let builder = builder_left_by_a_dead_run(&cloud).await;
    cloud
        .tag_instance(
            &builder,
            &red5_rollout::observe::tags(&[(red5_rollout::cloud::TAG_UPDATED, "true")]),
        )
        .await
        .unwrap();
    cloud.stop_instance(&builder).await.unwrap();
    cloud.clear_calls();
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let calls = cloud.mutating_calls();
    assert!(!calls.contains(&"RunInstances"), "{calls:?}");
    assert!(!calls.contains(&"SendCommand"), "{calls:?}");
    assert_eq!(calls.iter().filter(|c| **c == "CreateImage").count(), 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StageFinished { stage: Stage::LaunchBuilder, outcome: StageOutcome::Done { produced }, .. }
            if red5_rollout::report::done(Stage::LaunchBuilder, produced) == format!("adopted builder {builder} (updated, stopping) for the image")
                && produced.builder_state.as_deref() == Some("stopping")
    )), "{events:?}");
    assert!(cloud.live_builders().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_install_a_dead_run_sent_is_followed_to_its_end_never_sent_again() {
    let cloud = template_fleet();
    let builder = builder_left_by_a_dead_run(&cloud).await;
    cloud
        .send_script(
            &builder,
            "#!/bin/bash\necho installing\n",
            1800,
            "red5-rollout stream-manager 12.4.0 run run-dead",
        )
        .await
        .unwrap();
    cloud.clear_calls();
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let calls = cloud.mutating_calls();
    assert!(!calls.contains(&"SendCommand"), "{calls:?}");
    assert!(!calls.contains(&"RunInstances"), "{calls:?}");
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StageProgress { stage: Stage::ApplyUpdate, message, .. }
            if message.starts_with("following command ") && message.ends_with("it is not sent again")
    )), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_rollout_is_held_until_something_changes_not_retried_by_any_merge() {
    let cloud = template_fleet();
    cloud.fail_refresh_at(50);
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    assert_eq!(
        cloud.with_world(|w| w.group.tags.get("red5-rollout:failed").cloned()),
        Some("12.4.0 c0ffee0000000000000000000000000000000000".to_string())
    );

    cloud.clear_calls();
    let (end, events) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    assert_eq!(
        end.message,
        "held: the refresh to 12.4.0 failed at commit c0ffee000000: it is tried again once a commit changes pipelines/stream-manager.yaml or releases/12.4.0.yaml, or with --retry"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Planned { plan } if plan.kind == PlanKind::Held
    )));
    assert_eq!(cloud.mutating_calls(), Vec::<&str>::new());
}

/// A run that is never interrupted (a dropped sender would read as one).
fn running() -> watch::Receiver<bool> {
    let (never, rx) = watch::channel(false);
    std::mem::forget(never);
    rx
}

fn template_version_image(cloud: &FakeCloud, version: &str) -> String {
    cloud.with_world(|w| {
        w.template_versions
            .iter()
            .find(|v| v.id == version)
            .map(|v| v.image_id.clone())
            .unwrap_or_else(|| panic!("no template version {version}"))
    })
}

#[tokio::test(start_paused = true)]
async fn an_edited_launch_block_gets_a_new_template_version_on_the_same_image_and_a_refresh() {
    let cloud = template_fleet();
    apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(group_template_version(&cloud), "2");
    let mut edited = shipped_pipeline("stream-manager");
    edited.launch.instance_type = "m5.xlarge".into();

    let job = prepare_job(&cloud, &edited, "12.4.0").await;
    assert_eq!(job.plan.kind, PlanKind::LaunchChange);
    let stage = job.plan.stage(Stage::CreateLaunchConfig);
    assert!(
        stage
            .reason
            .ends_with("launch.instance_type (now m5.xlarge) changed"),
        "{}",
        stage.reason
    );
    assert_eq!(
        job.plan.stage(Stage::LaunchBuilder).action,
        red5_rollout::plan::Action::Skip
    );
    cloud.clear_calls();
    let (end, _) = run_job(job, running()).await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let calls: Vec<&str> = cloud
        .mutating_calls()
        .into_iter()
        .filter(|call| !call.ends_with("Parameter")) // the lease
        .collect();
    assert_eq!(
        calls,
        vec![
            "CreateLaunchTemplateVersion",
            "StartInstanceRefresh",
            "CreateOrUpdateTags"
        ]
    );
    assert_eq!(group_template_version(&cloud), "3");
    assert_eq!(
        template_version_image(&cloud, "3"),
        template_version_image(&cloud, "2")
    );

    cloud.clear_calls();
    let (end, _) = apply_pipeline(&cloud, edited, "12.4.0", running()).await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    assert_eq!(cloud.mutating_calls(), Vec::<&str>::new());

    // Reverting the edit moves the group back to the version made with those settings.
    cloud.clear_calls();
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert!(
        !cloud
            .mutating_calls()
            .contains(&"CreateLaunchTemplateVersion"),
        "{:?}",
        cloud.mutating_calls()
    );
    assert_eq!(group_template_version(&cloud), "2");
}

#[tokio::test(start_paused = true)]
async fn an_edited_launch_block_gets_a_launch_configuration_of_its_own_name() {
    let cloud = configuration_fleet();
    apply(&cloud, "stream-manager-legacy", "12.4.0").await;
    let mut edited = shipped_pipeline("stream-manager-legacy");
    edited.launch.user_data = Template::parse("#!/bin/bash\necho edited\n").unwrap();
    let job = prepare_job(&cloud, &edited, "12.4.0").await;
    assert_eq!(job.plan.kind, PlanKind::LaunchChange);
    let name = job.plan.launch_name.clone();
    assert!(
        name.starts_with("SM-red5pro-server-12.4.0-nov24-m5large-LC-launch-"),
        "{name}"
    );
    assert!(
        job.plan
            .stage(Stage::CreateLaunchConfig)
            .reason
            .contains(&format!("`{name}` on the same image")),
        "{:?}",
        job.plan.stage(Stage::CreateLaunchConfig)
    );
    let (end, _) = run_job(job, running()).await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    assert_eq!(
        cloud.with_world(|w| w.group.config.clone()),
        GroupConfig::Configuration { name }
    );
    cloud.clear_calls();
    let (end, _) = apply_pipeline(&cloud, edited, "12.4.0", running()).await;
    assert_eq!(end.result, PipelineResult::UpToDate, "{}", end.message);
    assert_eq!(cloud.mutating_calls(), Vec::<&str>::new());
}

#[tokio::test(start_paused = true)]
async fn a_stage_whose_work_another_run_did_after_the_plan_is_skipped_and_the_change_reported() {
    let cloud = template_fleet();
    let pipeline = shipped_pipeline("stream-manager");
    let shown = prepare_job(&cloud, &pipeline, "12.4.0").await;
    assert_eq!(
        shown.plan.stage(Stage::LaunchBuilder).action,
        red5_rollout::plan::Action::Run
    );
    // Another run rolls the release out between this plan and this run.
    apply(&cloud, "stream-manager", "12.4.0").await;
    cloud.clear_calls();
    let (end, events) = run_job(shown, running()).await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let replanned: Vec<(Stage, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::StageReplanned { stage, now, .. } => Some((*stage, now.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        replanned.first().map(|(stage, _)| *stage),
        Some(Stage::LaunchBuilder),
        "{replanned:?}"
    );
    assert!(
        replanned[0].1.starts_with("ami-") && replanned[0].1.ends_with(" for 12.4.0 exists"),
        "{replanned:?}"
    );
    let calls = cloud.mutating_calls();
    for call in [
        "RunInstances",
        "CreateImage",
        "CreateLaunchTemplateVersion",
        "StartInstanceRefresh",
    ] {
        assert!(!calls.contains(&call), "{calls:?}");
    }
}

/// Applies `version` and interrupts the run as soon as its refresh started, as a run that
/// dies there would leave it: the refresh goes on without anyone following it.
async fn apply_and_die_once_the_refresh_started(cloud: &Arc<FakeCloud>, pipeline: &str) {
    let (tx, rx) = watch::channel(false);
    let interrupter = {
        let cloud = cloud.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if cloud.calls().contains(&"StartInstanceRefresh") {
                    tx.send(true).unwrap();
                    return;
                }
            }
        })
    };
    let (end, _) = apply_with(cloud, pipeline, "12.4.0", rx).await;
    interrupter.await.unwrap();
    assert_eq!(end.result, PipelineResult::Interrupted, "{}", end.message);
    // The refresh fails while no run follows it.
    tokio::time::sleep(std::time::Duration::from_secs(3 * 3600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_configuration_refresh_that_failed_after_its_run_died_is_moved_back_by_the_next_run() {
    let cloud = configuration_fleet();
    let before = cloud.with_world(|w| w.group.config.clone());
    cloud.fail_refresh_at(50);
    apply_and_die_once_the_refresh_started(&cloud, "stream-manager-legacy").await;
    assert_ne!(cloud.with_world(|w| w.group.config.clone()), before);

    let pipeline = shipped_pipeline("stream-manager-legacy");
    let job = prepare_job(&cloud, &pipeline, "12.4.0").await;
    let refresh = job.plan.stage(Stage::InstanceRefresh);
    assert_eq!(
        refresh.action,
        red5_rollout::plan::Action::Resume,
        "{refresh:?}"
    );
    assert!(
        refresh.reason.contains("ended Failed while no run followed it: move the group back to launch configuration SM-red5pro-server-12.3.0-nov01-m5large-LC"),
        "{}",
        refresh.reason
    );
    cloud.clear_calls();
    let (end, _) = run_job(job, running()).await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    assert_eq!(cloud.with_world(|w| w.group.config.clone()), before);
    let calls = cloud.mutating_calls();
    // One refresh: the one back to the previous configuration, not a retry of the release.
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == "StartInstanceRefresh")
            .count(),
        1,
        "{calls:?}"
    );
    assert!(
        cloud.with_world(|w| w.group.instances.iter().all(|i| i.config == before)),
        "every instance is back"
    );
    // Reported once: the next merge does not try 12.4.0 again.
    let (end, _) = apply(&cloud, "stream-manager-legacy", "12.4.0").await;
    assert!(end.message.starts_with("held: "), "{}", end.message);
}

#[tokio::test(start_paused = true)]
async fn a_template_refresh_that_aws_rolled_back_after_its_run_died_is_reported_not_retried() {
    let cloud = template_fleet();
    cloud.fail_refresh_at(50);
    apply_and_die_once_the_refresh_started(&cloud, "stream-manager").await;
    cloud.clear_calls();
    let (end, _) = apply(&cloud, "stream-manager", "12.4.0").await;
    assert_eq!(end.result, PipelineResult::RolledBack, "{}", end.message);
    assert!(
        !cloud.mutating_calls().contains(&"StartInstanceRefresh"),
        "{:?}",
        cloud.mutating_calls()
    );
    assert_eq!(
        cloud.with_world(|w| w.group.tags.get("red5-rollout:failed").cloned()),
        Some("12.4.0 c0ffee0000000000000000000000000000000000".to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_s_end_reports_every_aws_call_its_run_made() {
    let cloud = template_fleet();
    let job = prepare_job(&cloud, &shipped_pipeline("stream-manager"), "12.4.0").await;
    cloud.clear_calls();
    let (end, events) = run_job(job, running()).await;
    assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    let counted = events
        .iter()
        .find_map(|e| match e {
            Event::PipelineFinished { aws_calls, .. } => *aws_calls,
            _ => None,
        })
        .expect("the fake counts calls");
    // Every call of the run, the lease's renewals included, is the pipeline's: the
    // planning before it (`prepare`) is not.
    assert_eq!(counted.total(), cloud.calls().len() as u64);
    assert_eq!(counted.mutating, cloud.mutating_calls().len() as u64);
    assert!(counted.mutating >= 11, "{counted:?}");
}

/// A lock as `gc` takes it.
fn gc_lock(run: &str) -> Lock {
    Lock {
        run: run.into(),
        host: "ops-laptop".into(),
        commit: "0123456789abcdef".into(),
        started: "2026-11-30T08:00:00Z".into(),
        expires: None,
        ci_run: None,
        ci_url: None,
    }
}

#[tokio::test(start_paused = true)]
async fn gc_skips_a_group_a_rollout_holds_and_deletes_configurations_before_images_before_snapshots()
 {
    use red5_rollout::gc::{Resource, Selection, Swept, plan_gc, read_facts, sweep};
    let cloud = configuration_fleet();
    for version in ["12.4.0", "12.5.0"] {
        let (end, _) = apply(&cloud, "stream-manager-legacy", version).await;
        assert_eq!(end.result, PipelineResult::Converged, "{}", end.message);
    }
    let pipeline = shipped_pipeline("stream-manager-legacy");
    let history = vec![Selection {
        commit: "0123456789abcdef".into(),
        version: "12.5.0".parse().unwrap(),
    }];
    let facts = read_facts(
        cloud.as_ref(),
        &pipeline,
        Default::default(),
        history.clone(),
        1,
        &[],
    )
    .await
    .unwrap();
    let plan = plan_gc(&facts);
    let old_image = facts
        .images
        .iter()
        .find(|i| i.tags.get("red5-rollout:version").map(String::as_str) == Some("12.4.0"))
        .expect("the 12.4.0 image")
        .id
        .clone();
    let deletions = plan.deletions();
    assert_eq!(
        deletions.len(),
        3,
        "{}",
        red5_rollout::gc::plans_as_text(std::slice::from_ref(&plan))
    );
    assert!(
        matches!(&deletions[0], Resource::LaunchConfiguration(name) if name.contains("12.4.0"))
    );
    assert_eq!(deletions[1], Resource::Image(old_image.clone()));
    assert!(matches!(&deletions[2], Resource::Snapshot(_)));

    // A rollout holds the group: nothing is deleted, and who holds it is said.
    let group = "red5pro-sm-legacy-asg";
    let rollout = gc_lock("20261130T080000Z-aaaa");
    red5_rollout::lease::acquire(
        cloud.as_ref(),
        group,
        &rollout,
        red5_rollout::lease::LeaseTerms::DEFAULT,
    )
    .await
    .unwrap();
    cloud.clear_calls();
    let swept = sweep(
        cloud.as_ref(),
        &pipeline,
        &plan,
        history.clone(),
        &gc_lock("gc-1"),
        &[],
    )
    .await
    .unwrap();
    match swept {
        Swept::LeaseHeld { holder } => assert_eq!(holder.unwrap().run, rollout.run),
        other => panic!("expected the lease to be held: {other:?}"),
    }
    assert_eq!(cloud.mutating_calls(), vec!["PutParameter"]);

    red5_rollout::lease::release(cloud.as_ref(), group, &rollout.run)
        .await
        .unwrap();
    cloud.clear_calls();
    let swept = sweep(
        cloud.as_ref(),
        &pipeline,
        &plan,
        history,
        &gc_lock("gc-2"),
        &[],
    )
    .await
    .unwrap();
    match swept {
        Swept::Done { deleted, changed } => {
            assert_eq!(deleted, deletions);
            assert!(changed.is_empty(), "{changed:?}");
        }
        other => panic!("expected the plan to be deleted: {other:?}"),
    }
    assert_eq!(
        cloud.mutating_calls(),
        vec![
            "PutParameter",
            "DeleteLaunchConfiguration",
            "DeregisterImage",
            "DeleteSnapshot",
            "DeleteParameter"
        ]
    );
    assert_eq!(
        cloud.image(&old_image).await.unwrap_err().class,
        ErrorClass::NotFound
    );
    assert_eq!(cloud.read_lock(&lock_name(group)).await.unwrap(), None);
}
