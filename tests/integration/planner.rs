//! The planner: which stages run, resume or skip for every situation a fleet can be in,
//! and the three renderings of a plan.

use crate::support::{Scenario, image_id};
use red5_rollout::fleet::ImageState;
use red5_rollout::plan::{Action, Plan, PlanError, PlanKind, Stage};
use red5_rollout::render::{plans_as_json, plans_as_markdown, plans_as_text};

/// The action of each stage in order, as a compact string such as "RRRRSRR".
fn actions(plan: &Plan) -> String {
    plan.stages
        .iter()
        .map(|s| match s.action {
            Action::Run => 'R',
            Action::Resume => 'U',
            Action::Skip => 'S',
        })
        .collect()
}

fn reason(plan: &Plan, stage: Stage) -> &str {
    &plan.stage(stage).reason
}

#[test]
fn a_fresh_rollout_bakes_and_refreshes_without_updating_the_group_first() {
    let plan = Scenario::new("stream-manager")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(plan.kind, PlanKind::Rollout);
    assert_eq!(plan.to.to_string(), "12.4.0");
    assert_eq!(plan.from.as_ref().unwrap().to_string(), "12.3.0");
    assert_eq!(actions(&plan), "RRRRSRR");
    assert_eq!(
        reason(&plan, Stage::SwapAsg),
        "the refresh carries the new template version (DesiredConfiguration); the group is not updated first"
    );
    assert_eq!(
        reason(&plan, Stage::CreateImage),
        "stop the builder, create image `SM-red5pro-server-12.4.0-20261124-m5large`"
    );
}

#[test]
fn a_fresh_rollout_with_a_launch_configuration_swaps_the_group() {
    let plan = Scenario::new("stream-manager-legacy")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(actions(&plan), "RRRRRRR");
    assert_eq!(
        reason(&plan, Stage::CreateLaunchConfig),
        "create launch configuration `SM-red5pro-server-12.4.0-nov24-m5large-LC`"
    );
    assert_eq!(
        reason(&plan, Stage::SwapAsg),
        "move the group from 1 to the new launch configuration"
    );
}

#[test]
fn resume_adopts_a_builder_that_was_launched_but_not_updated() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .builder("12.4.0", false)
        .plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "URRRSRR");
    assert_eq!(
        reason(&plan, Stage::LaunchBuilder),
        "adopt builder i-0b1d000000000001 launched by run run-1"
    );
}

#[test]
fn resume_after_the_update_goes_straight_to_the_image() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .builder("12.4.0", true)
        .plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "USRRSRR");
    assert_eq!(
        reason(&plan, Stage::ApplyUpdate),
        "builder i-0b1d000000000001 already runs 12.4.0"
    );
}

#[test]
fn resume_waits_for_a_pending_image_instead_of_baking_another() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .builder("12.4.0", true)
        .image("12.4.0", ImageState::Pending)
        .plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "SSURSRR");
    assert_eq!(
        reason(&plan, Stage::CreateImage),
        format!("wait for image {} to be available", image_id("12.4.0"))
    );
}

#[test]
fn resume_after_the_image_creates_the_configuration() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .image("12.4.0", ImageState::Available)
        .plan();
    assert_eq!(actions(&plan), "SSSRSRS");
    assert_eq!(
        reason(&plan, Stage::LaunchBuilder),
        format!("{} for 12.4.0 exists", image_id("12.4.0"))
    );
    assert_eq!(reason(&plan, Stage::Cleanup), "no builder to clean up");
}

#[test]
fn resume_after_the_configuration_only_refreshes() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .image("12.4.0", ImageState::Available)
        .config("12.4.0")
        .plan();
    assert_eq!(actions(&plan), "SSSSSRS");
    assert_eq!(
        reason(&plan, Stage::CreateLaunchConfig),
        "template version 2 for 12.4.0 exists"
    );
}

#[test]
fn resume_after_a_configuration_swap_does_not_swap_again() {
    let mut scenario = Scenario::new("stream-manager-legacy")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .image("12.4.0", ImageState::Available)
        .config("12.4.0");
    scenario = scenario.refresh("12.4.0", "InProgress", 40);
    let plan = scenario.plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "SSSSRUS");
    assert_eq!(
        reason(&plan, Stage::InstanceRefresh),
        "follow refresh refresh-0001 (InProgress, 40% done)"
    );
}

#[test]
fn resume_follows_a_refresh_in_flight() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .image("12.4.0", ImageState::Available)
        .config("12.4.0")
        .refresh("12.4.0", "InProgress", 50)
        .plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "SSSSSUS");
}

#[test]
fn a_refresh_towards_another_version_blocks_the_plan() {
    let err = Scenario::new("stream-manager")
        .release("12.3.0")
        .fleet_on("12.4.0")
        .refresh("12.4.0", "InProgress", 10)
        .config("12.3.0")
        .image("12.3.0", ImageState::Available)
        .try_plan()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "refresh refresh-0001 of group red5pro-sm-asg is InProgress towards 12.4.0, not 12.3.0"
    );
}

#[test]
fn rollback_reuses_the_old_image_and_configuration() {
    let plan = Scenario::new("stream-manager")
        .release("12.3.0")
        .fleet_on("12.3.0")
        .fleet_on("12.4.0")
        .plan();
    assert_eq!(plan.kind, PlanKind::Rollback);
    assert_eq!(actions(&plan), "SSSSSRS");
    assert_eq!(plan.from.as_ref().unwrap().to_string(), "12.4.0");
    assert_eq!(
        reason(&plan, Stage::CreateImage),
        format!("{} for 12.3.0 exists", image_id("12.3.0"))
    );
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

#[test]
fn rollback_with_a_launch_configuration_moves_the_group_back() {
    let plan = Scenario::new("stream-manager-legacy")
        .release("12.3.0")
        .fleet_on("12.3.0")
        .fleet_on("12.4.0")
        .plan();
    assert_eq!(plan.kind, PlanKind::Rollback);
    assert_eq!(actions(&plan), "SSSSRRS");
    assert_eq!(
        reason(&plan, Stage::SwapAsg),
        "move the group from 2 to launch configuration 1"
    );
}

#[test]
fn a_rollback_whose_image_was_deregistered_is_refused_with_the_choices() {
    let refused = Scenario::new("stream-manager")
        .release("12.3.0")
        .fleet_on("12.4.0")
        .try_plan();
    let Err(error) = refused else {
        panic!("baking 12.3.0 over the 12.4.0 image must be refused: {refused:?}");
    };
    assert_eq!(
        error.to_string(),
        "no image of 12.3.0 exists any more, and the group runs 12.4.0: baking 12.3.0 on top of the 12.4.0 image would mix two installs"
    );
    assert_eq!(
        error.hint(),
        "either tag an existing image of 12.3.0: red5-rollout adopt stream-manager --version 12.3.0 --image <AMI>, or name a clean base AMI (one without Red5 Pro 12.3.0's successors) in builder.base_image"
    );
}

#[test]
fn a_rollback_bakes_again_from_a_clean_base_ami_when_the_pipeline_names_one() {
    let plan = Scenario::new("stream-manager")
        .base_image("ami-0c1ea000000000001")
        .release("12.3.0")
        .fleet_on("12.4.0")
        .plan();
    assert_eq!(plan.kind, PlanKind::Rollback);
    assert_eq!(actions(&plan), "RRRRSRR");
    assert_eq!(
        plan.notes,
        vec![
            "no image for 12.3.0 exists any more; it is baked again from ami-0c1ea000000000001"
                .to_string()
        ]
    );
}

#[test]
fn a_group_that_nothing_says_the_release_of_is_refused_with_the_adopt_command() {
    let refused = Scenario::new("stream-manager").release("12.4.0").try_plan();
    let Err(error) = refused else {
        panic!("an unadopted group must not be planned: {refused:?}");
    };
    assert_eq!(
        error.to_string(),
        "group red5pro-sm-asg is not known to red5-rollout yet: nothing says which release it runs"
    );
    assert!(
        error
            .hint()
            .starts_with("say which release the group runs now, once: red5-rollout adopt stream-manager --version <VERSION>"),
        "{}",
        error.hint()
    );
}

#[test]
fn a_group_on_an_alias_is_pinned_to_its_number_before_the_new_version_is_made() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .alias("$Default")
        .plan();
    assert_eq!(actions(&plan), "RRRRSRR");
    assert_eq!(
        plan.stage(Stage::CreateLaunchConfig).reason,
        "pin the group from $Default to version 1 (configuration unchanged; AWS cannot roll back a refresh of a group on $Default), then create a new version of launch template red5pro-sm (`SM-red5pro-server-12.4.0-20261124-m5large-template`) from version 1, keeping what it holds"
    );
}

#[test]
fn a_rollback_on_an_alias_group_pins_it_in_swap_asg() {
    let plan = Scenario::new("stream-manager")
        .release("12.3.0")
        .image("12.4.0", ImageState::Available)
        .config("12.4.0")
        .fleet_on("12.3.0")
        .running("12.4.0", "$Latest")
        .plan();
    assert_eq!(plan.kind, PlanKind::Rollback);
    assert_eq!(actions(&plan), "SSSSRRS");
    assert_eq!(
        plan.stage(Stage::SwapAsg).reason,
        "pin the group from $Latest to version 2 (configuration unchanged; AWS cannot roll back a refresh of a group on $Latest); the refresh carries template version 1 (DesiredConfiguration)"
    );
}

#[test]
fn a_builder_volume_smaller_than_the_base_snapshot_is_refused() {
    let refused = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .base_snapshot(30)
        .try_plan();
    let Err(error) = refused else {
        panic!("a 16 GB builder from a 30 GB snapshot must be refused: {refused:?}");
    };
    assert_eq!(
        error.to_string(),
        "builder.volume_size_gb is 16 GB but the image's root snapshot is 30 GB: AWS refuses a smaller volume (InvalidBlockDeviceMapping)"
    );
    assert_eq!(error.hint(), "set builder.volume_size_gb to at least 30");
}

#[test]
fn a_failed_image_is_baked_again_and_said_so() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .image("12.4.0", ImageState::Failed)
        .plan();
    assert_eq!(actions(&plan), "RRRRSRR");
    assert_eq!(
        plan.notes,
        vec![format!(
            "image {} for 12.4.0 failed earlier; it is baked again",
            image_id("12.4.0")
        )]
    );
}

#[test]
fn nothing_to_do_when_the_group_runs_the_desired_release() {
    let plan = Scenario::new("stream-manager")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.4.0")
        .plan();
    assert_eq!(plan.kind, PlanKind::NothingToDo);
    assert!(plan.is_noop());
    assert_eq!(actions(&plan), "SSSSSSS");
}

#[test]
fn a_leftover_builder_is_cleaned_up_even_when_converged() {
    let plan = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.4.0")
        .builder("12.4.0", true)
        .plan();
    assert_eq!(plan.kind, PlanKind::Resume);
    assert_eq!(actions(&plan), "SSSSSSR");
}

#[test]
fn pin_overrides_the_newest_release() {
    let plan = Scenario::new("stream-manager")
        .target("pin: 12.3.0")
        .release("12.3.0")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(plan.to.to_string(), "12.3.0");
    assert_eq!(plan.kind, PlanKind::NothingToDo);
}

#[test]
fn pre_releases_are_ignored_unless_the_track_names_one() {
    let stable = Scenario::new("stream-manager")
        .release("12.4.0")
        .release("12.5.0-rc.1")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(stable.to.to_string(), "12.4.0");
    let opted_in = Scenario::new("stream-manager")
        .target("track: \">=12.5.0-rc.1\"")
        .release("12.4.0")
        .release("12.5.0-rc.1")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(opted_in.to.to_string(), "12.5.0-rc.1");
    assert_eq!(opted_in.kind, PlanKind::Rollout);
}

#[test]
fn one_instance_is_safe_with_the_shipped_max_healthy_200() {
    let scenario = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .capacity(1);
    // The shipped pipeline uses 100/200 and is safe with one instance.
    assert_eq!(scenario.plan().kind, PlanKind::Rollout);
}

#[test]
fn a_database_migration_is_called_out() {
    let text = crate::support::release_text("12.4.0") + "requires_database_migration: true\n";
    let release = red5_rollout::model::Release::from_yaml("releases/12.4.0.yaml", &text).unwrap();
    assert!(release.requires_database_migration);
    // Built through the public API so that the flag travels from the file to the plan.
    let pipeline = crate::support::shipped_pipeline("stream-manager");
    let names = red5_rollout::model::render(
        &pipeline,
        &release,
        crate::support::DATE,
        crate::support::COMMIT,
    )
    .unwrap();
    let fleet = red5_rollout::fleet::FleetState {
        group: pipeline.auto_scaling_group.clone(),
        desired_capacity: 2,
        running_version: Some("12.3.0".parse().unwrap()),
        ..Default::default()
    };
    let plan = red5_rollout::plan::plan_rollout(&pipeline, &release, &names, &fleet).unwrap();
    assert_eq!(
        plan.notes,
        vec![
            "release 12.4.0 requires a database migration: run it before the refresh starts"
                .to_string()
        ]
    );
}

#[test]
fn plans_render_as_text_markdown_and_json() {
    let rollout = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    let rollback = Scenario::new("stream-manager-legacy")
        .release("12.3.0")
        .fleet_on("12.3.0")
        .fleet_on("12.4.0")
        .plan();
    let plans = [rollout, rollback];
    insta::assert_snapshot!("plan_text", plans_as_text(&plans));
    insta::assert_snapshot!("plan_markdown", plans_as_markdown(&plans));
    insta::assert_snapshot!("plan_json", plans_as_json(&plans));
}

#[test]
fn the_refused_single_instance_plan_names_the_line_to_fix() {
    let path = "pipelines/stream-manager.yaml";
    let text = std::fs::read_to_string(crate::support::crate_root().join(path))
        .unwrap()
        .replace("max_healthy_percentage: 200", "max_healthy_percentage: 100");
    let pipeline = red5_rollout::model::Pipeline::from_yaml(path, &text).unwrap();
    let release = crate::support::release("12.4.0");
    let names = red5_rollout::model::render(
        &pipeline,
        &release,
        crate::support::DATE,
        crate::support::COMMIT,
    )
    .unwrap();
    let fleet = red5_rollout::fleet::FleetState {
        group: "red5pro-sm-asg".into(),
        desired_capacity: 1,
        running_version: Some("12.3.0".parse().unwrap()),
        ..Default::default()
    };
    match red5_rollout::plan::plan_rollout(&pipeline, &release, &names, &fleet) {
        Err(PlanError::WouldTerminateOnlyInstance { diagnostic, .. }) => {
            let line = text
                .lines()
                .position(|l| l.contains("max_healthy_percentage"))
                .unwrap()
                + 1;
            assert_eq!(diagnostic.location.line, line);
            assert_eq!(
                diagnostic.message,
                "group red5pro-sm-asg has one instance and refresh.max_healthy_percentage is 100: the only Stream Manager would be terminated first"
            );
        }
        other => panic!("expected the single-instance refusal, got {other:?}"),
    }
}

#[test]
fn a_group_that_protects_instances_is_warned_about_when_the_pipeline_leaves_wait() {
    let plan = Scenario::new("stream-manager")
        .replacing(
            "scale_in_protected_instances: Refresh",
            "scale_in_protected_instances: Wait",
        )
        .release("12.4.0")
        .fleet_on("12.3.0")
        .protecting_instances()
        .plan();
    assert_eq!(
        plan.notes,
        vec!["group red5pro-sm-asg protects instances from scale-in and refresh.scale_in_protected_instances is Wait: the refresh would wait an hour for each protected instance and then fail; set it to Refresh to replace them".to_string()]
    );
    let shipped = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .protecting_instances()
        .plan();
    assert!(shipped.notes.is_empty(), "{:?}", shipped.notes);
}

#[test]
fn a_failed_rollout_is_held_until_its_pipeline_or_release_changes_or_retry() {
    use red5_rollout::plan::RetryRule;
    let scenario = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .failed("12.4.0", "c0ffee0000000000000000000000000000000000");
    let held = scenario.plan_with(RetryRule {
        forced: false,
        changed_since_failure: false,
    });
    assert_eq!(held.kind, PlanKind::Held);
    assert!(held.is_noop());
    assert_eq!(
        held.notes,
        vec!["the refresh to 12.4.0 failed at commit c0ffee000000: it is tried again once a commit changes pipelines/stream-manager.yaml or releases/12.4.0.yaml, or with --retry".to_string()]
    );
    for (rule, why) in [
        (
            RetryRule {
                forced: true,
                changed_since_failure: false,
            },
            "--retry",
        ),
        (
            RetryRule {
                forced: false,
                changed_since_failure: true,
            },
            "the pipeline or the release changed since",
        ),
    ] {
        let retried = scenario.plan_with(rule);
        assert_eq!(retried.kind, PlanKind::Rollout);
        assert_eq!(
            retried.notes,
            vec![format!(
                "the rollout to 12.4.0 failed before, at commit c0ffee000000: it is tried again ({why})"
            )]
        );
    }
    // A failure of another version holds nothing back.
    let other = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .failed("12.3.5", "c0ffee0000000000000000000000000000000000")
        .plan_with(RetryRule {
            forced: false,
            changed_since_failure: false,
        });
    assert_eq!(other.kind, PlanKind::Rollout);
}

/// `watch` runs a plan when git asks for it, resumes one an earlier run left, and otherwise
/// treats a plan with work as drift; a held rollout waits for a commit, drift or not.
#[test]
fn watch_tells_git_changes_unfinished_work_and_drift_apart() {
    use red5_rollout::drift::{Drift, Reason, reason};
    use red5_rollout::plan::RetryRule;
    let bounds = || {
        vec![Drift::Bounds {
            recorded_min: 1,
            recorded_max: 4,
            min: 1,
            max: 9,
        }]
    };
    let rollout = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .plan();
    assert_eq!(reason(&rollout, true, Vec::new()), Reason::Git);
    assert_eq!(reason(&rollout, true, bounds()), Reason::Git);
    assert_eq!(reason(&rollout, false, Vec::new()), Reason::Unfinished);
    assert_eq!(reason(&rollout, false, bounds()), Reason::Drift(bounds()));

    let converged = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.4.0")
        .plan();
    assert_eq!(reason(&converged, true, Vec::new()), Reason::UpToDate);
    assert_eq!(reason(&converged, false, bounds()), Reason::Drift(bounds()));

    let held = Scenario::new("stream-manager")
        .release("12.4.0")
        .fleet_on("12.3.0")
        .failed("12.4.0", "c0ffee0000000000000000000000000000000000")
        .plan_with(RetryRule {
            forced: false,
            changed_since_failure: false,
        });
    assert_eq!(reason(&held, true, bounds()), Reason::UpToDate);
}

/// A promoted pipeline never bakes: it rolls out the image its baking pipeline made, once
/// that pipeline's rollout of the version succeeded, and refuses before.
#[test]
fn a_promoted_pipeline_rolls_out_the_baked_image_only_after_its_rollout_succeeded() {
    let promoted = || {
        Scenario::new("stream-manager")
            .promoting("staging", "")
            .release("12.4.0")
            .fleet_on("12.3.0")
    };
    let plan = promoted()
        .baked_by("12.4.0", "staging")
        .succeeded_there(&["12.3.0", "12.4.0"])
        .plan();
    assert_eq!(actions(&plan), "SSSRSRS");
    assert_eq!(plan.image_id.as_deref(), Some("ami-staging-12.4.0"));
    assert_eq!(
        plan.stage(Stage::LaunchBuilder).reason,
        "promoted: ami-staging-12.4.0 for 12.4.0 was baked by staging, where its rollout succeeded"
    );

    let early = promoted()
        .baked_by("12.4.0", "staging")
        .succeeded_there(&["12.3.0"])
        .try_plan()
        .unwrap_err();
    assert!(
        early
            .to_string()
            .contains("the rollout of 12.4.0 to staging (group staging-asg) has not succeeded"),
        "{early}"
    );
    let unbaked = promoted().succeeded_there(&[]).try_plan().unwrap_err();
    assert_eq!(
        unbaked.to_string(),
        "stream-manager promotes the images of staging, and staging has no image of 12.4.0: nothing of 12.4.0 is rolled out here before it is there"
    );
    assert!(unbaked.hint().contains("red5-rollout apply staging"));
}

/// Promoting from another region: create-image copies the baked image here (the plan
/// names it), waits for a copy in flight, and a copy that exists is rolled out like an
/// image promoted in its own region; an image still baking there, or not rolled out there
/// successfully, is refused.
#[test]
fn a_pipeline_promoting_another_regions_images_copies_them_first() {
    let promoted = || {
        Scenario::new("stream-manager")
            .promoting("staging", "eu-west-1")
            .release("12.4.0")
            .fleet_on("12.3.0")
            .succeeded_there(&["12.3.0", "12.4.0"])
    };
    let copying = promoted()
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Available)
        .plan();
    assert_eq!(actions(&copying), "SSRRSRS");
    assert_eq!(copying.image_id, None);
    let source = copying.copy_from.clone().unwrap();
    assert_eq!(
        (
            source.region.as_str(),
            source.image_id.as_str(),
            source.baked_by.as_str()
        ),
        ("eu-west-1", "ami-eu-west-1-12.4.0", "staging")
    );
    assert_eq!(
        reason(&copying, Stage::CreateImage),
        format!(
            "copy ami-eu-west-1-12.4.0 of eu-west-1 (baked by staging) into us-east-1 as `{}` (CopyImage) and wait for it",
            copying.image_name
        )
    );
    assert_eq!(
        reason(&copying, Stage::LaunchBuilder),
        "promoted: ami-eu-west-1-12.4.0 for 12.4.0 was baked by staging in eu-west-1, where its rollout succeeded; create-image copies it here"
    );
    assert_eq!(
        reason(&copying, Stage::Cleanup),
        "a promoted pipeline runs no builder"
    );

    let in_flight = promoted()
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Available)
        .copied("12.4.0", "staging", ImageState::Pending)
        .plan();
    assert_eq!(actions(&in_flight), "SSURSRS");
    assert_eq!(in_flight.copy_from, None);
    assert_eq!(
        reason(&in_flight, Stage::CreateImage),
        "wait for image ami-copy-12.4.0 to be available"
    );

    let copied = promoted()
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Available)
        .copied("12.4.0", "staging", ImageState::Available)
        .plan();
    assert_eq!(actions(&copied), "SSSRSRS");
    assert_eq!(copied.image_id.as_deref(), Some("ami-copy-12.4.0"));
    assert_eq!(
        reason(&copied, Stage::LaunchBuilder),
        "promoted: ami-copy-12.4.0 for 12.4.0 was baked by staging, where its rollout succeeded"
    );

    let again = promoted()
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Available)
        .copied("12.4.0", "staging", ImageState::Failed)
        .plan();
    assert_eq!(actions(&again), "SSRRSRS");
    assert_eq!(
        again.notes,
        vec!["image ami-copy-12.4.0 for 12.4.0 failed earlier; it is copied again".to_string()]
    );

    let baking = promoted()
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Pending)
        .try_plan()
        .unwrap_err();
    assert_eq!(
        baking.to_string(),
        "stream-manager promotes the images of staging, and staging has no available image of 12.4.0 in eu-west-1: nothing of 12.4.0 is rolled out here before it is there"
    );
    let early = promoted()
        .succeeded_there(&["12.3.0"])
        .baked_in("12.4.0", "staging", "eu-west-1", ImageState::Available)
        .try_plan()
        .unwrap_err();
    assert!(
        early
            .to_string()
            .contains("the rollout of 12.4.0 to staging (group staging-asg) has not succeeded"),
        "{early}"
    );
}
