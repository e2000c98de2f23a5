//! The checks themselves: pure functions from [`PreflightFacts`] to [`Check`]s, one per
//! tip of the Red5 Pro guide or fact AWS documents, each with the fix when it does not
//! pass. Nothing here calls AWS.

use super::facts::{BuilderAccess, PreflightFacts};
use crate::cloud::{GroupConfig, IngressRule};
use crate::model::{HeldInstances, LaunchKind, MIN_VOLUME_GB};
use serde::Serialize;

/// The health check grace period the guide leaves at its default.
pub const MIN_GRACE_SECS: u32 = 300;
/// The port Stream Managers serve on, and the database's.
pub const STREAM_MANAGER_PORT: u16 = 5080;
pub const DATABASE_PORT: i32 = 3306;
/// What the SSM agent calls to receive a command (AmazonSSMManagedInstanceCore allows them).
pub const SSM_AGENT_ACTIONS: [&str; 3] = [
    "ssm:UpdateInstanceInformation",
    "ec2messages:GetMessages",
    "ssmmessages:OpenControlChannel",
];
/// The interface endpoints an instance without a public IP needs to reach SSM.
pub const SSM_ENDPOINTS: [&str; 3] = ["ssm", "ssmmessages", "ec2messages"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One check's outcome: what was found, and how to fix it when it does not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check, in the order the guide meets them.
pub fn check_all(facts: &PreflightFacts) -> Vec<Check> {
    vec![
        builder_ssm_permission(facts),
        builder_ssm_reachable(facts),
        subnets_match_load_balancer(facts),
        target_group(facts),
        health_check(facts),
        database_port(facts),
        volumes(facts),
        instance_protection(facts),
        only_instance(facts),
        launch_configuration(facts),
        version_alias(facts),
        unique_streammanager_ip(facts),
    ]
}

/// What a builder check says of a pipeline that runs no builder.
fn no_builder(name: &'static str, facts: &PreflightFacts) -> Check {
    Check::pass(
        name,
        format!(
            "no builder: the pipeline rolls out the images of {}",
            facts
                .pipeline
                .image
                .from_pipeline
                .as_ref()
                .map_or("another pipeline", |p| p.pipeline.as_str())
        ),
    )
}

pub fn builder_ssm_permission(facts: &PreflightFacts) -> Check {
    const NAME: &str = "builder-ssm-permission";
    let (Some(builder), Some(written)) = (&facts.builder, &facts.pipeline.builder) else {
        return no_builder(NAME, facts);
    };
    let profile = &written.instance_profile;
    let attach = |role: &str| {
        format!(
            "aws iam attach-role-policy --role-name {role} --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
        )
    };
    match &builder.access {
        BuilderAccess::NoProfile => Check::fail(
            NAME,
            format!("instance profile {profile} (builder.instance_profile) does not exist"),
            format!(
                "create it with a role that has AmazonSSMManagedInstanceCore: aws iam create-instance-profile --instance-profile-name {profile}, then aws iam add-role-to-instance-profile"
            ),
        ),
        BuilderAccess::NoRole => Check::fail(
            NAME,
            format!("instance profile {profile} holds no role"),
            format!(
                "aws iam add-role-to-instance-profile --instance-profile-name {profile} --role-name ROLE, with AmazonSSMManagedInstanceCore attached to ROLE"
            ),
        ),
        BuilderAccess::Role {
            name,
            managed_ssm_policy: Some(policy),
            ..
        } => Check::pass(NAME, format!("role {name} of {profile} has {policy}")),
        BuilderAccess::Role {
            name, documents, ..
        } => {
            let missing: Vec<&str> = SSM_AGENT_ACTIONS
                .iter()
                .copied()
                .filter(|action| !allows(documents, action))
                .collect();
            if missing.is_empty() {
                Check::pass(
                    NAME,
                    format!("role {name} of {profile} allows what the SSM agent calls"),
                )
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "role {name} of {profile} does not allow {}: the builder's SSM agent never comes online and the update cannot be sent",
                        missing.join(", ")
                    ),
                    attach(name),
                )
            }
        }
    }
}

/// Whether the policy documents allow `action` (and none denies it). Conditions and
/// resources are not evaluated: the SSM agent's actions apply to `*`.
fn allows(documents: &[String], action: &str) -> bool {
    let mut allowed = false;
    for document in documents {
        let Ok(policy) = serde_json::from_str::<serde_json::Value>(document) else {
            continue;
        };
        let statements = match &policy["Statement"] {
            serde_json::Value::Array(list) => list.clone(),
            single @ serde_json::Value::Object(_) => vec![single.clone()],
            _ => Vec::new(),
        };
        for statement in statements {
            let actions: Vec<&str> = match &statement["Action"] {
                serde_json::Value::String(one) => vec![one.as_str()],
                serde_json::Value::Array(list) => list.iter().filter_map(|a| a.as_str()).collect(),
                _ => Vec::new(),
            };
            if !actions
                .iter()
                .any(|pattern| matches_action(pattern, action))
            {
                continue;
            }
            match statement["Effect"].as_str() {
                Some("Allow") => allowed = true,
                Some("Deny") => return false,
                _ => {}
            }
        }
    }
    allowed
}

/// IAM's action matching: case-insensitive, `*` any run of characters, `?` one.
fn matches_action(pattern: &str, action: &str) -> bool {
    fn matches(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                matches(&pattern[1..], text) || (!text.is_empty() && matches(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => matches(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => matches(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), action.as_bytes())
}

pub fn builder_ssm_reachable(facts: &PreflightFacts) -> Check {
    const NAME: &str = "builder-ssm-reachable";
    let Some(builder) = &facts.builder else {
        return no_builder(NAME, facts);
    };
    let subnet = &builder.subnet;
    if subnet.maps_public_ip {
        return Check::pass(
            NAME,
            format!("builder subnet {} gives instances a public IP", subnet.id),
        );
    }
    let missing: Vec<&str> = SSM_ENDPOINTS
        .iter()
        .copied()
        .filter(|service| {
            !builder
                .vpc_endpoints
                .iter()
                .any(|name| name.rsplit('.').next() == Some(service))
        })
        .collect();
    if missing.is_empty() {
        return Check::pass(
            NAME,
            format!(
                "VPC {} has endpoints for ssm, ssmmessages and ec2messages",
                subnet.vpc_id
            ),
        );
    }
    Check::warn(
        NAME,
        format!(
            "builder subnet {} gives no public IP and VPC {} has no endpoint for {}: the builder reaches SSM only through a NAT gateway",
            subnet.id,
            subnet.vpc_id,
            missing.join(", ")
        ),
        format!(
            "use a public subnet (aws ec2 modify-subnet-attribute --subnet-id {} --map-public-ip-on-launch), or create interface endpoints com.amazonaws.{}.{{ssm,ssmmessages,ec2messages}}, unless a NAT gateway routes the subnet",
            subnet.id, facts.pipeline.region
        ),
    )
}

pub fn subnets_match_load_balancer(facts: &PreflightFacts) -> Check {
    const NAME: &str = "subnets-match-load-balancer";
    let group = &facts.group;
    if group.target_groups.is_empty() {
        return Check::warn(
            NAME,
            format!("group {} is attached to no target group", group.name),
            format!(
                "attach it to the load balancer's target group, as the guide does: aws autoscaling attach-load-balancer-target-groups --auto-scaling-group-name {} --target-group-arns ARN",
                group.name
            ),
        );
    }
    let mut theirs: Vec<&str> = facts
        .load_balancers
        .iter()
        .flat_map(|b| b.subnets.iter().map(String::as_str))
        .collect();
    theirs.sort_unstable();
    theirs.dedup();
    let mut ours: Vec<&str> = group.subnets.iter().map(String::as_str).collect();
    ours.sort_unstable();
    ours.dedup();
    let names: Vec<&str> = facts
        .load_balancers
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    if facts.load_balancers.is_empty() {
        return Check::warn(
            NAME,
            format!(
                "no load balancer routes to the target groups of group {}",
                group.name
            ),
            "add a listener on the application load balancer forwarding to the target group",
        );
    }
    if ours == theirs {
        return Check::pass(
            NAME,
            format!(
                "group {} uses the subnets of load balancer {} ({})",
                group.name,
                names.join(", "),
                ours.join(", ")
            ),
        );
    }
    Check::fail(
        NAME,
        format!(
            "group {} uses subnets {} but load balancer {} serves {}",
            group.name,
            ours.join(", "),
            names.join(", "),
            theirs.join(", ")
        ),
        format!(
            "make them match (the guide's tip): aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --vpc-zone-identifier {}",
            group.name,
            theirs.join(",")
        ),
    )
}

pub fn target_group(facts: &PreflightFacts) -> Check {
    const NAME: &str = "target-group";
    if facts.target_groups.is_empty() {
        return Check::warn(
            NAME,
            format!("group {} is attached to no target group", facts.group.name),
            "create a target group HTTP 5080 with health check path / (target type instance) and attach the group to it",
        );
    }
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    for tg in &facts.target_groups {
        let protocol = tg.protocol.as_deref().unwrap_or("none");
        let port = tg.port.map_or_else(|| "none".to_owned(), |p| p.to_string());
        if protocol != "HTTP" || tg.port != Some(STREAM_MANAGER_PORT) {
            problems.push(format!("{} serves {protocol} {port}", tg.name));
            fixes.push(format!(
                "a target group's protocol and port cannot change: create one on HTTP 5080 (health check path /) and attach the group to it instead of {}",
                tg.name
            ));
        }
        let path = tg.health_check_path.as_deref().unwrap_or("none");
        if tg.health_check_protocol.as_deref() != Some("HTTP") || path != "/" {
            problems.push(format!(
                "{} checks health with {} path {path}",
                tg.name,
                tg.health_check_protocol.as_deref().unwrap_or("none")
            ));
            fixes.push(format!(
                "aws elbv2 modify-target-group --target-group-arn {} --health-check-protocol HTTP --health-check-path /",
                tg.arn
            ));
        }
    }
    let names: Vec<&str> = facts
        .target_groups
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    if problems.is_empty() {
        Check::pass(
            NAME,
            format!(
                "{} serves HTTP 5080 with health check path /",
                names.join(", ")
            ),
        )
    } else {
        Check::fail(NAME, problems.join("; "), fixes.join("; "))
    }
}

pub fn health_check(facts: &PreflightFacts) -> Check {
    const NAME: &str = "health-check";
    let group = &facts.group;
    let fix = format!(
        "aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --health-check-type ELB --health-check-grace-period {}",
        group.name,
        group.health_check_grace_period.max(MIN_GRACE_SECS)
    );
    if group.health_check_type != "ELB" {
        return Check::fail(
            NAME,
            format!(
                "group {} checks {} health only: an instance whose Stream Manager does not answer on 5080 stays in service, and a refresh counts it healthy",
                group.name, group.health_check_type
            ),
            fix,
        );
    }
    if group.health_check_grace_period < MIN_GRACE_SECS {
        return Check::fail(
            NAME,
            format!(
                "group {} gives new instances {} s before its ELB health check counts; Red5 Pro takes about 180 s to start and the guide keeps 300 s",
                group.name, group.health_check_grace_period
            ),
            fix,
        );
    }
    Check::pass(
        NAME,
        format!(
            "group {} uses ELB health checks with a {} s grace period",
            group.name, group.health_check_grace_period
        ),
    )
}

pub fn database_port(facts: &PreflightFacts) -> Check {
    const NAME: &str = "database-port";
    let fleet = facts.fleet_security_groups.join(", ");
    let admitting: Vec<&IngressRule> = facts
        .ingress
        .iter()
        .filter(|rule| rule.admits_tcp(DATABASE_PORT))
        .collect();
    match admitting.as_slice() {
        [] => Check::fail(
            NAME,
            format!(
                "no security group admits the Stream Managers' ({fleet}) on 3306: they cannot reach the database"
            ),
            format!(
                "aws ec2 authorize-security-group-ingress --group-id DATABASE_SG --protocol tcp --port 3306 --source-group {}",
                facts
                    .fleet_security_groups
                    .first()
                    .map_or("SM_SG", String::as_str)
            ),
        ),
        rules => {
            let mut groups: Vec<String> = rules
                .iter()
                .map(|r| format!("{} ({})", r.group_name, r.group_id))
                .collect();
            groups.dedup();
            Check::pass(
                NAME,
                format!("{} admits {fleet} on 3306", groups.join(", ")),
            )
        }
    }
}

pub fn volumes(facts: &PreflightFacts) -> Check {
    const NAME: &str = "volumes";
    let launch = facts.pipeline.launch.volume_size_gb;
    let builder = facts.pipeline.builder.as_ref().map(|b| b.volume_size_gb);
    let smallest = builder.map_or(launch, |b| launch.min(b));
    if i64::from(smallest) < MIN_VOLUME_GB {
        return Check::fail(
            NAME,
            format!("volumes of {smallest} GB: the guide asks for at least 16 GB"),
            if builder.is_some() {
                "set launch.volume_size_gb and builder.volume_size_gb to at least 16"
            } else {
                "set launch.volume_size_gb to at least 16"
            },
        );
    }
    if let Some(snapshot) = facts.image_snapshot_gb
        && snapshot > launch
    {
        return Check::fail(
            NAME,
            format!(
                "launch.volume_size_gb is {launch} GB but the fleet's image has a {snapshot} GB root snapshot: AWS fails every launch (InvalidBlockDeviceMapping)"
            ),
            format!("set launch.volume_size_gb to at least {snapshot}"),
        );
    }
    let image = facts
        .image_snapshot_gb
        .map_or_else(String::new, |gb| format!(", the image's snapshot {gb} GB"));
    let builder = builder.map_or_else(String::new, |gb| format!(", builder {gb} GB"));
    Check::pass(NAME, format!("fleet {launch} GB{builder}{image}"))
}

pub fn instance_protection(facts: &PreflightFacts) -> Check {
    const NAME: &str = "instance-protection";
    let group = &facts.group;
    let preference = facts.pipeline.refresh.scale_in_protected_instances;
    if !group.protects_instances() {
        return Check::warn(
            NAME,
            format!(
                "group {} does not protect its instances from scale-in",
                group.name
            ),
            format!(
                "with WebRTC, the guide asks for it: aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --new-instances-protected-from-scale-in, and set refresh.scale_in_protected_instances: Refresh",
                group.name
            ),
        );
    }
    match preference {
        HeldInstances::Refresh => Check::pass(
            NAME,
            format!(
                "group {} protects its instances and the refresh replaces them (scale_in_protected_instances: Refresh)",
                group.name
            ),
        ),
        HeldInstances::Ignore => Check::warn(
            NAME,
            format!(
                "group {} protects its instances and the refresh leaves them on the old release (scale_in_protected_instances: Ignore)",
                group.name
            ),
            "set refresh.scale_in_protected_instances: Refresh to replace them too",
        ),
        HeldInstances::Wait => Check::fail(
            NAME,
            format!(
                "group {} protects its instances and the refresh waits for them (scale_in_protected_instances: Wait, AWS's default): it fails after an hour",
                group.name
            ),
            "set refresh.scale_in_protected_instances: Refresh in the pipeline",
        ),
    }
}

pub fn only_instance(facts: &PreflightFacts) -> Check {
    const NAME: &str = "only-instance";
    let group = &facts.group;
    let refresh = &facts.pipeline.refresh;
    let is_single = group.desired_capacity <= 1 || group.max_size <= 1;
    if is_single && refresh.max_healthy_percentage <= 100 {
        return Check::fail(
            NAME,
            format!(
                "group {} runs {} instance(s) (min {}, max {}) and refresh.max_healthy_percentage is {}: the refresh terminates the only Stream Manager before its replacement runs",
                group.name,
                group.desired_capacity,
                group.min_size,
                group.max_size,
                refresh.max_healthy_percentage
            ),
            "set refresh.min_healthy_percentage: 100 and refresh.max_healthy_percentage: 200 (launch before terminating)",
        );
    }
    Check::pass(
        NAME,
        format!(
            "{} instance(s), min healthy {} %, max healthy {} %",
            group.desired_capacity, refresh.min_healthy_percentage, refresh.max_healthy_percentage
        ),
    )
}

pub fn launch_configuration(facts: &PreflightFacts) -> Check {
    const NAME: &str = "launch-configuration";
    let on_configuration = facts.pipeline.launch.kind() == LaunchKind::Configuration
        || matches!(facts.group.config, GroupConfig::Configuration { .. });
    if !on_configuration {
        return Check::pass(NAME, "the group launches from a launch template");
    }
    Check::warn(
        NAME,
        format!(
            "group {} rolls out with launch configurations: accounts created since 2024-10-01 cannot create them (UnsupportedOperation), and they get no instance types newer than 2023",
            facts.group.name
        ),
        "move to a launch template: copy the configuration into one (console: Launch configurations, Copy to launch template; or aws ec2 create-launch-template), point the group at its version number, then set launch.kind: template and launch.template: NAME in the pipeline",
    )
}

pub fn version_alias(facts: &PreflightFacts) -> Check {
    const NAME: &str = "version-alias";
    let group = &facts.group;
    match group.config.version_alias() {
        Some("$Latest") => Check::fail(
            NAME,
            format!(
                "group {} launches its template's $Latest: every new version goes live at the next scale-out, before any refresh, and AWS cannot roll a refresh back",
                group.name
            ),
            format!(
                "pin the group to a version number: aws autoscaling update-auto-scaling-group --auto-scaling-group-name {} --launch-template LaunchTemplateName={},Version=N (apply also does it first)",
                group.name,
                template_name(&group.config)
            ),
        ),
        Some(alias) => Check::warn(
            NAME,
            format!(
                "group {} launches its template's {alias}: AWS cannot roll a refresh back from an alias",
                group.name
            ),
            "apply pins the group to the number it stands for before the refresh (the plan says so); or pin it now with aws autoscaling update-auto-scaling-group --launch-template ...,Version=N",
        ),
        None => Check::pass(
            NAME,
            match &group.config {
                GroupConfig::Template { version, .. } => {
                    format!("group {} launches template version {version}", group.name)
                }
                _ => format!("group {} names no template alias", group.name),
            },
        ),
    }
}

fn template_name(config: &GroupConfig) -> &str {
    match config {
        GroupConfig::Template { name, .. } => name,
        _ => "NAME",
    }
}

/// Text in user data that yields a different value on each instance.
const PER_INSTANCE_SOURCES: [&str; 9] = [
    "/dev/urandom",
    "$RANDOM",
    "uuidgen",
    "/proc/sys/kernel/random/uuid",
    "169.254.169.254",
    "ec2-metadata",
    "local-ipv4",
    "instance-id",
    "hostname",
];

pub fn unique_streammanager_ip(facts: &PreflightFacts) -> Check {
    const NAME: &str = "unique-streammanager-ip";
    // What the script runs, not what its comments say.
    let user_data: String = facts
        .pipeline
        .launch
        .user_data
        .source()
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let guide = "add the guide's lines to launch.user_data: uid=$(cat /dev/urandom | tr -dc 'a-zA-Z0-9' | fold -w 16 | head -n 1); sed -i \"s/\\(streammanager\\.ip=\\).*\\$/\\1${uid}.com/\" /usr/local/red5pro/webapps/streammanager/WEB-INF/red5-web.properties";
    if !user_data.contains("streammanager.ip") && !user_data.contains("streammanager\\.ip") {
        return Check::fail(
            NAME,
            "launch.user_data does not set streammanager.ip: Stream Managers behind one load balancer need a unique one each",
            guide,
        );
    }
    match PER_INSTANCE_SOURCES
        .iter()
        .find(|source| user_data.contains(*source))
    {
        Some(source) => Check::pass(
            NAME,
            format!("launch.user_data sets streammanager.ip from {source}"),
        ),
        None => Check::warn(
            NAME,
            "launch.user_data sets streammanager.ip, but from nothing that differs between instances",
            guide,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_match_as_iam_matches_them() {
        let table = [
            (
                "ssm:UpdateInstanceInformation",
                "ssm:UpdateInstanceInformation",
                true,
            ),
            (
                "SSM:updateinstanceinformation",
                "ssm:UpdateInstanceInformation",
                true,
            ),
            ("ssm:*", "ssm:UpdateInstanceInformation", true),
            ("*", "ec2messages:GetMessages", true),
            ("ssm:Update*", "ssm:UpdateInstanceInformation", true),
            ("ssm:Get*", "ssm:UpdateInstanceInformation", false),
            ("ec2messages:GetMessage?", "ec2messages:GetMessages", true),
            ("ssmmessages:*", "ssm:UpdateInstanceInformation", false),
            ("s3:*", "ssm:UpdateInstanceInformation", false),
        ];
        for (pattern, action, expected) in table {
            assert_eq!(
                matches_action(pattern, action),
                expected,
                "{pattern} {action}"
            );
        }
    }

    #[test]
    fn documents_allow_unless_a_statement_denies() {
        let allow_all = r#"{"Statement":[{"Effect":"Allow","Action":["ssm:*","ec2messages:*","ssmmessages:*"],"Resource":"*"}]}"#;
        let single = r#"{"Statement":{"Effect":"Allow","Action":"ssm:UpdateInstanceInformation","Resource":"*"}}"#;
        let deny = r#"{"Statement":[{"Effect":"Deny","Action":"ssm:*","Resource":"*"}]}"#;
        let table: [(&[&str], bool); 5] = [
            (&[allow_all], true),
            (&[single], true),
            (&[allow_all, deny], false),
            (&["not json"], false),
            (&[], false),
        ];
        for (documents, expected) in table {
            let documents: Vec<String> = documents.iter().map(|d| (*d).to_owned()).collect();
            assert_eq!(
                allows(&documents, "ssm:UpdateInstanceInformation"),
                expected,
                "{documents:?}"
            );
        }
    }

    use crate::cloud::{Group, GroupConfig, IngressRule, LoadBalancer, Subnet, Tags, TargetGroup};
    use crate::model::Pipeline;
    use crate::preflight::facts::{BuilderAccess, BuilderFacts, PreflightFacts};

    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/red5pro-sm-tg/1";
    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/red5pro-sm-alb/1";

    fn pipeline(name: &str) -> Pipeline {
        let text = match name {
            "stream-manager" => include_str!("../../pipelines/stream-manager.yaml"),
            _ => include_str!("../../pipelines/stream-manager-legacy.yaml"),
        };
        Pipeline::from_yaml(&format!("pipelines/{name}.yaml"), text).expect("shipped pipeline")
    }

    fn edited(name: &str, old: &str, new: &str) -> Pipeline {
        let text = match name {
            "stream-manager" => include_str!("../../pipelines/stream-manager.yaml"),
            _ => include_str!("../../pipelines/stream-manager-legacy.yaml"),
        };
        assert!(text.contains(old), "{old}");
        Pipeline::from_yaml(&format!("pipelines/{name}.yaml"), &text.replace(old, new))
            .expect("edited pipeline")
    }

    /// The fleet the Red5 Pro guide builds, for the shipped stream-manager pipeline.
    fn guide() -> PreflightFacts {
        PreflightFacts {
            pipeline: pipeline("stream-manager"),
            group: Group {
                name: "red5pro-sm-asg".into(),
                min_size: 1,
                max_size: 4,
                desired_capacity: 2,
                config: GroupConfig::Template {
                    id: "lt-1".into(),
                    name: "red5pro-sm".into(),
                    version: "$Default".into(),
                },
                subnets: vec!["subnet-b".into(), "subnet-a".into()],
                target_groups: vec![TG.into()],
                health_check_type: "ELB".into(),
                health_check_grace_period: 300,
                instances: Vec::new(),
                tags: Tags::new(),
                new_instances_protected: true,
            },
            target_groups: vec![TargetGroup {
                arn: TG.into(),
                name: "red5pro-sm-tg".into(),
                protocol: Some("HTTP".into()),
                port: Some(5080),
                health_check_protocol: Some("HTTP".into()),
                health_check_path: Some("/".into()),
                load_balancers: vec![LB.into()],
            }],
            load_balancers: vec![LoadBalancer {
                arn: LB.into(),
                name: "red5pro-sm-alb".into(),
                subnets: vec!["subnet-a".into(), "subnet-b".into()],
            }],
            fleet_security_groups: vec!["sg-sm".into()],
            ingress: vec![IngressRule {
                group_id: "sg-db".into(),
                group_name: "red5pro-db-sg".into(),
                protocol: "tcp".into(),
                from_port: Some(3306),
                to_port: Some(3306),
                sources: vec!["sg-sm".into()],
            }],
            builder: Some(BuilderFacts {
                subnet: Subnet {
                    id: "subnet-a".into(),
                    vpc_id: "vpc-1".into(),
                    maps_public_ip: true,
                },
                vpc_endpoints: Vec::new(),
                access: BuilderAccess::Role {
                    name: "red5pro-sm-builder".into(),
                    managed_ssm_policy: Some("AmazonSSMManagedInstanceCore".into()),
                    documents: Vec::new(),
                },
            }),
            image_snapshot_gb: Some(8),
        }
    }

    #[test]
    fn a_promoting_pipeline_has_no_builder_to_check() {
        let mut facts = guide();
        facts.builder = None;
        facts.pipeline.builder = None;
        facts.pipeline.update = None;
        facts.pipeline.image.from_pipeline = Some(crate::model::Promotion {
            pipeline: "stream-manager-staging".into(),
            group: "staging-asg".into(),
            region: "eu-west-1".into(),
        });
        for check in [
            builder_ssm_permission(&facts),
            builder_ssm_reachable(&facts),
        ] {
            assert_eq!(check.verdict, Verdict::Pass, "{check:?}");
            assert_eq!(
                check.detail,
                "no builder: the pipeline rolls out the images of stream-manager-staging"
            );
        }
        let volumes = volumes(&facts);
        assert_eq!(
            (volumes.verdict, volumes.detail.as_str()),
            (Verdict::Pass, "fleet 16 GB, the image's snapshot 8 GB")
        );
    }

    #[test]
    fn the_guide_built_fleet_passes_every_check_but_its_default_alias() {
        let checks = check_all(&guide());
        let not_passing: Vec<(&str, Verdict)> = checks
            .iter()
            .filter(|c| c.verdict != Verdict::Pass)
            .map(|c| (c.name, c.verdict))
            .collect();
        assert_eq!(not_passing, [("version-alias", Verdict::Warn)]);
        assert_eq!(checks.len(), 12);
    }

    type Edit = fn(&mut PreflightFacts);

    #[test]
    fn each_broken_fact_gives_its_verdict_and_fix() {
        let table: Vec<(&str, Edit, &str, Verdict, &str)> = vec![
            (
                "no profile",
                |f| f.builder.as_mut().unwrap().access = BuilderAccess::NoProfile,
                "builder-ssm-permission",
                Verdict::Fail,
                "aws iam create-instance-profile",
            ),
            (
                "no role",
                |f| f.builder.as_mut().unwrap().access = BuilderAccess::NoRole,
                "builder-ssm-permission",
                Verdict::Fail,
                "add-role-to-instance-profile",
            ),
            (
                "no SSM policy",
                |f| {
                    f.builder.as_mut().unwrap().access = BuilderAccess::Role {
                        name: "r".into(),
                        managed_ssm_policy: None,
                        documents: vec![
                            r#"{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
                                .into(),
                        ],
                    }
                },
                "builder-ssm-permission",
                Verdict::Fail,
                "aws iam attach-role-policy --role-name r --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
            ),
            (
                "an equivalent inline policy",
                |f| {
                    f.builder.as_mut().unwrap().access = BuilderAccess::Role {
                name: "r".into(), managed_ssm_policy: None,
                documents: vec![r#"{"Statement":[{"Effect":"Allow","Action":["ssm:*","ec2messages:*","ssmmessages:*"],"Resource":"*"}]}"#.into()],
            }
                },
                "builder-ssm-permission",
                Verdict::Pass,
                "",
            ),
            (
                "private subnet",
                |f| f.builder.as_mut().unwrap().subnet.maps_public_ip = false,
                "builder-ssm-reachable",
                Verdict::Warn,
                "--map-public-ip-on-launch",
            ),
            (
                "private subnet with endpoints",
                |f| {
                    f.builder.as_mut().unwrap().subnet.maps_public_ip = false;
                    f.builder.as_mut().unwrap().vpc_endpoints =
                        ["ssm", "ssmmessages", "ec2messages"]
                            .iter()
                            .map(|s| format!("com.amazonaws.us-east-1.{s}"))
                            .collect();
                },
                "builder-ssm-reachable",
                Verdict::Pass,
                "",
            ),
            (
                "wrong subnets",
                |f| f.group.subnets = vec!["subnet-a".into()],
                "subnets-match-load-balancer",
                Verdict::Fail,
                "--vpc-zone-identifier subnet-a,subnet-b",
            ),
            (
                "no target group",
                |f| {
                    f.group.target_groups.clear();
                    f.target_groups.clear();
                    f.load_balancers.clear();
                },
                "subnets-match-load-balancer",
                Verdict::Warn,
                "attach-load-balancer-target-groups",
            ),
            (
                "port 80",
                |f| f.target_groups[0].port = Some(80),
                "target-group",
                Verdict::Fail,
                "create one on HTTP 5080",
            ),
            (
                "health path",
                |f| f.target_groups[0].health_check_path = Some("/live".into()),
                "target-group",
                Verdict::Fail,
                "--health-check-path /",
            ),
            (
                "health check EC2",
                |f| f.group.health_check_type = "EC2".into(),
                "health-check",
                Verdict::Fail,
                "--health-check-type ELB --health-check-grace-period 300",
            ),
            (
                "short grace",
                |f| f.group.health_check_grace_period = 60,
                "health-check",
                Verdict::Fail,
                "--health-check-grace-period 300",
            ),
            (
                "no 3306 rule",
                |f| f.ingress.clear(),
                "database-port",
                Verdict::Fail,
                "--protocol tcp --port 3306 --source-group sg-sm",
            ),
            (
                "a port range",
                |f| {
                    f.ingress[0].from_port = Some(3000);
                    f.ingress[0].to_port = Some(4000);
                },
                "database-port",
                Verdict::Pass,
                "",
            ),
            (
                "another port",
                |f| {
                    f.ingress[0].from_port = Some(5432);
                    f.ingress[0].to_port = Some(5432);
                },
                "database-port",
                Verdict::Fail,
                "--port 3306",
            ),
            (
                "all traffic",
                |f| {
                    f.ingress[0].protocol = "-1".into();
                    f.ingress[0].from_port = None;
                    f.ingress[0].to_port = None;
                },
                "database-port",
                Verdict::Pass,
                "",
            ),
            (
                "a snapshot over the volume",
                |f| f.image_snapshot_gb = Some(30),
                "volumes",
                Verdict::Fail,
                "launch.volume_size_gb to at least 30",
            ),
            (
                "unprotected",
                |f| f.group.new_instances_protected = false,
                "instance-protection",
                Verdict::Warn,
                "--new-instances-protected-from-scale-in",
            ),
            (
                "protected, refresh waits",
                |f| {
                    f.pipeline = edited(
                        "stream-manager",
                        "scale_in_protected_instances: Refresh",
                        "scale_in_protected_instances: Wait",
                    )
                },
                "instance-protection",
                Verdict::Fail,
                "scale_in_protected_instances: Refresh",
            ),
            (
                "1/1/1 with max 100",
                |f| {
                    (f.group.min_size, f.group.max_size, f.group.desired_capacity) = (1, 1, 1);
                    f.pipeline = edited(
                        "stream-manager",
                        "max_healthy_percentage: 200",
                        "max_healthy_percentage: 100",
                    );
                },
                "only-instance",
                Verdict::Fail,
                "max_healthy_percentage: 200",
            ),
            (
                "1/1/1 with max 200",
                |f| (f.group.min_size, f.group.max_size, f.group.desired_capacity) = (1, 1, 1),
                "only-instance",
                Verdict::Pass,
                "",
            ),
            (
                "launch configuration",
                |f| {
                    f.pipeline = pipeline("stream-manager-legacy");
                    f.group.config = GroupConfig::Configuration {
                        name: "SM-LC".into(),
                    };
                },
                "launch-configuration",
                Verdict::Warn,
                "Copy to launch template",
            ),
            (
                "$Latest",
                |f| {
                    f.group.config = GroupConfig::Template {
                        id: "lt-1".into(),
                        name: "red5pro-sm".into(),
                        version: "$Latest".into(),
                    }
                },
                "version-alias",
                Verdict::Fail,
                "LaunchTemplateName=red5pro-sm,Version=N",
            ),
            (
                "a version number",
                |f| {
                    f.group.config = GroupConfig::Template {
                        id: "lt-1".into(),
                        name: "red5pro-sm".into(),
                        version: "3".into(),
                    }
                },
                "version-alias",
                Verdict::Pass,
                "",
            ),
            (
                "no streammanager.ip",
                |f| {
                    f.pipeline = edited(
                        "stream-manager",
                        "sed -i \"s/\\(streammanager\\.ip=\\).*\\$/\\1${smhost}/\" /usr/local/red5pro/webapps/streammanager/WEB-INF/red5-web.properties",
                        "true",
                    )
                },
                "unique-streammanager-ip",
                Verdict::Fail,
                "/dev/urandom",
            ),
            (
                "a constant streammanager.ip",
                |f| {
                    f.pipeline = edited(
                        "stream-manager",
                        "uid=$(cat /dev/urandom | tr -dc 'a-zA-Z0-9' | fold -w 16 | head -n 1 | tr '[:upper:]' '[:lower:]')",
                        "uid=sm1",
                    )
                },
                "unique-streammanager-ip",
                Verdict::Warn,
                "/dev/urandom",
            ),
        ];
        for (case, edit, name, verdict, fix) in table {
            let mut facts = guide();
            edit(&mut facts);
            let checks = check_all(&facts);
            let check = checks.iter().find(|c| c.name == name).expect(name);
            assert_eq!(check.verdict, verdict, "{case}: {check:?}");
            match verdict {
                Verdict::Pass => assert_eq!(check.fix, None, "{case}"),
                _ => assert!(
                    check.fix.as_deref().is_some_and(|f| f.contains(fix)),
                    "{case}: {check:?}"
                ),
            }
            let others_failing: Vec<&str> = checks
                .iter()
                .filter(|c| c.name != name && c.verdict == Verdict::Fail)
                .map(|c| c.name)
                .collect();
            assert!(
                others_failing.is_empty(),
                "{case}: also fails {others_failing:?}"
            );
        }
    }
}
