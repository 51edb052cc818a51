//! nbforge: a git-native collaborative Jupyter platform driven by GitLab events.
//!
//! One crate, one binary. See `docs/architecture.md` for the map of modules and flows.

pub mod app;
pub mod bench;
pub mod build;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod doctor;
pub mod events;
pub mod forge;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod mirror;
pub mod spec;
pub mod web;
pub mod worksheet;
