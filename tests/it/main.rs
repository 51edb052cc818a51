//! Integration tests: one binary, modules by area.

mod support;

mod access;
mod anonymous_runs;
mod browser;
mod catalog;
mod ci_template;
mod conda;
mod data;
mod detection;
mod environments;
mod events;
mod forge_gitlab;
mod github;
mod images;
mod ingest;
mod jobs;
mod launch;
mod members;
mod probes;
mod proxy;
mod python_versions;
mod runs;
mod runs_again;
mod runs_bad_input;
mod runs_restart;
mod scenarios;
mod security;
mod serve;
mod session_lifecycle;
mod sessions;
mod spec;
mod spool;
mod worksheet;
