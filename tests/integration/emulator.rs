//! The local AWS emulator (tests/emulator/) as a test fixture.
//!
//! One emulator serves the whole test binary: the first test that asks for it sets up its
//! virtualenv, starts it on a free loopback port and seeds the Stream Manager fleet of the
//! Red5 Pro guide. A watchdog shell stops it once the test process is gone, however the
//! process ends (it waits for the end of a pipe only this process holds).
//!
//! Tests share it, so they keep out of each other's way in two ways:
//! - resources: the seeded fleet is read only; a test that changes a group or a template
//!   makes its own with [`Emulator::template_fleet`] or [`Emulator::configuration_fleet`],
//!   under a name no other test uses;
//! - fault switches, which act on every call: a test that sets them takes the emulator
//!   [`Emulator::alone`], which waits for every other test to finish and keeps new ones
//!   waiting until it is done; the others take it [`Emulator::shared`].

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use red5_rollout::cloud::aws::AwsCloud;
use red5_rollout::cloud::{Cloud, Tags};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const REGION: &str = "us-east-1";
/// Real seconds per emulated second: a 20 s instance launch takes 0.4 s. Slow enough for a
/// test to see an instance pending or an image pending; fast enough for whole refreshes.
const TIME_SCALE: &str = "0.02";
/// How long the emulator may take to print its endpoint, and the seed to finish.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const SEED_TIMEOUT_SECS: &str = "120";

/// What `tests/emulator/emulator seed` builds (see tests/emulator/red5_emulator/seed.py).
pub mod seeded {
    pub const GROUP: &str = "red5pro-sm-asg";
    pub const TEMPLATE: &str = "red5pro-sm";
    pub const LEGACY_GROUP: &str = "red5pro-sm-legacy-asg";
    pub const LAUNCH_CONFIGURATION: &str = "SM-red5pro-server-12.3.0-nov01-m5large-LC";
    pub const PIPELINE: &str = "stream-manager";
    pub const LEGACY_PIPELINE: &str = "stream-manager-legacy";
    pub const VERSION: &str = "12.3.0";
    pub const SUBNETS: [&str; 2] = ["red5pro-sm-subnet-a", "red5pro-sm-subnet-b"];
    pub const SECURITY_GROUP: &str = "red5pro-sm-sg";
    pub const DB_SECURITY_GROUP: &str = "red5pro-db-sg";
    pub const INSTANCE_PROFILE: &str = "red5pro-sm-builder";
    pub const KEY_PAIR: &str = "red5pro-sm-key";
    pub const INSTANCE_TYPE: &str = "m5.large";
    pub const TARGET_GROUP: &str = "red5pro-sm-tg";
    pub const LOAD_BALANCER: &str = "red5pro-sm-alb";
}

/// The running emulator of this test process.
pub struct Emulator {
    endpoint: String,
    log: PathBuf,
    /// The watchdog stops the server when this closes, that is when the process exits.
    _lifeline: ChildStdin,
    /// Kept open so the server never writes into a closed pipe.
    _stdout: ChildStdout,
}

/// Tests that set fault switches hold this for writing, every other test for reading.
static ACCESS: RwLock<()> = RwLock::const_new(());
static EMULATOR: OnceLock<Result<Emulator, String>> = OnceLock::new();
static NEXT_NAME: AtomicUsize = AtomicUsize::new(1);

/// A test's hold on the emulator; dereferences to [`Emulator`].
pub struct Session {
    emulator: &'static Emulator,
    access: Access,
}

enum Access {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl Deref for Session {
    type Target = Emulator;
    fn deref(&self) -> &Emulator {
        self.emulator
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A test that failed half-way must not leave its faults to the next one.
        if matches!(self.access, Access::Alone(_)) {
            let _ = self.emulator.request("DELETE", "/_emulator/faults", None);
        }
    }
}

impl Emulator {
    /// The emulator, started and seeded once per test process, shared with other tests.
    pub async fn shared() -> Session {
        let emulator = Emulator::started();
        Session {
            emulator,
            access: Access::Shared(ACCESS.read().await),
        }
    }

    /// The emulator with no other test running, and no fault switch set, until the
    /// session is dropped (faults are cleared again then).
    pub async fn alone() -> Session {
        let emulator = Emulator::started();
        let session = Session {
            emulator,
            access: Access::Alone(ACCESS.write().await),
        };
        session.clear_faults();
        session
    }

    fn started() -> &'static Emulator {
        let started = EMULATOR.get_or_init(Emulator::start);
        match started {
            Ok(emulator) => emulator,
            Err(error) => panic!("the AWS emulator is not available: {error}"),
        }
    }

    fn start() -> Result<Emulator, String> {
        let script = crate_root().join("tests/emulator/emulator");
        let output = Command::new(&script)
            .arg("setup")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !output.status.success() {
            return Err(format!(
                "`emulator setup` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }

        let log_dir = target_dir().join("emulator-tests");
        std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
        let log = log_dir.join(format!("emulator-{}.log", std::process::id()));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;

        // The watchdog runs the server in the background and stops it once its standard
        // input reaches its end, which happens when this process is gone, however it ends:
        // only this process holds the pipe's other end (Rust opens it close-on-exec, so no
        // other child inherits it).
        let watchdog = r#"
            "$@" </dev/null &
            server=$!
            while read -r _; do :; done
            kill "$server" 2>/dev/null
            wait "$server"
        "#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg("red5-emulator-watchdog")
            .arg(&script)
            .args([
                "start",
                "--foreground",
                "--port",
                "0",
                "--time-scale",
                TIME_SCALE,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start the emulator: {e}"))?;
        let Some(lifeline) = child.stdin.take() else {
            return Err("the emulator's input is not piped".to_owned());
        };
        let Some(stdout) = child.stdout.take() else {
            return Err("the emulator's output is not piped".to_owned());
        };

        // The server prints its endpoint once it serves; read it on a thread so a server
        // that never gets there fails the tests instead of hanging them.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let read = reader.read_line(&mut line).map(|_| line);
            let _ = sender.send((read, reader.into_inner()));
        });
        let (line, stdout) = receiver.recv_timeout(START_TIMEOUT).map_err(|_| {
            format!(
                "no endpoint within {START_TIMEOUT:?}; see {}",
                log.display()
            )
        })?;
        let endpoint = line
            .map_err(|e| format!("reading the endpoint: {e}"))?
            .trim()
            .to_owned();
        if !endpoint.starts_with("http://") {
            return Err(format!(
                "the emulator exited without an endpoint (printed {endpoint:?}); see {}",
                log.display()
            ));
        }

        let emulator = Emulator {
            endpoint,
            log,
            _lifeline: lifeline,
            _stdout: stdout,
        };
        emulator.seed()?;
        Ok(emulator)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The adapter under test, on the emulator's endpoint with the emulator's dummy keys.
    pub async fn cloud(&self) -> AwsCloud {
        self.cloud_in(REGION).await
    }

    /// [`Emulator::cloud`] in `region`.
    pub async fn cloud_in(&self, region: &str) -> AwsCloud {
        AwsCloud::connect_with(region, Some(self.endpoint()), Some(test_credentials())).await
    }

    /// Builds the guide's fleet; seeding an already seeded emulator changes nothing.
    pub fn seed(&self) -> Result<String, String> {
        let output = Command::new(crate_root().join("tests/emulator/emulator"))
            .args([
                "seed",
                "--endpoint",
                &self.endpoint,
                "--timeout",
                SEED_TIMEOUT_SECS,
            ])
            .output()
            .map_err(|e| format!("cannot run the seed: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "the seed failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Merges fault switches (see tests/emulator/README.md), e.g. `{"ssm_fail_next": {..}}`.
    pub fn set_faults(&self, faults: Value) {
        self.control("POST", "/_emulator/faults", Some(faults));
    }

    pub fn clear_faults(&self) {
        self.control("DELETE", "/_emulator/faults", None);
    }

    /// The call log: `total`, `counts` and `mutating_counts` by `service:Action`, and every
    /// call with its status and the fault that refused it, if any.
    pub fn calls(&self) -> Value {
        self.control("GET", "/_emulator/calls", None)
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.control("DELETE", "/_emulator/calls", None);
    }

    fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.request(method, path, body) {
            Ok((200, answer)) => answer,
            Ok((status, answer)) => panic!("{method} {path} answered {status}: {answer}"),
            Err(error) => panic!("{method} {path}: {error}; see {}", self.log.display()),
        }
    }

    /// One HTTP/1.1 request to the control API; returns the status and the JSON answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let (head, payload) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let answer = serde_json::from_str(payload).map_err(|e| format!("{e}: {payload:?}"))?;
        Ok((status, answer))
    }

    /// SDK clients for building fixtures the runner never creates itself (launch
    /// templates, groups). The adapter under test is [`Emulator::cloud`].
    async fn sdk(&self) -> (aws_sdk_ec2::Client, aws_sdk_autoscaling::Client) {
        let config = self.sdk_config().await;
        (
            aws_sdk_ec2::Client::new(&config),
            aws_sdk_autoscaling::Client::new(&config),
        )
    }

    /// SDK clients to build or break fixtures with: Auto Scaling, EC2, IAM.
    pub async fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config().await)
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    /// [`Emulator::ec2`] in `region`.
    pub async fn ec2_in(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config_in(region).await)
    }

    pub async fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk_config().await)
    }

    /// The ARN of the seeded target group (behind the seeded application load balancer).
    pub async fn seeded_target_group(&self) -> String {
        let client = aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk_config().await);
        let found = client
            .describe_target_groups()
            .names(seeded::TARGET_GROUP)
            .send()
            .await
            .expect("describe the seeded target group");
        found.target_groups()[0]
            .target_group_arn()
            .expect("a target group has an ARN")
            .to_owned()
    }

    async fn sdk_config(&self) -> aws_config::SdkConfig {
        self.sdk_config_in(REGION).await
    }

    async fn sdk_config_in(&self, region: &str) -> aws_config::SdkConfig {
        let (key, secret) = test_credentials();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                key, secret, None, None, "test",
            ))
            .load()
            .await
    }

    /// How many times the update script of `pipeline` was sent to each of its builders,
    /// terminated ones included.
    pub async fn installs_per_builder(&self, pipeline: &str) -> Vec<(String, usize)> {
        let config = self.sdk_config().await;
        let ec2_client = aws_sdk_ec2::Client::new(&config);
        let ssm_client = aws_sdk_ssm::Client::new(&config);
        let filter =
            |name: &str, value: &str| ec2::Filter::builder().name(name).values(value).build();
        let found = ec2_client
            .describe_instances()
            .filters(filter("tag:red5-rollout:pipeline", pipeline))
            .filters(filter("tag:red5-rollout:role", "builder"))
            .send()
            .await
            .expect("describe the builders");
        let mut counts = Vec::new();
        for instance in found.reservations().iter().flat_map(|r| r.instances()) {
            let id = instance.instance_id().unwrap_or_default().to_owned();
            let invocations = ssm_client
                .list_command_invocations()
                .instance_id(&id)
                .send()
                .await
                .expect("list the builder's commands");
            let installs = invocations
                .command_invocations()
                .iter()
                .filter(|c| {
                    c.comment().is_some_and(|comment| {
                        comment.starts_with(&format!("red5-rollout {pipeline} "))
                    })
                })
                .count();
            counts.push((id, installs));
        }
        counts
    }

    /// What version `version` of launch template `template` holds, as AWS describes it.
    pub async fn template_data(
        &self,
        template: &str,
        version: &str,
    ) -> ec2::ResponseLaunchTemplateData {
        let (ec2_client, _) = self.sdk().await;
        let output = ec2_client
            .describe_launch_template_versions()
            .launch_template_name(template)
            .versions(version)
            .send()
            .await
            .expect("describe the template version");
        output.launch_template_versions()[0]
            .launch_template_data()
            .cloned()
            .expect("the version has data")
    }

    /// Deregisters an image, as someone cleaning up old AMIs would.
    pub async fn deregister_image(&self, id: &str) {
        let (ec2_client, _) = self.sdk().await;
        ec2_client
            .deregister_image()
            .image_id(id)
            .send()
            .await
            .expect("deregister the image");
    }

    /// The seeded image of `pipeline` (Red5 Pro 12.3.0), found by the `Name` tag its
    /// operator gave it: the seed carries none of the runner's tags.
    pub async fn seeded_image(&self, pipeline: &str) -> String {
        let name = if pipeline == seeded::LEGACY_PIPELINE {
            format!("red5pro-sm-legacy-{}", seeded::VERSION)
        } else {
            format!("red5pro-sm-{}", seeded::VERSION)
        };
        let tags = Tags::from([("Name".to_owned(), name)]);
        let images = self
            .cloud()
            .await
            .find_images(&tags)
            .await
            .expect("find the seeded image");
        match images.as_slice() {
            [image] => image.id.clone(),
            other => panic!("expected one seeded image of {pipeline}, found {other:?}"),
        }
    }

    /// A new fleet of its own for one test: launch template `<label>-N` (version 1 on the
    /// seeded stream-manager image) and group `<label>-N-asg` with `desired` running
    /// instances in the seeded subnets.
    pub async fn template_fleet(&self, label: &str, desired: i32) -> Fleet {
        self.template_fleet_on(label, desired, None).await
    }

    /// [`Emulator::template_fleet`] launching `image` (default: the seeded image).
    pub async fn template_fleet_on(&self, label: &str, desired: i32, image: Option<&str>) -> Fleet {
        self.template_fleet_with(label, desired, image, false).await
    }

    /// A template fleet as an operator builds it by the guide: its template holds what the
    /// runner does not manage (an instance profile, IMDSv2, monitoring, an encrypted root
    /// volume on `/dev/xvda`, a recordings volume, a `team` tag), and the group names
    /// `$Default`, protects its instances from scale-in, and is attached to the seeded
    /// load balancer's target group with ELB health checks and a 300 s grace period.
    pub async fn guide_template_fleet(&self, label: &str, desired: i32, image: &str) -> Fleet {
        self.template_fleet_with(label, desired, Some(image), true)
            .await
    }

    async fn template_fleet_with(
        &self,
        label: &str,
        desired: i32,
        image: Option<&str>,
        as_the_guide_builds_it: bool,
    ) -> Fleet {
        let name = unique_name(label);
        let (ec2_client, asg_client) = self.sdk().await;
        let (seeded_image, subnets, security_group) = self.seeded_network().await;
        let image_id = image.map_or(seeded_image, str::to_owned);
        let data = if as_the_guide_builds_it {
            guide_template_data(&image_id, &security_group)
        } else {
            ec2::RequestLaunchTemplateData::builder()
                .image_id(&image_id)
                .instance_type(ec2::InstanceType::from(seeded::INSTANCE_TYPE))
                .security_group_ids(&security_group)
        };
        ec2_client
            .create_launch_template()
            .launch_template_name(&name)
            .version_description(format!("{name} version 1"))
            .launch_template_data(data.build())
            .send()
            .await
            .expect("create the fleet's launch template");
        let group = format!("{name}-asg");
        let target_groups = if as_the_guide_builds_it {
            vec![self.seeded_target_group().await]
        } else {
            Vec::new()
        };
        asg_client
            .create_auto_scaling_group()
            .auto_scaling_group_name(&group)
            .set_target_group_arns((!target_groups.is_empty()).then_some(target_groups))
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_name(&name)
                    .version(if as_the_guide_builds_it {
                        "$Default"
                    } else {
                        "1"
                    })
                    .build(),
            )
            .new_instances_protected_from_scale_in(as_the_guide_builds_it)
            .min_size(1)
            .max_size(4)
            .desired_capacity(desired)
            .vpc_zone_identifier(subnets.join(","))
            .health_check_type("ELB")
            .health_check_grace_period(300)
            .send()
            .await
            .expect("create the fleet's group");
        let fleet = Fleet {
            group,
            template: Some(name),
            configuration: None,
            image_id,
        };
        fleet.wait_in_service(self, desired).await;
        fleet
    }

    /// A guide-built template fleet in `region` (not the seeded one), as an operator builds
    /// a second region: `image` (a 12.3.0 image of the seeded region) copied there by hand
    /// with only a `Name` tag, the default VPC's subnets, a security group named as the
    /// seeded one (made once per region), and a template holding what the runner does not
    /// manage (an instance profile, IMDSv2, an encrypted root and a recordings volume) on
    /// which the group names `$Default` and protects its instances from scale-in.
    pub async fn guide_template_fleet_in(
        &self,
        region: &str,
        label: &str,
        desired: i32,
        image: &str,
    ) -> Fleet {
        let name = unique_name(label);
        let config = self.sdk_config_in(region).await;
        let ec2_client = aws_sdk_ec2::Client::new(&config);
        let asg_client = aws_sdk_autoscaling::Client::new(&config);
        let cloud = self.cloud_in(region).await;
        let copied = ec2_client
            .copy_image()
            .source_region(REGION)
            .source_image_id(image)
            .name(format!("{name}-12.3.0"))
            .tag_specifications(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::Image)
                    .tags(
                        ec2::Tag::builder()
                            .key("Name")
                            .value(format!("red5pro-{label}-12.3.0"))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("copy the fleet's image into its region")
            .image_id()
            .expect("a copy has an id")
            .to_owned();
        eventually("the region's image to be available", async || {
            (cloud.image(&copied).await.ok()?.status == red5_rollout::cloud::ImageStatus::Available)
                .then_some(())
        })
        .await;
        let subnets: Vec<String> = ec2_client
            .describe_subnets()
            .filters(
                ec2::Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .expect("the region's default subnets")
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_owned))
            .take(2)
            .collect();
        let security_group = match cloud
            .resolve_security_groups(&[seeded::SECURITY_GROUP.to_owned()])
            .await
        {
            Ok(ids) => ids[0].clone(),
            Err(_) => ec2_client
                .create_security_group()
                .group_name(seeded::SECURITY_GROUP)
                .description("Stream Manager")
                .send()
                .await
                .expect("create the region's security group")
                .group_id()
                .expect("a security group has an id")
                .to_owned(),
        };
        let data = guide_template_data(&copied, &security_group);
        ec2_client
            .create_launch_template()
            .launch_template_name(&name)
            .version_description(format!("{name} version 1"))
            .launch_template_data(data.build())
            .send()
            .await
            .expect("create the fleet's launch template");
        let group = format!("{name}-asg");
        asg_client
            .create_auto_scaling_group()
            .auto_scaling_group_name(&group)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_name(&name)
                    .version("$Default")
                    .build(),
            )
            .new_instances_protected_from_scale_in(true)
            .min_size(1)
            .max_size(4)
            .desired_capacity(desired)
            .vpc_zone_identifier(subnets.join(","))
            .health_check_type("EC2")
            .health_check_grace_period(300)
            .send()
            .await
            .expect("create the fleet's group");
        let wanted = usize::try_from(desired).unwrap_or(0);
        eventually(&format!("{group} to be in service"), async || {
            let found = cloud.group(&group).await.ok()?;
            let in_service = found
                .instances
                .iter()
                .filter(|i| i.lifecycle_state == "InService");
            (in_service.count() == wanted).then_some(())
        })
        .await;
        Fleet {
            group,
            template: Some(name),
            configuration: None,
            image_id: copied,
        }
    }

    /// A new fleet of its own on a launch configuration `<label>-N-LC`, as legacy
    /// accounts run them.
    pub async fn configuration_fleet(&self, label: &str, desired: i32) -> Fleet {
        self.configuration_fleet_on(label, desired, None).await
    }

    /// [`Emulator::configuration_fleet`] launching `image` (default: the seeded image).
    pub async fn configuration_fleet_on(
        &self,
        label: &str,
        desired: i32,
        image: Option<&str>,
    ) -> Fleet {
        let name = unique_name(label);
        let (_, asg_client) = self.sdk().await;
        let (seeded_image, subnets, security_group) = self.seeded_network().await;
        let image_id = image.map_or(seeded_image, str::to_owned);
        let configuration = format!("{name}-LC");
        asg_client
            .create_launch_configuration()
            .launch_configuration_name(&configuration)
            .image_id(&image_id)
            .instance_type(seeded::INSTANCE_TYPE)
            .security_groups(&security_group)
            .send()
            .await
            .expect("create the fleet's launch configuration");
        let group = format!("{name}-asg");
        asg_client
            .create_auto_scaling_group()
            .auto_scaling_group_name(&group)
            .launch_configuration_name(&configuration)
            .min_size(1)
            .max_size(2)
            .desired_capacity(desired)
            .vpc_zone_identifier(subnets.join(","))
            .send()
            .await
            .expect("create the fleet's group");
        let fleet = Fleet {
            group,
            template: None,
            configuration: Some(configuration),
            image_id,
        };
        fleet.wait_in_service(self, desired).await;
        fleet
    }

    async fn seeded_network(&self) -> (String, Vec<String>, String) {
        let cloud = self.cloud().await;
        let image = self.seeded_image(seeded::PIPELINE).await;
        let mut subnets = Vec::new();
        for name in seeded::SUBNETS {
            subnets.push(cloud.resolve_subnet(name).await.expect("seeded subnet"));
        }
        let groups = cloud
            .resolve_security_groups(&[seeded::SECURITY_GROUP.to_owned()])
            .await
            .expect("seeded security group");
        (image, subnets, groups[0].clone())
    }
}

/// The launch template data of a fleet built by the guide: what the runner does not manage
/// (an instance profile, IMDSv2, monitoring, an encrypted root volume on `/dev/xvda`, a
/// recordings volume, a `team` tag) around the image, type and security group.
fn guide_template_data(
    image: &str,
    security_group: &str,
) -> ec2::builders::RequestLaunchTemplateDataBuilder {
    let volume = |device: &str, size: i32| {
        ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
            .device_name(device)
            .ebs(
                ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
                    .volume_size(size)
                    .volume_type(ec2::VolumeType::Gp3)
                    .encrypted(true)
                    .delete_on_termination(true)
                    .build(),
            )
            .build()
    };
    ec2::RequestLaunchTemplateData::builder()
        .image_id(image)
        .instance_type(ec2::InstanceType::from(seeded::INSTANCE_TYPE))
        .security_group_ids(security_group)
        .iam_instance_profile(
            ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(seeded::INSTANCE_PROFILE)
                .build(),
        )
        .metadata_options(
            ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(ec2::LaunchTemplateHttpTokensState::Required)
                .build(),
        )
        .monitoring(
            ec2::LaunchTemplatesMonitoringRequest::builder()
                .enabled(true)
                .build(),
        )
        .block_device_mappings(volume("/dev/xvda", 16))
        .block_device_mappings(volume("/dev/sdf", 50))
        .tag_specifications(
            ec2::LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ec2::ResourceType::Instance)
                .tags(ec2::Tag::builder().key("team").value("streaming").build())
                .build(),
        )
}

/// A group (and its template or configuration) that belongs to one test.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub group: String,
    pub template: Option<String>,
    pub configuration: Option<String>,
    /// The image version 1 of the template, or the configuration, launches.
    pub image_id: String,
}

impl Fleet {
    pub fn template(&self) -> &str {
        self.template
            .as_deref()
            .expect("a fleet on a launch template")
    }

    async fn wait_in_service(&self, emulator: &Emulator, desired: i32) {
        let cloud = emulator.cloud().await;
        let wanted = usize::try_from(desired).unwrap_or(0);
        eventually(
            &format!("{} to have {desired} instances in service", self.group),
            async || {
                let group = cloud.group(&self.group).await.ok()?;
                let in_service = group
                    .instances
                    .iter()
                    .filter(|i| i.lifecycle_state == "InService");
                (in_service.count() == wanted).then_some(())
            },
        )
        .await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 60 s.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name no other test of this process uses.
pub fn unique_name(label: &str) -> String {
    format!("{label}-{}", NEXT_NAME.fetch_add(1, Ordering::Relaxed))
}

fn test_credentials() -> (String, String) {
    ("testing".to_owned(), "testing".to_owned())
}

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory this test binary was built in (for the server's log).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(PathBuf::from))
        .unwrap_or_else(|| crate_root().join("target"))
}
