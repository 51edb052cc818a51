//! GitLab: REST client on the `gitlab` crate, and the webhook payloads it sends.

pub mod payload;
// TEMP-STUB
pub struct TokenInfo {
    pub username: String,
    pub scopes: Vec<String>,
}
pub struct GitLabForge;
impl GitLabForge {
    pub fn new(_u: &url::Url, _t: crate::config::Secret) -> Result<Self, super::ForgeError> {
        Err(super::ForgeError::Unsupported("x"))
    }
    pub async fn check_token(&self) -> Result<TokenInfo, super::ForgeError> {
        Err(super::ForgeError::Unsupported("x"))
    }
}
