//! What the checks need to know, read once through [`Cloud`] for every pipeline of a region:
//! the reads shared by pipelines (target groups, load balancers, security group rules,
//! subnets, instance profiles) are made once each, and the independent ones at the same
//! time, so that checking many pipelines costs a few calls more than checking one.

use crate::cloud::{Cloud, CloudResult, Group, IngressRule, LoadBalancer, Subnet, TargetGroup};
use crate::model::Pipeline;
use std::collections::BTreeMap;

/// AWS managed policies that give an instance what the SSM agent needs.
pub const SSM_MANAGED_POLICIES: [&str; 3] = [
    "AmazonSSMManagedInstanceCore",
    "AmazonSSMFullAccess",
    "AmazonEC2RoleforSSM",
];

/// Everything the checks of one pipeline look at.
#[derive(Debug, Clone)]
pub struct PreflightFacts {
    pub pipeline: Pipeline,
    pub group: Group,
    /// The group's target groups, and the load balancers routing to them.
    pub target_groups: Vec<TargetGroup>,
    pub load_balancers: Vec<LoadBalancer>,
    /// The Stream Managers' security groups (`launch.security_groups`), as ids.
    pub fleet_security_groups: Vec<String>,
    /// Inbound rules of any security group that admit one of them.
    pub ingress: Vec<IngressRule>,
    /// The builder's subnet and permissions (none for a pipeline that promotes another's
    /// images: it runs no builder).
    pub builder: Option<BuilderFacts>,
    /// The root snapshot of the image the group runs, when known.
    pub image_snapshot_gb: Option<u32>,
}

/// Where the builder runs and what it may do.
#[derive(Debug, Clone)]
pub struct BuilderFacts {
    pub subnet: Subnet,
    /// The service names of the VPC endpoints in the builder subnet's VPC (read only when
    /// the subnet gives no public IP).
    pub vpc_endpoints: Vec<String>,
    pub access: BuilderAccess,
}

/// What the builder's instance profile lets its SSM agent do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuilderAccess {
    NoProfile,
    NoRole,
    /// The profile's role (a profile holds at most one): an AWS managed policy that covers
    /// the SSM agent when one is attached, else the documents of its other policies.
    Role {
        name: String,
        managed_ssm_policy: Option<String>,
        documents: Vec<String>,
    },
}

/// One pipeline to check: its group as AWS describes it, and the root snapshot of the
/// image the group runs when known.
pub struct Fleet<'a> {
    pub pipeline: &'a Pipeline,
    pub group: Group,
    pub image_snapshot_gb: Option<u32>,
}

/// Reads the facts of `fleets`, all of one region.
pub async fn gather(cloud: &dyn Cloud, fleets: Vec<Fleet<'_>>) -> CloudResult<Vec<PreflightFacts>> {
    let (balancing, security, subnets, profiles) = tokio::join!(
        read_balancing(cloud, &fleets),
        read_security(cloud, &fleets),
        read_subnets(cloud, &fleets),
        read_profiles(cloud, &fleets),
    );
    let (target_groups, load_balancers) = balancing?;
    let (fleet_groups, ingress) = security?;
    let subnets = subnets?;
    let profiles = profiles?;
    let mut facts = Vec::with_capacity(fleets.len());
    for fleet in fleets {
        let pipeline = fleet.pipeline;
        let its_target_groups: Vec<TargetGroup> = target_groups
            .iter()
            .filter(|t| fleet.group.target_groups.contains(&t.arn))
            .cloned()
            .collect();
        let its_load_balancers: Vec<LoadBalancer> = load_balancers
            .iter()
            .filter(|b| {
                its_target_groups
                    .iter()
                    .any(|t| t.load_balancers.contains(&b.arn))
            })
            .cloned()
            .collect();
        let its_groups: Vec<String> = pipeline
            .launch
            .security_groups
            .iter()
            .filter_map(|name| fleet_groups.get(name).cloned())
            .collect();
        let its_ingress = ingress
            .iter()
            .filter(|r| r.sources.iter().any(|s| its_groups.contains(s)))
            .cloned()
            .collect();
        let builder = pipeline.builder.as_ref().map(|b| {
            let (subnet, vpc_endpoints) = subnets[&b.subnet].clone();
            BuilderFacts {
                subnet,
                vpc_endpoints,
                access: profiles[&b.instance_profile].clone(),
            }
        });
        facts.push(PreflightFacts {
            pipeline: pipeline.clone(),
            group: fleet.group,
            target_groups: its_target_groups,
            load_balancers: its_load_balancers,
            fleet_security_groups: its_groups,
            ingress: its_ingress,
            builder,
            image_snapshot_gb: fleet.image_snapshot_gb,
        });
    }
    Ok(facts)
}

fn distinct<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut all: Vec<String> = values.cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// Every group's target groups, then the load balancers routing to them: two calls.
async fn read_balancing(
    cloud: &dyn Cloud,
    fleets: &[Fleet<'_>],
) -> CloudResult<(Vec<TargetGroup>, Vec<LoadBalancer>)> {
    let arns = distinct(fleets.iter().flat_map(|f| f.group.target_groups.iter()));
    if arns.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let target_groups = cloud.target_groups(&arns).await?;
    let balancers = distinct(target_groups.iter().flat_map(|t| t.load_balancers.iter()));
    let load_balancers = if balancers.is_empty() {
        Vec::new()
    } else {
        cloud.load_balancers(&balancers).await?
    };
    Ok((target_groups, load_balancers))
}

/// The fleets' security groups by the name or id pipelines give, and the rules admitting
/// them: two calls (one when pipelines name groups by id).
async fn read_security(
    cloud: &dyn Cloud,
    fleets: &[Fleet<'_>],
) -> CloudResult<(BTreeMap<String, String>, Vec<IngressRule>)> {
    let written = distinct(
        fleets
            .iter()
            .flat_map(|f| f.pipeline.launch.security_groups.iter()),
    );
    let ids = cloud.resolve_security_groups(&written).await?;
    let by_name: BTreeMap<String, String> = written.into_iter().zip(ids.iter().cloned()).collect();
    let ingress = cloud.ingress_from(&distinct(ids.iter())).await?;
    Ok((by_name, ingress))
}

/// Each builder subnet, and the VPC endpoints of those that give no public IP.
async fn read_subnets(
    cloud: &dyn Cloud,
    fleets: &[Fleet<'_>],
) -> CloudResult<BTreeMap<String, (Subnet, Vec<String>)>> {
    let mut found = BTreeMap::new();
    let mut endpoints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let builders = fleets.iter().filter_map(|f| f.pipeline.builder.as_ref());
    for written in distinct(builders.map(|b| &b.subnet)) {
        let subnet = cloud.subnet(&written).await?;
        let services = if subnet.maps_public_ip {
            Vec::new()
        } else if let Some(known) = endpoints.get(&subnet.vpc_id) {
            known.clone()
        } else {
            let services = cloud.vpc_endpoint_services(&subnet.vpc_id).await?;
            endpoints.insert(subnet.vpc_id.clone(), services.clone());
            services
        };
        found.insert(written, (subnet, services));
    }
    Ok(found)
}

/// Each builder instance profile's role and what it allows: two calls when an AWS managed
/// SSM policy is attached to it, a few more to read the other policies when none is.
async fn read_profiles(
    cloud: &dyn Cloud,
    fleets: &[Fleet<'_>],
) -> CloudResult<BTreeMap<String, BuilderAccess>> {
    let mut found = BTreeMap::new();
    let builders = fleets.iter().filter_map(|f| f.pipeline.builder.as_ref());
    for profile in distinct(builders.map(|b| &b.instance_profile)) {
        let access = match cloud.instance_profile_roles(&profile).await {
            Err(error) if error.is(crate::cloud::ErrorClass::NotFound) => BuilderAccess::NoProfile,
            Err(error) => return Err(error),
            Ok(roles) => match roles.first() {
                None => BuilderAccess::NoRole,
                Some(role) => role_access(cloud, role).await?,
            },
        };
        found.insert(profile, access);
    }
    Ok(found)
}

async fn role_access(cloud: &dyn Cloud, role: &str) -> CloudResult<BuilderAccess> {
    let policies = cloud.role_policies(role).await?;
    let managed_ssm_policy = policies.attached.iter().find_map(|arn| {
        let (prefix, name) = arn.rsplit_once('/')?;
        (prefix.ends_with(":iam::aws:policy") || prefix.ends_with(":iam::aws:policy/service-role"))
            .then_some(name)
            .filter(|name| SSM_MANAGED_POLICIES.contains(name))
            .map(str::to_owned)
    });
    let mut documents = Vec::new();
    if managed_ssm_policy.is_none() {
        for name in &policies.inline {
            documents.push(cloud.role_policy_document(role, name).await?);
        }
        for arn in &policies.attached {
            documents.push(cloud.policy_document(arn).await?);
        }
    }
    Ok(BuilderAccess::Role {
        name: role.to_owned(),
        managed_ssm_policy,
        documents,
    })
}
