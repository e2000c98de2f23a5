//! planner tests.
