//! Forge-neutral domain events parsed from GitLab and GitHub webhook payloads.
