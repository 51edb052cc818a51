//! GitHub: the [`Forge`] implementation on octocrab's REST client, and the webhook
//! payloads GitHub sends ([`payload`]).
//!
//! GitHub words map onto the forge's GitLab-shaped ones as follows: a project is a
//! repository named `owner/repo` (or its numeric id, resolved through
//! `GET /repositories/:id`); a merge request is a pull request and its iid the pull
//! request number; merge request notes are the pull request's issue comments
//! (`/repos/:owner/:repo/issues/:number/comments`, edited through
//! `/repos/:owner/:repo/issues/comments/:id`). Repositories are fetched from their
//! `clone_url` with the token as the `x-access-token` password, never in the URL.
//!
//! Commit status states map `pending`/`running` → `pending`, `success` → `success`,
//! `failed` → `failure`, `canceled` → `error`.

pub mod payload;

use async_trait::async_trait;
use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::config::Secret;
use crate::forge::{
    CommitStatus, FetchSource, Forge, ForgeError, ForgeResult, Note, ProjectId, ProjectInfo,
    StatusState,
};

/// GitHub keeps a commit status description to 140 characters.
const DESCRIPTION_MAX: usize = 140;

/// A GitHub (or GitHub Enterprise) API reached with one token.
#[derive(Clone)]
pub struct GitHubForge {
    client: Octocrab,
    token: Secret,
}

impl std::fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubForge").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RepoResp {
    id: i64,
    full_name: String,
    html_url: String,
    clone_url: String,
    default_branch: Option<String>,
    #[serde(default)]
    private: Option<bool>,
    /// `public`, `private` or `internal` (GitHub Enterprise).
    #[serde(default)]
    visibility: Option<String>,
}

impl From<RepoResp> for ProjectInfo {
    fn from(r: RepoResp) -> Self {
        ProjectInfo {
            id: r.id,
            path_with_namespace: r.full_name,
            web_url: r.html_url,
            http_url_to_repo: r.clone_url,
            default_branch: r.default_branch,
        }
    }
}

#[derive(Deserialize)]
struct Login {
    login: String,
}

#[derive(Deserialize)]
struct CommentResp {
    id: i64,
    #[serde(default)]
    body: Option<String>,
    user: Option<Login>,
}

impl From<CommentResp> for Note {
    fn from(c: CommentResp) -> Self {
        Note {
            id: c.id,
            body: c.body.unwrap_or_default(),
            author: c.user.map(|u| u.login),
        }
    }
}

#[derive(Deserialize)]
struct Ignored {}

fn status_state(state: StatusState) -> &'static str {
    match state {
        StatusState::Pending | StatusState::Running => "pending",
        StatusState::Success => "success",
        StatusState::Failed => "failure",
        StatusState::Canceled => "error",
    }
}

/// `owner/repo`, checked, as URL path segments.
fn split_repo(path: &str) -> ForgeResult<(String, String)> {
    let path = path.trim_matches('/');
    match path.split('/').collect::<Vec<_>>().as_slice() {
        [owner, repo] if valid_name(owner) && valid_name(repo) => {
            Ok(((*owner).to_owned(), (*repo).to_owned()))
        }
        _ => Err(ForgeError::Other(format!(
            "GitHub repository must be `owner/repo`, not `{path}`"
        ))),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl GitHubForge {
    /// A client for `api_base` (default `https://api.github.com`; for GitHub
    /// Enterprise, its API root). Must be called inside a Tokio runtime.
    pub fn new(api_base: Option<Url>, token: Secret) -> Result<Self, ForgeError> {
        let mut builder = Octocrab::builder().personal_token(token.expose().to_owned());
        if let Some(base) = api_base {
            builder = builder
                .base_uri(base.as_str())
                .map_err(|e| ForgeError::Other(format!("bad GitHub API URL: {e}")))?;
        }
        let client = builder
            .build()
            .map_err(|e| ForgeError::Other(format!("could not set up the GitHub client: {e}")))?;
        Ok(GitHubForge { client, token })
    }

    fn map_error(&self, what: &str, err: octocrab::Error) -> ForgeError {
        let mapped = match err {
            octocrab::Error::GitHub { source, .. } => {
                let detail = format!("{what}: HTTP {}: {}", source.status_code, source.message);
                match source.status_code.as_u16() {
                    404 => ForgeError::NotFound(detail),
                    401 => ForgeError::Forbidden(detail),
                    // GitHub answers 403 both for missing rights and for rate limits.
                    403 if source.message.to_ascii_lowercase().contains("rate limit") => {
                        ForgeError::Unavailable(detail)
                    }
                    403 => ForgeError::Forbidden(detail),
                    408 | 429 | 500..=599 => ForgeError::Unavailable(detail),
                    400 | 409 | 422 => ForgeError::Rejected(detail),
                    _ => ForgeError::Other(detail),
                }
            }
            octocrab::Error::Hyper { source, .. } => {
                ForgeError::Unavailable(format!("{what}: GitHub did not answer: {source}"))
            }
            octocrab::Error::Service { source, .. } => {
                ForgeError::Unavailable(format!("{what}: GitHub did not answer: {source}"))
            }
            octocrab::Error::Serde { source, .. } => {
                ForgeError::Other(format!("{what}: unexpected answer from GitHub: {source}"))
            }
            octocrab::Error::Json { source, .. } => {
                ForgeError::Other(format!("{what}: unexpected answer from GitHub: {source}"))
            }
            other => ForgeError::Other(format!("{what}: {}", first_line(&other.to_string()))),
        };
        crate::forge::gitlab::client::scrub(mapped, self.token.expose())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, what: &str, route: &str) -> ForgeResult<T> {
        self.client
            .get(route, None::<&()>)
            .await
            .map_err(|e| self.map_error(what, e))
    }

    async fn get_all<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
    ) -> ForgeResult<Vec<T>> {
        let first: Page<T> = self
            .client
            .get(route, Some(&[("per_page", "100")]))
            .await
            .map_err(|e| self.map_error(what, e))?;
        self.client
            .all_pages(first)
            .await
            .map_err(|e| self.map_error(what, e))
    }

    /// The repository as GitHub describes it (the source of its clone URL).
    pub async fn project(&self, project: &ProjectId) -> ForgeResult<ProjectInfo> {
        let route = self.repo_route(project).await?;
        let repo: RepoResp = self
            .get(&format!("reading repository {project}"), &route)
            .await?;
        Ok(repo.into())
    }

    /// `owner/repo` for a project given by path or numeric id.
    async fn repo_name(&self, project: &ProjectId) -> ForgeResult<(String, String)> {
        match project {
            ProjectId::Path(p) => split_repo(p),
            ProjectId::Id(id) => {
                let repo: RepoResp = self
                    .get(
                        &format!("resolving repository {id}"),
                        &format!("/repositories/{id}"),
                    )
                    .await?;
                split_repo(&repo.full_name)
            }
        }
    }

    async fn repo_route(&self, project: &ProjectId) -> ForgeResult<String> {
        let (owner, repo) = self.repo_name(project).await?;
        Ok(format!("/repos/{owner}/{repo}"))
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[async_trait]
impl Forge for GitHubForge {
    fn kind(&self) -> &'static str {
        "github"
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
        let route = format!("{}/statuses/{sha}", self.repo_route(project).await?);
        let body = json!({
            "state": status_state(status.state),
            "context": status.name,
            "target_url": status.target_url,
            "description": status.description.as_deref().map(|d| crate::text::truncate(d, DESCRIPTION_MAX)),
        });
        let _: Ignored = self
            .client
            .post(route, Some(&body))
            .await
            .map_err(|e| self.map_error(&what, e))?;
        Ok(())
    }

    async fn list_merge_request_notes(
        &self,
        project: &ProjectId,
        mr_iid: i64,
    ) -> ForgeResult<Vec<Note>> {
        let route = format!(
            "{}/issues/{mr_iid}/comments",
            self.repo_route(project).await?
        );
        let comments: Vec<CommentResp> = self
            .get_all(&format!("listing comments of {project}#{mr_iid}"), &route)
            .await?;
        Ok(comments.into_iter().map(Note::from).collect())
    }

    async fn create_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        body: &str,
    ) -> ForgeResult<Note> {
        let what = format!("commenting on {project}#{mr_iid}");
        let route = format!(
            "{}/issues/{mr_iid}/comments",
            self.repo_route(project).await?
        );
        let comment: CommentResp = self
            .client
            .post(route, Some(&json!({ "body": body })))
            .await
            .map_err(|e| self.map_error(&what, e))?;
        Ok(comment.into())
    }

    async fn edit_merge_request_note(
        &self,
        project: &ProjectId,
        mr_iid: i64,
        note_id: i64,
        body: &str,
    ) -> ForgeResult<Note> {
        let what = format!("editing comment {note_id} on {project}#{mr_iid}");
        let route = format!(
            "{}/issues/comments/{note_id}",
            self.repo_route(project).await?
        );
        let comment: CommentResp = self
            .client
            .patch(route, Some(&json!({ "body": body })))
            .await
            .map_err(|e| self.map_error(&what, e))?;
        Ok(comment.into())
    }

    /// Reads the repository by the event's id (by its name when it has none) and requires
    /// GitHub's name for it to be the event's, ignoring case as GitHub does.
    async fn verify_project(
        &self,
        claimed: &crate::events::ProjectRef,
    ) -> ForgeResult<crate::events::ProjectRef> {
        let id = ProjectId::from(claimed);
        let route = match &id {
            ProjectId::Id(n) => format!("/repositories/{n}"),
            ProjectId::Path(_) => self.repo_route(&id).await?,
        };
        let repo: RepoResp = self
            .get(&format!("reading repository {id}"), &route)
            .await?;
        if !repo
            .full_name
            .eq_ignore_ascii_case(claimed.path.trim_matches('/'))
        {
            return Err(ForgeError::Refused(format!(
                "the event names repository `{}`, but GitHub repository {} is `{}`; nothing \
                 was fetched or published",
                claimed.path, repo.id, repo.full_name
            )));
        }
        let visibility = match (repo.visibility.as_deref(), repo.private) {
            (Some(v), _) => crate::events::Visibility::parse(v),
            (None, Some(false)) => crate::events::Visibility::Public,
            _ => crate::events::Visibility::Private,
        };
        Ok(crate::events::ProjectRef {
            forge: claimed.forge,
            id: Some(repo.id),
            path: repo.full_name,
            web_url: Some(repo.html_url),
            git_http_url: Some(repo.clone_url),
            default_branch: repo
                .default_branch
                .or_else(|| claimed.default_branch.clone()),
            visibility: Some(visibility),
        })
    }

    async fn fetch_source(&self, project: &ProjectId) -> ForgeResult<FetchSource> {
        let info = self.project(project).await?;
        Ok(FetchSource {
            url: info.http_url_to_repo,
            credentials: Some(("x-access-token".to_owned(), self.token.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked() {
        assert_eq!(
            split_repo("octo/hello-world").unwrap(),
            ("octo".into(), "hello-world".into())
        );
        for bad in ["octo", "a/b/c", "octo/..", "octo/a b", "/"] {
            assert!(split_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_fit_github() {
        assert_eq!(status_state(StatusState::Pending), "pending");
        assert_eq!(status_state(StatusState::Running), "pending");
        assert_eq!(status_state(StatusState::Success), "success");
        assert_eq!(status_state(StatusState::Failed), "failure");
        assert_eq!(status_state(StatusState::Canceled), "error");
    }

    #[tokio::test]
    async fn debug_hides_token() {
        let forge = GitHubForge::new(None, Secret::new("ghp-do-not-print"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{forge:?}").contains("ghp-do-not-print"));
    }
}
