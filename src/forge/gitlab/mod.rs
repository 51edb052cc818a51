//! GitLab: the [`Forge`] implementation on the `gitlab` crate's REST endpoint
//! builders, the token check behind `nbforge doctor`, and the webhook payloads
//! GitLab sends ([`payload`]).
//!
//! Every call goes through [`client::GitLabClient`], which owns the HTTP transport,
//! timeouts and the mapping of failures onto [`ForgeError`] (404 → `NotFound`,
//! 401/403 → `Forbidden`, no answer / 5xx / 429 → `Unavailable`). Lists are read
//! page by page until GitLab runs out. The token never appears in an error. Member
//! directories and project visibility, for the reconciler, are in `members`, which also
//! waits out GitLab's rate limits.

pub mod client;
mod members;
pub mod payload;

pub use members::RateLimits;

use async_trait::async_trait;
use gitlab::api::common::NameOrId;
use gitlab::api::{self as glapi, AsyncQuery, Pagination};
use serde::{Deserialize, Serialize};
use url::Url;

use self::client::GitLabClient;
use crate::config::Secret;
use crate::events::{ProjectRef, Visibility};
use crate::forge::{
    CommitStatus, FetchSource, Forge, ForgeError, ForgeMember, ForgeResult, Note, ProjectAccess,
    ProjectId, ProjectInfo, StatusState,
};

/// GitLab keeps commit status `description`, `ref` and `target_url` to 255 characters.
const STATUS_FIELD_MAX: usize = 255;

/// Items asked for per page when listing (GitLab's maximum is 100).
const DEFAULT_PAGE_SIZE: usize = 100;

/// The scope nbforge needs to set commit statuses and write merge request notes.
pub const REQUIRED_SCOPE: &str = "api";

/// A GitLab instance reached with one token.
#[derive(Debug, Clone)]
pub struct GitLabForge {
    client: GitLabClient,
    page_size: usize,
    rate_limits: RateLimits,
}

/// What `doctor` reports about the configured token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub user_id: i64,
    pub username: String,
    /// Whether the token's user is a GitLab administrator (only admins are told).
    pub is_admin: Option<bool>,
    /// The token's name, when GitLab describes the token itself.
    pub token_name: Option<String>,
    /// The token's scopes; `None` when GitLab would not describe the token
    /// (e.g. an OAuth token), in which case only the user is known.
    pub scopes: Option<Vec<String>>,
    /// Expiry date (`YYYY-MM-DD`), when there is one.
    pub expires_at: Option<String>,
    /// Plain-language problems an administrator should fix; empty when all is well.
    pub problems: Vec<String>,
}

impl TokenInfo {
    /// Whether nothing is known to be wrong with the token.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Deserialize)]
struct ProjectResp {
    id: i64,
    path_with_namespace: String,
    web_url: String,
    http_url_to_repo: String,
    default_branch: Option<String>,
    /// Absent when the token's user may not see it (e.g. not a member).
    #[serde(default)]
    visibility: Option<String>,
}

impl From<ProjectResp> for ProjectInfo {
    fn from(p: ProjectResp) -> Self {
        ProjectInfo {
            id: p.id,
            path_with_namespace: p.path_with_namespace,
            web_url: p.web_url,
            http_url_to_repo: p.http_url_to_repo,
            default_branch: p.default_branch,
        }
    }
}

#[derive(Deserialize)]
struct Author {
    username: String,
}

#[derive(Deserialize)]
struct NoteResp {
    id: i64,
    body: String,
    author: Option<Author>,
}

impl From<NoteResp> for Note {
    fn from(n: NoteResp) -> Self {
        Note {
            id: n.id,
            body: n.body,
            author: n.author.map(|a| a.username),
        }
    }
}

#[derive(Deserialize)]
struct UserResp {
    id: i64,
    username: String,
    #[serde(default)]
    is_admin: Option<bool>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct TokenSelfResp {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    revoked: Option<bool>,
    #[serde(default)]
    expires_at: Option<String>,
}

/// Minimal body for endpoints whose answer is not read.
#[derive(Deserialize)]
struct Ignored {}

fn builder_error(what: &str, err: impl std::fmt::Display) -> ForgeError {
    ForgeError::Other(format!("{what}: {err}"))
}

fn name_or_id(project: &ProjectId) -> ForgeResult<NameOrId<'_>> {
    match project {
        ProjectId::Id(id) => u64::try_from(*id)
            .map(NameOrId::from)
            .map_err(|_| ForgeError::Other(format!("invalid GitLab project id {id}"))),
        ProjectId::Path(path) if path.trim_matches('/').is_empty() => {
            Err(ForgeError::Other("empty GitLab project path".into()))
        }
        ProjectId::Path(path) => Ok(NameOrId::from(path.trim_matches('/'))),
    }
}

/// `e` with nbforge's own message: what was done and the HTTP status, without GitLab's
/// answer or the transport's error text (job errors and logs show this).
fn in_our_words(what: &str, e: ForgeError) -> ForgeError {
    let status = |m: &str| {
        m.split_once("HTTP ")
            .map(|(_, rest)| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .filter(|d| d.len() == 3)
            .map(|d| format!(" (HTTP {d})"))
            .unwrap_or_default()
    };
    match e {
        ForgeError::NotFound(m) => ForgeError::NotFound(format!(
            "{what}: no such project, or the token cannot read it{}",
            status(&m)
        )),
        ForgeError::Forbidden(m) => {
            ForgeError::Forbidden(format!("{what}: GitLab refused the token{}", status(&m)))
        }
        ForgeError::Unavailable(m) => ForgeError::Unavailable(format!(
            "{what}: GitLab could not be reached or failed{}",
            status(&m)
        )),
        ForgeError::Rejected(m) => {
            ForgeError::Rejected(format!("{what}: GitLab refused the request{}", status(&m)))
        }
        ForgeError::Other(m) => ForgeError::Other(format!(
            "{what}: unexpected answer from GitLab{}",
            status(&m)
        )),
        e @ (ForgeError::Unsupported(_) | ForgeError::Refused(_)) => e,
    }
}

fn positive(what: &str, value: i64) -> ForgeResult<u64> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ForgeError::Other(format!("invalid {what} {value}")))
}

fn state(state: StatusState) -> glapi::projects::repository::commits::CommitStatusState {
    use glapi::projects::repository::commits::CommitStatusState as S;
    match state {
        StatusState::Pending => S::Pending,
        StatusState::Running => S::Running,
        StatusState::Success => S::Success,
        StatusState::Failed => S::Failed,
        StatusState::Canceled => S::Canceled,
    }
}

fn already_in_state(msg: &str, state: StatusState) -> bool {
    msg.contains("Cannot transition status via")
        && msg.contains(&format!("from :{}", state.as_str()))
}

impl GitLabForge {
    /// A client for the instance at `base_url` (`https://gitlab.example.com`, or
    /// `http://127.0.0.1:PORT`; a path prefix is kept). Does no I/O: a bad token
    /// shows up on the first call, or through [`GitLabForge::check_token`].
    pub fn new(base_url: &Url, token: Secret) -> Result<Self, ForgeError> {
        Ok(GitLabForge {
            client: GitLabClient::new(base_url, token)?,
            page_size: DEFAULT_PAGE_SIZE,
            rate_limits: RateLimits::default(),
        })
    }

    /// How member listings wait out GitLab's rate limits.
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Ask for `size` items per page when listing (1..=100).
    pub fn with_page_size(mut self, size: usize) -> Self {
        self.page_size = size.clamp(1, 100);
        self
    }

    fn pagination(&self) -> Pagination {
        Pagination::AllPerPageLimit(self.page_size)
    }

    async fn query<E, T>(&self, what: &str, endpoint: E) -> ForgeResult<T>
    where
        E: AsyncQuery<T, GitLabClient> + Sync,
        T: Send,
    {
        endpoint
            .query_async(&self.client)
            .await
            .map_err(|e| self.client.map_error(what, e))
    }

    async fn list<E, T>(&self, what: &str, endpoint: E) -> ForgeResult<Vec<T>>
    where
        E: glapi::Endpoint + glapi::Pageable + Sync,
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        glapi::paged(endpoint, self.pagination())
            .query_async(&self.client)
            .await
            .map_err(|e| self.client.map_error(what, e))
    }

    /// The project as GitLab describes it (the source of its clone URL).
    pub async fn project(&self, project: &ProjectId) -> ForgeResult<ProjectInfo> {
        Ok(self.read_project(project).await?.into())
    }

    async fn read_project(&self, project: &ProjectId) -> ForgeResult<ProjectResp> {
        let what = format!("reading project {project}");
        let endpoint = glapi::projects::Project::builder()
            .project(name_or_id(project)?)
            .build()
            .map_err(|e| builder_error(&what, e))?;
        self.query(&what, endpoint).await
    }

    /// Who the token belongs to and what it may do, with the problems an
    /// administrator should fix (missing `api` scope, expired or revoked token,
    /// blocked user). Fails with `Forbidden` when GitLab refuses the token outright.
    pub async fn check_token(&self) -> Result<TokenInfo, ForgeError> {
        let user: UserResp = self
            .query(
                "reading the token's user",
                glapi::users::CurrentUser::builder()
                    .build()
                    .map_err(|e| builder_error("reading the token's user", e))?,
            )
            .await?;
        let token = self
            .query::<_, TokenSelfResp>(
                "reading the token's scopes",
                glapi::personal_access_tokens::PersonalAccessTokenSelf::builder()
                    .build()
                    .map_err(|e| builder_error("reading the token's scopes", e))?,
            )
            .await;
        let token = match token {
            Ok(t) => Some(t),
            // Not a personal access token, or an older GitLab: scopes stay unknown.
            Err(ForgeError::NotFound(_) | ForgeError::Forbidden(_)) => None,
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        if let Some(state) = user.state.as_deref().filter(|s| *s != "active") {
            problems.push(format!("the token's user `{}` is {state}", user.username));
        }
        if let Some(t) = &token {
            if t.revoked == Some(true) {
                problems.push("the token is revoked".into());
            } else if t.active == Some(false) {
                problems.push("the token is no longer active (expired?)".into());
            }
            if !t.scopes.iter().any(|s| s == REQUIRED_SCOPE) {
                problems.push(format!(
                    "the token lacks the `{REQUIRED_SCOPE}` scope (it has: {}); GitLab will refuse \
                     commit statuses, merge request notes, forks and merge requests",
                    if t.scopes.is_empty() {
                        "none".to_owned()
                    } else {
                        t.scopes.join(", ")
                    }
                ));
            }
        }
        Ok(TokenInfo {
            user_id: user.id,
            username: user.username,
            is_admin: user.is_admin,
            token_name: token.as_ref().map(|t| t.name.clone()),
            expires_at: token.as_ref().and_then(|t| t.expires_at.clone()),
            scopes: token.map(|t| t.scopes),
            problems,
        })
    }
}

#[async_trait]
impl Forge for GitLabForge {
    fn kind(&self) -> &'static str {
        "gitlab"
    }

    async fn set_commit_status(
        &self,
        project: &ProjectId,
        sha: &str,
        status: &CommitStatus,
    ) -> ForgeResult<()> {
        let what = format!("setting status `{}` on {project}@{sha}", status.name);
        if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ForgeError::Rejected(format!("{what}: not a commit sha")));
        }
        let mut builder = glapi::projects::repository::commits::CreateCommitStatus::builder();
        builder
            .project(name_or_id(project)?)
            .commit(sha)
            .state(state(status.state))
            .name(status.name.as_str());
        if let Some(r) = &status.ref_name {
            if r.len() > STATUS_FIELD_MAX {
                return Err(ForgeError::Rejected(format!("{what}: ref name too long")));
            }
            builder.ref_(r.as_str());
        }
        if let Some(url) = &status.target_url {
            if url.len() > STATUS_FIELD_MAX {
                return Err(ForgeError::Rejected(format!(
                    "{what}: target URL longer than {STATUS_FIELD_MAX} characters"
                )));
            }
            builder.target_url(url.as_str());
        }
        if let Some(d) = &status.description {
            builder.description(crate::text::truncate(d, STATUS_FIELD_MAX));
        }
        let endpoint = builder.build().map_err(|e| builder_error(&what, e))?;
        match self.query::<_, Ignored>(&what, endpoint).await {
            Ok(_) => Ok(()),
            // GitLab refuses to move a pending/running status to the state it is
            // already in ("Cannot transition status via :run from :running"): the
            // status is already what was asked, so that is success.
            Err(ForgeError::Rejected(msg)) if already_in_state(&msg, status.state) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_merge_request_notes(
        &self,
        project: &ProjectId,
        mr_iid: i64,
    ) -> ForgeResult<Vec<Note>> {
        let what = format!("listing notes of {project}!{mr_iid}");
        let endpoint = glapi::projects::merge_requests::notes::MergeRequestNotes::builder()
            .project(name_or_id(project)?)
            .merge_request(positive("merge request iid", mr_iid)?)
            .build()
            .map_err(|e| builder_error(&what, e))?;
        let notes: Vec<NoteResp> = self.list(&what, endpoint).await?;
        Ok(notes.into_iter().map(Note::from).collect())
    }

    async fn create_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        body: &str,
    ) -> ForgeResult<Note> {
        let what = format!("commenting on {project}!{mr_iid}");
        let endpoint = glapi::projects::merge_requests::notes::CreateMergeRequestNote::builder()
            .project(name_or_id(project)?)
            .merge_request(positive("merge request iid", mr_iid)?)
            .body(body)
            .build()
            .map_err(|e| builder_error(&what, e))?;
        let note: NoteResp = self.query(&what, endpoint).await?;
        Ok(note.into())
    }

    async fn edit_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        note_id: i64,
        body: &str,
    ) -> ForgeResult<Note> {
        let what = format!("editing note {note_id} on {project}!{mr_iid}");
        let endpoint = glapi::projects::merge_requests::notes::EditMergeRequestNote::builder()
            .project(name_or_id(project)?)
            .merge_request(positive("merge request iid", mr_iid)?)
            .note(positive("note id", note_id)?)
            .body(body)
            .build()
            .map_err(|e| builder_error(&what, e))?;
        let note: NoteResp = self.query(&what, endpoint).await?;
        Ok(note.into())
    }

    async fn fetch_source(&self, project: &ProjectId) -> ForgeResult<FetchSource> {
        let info = self.project(project).await?;
        Ok(FetchSource {
            url: info.http_url_to_repo,
            credentials: Some(("oauth2".to_owned(), self.client.token().clone())),
        })
    }

    async fn project_access(&self, project: &ProjectId) -> ForgeResult<ProjectAccess> {
        self.read_project_access(project).await
    }

    /// Reads the project by the event's id (by its path when it has none) and requires
    /// GitLab's path for it to be the event's, ignoring case as GitLab does.
    async fn verify_project(&self, claimed: &ProjectRef) -> ForgeResult<ProjectRef> {
        let id = ProjectId::from(claimed);
        let p = self
            .read_project(&id)
            .await
            .map_err(|e| in_our_words(&format!("reading GitLab project {id}"), e))?;
        if !p
            .path_with_namespace
            .eq_ignore_ascii_case(claimed.path.trim_matches('/'))
        {
            return Err(ForgeError::Refused(format!(
                "the event names project `{}`, but GitLab project {} is `{}`; nothing was \
                 fetched or published",
                claimed.path, p.id, p.path_with_namespace
            )));
        }
        Ok(ProjectRef {
            forge: claimed.forge,
            id: Some(p.id),
            path: p.path_with_namespace,
            web_url: Some(p.web_url),
            git_http_url: Some(p.http_url_to_repo),
            default_branch: p.default_branch.or_else(|| claimed.default_branch.clone()),
            visibility: Some(Visibility::parse(
                p.visibility.as_deref().unwrap_or("private"),
            )),
        })
    }

    async fn project_members(&self, project: &ProjectId) -> ForgeResult<Vec<ForgeMember>> {
        self.read_project_members(project).await
    }

    async fn group_members(&self, full_path: &str) -> ForgeResult<Vec<ForgeMember>> {
        self.read_group_members(full_path).await
    }

    async fn group_full_path(&self, id: i64) -> ForgeResult<String> {
        self.read_group_full_path(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_checked() {
        assert!(name_or_id(&ProjectId::Id(-1)).is_err());
        assert!(name_or_id(&ProjectId::Path("/".into())).is_err());
        assert_eq!(
            name_or_id(&ProjectId::Path("/g/p/".into()))
                .unwrap()
                .to_string(),
            "g%2Fp"
        );
        assert_eq!(name_or_id(&ProjectId::Id(7)).unwrap().to_string(), "7");
    }

    #[test]
    fn project_lookups_fail_in_our_words() {
        let e = in_our_words(
            "reading GitLab project 7",
            ForgeError::NotFound(
                "reading project 7: HTTP 404 Not Found: {\"message\":\"<script>\"}".into(),
            ),
        );
        assert!(matches!(e, ForgeError::NotFound(_)));
        assert_eq!(
            e.to_string(),
            "not found: reading GitLab project 7: no such project, or the token cannot read it (HTTP 404)"
        );
        let e = in_our_words(
            "reading GitLab project 7",
            ForgeError::Unavailable("connection failed for http://10.0.0.1:81/: refused".into()),
        );
        assert!(e.is_transient());
        assert!(!e.to_string().contains("10.0.0.1"), "{e}");
    }

    #[test]
    fn debug_hides_token() {
        let forge = GitLabForge::new(
            &Url::parse("https://gitlab.example.com").unwrap(),
            Secret::new("glpat-do-not-print"),
        )
        .unwrap();
        assert!(!format!("{forge:?}").contains("glpat-do-not-print"));
    }
}
