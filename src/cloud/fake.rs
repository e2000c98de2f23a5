//! An in-memory [`Cloud`] for fast tests of the stages and the run: resources change state
//! after fixed delays on tokio's clock (so paused-time tests run instantly), every call is
//! counted, and any call can be made to fail once with a chosen error.
//!
//! It models only what the runner relies on; the real AWS behaviour is tested against the
//! emulator through [`super::aws::AwsCloud`].

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long each kind of change takes on the fake's clock.
#[derive(Debug, Clone, Copy)]
pub struct Delays {
    pub instance_running: Duration,
    pub ssm_online: Duration,
    pub command: Duration,
    pub instance_stop: Duration,
    pub image_available: Duration,
    pub refresh_batch: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            instance_running: Duration::from_secs(20),
            ssm_online: Duration::from_secs(10),
            command: Duration::from_secs(30),
            instance_stop: Duration::from_secs(15),
            image_available: Duration::from_secs(60),
            refresh_batch: Duration::from_secs(180),
        }
    }
}

#[derive(Debug, Clone)]
struct FakeInstance {
    client_token: Option<String>,
    state: InstanceState,
    since: Instant,
    image_id: String,
    tags: Tags,
}

#[derive(Debug, Clone)]
struct FakeImage {
    name: String,
    created: Instant,
    fails: Option<String>,
    tags: Tags,
}

#[derive(Debug, Clone)]
struct FakeCommand {
    instance: String,
    comment: String,
    sent: Instant,
    result: CommandResult,
}

#[derive(Debug, Clone)]
struct FakeRefresh {
    id: String,
    started: Instant,
    spec: RefreshSpec,
    previous: GroupConfig,
    target: GroupConfig,
    ended: Option<(RefreshStatus, u8)>,
    fail_at: Option<u8>,
    /// How the refresh ends when it fails (AWS's own choice: rolled back with AutoRollback,
    /// else Failed), unless a test says otherwise.
    fails_as: Option<RefreshStatus>,
}

/// The rest of the account, as `preflight` reads it: by default what the Red5 Pro guide
/// builds around the group (an application load balancer in the group's subnet, its target
/// group on HTTP 5080 with health check `/`, a database security group admitting the fleet's
/// on 3306, and a builder profile with AmazonSSMManagedInstanceCore).
#[derive(Debug, Clone)]
pub struct Account {
    pub target_groups: Vec<TargetGroup>,
    pub load_balancers: Vec<LoadBalancer>,
    pub subnets: Vec<Subnet>,
    pub vpc_endpoints: Vec<(String, String)>,
    pub ingress: Vec<IngressRule>,
    /// Instance profiles and their roles.
    pub profiles: BTreeMap<String, Vec<String>>,
    pub roles: BTreeMap<String, RolePolicies>,
    /// Inline policy documents by (role, policy), managed ones by ARN.
    pub inline_documents: BTreeMap<(String, String), String>,
    pub managed_documents: BTreeMap<String, String>,
}

pub const FAKE_TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/red5pro-sm-tg/0fake";
const FAKE_LOAD_BALANCER: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/red5pro-sm-alb/0fake";

impl Default for Account {
    fn default() -> Self {
        Account {
            target_groups: vec![TargetGroup {
                arn: FAKE_TARGET_GROUP.into(),
                name: "red5pro-sm-tg".into(),
                protocol: Some("HTTP".into()),
                port: Some(5080),
                health_check_protocol: Some("HTTP".into()),
                health_check_path: Some("/".into()),
                load_balancers: vec![FAKE_LOAD_BALANCER.into()],
            }],
            load_balancers: vec![LoadBalancer {
                arn: FAKE_LOAD_BALANCER.into(),
                name: "red5pro-sm-alb".into(),
                subnets: vec!["subnet-0fake".into()],
            }],
            subnets: Vec::new(),
            vpc_endpoints: Vec::new(),
            ingress: vec![IngressRule {
                group_id: "sg-0db".into(),
                group_name: "red5pro-db-sg".into(),
                protocol: "tcp".into(),
                from_port: Some(3306),
                to_port: Some(3306),
                sources: vec!["sg-red5pro-sm-sg".into()],
            }],
            profiles: BTreeMap::from([(
                "red5pro-sm-builder".to_owned(),
                vec!["red5pro-sm-builder".to_owned()],
            )]),
            roles: BTreeMap::from([(
                "red5pro-sm-builder".to_owned(),
                RolePolicies {
                    attached: vec![
                        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".to_owned(),
                    ],
                    inline: Vec::new(),
                },
            )]),
            inline_documents: BTreeMap::new(),
            managed_documents: BTreeMap::new(),
        }
    }
}

/// The mutable world behind the fake.
#[derive(Debug)]
pub struct World {
    pub delays: Delays,
    pub group: Group,
    pub account: Account,
    instances: BTreeMap<String, FakeInstance>,
    images: BTreeMap<String, FakeImage>,
    /// CopyImage's client tokens, with the copy each made.
    copies: HashMap<String, String>,
    /// Launch template versions of the group's template, by number.
    pub template_versions: Vec<LaunchConfig>,
    pub launch_configurations: Vec<LaunchConfig>,
    commands: HashMap<String, FakeCommand>,
    refreshes: Vec<FakeRefresh>,
    /// Snapshots deleted so far (every image has one, named after it: [`snapshot_of`]).
    deleted_snapshots: std::collections::BTreeSet<String>,
    parameters: HashMap<String, String>,
    /// Every call, in order, by operation name.
    pub calls: Vec<&'static str>,
    failures: HashMap<&'static str, CloudError>,
    next_command_fails: Option<(String, i32)>,
    next_image_fails: Option<String>,
    refresh_fails_at: Option<u8>,
    refresh_fails_as: Option<RefreshStatus>,
    /// The template's default version number.
    pub default_version: u64,
    counter: u64,
    /// When the world was made: the fake's clock reads [`EPOCH`] then.
    origin: Instant,
    /// Calls per pipeline, as the AWS adapter counts them.
    ledger: super::meter::Ledger,
}

/// What the fake's clock reads (seconds since the Unix epoch) when its world is made.
const EPOCH: i64 = 1_795_000_000;

impl World {
    /// An instant as AWS gives times: seconds since the Unix epoch.
    fn clock(&self, at: Instant) -> i64 {
        EPOCH + i64::try_from((at - self.origin).as_secs()).unwrap_or(i64::MAX - EPOCH)
    }
}

/// An in-memory cloud with one Auto Scaling group.
pub struct FakeCloud {
    world: Mutex<World>,
}

/// Operations that change something, for "a second run makes no mutating call".
pub const MUTATING: &[&str] = &[
    "RunInstances",
    "SendCommand",
    "StopInstances",
    "TerminateInstances",
    "CreateTags",
    "CreateImage",
    "CopyImage",
    "CreateLaunchTemplateVersion",
    "CreateLaunchConfiguration",
    "UpdateAutoScalingGroup",
    "CreateOrUpdateTags",
    "StartInstanceRefresh",
    "CancelInstanceRefresh",
    "RollbackInstanceRefresh",
    "PutParameter",
    "DeleteParameter",
    "DeregisterImage",
    "DeleteSnapshot",
    "DeleteLaunchTemplateVersions",
    "DeleteLaunchConfiguration",
];

impl FakeCloud {
    /// A group `group` of `capacity` instances on launch template `template` version 1, which
    /// launches `image_id`, tagged as running `version` for `pipeline`.
    pub fn with_template_group(
        group: &str,
        template: &str,
        image_id: &str,
        pipeline: &str,
        version: &str,
        capacity: u32,
    ) -> Self {
        let config = GroupConfig::Template {
            id: "lt-0fake".into(),
            name: template.into(),
            version: "1".into(),
        };
        Self::with_group(group, config, image_id, pipeline, version, capacity)
    }

    /// The same with launch configuration `configuration`.
    pub fn with_configuration_group(
        group: &str,
        configuration: &str,
        image_id: &str,
        pipeline: &str,
        version: &str,
        capacity: u32,
    ) -> Self {
        let config = GroupConfig::Configuration {
            name: configuration.into(),
        };
        Self::with_group(group, config, image_id, pipeline, version, capacity)
    }

    fn with_group(
        group: &str,
        config: GroupConfig,
        image_id: &str,
        pipeline: &str,
        version: &str,
        capacity: u32,
    ) -> Self {
        let now = Instant::now();
        let mut tags = Tags::new();
        tags.insert(TAG_PIPELINE.into(), pipeline.into());
        tags.insert(TAG_VERSION.into(), version.into());
        let mut world = World {
            delays: Delays::default(),
            group: Group {
                name: group.into(),
                min_size: 1,
                max_size: capacity.max(1) * 2,
                desired_capacity: capacity,
                config: config.clone(),
                subnets: vec!["subnet-0fake".into()],
                target_groups: vec![FAKE_TARGET_GROUP.into()],
                health_check_type: "ELB".into(),
                health_check_grace_period: 300,
                instances: Vec::new(),
                tags: tags.clone(),
                new_instances_protected: false,
            },
            account: Account::default(),
            instances: BTreeMap::new(),
            images: BTreeMap::new(),
            copies: HashMap::new(),
            template_versions: Vec::new(),
            launch_configurations: Vec::new(),
            commands: HashMap::new(),
            refreshes: Vec::new(),
            deleted_snapshots: std::collections::BTreeSet::new(),
            parameters: HashMap::new(),
            calls: Vec::new(),
            failures: HashMap::new(),
            next_command_fails: None,
            next_image_fails: None,
            refresh_fails_at: None,
            refresh_fails_as: None,
            default_version: 1,
            counter: 0,
            origin: now,
            ledger: super::meter::Ledger::default(),
        };
        world.images.insert(
            image_id.into(),
            FakeImage {
                name: format!("base-{version}"),
                created: now - Duration::from_secs(86_400),
                fails: None,
                tags,
            },
        );
        match &config {
            GroupConfig::Template { .. } => world.template_versions.push(LaunchConfig {
                id: "1".into(),
                image_id: image_id.into(),
                description: format!("base {version}"),
                launch: None,
                created: Some(EPOCH),
            }),
            GroupConfig::Configuration { name } => world.launch_configurations.push(LaunchConfig {
                id: name.clone(),
                image_id: image_id.into(),
                description: name.clone(),
                launch: None,
                created: Some(EPOCH),
            }),
            GroupConfig::Other => {}
        }
        for _ in 0..capacity {
            let id = world.next_id("i");
            world.group.instances.push(GroupInstance {
                id,
                lifecycle_state: "InService".into(),
                health_status: "Healthy".into(),
                config: config.clone(),
                protected_from_scale_in: false,
            });
        }
        FakeCloud {
            world: Mutex::new(world),
        }
    }

    /// Runs `f` on the world, e.g. to inspect it or change delays.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().expect("fake cloud lock"))
    }

    /// Makes the next call of `operation` fail with `class`.
    pub fn fail_next(&self, operation: &'static str, class: ErrorClass, code: &str) {
        self.with_world(|w| {
            w.failures.insert(
                operation,
                CloudError::new(operation, class, code, "injected by the test"),
            );
        });
    }

    /// Makes the next SSM command end Failed with `output` and `exit_code`.
    pub fn fail_next_command(&self, output: &str, exit_code: i32) {
        self.with_world(|w| w.next_command_fails = Some((output.into(), exit_code)));
    }

    /// Makes the next image end `failed` with `reason`.
    pub fn fail_next_image(&self, reason: &str) {
        self.with_world(|w| w.next_image_fails = Some(reason.into()));
    }

    /// Makes refreshes fail once they reach `percent`.
    pub fn fail_refresh_at(&self, percent: u8) {
        self.with_world(|w| w.refresh_fails_at = Some(percent));
    }

    /// Makes the next refresh that fails end with `status` (e.g. `RollbackFailed`).
    pub fn refresh_fails_as(&self, status: RefreshStatus) {
        self.with_world(|w| w.refresh_fails_as = Some(status));
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<&'static str> {
        self.with_world(|w| w.calls.clone())
    }

    /// The mutating calls made so far.
    pub fn mutating_calls(&self) -> Vec<&'static str> {
        self.calls()
            .into_iter()
            .filter(|c| MUTATING.contains(c))
            .collect()
    }

    pub fn clear_calls(&self) {
        self.with_world(|w| w.calls.clear());
    }

    /// Instances that are not terminated and carry the builder role.
    pub fn live_builders(&self) -> Vec<String> {
        self.with_world(|w| {
            w.advance();
            w.instances
                .iter()
                .filter(|(_, i)| i.state.is_alive() && i.tags.contains_key(TAG_ROLE))
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    pub fn image_count(&self) -> usize {
        self.with_world(|w| w.images.len())
    }

    /// DescribeImages: the images whose tags `keep` accepts.
    fn images_where(&self, keep: impl Fn(&Tags) -> bool) -> CloudResult<Vec<Image>> {
        self.call("DescribeImages", |w| {
            let now = Instant::now();
            let delay = w.delays.image_available;
            Ok(w.images
                .iter()
                .filter(|(_, i)| keep(&i.tags))
                .map(|(id, i)| image_view(id, i, now, delay))
                .collect())
        })
    }

    fn call<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut World) -> CloudResult<T>,
    ) -> CloudResult<T> {
        let mut world = self.world.lock().expect("fake cloud lock");
        world.calls.push(operation);
        world.ledger.count(operation);
        if let Some(err) = world.failures.remove(operation) {
            return Err(err);
        }
        world.advance();
        f(&mut world)
    }
}

fn not_found(operation: &'static str, what: &str) -> CloudError {
    CloudError::new(
        operation,
        ErrorClass::NotFound,
        "NotFound",
        format!("{what} does not exist"),
    )
}

fn has_tags(tags: &Tags, wanted: &Tags) -> bool {
    wanted.iter().all(|(k, v)| tags.get(k) == Some(v))
}

impl World {
    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}-{:017x}", self.counter)
    }

    /// Moves every resource along by the time that passed.
    fn advance(&mut self) {
        let now = Instant::now();
        let d = self.delays;
        for inst in self.instances.values_mut() {
            let due = match inst.state {
                InstanceState::Pending => Some((d.instance_running, InstanceState::Running)),
                InstanceState::Stopping => Some((d.instance_stop, InstanceState::Stopped)),
                InstanceState::ShuttingDown => {
                    Some((Duration::from_secs(5), InstanceState::Terminated))
                }
                _ => None,
            };
            if let Some((_, next)) = due.filter(|(delay, _)| now >= inst.since + *delay) {
                inst.state = next;
                inst.since = now;
            }
        }
        self.advance_refreshes(now);
    }

    fn advance_refreshes(&mut self, now: Instant) {
        let batch = self.delays.refresh_batch.max(Duration::from_millis(1));
        let Some(r) = self.refreshes.last_mut() else {
            return;
        };
        if r.ended.is_some() {
            return;
        }
        let batches = (now - r.started).as_secs_f64() / batch.as_secs_f64();
        let percent = ((batches / 2.0) * 100.0).min(100.0) as u8;
        if let Some(fail) = r.fail_at.filter(|f| percent >= *f) {
            let status = r.fails_as.clone().unwrap_or(if r.spec.auto_rollback {
                RefreshStatus::RollbackSuccessful
            } else {
                RefreshStatus::Failed
            });
            if status == RefreshStatus::RollbackSuccessful {
                self.group.config = r.previous.clone();
            }
            r.ended = Some((status, fail));
            return;
        }
        if percent >= 100 {
            r.ended = Some((RefreshStatus::Successful, 100));
            let target = r.target.clone();
            self.group.config = target.clone();
            for inst in &mut self.group.instances {
                inst.config = target.clone();
            }
        }
    }

    fn refresh_view(&self, r: &FakeRefresh, now: Instant, batch: Duration) -> Refresh {
        let (status, percentage) = match &r.ended {
            Some((status, p)) => (status.clone(), *p),
            None => {
                let batches = (now - r.started).as_secs_f64()
                    / batch.max(Duration::from_millis(1)).as_secs_f64();
                (
                    RefreshStatus::InProgress,
                    ((batches / 2.0) * 100.0).min(99.0) as u8,
                )
            }
        };
        Refresh {
            id: r.id.clone(),
            status,
            status_reason: r
                .ended
                .as_ref()
                .filter(|(s, _)| *s != RefreshStatus::Successful)
                .map(|_| "an instance failed its health check".into()),
            percentage,
            instances_to_update: 0,
            desired_template_version: r.spec.desired_template.as_ref().map(|(_, v)| v.clone()),
            started: Some(self.clock(r.started)),
            // The fake keeps no end time: its refreshes give no history to wait by.
            ended: None,
        }
    }
}

#[async_trait]
impl Cloud for FakeCloud {
    fn calls(&self, pipeline: &str) -> Option<super::meter::CallCount> {
        Some(self.with_world(|w| w.ledger.of(pipeline)))
    }

    async fn group(&self, name: &str) -> CloudResult<Group> {
        self.call("DescribeAutoScalingGroups", |w| {
            if w.group.name == name {
                Ok(w.group.clone())
            } else {
                Err(not_found("DescribeAutoScalingGroups", name))
            }
        })
    }

    async fn groups(&self, names: &[String]) -> CloudResult<Vec<Group>> {
        self.call("DescribeAutoScalingGroups", |w| {
            Ok(names
                .contains(&w.group.name)
                .then(|| w.group.clone())
                .into_iter()
                .collect())
        })
    }

    async fn images_tagged(&self, key: &str) -> CloudResult<Vec<Image>> {
        self.images_where(|tagged| tagged.contains_key(key))
    }

    async fn find_images(&self, tags: &Tags) -> CloudResult<Vec<Image>> {
        self.images_where(|tagged| has_tags(tagged, tags))
    }

    async fn image(&self, id: &str) -> CloudResult<Image> {
        self.call("DescribeImages", |w| {
            let delay = w.delays.image_available;
            w.images
                .get(id)
                .map(|i| image_view(id, i, Instant::now(), delay))
                .ok_or_else(|| not_found("DescribeImages", id))
        })
    }

    async fn find_instances(&self, tags: &Tags) -> CloudResult<Vec<Instance>> {
        self.call("DescribeInstances", |w| {
            Ok(w.instances
                .iter()
                .filter(|(_, i)| i.state.is_alive() && has_tags(&i.tags, tags))
                .map(|(id, i)| instance_view(id, i))
                .collect())
        })
    }

    async fn instance_by_client_token(&self, token: &str) -> CloudResult<Option<Instance>> {
        self.call("DescribeInstances", |w| {
            Ok(w.instances
                .iter()
                .find(|(_, i)| i.state.is_alive() && i.client_token.as_deref() == Some(token))
                .map(|(id, i)| instance_view(id, i)))
        })
    }

    async fn instance(&self, id: &str) -> CloudResult<Instance> {
        self.call("DescribeInstances", |w| {
            w.instances
                .get(id)
                .map(|i| instance_view(id, i))
                .ok_or_else(|| not_found("DescribeInstances", id))
        })
    }

    async fn template_versions(&self, _name: &str) -> CloudResult<Vec<LaunchConfig>> {
        self.call("DescribeLaunchTemplateVersions", |w| {
            Ok(w.template_versions.clone())
        })
    }

    async fn launch_template(&self, template: &str) -> CloudResult<LaunchTemplate> {
        self.call("DescribeLaunchTemplates", |w| {
            let latest = w
                .template_versions
                .iter()
                .filter_map(|v| v.id.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            Ok(LaunchTemplate {
                id: "lt-0fake".into(),
                name: template.into(),
                default_version: w.default_version,
                latest_version: latest,
            })
        })
    }

    async fn launch_configurations(&self, prefix: &str) -> CloudResult<Vec<LaunchConfig>> {
        self.call("DescribeLaunchConfigurations", |w| {
            Ok(w.launch_configurations
                .iter()
                .filter(|c| c.id.starts_with(prefix))
                .cloned()
                .collect())
        })
    }

    async fn config_image(&self, config: &GroupConfig) -> CloudResult<Option<String>> {
        self.call("DescribeLaunchTemplateVersions", |w| {
            Ok(match config {
                GroupConfig::Template { version, .. } => {
                    let number = match version.as_str() {
                        "$Latest" => w.template_versions.len().to_string(),
                        "$Default" => "1".to_string(),
                        number => number.to_string(),
                    };
                    w.template_versions
                        .iter()
                        .find(|v| v.id == number)
                        .map(|v| v.image_id.clone())
                }
                GroupConfig::Configuration { name } => w
                    .launch_configurations
                    .iter()
                    .find(|c| &c.id == name)
                    .map(|c| c.image_id.clone()),
                GroupConfig::Other => None,
            })
        })
    }

    async fn target_groups(&self, arns: &[String]) -> CloudResult<Vec<TargetGroup>> {
        self.call("DescribeTargetGroups", |w| {
            arns.iter()
                .map(|arn| {
                    w.account
                        .target_groups
                        .iter()
                        .find(|t| &t.arn == arn)
                        .cloned()
                        .ok_or_else(|| not_found("DescribeTargetGroups", arn))
                })
                .collect()
        })
    }

    async fn load_balancers(&self, arns: &[String]) -> CloudResult<Vec<LoadBalancer>> {
        self.call("DescribeLoadBalancers", |w| {
            arns.iter()
                .map(|arn| {
                    w.account
                        .load_balancers
                        .iter()
                        .find(|b| &b.arn == arn)
                        .cloned()
                        .ok_or_else(|| not_found("DescribeLoadBalancers", arn))
                })
                .collect()
        })
    }

    async fn subnet(&self, id_or_name: &str) -> CloudResult<Subnet> {
        self.call("DescribeSubnets", |w| {
            let id = format!("subnet-{}", id_or_name.trim_start_matches("subnet-"));
            Ok(w.account
                .subnets
                .iter()
                .find(|s| s.id == id)
                .cloned()
                .unwrap_or(Subnet {
                    id,
                    vpc_id: "vpc-0fake".into(),
                    maps_public_ip: true,
                }))
        })
    }

    async fn vpc_endpoint_services(&self, vpc_id: &str) -> CloudResult<Vec<String>> {
        self.call("DescribeVpcEndpoints", |w| {
            Ok(w.account
                .vpc_endpoints
                .iter()
                .filter(|(vpc, _)| vpc == vpc_id)
                .map(|(_, service)| service.clone())
                .collect())
        })
    }

    async fn ingress_from(&self, source_groups: &[String]) -> CloudResult<Vec<IngressRule>> {
        self.call("DescribeSecurityGroups", |w| {
            Ok(w.account
                .ingress
                .iter()
                .filter(|r| r.sources.iter().any(|s| source_groups.contains(s)))
                .cloned()
                .collect())
        })
    }

    async fn instance_profile_roles(&self, name: &str) -> CloudResult<Vec<String>> {
        self.call("GetInstanceProfile", |w| {
            w.account
                .profiles
                .get(name)
                .cloned()
                .ok_or_else(|| not_found("GetInstanceProfile", name))
        })
    }

    async fn role_policies(&self, role: &str) -> CloudResult<RolePolicies> {
        self.call("ListAttachedRolePolicies", |w| {
            w.account
                .roles
                .get(role)
                .cloned()
                .ok_or_else(|| not_found("ListAttachedRolePolicies", role))
        })
    }

    async fn role_policy_document(&self, role: &str, policy: &str) -> CloudResult<String> {
        self.call("GetRolePolicy", |w| {
            w.account
                .inline_documents
                .get(&(role.to_owned(), policy.to_owned()))
                .cloned()
                .ok_or_else(|| not_found("GetRolePolicy", policy))
        })
    }

    async fn policy_document(&self, arn: &str) -> CloudResult<String> {
        self.call("GetPolicyVersion", |w| {
            w.account
                .managed_documents
                .get(arn)
                .cloned()
                .ok_or_else(|| not_found("GetPolicyVersion", arn))
        })
    }

    async fn resolve_subnet(&self, id_or_name: &str) -> CloudResult<String> {
        self.call("DescribeSubnets", |_| {
            Ok(format!(
                "subnet-{}",
                id_or_name.trim_start_matches("subnet-")
            ))
        })
    }

    async fn resolve_security_groups(&self, ids_or_names: &[String]) -> CloudResult<Vec<String>> {
        self.call("DescribeSecurityGroups", |_| {
            Ok(ids_or_names
                .iter()
                .map(|g| format!("sg-{}", g.trim_start_matches("sg-")))
                .collect())
        })
    }

    async fn run_builder(&self, spec: &BuilderSpec) -> CloudResult<String> {
        self.call("RunInstances", |w| {
            if !w.images.contains_key(&spec.image_id) {
                return Err(not_found("RunInstances", &spec.image_id));
            }
            if let Some((id, _)) = w
                .instances
                .iter()
                .find(|(_, i)| i.client_token.as_deref() == Some(spec.client_token.as_str()))
            {
                return Ok(id.clone());
            }
            let id = w.next_id("i");
            w.instances.insert(
                id.clone(),
                FakeInstance {
                    client_token: Some(spec.client_token.clone()),
                    state: InstanceState::Pending,
                    since: Instant::now(),
                    image_id: spec.image_id.clone(),
                    tags: spec.tags.clone(),
                },
            );
            Ok(id)
        })
    }

    async fn is_ssm_online(&self, instance_id: &str) -> CloudResult<bool> {
        self.call("DescribeInstanceInformation", |w| {
            let delay = w.delays.ssm_online;
            Ok(w.instances.get(instance_id).is_some_and(|i| {
                i.state == InstanceState::Running && Instant::now() >= i.since + delay
            }))
        })
    }

    async fn send_script(
        &self,
        instance_id: &str,
        script: &str,
        _timeout: u64,
        comment: &str,
    ) -> CloudResult<String> {
        self.call("SendCommand", |w| {
            if !w.instances.contains_key(instance_id) {
                return Err(not_found("SendCommand", instance_id));
            }
            let id = w.next_id("cmd");
            let result = match w.next_command_fails.take() {
                Some((output, code)) => CommandResult {
                    status: CommandStatus::Failed,
                    response_code: code,
                    stdout: output,
                    stderr: String::new(),
                },
                None => CommandResult {
                    status: CommandStatus::Success,
                    response_code: 0,
                    stdout: format!("ran {} lines\n", script.lines().count()),
                    stderr: String::new(),
                },
            };
            w.commands.insert(
                id.clone(),
                FakeCommand {
                    instance: instance_id.to_owned(),
                    comment: comment.to_owned(),
                    sent: Instant::now(),
                    result,
                },
            );
            Ok(id)
        })
    }

    async fn commands_on(&self, instance_id: &str) -> CloudResult<Vec<SentCommand>> {
        self.call("ListCommandInvocations", |w| {
            let now = Instant::now();
            let delay = w.delays.command;
            let mut sent: Vec<(&FakeCommand, String)> = w
                .commands
                .iter()
                .filter(|(_, c)| c.instance == instance_id)
                .map(|(id, c)| (c, id.clone()))
                .collect();
            sent.sort_by_key(|(c, _)| std::cmp::Reverse(c.sent));
            Ok(sent
                .into_iter()
                .map(|(c, id)| SentCommand {
                    id,
                    comment: c.comment.clone(),
                    status: if now < c.sent + delay {
                        CommandStatus::InProgress
                    } else {
                        c.result.status.clone()
                    },
                })
                .collect())
        })
    }

    async fn command_result(
        &self,
        command_id: &str,
        _instance_id: &str,
    ) -> CloudResult<CommandResult> {
        self.call("GetCommandInvocation", |w| {
            let delay = w.delays.command;
            let cmd = w
                .commands
                .get(command_id)
                .ok_or_else(|| not_found("GetCommandInvocation", command_id))?;
            if Instant::now() < cmd.sent + delay {
                return Ok(CommandResult {
                    status: CommandStatus::InProgress,
                    response_code: -1,
                    stdout: String::new(),
                    stderr: String::new(),
                });
            }
            Ok(cmd.result.clone())
        })
    }

    async fn stop_instance(&self, instance_id: &str) -> CloudResult<()> {
        self.call("StopInstances", |w| {
            let i = w
                .instances
                .get_mut(instance_id)
                .ok_or_else(|| not_found("StopInstances", instance_id))?;
            if i.state == InstanceState::Running || i.state == InstanceState::Pending {
                i.state = InstanceState::Stopping;
                i.since = Instant::now();
            }
            Ok(())
        })
    }

    async fn terminate_instance(&self, instance_id: &str) -> CloudResult<()> {
        self.call("TerminateInstances", |w| {
            if let Some(i) = w
                .instances
                .get_mut(instance_id)
                .filter(|i| i.state.is_alive())
            {
                i.state = InstanceState::ShuttingDown;
                i.since = Instant::now();
            }
            Ok(())
        })
    }

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> CloudResult<()> {
        self.call("CreateTags", |w| {
            let i = w
                .instances
                .get_mut(instance_id)
                .ok_or_else(|| not_found("CreateTags", instance_id))?;
            i.tags.extend(tags.clone());
            Ok(())
        })
    }

    async fn tag_image(&self, image_id: &str, tags: &Tags) -> CloudResult<()> {
        self.call("CreateTags", |w| {
            let i = w
                .images
                .get_mut(image_id)
                .ok_or_else(|| not_found("CreateTags", image_id))?;
            i.tags.extend(tags.clone());
            Ok(())
        })
    }

    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        self.call("CreateImage", |w| {
            if !w.instances.contains_key(instance_id) {
                return Err(not_found("CreateImage", instance_id));
            }
            let id = w.next_id("ami");
            let fails = w.next_image_fails.take();
            w.images.insert(
                id.clone(),
                FakeImage {
                    name: name.into(),
                    created: Instant::now(),
                    fails,
                    tags: tags.clone(),
                },
            );
            Ok(id)
        })
    }

    /// The fake holds one region: the copy is made from nothing (its source is not
    /// checked), as a pending image with the copy's tags, once per client token.
    async fn copy_image(&self, copy: &super::ImageCopy) -> CloudResult<String> {
        self.call("CopyImage", |w| {
            if let Some(id) = w.copies.get(&copy.client_token) {
                return Ok(id.clone());
            }
            let id = w.next_id("ami");
            let fails = w.next_image_fails.take();
            w.images.insert(
                id.clone(),
                FakeImage {
                    name: copy.name.clone(),
                    created: Instant::now(),
                    fails,
                    tags: copy.tags.clone(),
                },
            );
            w.copies.insert(copy.client_token.clone(), id.clone());
            Ok(id)
        })
    }

    async fn create_template_version(
        &self,
        _template: &str,
        _source_version: &str,
        spec: &LaunchSpec,
    ) -> CloudResult<LaunchConfig> {
        self.call("CreateLaunchTemplateVersion", |w| {
            // Numbers are never reused, also after versions were deleted.
            let latest = w
                .template_versions
                .iter()
                .filter_map(|v| v.id.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            let config = LaunchConfig {
                id: (latest + 1).to_string(),
                image_id: spec.image_id.clone(),
                description: spec.name.clone(),
                launch: spec.tags.get(super::TAG_LAUNCH).cloned(),
                created: Some(w.clock(Instant::now())),
            };
            w.template_versions.push(config.clone());
            Ok(config)
        })
    }

    async fn create_launch_configuration(&self, spec: &LaunchSpec) -> CloudResult<LaunchConfig> {
        self.call("CreateLaunchConfiguration", |w| {
            if w.launch_configurations.iter().any(|c| c.id == spec.name) {
                return Err(CloudError::new(
                    "CreateLaunchConfiguration",
                    ErrorClass::Conflict,
                    "AlreadyExists",
                    format!("{} exists", spec.name),
                ));
            }
            let config = LaunchConfig {
                id: spec.name.clone(),
                image_id: spec.image_id.clone(),
                description: spec.name.clone(),
                launch: None,
                created: Some(w.clock(Instant::now())),
            };
            w.launch_configurations.push(config.clone());
            Ok(config)
        })
    }

    async fn set_group_configuration(&self, _group: &str, configuration: &str) -> CloudResult<()> {
        self.call("UpdateAutoScalingGroup", |w| {
            if !w
                .launch_configurations
                .iter()
                .any(|c| c.id == configuration)
            {
                return Err(CloudError::new(
                    "UpdateAutoScalingGroup",
                    ErrorClass::Invalid,
                    "ValidationError",
                    "no such launch configuration",
                ));
            }
            w.group.config = GroupConfig::Configuration {
                name: configuration.into(),
            };
            Ok(())
        })
    }

    async fn set_group_template_version(
        &self,
        _group: &str,
        _template: &str,
        version: &str,
    ) -> CloudResult<()> {
        self.call("UpdateAutoScalingGroup", |w| {
            match &mut w.group.config {
                GroupConfig::Template {
                    version: current, ..
                } => *current = version.into(),
                _ => {
                    return Err(CloudError::new(
                        "UpdateAutoScalingGroup",
                        ErrorClass::Invalid,
                        "ValidationError",
                        "the group has no launch template",
                    ));
                }
            }
            Ok(())
        })
    }

    async fn tag_group(&self, _group: &str, tags: &Tags) -> CloudResult<()> {
        self.call("CreateOrUpdateTags", |w| {
            w.group.tags.extend(tags.clone());
            Ok(())
        })
    }

    async fn set_group_bounds(&self, _group: &str, min: u32, max: u32) -> CloudResult<()> {
        self.call("UpdateAutoScalingGroup", |w| {
            w.group.min_size = min;
            w.group.max_size = max;
            w.group.desired_capacity = w.group.desired_capacity.clamp(min, max);
            Ok(())
        })
    }

    async fn set_default_template_version(&self, _template: &str, version: u64) -> CloudResult<()> {
        self.call("ModifyLaunchTemplate", |w| {
            w.default_version = version;
            Ok(())
        })
    }

    async fn start_refresh(&self, _group: &str, spec: &RefreshSpec) -> CloudResult<String> {
        self.call("StartInstanceRefresh", |w| {
            if w.refreshes.last().is_some_and(|r| r.ended.is_none()) {
                return Err(CloudError::new(
                    "StartInstanceRefresh",
                    ErrorClass::Conflict,
                    "InstanceRefreshInProgress",
                    "a refresh is in progress",
                ));
            }
            let target = match (&spec.desired_template, &w.group.config) {
                (Some((_, version)), GroupConfig::Template { id, name, .. }) => {
                    GroupConfig::Template {
                        id: id.clone(),
                        name: name.clone(),
                        version: version.clone(),
                    }
                }
                _ => w.group.config.clone(),
            };
            let id = w.next_id("refresh");
            let fail_at = w.refresh_fails_at.take();
            let fails_as = w.refresh_fails_as.take();
            w.refreshes.push(FakeRefresh {
                id: id.clone(),
                started: Instant::now(),
                spec: spec.clone(),
                previous: w.group.config.clone(),
                target,
                ended: None,
                fail_at,
                fails_as,
            });
            Ok(id)
        })
    }

    async fn refreshes(&self, _group: &str) -> CloudResult<Vec<Refresh>> {
        self.call("DescribeInstanceRefreshes", |w| {
            let now = Instant::now();
            let batch = w.delays.refresh_batch;
            Ok(w.refreshes
                .iter()
                .rev()
                .map(|r| w.refresh_view(r, now, batch))
                .collect())
        })
    }

    async fn cancel_refresh(&self, _group: &str) -> CloudResult<()> {
        self.call("CancelInstanceRefresh", |w| match w.refreshes.last_mut() {
            Some(r) if r.ended.is_none() => {
                r.ended = Some((RefreshStatus::Cancelled, 0));
                Ok(())
            }
            _ => Err(CloudError::new(
                "CancelInstanceRefresh",
                ErrorClass::NotFound,
                "ActiveInstanceRefreshNotFound",
                "no active refresh",
            )),
        })
    }

    async fn rollback_refresh(&self, _group: &str) -> CloudResult<()> {
        self.call("RollbackInstanceRefresh", |w| {
            match w.refreshes.last_mut() {
                Some(r) if r.ended.is_none() => {
                    r.ended = Some((RefreshStatus::RollbackSuccessful, 0));
                    let previous = r.previous.clone();
                    w.group.config = previous;
                    Ok(())
                }
                _ => Err(CloudError::new(
                    "RollbackInstanceRefresh",
                    ErrorClass::NotFound,
                    "ActiveInstanceRefreshNotFound",
                    "no active refresh",
                )),
            }
        })
    }

    async fn deregister_image(&self, image_id: &str) -> CloudResult<()> {
        self.call("DeregisterImage", |w| {
            w.images.remove(image_id);
            Ok(())
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<()> {
        self.call("DeleteSnapshot", |w| {
            if let Some(image) = w.images.keys().find(|id| snapshot_of(id) == snapshot_id) {
                return Err(CloudError::new(
                    "DeleteSnapshot",
                    ErrorClass::Conflict,
                    "InvalidSnapshot.InUse",
                    format!("The snapshot {snapshot_id} is currently in use by {image}"),
                ));
            }
            w.deleted_snapshots.insert(snapshot_id.to_owned());
            Ok(())
        })
    }

    async fn delete_template_versions(
        &self,
        _template: &str,
        versions: &[String],
    ) -> CloudResult<()> {
        self.call("DeleteLaunchTemplateVersions", |w| {
            // The fake's template keeps version 1 as its default.
            if versions.iter().any(|v| v == "1") {
                return Err(CloudError::new(
                    "DeleteLaunchTemplateVersions",
                    ErrorClass::Invalid,
                    "unexpectedError",
                    "Cannot delete the default version of a launch template.",
                ));
            }
            w.template_versions.retain(|v| !versions.contains(&v.id));
            Ok(())
        })
    }

    async fn delete_launch_configuration(&self, name: &str) -> CloudResult<()> {
        self.call("DeleteLaunchConfiguration", |w| {
            if w.group.config.is(name) {
                return Err(CloudError::new(
                    "DeleteLaunchConfiguration",
                    ErrorClass::Conflict,
                    "ResourceInUse",
                    format!("Cannot delete launch configuration {name} because it is attached to AutoScalingGroup {}", w.group.name),
                ));
            }
            w.launch_configurations.retain(|c| c.id != name);
            Ok(())
        })
    }

    async fn put_lock(&self, name: &str, lock: &Lock) -> CloudResult<()> {
        self.call("PutParameter", |w| {
            if w.parameters.contains_key(name) {
                return Err(CloudError::new(
                    "PutParameter",
                    ErrorClass::Conflict,
                    "ParameterAlreadyExists",
                    "the parameter already exists",
                ));
            }
            w.parameters.insert(
                name.into(),
                serde_json::to_string(lock).expect("lock serialises"),
            );
            Ok(())
        })
    }

    async fn renew_lock(&self, name: &str, lock: &Lock) -> CloudResult<()> {
        self.call("PutParameter", |w| {
            w.parameters.insert(
                name.into(),
                serde_json::to_string(lock).expect("lock serialises"),
            );
            Ok(())
        })
    }

    async fn read_locks(&self, names: &[String]) -> CloudResult<Vec<(String, Lock)>> {
        self.call("GetParameters", |w| {
            Ok(names
                .iter()
                .filter_map(|name| {
                    let lock = serde_json::from_str(w.parameters.get(name)?).ok()?;
                    Some((name.clone(), lock))
                })
                .collect())
        })
    }

    async fn read_lock(&self, name: &str) -> CloudResult<Option<Lock>> {
        self.call("GetParameter", |w| {
            Ok(w.parameters
                .get(name)
                .and_then(|v| serde_json::from_str(v).ok()))
        })
    }

    async fn delete_lock(&self, name: &str) -> CloudResult<()> {
        self.call("DeleteParameter", |w| {
            w.parameters.remove(name);
            Ok(())
        })
    }
}

fn image_view(id: &str, i: &FakeImage, now: Instant, delay: Duration) -> Image {
    let status = if now < i.created + delay {
        ImageStatus::Pending
    } else if let Some(reason) = &i.fails {
        ImageStatus::Failed(Some(reason.clone()))
    } else {
        ImageStatus::Available
    };
    Image {
        id: id.into(),
        name: i.name.clone(),
        status,
        tags: i.tags.clone(),
        root_device: Some(RootDevice {
            name: "/dev/xvda".into(),
            snapshot_size_gb: Some(8),
        }),
        snapshots: vec![snapshot_of(id)],
    }
}

/// The one snapshot of the fake's image `image_id`.
pub fn snapshot_of(image_id: &str) -> String {
    format!("snap-{}", image_id.trim_start_matches("ami-"))
}

fn instance_view(id: &str, i: &FakeInstance) -> Instance {
    Instance {
        id: id.into(),
        state: i.state,
        image_id: Some(i.image_id.clone()),
        tags: i.tags.clone(),
    }
}
