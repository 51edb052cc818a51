//! Jupyter sessions: the seam between nbforge and whatever runs users' Jupyter servers.
//!
//! A session is one Jupyter server for one owner (a GitLab user, or an anonymous visitor)
//! in a project's environment image at a commit, with a home that outlives it (or a
//! throwaway one for visitors), served under its own `base_url` prefix and reached only
//! through nbforge's proxy with a per-session token. [`SessionBackend`] is what a runtime
//! implements: [`docker::DockerSessions`] runs each session as a hardened container on the
//! local engine; a JupyterHub backend (for clusters) will implement the same trait over
//! JupyterHub's REST API. Backends find their sessions again from their own records
//! (container labels, the hub's server list), so nbforge keeps no table of them and a
//! restart orphans nothing.

pub mod directory;
pub mod docker;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// A session's id, unique in its backend (Docker: 32 hex digits naming the container).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose session it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Owner {
    /// A logged-in GitLab user.
    User { id: i64, username: String },
    /// A visitor who is not logged in, named by the key of their browser session.
    Anonymous { visitor: String },
}

impl Owner {
    /// The name in the session's URL prefix: the username, or `~<visitor>` (GitLab
    /// usernames never contain `~`, so a visitor's prefix is never a user's).
    pub fn url_name(&self) -> String {
        match self {
            Owner::User { username, .. } => username.clone(),
            Owner::Anonymous { visitor } => format!("~{visitor}"),
        }
    }
}

/// The project and commit whose environment a session runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionProject {
    /// The forge's kind, as stored (`gitlab`, `github`, `local`).
    pub forge: String,
    /// `namespace/project`.
    pub path: String,
    pub commit: String,
}

/// What a session may use; each backend caps it by the platform's limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory in bytes (`0`: the platform's maximum).
    pub memory_bytes: u64,
    /// CPUs, fractions allowed (`0`: the platform's maximum).
    pub cpus: f64,
}

/// Where the session's home directory lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Home {
    /// The user's persistent home, shared by all their sessions and kept after them.
    User { user_id: i64 },
    /// An empty home removed with the session (anonymous visitors).
    Throwaway,
}

/// Everything needed to start a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub owner: Owner,
    /// The session's name, unique per owner: lowercase letters, digits, `-` and `_`.
    pub name: String,
    pub project: SessionProject,
    /// The environment image to run.
    pub image: String,
    pub resources: Resources,
    pub home: Home,
    /// Jupyter's `base_url`: the prefix the proxy serves the session under,
    /// `/user/<owner>/<session>/` (see [`SessionSpec::base_url_for`]).
    pub base_url: String,
    /// What to open first, below `base_url`: `lab/tree/<path>`, `lab/terminals/1`, …
    pub default_url: String,
    /// Extra environment variables for the server and its kernels.
    pub env: BTreeMap<String, String>,
}

/// The least memory a session may ask for.
pub const MIN_MEMORY_BYTES: u64 = 64 << 20;

/// Environment variables a spec may not set: the backend owns them.
const RESERVED_ENV: &[&str] = &[
    "JUPYTER_TOKEN",
    "JUPYTERHUB_API_TOKEN",
    "HOME",
    "USER",
    "NB_USER",
    "NB_UID",
];

impl SessionSpec {
    /// The prefix a session is served under: `/user/<owner>/<session>/`.
    pub fn base_url_for(owner: &Owner, session: &str) -> String {
        format!("/user/{}/{session}/", owner.url_name())
    }

    /// Checks the fields a backend relies on; the message is for the user.
    pub fn validate(&self) -> Result<(), SessionError> {
        let invalid = |m: String| Err(SessionError::Invalid(m));
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.name) {
            return invalid(format!(
                "session name `{}`: use 1 to 63 lowercase letters, digits, `-` or `_`",
                crate::text::truncate(&self.name, 80)
            ));
        }
        if let Owner::Anonymous { visitor } = &self.owner
            && !name_ok(visitor)
        {
            return invalid("the anonymous visitor's key is not a plain name".into());
        }
        let url_ok = |s: &str| {
            s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~' | b'%')
            }) && !s.contains("..")
                && !s.contains("//")
        };
        if !(self.base_url.starts_with("/user/")
            && self.base_url.ends_with('/')
            && url_ok(&self.base_url))
        {
            return invalid(format!(
                "base URL `{}` must look like /user/<name>/<session>/",
                crate::text::truncate(&self.base_url, 120)
            ));
        }
        if self.default_url.starts_with('/') || !url_ok(&self.default_url) {
            return invalid(format!(
                "default URL `{}` must be a relative path such as lab/tree/<file>",
                crate::text::truncate(&self.default_url, 120)
            ));
        }
        let memory = self.resources.memory_bytes;
        if memory != 0 && memory < MIN_MEMORY_BYTES {
            return invalid(format!(
                "{memory} bytes of memory is too little for Jupyter (at least {} MiB)",
                MIN_MEMORY_BYTES >> 20
            ));
        }
        if !(self.resources.cpus.is_finite() && self.resources.cpus >= 0.0) {
            return invalid("the CPUs asked for are not a positive number".into());
        }
        if self.image.is_empty() {
            return invalid("no image to run".into());
        }
        for key in self.env.keys() {
            let plain = !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !key.as_bytes()[0].is_ascii_digit();
            if !plain || RESERVED_ENV.contains(&key.as_str()) {
                return invalid(format!(
                    "environment variable `{}` cannot be set",
                    crate::text::truncate(key, 80)
                ));
            }
        }
        Ok(())
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum SessionState {
    /// Created, Jupyter not answering yet.
    Starting,
    Running,
    /// Ended on its own without an error.
    Stopped,
    /// Ended on its own with an error, e.g. "killed: out of memory".
    Failed(String),
}

/// A session as its backend reports it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: SessionId,
    pub owner: Owner,
    pub name: String,
    pub project: SessionProject,
    pub image: String,
    pub base_url: String,
    pub default_url: String,
    pub state: SessionState,
    /// Where the proxy reaches Jupyter (scheme, host and port; the path is `base_url`),
    /// when it has one: `http://<container ip>:8888` on the session network.
    pub address: Option<url::Url>,
    /// The session's Jupyter token: the proxy sends it as `Authorization: token …`.
    pub token: Secret,
    /// When the session was created, in epoch milliseconds.
    pub created_ms: i64,
}

/// What the Jupyter server says about its use (`GET <base_url>api/status`), for culling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Activity {
    /// RFC 3339, as Jupyter writes it; polling the status does not move it.
    pub last_activity: String,
    /// Open WebSocket connections to kernels.
    pub connections: u64,
    /// Running kernels.
    pub kernels: u64,
}

/// How starting or reaching a session went wrong. Messages never contain tokens.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The spec cannot be run as it is (shown to the user).
    #[error("{0}")]
    Invalid(String),
    /// The environment image is not there (not built yet, or removed).
    #[error("the environment image {0} is not available")]
    ImageMissing(String),
    /// Jupyter stopped while starting; `reason` ends with the last lines of its log.
    #[error("the session did not start: {0}")]
    StartFailed(String),
    /// Jupyter did not answer within the start timeout.
    #[error("the session did not answer within {0:?}")]
    StartTimeout(std::time::Duration),
    /// The runtime (Docker engine, JupyterHub) cannot be reached or failed: logged, not shown.
    #[error("session runtime unavailable: {0}")]
    Backend(String),
}

impl SessionError {
    /// Whether the message is meant for the user (the rest is logged and answered without detail).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, SessionError::Backend(_))
    }
}

/// What runs sessions. Behind `Arc<dyn SessionBackend>` in the application state.
#[async_trait]
pub trait SessionBackend: Send + Sync {
    /// Starts a session and returns once Jupyter answers (state `Running`), or fails and
    /// leaves nothing behind but the user's persistent home.
    async fn start(&self, spec: &SessionSpec) -> Result<SessionInfo, SessionError>;

    /// The session as it is now, or `None` when the backend has no such session.
    async fn status(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError>;

    /// Stops and removes a session (and its throwaway home); the user's home is kept.
    /// Stopping a session that is gone is not an error.
    async fn stop(&self, id: &SessionId) -> Result<(), SessionError>;

    /// Every session the backend has, found from the backend's own records.
    async fn list(&self) -> Result<Vec<SessionInfo>, SessionError>;

    /// The server's activity, or `None` when the session is gone or not running.
    async fn activity(&self, id: &SessionId) -> Result<Option<Activity>, SessionError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SessionSpec {
        let owner = Owner::User {
            id: 7,
            username: "ada".into(),
        };
        SessionSpec {
            base_url: SessionSpec::base_url_for(&owner, "rnaseq"),
            owner,
            name: "rnaseq".into(),
            project: SessionProject {
                forge: "gitlab".into(),
                path: "lab/rnaseq".into(),
                commit: "1a2b3c".into(),
            },
            image: "nbforge/env:abc".into(),
            resources: Resources {
                memory_bytes: 0,
                cpus: 0.0,
            },
            home: Home::User { user_id: 7 },
            default_url: "lab/tree/analysis.ipynb".into(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn a_plain_spec_is_valid() {
        let s = spec();
        assert_eq!(s.base_url, "/user/ada/rnaseq/");
        s.validate().unwrap();
        let visitor = Owner::Anonymous {
            visitor: "3f2a".into(),
        };
        assert_eq!(
            SessionSpec::base_url_for(&visitor, "try"),
            "/user/~3f2a/try/"
        );
    }

    #[test]
    fn names_urls_and_reserved_variables_are_refused() {
        let mut s = spec();
        s.name = "../x".into();
        assert!(matches!(s.validate(), Err(SessionError::Invalid(_))));
        let mut s = spec();
        s.base_url = "/user/ada/../admin/".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.default_url = "/lab".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.default_url = "lab?x=\"<script>".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.env.insert("JUPYTER_TOKEN".into(), "x".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.env.insert("A=B".into(), "x".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.resources.memory_bytes = 1 << 20;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.resources.cpus = f64::NAN;
        assert!(s.validate().is_err());
    }
}
