//! `status` as text: where each pipeline's fleet stands, read from AWS.

use crate::cloud::{GroupConfig, ImageStatus};
use crate::observe::Observation;
use std::fmt::Write;

pub(crate) fn config_label(config: &GroupConfig) -> String {
    match config {
        GroupConfig::Template { name, version, .. } => {
            format!("launch template {name} version {version}")
        }
        GroupConfig::Configuration { name } => format!("launch configuration {name}"),
        GroupConfig::Other => "a configuration red5-rollout does not manage".into(),
    }
}

pub fn status_as_text(observations: &[Observation]) -> String {
    let mut out = String::new();
    for (i, o) in observations.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let g = &o.group;
        match &o.running_version {
            Some(version) => {
                let _ = writeln!(
                    out,
                    "{}: group {} ({}) runs {version}",
                    o.pipeline, g.name, o.region
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}: group {} ({}) is not adopted: red5-rollout does not know which release it runs",
                    o.pipeline, g.name, o.region
                );
                let _ = writeln!(
                    out,
                    "  adopt it once: red5-rollout adopt {} --version <VERSION>",
                    o.pipeline
                );
            }
        }
        let _ = writeln!(
            out,
            "  configuration: {} (image {})",
            config_label(&g.config),
            o.image_id.as_deref().unwrap_or("unknown")
        );
        let _ = writeln!(
            out,
            "  capacity:      desired {} (min {}, max {}); health check {}, grace {}s",
            g.desired_capacity,
            g.min_size,
            g.max_size,
            g.health_check_type,
            g.health_check_grace_period
        );
        if let Some(baker) = &o.promotes {
            let succeeded = o
                .promoted_succeeded
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            let _ = writeln!(
                out,
                "  promotes:      the images of {baker}{}; {}",
                o.source_region
                    .as_deref()
                    .map(|r| format!(" in {r} (copied here)"))
                    .unwrap_or_default(),
                if succeeded.is_empty() {
                    "none of its rollouts succeeded yet".to_string()
                } else {
                    format!("its rollouts of {} succeeded", succeeded.join(", "))
                }
            );
        }
        let _ = writeln!(out, "  instances:     {}", g.instances.len());
        for inst in &g.instances {
            let _ = writeln!(
                out,
                "    {:<20} {:<12} {:<10} {}",
                inst.id,
                inst.lifecycle_state,
                inst.health_status,
                config_label(&inst.config)
            );
        }
        match &o.refresh {
            Some(r) if r.is_active() => {
                let _ = writeln!(
                    out,
                    "  refresh:       {} {} {}% done",
                    r.id, r.status, r.percentage
                );
            }
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  refresh:       none in flight (last: {} {}{})",
                    r.id,
                    r.status,
                    r.status_reason
                        .as_deref()
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                );
            }
            None if o.settled => {
                let _ = writeln!(
                    out,
                    "  refresh:       none needed (every instance runs what the last rollout left; past refreshes not read)"
                );
            }
            None => {
                let _ = writeln!(out, "  refresh:       none");
            }
        }
        match &o.lease {
            Some(lease) => {
                let _ = writeln!(
                    out,
                    "  lease:         held by {}",
                    crate::lease::describe_holder(lease)
                );
            }
            None => {
                let _ = writeln!(out, "  lease:         free");
            }
        }
        if o.builders.is_empty() {
            let _ = writeln!(out, "  builders:      none running");
        }
        for b in &o.builders {
            let _ = writeln!(
                out,
                "  builder:       {} {:?} for {} (run {}) LEFT RUNNING",
                b.id,
                b.state,
                b.tags
                    .get(crate::cloud::TAG_VERSION)
                    .map_or("?", |v| v.as_str()),
                b.tags
                    .get(crate::cloud::TAG_RUN)
                    .map_or("?", |v| v.as_str()),
            );
        }
        for image in &o.images {
            let state = match &image.status {
                ImageStatus::Pending => "pending".to_string(),
                ImageStatus::Available => "available".to_string(),
                ImageStatus::Failed(reason) => {
                    format!("failed: {}", reason.as_deref().unwrap_or("no reason given"))
                }
                ImageStatus::Other(s) => s.clone(),
            };
            let copy = image
                .tags
                .get(crate::cloud::TAG_COPY_OF)
                .map(|source| format!(", copy of {source}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  image:         {} {} {} ({state}{copy})",
                image.id,
                image
                    .tags
                    .get(crate::cloud::TAG_VERSION)
                    .map_or("?", |v| v.as_str()),
                image.name
            );
        }
    }
    out
}
