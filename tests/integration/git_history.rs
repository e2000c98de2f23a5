//! git_history tests.
