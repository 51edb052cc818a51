//! GitLab: REST client on the `gitlab` crate, and the webhook payloads it sends.

pub mod payload;
