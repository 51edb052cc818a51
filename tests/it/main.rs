//! Integration tests: one binary, modules by area.

mod spec;
mod support;

mod ingest;
mod jobs;
mod serve;
