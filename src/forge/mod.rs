//! The forge seam: everything nbforge asks of GitLab, GitHub or a plain git server.
//!
//! Handlers talk to a [`Forge`] behind `Arc<dyn Forge>`; the implementations are
//! [`gitlab`] (the `gitlab` crate's REST endpoints), [`github`] (octocrab) and
//! [`local`] (plain git repositories; statuses and notes kept in nbforge's own
//! database). Wire payload structs live in the implementation modules; the rest of
//! the crate sees only the types below and [`crate::events`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// State of a commit status, as GitLab names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Pending,
    Running,
    Success,
    Failed,
    Canceled,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Running => "running",
            StatusState::Success => "success",
            StatusState::Failed => "failed",
            StatusState::Canceled => "canceled",
        }
    }
}

/// A commit status to set on a commit (GitLab: `POST /projects/:id/statuses/:sha`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    pub state: StatusState,
    /// The status context, e.g. `nbforge/environment`.
    pub name: String,
    /// Branch or tag the commit belongs to, when known.
    pub ref_name: Option<String>,
    pub target_url: Option<String>,
    pub description: Option<String>,
}

/// A note (comment) on a merge request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub id: i64,
    pub body: String,
    /// Username of the author, when the forge says.
    pub author: Option<String>,
}

/// A project as the forge describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub id: i64,
    /// `namespace/project`.
    pub path_with_namespace: String,
    pub web_url: String,
    pub http_url_to_repo: String,
    pub default_branch: Option<String>,
}

/// A project's identity and visibility as the forge says now (GitLab `GET /projects/:id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectAccess {
    pub id: i64,
    /// `namespace/project` today: differs from nbforge's record after a rename or transfer.
    pub path_with_namespace: String,
    pub visibility: crate::events::Visibility,
}

/// Someone who can reach a group or project, at their effective level (GitLab
/// `/members/all`: direct members, members of every ancestor group and of groups the
/// group or project is shared with; the highest level wins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeMember {
    pub user_id: i64,
    pub username: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// The user's state: `active`, `blocked`, …
    pub state: Option<String>,
    /// GitLab's raw access level (10 guest … 50 owner).
    pub access_level: i64,
    /// `YYYY-MM-DD`, as GitLab gives it.
    pub expires_at: Option<String>,
}

/// What went wrong talking to a forge.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The object does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The token lacks the rights (401/403).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The forge could not be reached or answered 5xx; worth retrying.
    #[error("forge unavailable: {0}")]
    Unavailable(String),
    /// The forge cannot do this (e.g. a plain git server has no merge requests).
    #[error("not supported by this forge: {0}")]
    Unsupported(&'static str),
    /// The forge refused the request as it is (400, 409, 422: a field over its length
    /// limit, a state it will not take): sending it again cannot help.
    #[error("refused by the forge: {0}")]
    Rejected(String),
    /// nbforge will not act on the project as the event describes it: its path does not
    /// match what the forge says, or its repository is not one nbforge may read. The
    /// message names the paths involved and nothing a remote answered.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

impl ForgeError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ForgeError::Unavailable(_))
    }

    /// Whether trying again can never succeed without a change on nbforge's side: the
    /// request itself was refused, or what it names does not exist. (A refused token is not
    /// permanent: an administrator may fix it while the job waits.)
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ForgeError::Rejected(_) | ForgeError::NotFound(_) | ForgeError::Refused(_)
        )
    }
}

pub type ForgeResult<T> = Result<T, ForgeError>;

/// A project is named by its numeric id where the forge has one, else by its path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProjectId {
    Id(i64),
    Path(String),
}

impl std::fmt::Display for ProjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectId::Id(id) => write!(f, "{id}"),
            ProjectId::Path(p) => f.write_str(p),
        }
    }
}

/// Everything nbforge asks of a forge today: commit statuses, the one merge request
/// note, where to fetch a project's git objects from, and (GitLab only; the others answer
/// [`ForgeError::Unsupported`]) member directories and project visibility for the
/// membership reconciler. Reading refs, forks and opening merge requests come with the
/// features that call them.
#[async_trait]
pub trait Forge: Send + Sync {
    /// Short name for logs and metrics: `gitlab`, `github`, `local`.
    fn kind(&self) -> &'static str;

    async fn set_commit_status(
        &self,
        project: &ProjectId,
        sha: &str,
        status: &CommitStatus,
    ) -> ForgeResult<()>;

    async fn list_merge_request_notes(
        &self,
        project: &ProjectId,
        mr_iid: i64,
    ) -> ForgeResult<Vec<Note>>;

    async fn create_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        body: &str,
    ) -> ForgeResult<Note>;

    async fn edit_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        note_id: i64,
        body: &str,
    ) -> ForgeResult<Note>;

    /// URL git can fetch the project from, and the credentials to use (username, token).
    async fn fetch_source(&self, project: &ProjectId) -> ForgeResult<FetchSource>;

    /// The project an event names, as the forge knows it: identity, path, clone URL and
    /// visibility come from the forge (its API, or the repository roots of a plain git
    /// server), never from the event. Fails with [`ForgeError::Refused`] when the event's
    /// path is not the forge's path of that project. Jobs call this before they record,
    /// fetch or publish anything for a project.
    ///
    /// The default keeps the event's description: for forges whose [`Forge::fetch_source`]
    /// already asks their API where to fetch from.
    async fn verify_project(
        &self,
        claimed: &crate::events::ProjectRef,
    ) -> ForgeResult<crate::events::ProjectRef> {
        Ok(claimed.clone())
    }

    /// The project's current path and visibility; `NotFound` when it is gone.
    async fn project_access(&self, _project: &ProjectId) -> ForgeResult<ProjectAccess> {
        Err(ForgeError::Unsupported("project visibility"))
    }

    /// Everyone who can reach the project (inherited members included), every page.
    async fn project_members(&self, _project: &ProjectId) -> ForgeResult<Vec<ForgeMember>> {
        Err(ForgeError::Unsupported("member directories"))
    }

    /// Everyone who can reach the group `full_path` (inherited members included).
    async fn group_members(&self, _full_path: &str) -> ForgeResult<Vec<ForgeMember>> {
        Err(ForgeError::Unsupported("member directories"))
    }

    /// The full path (`lab/sub`) of the group with id `id`: member hooks name a group by
    /// its last segment only.
    async fn group_full_path(&self, _id: i64) -> ForgeResult<String> {
        Err(ForgeError::Unsupported("groups"))
    }
}

/// Where and how to fetch a project's git objects.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchSource {
    pub url: String,
    /// `(username, password)` for HTTPS basic auth; GitLab takes `oauth2` + token.
    pub credentials: Option<(String, crate::config::Secret)>,
}

impl std::fmt::Debug for FetchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchSource")
            .field("url", &self.url)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

pub mod github;
pub mod gitlab;
pub mod local;

/// The forges nbforge talks to. GitLab-shaped events go to GitLab when it is
/// configured and to the local forge (plain git, `hooks/post-receive`) otherwise.
#[derive(Clone)]
pub struct Forges {
    pub gitlab: Option<std::sync::Arc<dyn Forge>>,
    pub github: Option<std::sync::Arc<dyn Forge>>,
    pub local: std::sync::Arc<dyn Forge>,
}

impl Forges {
    /// The forge that answers for events from `kind`.
    pub fn for_kind(&self, kind: &crate::events::ForgeKind) -> std::sync::Arc<dyn Forge> {
        use crate::events::ForgeKind;
        match kind {
            ForgeKind::GitLab => self.gitlab.clone().unwrap_or_else(|| self.local.clone()),
            ForgeKind::GitHub => self.github.clone().unwrap_or_else(|| self.local.clone()),
        }
    }
}

impl From<&crate::events::ProjectRef> for ProjectId {
    /// The forge's id for an event's project when the event carries one, else its path.
    fn from(p: &crate::events::ProjectRef) -> ProjectId {
        match p.id {
            Some(id) => ProjectId::Id(id),
            None => ProjectId::Path(p.path.clone()),
        }
    }
}
