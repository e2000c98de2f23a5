//! Integration tests, one binary so that the AWS SDK is linked once.
//!
//! Modules by subject: validation tables, git history scenarios, the planner, and the
//! real binary's command line.

mod apply_fake;
mod aws;
mod cli;
mod e2e;
mod emulator;
mod git_history;
mod github;
mod iam;
mod planner;
mod preflight;
mod reporting;
mod support;
mod validation;
