//! `preflight` against the emulator: the fleet the Red5 Pro guide builds passes, through the
//! real binary; each way of breaking it fails the one check that names it, with its fix; and
//! `plan` shows the failing check in one line.

use crate::emulator::{Emulator, Fleet, seeded, unique_name};
use crate::support::{git, release_text, shipped_repo};
use red5_rollout::cloud::Cloud;
use red5_rollout::cloud::aws::AwsCloud;
use red5_rollout::model::Pipeline;
use red5_rollout::preflight::{Report, gather};
use std::path::Path;
use std::process::{Command, Output};

fn red5_rollout(repo: &Path, endpoint: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_red5-rollout"))
        .args(args)
        .current_dir(repo)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("CI", "true")
        .env("RED5_ROLLOUT_AWS_CALLS_PER_SECOND", "100")
        .env_remove("RED5_ROLLOUT_REPO")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seeded_guide_fleet_passes_preflight() {
    let emulator = Emulator::shared().await;
    let repo = shipped_repo();
    let out = red5_rollout(repo.path(), emulator.endpoint(), &["preflight"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.ends_with(" 0 failed\n"), "{stdout}");
    for pipeline in [seeded::PIPELINE, seeded::LEGACY_PIPELINE] {
        assert!(stdout.contains(&format!("{pipeline}: group ")), "{stdout}");
    }
    for check in [
        "builder-ssm-permission",
        "builder-ssm-reachable",
        "subnets-match-load-balancer",
        "target-group",
        "health-check",
        "database-port",
        "volumes",
        "only-instance",
        "unique-streammanager-ip",
    ] {
        assert_eq!(
            stdout.matches(&format!("  pass {check}: ")).count(),
            2,
            "{check}: {stdout}"
        );
    }

    let json = red5_rollout(
        repo.path(),
        emulator.endpoint(),
        &["preflight", "stream-manager", "--format", "json"],
    );
    assert_eq!(json.status.code(), Some(0));
    let reports: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(reports[0]["pipeline"], "stream-manager");
    assert_eq!(reports[0]["checks"].as_array().unwrap().len(), 12);
}

/// A guide-built fleet of one instance for these tests, and its pipeline's text.
async fn guide_fleet(emulator: &Emulator, cloud: &AwsCloud, pipeline: &str) -> (Fleet, String) {
    let image = crate::e2e::base_image(cloud, emulator, pipeline).await;
    let fleet = emulator.guide_template_fleet(pipeline, 1, &image).await;
    let text =
        std::fs::read_to_string(crate::support::crate_root().join("pipelines/stream-manager.yaml"))
            .unwrap()
            .replace("name: stream-manager\n", &format!("name: {pipeline}\n"))
            .replace(
                "auto_scaling_group: red5pro-sm-asg",
                &format!("auto_scaling_group: {}", fleet.group),
            )
            .replace(
                "template: red5pro-sm\n",
                &format!("template: {}\n", fleet.template()),
            )
            .replace(
                "SM-red5pro-server-{{ version }}",
                "{{ pipeline }}-{{ version }}",
            );
    (fleet, text)
}

/// The checks of the pipeline `text` names, read through the SDK.
async fn preflight(cloud: &AwsCloud, name: &str, text: &str) -> Report {
    let pipeline = Pipeline::from_yaml(&format!("pipelines/{name}.yaml"), text).unwrap();
    let group = cloud.group(&pipeline.auto_scaling_group).await.unwrap();
    let fleets = vec![red5_rollout::preflight::Fleet {
        pipeline: &pipeline,
        group,
        image_snapshot_gb: None,
    }];
    let facts = gather(cloud, fleets).await.unwrap();
    Report::of(&facts[0])
}

fn failing(report: &Report) -> Vec<(&'static str, String)> {
    report
        .failures()
        .map(|c| (c.name, c.fix.clone().unwrap_or_default()))
        .collect()
}

/// How a test breaks the fleet, and how it puts it back.
enum Break {
    Subnets,
    HealthCheckEc2,
    Latest,
    OneInstance,
    NoDatabaseRule,
    NoSsmPermission,
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_fixture_fails_its_check_with_the_fix() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let name = unique_name("preflight");
    let (fleet, pipeline) = guide_fleet(&emulator, &cloud, &name).await;
    let report = preflight(&cloud, &name, &pipeline).await;
    assert_eq!(failing(&report), [], "{report:#?}");

    let autoscaling = emulator.autoscaling().await;
    let subnets = cloud.group(&fleet.group).await.unwrap().subnets;
    let update = || {
        autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&fleet.group)
    };
    let template = |version: &str| {
        aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
            .launch_template_name(fleet.template())
            .version(version)
            .build()
    };
    let table = [
        (
            Break::Subnets,
            "subnets-match-load-balancer",
            "--vpc-zone-identifier",
        ),
        (
            Break::HealthCheckEc2,
            "health-check",
            "--health-check-type ELB --health-check-grace-period 300",
        ),
        (Break::Latest, "version-alias", "Version=N"),
        (
            Break::OneInstance,
            "only-instance",
            "refresh.max_healthy_percentage: 200",
        ),
        (
            Break::NoDatabaseRule,
            "database-port",
            "--protocol tcp --port 3306 --source-group sg-",
        ),
        (
            Break::NoSsmPermission,
            "builder-ssm-permission",
            "--policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        ),
    ];
    for (broken, check, fix) in table {
        let mut text = pipeline.clone();
        match broken {
            Break::Subnets => {
                update()
                    .vpc_zone_identifier(&subnets[0])
                    .send()
                    .await
                    .unwrap();
            }
            Break::HealthCheckEc2 => {
                update().health_check_type("EC2").send().await.unwrap();
            }
            Break::Latest => {
                update()
                    .launch_template(template("$Latest"))
                    .send()
                    .await
                    .unwrap();
            }
            Break::OneInstance => {
                update().max_size(1).send().await.unwrap();
                text = text.replace("max_healthy_percentage: 200", "max_healthy_percentage: 100");
            }
            Break::NoDatabaseRule => {
                let security_group = no_database_security_group(&emulator, &cloud).await;
                text = text.replace(
                    "  security_groups: [red5pro-sm-sg]\n  key_pair: red5pro-sm-key\n  # public_ip",
                    &format!("  security_groups: [{security_group}]\n  key_pair: red5pro-sm-key\n  # public_ip"),
                );
            }
            Break::NoSsmPermission => {
                let profile = profile_without_ssm(&emulator).await;
                text = text.replace(
                    "instance_profile: red5pro-sm-builder",
                    &format!("instance_profile: {profile}"),
                );
            }
        }
        assert_ne!(
            matches!(
                broken,
                Break::NoDatabaseRule | Break::NoSsmPermission | Break::OneInstance
            ),
            text == pipeline,
            "{check}: the pipeline edit did not apply"
        );
        let report = preflight(&cloud, &name, &text).await;
        let failures = failing(&report);
        assert_eq!(failures.len(), 1, "{check}: {failures:?}");
        assert_eq!(failures[0].0, check);
        assert!(failures[0].1.contains(fix), "{check}: {}", failures[0].1);
        // Put the fleet back as the guide built it.
        update()
            .vpc_zone_identifier(subnets.join(","))
            .health_check_type("ELB")
            .launch_template(template("$Default"))
            .max_size(4)
            .send()
            .await
            .unwrap();
    }
    let report = preflight(&cloud, &name, &pipeline).await;
    assert_eq!(failing(&report), [], "{report:#?}");
}

/// A security group in the seeded VPC that no database admits.
async fn no_database_security_group(emulator: &Emulator, cloud: &AwsCloud) -> String {
    let vpc = cloud.subnet(seeded::SUBNETS[0]).await.unwrap().vpc_id;
    let name = unique_name("sm-without-db");
    emulator
        .ec2()
        .await
        .create_security_group()
        .group_name(&name)
        .description("Stream Managers nobody admitted to the database")
        .vpc_id(vpc)
        .send()
        .await
        .unwrap();
    name
}

/// An instance profile whose role may read S3 and nothing SSM needs.
async fn profile_without_ssm(emulator: &Emulator) -> String {
    let iam = emulator.iam().await;
    let name = unique_name("builder-without-ssm");
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    iam.create_role()
        .role_name(&name)
        .assume_role_policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    let s3 = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
    iam.put_role_policy()
        .role_name(&name)
        .policy_name("artifacts")
        .policy_document(s3.to_string())
        .send()
        .await
        .unwrap();
    iam.create_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(&name)
        .role_name(&name)
        .send()
        .await
        .unwrap();
    name
}

/// Through the binary: a group on `$Latest` fails `preflight` (exit 1, the failing line with
/// its fix), and `plan` shows that line without failing.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_check_exits_1_and_plan_shows_it_in_one_line() {
    let emulator = Emulator::shared().await;
    let cloud = emulator.cloud().await;
    let name = unique_name("preflight-cli");
    let (fleet, pipeline) = guide_fleet(&emulator, &cloud, &name).await;
    emulator
        .autoscaling()
        .await
        .update_auto_scaling_group()
        .auto_scaling_group_name(&fleet.group)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name(fleet.template())
                .version("$Latest")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(repo.path().join("releases")).unwrap();
    std::fs::write(
        repo.path().join(format!("pipelines/{name}.yaml")),
        &pipeline,
    )
    .unwrap();
    std::fs::write(
        repo.path().join("releases/12.3.0.yaml"),
        release_text("12.3.0"),
    )
    .unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "fleet on 12.3.0"]);
    let run = |args: &[&str]| red5_rollout(repo.path(), emulator.endpoint(), args);

    let out = run(&["preflight"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let fail_lines: Vec<&str> = stdout.lines().filter(|l| l.contains("FAIL")).collect();
    assert_eq!(fail_lines.len(), 1, "{stdout}");
    assert!(
        fail_lines[0].starts_with(&format!(
            "  FAIL version-alias: group {} launches its template's $Latest",
            fleet.group
        )) && fail_lines[0].contains(&format!(
            "; fix: pin the group to a version number: aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --launch-template LaunchTemplateName={},Version=N",
            fleet.group,
            fleet.template()
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with(" 1 failed\n"), "{stdout}");
    assert_eq!(
        text(&out.stderr),
        "error: 1 preflight check(s) fail (see the lines above)\n  hint: each FAIL line ends with its fix; apply them, then run preflight again\n"
    );

    let adopted = run(&["adopt", &name, "--version", "12.3.0", "--yes"]);
    assert_eq!(adopted.status.code(), Some(0), "{}", text(&adopted.stderr));
    let plan = run(&["plan"]);
    let stdout = text(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{stdout}{}",
        text(&plan.stderr)
    );
    let shown: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{name}: preflight ")))
        .collect();
    assert_eq!(shown.len(), 1, "{stdout}");
    assert!(
        shown[0].starts_with(&format!("{name}: preflight FAIL version-alias: ")),
        "{stdout}"
    );
}
