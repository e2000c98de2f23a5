//! The stages of a rollout, one module each. Every stage observes what exists, decides one
//! step, takes it and reports the outcome: a finished stage run again makes no mutating
//! call, which is what makes `apply` idempotent and resumable.

pub mod apply_update;
pub mod cleanup;
pub mod create_image;
pub mod create_launch_config;
pub mod instance_refresh;
pub mod launch_builder;
pub mod swap_asg;

mod context;

pub use swap_asg::TAG_PREVIOUS_CONFIG;

pub use context::{
    Baked, Context, PASSING_FAILURES_CAP, StageError, TAG_DATE, VISIBILITY_GRACE, Visibility,
};
