//! Integration tests: one binary, modules by area.

mod events;
mod support;
