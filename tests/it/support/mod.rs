//! Test harness: the app under test, a fake GitLab, payload builders.

pub mod fake_gitlab;
