//! GitHub: REST client on octocrab, and its webhook payloads.

pub mod payload;
