//! The few AWS operations the runner needs, in its own words.
//!
//! Stages and `status` talk to AWS only through [`Cloud`], so a fake can inject any fault
//! in unit tests while [`aws::AwsCloud`] is tested against the local emulator through the
//! real AWS SDK. Every verb returns the runner's own types and a classified
//! [`CloudError`].

pub mod aws;
pub mod batch;
mod error;
pub mod fake;
pub mod meter;
mod types;

pub use error::{CloudError, ErrorClass, iam_action};
pub use types::*;

use async_trait::async_trait;

pub type CloudResult<T> = Result<T, CloudError>;

#[async_trait]
pub trait Cloud: Send + Sync {
    /// The AWS calls made so far for `pipeline` (see [`meter`]), when they are counted.
    fn calls(&self, pipeline: &str) -> Option<meter::CallCount> {
        let _ = pipeline;
        None
    }

    /// The same account in `region`: what a pipeline promoting another region's images
    /// reads there. Its calls count for the pipeline that makes them, as this one's do.
    fn in_region(&self, region: &str) -> CloudResult<std::sync::Arc<dyn Cloud>> {
        Err(CloudError::new(
            "in_region",
            ErrorClass::Invalid,
            "NoOtherRegion",
            format!("this client reaches one region only, not {region}"),
        ))
    }

    // --- Reading ---------------------------------------------------------------------

    /// The Auto Scaling group, its configuration and its instances.
    async fn group(&self, name: &str) -> CloudResult<Group>;

    /// The groups named, as many per call as AWS takes; names with no group are left out.
    async fn groups(&self, names: &[String]) -> CloudResult<Vec<Group>>;

    /// Images carrying every tag in `tags` (owned by this account).
    async fn find_images(&self, tags: &Tags) -> CloudResult<Vec<Image>>;

    /// Images carrying the tag `key`, whatever its value (owned by this account): every
    /// pipeline's images in one call.
    async fn images_tagged(&self, key: &str) -> CloudResult<Vec<Image>>;

    /// One image by id; `NotFound` when it does not exist.
    async fn image(&self, id: &str) -> CloudResult<Image>;

    /// Instances carrying every tag in `tags` that are not terminated.
    async fn find_instances(&self, tags: &Tags) -> CloudResult<Vec<Instance>>;

    /// The live instance launched with idempotency token `token`, if any: finds a builder
    /// whose launch answer was lost, before its tags are visible to filters.
    async fn instance_by_client_token(&self, token: &str) -> CloudResult<Option<Instance>>;

    /// One instance by id.
    async fn instance(&self, id: &str) -> CloudResult<Instance>;

    /// Every version of the launch template `template` (a name or an `lt-` id).
    async fn template_versions(&self, template: &str) -> CloudResult<Vec<LaunchConfig>>;

    /// The launch template `template` (a name or an `lt-` id) with its default and latest
    /// version numbers.
    async fn launch_template(&self, template: &str) -> CloudResult<LaunchTemplate>;

    /// Launch configurations whose names start with `prefix` (all when empty).
    async fn launch_configurations(&self, prefix: &str) -> CloudResult<Vec<LaunchConfig>>;

    /// The image a launch template version or configuration launches.
    async fn config_image(&self, config: &GroupConfig) -> CloudResult<Option<String>>;

    /// Resolves a subnet id or `Name` tag to a subnet id.
    async fn resolve_subnet(&self, id_or_name: &str) -> CloudResult<String>;

    /// Resolves security group ids or names to ids.
    async fn resolve_security_groups(&self, ids_or_names: &[String]) -> CloudResult<Vec<String>>;

    // --- What `preflight` checks --------------------------------------------------------

    /// The target groups with these ARNs; `NotFound` when one does not exist.
    async fn target_groups(&self, arns: &[String]) -> CloudResult<Vec<TargetGroup>>;

    /// The load balancers with these ARNs and their subnets; `NotFound` when one does not
    /// exist.
    async fn load_balancers(&self, arns: &[String]) -> CloudResult<Vec<LoadBalancer>>;

    /// A subnet by id or `Name` tag, with its VPC and public IP default.
    async fn subnet(&self, id_or_name: &str) -> CloudResult<Subnet>;

    /// The service names of the VPC endpoints in `vpc_id` (e.g.
    /// `com.amazonaws.us-east-1.ssm`).
    async fn vpc_endpoint_services(&self, vpc_id: &str) -> CloudResult<Vec<String>>;

    /// The inbound rules, in any security group, that admit one of `source_groups` (ids).
    async fn ingress_from(&self, source_groups: &[String]) -> CloudResult<Vec<IngressRule>>;

    /// The roles of instance profile `name`; `NotFound` when it does not exist.
    async fn instance_profile_roles(&self, name: &str) -> CloudResult<Vec<String>>;

    /// The managed policies attached to `role` and the names of its inline policies.
    async fn role_policies(&self, role: &str) -> CloudResult<RolePolicies>;

    /// The document (JSON) of inline policy `policy` of `role`.
    async fn role_policy_document(&self, role: &str, policy: &str) -> CloudResult<String>;

    /// The document (JSON) of the default version of managed policy `arn`.
    async fn policy_document(&self, arn: &str) -> CloudResult<String>;

    // --- The builder -----------------------------------------------------------------

    /// Launches one builder instance; returns its id.
    async fn run_builder(&self, spec: &BuilderSpec) -> CloudResult<String>;

    /// Whether the instance's SSM agent reports Online.
    async fn is_ssm_online(&self, instance_id: &str) -> CloudResult<bool>;

    /// Sends `script` with AWS-RunShellScript; returns the command id.
    async fn send_script(
        &self,
        instance_id: &str,
        script: &str,
        execution_timeout_secs: u64,
        comment: &str,
    ) -> CloudResult<String>;

    /// The commands sent to the instance, newest first.
    async fn commands_on(&self, instance_id: &str) -> CloudResult<Vec<SentCommand>>;

    /// The command's state on the instance; `NotFound` right after sending is normal.
    async fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> CloudResult<CommandResult>;

    async fn stop_instance(&self, instance_id: &str) -> CloudResult<()>;

    async fn terminate_instance(&self, instance_id: &str) -> CloudResult<()>;

    async fn tag_instance(&self, instance_id: &str, tags: &Tags) -> CloudResult<()>;

    /// Adds `tags` to image `image_id` (`adopt`).
    async fn tag_image(&self, image_id: &str, tags: &Tags) -> CloudResult<()>;

    /// Creates an image of the instance with `tags` on the image; returns its id.
    async fn create_image(&self, instance_id: &str, name: &str, tags: &Tags)
    -> CloudResult<String>;

    /// Copies image `copy.source_image` of region `copy.source_region` into this region
    /// (CopyImage, called in the destination), with `copy.tags` on the copy and its
    /// snapshots; `copy.client_token` makes a repeated request answer the first copy.
    /// Returns the copy's id; it is `pending` until AWS has copied it.
    async fn copy_image(&self, copy: &ImageCopy) -> CloudResult<String>;

    // --- The fleet -------------------------------------------------------------------

    /// Creates a new version of launch template `template` (a name or an `lt-` id) from
    /// version `source_version` (`SourceVersion`): everything the source holds is kept, and
    /// only the image, the user data and what `spec` sets are overridden. Returns the new
    /// version.
    async fn create_template_version(
        &self,
        template: &str,
        source_version: &str,
        spec: &LaunchSpec,
    ) -> CloudResult<LaunchConfig>;

    /// Creates launch configuration `spec.name`; `Conflict` when it exists.
    async fn create_launch_configuration(&self, spec: &LaunchSpec) -> CloudResult<LaunchConfig>;

    /// Points the group at a launch configuration.
    async fn set_group_configuration(&self, group: &str, configuration: &str) -> CloudResult<()>;

    /// Points the group at launch template `template` (a name or an `lt-` id) at `version`.
    async fn set_group_template_version(
        &self,
        group: &str,
        template: &str,
        version: &str,
    ) -> CloudResult<()>;

    async fn tag_group(&self, group: &str, tags: &Tags) -> CloudResult<()>;

    /// Sets the group's minimum and maximum size (its desired capacity stays, within them).
    async fn set_group_bounds(&self, group: &str, min: u32, max: u32) -> CloudResult<()>;

    /// Makes `version` the default version of launch template `template` (a name or an
    /// `lt-` id).
    async fn set_default_template_version(&self, template: &str, version: u64) -> CloudResult<()>;

    /// Starts an instance refresh; `Conflict` when one is active. Returns its id.
    async fn start_refresh(&self, group: &str, spec: &RefreshSpec) -> CloudResult<String>;

    /// The group's refreshes, newest first.
    async fn refreshes(&self, group: &str) -> CloudResult<Vec<Refresh>>;

    /// Cancels the active refresh; `NotFound` when none is active.
    async fn cancel_refresh(&self, group: &str) -> CloudResult<()>;

    /// Rolls back the active refresh; `NotFound` when none is active.
    async fn rollback_refresh(&self, group: &str) -> CloudResult<()>;

    // --- Garbage collection ----------------------------------------------------------

    /// Deregisters image `image_id` (its snapshots stay: [`Cloud::delete_snapshot`]). An
    /// image that is gone already counts as deregistered.
    async fn deregister_image(&self, image_id: &str) -> CloudResult<()>;

    /// Deletes EBS snapshot `snapshot_id`; `Conflict` while a registered image uses it. A
    /// snapshot that is gone already counts as deleted.
    async fn delete_snapshot(&self, snapshot_id: &str) -> CloudResult<()>;

    /// Deletes `versions` (numbers) of launch template `template` (a name or an `lt-` id),
    /// up to 200 per call as AWS takes them. AWS answers per version: the first version it
    /// refuses (the default version, for one) fails the call with its code; a version that
    /// is gone already counts as deleted.
    async fn delete_template_versions(
        &self,
        template: &str,
        versions: &[String],
    ) -> CloudResult<()>;

    /// Deletes launch configuration `name`; `Conflict` (`ResourceInUse`) while a group uses
    /// it.
    async fn delete_launch_configuration(&self, name: &str) -> CloudResult<()>;

    // --- Locks -----------------------------------------------------------------------

    /// Creates the lock parameter `name` with no overwrite; `Conflict` when it exists.
    async fn put_lock(&self, name: &str, lock: &Lock) -> CloudResult<()>;

    /// Overwrites the lock parameter `name` (a lease renewed by its holder, or taken over).
    async fn renew_lock(&self, name: &str, lock: &Lock) -> CloudResult<()>;

    /// The lock parameter's content, `None` when there is none.
    async fn read_lock(&self, name: &str) -> CloudResult<Option<Lock>>;

    /// The locks named, as many per call as AWS takes, by name; a name without one is
    /// left out.
    async fn read_locks(&self, names: &[String]) -> CloudResult<Vec<(String, Lock)>>;

    async fn delete_lock(&self, name: &str) -> CloudResult<()>;
}
