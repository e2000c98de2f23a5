//! `gc`: deletes what the runner made and no rollback needs any more (images and their
//! snapshots, launch template versions, launch configurations). [`decide`] is the pure
//! decision; [`sweep`] reads its facts from git and AWS and deletes what it decided.

mod decide;
mod sweep;

pub use decide::*;
pub use sweep::*;
