//! Every [`Cloud`] verb of [`AwsCloud`] against the local AWS emulator, through the real
//! AWS SDK: what each answers, how its failures are classified, and the waits the stages
//! rely on (instances pending then running, images pending then available, refreshes in
//! progress then finished).

use crate::emulator::{Emulator, Fleet, eventually, seeded, unique_name};
use red5_rollout::cloud::aws::AwsCloud;
use red5_rollout::cloud::{
    BuilderSpec, Cloud, CloudResult, CommandResult, ErrorClass, GroupConfig, HeldInstances,
    ImageCopy, ImageStatus, InstanceState, LaunchSpec, Lock, Refresh, RefreshSpec, RefreshStatus,
    TAG_COMMIT, TAG_PIPELINE, TAG_ROLE, TAG_RUN, TAG_SOURCE_IMAGE, TAG_UPDATED, TAG_VERSION, Tags,
};
use serde_json::json;
use std::time::Duration;

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The error of a call that must fail.
fn failure<T: std::fmt::Debug>(result: CloudResult<T>) -> red5_rollout::cloud::CloudError {
    match result {
        Ok(value) => panic!("expected a failure, got {value:?}"),
        Err(error) => error,
    }
}

async fn seeded_security_group(cloud: &AwsCloud) -> String {
    let ids = cloud
        .resolve_security_groups(&[seeded::SECURITY_GROUP.to_owned()])
        .await
        .unwrap();
    ids[0].clone()
}

/// A builder for a pipeline of its own, tagged as the runner tags it.
async fn builder_spec(emulator: &Emulator, cloud: &AwsCloud, label: &str) -> BuilderSpec {
    let pipeline = unique_name(label);
    BuilderSpec {
        image_id: emulator.seeded_image(seeded::PIPELINE).await,
        instance_type: seeded::INSTANCE_TYPE.to_owned(),
        subnet_id: cloud.resolve_subnet(seeded::SUBNETS[0]).await.unwrap(),
        security_group_ids: vec![seeded_security_group(cloud).await],
        instance_profile: seeded::INSTANCE_PROFILE.to_owned(),
        key_pair: Some(seeded::KEY_PAIR.to_owned()),
        volume_size_gb: 16,
        root_device_name: "/dev/sda1".to_owned(),
        client_token: unique_name("token"),
        tags: tags(&[
            (TAG_PIPELINE, &pipeline),
            (TAG_ROLE, "12.4.0"),
            (TAG_RUN, &unique_name("run")),
        ]),
    }
}

async fn wait_for_state(cloud: &AwsCloud, id: &str, state: InstanceState) {
    eventually(&format!("{id} to be {state:?}"), async || {
        (cloud.instance(id).await.ok()?.state == state).then_some(())
    })
    .await;
}

/// Launches a builder and waits until its SSM agent is online.
async fn online_builder(emulator: &Emulator, cloud: &AwsCloud, label: &str) -> String {
    let spec = builder_spec(emulator, cloud, label).await;
    let id = cloud.run_builder(&spec).await.unwrap();
    eventually(&format!("the SSM agent of {id}"), async || {
        cloud.is_ssm_online(&id).await.unwrap().then_some(())
    })
    .await;
    id
}

/// Polls the command until it finished; `NotFound` right after sending means "not yet".
async fn finished_command(cloud: &AwsCloud, command_id: &str, instance_id: &str) -> CommandResult {
    eventually(
        &format!("command {command_id} to finish"),
        async || match cloud.command_result(command_id, instance_id).await {
            Ok(result) if result.is_finished() => Some(result),
            Ok(_) => None,
            Err(error) if error.is(ErrorClass::NotFound) => None,
            Err(error) => panic!("{error}"),
        },
    )
    .await
}

fn launch_spec(
    name: &str,
    image_id: &str,
    security_group: &str,
    public_ip: Option<bool>,
) -> LaunchSpec {
    LaunchSpec {
        name: name.to_owned(),
        image_id: image_id.to_owned(),
        instance_type: seeded::INSTANCE_TYPE.to_owned(),
        security_group_ids: vec![security_group.to_owned()],
        key_pair: Some(seeded::KEY_PAIR.to_owned()),
        public_ip,
        volume_size_gb: 16,
        root_device_name: "/dev/sda1".to_owned(),
        user_data: "#!/bin/bash\necho streammanager.ip=sm-1.example.com\n".to_owned(),
        tags: tags(&[(TAG_PIPELINE, "aws-tests"), (TAG_VERSION, "12.4.0")]),
    }
}

/// A template fleet with a second template version on the legacy pipeline's image.
async fn fleet_with_new_version(
    emulator: &Emulator,
    cloud: &AwsCloud,
    label: &str,
) -> (Fleet, String) {
    let fleet = emulator.template_fleet(label, 2).await;
    let new_image = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    let security_group = seeded_security_group(cloud).await;
    let spec = launch_spec(
        "SM-red5pro-server-12.4.0-template",
        &new_image,
        &security_group,
        None,
    );
    let version = cloud
        .create_template_version(fleet.template(), "1", &spec)
        .await
        .unwrap();
    assert_eq!(version.id, "2");
    (fleet, new_image)
}

/// A refresh to `version` of the fleet's template with AWS's automatic rollback.
fn refresh_to(fleet: &Fleet, version: &str, warmup_secs: u64) -> RefreshSpec {
    RefreshSpec {
        desired_template: Some((fleet.template().to_owned(), version.to_owned())),
        auto_rollback: true,
        // Batches of one instance: a two-instance group is replaced in two steps.
        min_healthy_percentage: 50,
        max_healthy_percentage: 100,
        instance_warmup: Duration::from_secs(warmup_secs),
        skip_matching: false,
        checkpoints: Vec::new(),
        checkpoint_delay: None,
        scale_in_protected_instances: HeldInstances::Refresh,
        standby_instances: red5_rollout::cloud::StandbyInstances::Wait,
    }
}

async fn refresh_by_id(cloud: &AwsCloud, group: &str, id: &str) -> Refresh {
    let refreshes = cloud.refreshes(group).await.unwrap();
    refreshes
        .into_iter()
        .find(|refresh| refresh.id == id)
        .unwrap_or_else(|| panic!("refresh {id} of {group} is not listed"))
}

async fn finished_refresh(cloud: &AwsCloud, group: &str, id: &str) -> Refresh {
    eventually(&format!("refresh {id} to finish"), async || {
        let refresh = refresh_by_id(cloud, group, id).await;
        (!refresh.is_active()).then_some(refresh)
    })
    .await
}

fn template_version(config: &GroupConfig) -> &str {
    match config {
        GroupConfig::Template { version, .. } => version,
        other => panic!("expected a launch template, got {other:?}"),
    }
}

// --- Reading the seeded fleet -----------------------------------------------------------

#[tokio::test]
async fn the_seeded_template_group_is_read_with_its_instances() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let group = cloud.group(seeded::GROUP).await.unwrap();

    assert_eq!(group.name, seeded::GROUP);
    let GroupConfig::Template { id, name, version } = &group.config else {
        panic!("expected a launch template, got {:?}", group.config);
    };
    assert!(id.starts_with("lt-"), "{id}");
    // The console points a group at the template's default version.
    assert_eq!(
        (name.as_str(), version.as_str()),
        (seeded::TEMPLATE, "$Default")
    );
    assert!(group.new_instances_protected && group.protects_instances());
    let template = cloud.launch_template(seeded::TEMPLATE).await.unwrap();
    assert_eq!(template.resolve("$Default"), Some(1));
    assert_eq!(cloud.launch_template(id).await.unwrap(), template);
    assert_eq!(
        (group.min_size, group.max_size, group.desired_capacity),
        (1, 4, 2)
    );
    assert_eq!(group.health_check_type, "ELB");
    assert_eq!(group.health_check_grace_period, 300);
    let mut subnets = Vec::new();
    for name in seeded::SUBNETS {
        subnets.push(cloud.resolve_subnet(name).await.unwrap());
    }
    assert_eq!(group.subnets, subnets);
    // Built by hand: none of the runner's tags until it is adopted.
    assert_eq!(group.tags.get(TAG_PIPELINE), None);
    assert_eq!(group.tags.get(TAG_VERSION), None);

    assert_eq!(group.instances.len(), 2);
    for instance in &group.instances {
        assert!(instance.id.starts_with("i-"), "{}", instance.id);
        assert_eq!(instance.lifecycle_state, "InService");
        assert_eq!(instance.health_status, "Healthy");
        assert_eq!(template_version(&instance.config), "1");
    }

    let image = cloud.config_image(&group.config).await.unwrap();
    assert_eq!(image, Some(emulator.seeded_image(seeded::PIPELINE).await));
}

#[tokio::test]
async fn the_seeded_launch_configuration_group_is_read() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let group = cloud.group(seeded::LEGACY_GROUP).await.unwrap();

    let configuration = GroupConfig::Configuration {
        name: seeded::LAUNCH_CONFIGURATION.to_owned(),
    };
    assert_eq!(group.config, configuration);
    assert_eq!(group.desired_capacity, 1);
    assert_eq!(group.instances.len(), 1);
    assert_eq!(group.instances[0].config, configuration);
    assert_eq!(
        cloud.config_image(&group.config).await.unwrap(),
        Some(emulator.seeded_image(seeded::LEGACY_PIPELINE).await)
    );
    assert_eq!(cloud.config_image(&GroupConfig::Other).await.unwrap(), None);
}

#[tokio::test]
async fn a_group_that_does_not_exist_is_not_found() {
    let emulator = Emulator::shared().await;
    let error = failure(emulator.cloud().await.group("no-such-asg").await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.code, "GroupNotFound");
    assert!(error.message.contains("no-such-asg"), "{}", error.message);
}

#[tokio::test]
async fn images_are_found_by_tags_with_their_root_device_and_snapshot() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let wanted = tags(&[("Name", "red5pro-sm-12.3.0")]);
    let images = cloud.find_images(&wanted).await.unwrap();

    assert_eq!(images.len(), 1, "{images:?}");
    let image = &images[0];
    assert_eq!(image.status, ImageStatus::Available);
    assert_eq!(image.name, "red5pro-stream-manager-12.3.0-seed");
    // The guide-built image carries none of the runner's tags.
    assert_eq!(image.tags.get(TAG_COMMIT), None);
    assert_eq!(image.root_device_name(), "/dev/xvda");
    assert_eq!(image.snapshot_size_gb(), Some(8));
    assert_eq!(cloud.image(&image.id).await.unwrap(), *image);

    let other_version = tags(&[(TAG_PIPELINE, seeded::PIPELINE), (TAG_VERSION, "99.0.0")]);
    assert_eq!(cloud.find_images(&other_version).await.unwrap(), Vec::new());
}

#[tokio::test]
async fn an_image_that_does_not_exist_is_not_found_with_the_aws_code() {
    let emulator = Emulator::shared().await;
    let error = failure(emulator.cloud().await.image("ami-0123456789abcdef0").await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.operation, "DescribeImages");
    assert_eq!(error.code, "InvalidAMIID.NotFound");
    assert!(
        error.message.contains("ami-0123456789abcdef0"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn an_instance_that_does_not_exist_is_not_found() {
    let emulator = Emulator::shared().await;
    let error = failure(emulator.cloud().await.instance("i-0123456789abcdef0").await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.code, "InvalidInstanceID.NotFound");
}

#[tokio::test]
async fn subnets_resolve_by_name_tag_or_id() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let id = cloud.resolve_subnet(seeded::SUBNETS[0]).await.unwrap();
    assert!(id.starts_with("subnet-"), "{id}");
    assert_eq!(cloud.resolve_subnet(&id).await.unwrap(), id);
    assert_ne!(cloud.resolve_subnet(seeded::SUBNETS[1]).await.unwrap(), id);

    let error = failure(cloud.resolve_subnet("red5pro-no-such-subnet").await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert!(
        error.message.contains("red5pro-no-such-subnet"),
        "{}",
        error.message
    );

    let error = failure(cloud.resolve_subnet("subnet-0123456789abcdef0").await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.code, "InvalidSubnetID.NotFound");
}

#[tokio::test]
async fn security_groups_resolve_by_name_or_id_in_order() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let names = [
        seeded::SECURITY_GROUP.to_owned(),
        seeded::DB_SECURITY_GROUP.to_owned(),
    ];
    let ids = cloud.resolve_security_groups(&names).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|id| id.starts_with("sg-")), "{ids:?}");
    assert_ne!(ids[0], ids[1]);

    let mixed = [ids[1].clone(), seeded::SECURITY_GROUP.to_owned()];
    assert_eq!(
        cloud.resolve_security_groups(&mixed).await.unwrap(),
        vec![ids[1].clone(), ids[0].clone()]
    );

    let missing = [
        seeded::SECURITY_GROUP.to_owned(),
        "red5pro-missing-a".to_owned(),
        "red5pro-missing-b".to_owned(),
    ];
    let error = failure(cloud.resolve_security_groups(&missing).await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert!(
        error.message.contains("red5pro-missing-a") && error.message.contains("red5pro-missing-b"),
        "{}",
        error.message
    );
}

// --- The builder ------------------------------------------------------------------------

#[tokio::test]
async fn a_builder_launches_pending_runs_and_comes_online_for_ssm() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let spec = builder_spec(&emulator, &cloud, "builder").await;
    let id = cloud.run_builder(&spec).await.unwrap();

    let launched = cloud.instance(&id).await.unwrap();
    assert_eq!(launched.state, InstanceState::Pending);
    assert_eq!(launched.image_id.as_deref(), Some(spec.image_id.as_str()));
    let pipeline = &spec.tags[TAG_PIPELINE];
    assert_eq!(
        launched.tags["Name"],
        format!("red5-rollout builder {pipeline}")
    );
    assert_eq!(launched.tags[TAG_RUN], spec.tags[TAG_RUN]);
    assert!(!cloud.is_ssm_online(&id).await.unwrap());

    let found = cloud.find_instances(&spec.tags).await.unwrap();
    assert_eq!(
        found.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![id.as_str()]
    );
    // A launch whose answer was lost is found by its token; a retry with the same token
    // launches nothing new.
    let by_token = cloud.instance_by_client_token(&spec.client_token).await;
    assert_eq!(by_token.unwrap().map(|i| i.id), Some(id.clone()));
    assert_eq!(
        cloud
            .instance_by_client_token("r5r-never-used")
            .await
            .unwrap(),
        None
    );
    assert_eq!(cloud.run_builder(&spec).await.unwrap(), id);

    wait_for_state(&cloud, &id, InstanceState::Running).await;
    eventually("the builder's SSM agent", async || {
        cloud.is_ssm_online(&id).await.unwrap().then_some(())
    })
    .await;

    cloud
        .tag_instance(&id, &tags(&[(TAG_UPDATED, "true")]))
        .await
        .unwrap();
    assert_eq!(cloud.instance(&id).await.unwrap().tags[TAG_UPDATED], "true");

    cloud.terminate_instance(&id).await.unwrap();
    assert_eq!(cloud.find_instances(&spec.tags).await.unwrap(), Vec::new());
    // Terminating what is already gone is not an error.
    cloud.terminate_instance(&id).await.unwrap();
    cloud
        .terminate_instance("i-0123456789abcdef0")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_script_runs_to_success_with_its_output() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let id = online_builder(&emulator, &cloud, "script").await;

    let script = "set -eu\nunzip -o /tmp/red5pro-12.4.0.zip\nsystemctl restart red5pro";
    let comment = format!("red5-rollout {}", "x".repeat(200));
    let command = cloud
        .send_script(&id, script, 1800, &comment)
        .await
        .unwrap();
    let result = finished_command(&cloud, &command, &id).await;

    assert!(result.is_success(), "{result:?}");
    assert_eq!(result.status.as_str(), "Success");
    assert_eq!(result.response_code, 0);
    // The emulator echoes each line the command received: the script arrives line by line.
    assert!(
        result.stdout.contains("running 3 script lines"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("+ unzip -o /tmp/red5pro-12.4.0.zip"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("+ systemctl restart red5pro"),
        "{}",
        result.stdout
    );
    assert_eq!(result.stderr, "");
    cloud.terminate_instance(&id).await.unwrap();
}

#[tokio::test]
async fn a_failed_script_reports_its_output_and_exit_code() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;
    let id = online_builder(&emulator, &cloud, "failing-script").await;

    emulator.set_faults(json!({"ssm_fail_next": {
        "output": "Archive: red5pro.zip\nunzip: cannot find zipfile",
        "exit_code": 9,
        "stderr": "checksum mismatch"
    }}));
    let command = cloud
        .send_script(&id, "unzip red5pro.zip", 600, "update")
        .await
        .unwrap();
    let result = finished_command(&cloud, &command, &id).await;

    assert!(!result.is_success());
    assert_eq!(result.status.as_str(), "Failed");
    assert_eq!(result.response_code, 9);
    assert_eq!(
        result.stdout,
        "Archive: red5pro.zip\nunzip: cannot find zipfile"
    );
    assert_eq!(result.stderr, "checksum mismatch");
    cloud.terminate_instance(&id).await.unwrap();
}

#[tokio::test]
async fn a_stopped_builder_is_imaged_pending_then_available() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let spec = builder_spec(&emulator, &cloud, "imaged").await;
    let id = cloud.run_builder(&spec).await.unwrap();
    wait_for_state(&cloud, &id, InstanceState::Running).await;

    cloud.stop_instance(&id).await.unwrap();
    assert_eq!(
        cloud.instance(&id).await.unwrap().state,
        InstanceState::Stopping
    );
    wait_for_state(&cloud, &id, InstanceState::Stopped).await;

    let pipeline = spec.tags[TAG_PIPELINE].clone();
    let image_tags = tags(&[
        (TAG_PIPELINE, &pipeline),
        (TAG_VERSION, "12.4.0"),
        (TAG_SOURCE_IMAGE, &spec.image_id),
    ]);
    let name = format!("red5pro-{pipeline}-12.4.0");
    let image_id = cloud.create_image(&id, &name, &image_tags).await.unwrap();
    let image = cloud.image(&image_id).await.unwrap();
    assert_eq!(image.status, ImageStatus::Pending);
    assert_eq!(image.name, name);
    assert_eq!(image.tags, image_tags);

    eventually("the image to be available", async || {
        (cloud.image(&image_id).await.unwrap().status == ImageStatus::Available).then_some(())
    })
    .await;
    let found = cloud.find_images(&image_tags).await.unwrap();
    assert_eq!(
        found.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        vec![image_id.as_str()]
    );

    let error = failure(cloud.create_image(&id, &name, &image_tags).await);
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "InvalidAMIName.Duplicate");
    cloud.terminate_instance(&id).await.unwrap();
}

#[tokio::test]
async fn an_image_that_fails_reports_the_reason() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;
    let spec = builder_spec(&emulator, &cloud, "failing-image").await;
    let id = cloud.run_builder(&spec).await.unwrap();
    wait_for_state(&cloud, &id, InstanceState::Running).await;

    emulator.set_faults(json!({"image_fail_next": {"reason": "snapshot of /dev/sda1 failed"}}));
    let name = unique_name("red5pro-failing-image");
    let image_id = cloud.create_image(&id, &name, &Tags::new()).await.unwrap();
    let status = eventually("the image to fail", async || {
        let status = cloud.image(&image_id).await.unwrap().status;
        (status != ImageStatus::Pending).then_some(status)
    })
    .await;
    assert_eq!(
        status,
        ImageStatus::Failed(Some("snapshot of /dev/sda1 failed".to_owned()))
    );
    cloud.terminate_instance(&id).await.unwrap();
}

// --- Launch templates and configurations -------------------------------------------------

#[tokio::test]
async fn a_template_version_is_created_and_listed_with_its_image() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let fleet = emulator.template_fleet("versions", 1).await;
    let new_image = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    let security_group = seeded_security_group(&cloud).await;

    // The template sets its security groups on the instance: a public IP, which only a
    // network interface can ask for, is refused before AWS is asked (AWS refuses both).
    let refused = failure(
        cloud
            .create_template_version(
                fleet.template(),
                "1",
                &launch_spec("with-ip", &new_image, &security_group, Some(true)),
            )
            .await,
    );
    assert_eq!(refused.code, "PublicIpNeedsNetworkInterface");
    let mut public = launch_spec(
        "SM-red5pro-server-12.4.0-public",
        &new_image,
        &security_group,
        None,
    );
    let signature = "instance_type:0123abcd user_data:89abcdef";
    public
        .tags
        .insert(red5_rollout::cloud::TAG_LAUNCH.into(), signature.into());
    let created = cloud
        .create_template_version(fleet.template(), "1", &public)
        .await
        .unwrap();
    assert_eq!(created.id, "2");
    assert_eq!(created.image_id, new_image);
    assert_eq!(created.description, "SM-red5pro-server-12.4.0-public");
    let private = launch_spec(&"d".repeat(300), &new_image, &security_group, None);
    let created = cloud
        .create_template_version(fleet.template(), "1", &private)
        .await
        .unwrap();
    assert_eq!(created.id, "3");
    assert_eq!(created.description.len(), 255);

    let versions = cloud.template_versions(fleet.template()).await.unwrap();
    let listed: Vec<(&str, &str)> = versions
        .iter()
        .map(|v| (v.id.as_str(), v.image_id.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("1", fleet.image_id.as_str()),
            ("2", new_image.as_str()),
            ("3", new_image.as_str())
        ]
    );
    assert_eq!(versions[1].description, "SM-red5pro-server-12.4.0-public");
    // The launch signature is read back from the version's instance tags; the guide's
    // version 1 has none.
    assert_eq!(versions[1].launch.as_deref(), Some(signature));
    assert_eq!(versions[0].launch, None);
    assert_eq!(versions[2].launch, None);

    let config = |version: &str| GroupConfig::Template {
        id: String::new(),
        name: fleet.template().to_owned(),
        version: version.to_owned(),
    };
    assert_eq!(
        cloud.config_image(&config("2")).await.unwrap(),
        Some(new_image.clone())
    );
    assert_eq!(
        cloud.config_image(&config("$Latest")).await.unwrap(),
        Some(new_image.clone())
    );
    assert_eq!(
        cloud.config_image(&config("$Default")).await.unwrap(),
        Some(fleet.image_id.clone())
    );

    let error = failure(
        cloud
            .create_template_version("red5pro-no-such-template", "1", &public)
            .await,
    );
    assert_eq!(error.class, ErrorClass::NotFound);
    let error = failure(cloud.template_versions("red5pro-no-such-template").await);
    assert_eq!(error.class, ErrorClass::NotFound);
}

#[tokio::test]
async fn a_launch_configuration_is_created_once() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let image = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    let security_group = seeded_security_group(&cloud).await;
    let prefix = unique_name("SM-red5pro-server-12.4.0-lc");
    let name = format!("{prefix}-m5large-LC");
    let spec = launch_spec(&name, &image, &security_group, Some(true));

    let created = cloud.create_launch_configuration(&spec).await.unwrap();
    assert_eq!(
        (created.id.as_str(), created.image_id.as_str()),
        (name.as_str(), image.as_str())
    );
    let listed = cloud.launch_configurations(&prefix).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec![name.as_str()]);
    // Its creation time is listed: a refresh that started after it moved the group to it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let made = listed[0].created.expect("CreatedTime is listed");
    assert!((now - made).abs() < 300, "{made} vs {now}");
    let all = cloud.launch_configurations("").await.unwrap();
    assert!(all.iter().any(|c| c.id == name), "{all:?}");
    assert!(
        all.iter().any(|c| c.id == seeded::LAUNCH_CONFIGURATION),
        "{all:?}"
    );
    assert_eq!(
        cloud
            .config_image(&GroupConfig::Configuration { name: name.clone() })
            .await
            .unwrap(),
        Some(image)
    );

    let error = failure(cloud.create_launch_configuration(&spec).await);
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "AlreadyExists");
}

#[tokio::test]
async fn a_group_is_pointed_at_another_launch_configuration() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let fleet = emulator.configuration_fleet("legacy", 1).await;
    let image = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    let security_group = seeded_security_group(&cloud).await;
    let name = format!("{}-12.4.0-LC", fleet.group);
    cloud
        .create_launch_configuration(&launch_spec(&name, &image, &security_group, Some(false)))
        .await
        .unwrap();

    cloud
        .set_group_configuration(&fleet.group, &name)
        .await
        .unwrap();
    let group = cloud.group(&fleet.group).await.unwrap();
    assert_eq!(
        group.config,
        GroupConfig::Configuration { name: name.clone() }
    );
    // Instances keep the configuration they were launched with until they are replaced.
    assert_eq!(
        group.instances[0].config,
        GroupConfig::Configuration {
            name: fleet.configuration.clone().unwrap()
        }
    );

    let error = failure(
        cloud
            .set_group_configuration(&fleet.group, "red5pro-no-such-LC")
            .await,
    );
    assert_eq!(error.class, ErrorClass::Invalid);
    assert_eq!(error.code, "ValidationError");
}

#[tokio::test]
async fn group_tags_are_written_and_read_back() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let fleet = emulator.template_fleet("tags", 1).await;
    let written = tags(&[
        (TAG_PIPELINE, "aws-tests"),
        (TAG_VERSION, "12.4.0"),
        (TAG_COMMIT, "abc123"),
    ]);
    cloud.tag_group(&fleet.group, &written).await.unwrap();
    cloud
        .tag_group(&fleet.group, &tags(&[(TAG_VERSION, "12.4.1")]))
        .await
        .unwrap();

    let group = cloud.group(&fleet.group).await.unwrap();
    assert_eq!(group.tags[TAG_PIPELINE], "aws-tests");
    assert_eq!(group.tags[TAG_VERSION], "12.4.1");
    assert_eq!(group.tags[TAG_COMMIT], "abc123");
}

// --- Instance refreshes -----------------------------------------------------------------

#[tokio::test]
async fn a_refresh_to_a_template_version_replaces_every_instance() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let (fleet, new_image) = fleet_with_new_version(&emulator, &cloud, "refresh").await;
    let before = cloud.group(&fleet.group).await.unwrap();

    let id = cloud
        .start_refresh(&fleet.group, &refresh_to(&fleet, "2", 10))
        .await
        .unwrap();
    let error = failure(
        cloud
            .start_refresh(&fleet.group, &refresh_to(&fleet, "2", 10))
            .await,
    );
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "InstanceRefreshInProgress");

    let started = refresh_by_id(&cloud, &fleet.group, &id).await;
    assert!(started.is_active(), "{started:?}");
    assert_eq!(started.desired_template_version.as_deref(), Some("2"));

    let finished = finished_refresh(&cloud, &fleet.group, &id).await;
    assert_eq!(finished.status.as_str(), "Successful", "{finished:?}");
    assert_eq!(
        (finished.percentage, finished.instances_to_update),
        (100, 0)
    );
    assert_eq!(
        cloud.refreshes(&fleet.group).await.unwrap()[0].id,
        id,
        "newest first"
    );

    let after = cloud.group(&fleet.group).await.unwrap();
    assert_eq!(template_version(&after.config), "2");
    assert_eq!(after.instances.len(), 2);
    for instance in &after.instances {
        assert_eq!(template_version(&instance.config), "2");
        assert!(
            !before.instances.iter().any(|old| old.id == instance.id),
            "{} survived",
            instance.id
        );
        let launched = cloud.instance(&instance.id).await.unwrap();
        assert_eq!(launched.image_id.as_deref(), Some(new_image.as_str()));
    }

    let error = failure(cloud.cancel_refresh(&fleet.group).await);
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.code, "ActiveInstanceRefreshNotFound");
    let error = failure(cloud.rollback_refresh(&fleet.group).await);
    assert_eq!(error.class, ErrorClass::NotFound);
}

#[tokio::test]
async fn a_failed_refresh_rolls_back_to_the_previous_version() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;
    let (fleet, _) = fleet_with_new_version(&emulator, &cloud, "failing-refresh").await;

    emulator.set_faults(json!({"refresh_fail_at_percent": 50}));
    let id = cloud
        .start_refresh(&fleet.group, &refresh_to(&fleet, "2", 10))
        .await
        .unwrap();
    let finished = finished_refresh(&cloud, &fleet.group, &id).await;

    assert_eq!(
        finished.status.as_str(),
        "RollbackSuccessful",
        "{finished:?}"
    );
    let reason = finished.status_reason.unwrap_or_default();
    assert!(reason.contains("failed at 50%"), "{reason}");
    let group = cloud.group(&fleet.group).await.unwrap();
    assert_eq!(template_version(&group.config), "1");
    assert_eq!(group.instances.len(), 2);
    assert!(
        group
            .instances
            .iter()
            .all(|i| template_version(&i.config) == "1"),
        "{group:?}"
    );
}

#[tokio::test]
async fn a_cancelled_refresh_ends_cancelled() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let (fleet, _) = fleet_with_new_version(&emulator, &cloud, "cancelled-refresh").await;

    // A long warm-up keeps the refresh in progress while it is cancelled.
    let id = cloud
        .start_refresh(&fleet.group, &refresh_to(&fleet, "2", 100))
        .await
        .unwrap();
    cloud.cancel_refresh(&fleet.group).await.unwrap();
    let finished = finished_refresh(&cloud, &fleet.group, &id).await;
    assert_eq!(finished.status.as_str(), "Cancelled", "{finished:?}");
    assert_eq!(
        template_version(&cloud.group(&fleet.group).await.unwrap().config),
        "1"
    );
}

#[tokio::test]
async fn a_refresh_rolled_back_on_request_ends_rollback_successful() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let (fleet, _) = fleet_with_new_version(&emulator, &cloud, "rolled-back-refresh").await;

    let id = cloud
        .start_refresh(&fleet.group, &refresh_to(&fleet, "2", 100))
        .await
        .unwrap();
    eventually("the refresh to be in progress", async || {
        (refresh_by_id(&cloud, &fleet.group, &id).await.status == RefreshStatus::InProgress)
            .then_some(())
    })
    .await;
    cloud.rollback_refresh(&fleet.group).await.unwrap();
    let finished = finished_refresh(&cloud, &fleet.group, &id).await;

    assert_eq!(
        finished.status.as_str(),
        "RollbackSuccessful",
        "{finished:?}"
    );
    let group = cloud.group(&fleet.group).await.unwrap();
    assert_eq!(template_version(&group.config), "1");
    assert!(
        group
            .instances
            .iter()
            .all(|i| template_version(&i.config) == "1"),
        "{group:?}"
    );
}

#[tokio::test]
async fn cancelling_without_an_active_refresh_is_not_found() {
    let emulator = Emulator::shared().await;
    let error = failure(
        emulator
            .cloud()
            .await
            .cancel_refresh(seeded::LEGACY_GROUP)
            .await,
    );
    assert_eq!(error.class, ErrorClass::NotFound);
    assert_eq!(error.operation, "CancelInstanceRefresh");
    assert_eq!(error.code, "ActiveInstanceRefreshNotFound");
}

// --- Locks ------------------------------------------------------------------------------

#[tokio::test]
async fn a_lock_is_taken_once_read_and_released() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let name = format!("/red5-rollout/locks/{}", unique_name("aws-tests"));
    let lock = Lock {
        run: "run-1".to_owned(),
        host: "ci-runner-7".to_owned(),
        commit: "0123456789abcdef".to_owned(),
        started: "2026-11-24T08:00:00Z".to_owned(),
        expires: Some("2026-11-24T08:10:00Z".to_owned()),
        ci_run: Some("4242".to_owned()),
        ci_url: None,
    };
    assert_eq!(cloud.read_lock(&name).await.unwrap(), None);

    cloud.put_lock(&name, &lock).await.unwrap();
    let other = Lock {
        run: "run-2".to_owned(),
        ..lock.clone()
    };
    let error = failure(cloud.put_lock(&name, &other).await);
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "ParameterAlreadyExists");
    assert_eq!(cloud.read_lock(&name).await.unwrap(), Some(lock.clone()));

    // The holder renews (overwrites) its lease.
    let renewed = Lock {
        expires: Some("2026-11-24T08:20:00Z".to_owned()),
        ..lock
    };
    cloud.renew_lock(&name, &renewed).await.unwrap();
    assert_eq!(cloud.read_lock(&name).await.unwrap(), Some(renewed.clone()));
    // Many leases are read together; one that does not exist is left out.
    let absent = format!("/red5-rollout/locks/{}", unique_name("aws-tests-none"));
    let mut names: Vec<String> = (0..11).map(|i| format!("{absent}-{i}")).collect();
    names.push(name.clone());
    assert_eq!(
        cloud.read_locks(&names).await.unwrap(),
        vec![(name.clone(), renewed)]
    );

    cloud.delete_lock(&name).await.unwrap();
    assert_eq!(cloud.read_lock(&name).await.unwrap(), None);
    cloud.delete_lock(&name).await.unwrap();
}

// --- Retries and classification ----------------------------------------------------------

#[tokio::test]
async fn throttled_calls_succeed_through_the_sdk_retries() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;
    let image = emulator.seeded_image(seeded::PIPELINE).await;

    // Every second EC2 call is refused with RequestLimitExceeded.
    emulator.set_faults(json!({"throttle_fraction": 0.5, "throttle_only": ["ec2"]}));
    for _ in 0..4 {
        assert_eq!(
            cloud.image(&image).await.unwrap().status,
            ImageStatus::Available
        );
    }
    emulator.clear_faults();

    let calls = emulator.calls();
    let throttled = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|call| call["fault"] == "throttled" && call["key"] == "ec2:DescribeImages")
        .count();
    assert!(
        throttled >= 3,
        "expected refused calls that were retried: {calls}"
    );
}

#[tokio::test]
async fn server_errors_beyond_the_retries_are_transient() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;

    // Five attempts in all, each answered 500 InternalError.
    emulator.set_faults(json!({"server_error_burst": 5}));
    let error = failure(cloud.find_instances(&tags(&[(TAG_PIPELINE, "none")])).await);
    assert_eq!(error.class, ErrorClass::Transient);
    assert_eq!(error.operation, "DescribeInstances");
    assert_eq!(error.code, "InternalError");
}

#[tokio::test]
async fn many_groups_and_every_pipeline_s_images_are_read_in_one_call_each() {
    let emulator = Emulator::alone().await;
    let cloud = emulator.cloud().await;
    let first = emulator.template_fleet("many-a", 1).await;
    let second = emulator.template_fleet("many-b", 1).await;
    emulator.reset_calls();
    let names = vec![
        first.group.clone(),
        "no-such-group".to_string(),
        second.group.clone(),
    ];
    let mut found: Vec<String> = cloud
        .groups(&names)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    found.sort();
    let mut wanted = vec![first.group.clone(), second.group.clone()];
    wanted.sort();
    assert_eq!(found, wanted, "a name without a group is left out");
    assert_eq!(
        emulator.calls()["counts"]["autoscaling:DescribeAutoScalingGroups"],
        1,
        "three names, one call"
    );
    assert_eq!(
        cloud.group(&first.group).await.unwrap(),
        cloud
            .groups(std::slice::from_ref(&first.group))
            .await
            .unwrap()[0]
    );
    // Images with a tag key, whatever its value, in one call. The key is this test's own:
    // the seeded image is shared, and a runner tag on it would change what other tests
    // adopt.
    let key = unique_name("images-tagged-test");
    let image = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    cloud
        .tag_image(&image, &tags(&[(key.as_str(), "any value")]))
        .await
        .unwrap();
    emulator.reset_calls();
    let tagged = cloud.images_tagged(&key).await.unwrap();
    let ids: Vec<&str> = tagged.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec![image.as_str()]);
    let calls = emulator.calls();
    assert_eq!(calls["counts"]["ec2:DescribeImages"], 1, "{calls}");
}

/// Concurrent polls of images, instances and SSM agents share one describe call each, and
/// one id AWS does not know does not fail the others' polls.
#[tokio::test]
async fn concurrent_polls_share_one_describe_and_a_missing_id_fails_only_its_own() {
    let emulator = Emulator::alone().await;
    let cloud = std::sync::Arc::new(emulator.cloud().await);
    let image = emulator.seeded_image(seeded::PIPELINE).await;
    let legacy = emulator.seeded_image(seeded::LEGACY_PIPELINE).await;
    let spec = builder_spec(&emulator, &cloud, "batch").await;
    let builder = cloud.run_builder(&spec).await.unwrap();
    wait_for_state(&cloud, &builder, InstanceState::Running).await;
    emulator.reset_calls();

    let polls = [image.clone(), legacy.clone(), image.clone()].map(|id| {
        let cloud = cloud.clone();
        tokio::spawn(async move { cloud.image(&id).await.map(|i| i.id) })
    });
    let mut seen = Vec::new();
    for poll in polls {
        seen.push(poll.await.unwrap().unwrap());
    }
    assert_eq!(seen, vec![image.clone(), legacy.clone(), image.clone()]);
    let instance_polls = [builder.clone(), builder.clone()].map(|id| {
        let cloud = cloud.clone();
        tokio::spawn(async move { cloud.instance(&id).await.map(|i| i.id) })
    });
    for poll in instance_polls {
        assert_eq!(poll.await.unwrap().unwrap(), builder);
    }
    let ssm_polls = [builder.clone(), "i-0000000000000dead".to_string()].map(|id| {
        let cloud = cloud.clone();
        tokio::spawn(async move { cloud.is_ssm_online(&id).await })
    });
    let mut online = Vec::new();
    for poll in ssm_polls {
        online.push(poll.await.unwrap().unwrap());
    }
    assert!(!online[1], "an instance without an agent is not online");
    let calls = emulator.calls();
    for action in [
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ssm:DescribeInstanceInformation",
    ] {
        assert_eq!(calls["counts"][action], 1, "{action}: {calls}");
    }

    // AWS refuses a DescribeImages that names an image it does not know, for every id in
    // it: the batch is asked again id by id, and only the unknown one fails.
    emulator.reset_calls();
    let polls = [image.clone(), "ami-0000000000000dead".to_string()].map(|id| {
        let cloud = cloud.clone();
        tokio::spawn(async move { cloud.image(&id).await })
    });
    let [known, unknown] = polls;
    assert_eq!(known.await.unwrap().unwrap().id, image);
    let error = failure(unknown.await.unwrap());
    assert_eq!(error.class, ErrorClass::NotFound);
    let calls = emulator.calls();
    assert_eq!(
        calls["counts"]["ec2:DescribeImages"], 3,
        "the batch, then each alone: {calls}"
    );
    cloud.terminate_instance(&builder).await.unwrap();
}

// --- What preflight reads ------------------------------------------------------------------

#[tokio::test]
async fn the_seeded_group_target_group_and_load_balancer_are_read_as_the_guide_built_them() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let group = cloud.group(seeded::GROUP).await.unwrap();
    let arn = emulator.seeded_target_group().await;
    assert_eq!(group.target_groups, std::slice::from_ref(&arn));

    let [target_group] = cloud
        .target_groups(std::slice::from_ref(&arn))
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(target_group.name, seeded::TARGET_GROUP);
    assert_eq!(target_group.protocol.as_deref(), Some("HTTP"));
    assert_eq!(target_group.port, Some(5080));
    assert_eq!(target_group.health_check_protocol.as_deref(), Some("HTTP"));
    assert_eq!(target_group.health_check_path.as_deref(), Some("/"));
    assert_eq!(target_group.load_balancers.len(), 1);

    let [balancer] = cloud
        .load_balancers(&target_group.load_balancers)
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(balancer.name, seeded::LOAD_BALANCER);
    let mut subnets = balancer.subnets.clone();
    subnets.sort();
    let mut theirs = group.subnets.clone();
    theirs.sort();
    assert_eq!(subnets, theirs);

    let missing =
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/missing/0123456789abcdef";
    let error = failure(cloud.target_groups(&[missing.to_owned()]).await);
    assert_eq!(
        (error.operation, error.class, error.code.as_str()),
        (
            "DescribeTargetGroups",
            ErrorClass::NotFound,
            "TargetGroupNotFound"
        )
    );
    assert!(cloud.target_groups(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_subnet_says_whether_it_gives_a_public_ip_and_a_vpc_lists_its_endpoints() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let by_name = cloud.subnet(seeded::SUBNETS[0]).await.unwrap();
    assert!(by_name.id.starts_with("subnet-") && by_name.vpc_id.starts_with("vpc-"));
    assert!(by_name.maps_public_ip, "the seeded subnets are public");
    assert_eq!(cloud.subnet(&by_name.id).await.unwrap(), by_name);
    let error = failure(cloud.subnet("no-such-subnet").await);
    assert_eq!(error.class, ErrorClass::NotFound);

    let ec2 = emulator.ec2().await;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .and_then(|v| v.vpc_id())
        .unwrap()
        .to_owned();
    let private = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.42.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet()
        .and_then(|s| s.subnet_id())
        .unwrap()
        .to_owned();
    assert!(!cloud.subnet(&private).await.unwrap().maps_public_ip);
    assert!(cloud.vpc_endpoint_services(&vpc).await.unwrap().is_empty());
    ec2.create_vpc_endpoint()
        .vpc_id(&vpc)
        .service_name("com.amazonaws.us-east-1.ssm")
        .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cloud.vpc_endpoint_services(&vpc).await.unwrap(),
        ["com.amazonaws.us-east-1.ssm"]
    );
}

#[tokio::test]
async fn the_database_rule_is_found_by_the_stream_managers_security_group() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let sm = seeded_security_group(&cloud).await;
    let rules = cloud.ingress_from(std::slice::from_ref(&sm)).await.unwrap();
    let database: Vec<_> = rules
        .iter()
        .filter(|r| r.group_name == seeded::DB_SECURITY_GROUP)
        .collect();
    assert_eq!(database.len(), 1, "{rules:?}");
    assert_eq!(database[0].protocol, "tcp");
    assert_eq!(
        (database[0].from_port, database[0].to_port),
        (Some(3306), Some(3306))
    );
    assert_eq!(database[0].sources, [sm]);
    assert!(database[0].admits_tcp(3306));
    assert!(cloud.ingress_from(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_instance_profile_is_read_down_to_its_policy_documents() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    assert_eq!(
        cloud
            .instance_profile_roles(seeded::INSTANCE_PROFILE)
            .await
            .unwrap(),
        [seeded::INSTANCE_PROFILE]
    );
    let policies = cloud.role_policies(seeded::INSTANCE_PROFILE).await.unwrap();
    let core = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
    assert_eq!(policies.attached, [core]);
    assert!(policies.inline.is_empty());
    let document = cloud.policy_document(core).await.unwrap();
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert!(
        document
            .to_string()
            .contains("ssm:UpdateInstanceInformation"),
        "{document}"
    );

    let error = failure(cloud.instance_profile_roles("no-such-profile").await);
    assert_eq!(
        (error.operation, error.class, error.code.as_str()),
        ("GetInstanceProfile", ErrorClass::NotFound, "NoSuchEntity")
    );

    let role = unique_name("inline-role");
    let iam = emulator.iam().await;
    iam.create_role()
        .role_name(&role)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    let inline = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ssm:*", "ec2messages:*", "ssmmessages:*"], "Resource": "*"}]});
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("agent")
        .policy_document(inline.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(cloud.role_policies(&role).await.unwrap().inline, ["agent"]);
    let read = cloud.role_policy_document(&role, "agent").await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read).unwrap(),
        inline
    );
}

// --- Garbage collection -------------------------------------------------------------------

#[tokio::test]
async fn an_image_is_deregistered_then_its_snapshots_deleted_never_before() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let spec = builder_spec(&emulator, &cloud, "gc-image").await;
    let builder = cloud.run_builder(&spec).await.unwrap();
    wait_for_state(&cloud, &builder, InstanceState::Running).await;
    let name = unique_name("red5pro-gc-image");
    let image_id = cloud
        .create_image(&builder, &name, &spec.tags)
        .await
        .unwrap();
    cloud.terminate_instance(&builder).await.unwrap();
    let image = cloud.image(&image_id).await.unwrap();
    assert!(!image.snapshots.is_empty(), "{image:?}");
    assert!(image.snapshots.iter().all(|s| s.starts_with("snap-")));

    // AWS refuses to delete a snapshot while a registered image uses it.
    let error = failure(cloud.delete_snapshot(&image.snapshots[0]).await);
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "InvalidSnapshot.InUse");

    cloud.deregister_image(&image_id).await.unwrap();
    let error = failure(cloud.image(&image_id).await);
    assert_eq!(error.class, ErrorClass::NotFound);
    for snapshot in &image.snapshots {
        cloud.delete_snapshot(snapshot).await.unwrap();
    }
    // Doing it again finds them gone, which is what was wanted.
    cloud.deregister_image(&image_id).await.unwrap();
    cloud.delete_snapshot(&image.snapshots[0]).await.unwrap();
}

#[tokio::test]
async fn template_versions_are_deleted_but_never_the_default_one() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let fleet = emulator.template_fleet("gc-versions", 1).await;
    let security_group = seeded_security_group(&cloud).await;
    for n in 2..=4 {
        let spec = launch_spec(&format!("v{n}"), &fleet.image_id, &security_group, None);
        cloud
            .create_template_version(fleet.template(), "1", &spec)
            .await
            .unwrap();
    }

    cloud
        .delete_template_versions(fleet.template(), &["2".to_owned(), "3".to_owned()])
        .await
        .unwrap();
    let listed: Vec<String> = cloud
        .template_versions(fleet.template())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, vec!["1", "4"]);
    // A version deleted already is no failure.
    cloud
        .delete_template_versions(fleet.template(), &["2".to_owned()])
        .await
        .unwrap();

    // AWS answers 200 and names the default version among those it did not delete.
    let error = failure(
        cloud
            .delete_template_versions(fleet.template(), &["1".to_owned()])
            .await,
    );
    assert_eq!(error.operation, "DeleteLaunchTemplateVersions");
    assert_eq!(error.code, "unexpectedError");
    assert!(
        error.message.contains(fleet.template()) && error.message.contains("version 1"),
        "{error}"
    );
    let template = cloud.launch_template(fleet.template()).await.unwrap();
    assert_eq!((template.default_version, template.latest_version), (1, 4));
}

#[tokio::test]
async fn a_launch_configuration_is_deleted_unless_a_group_uses_it() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let fleet = emulator.configuration_fleet("gc-lc", 1).await;
    let security_group = seeded_security_group(&cloud).await;
    let spare = format!("{}-spare-LC", fleet.group);
    cloud
        .create_launch_configuration(&launch_spec(&spare, &fleet.image_id, &security_group, None))
        .await
        .unwrap();

    let in_use = fleet.configuration.clone().unwrap();
    let error = failure(cloud.delete_launch_configuration(&in_use).await);
    assert_eq!(error.class, ErrorClass::Conflict);
    assert_eq!(error.code, "ResourceInUse");

    cloud.delete_launch_configuration(&spare).await.unwrap();
    let left: Vec<String> = cloud
        .launch_configurations(&fleet.group)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, Vec::<String>::new());
    assert!(cloud.launch_configurations(&in_use).await.unwrap().len() == 1);
}

/// Promotion to another region: the client reaches the same account there (its calls are
/// counted with this one's), and CopyImage, called in the destination, makes a pending copy
/// tagged at creation, once per client token; an unknown source is not found.
#[tokio::test]
async fn an_image_is_copied_from_another_region_once_per_token_and_tagged() {
    let emulator = Emulator::shared().await;
    let east = emulator.cloud().await;
    let west = east.in_region("us-west-2").unwrap();
    let source = emulator.seeded_image(seeded::PIPELINE).await;
    let pipeline = unique_name("copy");
    let copy = ImageCopy {
        source_region: "us-east-1".into(),
        source_image: source.clone(),
        name: unique_name("copied"),
        client_token: unique_name("copy-token"),
        tags: tags(&[(TAG_PIPELINE, &pipeline), (TAG_VERSION, "12.3.0")]),
    };
    let id = red5_rollout::cloud::meter::in_pipeline(pipeline.clone(), west.copy_image(&copy))
        .await
        .unwrap();
    assert_eq!(
        east.calls(&pipeline).map(|c| (c.reads, c.mutating)),
        Some((0, 1)),
        "the copy counts for the pipeline on the client it came from"
    );
    // A retry (an answer lost, a run resumed) gets the first copy back.
    assert_eq!(west.copy_image(&copy).await.unwrap(), id);
    let pending = west.image(&id).await.unwrap();
    assert_eq!(pending.status, ImageStatus::Pending);
    assert_eq!(pending.tags.get(TAG_PIPELINE), Some(&pipeline));
    // It is in the destination region only.
    assert_eq!(failure(east.image(&id).await).class, ErrorClass::NotFound);
    eventually("the copy to be available", async || {
        (west.image(&id).await.ok()?.status == ImageStatus::Available).then_some(())
    })
    .await;
    let copied = west.image(&id).await.unwrap();
    let original = east.image(&source).await.unwrap();
    assert_eq!(copied.root_device_name(), original.root_device_name());
    assert_eq!(copied.snapshot_size_gb(), original.snapshot_size_gb());
    let found = west
        .find_images(&tags(&[(TAG_PIPELINE, &pipeline)]))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    let missing = failure(
        west.copy_image(&ImageCopy {
            source_image: "ami-0123456789abcdef0".into(),
            client_token: unique_name("copy-token"),
            name: unique_name("copied"),
            ..copy.clone()
        })
        .await,
    );
    assert_eq!(
        (missing.class, missing.operation, missing.code.as_str()),
        (ErrorClass::NotFound, "CopyImage", "InvalidAMIID.NotFound")
    );
    let reused = failure(
        west.copy_image(&ImageCopy {
            name: unique_name("another-name"),
            ..copy.clone()
        })
        .await,
    );
    assert_eq!(reused.code, "IdempotentParameterMismatch");
}
