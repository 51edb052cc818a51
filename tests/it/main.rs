//! Integration tests: one binary, modules by area.

mod forge_gitlab;
mod support;
