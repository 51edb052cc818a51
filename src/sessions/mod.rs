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
//! restart orphans nothing. What happens to sessions once they run (culling, limits,
//! quotas) is [`lifecycle`]'s.

pub mod checkout;
pub mod directory;
pub mod docker;
pub mod lifecycle;

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
    /// The repository to check out in the home before Jupyter starts.
    pub checkout: Option<Checkout>,
}

/// A repository for a session to check out below its home, from a git bundle nbforge
/// wrote (see `launch::checkout`): cloned when the folder is missing, fast-forwarded when
/// it is clean and behind, left alone otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// The folder below the home: a plain name.
    pub dir: String,
    /// The commit to check out (40 or 64 hex digits), named `refs/nbforge/launch` in the bundle.
    pub commit: String,
    /// The branch to create at the commit on first checkout (else a detached head).
    pub branch: Option<String>,
    /// The checkout's `origin`: the project's clone URL, never with credentials in it.
    pub remote_url: String,
    /// The bundle file on nbforge's side.
    pub bundle: std::path::PathBuf,
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
        if let Some(c) = &self.checkout {
            let plain_dir = !c.dir.is_empty()
                && !c.dir.starts_with('.')
                && c.dir.len() <= 100
                && c.dir
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            let hex = matches!(c.commit.len(), 40 | 64)
                && c.commit.bytes().all(|b| b.is_ascii_hexdigit());
            let branch_ok = c.branch.as_deref().is_none_or(|b| {
                !b.is_empty()
                    && b.len() <= 200
                    && !b.starts_with('-')
                    && !b.contains("..")
                    && b.bytes().all(|x| {
                        x.is_ascii_alphanumeric() || matches!(x, b'-' | b'_' | b'.' | b'/')
                    })
            });
            let remote_ok = !c.remote_url.contains('@')
                && !c.remote_url.chars().any(|ch| ch.is_control() || ch == ' ');
            if !(plain_dir && hex && branch_ok && remote_ok) {
                return invalid(
                    "the repository to check out is not a plain folder, commit, branch and URL"
                        .into(),
                );
            }
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
    /// When it ended on its own (state `Stopped` or `Failed`), in epoch milliseconds.
    pub finished_ms: Option<i64>,
    /// What the checkout did when the session started (`cloned at …`, `left alone: …`),
    /// when the session was just started with one.
    pub checkout: Option<String>,
}

/// What the Jupyter server says about its use, for culling: its status
/// (`GET <base_url>api/status`) and its kernels (`GET <base_url>api/kernels`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Activity {
    /// RFC 3339, as Jupyter writes it: the latest of the server's and its kernels' last
    /// activity. Polling the status does not move it.
    pub last_activity: String,
    /// Open WebSocket connections to kernels.
    pub connections: u64,
    /// Running kernels.
    pub kernels: u64,
    /// Whether a kernel is computing (`execution_state` `busy`): a long-running cell that
    /// prints nothing moves no timestamp, so a busy session is never idle.
    #[serde(default)]
    pub busy: bool,
}

/// What a session uses now, from the runtime's accounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionStats {
    /// CPUs used, averaged over the runtime's last sampling interval (1.0: one core).
    pub cpu_cores: f64,
    pub memory_bytes: u64,
    /// The session's memory limit (0: unknown).
    pub memory_limit_bytes: u64,
}

/// The disk a user's persistent home uses, as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HomeUsage {
    pub bytes: u64,
    /// When it was measured, in epoch milliseconds.
    pub measured_ms: i64,
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

    /// What a running session uses now; `None` when it is not running or the backend
    /// cannot say.
    async fn stats(&self, _id: &SessionId) -> Result<Option<SessionStats>, SessionError> {
        Ok(None)
    }

    /// The disk a user's persistent home uses, measured again when the last measure is
    /// older than `max_age`; `None` when the user has no home yet or the backend cannot
    /// measure it.
    async fn home_usage(
        &self,
        _user_id: i64,
        _max_age: std::time::Duration,
    ) -> Result<Option<HomeUsage>, SessionError> {
        Ok(None)
    }
}

/// The backend when the runtime could not even be set up (e.g. the Docker socket named
/// does not exist): every call fails as an outage, and nbforge's other work goes on.
pub struct Unavailable(pub String);

#[async_trait]
impl SessionBackend for Unavailable {
    async fn start(&self, _: &SessionSpec) -> Result<SessionInfo, SessionError> {
        Err(SessionError::Backend(self.0.clone()))
    }
    async fn status(&self, _: &SessionId) -> Result<Option<SessionInfo>, SessionError> {
        Err(SessionError::Backend(self.0.clone()))
    }
    async fn stop(&self, _: &SessionId) -> Result<(), SessionError> {
        Err(SessionError::Backend(self.0.clone()))
    }
    async fn list(&self) -> Result<Vec<SessionInfo>, SessionError> {
        Err(SessionError::Backend(self.0.clone()))
    }
    async fn activity(&self, _: &SessionId) -> Result<Option<Activity>, SessionError> {
        Err(SessionError::Backend(self.0.clone()))
    }
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
            checkout: None,
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
        let checkout = Checkout {
            dir: "rnaseq".into(),
            commit: "ab".repeat(20),
            branch: Some("main".into()),
            remote_url: "https://gitlab.example.org/lab/rnaseq.git".into(),
            bundle: "/tmp/x.bundle".into(),
        };
        let mut s = spec();
        s.checkout = Some(checkout.clone());
        s.validate().unwrap();
        for bad in [
            Checkout {
                dir: "../x".into(),
                ..checkout.clone()
            },
            Checkout {
                commit: "main".into(),
                ..checkout.clone()
            },
            Checkout {
                branch: Some("$(reboot)".into()),
                ..checkout.clone()
            },
            Checkout {
                remote_url: "https://oauth2:glpat@gitlab.example.org/x.git".into(),
                ..checkout.clone()
            },
        ] {
            let mut s = spec();
            s.checkout = Some(bad);
            assert!(s.validate().is_err());
        }
    }
}
