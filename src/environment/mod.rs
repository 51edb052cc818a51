//! Environments: preparing the image a commit's notebooks run in. The flow (mirror, launch
//! spec, environment key, cache or build, commit statuses) is in [`flow`]; the Docker
//! builder in [`docker`]; live build logs in [`logs`]; the locally made base image in
//! [`base`]; conda environments (solved and installed on the host) in [`conda`];
//! `nbforge build` in [`cli`].

pub mod base;
pub mod cli;
pub mod conda;
pub mod docker;
pub mod flow;
pub mod logs;

pub use docker::*;
pub use logs::{LogHub, Phase};
