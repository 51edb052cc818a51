//! nbforge: a git-native collaborative Jupyter platform driven by GitLab events.
//!
//! One crate, one binary. See `docs/architecture.md` for the map of modules and flows.

pub mod access;
pub mod app;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod environment;
pub mod events;
pub mod forge;
pub mod ingest;
pub mod jobs;
pub mod launch;
pub mod metrics;
pub mod repo;
pub mod runs;
pub mod sessions;
pub mod spec;
pub mod storage;
pub mod text;
pub mod urls;
pub mod web;
pub mod worksheet;
