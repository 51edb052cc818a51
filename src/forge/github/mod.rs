//! GitHub: the [`Forge`] implementation on octocrab's REST client, and the webhook
//! payloads GitHub sends ([`payload`]).
//!
//! GitHub words map onto the forge's GitLab-shaped ones as follows: a project is a
//! repository named `owner/repo` (or its numeric id); a merge request is a pull
//! request and its iid the pull request number; merge request notes are the pull
//! request's issue comments; members are repository collaborators, whose role is
//! mapped to a GitLab access level:
//!
//! | GitHub role | access level |
//! | --- | --- |
//! | `admin` | 40 (Maintainer) |
//! | `maintain` | 40 (Maintainer) |
//! | `write` | 30 (Developer) |
//! | `triage` | 20 (Reporter) |
//! | `read` | 20 (Reporter) |
//!
//! Commit status states map `pending`/`running` → `pending`, `success` → `success`,
//! `failed` → `failure`, `canceled` → `error`. Organisation membership has no
//! access level to map, so [`Forge::list_group_members`] is unsupported.

pub mod payload;

use async_trait::async_trait;
use base64::Engine as _;
use octocrab::{Octocrab, Page};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::config::Secret;
use crate::forge::{
    CommitStatus, FetchSource, Forge, ForgeError, ForgeResult, GitRef, Member, MergeRequestInfo,
    NewMergeRequest, Note, ProjectId, ProjectInfo, StatusState,
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
struct Sha {
    sha: String,
}

#[derive(Deserialize)]
struct RefResp {
    name: String,
    commit: Sha,
}

#[derive(Deserialize, Default)]
struct Permissions {
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    maintain: bool,
    #[serde(default)]
    push: bool,
    #[serde(default)]
    triage: bool,
    #[serde(default)]
    pull: bool,
}

#[derive(Deserialize)]
struct CollaboratorResp {
    id: i64,
    login: String,
    #[serde(default)]
    role_name: Option<String>,
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct ContentResp {
    #[serde(rename = "type")]
    kind: String,
    sha: String,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct BlobResp {
    content: String,
    encoding: String,
}

#[derive(Deserialize)]
struct PullResp {
    number: i64,
    html_url: String,
}

#[derive(Deserialize)]
struct Ignored {}

/// The GitLab access level for a collaborator's GitHub role (see the module docs).
pub fn access_level_for_role(role: &str) -> i64 {
    match role {
        "admin" | "maintain" => 40,
        "write" => 30,
        "triage" | "read" => 20,
        // Custom repository roles inherit from one of the above; read is the floor.
        _ => 20,
    }
}

fn access_level(c: &CollaboratorResp) -> i64 {
    if let Some(role) = &c.role_name {
        return access_level_for_role(role);
    }
    let p = c.permissions.as_ref();
    match p {
        Some(p) if p.admin || p.maintain => 40,
        Some(p) if p.push => 30,
        Some(p) if p.triage || p.pull => 20,
        _ => 0,
    }
}

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

/// Percent-encode each segment of a file path for a URL.
fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
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

    async fn project(&self, project: &ProjectId) -> ForgeResult<ProjectInfo> {
        let route = self.repo_route(project).await?;
        let repo: RepoResp = self
            .get(&format!("reading repository {project}"), &route)
            .await?;
        Ok(repo.into())
    }

    async fn set_commit_status(
        &self,
        project: &ProjectId,
        sha: &str,
        status: &CommitStatus,
    ) -> ForgeResult<()> {
        let what = format!("setting status `{}` on {project}@{sha}", status.name);
        if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ForgeError::Other(format!("{what}: not a commit sha")));
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

    async fn list_branches(&self, project: &ProjectId) -> ForgeResult<Vec<GitRef>> {
        let route = format!("{}/branches", self.repo_route(project).await?);
        let refs: Vec<RefResp> = self
            .get_all(&format!("listing branches of {project}"), &route)
            .await?;
        Ok(refs
            .into_iter()
            .map(|r| GitRef {
                name: r.name,
                commit: r.commit.sha,
            })
            .collect())
    }

    async fn list_tags(&self, project: &ProjectId) -> ForgeResult<Vec<GitRef>> {
        let route = format!("{}/tags", self.repo_route(project).await?);
        let refs: Vec<RefResp> = self
            .get_all(&format!("listing tags of {project}"), &route)
            .await?;
        Ok(refs
            .into_iter()
            .map(|r| GitRef {
                name: r.name,
                commit: r.commit.sha,
            })
            .collect())
    }

    async fn read_file(
        &self,
        project: &ProjectId,
        git_ref: &str,
        path: &str,
    ) -> ForgeResult<Vec<u8>> {
        let what = format!("reading {path} at {git_ref} in {project}");
        let file_path = encode_path(path);
        if file_path.is_empty() {
            return Err(ForgeError::Other(format!("{what}: empty file path")));
        }
        let repo = self.repo_route(project).await?;
        let route = format!(
            "{repo}/contents/{file_path}?ref={}",
            encode_segment(git_ref)
        );
        let content: ContentResp = self.get(&what, &route).await?;
        if content.kind != "file" {
            return Err(ForgeError::NotFound(format!(
                "{what}: a {}, not a file",
                content.kind
            )));
        }
        // Files over 1 MB come without content; the blob API serves them.
        let (data, encoding) = match (content.content, content.encoding) {
            (Some(c), Some(e)) if e == "base64" && !c.is_empty() => (c, e),
            _ => {
                let blob: BlobResp = self
                    .get(&what, &format!("{repo}/git/blobs/{}", content.sha))
                    .await?;
                (blob.content, blob.encoding)
            }
        };
        if encoding != "base64" {
            return Err(ForgeError::Other(format!(
                "{what}: unexpected encoding {encoding}"
            )));
        }
        let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| ForgeError::Other(format!("{what}: bad base64 from GitHub: {e}")))
    }

    async fn list_project_members(&self, project: &ProjectId) -> ForgeResult<Vec<Member>> {
        let route = format!("{}/collaborators", self.repo_route(project).await?);
        let collaborators: Vec<CollaboratorResp> = self
            .get_all(&format!("listing collaborators of {project}"), &route)
            .await?;
        Ok(collaborators
            .iter()
            .map(|c| Member {
                user_id: c.id,
                username: c.login.clone(),
                access_level: access_level(c),
            })
            .collect())
    }

    async fn list_group_members(&self, _group: &str) -> ForgeResult<Vec<Member>> {
        Err(ForgeError::Unsupported(
            "GitHub organisation membership has no access level; use repository collaborators",
        ))
    }

    async fn create_fork(&self, project: &ProjectId, namespace: &str) -> ForgeResult<ProjectInfo> {
        let what = format!("forking {project} into {namespace}");
        let route = format!("{}/forks", self.repo_route(project).await?);
        let me: Login = self.get(&what, "/user").await?;
        // Forking into the token's own account takes no organization.
        let body = if namespace.eq_ignore_ascii_case(&me.login) {
            json!({})
        } else {
            json!({ "organization": namespace })
        };
        let repo: RepoResp = self
            .client
            .post(route, Some(&body))
            .await
            .map_err(|e| self.map_error(&what, e))?;
        Ok(repo.into())
    }

    async fn create_merge_request(
        &self,
        project: &ProjectId,
        mr: &NewMergeRequest,
    ) -> ForgeResult<MergeRequestInfo> {
        let what = format!(
            "opening a pull request {} → {} from {project}",
            mr.source_branch, mr.target_branch
        );
        let (source_owner, _) = self.repo_name(project).await?;
        let (target_route, head) = match mr.target_project_id {
            Some(target) => (
                self.repo_route(&ProjectId::Id(target)).await?,
                format!("{source_owner}:{}", mr.source_branch),
            ),
            None => (self.repo_route(project).await?, mr.source_branch.clone()),
        };
        let body = json!({
            "title": mr.title,
            "head": head,
            "base": mr.target_branch,
            "body": mr.description,
        });
        let pull: PullResp = self
            .client
            .post(format!("{target_route}/pulls"), Some(&body))
            .await
            .map_err(|e| self.map_error(&what, e))?;
        Ok(MergeRequestInfo {
            iid: pull.number,
            web_url: pull.html_url,
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
    fn roles_map_to_access_levels() {
        assert_eq!(access_level_for_role("admin"), 40);
        assert_eq!(access_level_for_role("maintain"), 40);
        assert_eq!(access_level_for_role("write"), 30);
        assert_eq!(access_level_for_role("triage"), 20);
        assert_eq!(access_level_for_role("read"), 20);
        let by_permissions = CollaboratorResp {
            id: 1,
            login: "a".into(),
            role_name: None,
            permissions: Some(Permissions {
                push: true,
                pull: true,
                ..Permissions::default()
            }),
        };
        assert_eq!(access_level(&by_permissions), 30);
    }

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
    fn file_paths_are_encoded_per_segment() {
        assert_eq!(
            encode_path("binder/environment.yml"),
            "binder/environment%2Eyml"
        );
        assert_eq!(encode_path("/a b/c?d"), "a%20b/c%3Fd");
    }

    #[test]
    fn states_and_descriptions_fit_github() {
        assert_eq!(status_state(StatusState::Running), "pending");
        assert_eq!(status_state(StatusState::Failed), "failure");
        assert_eq!(status_state(StatusState::Canceled), "error");
    }

    /// A few GitHub endpoints, in process, recording what they were sent.
    mod fake {
        use std::sync::{Arc, Mutex};

        use axum::Json;
        use axum::Router;
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, patch, post};
        use serde_json::{Value, json};

        pub const TOKEN: &str = "ghp-fake-token";

        #[derive(Default)]
        pub struct Seen {
            pub statuses: Vec<(String, Value)>,
            pub comments: Vec<(i64, String)>,
        }

        pub type Shared = Arc<Mutex<Seen>>;

        fn authorized(h: &HeaderMap) -> bool {
            h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
        }

        fn denied() -> (StatusCode, Json<Value>) {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Bad credentials"})),
            )
        }

        pub async fn start() -> (String, Shared) {
            let seen: Shared = Arc::default();
            let app = Router::new()
                .route(
                    "/repos/{owner}/{repo}/statuses/{sha}",
                    post(
                        |State(s): State<Shared>, h: HeaderMap, Path((_o, _r, sha)): Path<(String, String, String)>, Json(body): Json<Value>| async move {
                            if !authorized(&h) {
                                return denied();
                            }
                            s.lock().unwrap().statuses.push((sha, body.clone()));
                            (StatusCode::CREATED, Json(body))
                        },
                    ),
                )
                .route(
                    "/repos/{owner}/{repo}/issues/{n}/comments",
                    post(
                        |State(s): State<Shared>, h: HeaderMap, Json(body): Json<Value>| async move {
                            if !authorized(&h) {
                                return denied();
                            }
                            let mut seen = s.lock().unwrap();
                            let id = seen.comments.len() as i64 + 100;
                            let text = body["body"].as_str().unwrap_or("").to_owned();
                            seen.comments.push((id, text.clone()));
                            (StatusCode::CREATED, Json(json!({"id": id, "body": text, "user": {"login": "nbforge-bot"}})))
                        },
                    )
                    .get(|State(s): State<Shared>| async move {
                        let seen = s.lock().unwrap();
                        let list: Vec<Value> = seen
                            .comments
                            .iter()
                            .map(|(id, b)| json!({"id": id, "body": b, "user": {"login": "nbforge-bot"}}))
                            .collect();
                        (StatusCode::OK, Json(Value::Array(list)))
                    }),
                )
                .route(
                    "/repos/{owner}/{repo}/issues/comments/{id}",
                    patch(
                        |State(s): State<Shared>, Path((_o, _r, id)): Path<(String, String, i64)>, Json(body): Json<Value>| async move {
                            let mut seen = s.lock().unwrap();
                            let text = body["body"].as_str().unwrap_or("").to_owned();
                            match seen.comments.iter_mut().find(|(cid, _)| *cid == id) {
                                Some(c) => {
                                    c.1 = text.clone();
                                    (StatusCode::OK, Json(json!({"id": id, "body": text, "user": {"login": "nbforge-bot"}})))
                                }
                                None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))),
                            }
                        },
                    ),
                )
                .route(
                    "/repos/{owner}/{repo}/contents/{*path}",
                    get(|| async {
                        Json(json!({"type": "file", "sha": "abc", "encoding": "base64", "content": "bnVt\ncHkK\n"}))
                    }),
                )
                .with_state(seen.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (format!("http://{addr}/"), seen)
        }
    }

    fn status() -> CommitStatus {
        CommitStatus {
            state: StatusState::Failed,
            name: "nbforge/environment".into(),
            ref_name: None,
            target_url: Some("https://nbforge.example.org/build/1".into()),
            description: Some("y".repeat(300)),
        }
    }

    #[tokio::test]
    async fn statuses_comments_and_files_against_a_fake_github() {
        let (base, seen) = fake::start().await;
        let forge =
            GitHubForge::new(Some(Url::parse(&base).unwrap()), Secret::new(fake::TOKEN)).unwrap();
        let repo = ProjectId::Path("octo/cells".into());
        let sha = "0123456789abcdef0123456789abcdef01234567";

        forge
            .set_commit_status(&repo, sha, &status())
            .await
            .expect("status");
        {
            let seen = seen.lock().unwrap();
            let (got_sha, body) = &seen.statuses[0];
            assert_eq!(got_sha, sha);
            assert_eq!(body["state"], "failure");
            assert_eq!(body["context"], "nbforge/environment");
            assert_eq!(body["target_url"], "https://nbforge.example.org/build/1");
            let description = body["description"].as_str().unwrap();
            assert!(description.chars().count() <= DESCRIPTION_MAX);
            assert!(description.ends_with('…'), "{description}");
        }

        let note = forge
            .create_merge_request_note(&repo, 7, "building")
            .await
            .unwrap();
        let edited = forge
            .edit_merge_request_note(&repo, 7, note.id, "ready")
            .await
            .unwrap();
        assert_eq!(edited.id, note.id);
        let notes = forge.list_merge_request_notes(&repo, 7).await.unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].body, "ready");
        assert_eq!(notes[0].author.as_deref(), Some("nbforge-bot"));

        let bytes = forge
            .read_file(&repo, "main", "requirements.txt")
            .await
            .unwrap();
        assert_eq!(bytes, b"numpy\n");

        let err = forge
            .edit_merge_request_note(&repo, 7, 9999, "x")
            .await
            .unwrap_err();
        assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
        assert!(matches!(
            forge.list_group_members("octo").await,
            Err(ForgeError::Unsupported(_))
        ));

        let wrong =
            GitHubForge::new(Some(Url::parse(&base).unwrap()), Secret::new("ghp-wrong")).unwrap();
        let err = wrong
            .set_commit_status(&repo, sha, &status())
            .await
            .unwrap_err();
        assert!(matches!(err, ForgeError::Forbidden(_)), "{err}");
        assert!(!err.to_string().contains("ghp-wrong"));
    }
}
