//! GitHub webhook payloads.
