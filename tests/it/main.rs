//! Integration tests: one binary, modules by area.

mod support;

mod ingest;
mod jobs;
mod serve;
