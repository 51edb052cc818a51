//! GitLab webhook payloads.
