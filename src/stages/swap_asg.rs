//! swap-asg: point the group at the new launch configuration (configurations only).
//!
//! Flow: with `kind: template` there is nothing to do here: the instance refresh carries
//! the new version as its DesiredConfiguration, and updating the group first would make the
//! new version the "previous" one and break AWS's rollback (terraform-provider-aws #34189).
//! With `kind: configuration`, skip when the group uses the new configuration already; else
//! remember the current one in the group's `red5-rollout:previous-config` tag (so that a
//! resumed run can still roll back) and update the group.
//!
//! Guarantees: the previous configuration is recorded before the group changes. Assumes
//! create-launch-config produced the configuration. Fails with the AWS error.

use super::context::{Baked, Context, StageError};
use crate::cloud::GroupConfig;
use crate::events::StageOutcome;
use crate::model::LaunchKind;
use crate::observe::tags;
use crate::plan::Stage;

const STAGE: Stage = Stage::SwapAsg;
/// Group tag naming the configuration the group used before the runner swapped it.
pub const TAG_PREVIOUS_CONFIG: &str = "red5-rollout:previous-config";

pub async fn run(ctx: &Context, baked: &mut Baked) -> Result<StageOutcome, StageError> {
    let Some(config) = baked.config.clone() else {
        return Err(StageError::Precondition {
            stage: STAGE,
            message: "no launch configuration was created for the release".into(),
        });
    };
    if ctx.pipeline.launch.kind == LaunchKind::Template {
        return Ok(StageOutcome::Skipped {
            reason: format!(
                "the refresh carries template version {config}; the group is not updated first"
            ),
        });
    }
    let cloud = ctx.cloud.as_ref();
    let group_name = &ctx.pipeline.auto_scaling_group;
    let group = cloud
        .group(group_name)
        .await
        .map_err(StageError::cloud(STAGE))?;
    let current = match &group.config {
        GroupConfig::Configuration { name } => Some(name.clone()),
        _ => None,
    };
    if current.as_deref() == Some(config.as_str()) {
        baked.previous_config = group.tags.get(TAG_PREVIOUS_CONFIG).cloned();
        return Ok(StageOutcome::Skipped {
            reason: format!("group already uses {config}"),
        });
    }
    if ctx.is_interrupted() {
        return Err(StageError::Interrupted { stage: STAGE });
    }
    if let Some(previous) = &current {
        cloud
            .tag_group(group_name, &tags(&[(TAG_PREVIOUS_CONFIG, previous)]))
            .await
            .map_err(StageError::cloud(STAGE))?;
    }
    cloud
        .set_group_configuration(group_name, &config)
        .await
        .map_err(StageError::cloud(STAGE))?;
    baked.previous_config = current.clone();
    Ok(StageOutcome::Done {
        detail: format!(
            "group moved from {} to {config}",
            current.as_deref().unwrap_or("its previous configuration")
        ),
    })
}
