//! GitHub: REST client on octocrab, and its webhook payloads.

pub mod payload;
// TEMP-STUB
pub struct GitHubForge;
impl GitHubForge {
    pub fn new(_u: Option<url::Url>, _t: crate::config::Secret) -> Result<Self, super::ForgeError> {
        Err(super::ForgeError::Unsupported("x"))
    }
}
