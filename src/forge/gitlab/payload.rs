//! GitLab webhook payloads.
use crate::events::{Parsed, PayloadError};
pub fn parse(_event_header: Option<&str>, body: &[u8]) -> Result<Parsed, PayloadError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    Ok(Parsed {
        kind: v
            .get("object_kind")
            .and_then(|k| k.as_str())
            .unwrap_or("unknown")
            .to_owned(),
        event: None,
    })
}
