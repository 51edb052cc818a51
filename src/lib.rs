//! nbforge: a git-native collaborative Jupyter platform driven by GitLab events.
//!
//! One crate, one binary. See `docs/architecture.md` for the map of modules and flows.

pub mod config;
pub mod events;
pub mod forge;
pub mod mirror;
pub mod spec;
pub mod worksheet;
