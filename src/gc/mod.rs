//! `gc`: deletes what the runner made and no rollback needs any more (images and their
//! snapshots, launch template versions, launch configurations). [`decide`] is the pure
//! decision.

mod decide;

pub use decide::*;
