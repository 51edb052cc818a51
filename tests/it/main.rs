//! Integration tests: one binary, modules by area.

mod support;
mod worksheet;
