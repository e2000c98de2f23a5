//! The shipped IAM policies (docs/iam/) allow every AWS action the runner calls: each
//! operation the adapter names, and every call a whole rollout and a plan make.

use crate::apply_fake::{apply, configuration_fleet, template_fleet};
use crate::support::{crate_root, shipped_pipeline};
use red5_rollout::cloud::iam_action;
use std::collections::BTreeSet;

/// The actions a policy file allows, in any of its statements.
fn allowed(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(crate_root().join(file)).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{file}: {statement}");
        match &statement["Action"] {
            serde_json::Value::String(action) => {
                actions.insert(action.clone());
            }
            serde_json::Value::Array(list) => {
                actions.extend(list.iter().map(|a| a.as_str().unwrap().to_owned()));
            }
            other => panic!("{file}: an Action must be a string or a list: {other}"),
        }
    }
    actions
}

/// Every AWS operation src/cloud/aws.rs names: `const OP: &str = "…"` and
/// `.classified("…")`.
fn adapter_operations() -> BTreeSet<String> {
    let source = std::fs::read_to_string(crate_root().join("src/cloud/aws.rs")).unwrap();
    let mut operations = BTreeSet::new();
    let code = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"));
    for line in code {
        for marker in ["const OP: &str = \"", ".classified(\""] {
            for (at, _) in line.match_indices(marker) {
                let rest = &line[at + marker.len()..];
                let name = &rest[..rest.find('"').unwrap()];
                if name.chars().all(|c| c.is_ascii_alphanumeric()) {
                    operations.insert(name.to_owned());
                }
            }
        }
    }
    operations
}

fn missing(calls: impl IntoIterator<Item = String>, policy: &BTreeSet<String>) -> Vec<String> {
    calls
        .into_iter()
        .map(|op| iam_action(&op))
        .filter(|action| !policy.contains(action))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn the_apply_policy_allows_every_operation_the_adapter_calls() {
    let operations = adapter_operations();
    assert!(
        operations.len() > 25,
        "the scan found too few operations: {operations:?}"
    );
    let missing = missing(operations, &allowed("docs/iam/apply.json"));
    assert!(missing.is_empty(), "docs/iam/apply.json lacks {missing:?}");
}

#[tokio::test(start_paused = true)]
async fn the_apply_policy_allows_every_call_of_a_rollout_of_either_kind() {
    let policy = allowed("docs/iam/apply.json");
    for (cloud, pipeline) in [
        (template_fleet(), "stream-manager"),
        (configuration_fleet(), "stream-manager-legacy"),
    ] {
        let (end, _) = apply(&cloud, pipeline, "12.4.0").await;
        assert_eq!(
            end.result,
            red5_rollout::events::PipelineResult::Converged,
            "{}",
            end.message
        );
        let calls = cloud.calls().into_iter().map(str::to_owned);
        let missing = missing(calls, &policy);
        assert!(
            missing.is_empty(),
            "{pipeline}: apply.json lacks {missing:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_plan_policy_allows_every_call_of_plan_and_status() {
    let policy = allowed("docs/iam/plan.json");
    for (cloud, pipeline) in [
        (template_fleet(), "stream-manager"),
        (configuration_fleet(), "stream-manager-legacy"),
    ] {
        red5_rollout::observe::observe(cloud.as_ref(), &shipped_pipeline(pipeline))
            .await
            .unwrap();
        let calls = cloud.calls().into_iter().map(str::to_owned);
        let missing = missing(calls, &policy);
        assert!(
            missing.is_empty(),
            "{pipeline}: plan.json lacks {missing:?}"
        );
        let mutating = cloud.mutating_calls();
        assert!(
            mutating.is_empty(),
            "{pipeline}: plan mutates: {mutating:?}"
        );
    }
}

/// `preflight` (and `plan`, which runs it) reads every kind of fact: a subnet without a
/// public IP (its VPC's endpoints), a role whose policies are read one by one.
#[tokio::test(start_paused = true)]
async fn the_plan_policy_allows_every_call_of_preflight() {
    use red5_rollout::cloud::{Cloud, RolePolicies, Subnet};
    let policy = allowed("docs/iam/plan.json");
    let cloud = template_fleet();
    cloud.with_world(|w| {
        w.account.subnets.push(Subnet {
            id: "subnet-red5pro-sm-subnet-a".into(),
            vpc_id: "vpc-0fake".into(),
            maps_public_ip: false,
        });
        w.account.roles.insert(
            "red5pro-sm-builder".into(),
            RolePolicies {
                attached: vec!["arn:aws:iam::123456789012:policy/ssm-agent".into()],
                inline: vec!["inline".into()],
            },
        );
        w.account.inline_documents.insert(
            ("red5pro-sm-builder".into(), "inline".into()),
            r#"{"Statement":[]}"#.into(),
        );
        w.account.managed_documents.insert(
            "arn:aws:iam::123456789012:policy/ssm-agent".into(),
            r#"{"Statement":[]}"#.into(),
        );
    });
    let pipeline = shipped_pipeline("stream-manager");
    let group = cloud.group("red5pro-sm-asg").await.unwrap();
    let fleets = vec![red5_rollout::preflight::Fleet {
        pipeline: &pipeline,
        group,
        image_snapshot_gb: None,
    }];
    red5_rollout::preflight::gather(cloud.as_ref(), fleets)
        .await
        .unwrap();
    let calls: Vec<String> = cloud.calls().into_iter().map(str::to_owned).collect();
    for expected in ["DescribeVpcEndpoints", "GetRolePolicy", "GetPolicyVersion"] {
        assert!(calls.iter().any(|c| c == expected), "{calls:?}");
    }
    let missing = missing(calls, &policy);
    assert!(missing.is_empty(), "plan.json lacks {missing:?}");
    assert!(cloud.mutating_calls().is_empty());
}
