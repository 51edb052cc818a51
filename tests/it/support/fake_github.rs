//! An in-process fake GitHub for tests: the REST endpoints the GitHub forge calls,
//! over repositories backed by real bare git repositories, and webhook deliveries
//! built from GitHub's documented example payloads (`tests/data/github/`) with the
//! fake's real state written over the example values.
//!
//! What it speaks: `GET /repos/:owner/:repo`, `GET /repositories/:id`,
//! `POST /repos/:owner/:repo/statuses/:sha` (422 for a commit the repository does not
//! have), `GET|POST /repos/:owner/:repo/issues/:number/comments` (lists honour
//! `per_page`/`page` and send a `Link` header, as GitHub does) and
//! `PATCH /repos/:owner/:repo/issues/comments/:id`. Every request is recorded; a
//! missing or wrong `Authorization: Bearer` token gets 401 `Bad credentials`.
//!
//! Git access: a repository's `clone_url` is the `file://` URL of its bare repository,
//! so fetches work without an HTTP git server (GitHub gives an `https://` URL).
#![allow(
    dead_code,
    reason = "shared by several test areas; each uses a different part"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use git2::{Oid, Repository};
use nbforge::config::Secret;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::fake_gitlab::{
    FakeHook, FakeInner, RecordedRequest, Served, commit_files, file_url, git_time, page_of,
    tag_commit,
};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The login of the token's user: the author of the comments nbforge posts.
pub const BOT_LOGIN: &str = "nbforge-bot";

/// A repository as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRepo {
    pub id: i64,
    /// `owner/name`.
    pub full_name: String,
    pub bare_repo_path: PathBuf,
    /// The `file://` URL of the bare repository (see the module docs).
    pub clone_url: String,
    pub html_url: String,
}

impl FakeRepo {
    pub fn repo(&self) -> Repository {
        Repository::open_bare(&self.bare_repo_path).expect("open fake repository")
    }

    fn owner(&self) -> &str {
        self.full_name.split('/').next().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.full_name.rsplit('/').next().unwrap_or_default()
    }
}

/// A commit status as GitHub recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatus {
    pub repo: String,
    pub sha: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    pub context: String,
    pub target_url: Option<String>,
    pub description: Option<String>,
}

/// An issue comment on a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedComment {
    pub id: i64,
    pub repo: String,
    pub number: i64,
    pub body: String,
    pub author: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    pub number: i64,
    /// The base repository.
    pub repo: FakeRepo,
    pub head_repo: FakeRepo,
    pub head_ref: String,
    pub base_ref: String,
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
}

/// `action` values of a `pull_request` delivery that the fake builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullAction {
    Opened,
    Synchronize,
    Closed,
    Reopened,
}

impl PullAction {
    fn as_str(self) -> &'static str {
        match self {
            PullAction::Opened => "opened",
            PullAction::Synchronize => "synchronize",
            PullAction::Closed => "closed",
            PullAction::Reopened => "reopened",
        }
    }
}

#[derive(Default)]
struct FakeState {
    next_id: i64,
    repos: Vec<FakeRepo>,
    pulls: Vec<FakePull>,
    statuses: Vec<RecordedStatus>,
    comments: Vec<RecordedComment>,
    requests: Vec<RecordedRequest>,
}

impl FakeState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, owner: &str, name: &str) -> Option<&FakeRepo> {
        let full = format!("{owner}/{name}");
        self.repos
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(&full))
    }
}

type Inner = FakeInner<FakeState>;

/// The fake; its server stops when it is dropped.
pub struct FakeGitHub {
    inner: Arc<Inner>,
    server: Served,
}

impl FakeGitHub {
    /// Start a fake on `127.0.0.1:<free port>` whose one token belongs to [`BOT_LOGIN`].
    pub async fn start() -> FakeGitHub {
        let (listener, addr) = Served::bind("fake GitHub").await;
        let inner = Arc::new(Inner {
            token: format!("ghp_fake{}", uuid::Uuid::new_v4().simple()),
            base_url: format!("http://{addr}"),
            dir: TempDir::new().expect("fake GitHub temp dir"),
            state: Mutex::new(FakeState {
                next_id: 1000,
                ..FakeState::default()
            }),
        });
        let server = Served::serve(listener, router(inner.clone()));
        FakeGitHub { inner, server }
    }

    /// The API root, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("{}/", self.inner.base_url)).expect("fake GitHub URL parses")
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The one token the fake accepts.
    pub fn token(&self) -> Secret {
        Secret::new(self.inner.token.clone())
    }

    pub fn token_str(&self) -> &str {
        &self.inner.token
    }

    /// Create a repository `owner/name` with an empty bare repository (`HEAD` → `main`).
    pub fn add_repo(&self, full_name: &str) -> FakeRepo {
        let mut s = self.inner.state();
        assert!(
            !s.repos.iter().any(|r| r.full_name == full_name),
            "repository {full_name} exists"
        );
        let id = s.id();
        let bare = self.inner.dir.path().join(format!("{id}.git"));
        let repo = Repository::init_bare(&bare).expect("init bare repository");
        repo.set_head("refs/heads/main").expect("set HEAD");
        let r = FakeRepo {
            id,
            full_name: full_name.to_owned(),
            clone_url: file_url(&bare),
            bare_repo_path: bare,
            html_url: format!("https://github.example/{full_name}"),
        };
        s.repos.push(r.clone());
        r
    }

    /// The repository named `full_name`, if the fake has it.
    pub fn repo(&self, full_name: &str) -> Option<FakeRepo> {
        let s = self.inner.state();
        let (owner, name) = full_name.split_once('/')?;
        s.repo(owner, name).cloned()
    }

    /// Commit `files` on top of `branch` (created if missing); returns the sha.
    pub fn commit(
        &self,
        repo: &FakeRepo,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> String {
        let files: Vec<(&str, &[u8], i32)> =
            files.iter().map(|(p, c)| (*p, *c, 0o100644)).collect();
        commit_files(&repo.repo(), branch, &files, message)
    }

    /// Create a tag at `sha` (annotated when `message` is given).
    pub fn tag(&self, repo: &FakeRepo, name: &str, sha: &str, message: Option<&str>) -> String {
        tag_commit(&repo.repo(), name, sha, message)
    }

    pub fn delete_tag(&self, repo: &FakeRepo, name: &str) {
        repo.repo().tag_delete(name).expect("delete tag");
    }

    /// The commit `branch` points to.
    pub fn branch_sha(&self, repo: &FakeRepo, branch: &str) -> Option<String> {
        repo.repo()
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id().to_string())
    }

    /// Open a pull request from `head_ref` of `head_repo` into `base_ref` of `repo`.
    pub fn open_pull(
        &self,
        repo: &FakeRepo,
        head_repo: &FakeRepo,
        head_ref: &str,
        base_ref: &str,
        title: &str,
    ) -> FakePull {
        let mut s = self.inner.state();
        let number = s
            .pulls
            .iter()
            .filter(|p| p.repo.id == repo.id)
            .map(|p| p.number)
            .max()
            .unwrap_or(0)
            + 1;
        let pull = FakePull {
            number,
            repo: repo.clone(),
            head_repo: head_repo.clone(),
            head_ref: head_ref.to_owned(),
            base_ref: base_ref.to_owned(),
            title: title.to_owned(),
            state: "open".into(),
            merged: false,
        };
        s.pulls.push(pull.clone());
        pull
    }

    /// Close (or merge) a pull request; returns its new record.
    pub fn close_pull(&self, pull: &FakePull, merged: bool) -> FakePull {
        let mut s = self.inner.state();
        let p = s
            .pulls
            .iter_mut()
            .find(|p| p.repo.id == pull.repo.id && p.number == pull.number)
            .expect("pull request exists");
        p.state = "closed".into();
        p.merged = merged;
        p.clone()
    }

    /// A comment written by someone else than nbforge.
    pub fn add_comment(&self, repo: &FakeRepo, number: i64, author: &str, body: &str) -> i64 {
        let mut s = self.inner.state();
        let id = s.id();
        s.comments.push(RecordedComment {
            id,
            repo: repo.full_name.clone(),
            number,
            body: body.to_owned(),
            author: author.to_owned(),
            edits: 0,
        });
        id
    }

    /// Statuses set on `sha`, oldest first.
    pub fn statuses_for(&self, sha: &str) -> Vec<RecordedStatus> {
        let s = self.inner.state();
        s.statuses
            .iter()
            .filter(|x| x.sha == sha)
            .cloned()
            .collect()
    }

    /// Comments on pull request `number` of `repo`, oldest first.
    pub fn comments_for(&self, repo: &FakeRepo, number: i64) -> Vec<RecordedComment> {
        let s = self.inner.state();
        s.comments
            .iter()
            .filter(|c| c.repo == repo.full_name && c.number == number)
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.state().requests.clone()
    }

    /// A `push` delivery moving `branch` from `before` to `after`.
    pub fn push_payload(
        &self,
        repo: &FakeRepo,
        branch: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        self.ref_push(
            repo,
            &format!("refs/heads/{branch}"),
            before,
            after,
            "push_branch",
        )
    }

    /// A `push` delivery for tag `tag` (from `ZERO` when created, to it when deleted).
    pub fn tag_push_payload(
        &self,
        repo: &FakeRepo,
        tag: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        let example = if after == ZERO_SHA {
            "push_tag_deleted"
        } else {
            "push_tag"
        };
        self.ref_push(repo, &format!("refs/tags/{tag}"), before, after, example)
    }

    /// The `create` delivery GitHub sends beside the `push` of a new tag.
    pub fn create_tag_payload(&self, repo: &FakeRepo, tag: &str) -> FakeHook {
        let mut body = example("create_tag");
        body["ref"] = json!(tag);
        body["master_branch"] = json!("main");
        set_repository(&mut body["repository"], repo);
        FakeHook {
            event: "create",
            body,
        }
    }

    /// A `pull_request` delivery for `pull` as it is now; `before` is the previous head
    /// for `synchronize`.
    pub fn pull_request_payload(
        &self,
        pull: &FakePull,
        action: PullAction,
        before: Option<&str>,
    ) -> FakeHook {
        let mut body = example(match action {
            PullAction::Synchronize => "pull_request_synchronize",
            PullAction::Closed => "pull_request_closed",
            PullAction::Reopened => "pull_request_reopened",
            PullAction::Opened => "pull_request_opened",
        });
        let head_sha = self
            .branch_sha(&pull.head_repo, &pull.head_ref)
            .expect("pull request head exists");
        let base_sha = self
            .branch_sha(&pull.repo, &pull.base_ref)
            .unwrap_or_else(|| ZERO_SHA.to_owned());
        body["action"] = json!(action.as_str());
        body["number"] = json!(pull.number);
        if action == PullAction::Synchronize {
            body["before"] = json!(before.expect("synchronize needs the previous head"));
            body["after"] = json!(head_sha);
        }
        set_repository(&mut body["repository"], &pull.repo);
        let pr = &mut body["pull_request"];
        let html_url = format!("{}/pull/{}", pull.repo.html_url, pull.number);
        pr["number"] = json!(pull.number);
        pr["html_url"] = json!(html_url);
        pr["title"] = json!(pull.title);
        pr["state"] = json!(pull.state);
        pr["merged"] = json!(pull.merged);
        pr["merge_commit_sha"] = if pull.merged {
            json!(head_sha)
        } else {
            Value::Null
        };
        for (side, r, git_ref, sha) in [
            ("head", &pull.head_repo, &pull.head_ref, &head_sha),
            ("base", &pull.repo, &pull.base_ref, &base_sha),
        ] {
            pr[side]["label"] = json!(format!("{}:{git_ref}", r.owner()));
            pr[side]["ref"] = json!(git_ref);
            pr[side]["sha"] = json!(sha);
            set_repository(&mut pr[side]["repo"], r);
        }
        FakeHook {
            event: "pull_request",
            body,
        }
    }

    fn ref_push(
        &self,
        repo: &FakeRepo,
        git_ref: &str,
        before: &str,
        after: &str,
        example_name: &str,
    ) -> FakeHook {
        let mut body = example(example_name);
        let created = before == ZERO_SHA;
        let deleted = after == ZERO_SHA;
        body["ref"] = json!(git_ref);
        body["before"] = json!(before);
        body["after"] = json!(after);
        body["created"] = json!(created);
        body["deleted"] = json!(deleted);
        body["compare"] = json!(format!(
            "{}/compare/{}...{}",
            repo.html_url,
            &before[..12],
            &after[..12]
        ));
        let commits = if deleted || git_ref.starts_with("refs/tags/") {
            Vec::new()
        } else {
            commits_between(repo, before, after)
        };
        body["head_commit"] = if deleted {
            Value::Null
        } else {
            commit_json(repo, after)
        };
        body["commits"] = Value::Array(commits);
        set_repository(&mut body["repository"], repo);
        FakeHook {
            event: "push",
            body,
        }
    }
}

/// A documented example payload from `tests/data/github/`.
fn example(name: &str) -> Value {
    let path = format!(
        "{}/tests/data/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Writes `repo`'s identity over an example `repository` object.
fn set_repository(v: &mut Value, repo: &FakeRepo) {
    let api = format!("https://api.github.example/repos/{}", repo.full_name);
    v["id"] = json!(repo.id);
    v["name"] = json!(repo.name());
    v["full_name"] = json!(repo.full_name);
    v["owner"]["login"] = json!(repo.owner());
    if v["owner"].get("name").is_some() {
        v["owner"]["name"] = json!(repo.owner());
    }
    v["html_url"] = json!(repo.html_url);
    v["url"] = json!(api);
    v["clone_url"] = json!(format!("{}.git", repo.html_url));
    v["git_url"] = json!(format!("git://github.example/{}.git", repo.full_name));
    v["ssh_url"] = json!(format!("git@github.example:{}.git", repo.full_name));
    v["svn_url"] = json!(repo.html_url);
    v["default_branch"] = json!("main");
    if v.get("master_branch").is_some() {
        v["master_branch"] = json!("main");
    }
}

/// GitHub's shape of a commit in a push payload, from the real commit.
fn commit_json(repo: &FakeRepo, sha: &str) -> Value {
    let git = repo.repo();
    let commit = git
        .find_commit(Oid::from_str(sha).expect("sha"))
        .expect("pushed commit exists");
    let person = |s: git2::Signature<'_>| {
        json!({
            "name": s.name().unwrap_or(""),
            "email": s.email().unwrap_or(""),
            "username": s.name().unwrap_or("").replace(' ', "-").to_lowercase(),
        })
    };
    let (mut added, mut removed, mut modified) = (Vec::new(), Vec::new(), Vec::new());
    let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
    let tree = commit.tree().expect("commit tree");
    let diff = git
        .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
        .expect("diff");
    for d in diff.deltas() {
        let path = d
            .new_file()
            .path()
            .or_else(|| d.old_file().path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        match d.status() {
            git2::Delta::Added => added.push(path),
            git2::Delta::Deleted => removed.push(path),
            _ => modified.push(path),
        }
    }
    json!({
        "id": sha,
        "tree_id": tree.id().to_string(),
        "distinct": true,
        "message": commit.message().unwrap_or(""),
        "timestamp": git_time(commit.time()),
        "url": format!("{}/commit/{sha}", repo.html_url),
        "author": person(commit.author()),
        "committer": person(commit.committer()),
        "added": added,
        "removed": removed,
        "modified": modified,
    })
}

/// The commits `after` has that `before` had not, oldest first (at most 20, as GitHub).
fn commits_between(repo: &FakeRepo, before: &str, after: &str) -> Vec<Value> {
    let git = repo.repo();
    let mut walk = git.revwalk().expect("revwalk");
    walk.push(Oid::from_str(after).expect("sha")).expect("push");
    if before != ZERO_SHA
        && let Ok(oid) = Oid::from_str(before)
    {
        let _ = walk.hide(oid);
    }
    let mut shas: Vec<String> = walk.flatten().map(|o| o.to_string()).collect();
    shas.truncate(20);
    shas.reverse();
    shas.iter().map(|s| commit_json(repo, s)).collect()
}

type Shared = Arc<Inner>;

fn router(inner: Shared) -> Router {
    Router::new()
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route("/repositories/{id}", get(get_repo_by_id))
        .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}",
            patch(edit_comment),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

/// Record the request, then answer 401 without the right token.
async fn gatekeeper(State(inner): State<Shared>, req: Request, next: Next) -> Response {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(inner.token.as_str());
    inner.state().requests.push(RecordedRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
    });
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    next.run(req).await
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response()
}

fn repo_json(r: &FakeRepo) -> Value {
    json!({
        "id": r.id,
        "name": r.name(),
        "full_name": r.full_name,
        "owner": {"login": r.owner()},
        "private": false,
        "html_url": r.html_url,
        "clone_url": r.clone_url,
        "default_branch": "main",
    })
}

async fn get_repo(
    State(inner): State<Shared>,
    UrlPath((owner, name)): UrlPath<(String, String)>,
) -> Response {
    match inner.state().repo(&owner, &name) {
        Some(r) => axum::Json(repo_json(r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn get_repo_by_id(State(inner): State<Shared>, UrlPath(id): UrlPath<i64>) -> Response {
    match inner.state().repos.iter().find(|r| r.id == id) {
        Some(r) => axum::Json(repo_json(r)).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn create_status(
    State(inner): State<Shared>,
    UrlPath((owner, name, sha)): UrlPath<(String, String, String)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = inner.state();
    let Some(repo) = s.repo(&owner, &name).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let known = Oid::from_str(&sha)
        .ok()
        .is_some_and(|oid| repo.repo().find_commit(oid).is_ok());
    if !known {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("No commit found for SHA: {sha}"),
        );
    }
    let state = body["state"].as_str().unwrap_or_default().to_owned();
    if !["pending", "success", "failure", "error"].contains(&state.as_str()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let text = |k: &str| body[k].as_str().map(str::to_owned);
    let status = RecordedStatus {
        repo: repo.full_name.clone(),
        sha: sha.clone(),
        state: state.clone(),
        context: text("context").unwrap_or_else(|| "default".into()),
        target_url: text("target_url"),
        description: text("description"),
    };
    let id = s.id();
    s.statuses.push(status.clone());
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "id": id,
            "state": state,
            "context": status.context,
            "target_url": status.target_url,
            "description": status.description,
        })),
    )
        .into_response()
}

fn comment_json(c: &RecordedComment) -> Value {
    json!({
        "id": c.id,
        "body": c.body,
        "user": {"login": c.author, "type": "User"},
        "html_url": format!("https://github.example/{}/pull/{}#issuecomment-{}", c.repo, c.number, c.id),
    })
}

/// The repository `owner/name`, if it has pull request `number`.
fn find_pull(s: &FakeState, owner: &str, name: &str, number: i64) -> Option<FakeRepo> {
    let repo = s.repo(owner, name)?;
    s.pulls
        .iter()
        .any(|p| p.repo.id == repo.id && p.number == number)
        .then(|| repo.clone())
}

async fn list_comments(
    State(inner): State<Shared>,
    UrlPath((owner, name, number)): UrlPath<(String, String, i64)>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(repo) = find_pull(&s, &owner, &name, number) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let items: Vec<Value> = s
        .comments
        .iter()
        .filter(|c| c.repo == repo.full_name && c.number == number)
        .map(comment_json)
        .collect();
    let route = format!(
        "{}/repos/{}/issues/{number}/comments",
        inner.base_url, repo.full_name
    );
    paginate(items, query.as_deref(), &route)
}

/// One page of `items`, with GitHub's `Link` header when more pages follow.
fn paginate(items: Vec<Value>, query: Option<&str>, route: &str) -> Response {
    let total = items.len();
    let (chunk, page, per_page) = page_of(items, query, 30);
    let last = total.div_ceil(per_page).max(1);
    let mut resp = axum::Json(Value::Array(chunk)).into_response();
    if page < last {
        let link = format!(
            "<{route}?per_page={per_page}&page={}>; rel=\"next\", <{route}?per_page={per_page}&page={last}>; rel=\"last\"",
            page + 1
        );
        resp.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&link).expect("link header"),
        );
    }
    resp
}

async fn create_comment(
    State(inner): State<Shared>,
    UrlPath((owner, name, number)): UrlPath<(String, String, i64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = inner.state();
    let Some(repo) = find_pull(&s, &owner, &name, number) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(text) = body["body"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let id = s.id();
    let comment = RecordedComment {
        id,
        repo: repo.full_name,
        number,
        body: text.to_owned(),
        author: BOT_LOGIN.to_owned(),
        edits: 0,
    };
    s.comments.push(comment.clone());
    (StatusCode::CREATED, axum::Json(comment_json(&comment))).into_response()
}

async fn edit_comment(
    State(inner): State<Shared>,
    UrlPath((owner, name, id)): UrlPath<(String, String, i64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = inner.state();
    let Some(repo) = s.repo(&owner, &name).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let Some(text) = body["body"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let Some(c) = s
        .comments
        .iter_mut()
        .find(|c| c.id == id && c.repo == repo.full_name)
    else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if c.author != BOT_LOGIN {
        return error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by personal access token",
        );
    }
    c.body = text.to_owned();
    c.edits += 1;
    axum::Json(comment_json(c)).into_response()
}
