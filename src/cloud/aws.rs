//! [`Cloud`](super::Cloud) on the official AWS SDK for Rust (EC2, Auto Scaling, SSM, and
//! for `preflight` Elastic Load Balancing and IAM).
//! The only file that imports `aws_sdk_*`.
//!
//! Every SDK error goes through [`classify`] once, so the stages see an [`ErrorClass`] and
//! AWS's own code and message, never an SDK type. AWS answers are mapped into the
//! runner's types without panicking: an optional field the runner can do without gets a
//! neutral default, and a missing identifier becomes an `Invalid` error that names the
//! field.

use super::batch::Batcher;
use super::meter::{self, CallCount, Meter};
use super::{
    BuilderSpec, Cloud, CloudError, CloudResult, CommandResult, CommandStatus, ErrorClass, Group,
    GroupConfig, GroupInstance, Image, ImageCopy, ImageStatus, IngressRule, Instance,
    InstanceState, LaunchConfig, LaunchSpec, LaunchTemplate, LoadBalancer, Lock, Refresh,
    RefreshSpec, RefreshStatus, RolePolicies, RootDevice, SentCommand, Subnet, TAG_LAUNCH,
    TAG_PIPELINE, Tags, TargetGroup,
};
use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types as ec2;
use aws_sdk_ssm::types as ssm;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Every call gets this many attempts in all: throttling and 5xx answers are retried by
/// the SDK with exponential backoff, and what is still failing after that reaches the
/// stage as `Throttled` or `Transient`.
const MAX_ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// One operation, retries and their backoff included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// How long SSM may take to deliver a command to the agent, as opposed to how long the
/// script may run (`executionTimeout`).
const DELIVERY_TIMEOUT_SECS: i32 = 600;
const COMMENT_LIMIT: usize = 100;
const DESCRIPTION_LIMIT: usize = 255;
/// The largest page DescribeLaunchTemplateVersions returns.
const TEMPLATE_VERSIONS_PAGE: i32 = 200;
/// The most versions DeleteLaunchTemplateVersions takes in one call.
const TEMPLATE_VERSIONS_PER_DELETE: usize = 200;
/// DeleteLaunchTemplateVersions' per-version code for a version that does not exist.
const VERSION_GONE: &str = "launchTemplateVersionDoesNotExist";
/// How many group names DescribeAutoScalingGroups takes in one call.
const GROUP_NAMES_PER_CALL: usize = 50;
/// How many ARNs DescribeLoadBalancers takes in one call.
const LOAD_BALANCERS_PER_CALL: usize = 20;
/// Instance states `find_instances` reports: everything that still exists.
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// The AWS SDK clients of one region, and the region's call budget.
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    ssm: aws_sdk_ssm::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    iam: aws_sdk_iam::Client,
    meter: Arc<Meter>,
    /// Polls of concurrent waits, one describe call per batch.
    images: Batcher<Image>,
    instances: Batcher<Instance>,
    ssm_online: Batcher<bool>,
    /// What the clients were made from: the same account in another region shares it, with
    /// its meter and budget.
    config: aws_config::SdkConfig,
    /// This account's clients in other regions, made on first use.
    regions: std::sync::Mutex<HashMap<String, Arc<AwsCloud>>>,
}

impl AwsCloud {
    /// Images by id, in one DescribeImages; a batch that names one AWS cannot find (AWS
    /// then answers nothing for any) is asked again id by id.
    async fn images_by_id(&self, ids: Vec<String>) -> CloudResult<HashMap<String, Image>> {
        const OP: &str = "DescribeImages";
        let ask = |ids: Vec<String>| async move {
            let output = self
                .ec2
                .describe_images()
                .set_image_ids(Some(ids))
                .send()
                .await
                .classified(OP)?;
            output
                .images()
                .iter()
                .map(|found| image(OP, found).map(|i| (i.id.clone(), i)))
                .collect::<CloudResult<HashMap<_, _>>>()
        };
        one_by_one_when_one_is_missing(ids, ask).await
    }

    /// Instances by id, in one DescribeInstances (as [`AwsCloud::images_by_id`]).
    async fn instances_by_id(&self, ids: Vec<String>) -> CloudResult<HashMap<String, Instance>> {
        const OP: &str = "DescribeInstances";
        let ask = |ids: Vec<String>| async move {
            let output = self
                .ec2
                .describe_instances()
                .set_instance_ids(Some(ids))
                .send()
                .await
                .classified(OP)?;
            output
                .reservations()
                .iter()
                .flat_map(|reservation| reservation.instances())
                .map(|found| instance(OP, found).map(|i| (i.id.clone(), i)))
                .collect::<CloudResult<HashMap<_, _>>>()
        };
        one_by_one_when_one_is_missing(ids, ask).await
    }

    /// Whether each instance's SSM agent is online, in one DescribeInstanceInformation
    /// (which lists only instances with an agent, so a missing one is simply not online).
    async fn online_by_id(&self, ids: Vec<String>) -> CloudResult<HashMap<String, bool>> {
        const OP: &str = "DescribeInstanceInformation";
        let filter = ssm::InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .set_values(Some(ids.clone()))
            .build()
            .map_err(|error| {
                CloudError::new(OP, ErrorClass::Invalid, "BuildError", error.to_string())
            })?;
        let output = self
            .ssm
            .describe_instance_information()
            .filters(filter)
            .send()
            .await
            .classified(OP)?;
        Ok(ids
            .into_iter()
            .map(|id| {
                let online = output.instance_information_list().iter().any(|info| {
                    info.instance_id() == Some(id.as_str())
                        && info.ping_status() == Some(&ssm::PingStatus::Online)
                });
                (id, online)
            })
            .collect())
    }

    /// Clients for `region`, with credentials from the standard chain. `endpoint_url`
    /// overrides every service's endpoint (the emulator); without it `AWS_ENDPOINT_URL`
    /// and the per-service variables still apply.
    pub async fn connect(region: &str, endpoint_url: Option<&str>) -> AwsCloud {
        AwsCloud::connect_with(region, endpoint_url, None).await
    }

    /// As [`connect`](Self::connect), with a static access key and secret instead of the
    /// standard credential chain when `credentials` is given.
    pub async fn connect_with(
        region: &str,
        endpoint_url: Option<&str>,
        credentials: Option<(String, String)>,
    ) -> AwsCloud {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(timeouts);
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((key, secret)) = credentials {
            loader =
                loader.credentials_provider(Credentials::new(key, secret, None, None, "static"));
        }
        let meter = Arc::new(Meter::default());
        loader = loader.http_client(Metered {
            inner: aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .build_https(),
            meter: meter.clone(),
        });
        let config = loader.load().await;
        AwsCloud::from_config(config, meter)
    }

    fn from_config(config: aws_config::SdkConfig, meter: Arc<Meter>) -> AwsCloud {
        AwsCloud {
            ec2: aws_sdk_ec2::Client::new(&config),
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            meter,
            images: Batcher::default(),
            instances: Batcher::default(),
            ssm_online: Batcher::default(),
            config,
            regions: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Holds this region's calls to `rate` per second on average, `burst` at once (a rate
    /// of zero: no limit).
    pub fn limit(&self, rate: f64, burst: u32) {
        self.meter.bucket.set(rate, burst);
    }
}

// --- The call budget ---------------------------------------------------------------------

/// The SDK's HTTPS client, with every request (retries included) taking a token from the
/// region's bucket first and counted for the pipeline whose task makes it.
#[derive(Debug)]
struct Metered {
    inner: SharedHttpClient,
    meter: Arc<Meter>,
}

impl HttpClient for Metered {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(MeteredConnector {
            inner: self.inner.http_connector(settings, components),
            meter: self.meter.clone(),
        })
    }
}

#[derive(Debug)]
struct MeteredConnector {
    inner: SharedHttpConnector,
    meter: Arc<Meter>,
}

impl HttpConnector for MeteredConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let action = action_of(&request);
        let pipeline = meter::current_pipeline();
        let (inner, meter) = (self.inner.clone(), self.meter.clone());
        HttpConnectorFuture::new(async move {
            meter.bucket.take().await;
            meter.ledger.count_for(pipeline, &action);
            inner.call(request).await
        })
    }
}

/// The AWS action a request asks for: the JSON protocol's `X-Amz-Target` (SSM), else the
/// query protocol's `Action=` (EC2, Auto Scaling).
fn action_of(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    request
        .body()
        .bytes()
        .and_then(|body| std::str::from_utf8(body).ok())
        .and_then(|body| {
            body.split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Unknown".into())
}

// --- Errors ------------------------------------------------------------------------------

/// The one place an SDK error becomes a [`CloudError`]. Network failures and timeouts
/// are transient; an answer from AWS is classified by its error code, then its HTTP
/// status.
fn classify<E>(operation: &'static str, error: &SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::DispatchFailure(failure) => {
            let (class, code) = if lacks_credentials(error) {
                (ErrorClass::NoCredentials, "NoCredentials")
            } else if failure.is_io() {
                (ErrorClass::Unreachable, "EndpointUnreachable")
            } else {
                (ErrorClass::Transient, "DispatchFailure")
            };
            CloudError::new(
                operation,
                class,
                code,
                DisplayErrorContext(error).to_string(),
            )
        }
        SdkError::TimeoutError(_) => CloudError::new(
            operation,
            ErrorClass::Transient,
            "Timeout",
            DisplayErrorContext(error).to_string(),
        ),
        SdkError::ConstructionFailure(_) => CloudError::new(
            operation,
            ErrorClass::Invalid,
            "ConstructionFailure",
            DisplayErrorContext(error).to_string(),
        ),
        _ => {
            let status = error
                .raw_response()
                .map(|response| response.status().as_u16());
            let code = error.code().unwrap_or_default();
            let message = match error.message() {
                Some(message) => message.to_owned(),
                None => DisplayErrorContext(error).to_string(),
            };
            let shown = match (code, status) {
                ("", Some(status)) => format!("HTTP {status}"),
                ("", None) => "Unknown".to_owned(),
                (code, _) => code.to_owned(),
            };
            CloudError::new(
                operation,
                CloudError::classify(code, status),
                shown,
                message,
            )
        }
    }
}

/// Whether the request never left because no credentials could be found.
fn lacks_credentials(error: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(CredentialsError::CredentialsNotLoaded(_)) =
            current.downcast_ref::<CredentialsError>()
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Turns an SDK result into a classified one: `aws_call.send().await.classified("Op")?`.
trait Classified<T> {
    fn classified(self, operation: &'static str) -> CloudResult<T>;
}

impl<T, E> Classified<T> for Result<T, SdkError<E>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    fn classified(self, operation: &'static str) -> CloudResult<T> {
        match self {
            Ok(value) => {
                tracing::debug!(operation, "AWS call");
                Ok(value)
            }
            Err(error) => {
                let error = classify(operation, &error);
                tracing::debug!(operation, code = %error.code, class = %error.class, "AWS call failed");
                Err(error)
            }
        }
    }
}

/// Treats a `NotFound` failure as "nothing there".
fn absent_is_none<T>(result: CloudResult<T>) -> CloudResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is(ErrorClass::NotFound) => Ok(None),
        Err(error) => Err(error),
    }
}

fn not_found(operation: &'static str, code: &str, message: impl Into<String>) -> CloudError {
    CloudError::new(operation, ErrorClass::NotFound, code, message)
}

/// A field AWS always sends, missing from its answer.
fn required(operation: &'static str, field: &str, value: Option<&str>) -> CloudResult<String> {
    match value {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => Err(CloudError::new(
            operation,
            ErrorClass::Invalid,
            "MissingField",
            format!("the answer has no {field}"),
        )),
    }
}

// --- Mapping AWS answers -----------------------------------------------------------------

fn ec2_tags(tags: &[ec2::Tag]) -> Tags {
    tags.iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn group_tags(tags: &[asg::TagDescription]) -> Tags {
    tags.iter()
        .filter_map(|tag| {
            Some((
                tag.key()?.to_owned(),
                tag.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// EC2 filters matching every tag in `tags`.
/// The runner's view of a group as DescribeAutoScalingGroups describes it.
fn auto_scaling_group(group: &asg::AutoScalingGroup) -> CloudResult<Group> {
    let config = if group.mixed_instances_policy().is_some() {
        GroupConfig::Other
    } else {
        group_config(group.launch_template(), group.launch_configuration_name())
    };
    Ok(Group {
        name: group
            .auto_scaling_group_name()
            .unwrap_or_default()
            .to_owned(),
        min_size: count(group.min_size()),
        max_size: count(group.max_size()),
        desired_capacity: count(group.desired_capacity()),
        config,
        subnets: group
            .vpc_zone_identifier()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|subnet| !subnet.is_empty())
            .map(str::to_owned)
            .collect(),
        target_groups: group.target_group_arns().to_vec(),
        health_check_type: group.health_check_type().unwrap_or("EC2").to_owned(),
        health_check_grace_period: count(group.health_check_grace_period()),
        instances: group
            .instances()
            .iter()
            .map(group_instance)
            .collect::<CloudResult<_>>()?,
        tags: group_tags(group.tags()),
        new_instances_protected: group
            .new_instances_protected_from_scale_in()
            .unwrap_or(false),
    })
}

fn target_group(group: &aws_sdk_elasticloadbalancingv2::types::TargetGroup) -> TargetGroup {
    TargetGroup {
        arn: group.target_group_arn().unwrap_or_default().to_owned(),
        name: group.target_group_name().unwrap_or_default().to_owned(),
        protocol: group.protocol().map(|p| p.as_str().to_owned()),
        port: group.port().and_then(|p| u16::try_from(p).ok()),
        health_check_protocol: group.health_check_protocol().map(|p| p.as_str().to_owned()),
        health_check_path: group.health_check_path().map(str::to_owned),
        load_balancers: group.load_balancer_arns().to_vec(),
    }
}

/// The inbound rules of `group` that admit one of `sources`.
fn ingress_rules(group: &ec2::SecurityGroup, sources: &[String]) -> Vec<IngressRule> {
    group
        .ip_permissions()
        .iter()
        .filter_map(|permission| {
            let admitted: Vec<String> = permission
                .user_id_group_pairs()
                .iter()
                .filter_map(|pair| pair.group_id())
                .filter(|id| sources.iter().any(|s| s == id))
                .map(str::to_owned)
                .collect();
            (!admitted.is_empty()).then(|| IngressRule {
                group_id: group.group_id().unwrap_or_default().to_owned(),
                group_name: group.group_name().unwrap_or_default().to_owned(),
                protocol: permission.ip_protocol().unwrap_or("-1").to_owned(),
                from_port: permission.from_port(),
                to_port: permission.to_port(),
                sources: admitted,
            })
        })
        .collect()
}

/// IAM sends policy documents URL-encoded (RFC 3986); this gives back their JSON.
fn decode_policy_document(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[at] {
            b'%' if at + 2 < bytes.len() => match (hex(bytes[at + 1]), hex(bytes[at + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    at += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tag_filters(tags: &Tags) -> Vec<ec2::Filter> {
    tags.iter()
        .map(|(key, value)| {
            ec2::Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build()
        })
        .collect()
}

fn ec2_tag_list(tags: &Tags) -> Vec<ec2::Tag> {
    tags.iter()
        .map(|(key, value)| ec2::Tag::builder().key(key).value(value).build())
        .collect()
}

/// A non-negative count from AWS's `i32`.
fn count(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// An AWS `i32` parameter from one of ours, saturating at `i32::MAX`.
fn int(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn truncate(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

/// What a group or one of its instances launches from. A group without a version
/// launches the template's default version, as AWS does.
fn group_config(
    template: Option<&asg::LaunchTemplateSpecification>,
    configuration: Option<&str>,
) -> GroupConfig {
    if let Some(template) = template {
        return GroupConfig::Template {
            id: template.launch_template_id().unwrap_or_default().to_owned(),
            name: template
                .launch_template_name()
                .unwrap_or_default()
                .to_owned(),
            version: template.version().unwrap_or("$Default").to_owned(),
        };
    }
    match configuration {
        Some(name) if !name.is_empty() => GroupConfig::Configuration {
            name: name.to_owned(),
        },
        _ => GroupConfig::Other,
    }
}

fn group_instance(instance: &asg::Instance) -> CloudResult<GroupInstance> {
    Ok(GroupInstance {
        id: required(
            "DescribeAutoScalingGroups",
            "instance id",
            instance.instance_id(),
        )?,
        lifecycle_state: instance
            .lifecycle_state()
            .map_or("Pending", |state| state.as_str())
            .to_owned(),
        health_status: instance.health_status().unwrap_or("Healthy").to_owned(),
        config: group_config(
            instance.launch_template(),
            instance.launch_configuration_name(),
        ),
        protected_from_scale_in: instance.protected_from_scale_in().unwrap_or(false),
    })
}

fn image(operation: &'static str, image: &ec2::Image) -> CloudResult<Image> {
    let status = match image.state() {
        Some(ec2::ImageState::Pending) => ImageStatus::Pending,
        Some(ec2::ImageState::Available) => ImageStatus::Available,
        Some(ec2::ImageState::Failed | ec2::ImageState::Error) => ImageStatus::Failed(
            image
                .state_reason()
                .and_then(|r| r.message())
                .map(str::to_owned),
        ),
        Some(other) => ImageStatus::Other(other.as_str().to_owned()),
        None => ImageStatus::Other("unknown".to_owned()),
    };
    let root_device = image.root_device_name().map(|name| RootDevice {
        name: name.to_owned(),
        snapshot_size_gb: image
            .block_device_mappings()
            .iter()
            .find(|mapping| mapping.device_name() == Some(name))
            .and_then(|mapping| mapping.ebs())
            .and_then(|ebs| ebs.volume_size())
            .and_then(|size| u32::try_from(size).ok()),
    });
    Ok(Image {
        id: required(operation, "image id", image.image_id())?,
        name: image.name().unwrap_or_default().to_owned(),
        status,
        tags: ec2_tags(image.tags()),
        root_device,
        snapshots: image
            .block_device_mappings()
            .iter()
            .filter_map(|mapping| mapping.ebs()?.snapshot_id())
            .map(str::to_owned)
            .collect(),
    })
}

fn instance(operation: &'static str, instance: &ec2::Instance) -> CloudResult<Instance> {
    let id = required(operation, "instance id", instance.instance_id())?;
    let state_name = instance
        .state()
        .and_then(|state| state.name())
        .map(|name| name.as_str())
        .unwrap_or_default();
    let state = InstanceState::parse(state_name).ok_or_else(|| {
        CloudError::new(
            operation,
            ErrorClass::Invalid,
            "UnknownInstanceState",
            format!("instance {id} is in state {state_name:?}, which the runner does not know"),
        )
    })?;
    Ok(Instance {
        id,
        state,
        image_id: instance.image_id().map(str::to_owned),
        tags: ec2_tags(instance.tags()),
    })
}

fn template_version(version: &ec2::LaunchTemplateVersion) -> CloudResult<LaunchConfig> {
    let number = version.version_number().ok_or_else(|| {
        CloudError::new(
            "DescribeLaunchTemplateVersions",
            ErrorClass::Invalid,
            "MissingField",
            "the answer has no version number",
        )
    })?;
    Ok(LaunchConfig {
        id: number.to_string(),
        image_id: version
            .launch_template_data()
            .and_then(|data| data.image_id())
            .unwrap_or_default()
            .to_owned(),
        description: version.version_description().unwrap_or_default().to_owned(),
        launch: version
            .launch_template_data()
            .map(|data| data.tag_specifications())
            .unwrap_or_default()
            .iter()
            .filter(|spec| spec.resource_type() == Some(&ec2::ResourceType::Instance))
            .flat_map(|spec| spec.tags())
            .find(|tag| tag.key() == Some(TAG_LAUNCH))
            .and_then(|tag| tag.value())
            .map(str::to_owned),
        created: version.create_time().map(|t| t.secs()),
    })
}

fn refresh(refresh: &asg::InstanceRefresh) -> CloudResult<Refresh> {
    Ok(Refresh {
        id: required(
            "DescribeInstanceRefreshes",
            "refresh id",
            refresh.instance_refresh_id(),
        )?,
        status: RefreshStatus::parse(refresh.status().map_or("Pending", |s| s.as_str())),
        status_reason: refresh.status_reason().map(str::to_owned),
        percentage: refresh
            .percentage_complete()
            .map_or(0, |p| u8::try_from(p.clamp(0, 100)).unwrap_or(0)),
        instances_to_update: count(refresh.instances_to_update()),
        desired_template_version: refresh
            .desired_configuration()
            .and_then(|desired| desired.launch_template())
            .and_then(|template| template.version())
            .map(str::to_owned),
        started: refresh.start_time().map(|t| t.secs()),
        ended: refresh.end_time().map(|t| t.secs()),
    })
}

/// Asks `ask` for all `ids` at once; when AWS refuses the batch because one of them does
/// not exist (EC2 then answers nothing for any), asks for each alone and keeps what exists.
async fn one_by_one_when_one_is_missing<V, F, Fut>(
    ids: Vec<String>,
    ask: F,
) -> CloudResult<HashMap<String, V>>
where
    F: Fn(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = CloudResult<HashMap<String, V>>>,
{
    if ids.len() == 1 {
        return match ask(ids).await {
            Err(e) if e.is(ErrorClass::NotFound) => Ok(HashMap::new()),
            other => other,
        };
    }
    match ask(ids.clone()).await {
        Err(e) if e.is(ErrorClass::NotFound) => {
            let mut found = HashMap::new();
            for id in ids {
                match ask(vec![id]).await {
                    Ok(one) => found.extend(one),
                    Err(e) if e.is(ErrorClass::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(found)
        }
        other => other,
    }
}

/// Standard base64, as EC2 and Auto Scaling expect user data.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, sextet) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The builder's `Name` tag: which pipeline it bakes for, when the tags say.
fn builder_name(tags: &Tags) -> String {
    match tags.get(TAG_PIPELINE) {
        Some(pipeline) => format!("red5-rollout builder {pipeline}"),
        None => "red5-rollout builder".to_owned(),
    }
}

/// Whether `template` is a launch template id rather than a name.
fn is_template_id(template: &str) -> bool {
    template.starts_with("lt-")
}

fn launch_template_spec(template: &str, version: &str) -> asg::LaunchTemplateSpecification {
    let spec = asg::LaunchTemplateSpecification::builder().version(version);
    if is_template_id(template) {
        spec.launch_template_id(template).build()
    } else {
        spec.launch_template_name(template).build()
    }
}

/// The source version's volumes with the root volume resized to `size_gb` (its other
/// settings, such as encryption, kept), or a root volume alone when the source has none.
fn template_volumes(
    source: Option<&ec2::ResponseLaunchTemplateData>,
    root_device: &str,
    size_gb: u32,
) -> Vec<ec2::LaunchTemplateBlockDeviceMappingRequest> {
    let mut volumes: Vec<ec2::LaunchTemplateBlockDeviceMappingRequest> = source
        .map(|data| data.block_device_mappings())
        .unwrap_or_default()
        .iter()
        .map(|mapping| {
            let ebs = mapping.ebs().map(|ebs| {
                let resized = mapping.device_name() == Some(root_device);
                ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
                    .set_encrypted(ebs.encrypted())
                    .set_delete_on_termination(ebs.delete_on_termination())
                    .set_iops(ebs.iops())
                    .set_kms_key_id(ebs.kms_key_id().map(str::to_owned))
                    // The root volume comes from the new image's snapshot, not the old one.
                    .set_snapshot_id(if resized {
                        None
                    } else {
                        ebs.snapshot_id().map(str::to_owned)
                    })
                    .set_volume_size(if resized {
                        Some(int(size_gb.into()))
                    } else {
                        ebs.volume_size()
                    })
                    .set_volume_type(ebs.volume_type().cloned())
                    .set_throughput(ebs.throughput())
                    .build()
            });
            ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
                .set_device_name(mapping.device_name().map(str::to_owned))
                .set_virtual_name(mapping.virtual_name().map(str::to_owned))
                .set_no_device(mapping.no_device().map(str::to_owned))
                .set_ebs(ebs)
                .build()
        })
        .collect();
    let has_root = volumes
        .iter()
        .any(|v| v.device_name() == Some(root_device) && v.ebs().is_some());
    if !has_root {
        volumes.retain(|v| v.device_name() != Some(root_device));
        volumes.insert(
            0,
            ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(root_device)
                .ebs(
                    ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(int(size_gb.into()))
                        .volume_type(ec2::VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        );
    }
    volumes
}

/// The source version's network interfaces with the pipeline's security groups (and public
/// IP, when it sets one) on the primary interface, and every other setting kept.
fn template_interfaces(
    source: &[ec2::LaunchTemplateInstanceNetworkInterfaceSpecification],
    security_group_ids: &[String],
    public_ip: Option<bool>,
) -> Vec<ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest> {
    source
        .iter()
        .map(|interface| {
            let primary = interface.device_index().unwrap_or(0) == 0;
            ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                .set_associate_carrier_ip_address(interface.associate_carrier_ip_address())
                .set_associate_public_ip_address(match (primary, public_ip) {
                    (true, Some(public_ip)) => Some(public_ip),
                    _ => interface.associate_public_ip_address(),
                })
                .set_delete_on_termination(interface.delete_on_termination())
                .set_description(interface.description().map(str::to_owned))
                .set_device_index(interface.device_index())
                .set_groups(Some(if primary {
                    security_group_ids.to_vec()
                } else {
                    interface.groups().to_vec()
                }))
                .set_interface_type(interface.interface_type().map(str::to_owned))
                .set_ipv6_address_count(interface.ipv6_address_count())
                .set_network_interface_id(interface.network_interface_id().map(str::to_owned))
                .set_private_ip_address(interface.private_ip_address().map(str::to_owned))
                .set_secondary_private_ip_address_count(
                    interface.secondary_private_ip_address_count(),
                )
                .set_subnet_id(interface.subnet_id().map(str::to_owned))
                .set_network_card_index(interface.network_card_index())
                .set_ipv4_prefix_count(interface.ipv4_prefix_count())
                .set_ipv6_prefix_count(interface.ipv6_prefix_count())
                .set_primary_ipv6(interface.primary_ipv6())
                .build()
        })
        .collect()
}

/// The source version's tag specifications with `tags` added to the instances' (the
/// runner's tags win on a clash; every other tag and resource type is kept).
fn template_tag_specifications(
    source: Option<&ec2::ResponseLaunchTemplateData>,
    tags: &Tags,
) -> Vec<ec2::LaunchTemplateTagSpecificationRequest> {
    let mut by_type: Vec<(ec2::ResourceType, Tags)> = source
        .map(|data| data.tag_specifications())
        .unwrap_or_default()
        .iter()
        .filter_map(|spec| Some((spec.resource_type()?.clone(), ec2_tags(spec.tags()))))
        .collect();
    match by_type
        .iter_mut()
        .find(|(kind, _)| *kind == ec2::ResourceType::Instance)
    {
        Some((_, instance_tags)) => instance_tags.extend(tags.clone()),
        None if !tags.is_empty() => by_type.push((ec2::ResourceType::Instance, tags.clone())),
        None => {}
    }
    by_type
        .into_iter()
        .filter(|(_, tags)| !tags.is_empty())
        .map(|(kind, tags)| {
            ec2::LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(kind)
                .set_tags(Some(ec2_tag_list(&tags)))
                .build()
        })
        .collect()
}

impl AwsCloud {
    /// This account's images that match `filters`, every page.
    async fn own_images(&self, filters: Vec<ec2::Filter>) -> CloudResult<Vec<Image>> {
        const OP: &str = "DescribeImages";
        let pages = self
            .ec2
            .describe_images()
            .owners("self")
            .set_filters(Some(filters))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        pages
            .iter()
            .flat_map(|page| page.images())
            .map(|found| image(OP, found))
            .collect()
    }

    /// Writes a lock parameter; without `overwrite`, `Conflict` when it exists.
    async fn write_lock(&self, name: &str, lock: &Lock, overwrite: bool) -> CloudResult<()> {
        const OP: &str = "PutParameter";
        let value = serde_json::to_string(lock).map_err(|error| {
            CloudError::new(OP, ErrorClass::Invalid, "LockEncoding", error.to_string())
        })?;
        self.ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ssm::ParameterType::String)
            .overwrite(overwrite)
            .send()
            .await
            .classified(OP)?;
        Ok(())
    }

    /// Adds `tags` to any EC2 resource (CreateTags).
    async fn tag_resource(&self, resource_id: &str, tags: &Tags) -> CloudResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        self.ec2
            .create_tags()
            .resources(resource_id)
            .set_tags(Some(ec2_tag_list(tags)))
            .send()
            .await
            .classified("CreateTags")?;
        Ok(())
    }

    /// What version `version` of `template` holds (`None` when AWS sends no data).
    async fn template_data(
        &self,
        template: &str,
        version: &str,
    ) -> CloudResult<Option<ec2::ResponseLaunchTemplateData>> {
        const OP: &str = "DescribeLaunchTemplateVersions";
        let request = self
            .ec2
            .describe_launch_template_versions()
            .versions(version);
        let request = if is_template_id(template) {
            request.launch_template_id(template)
        } else {
            request.launch_template_name(template)
        };
        let output = request.send().await.classified(OP)?;
        match output.launch_template_versions().first() {
            Some(found) => Ok(found.launch_template_data().cloned()),
            None => Err(not_found(
                OP,
                "InvalidLaunchTemplateVersion.NotFound",
                format!("launch template {template} has no version {version}"),
            )),
        }
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    fn calls(&self, pipeline: &str) -> Option<CallCount> {
        Some(self.meter.ledger.of(pipeline))
    }

    fn in_region(&self, region: &str) -> CloudResult<Arc<dyn Cloud>> {
        let mut regions = self
            .regions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cloud = regions.entry(region.to_owned()).or_insert_with(|| {
            let config = self
                .config
                .to_builder()
                .region(Region::new(region.to_owned()))
                .build();
            Arc::new(AwsCloud::from_config(config, self.meter.clone()))
        });
        Ok(cloud.clone())
    }

    async fn group(&self, name: &str) -> CloudResult<Group> {
        const OP: &str = "DescribeAutoScalingGroups";
        self.groups(&[name.to_owned()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                not_found(
                    OP,
                    "GroupNotFound",
                    format!("there is no Auto Scaling group named {name} in this region"),
                )
            })
    }

    async fn groups(&self, names: &[String]) -> CloudResult<Vec<Group>> {
        const OP: &str = "DescribeAutoScalingGroups";
        let mut found = Vec::new();
        // AWS takes up to 50 names per call.
        for chunk in names.chunks(GROUP_NAMES_PER_CALL) {
            let pages = self
                .autoscaling
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .into_paginator()
                .send()
                .try_collect()
                .await
                .classified(OP)?;
            for group in pages.iter().flat_map(|page| page.auto_scaling_groups()) {
                found.push(auto_scaling_group(group)?);
            }
        }
        Ok(found)
    }

    async fn images_tagged(&self, key: &str) -> CloudResult<Vec<Image>> {
        self.own_images(vec![
            ec2::Filter::builder().name("tag-key").values(key).build(),
        ])
        .await
    }

    async fn find_images(&self, tags: &Tags) -> CloudResult<Vec<Image>> {
        self.own_images(tag_filters(tags)).await
    }

    async fn image(&self, id: &str) -> CloudResult<Image> {
        const OP: &str = "DescribeImages";
        self.images
            .get(
                id,
                |ids| self.images_by_id(ids),
                |id| {
                    Err(not_found(
                        OP,
                        "InvalidAMIID.NotFound",
                        format!("the image {id} does not exist"),
                    ))
                },
            )
            .await
    }

    async fn find_instances(&self, tags: &Tags) -> CloudResult<Vec<Instance>> {
        const OP: &str = "DescribeInstances";
        let state_filter = ec2::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
            .build();
        let pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(tag_filters(tags)))
            .filters(state_filter)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        pages
            .iter()
            .flat_map(|page| page.reservations())
            .flat_map(|reservation| reservation.instances())
            .map(|found| instance(OP, found))
            .collect()
    }

    async fn instance_by_client_token(&self, token: &str) -> CloudResult<Option<Instance>> {
        const OP: &str = "DescribeInstances";
        let token_filter = ec2::Filter::builder()
            .name("client-token")
            .values(token)
            .build();
        let state_filter = ec2::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| (*s).to_owned()).collect()))
            .build();
        let output = self
            .ec2
            .describe_instances()
            .filters(token_filter)
            .filters(state_filter)
            .send()
            .await
            .classified(OP)?;
        output
            .reservations()
            .iter()
            .flat_map(|reservation| reservation.instances())
            .next()
            .map(|found| instance(OP, found))
            .transpose()
    }

    async fn instance(&self, id: &str) -> CloudResult<Instance> {
        const OP: &str = "DescribeInstances";
        self.instances
            .get(
                id,
                |ids| self.instances_by_id(ids),
                |id| {
                    Err(not_found(
                        OP,
                        "InvalidInstanceID.NotFound",
                        format!("the instance {id} does not exist"),
                    ))
                },
            )
            .await
    }

    async fn template_versions(&self, template: &str) -> CloudResult<Vec<LaunchConfig>> {
        const OP: &str = "DescribeLaunchTemplateVersions";
        let request = self.ec2.describe_launch_template_versions();
        let request = if is_template_id(template) {
            request.launch_template_id(template)
        } else {
            request.launch_template_name(template)
        };
        let pages = request
            .into_paginator()
            .page_size(TEMPLATE_VERSIONS_PAGE)
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        let mut versions = pages
            .iter()
            .flat_map(|page| page.launch_template_versions())
            .map(template_version)
            .collect::<CloudResult<Vec<_>>>()?;
        versions.sort_by_key(|version| version.id.parse::<u64>().unwrap_or(u64::MAX));
        Ok(versions)
    }

    async fn launch_template(&self, template: &str) -> CloudResult<LaunchTemplate> {
        const OP: &str = "DescribeLaunchTemplates";
        let request = self.ec2.describe_launch_templates();
        let request = if is_template_id(template) {
            request.launch_template_ids(template)
        } else {
            request.launch_template_names(template)
        };
        let output = request.send().await.classified(OP)?;
        let Some(found) = output.launch_templates().first() else {
            return Err(not_found(
                OP,
                "InvalidLaunchTemplateName.NotFoundException",
                format!("there is no launch template {template}"),
            ));
        };
        let number = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        Ok(LaunchTemplate {
            id: required(OP, "launch template id", found.launch_template_id())?,
            name: found.launch_template_name().unwrap_or_default().to_owned(),
            default_version: number(found.default_version_number()),
            latest_version: number(found.latest_version_number()),
        })
    }

    async fn launch_configurations(&self, prefix: &str) -> CloudResult<Vec<LaunchConfig>> {
        const OP: &str = "DescribeLaunchConfigurations";
        let pages = self
            .autoscaling
            .describe_launch_configurations()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        let mut configurations = Vec::new();
        for configuration in pages.iter().flat_map(|page| page.launch_configurations()) {
            let name = configuration
                .launch_configuration_name()
                .unwrap_or_default();
            if name.is_empty() || !name.starts_with(prefix) {
                continue;
            }
            configurations.push(LaunchConfig {
                id: name.to_owned(),
                image_id: configuration.image_id().unwrap_or_default().to_owned(),
                description: name.to_owned(),
                launch: None,
                created: configuration.created_time().map(|t| t.secs()),
            });
        }
        Ok(configurations)
    }

    async fn config_image(&self, config: &GroupConfig) -> CloudResult<Option<String>> {
        match config {
            GroupConfig::Template { id, name, version } => {
                const OP: &str = "DescribeLaunchTemplateVersions";
                let request = self
                    .ec2
                    .describe_launch_template_versions()
                    .versions(version);
                let request = if id.is_empty() {
                    request.launch_template_name(name)
                } else {
                    request.launch_template_id(id)
                };
                let output = request.send().await.classified(OP)?;
                let Some(found) = output.launch_template_versions().first() else {
                    return Err(not_found(
                        OP,
                        "InvalidLaunchTemplateVersion.NotFound",
                        format!("launch template {name} has no version {version}"),
                    ));
                };
                Ok(found
                    .launch_template_data()
                    .and_then(|data| data.image_id())
                    .map(str::to_owned))
            }
            GroupConfig::Configuration { name } => {
                const OP: &str = "DescribeLaunchConfigurations";
                let output = self
                    .autoscaling
                    .describe_launch_configurations()
                    .launch_configuration_names(name)
                    .send()
                    .await
                    .classified(OP)?;
                let Some(found) = output.launch_configurations().first() else {
                    return Err(not_found(
                        OP,
                        "LaunchConfigurationNotFound",
                        format!("there is no launch configuration named {name}"),
                    ));
                };
                Ok(found
                    .image_id()
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned))
            }
            GroupConfig::Other => Ok(None),
        }
    }

    async fn target_groups(&self, arns: &[String]) -> CloudResult<Vec<TargetGroup>> {
        const OP: &str = "DescribeTargetGroups";
        if arns.is_empty() {
            return Ok(Vec::new());
        }
        let pages = self
            .elb
            .describe_target_groups()
            .set_target_group_arns(Some(arns.to_vec()))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        Ok(pages
            .iter()
            .flat_map(|page| page.target_groups())
            .map(target_group)
            .collect())
    }

    async fn load_balancers(&self, arns: &[String]) -> CloudResult<Vec<LoadBalancer>> {
        const OP: &str = "DescribeLoadBalancers";
        let mut found = Vec::new();
        for chunk in arns.chunks(LOAD_BALANCERS_PER_CALL) {
            let pages = self
                .elb
                .describe_load_balancers()
                .set_load_balancer_arns(Some(chunk.to_vec()))
                .into_paginator()
                .send()
                .try_collect()
                .await
                .classified(OP)?;
            for balancer in pages.iter().flat_map(|page| page.load_balancers()) {
                found.push(LoadBalancer {
                    arn: balancer.load_balancer_arn().unwrap_or_default().to_owned(),
                    name: balancer.load_balancer_name().unwrap_or_default().to_owned(),
                    subnets: balancer
                        .availability_zones()
                        .iter()
                        .filter_map(|zone| zone.subnet_id())
                        .map(str::to_owned)
                        .collect(),
                });
            }
        }
        Ok(found)
    }

    async fn subnet(&self, id_or_name: &str) -> CloudResult<Subnet> {
        const OP: &str = "DescribeSubnets";
        let request = self.ec2.describe_subnets();
        let request = if id_or_name.starts_with("subnet-") {
            request.subnet_ids(id_or_name)
        } else {
            request.filters(
                ec2::Filter::builder()
                    .name("tag:Name")
                    .values(id_or_name)
                    .build(),
            )
        };
        let output = request.send().await.classified(OP)?;
        match output.subnets() {
            [subnet] => Ok(Subnet {
                id: required(OP, "subnet id", subnet.subnet_id())?,
                vpc_id: subnet.vpc_id().unwrap_or_default().to_owned(),
                maps_public_ip: subnet.map_public_ip_on_launch().unwrap_or(false),
            }),
            [] => Err(not_found(
                OP,
                "SubnetNotFound",
                format!("no subnet is {id_or_name:?} (by id or Name tag)"),
            )),
            several => Err(CloudError::new(
                OP,
                ErrorClass::Invalid,
                "AmbiguousSubnetName",
                format!(
                    "{} subnets have the Name tag {id_or_name:?}: name the subnet by its id",
                    several.len()
                ),
            )),
        }
    }

    async fn vpc_endpoint_services(&self, vpc_id: &str) -> CloudResult<Vec<String>> {
        const OP: &str = "DescribeVpcEndpoints";
        let pages = self
            .ec2
            .describe_vpc_endpoints()
            .filters(ec2::Filter::builder().name("vpc-id").values(vpc_id).build())
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        Ok(pages
            .iter()
            .flat_map(|page| page.vpc_endpoints())
            .filter(|endpoint| {
                !matches!(
                    endpoint.state(),
                    Some(ec2::State::Deleted | ec2::State::Deleting | ec2::State::Failed)
                )
            })
            .filter_map(|endpoint| endpoint.service_name())
            .map(str::to_owned)
            .collect())
    }

    async fn ingress_from(&self, source_groups: &[String]) -> CloudResult<Vec<IngressRule>> {
        const OP: &str = "DescribeSecurityGroups";
        if source_groups.is_empty() {
            return Ok(Vec::new());
        }
        let pages = self
            .ec2
            .describe_security_groups()
            .filters(
                ec2::Filter::builder()
                    .name("ip-permission.group-id")
                    .set_values(Some(source_groups.to_vec()))
                    .build(),
            )
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        Ok(pages
            .iter()
            .flat_map(|page| page.security_groups())
            .flat_map(|group| ingress_rules(group, source_groups))
            .collect())
    }

    async fn instance_profile_roles(&self, name: &str) -> CloudResult<Vec<String>> {
        let output = self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .classified("GetInstanceProfile")?;
        Ok(output
            .instance_profile()
            .map(|profile| {
                profile
                    .roles()
                    .iter()
                    .map(|role| role.role_name().to_owned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn role_policies(&self, role: &str) -> CloudResult<RolePolicies> {
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified("ListAttachedRolePolicies")?;
        let inline = self
            .iam
            .list_role_policies()
            .role_name(role)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified("ListRolePolicies")?;
        Ok(RolePolicies {
            attached: attached
                .iter()
                .flat_map(|page| page.attached_policies())
                .filter_map(|policy| policy.policy_arn())
                .map(str::to_owned)
                .collect(),
            inline: inline
                .iter()
                .flat_map(|page| page.policy_names())
                .cloned()
                .collect(),
        })
    }

    async fn role_policy_document(&self, role: &str, policy: &str) -> CloudResult<String> {
        let output = self
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
            .classified("GetRolePolicy")?;
        Ok(decode_policy_document(output.policy_document()))
    }

    async fn policy_document(&self, arn: &str) -> CloudResult<String> {
        const OP: &str = "GetPolicyVersion";
        let policy = self
            .iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .classified("GetPolicy")?;
        let version = required(
            "GetPolicy",
            "default version",
            policy.policy().and_then(|p| p.default_version_id()),
        )?;
        let output = self
            .iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .classified(OP)?;
        let document = required(
            OP,
            "policy document",
            output.policy_version().and_then(|v| v.document()),
        )?;
        Ok(decode_policy_document(&document))
    }

    async fn resolve_subnet(&self, id_or_name: &str) -> CloudResult<String> {
        const OP: &str = "DescribeSubnets";
        if id_or_name.starts_with("subnet-") {
            self.ec2
                .describe_subnets()
                .subnet_ids(id_or_name)
                .send()
                .await
                .classified(OP)?;
            return Ok(id_or_name.to_owned());
        }
        let name_filter = ec2::Filter::builder()
            .name("tag:Name")
            .values(id_or_name)
            .build();
        let output = self
            .ec2
            .describe_subnets()
            .filters(name_filter)
            .send()
            .await
            .classified(OP)?;
        let ids: Vec<&str> = output
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id())
            .collect();
        match ids.as_slice() {
            [id] => Ok((*id).to_owned()),
            [] => Err(not_found(
                OP,
                "SubnetNotFound",
                format!("no subnet has the Name tag {id_or_name:?}"),
            )),
            several => Err(CloudError::new(
                OP,
                ErrorClass::Invalid,
                "AmbiguousSubnetName",
                format!(
                    "{} subnets have the Name tag {id_or_name:?} ({}): name the subnet by its id",
                    several.len(),
                    several.join(", ")
                ),
            )),
        }
    }

    async fn resolve_security_groups(&self, ids_or_names: &[String]) -> CloudResult<Vec<String>> {
        const OP: &str = "DescribeSecurityGroups";
        let names: BTreeSet<&str> = ids_or_names
            .iter()
            .map(String::as_str)
            .filter(|entry| !entry.starts_with("sg-"))
            .collect();
        if names.is_empty() {
            return Ok(ids_or_names.to_vec());
        }
        let name_filter = ec2::Filter::builder()
            .name("group-name")
            .set_values(Some(names.iter().map(|n| (*n).to_owned()).collect()))
            .build();
        let pages = self
            .ec2
            .describe_security_groups()
            .filters(name_filter)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        let found: Vec<(&str, &str)> = pages
            .iter()
            .flat_map(|page| page.security_groups())
            .filter_map(|group| Some((group.group_name()?, group.group_id()?)))
            .collect();
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !found.iter().any(|(found_name, _)| found_name == name))
            .collect();
        if !missing.is_empty() {
            return Err(not_found(
                OP,
                "InvalidGroup.NotFound",
                format!("no security group is named {}", missing.join(", ")),
            ));
        }
        let mut ids = Vec::with_capacity(ids_or_names.len());
        for entry in ids_or_names {
            if entry.starts_with("sg-") {
                ids.push(entry.clone());
                continue;
            }
            let matching: Vec<&str> = found
                .iter()
                .filter(|(name, _)| name == entry)
                .map(|(_, id)| *id)
                .collect();
            if let [id] = matching.as_slice() {
                ids.push((*id).to_owned());
            } else {
                return Err(CloudError::new(
                    OP,
                    ErrorClass::Invalid,
                    "AmbiguousGroupName",
                    format!(
                        "{} security groups are named {entry} ({}): name the group by its id",
                        matching.len(),
                        matching.join(", ")
                    ),
                ));
            }
        }
        Ok(ids)
    }

    async fn run_builder(&self, spec: &BuilderSpec) -> CloudResult<String> {
        const OP: &str = "RunInstances";
        let mut tags = spec.tags.clone();
        tags.entry("Name".to_owned())
            .or_insert_with(|| builder_name(&spec.tags));
        let tag_spec = |resource| {
            ec2::TagSpecification::builder()
                .resource_type(resource)
                .set_tags(Some(ec2_tag_list(&tags)))
                .build()
        };
        let root_volume = ec2::BlockDeviceMapping::builder()
            .device_name(&spec.root_device_name)
            .ebs(
                ec2::EbsBlockDevice::builder()
                    .volume_size(int(spec.volume_size_gb.into()))
                    .volume_type(ec2::VolumeType::Gp3)
                    .delete_on_termination(true)
                    .build(),
            )
            .build();
        let output = self
            .ec2
            .run_instances()
            .min_count(1)
            .max_count(1)
            .image_id(&spec.image_id)
            .instance_type(ec2::InstanceType::from(spec.instance_type.as_str()))
            .subnet_id(&spec.subnet_id)
            .set_security_group_ids(Some(spec.security_group_ids.clone()))
            .iam_instance_profile(
                ec2::IamInstanceProfileSpecification::builder()
                    .name(&spec.instance_profile)
                    .build(),
            )
            .set_key_name(spec.key_pair.clone())
            .block_device_mappings(root_volume)
            .client_token(&spec.client_token)
            .metadata_options(
                ec2::InstanceMetadataOptionsRequest::builder()
                    .http_tokens(ec2::HttpTokensState::Required)
                    .build(),
            )
            .tag_specifications(tag_spec(ec2::ResourceType::Instance))
            .tag_specifications(tag_spec(ec2::ResourceType::Volume))
            .send()
            .await
            .classified(OP)?;
        let launched = output.instances().first().and_then(|i| i.instance_id());
        required(OP, "instance id", launched)
    }

    async fn is_ssm_online(&self, instance_id: &str) -> CloudResult<bool> {
        self.ssm_online
            .get(
                instance_id,
                |ids| self.online_by_id(ids),
                // Not listed: no agent has reported from it (yet).
                |_| Ok(false),
            )
            .await
    }

    async fn send_script(
        &self,
        instance_id: &str,
        script: &str,
        execution_timeout_secs: u64,
        comment: &str,
    ) -> CloudResult<String> {
        const OP: &str = "SendCommand";
        // AWS-RunShellScript runs its `commands` as the lines of one script.
        let lines: Vec<String> = script.lines().map(str::to_owned).collect();
        let output = self
            .ssm
            .send_command()
            .document_name("AWS-RunShellScript")
            .instance_ids(instance_id)
            .parameters("commands", lines)
            .parameters("executionTimeout", vec![execution_timeout_secs.to_string()])
            .timeout_seconds(DELIVERY_TIMEOUT_SECS)
            .comment(truncate(comment, COMMENT_LIMIT))
            .send()
            .await
            .classified(OP)?;
        required(
            OP,
            "command id",
            output.command().and_then(|c| c.command_id()),
        )
    }

    async fn commands_on(&self, instance_id: &str) -> CloudResult<Vec<SentCommand>> {
        const OP: &str = "ListCommandInvocations";
        let pages = self
            .ssm
            .list_command_invocations()
            .instance_id(instance_id)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified(OP)?;
        let mut sent: Vec<(Option<f64>, SentCommand)> = pages
            .iter()
            .flat_map(|page| page.command_invocations())
            .filter_map(|invocation| {
                Some((
                    invocation.requested_date_time().map(|t| t.as_secs_f64()),
                    SentCommand {
                        id: invocation.command_id()?.to_owned(),
                        comment: invocation.comment().unwrap_or_default().to_owned(),
                        status: CommandStatus::parse(
                            invocation.status().map_or("Pending", |s| s.as_str()),
                        ),
                    },
                ))
            })
            .collect();
        sent.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        Ok(sent.into_iter().map(|(_, command)| command).collect())
    }

    async fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> CloudResult<CommandResult> {
        const OP: &str = "GetCommandInvocation";
        let output = self
            .ssm
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await
            .classified(OP)?;
        Ok(CommandResult {
            status: CommandStatus::parse(output.status().map_or("Pending", |s| s.as_str())),
            response_code: output.response_code(),
            stdout: output
                .standard_output_content()
                .unwrap_or_default()
                .to_owned(),
            stderr: output
                .standard_error_content()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    async fn stop_instance(&self, instance_id: &str) -> CloudResult<()> {
        self.ec2
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .classified("StopInstances")?;
        Ok(())
    }

    async fn terminate_instance(&self, instance_id: &str) -> CloudResult<()> {
        // An instance that is already gone is as terminated as it gets.
        absent_is_none(
            self.ec2
                .terminate_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .classified("TerminateInstances"),
        )?;
        Ok(())
    }

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> CloudResult<()> {
        self.tag_resource(instance_id, tags).await
    }

    async fn tag_image(&self, image_id: &str, tags: &Tags) -> CloudResult<()> {
        self.tag_resource(image_id, tags).await
    }

    async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        tags: &Tags,
    ) -> CloudResult<String> {
        const OP: &str = "CreateImage";
        let mut request = self.ec2.create_image().instance_id(instance_id).name(name);
        if !tags.is_empty() {
            request = request.tag_specifications(
                ec2::TagSpecification::builder()
                    .resource_type(ec2::ResourceType::Image)
                    .set_tags(Some(ec2_tag_list(tags)))
                    .build(),
            );
        }
        let output = request.send().await.classified(OP)?;
        required(OP, "image id", output.image_id())
    }

    async fn copy_image(&self, copy: &ImageCopy) -> CloudResult<String> {
        const OP: &str = "CopyImage";
        let tagged = |kind: ec2::ResourceType| {
            ec2::TagSpecification::builder()
                .resource_type(kind)
                .set_tags(Some(ec2_tag_list(&copy.tags)))
                .build()
        };
        let mut request = self
            .ec2
            .copy_image()
            .source_region(&copy.source_region)
            .source_image_id(&copy.source_image)
            .name(&copy.name)
            .client_token(&copy.client_token);
        if !copy.tags.is_empty() {
            request = request
                .tag_specifications(tagged(ec2::ResourceType::Image))
                .tag_specifications(tagged(ec2::ResourceType::Snapshot));
        }
        let output = request.send().await.classified(OP)?;
        required(OP, "image id", output.image_id())
    }

    async fn create_template_version(
        &self,
        template: &str,
        source_version: &str,
        spec: &LaunchSpec,
    ) -> CloudResult<LaunchConfig> {
        const OP: &str = "CreateLaunchTemplateVersion";
        let source = self.template_data(template, source_version).await?;
        let description = truncate(&spec.name, DESCRIPTION_LIMIT);
        // With SourceVersion every field given replaces the source's whole field, lists
        // included: the volumes, network interfaces and tag specifications are rewritten
        // from the source's, changing only what the pipeline sets.
        let mut data = ec2::RequestLaunchTemplateData::builder()
            .image_id(&spec.image_id)
            .instance_type(ec2::InstanceType::from(spec.instance_type.as_str()))
            .set_key_name(spec.key_pair.clone())
            .set_block_device_mappings(Some(template_volumes(
                source.as_ref(),
                &spec.root_device_name,
                spec.volume_size_gb,
            )))
            .user_data(base64(spec.user_data.as_bytes()));
        let source_interfaces = source
            .as_ref()
            .map(|data| data.network_interfaces())
            .unwrap_or_default();
        if !source_interfaces.is_empty() {
            data = data.set_network_interfaces(Some(template_interfaces(
                source_interfaces,
                &spec.security_group_ids,
                spec.public_ip,
            )));
        } else if let Some(public_ip) = spec.public_ip {
            let has_instance_groups = source.as_ref().is_some_and(|data| {
                !data.security_group_ids().is_empty() || !data.security_groups().is_empty()
            });
            if has_instance_groups {
                return Err(CloudError::new(
                    OP,
                    ErrorClass::Invalid,
                    "PublicIpNeedsNetworkInterface",
                    format!(
                        "launch template {template} version {source_version} sets its security groups on the instance, not on a network interface; a public IP can only be asked for on a network interface, and AWS refuses both together: remove launch.public_ip (the subnet's auto-assign setting then applies), or move the template's security groups onto network interface 0"
                    ),
                ));
            }
            // A public address can only be asked for on a network interface, and then the
            // security groups must be given there too, not at the top level.
            data = data.network_interfaces(
                ec2::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .associate_public_ip_address(public_ip)
                    .set_groups(Some(spec.security_group_ids.clone()))
                    .build(),
            );
        } else {
            data = data.set_security_group_ids(Some(spec.security_group_ids.clone()));
        }
        data = data.set_tag_specifications(Some(template_tag_specifications(
            source.as_ref(),
            &spec.tags,
        )));
        let request = self
            .ec2
            .create_launch_template_version()
            .source_version(source_version)
            .version_description(&description)
            .launch_template_data(data.build());
        let request = if is_template_id(template) {
            request.launch_template_id(template)
        } else {
            request.launch_template_name(template)
        };
        let output = request.send().await.classified(OP)?;
        let number = output
            .launch_template_version()
            .and_then(|version| version.version_number())
            .ok_or_else(|| {
                CloudError::new(
                    OP,
                    ErrorClass::Invalid,
                    "MissingField",
                    "the answer has no version number",
                )
            })?;
        Ok(LaunchConfig {
            id: number.to_string(),
            image_id: spec.image_id.clone(),
            description,
            launch: spec.tags.get(TAG_LAUNCH).cloned(),
            created: None,
        })
    }

    async fn create_launch_configuration(&self, spec: &LaunchSpec) -> CloudResult<LaunchConfig> {
        let root_volume = asg::BlockDeviceMapping::builder()
            .device_name(&spec.root_device_name)
            .ebs(
                asg::Ebs::builder()
                    .volume_size(int(spec.volume_size_gb.into()))
                    .volume_type("gp3")
                    .delete_on_termination(true)
                    .build(),
            )
            .build();
        self.autoscaling
            .create_launch_configuration()
            .launch_configuration_name(&spec.name)
            .image_id(&spec.image_id)
            .instance_type(&spec.instance_type)
            .set_security_groups(Some(spec.security_group_ids.clone()))
            .set_key_name(spec.key_pair.clone())
            .set_associate_public_ip_address(spec.public_ip)
            .block_device_mappings(root_volume)
            .user_data(base64(spec.user_data.as_bytes()))
            .send()
            .await
            .classified("CreateLaunchConfiguration")?;
        Ok(LaunchConfig {
            id: spec.name.clone(),
            image_id: spec.image_id.clone(),
            description: spec.name.clone(),
            launch: None,
            created: None,
        })
    }

    async fn set_group_configuration(&self, group: &str, configuration: &str) -> CloudResult<()> {
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_configuration_name(configuration)
            .send()
            .await
            .classified("UpdateAutoScalingGroup")?;
        Ok(())
    }

    async fn set_group_template_version(
        &self,
        group: &str,
        template: &str,
        version: &str,
    ) -> CloudResult<()> {
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .launch_template(launch_template_spec(template, version))
            .send()
            .await
            .classified("UpdateAutoScalingGroup")?;
        Ok(())
    }

    async fn set_group_bounds(&self, group: &str, min: u32, max: u32) -> CloudResult<()> {
        self.autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .min_size(int(u64::from(min)))
            .max_size(int(u64::from(max)))
            .send()
            .await
            .classified("UpdateAutoScalingGroup")?;
        Ok(())
    }

    async fn set_default_template_version(&self, template: &str, version: u64) -> CloudResult<()> {
        let request = self
            .ec2
            .modify_launch_template()
            .default_version(version.to_string());
        let request = if is_template_id(template) {
            request.launch_template_id(template)
        } else {
            request.launch_template_name(template)
        };
        request.send().await.classified("ModifyLaunchTemplate")?;
        Ok(())
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> CloudResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tags = tags
            .iter()
            .map(|(key, value)| {
                asg::Tag::builder()
                    .resource_id(group)
                    .resource_type("auto-scaling-group")
                    .key(key)
                    .value(value)
                    .propagate_at_launch(false)
                    .build()
            })
            .collect();
        self.autoscaling
            .create_or_update_tags()
            .set_tags(Some(tags))
            .send()
            .await
            .classified("CreateOrUpdateTags")?;
        Ok(())
    }

    async fn start_refresh(&self, group: &str, spec: &RefreshSpec) -> CloudResult<String> {
        const OP: &str = "StartInstanceRefresh";
        let checkpoints = (!spec.checkpoints.is_empty())
            .then(|| spec.checkpoints.iter().map(|p| i32::from(*p)).collect());
        let preferences = asg::RefreshPreferences::builder()
            .min_healthy_percentage(spec.min_healthy_percentage.into())
            .max_healthy_percentage(spec.max_healthy_percentage.into())
            .instance_warmup(int(spec.instance_warmup.as_secs()))
            .skip_matching(spec.skip_matching)
            .set_checkpoint_delay(
                (!spec.checkpoints.is_empty())
                    .then_some(spec.checkpoint_delay)
                    .flatten()
                    .map(|delay| int(delay.as_secs())),
            )
            .set_checkpoint_percentages(checkpoints)
            .auto_rollback(spec.auto_rollback)
            .scale_in_protected_instances(asg::ScaleInProtectedInstances::from(
                spec.scale_in_protected_instances.as_aws(),
            ))
            .standby_instances(asg::StandbyInstances::from(spec.standby_instances.as_aws()))
            .build();
        let desired = spec.desired_template.as_ref().map(|(template, version)| {
            asg::DesiredConfiguration::builder()
                .launch_template(launch_template_spec(template, version))
                .build()
        });
        let output = self
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .preferences(preferences)
            .set_desired_configuration(desired)
            .send()
            .await
            .classified(OP)?;
        required(OP, "refresh id", output.instance_refresh_id())
    }

    async fn refreshes(&self, group: &str) -> CloudResult<Vec<Refresh>> {
        let pages = self
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .classified("DescribeInstanceRefreshes")?;
        pages
            .iter()
            .flat_map(|page| page.instance_refreshes())
            .map(refresh)
            .collect()
    }

    async fn cancel_refresh(&self, group: &str) -> CloudResult<()> {
        self.autoscaling
            .cancel_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await
            .classified("CancelInstanceRefresh")?;
        Ok(())
    }

    async fn rollback_refresh(&self, group: &str) -> CloudResult<()> {
        self.autoscaling
            .rollback_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await
            .classified("RollbackInstanceRefresh")?;
        Ok(())
    }

    async fn deregister_image(&self, image_id: &str) -> CloudResult<()> {
        absent_is_none(
            self.ec2
                .deregister_image()
                .image_id(image_id)
                .send()
                .await
                .classified("DeregisterImage"),
        )?;
        Ok(())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<()> {
        absent_is_none(
            self.ec2
                .delete_snapshot()
                .snapshot_id(snapshot_id)
                .send()
                .await
                .classified("DeleteSnapshot"),
        )?;
        Ok(())
    }

    async fn delete_template_versions(
        &self,
        template: &str,
        versions: &[String],
    ) -> CloudResult<()> {
        const OP: &str = "DeleteLaunchTemplateVersions";
        for chunk in versions.chunks(TEMPLATE_VERSIONS_PER_DELETE) {
            let request = self
                .ec2
                .delete_launch_template_versions()
                .set_versions(Some(chunk.to_vec()));
            let request = if is_template_id(template) {
                request.launch_template_id(template)
            } else {
                request.launch_template_name(template)
            };
            let output = request.send().await.classified(OP)?;
            // AWS answers 200 and lists each version it refused, with a code of its own.
            let refused = output
                .unsuccessfully_deleted_launch_template_versions()
                .iter()
                .find(|failed| {
                    failed
                        .response_error()
                        .and_then(|e| e.code())
                        .map(|c| c.as_str())
                        != Some(VERSION_GONE)
                });
            if let Some(failed) = refused {
                let error = failed.response_error();
                let code = error
                    .and_then(|e| e.code())
                    .map_or("unexpectedError", |c| c.as_str());
                return Err(CloudError::new(
                    OP,
                    CloudError::classify(code, None),
                    code,
                    format!(
                        "launch template {template} version {}: {}",
                        failed.version_number().unwrap_or_default(),
                        error.and_then(|e| e.message()).unwrap_or("refused")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn delete_launch_configuration(&self, name: &str) -> CloudResult<()> {
        absent_is_none(
            self.autoscaling
                .delete_launch_configuration()
                .launch_configuration_name(name)
                .send()
                .await
                .classified("DeleteLaunchConfiguration"),
        )?;
        Ok(())
    }

    async fn put_lock(&self, name: &str, lock: &Lock) -> CloudResult<()> {
        self.write_lock(name, lock, false).await
    }

    async fn renew_lock(&self, name: &str, lock: &Lock) -> CloudResult<()> {
        self.write_lock(name, lock, true).await
    }

    async fn read_lock(&self, name: &str) -> CloudResult<Option<Lock>> {
        const OP: &str = "GetParameter";
        let output = absent_is_none(
            self.ssm
                .get_parameter()
                .name(name)
                .send()
                .await
                .classified(OP),
        )?;
        let Some(value) = output
            .as_ref()
            .and_then(|o| o.parameter())
            .and_then(|p| p.value())
        else {
            return Ok(None);
        };
        serde_json::from_str(value).map(Some).map_err(|error| {
            CloudError::new(
                OP,
                ErrorClass::Invalid,
                "MalformedLock",
                format!("the parameter {name} does not hold a red5-rollout lock: {error}"),
            )
        })
    }

    async fn read_locks(&self, names: &[String]) -> CloudResult<Vec<(String, Lock)>> {
        const OP: &str = "GetParameters";
        let mut found = Vec::new();
        // GetParameters takes up to 10 names; names that do not exist come back as invalid.
        for chunk in names.chunks(10) {
            let output = self
                .ssm
                .get_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .classified(OP)?;
            for parameter in output.parameters() {
                let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else {
                    continue;
                };
                let lock = serde_json::from_str(value).map_err(|error| {
                    CloudError::new(
                        OP,
                        ErrorClass::Invalid,
                        "MalformedLock",
                        format!("the parameter {name} does not hold a red5-rollout lock: {error}"),
                    )
                })?;
                found.push((name.to_owned(), lock));
            }
        }
        Ok(found)
    }

    async fn delete_lock(&self, name: &str) -> CloudResult<()> {
        absent_is_none(
            self.ssm
                .delete_parameter()
                .name(name)
                .send()
                .await
                .classified("DeleteParameter"),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        let table = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("#!/bin/bash\n", "IyEvYmluL2Jhc2gK"),
        ];
        for (text, encoded) in table {
            assert_eq!(base64(text.as_bytes()), encoded, "{text:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn a_group_names_its_template_or_configuration() {
        let template = asg::LaunchTemplateSpecification::builder()
            .launch_template_id("lt-1")
            .launch_template_name("red5pro-sm")
            .build();
        assert_eq!(
            group_config(Some(&template), None),
            GroupConfig::Template {
                id: "lt-1".into(),
                name: "red5pro-sm".into(),
                version: "$Default".into()
            }
        );
        assert_eq!(
            group_config(None, Some("SM-LC")),
            GroupConfig::Configuration {
                name: "SM-LC".into()
            }
        );
        assert_eq!(group_config(None, None), GroupConfig::Other);
    }

    #[test]
    fn the_builder_is_named_after_its_pipeline() {
        let mut tags = Tags::new();
        assert_eq!(builder_name(&tags), "red5-rollout builder");
        tags.insert(TAG_PIPELINE.into(), "stream-manager".into());
        assert_eq!(builder_name(&tags), "red5-rollout builder stream-manager");
    }

    #[test]
    fn policy_documents_are_url_decoded() {
        assert_eq!(
            decode_policy_document("%7B%22Action%22%3A%20%22ssm%3A%2A%22%7D"),
            r#"{"Action": "ssm:*"}"#
        );
        assert_eq!(decode_policy_document(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(decode_policy_document("100%"), "100%");
        assert_eq!(decode_policy_document("%zz"), "%zz");
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("short", 100), "short");
    }
}
