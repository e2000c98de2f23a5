//! red5-rollout: a GitOps rollout runner for Red5 Pro Stream Manager fleets on AWS.
//!
//! The repository's `pipelines/` and `releases/` say which version each Auto Scaling group
//! should run; the runner reads them from git ([`repo`]), compares them with what AWS runs
//! ([`plan`]) and converges the fleet.

pub mod adopt;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod drift;
pub mod error;
pub mod events;
pub mod fleet;
pub mod gc;
pub mod github;
pub mod invocation;
pub mod lease;
pub mod logging;
pub mod model;
pub mod observe;
pub mod plan;
pub mod preflight;
pub mod priors;
pub mod render;
pub mod repo;
pub mod report;
pub mod run;
pub mod stages;
pub mod status;
pub mod wait;
pub mod watch;
