//! The GitOps repository's content as values: pipelines, releases, the templates they
//! carry, and which release each pipeline wants. Pure: no I/O happens here.

mod catalog;
mod diagnostic;
mod launch_spec;
mod locate;
mod pipeline;
mod quoting;
mod release;
mod select;
mod template;
mod yaml;

pub use catalog::{Catalog, SourceFile};
pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use launch_spec::{ChangedField, LAUNCH_FIELDS, LaunchSignature, describe_changes, fnv1a};
pub use pipeline::{
    BaseImage, Builder, DEFAULT_CHECKPOINT_DELAY, DEFAULT_REFRESH_TIMEOUT, DEFAULT_WARMUP,
    HeldInstances, Image, Launch, LaunchKind, LaunchTarget, MAX_AMI_NAME, MAX_CHECKPOINT_DELAY,
    MAX_LAUNCH_CONFIGURATION_NAME, MAX_TEMPLATE_NAME, MIN_VOLUME_GB, Origin, Pipeline, Promotion,
    Refresh, StandbyInstances, Target, Update, format_duration, parse_duration,
};
pub use release::{Artifact, Release};
pub use select::{NoRelease, Rendered, desired_release, render, template_values};
pub use template::{Template, TemplateValues, VARIABLES, shell_quote};
