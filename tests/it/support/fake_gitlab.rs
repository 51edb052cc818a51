//! An in-process fake GitLab for tests: the REST v4 endpoints nbforge calls, over
//! projects backed by real bare git repositories, plus builders for the webhook and
//! system hook payloads GitLab sends, made from the fake's real state.
//!
//! What it speaks (paths under `/api/v4`, projects by numeric id or URL-encoded path):
//! `GET /user`, `GET /personal_access_tokens/self`, `GET /projects/:id`,
//! `POST /projects/:id/statuses/:sha`, `GET /projects/:id/repository/commits/:sha/statuses`,
//! `GET|POST /projects/:id/merge_requests/:iid/notes`, `PUT …/notes/:note_id`,
//! `GET /projects/:id/members/all`, `GET /groups/:id`, `GET /groups/:id/members/all`
//! (groups by id or URL-encoded full path; `/members/all` as GitLab computes it: direct
//! members plus members of every ancestor group, the highest level winning); and the
//! OAuth2 provider (`/oauth/authorize`, `/oauth/token`, see `oauth.rs`).
//! Lists honour `page`/`per_page` and send GitLab's `X-*` pagination headers (member
//! lists also `Link`).
//! Every request is recorded (see [`FakeGitLab::requests`]); a missing or wrong
//! `PRIVATE-TOKEN` / `Authorization: Bearer` gets 401, as does every request after
//! [`FakeGitLab::revoke_token`]; [`FakeGitLab::set_down`] makes every endpoint answer 503;
//! [`FakeGitLab::rate_limit`] answers the next requests with 429.
//!
//! Git access: a project's `http_url_to_repo` (and `git_http_url` in payloads) is the
//! `file://` URL of its bare repository, so git fetches work without an HTTP git
//! server. Production GitLab gives an `https://` URL there instead.
#![allow(
    dead_code,
    reason = "shared by several test areas; each uses a different part"
)]

mod git_http;
mod hooks;
mod http;
mod oauth;

pub(super) use http::page_of;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use git2::{Oid, Repository, Signature};
use nbforge::config::Secret;
use serde_json::{Value, json};
use tempfile::TempDir;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A GitLab user known to the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub email: String,
}

/// A project as the fake holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeProject {
    pub id: i64,
    /// `group/sub/project`.
    pub path_with_namespace: String,
    /// Last path segment.
    pub path: String,
    pub name: String,
    /// Full path of the namespace (group or user) holding it.
    pub namespace: String,
    pub bare_repo_path: PathBuf,
    pub web_url: String,
    /// The `file://` URL of the bare repository (see the module docs).
    pub http_url_to_repo: String,
    /// `private`, `internal` or `public` (new projects are public, unlike in GitLab, so that
    /// tests about something else need not log in).
    pub visibility: String,
    pub forked_from: Option<i64>,
}

impl FakeProject {
    /// `group/sub/project` as a [`nbforge::forge::ProjectId`].
    pub fn project_id(&self) -> nbforge::forge::ProjectId {
        nbforge::forge::ProjectId::Id(self.id)
    }

    pub fn project_path(&self) -> nbforge::forge::ProjectId {
        nbforge::forge::ProjectId::Path(self.path_with_namespace.clone())
    }

    /// Open the bare repository.
    pub fn repo(&self) -> Repository {
        Repository::open_bare(&self.bare_repo_path).expect("open fake project repository")
    }
}

/// A group (namespace) known to the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeGroup {
    pub id: i64,
    pub full_path: String,
    pub name: String,
    pub parent_id: Option<i64>,
}

/// A commit status as GitLab recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedStatus {
    pub id: i64,
    pub project_id: i64,
    pub sha: String,
    pub state: String,
    pub name: String,
    pub ref_name: Option<String>,
    pub target_url: Option<String>,
    pub description: Option<String>,
}

/// A merge request note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedNote {
    pub id: i64,
    pub project_id: i64,
    pub mr_iid: i64,
    pub body: String,
    pub author_id: i64,
    pub author: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A merge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMergeRequest {
    pub id: i64,
    pub iid: i64,
    /// The target project.
    pub project_id: i64,
    pub source_project_id: i64,
    pub source_branch: String,
    pub target_branch: String,
    pub title: String,
    pub description: String,
    pub author_id: i64,
    /// `opened`, `closed` or `merged`.
    pub state: String,
    pub web_url: String,
}

/// One HTTP request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path as sent (still percent-encoded), e.g. `/api/v4/projects/g%2Fp`.
    pub path: String,
    pub query: Option<String>,
}

/// A webhook delivery body with the event header the forge sends with it (both fakes).
#[derive(Debug, Clone, PartialEq)]
pub struct FakeHook {
    /// `X-Gitlab-Event` (e.g. `Push Hook`) or `X-GitHub-Event` (e.g. `push`) value.
    pub event: &'static str,
    pub body: Value,
}

impl FakeHook {
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("hook body serializes")
    }
}

/// `object_attributes.action` values of a Merge Request Hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrAction {
    Open,
    Close,
    Reopen,
    Update,
    Approved,
    Unapproved,
    Approval,
    Unapproval,
    Merge,
}

impl MrAction {
    pub const ALL: [MrAction; 9] = [
        MrAction::Open,
        MrAction::Close,
        MrAction::Reopen,
        MrAction::Update,
        MrAction::Approved,
        MrAction::Unapproved,
        MrAction::Approval,
        MrAction::Unapproval,
        MrAction::Merge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MrAction::Open => "open",
            MrAction::Close => "close",
            MrAction::Reopen => "reopen",
            MrAction::Update => "update",
            MrAction::Approved => "approved",
            MrAction::Unapproved => "unapproved",
            MrAction::Approval => "approval",
            MrAction::Unapproval => "unapproval",
            MrAction::Merge => "merge",
        }
    }

    fn state(self) -> &'static str {
        match self {
            MrAction::Close => "closed",
            MrAction::Merge => "merged",
            _ => "opened",
        }
    }
}

/// Group member events (`Member Hook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEvent {
    Add,
    Update,
    Remove,
}

impl MemberEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberEvent::Add => "user_add_to_group",
            MemberEvent::Update => "user_update_for_group",
            MemberEvent::Remove => "user_remove_from_group",
        }
    }
}

/// Project member system hook events (`System Hook`, "team" in GitLab's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeamEvent {
    Add,
    Update,
    Remove,
}

impl TeamEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamEvent::Add => "user_add_to_team",
            TeamEvent::Update => "user_update_for_team",
            TeamEvent::Remove => "user_remove_from_team",
        }
    }
}

/// Group system hook events (`System Hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemGroupEvent {
    Destroy,
    Rename { old_full_path: String },
}

/// User system hook events (`System Hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemUserEvent {
    Destroy,
    Rename {
        old_username: String,
    },
    /// A blocked user tried to sign in.
    FailedLogin,
}

/// Project system hook events (`System Hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemProjectEvent {
    Create,
    Destroy,
    /// Attributes changed, the path aside (visibility, name…).
    Update,
    Rename {
        old_path_with_namespace: String,
    },
    Transfer {
        old_path_with_namespace: String,
    },
}

impl SystemProjectEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            SystemProjectEvent::Create => "project_create",
            SystemProjectEvent::Destroy => "project_destroy",
            SystemProjectEvent::Update => "project_update",
            SystemProjectEvent::Rename { .. } => "project_rename",
            SystemProjectEvent::Transfer { .. } => "project_transfer",
        }
    }
}

/// GitLab's role name for an access level, as member hooks spell it.
pub fn access_level_name(level: i64) -> &'static str {
    match level {
        50.. => "Owner",
        40..=49 => "Maintainer",
        30..=39 => "Developer",
        20..=29 => "Reporter",
        15..=19 => "Planner",
        10..=14 => "Guest",
        5..=9 => "Minimal Access",
        _ => "No access",
    }
}

#[derive(Default)]
struct FakeState {
    down: bool,
    /// Every request answers 401 (a revoked token).
    revoked: bool,
    /// Every request waits this long before it is answered.
    stall: Option<std::time::Duration>,
    /// The next this many requests answer 429 with `Retry-After: rate_limit_retry_after`.
    rate_limited: u32,
    rate_limit_retry_after: u64,
    next_id: i64,
    /// Projects whose git is served over HTTP with GitLab's checks (see `git_http`).
    git_over_http: Vec<i64>,
    users: Vec<FakeUser>,
    groups: Vec<FakeGroup>,
    projects: Vec<FakeProject>,
    /// (source kind, source id, user id) → access level. Kind: "group" | "project".
    members: BTreeMap<(String, i64, i64), i64>,
    statuses: Vec<RecordedStatus>,
    notes: Vec<RecordedNote>,
    merge_requests: Vec<FakeMergeRequest>,
    requests: Vec<RecordedRequest>,
    /// `None`: `/personal_access_tokens/self` answers 404 (e.g. an OAuth token).
    token_scopes: Option<Vec<String>>,
    token_user: i64,
    actor: i64,
    oauth: oauth::OAuthState,
}

impl FakeState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn user(&self, id: i64) -> Option<&FakeUser> {
        self.users.iter().find(|u| u.id == id)
    }

    fn find_project(&self, key: &str) -> Option<&FakeProject> {
        if let Ok(id) = key.parse::<i64>() {
            return self.projects.iter().find(|p| p.id == id);
        }
        self.projects
            .iter()
            .find(|p| p.path_with_namespace.eq_ignore_ascii_case(key))
    }

    fn find_group(&self, key: &str) -> Option<&FakeGroup> {
        if let Ok(id) = key.parse::<i64>() {
            return self.groups.iter().find(|g| g.id == id);
        }
        self.groups
            .iter()
            .find(|g| g.full_path.eq_ignore_ascii_case(key))
    }

    /// Groups from `full_path` up to the root, nearest first.
    fn group_chain(&self, full_path: &str) -> Vec<FakeGroup> {
        let mut chain = Vec::new();
        let mut current = self.find_group(full_path).cloned();
        while let Some(g) = current {
            current = g
                .parent_id
                .and_then(|p| self.groups.iter().find(|x| x.id == p).cloned());
            chain.push(g);
        }
        chain
    }

    fn ensure_groups(&mut self, full_path: &str) -> Option<i64> {
        if full_path.is_empty() {
            return None;
        }
        let mut parent = None;
        let mut so_far = String::new();
        for part in full_path.split('/') {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(part);
            let id = match self.find_group(&so_far) {
                Some(g) => g.id,
                None => {
                    let id = self.id();
                    self.groups.push(FakeGroup {
                        id,
                        full_path: so_far.clone(),
                        name: part.to_owned(),
                        parent_id: parent,
                    });
                    id
                }
            };
            parent = Some(id);
        }
        parent
    }

    /// Effective members: for each user, the highest access level found on the
    /// source itself or any ancestor group.
    fn effective_members(&self, sources: &[(String, i64)]) -> Vec<(FakeUser, i64)> {
        let mut best: BTreeMap<i64, i64> = BTreeMap::new();
        for ((kind, sid, uid), level) in &self.members {
            if sources.iter().any(|(k, s)| k == kind && s == sid) {
                let entry = best.entry(*uid).or_insert(*level);
                *entry = (*entry).max(*level);
            }
        }
        best.into_iter()
            .filter_map(|(uid, level)| self.user(uid).cloned().map(|u| (u, level)))
            .collect()
    }

    fn project_sources(&self, project: &FakeProject) -> Vec<(String, i64)> {
        let mut sources = vec![("project".to_owned(), project.id)];
        for g in self.group_chain(&project.namespace) {
            sources.push(("group".to_owned(), g.id));
        }
        sources
    }
}

/// What a fake's handlers share: its one token, its base URL, the folder of its
/// repositories and its state (both fakes).
pub struct FakeInner<S> {
    pub token: String,
    pub base_url: String,
    pub dir: TempDir,
    pub state: Mutex<S>,
}

impl<S> FakeInner<S> {
    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Inner = FakeInner<FakeState>;

/// The fake GitLab server. Dropping it stops the server and removes its repositories.
pub struct FakeGitLab {
    inner: Arc<Inner>,
    server: Served,
}

/// A fake's HTTP server on a loopback port; dropping it stops the server.
pub struct Served {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// A free port on `127.0.0.1` for the fake named `what`.
    pub async fn bind(what: &str) -> (tokio::net::TcpListener, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind {what}: {e}"));
        let addr = listener.local_addr().expect("bound address");
        (listener, addr)
    }

    /// Serves `app` on `listener` until dropped.
    pub fn serve(listener: tokio::net::TcpListener, app: Router) -> Served {
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served { addr, task }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGitLab {
    /// Start a fake on `127.0.0.1:<free port>`, with an administrator `root` (id 1,
    /// the actor in hook payloads) and the token's user `nbforge-bot` (id 2), whose
    /// token has the `api` scope.
    pub async fn start() -> FakeGitLab {
        let (listener, addr) = Served::bind("fake GitLab").await;
        let mut state = FakeState {
            token_scopes: Some(vec!["api".to_owned()]),
            ..FakeState::default()
        };
        let root = FakeUser {
            id: state.id(),
            username: "root".into(),
            name: "Administrator".into(),
            email: "admin@example.com".into(),
        };
        let bot = FakeUser {
            id: state.id(),
            username: "nbforge-bot".into(),
            name: "nbforge".into(),
            email: "nbforge-bot@example.com".into(),
        };
        state.actor = root.id;
        state.token_user = bot.id;
        state.users = vec![root, bot];
        let inner = Arc::new(Inner {
            token: format!("glpat-fake-{}", uuid::Uuid::new_v4().simple()),
            base_url: format!("http://{addr}"),
            dir: TempDir::new().expect("fake GitLab temp dir"),
            state: Mutex::new(state),
        });
        let server = Served::serve(listener, http::router(inner.clone()));
        FakeGitLab { inner, server }
    }

    /// The instance root, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.inner.base_url).expect("fake GitLab URL parses")
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

    /// The user `root`: the actor of hook payloads unless [`FakeGitLab::set_actor`].
    pub fn admin(&self) -> FakeUser {
        let s = self.inner.state();
        s.user(1).cloned().expect("root exists")
    }

    /// The user the token belongs to.
    pub fn bot(&self) -> FakeUser {
        let s = self.inner.state();
        s.user(s.token_user).cloned().expect("token user exists")
    }

    /// Who pushes, opens merge requests, etc. in the payloads built afterwards.
    pub fn set_actor(&self, user: &FakeUser) {
        self.inner.state().actor = user.id;
    }

    /// Scopes reported by `/personal_access_tokens/self`; `None` makes it answer 404.
    pub fn set_token_scopes(&self, scopes: Option<&[&str]>) {
        self.inner.state().token_scopes =
            scopes.map(|s| s.iter().map(|x| (*x).to_owned()).collect());
    }

    /// While down, every endpoint answers `503 Service Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.inner.state().down = down;
    }

    /// From now on every request waits `stall` before it is answered (`None`: at once).
    pub fn set_stall(&self, stall: Option<std::time::Duration>) {
        self.inner.state().stall = stall;
    }

    /// From now on every request answers `401 Unauthorized`, as for a revoked token.
    pub fn revoke_token(&self, revoked: bool) {
        self.inner.state().revoked = revoked;
    }

    /// The next `times` requests answer `429 Too Many Requests` with
    /// `Retry-After: retry_after` (seconds) and GitLab's `RateLimit-*` headers.
    pub fn rate_limit(&self, times: u32, retry_after: u64) {
        let mut s = self.inner.state();
        s.rate_limited = times;
        s.rate_limit_retry_after = retry_after;
    }

    /// Delete a group with its subgroups, their projects and every membership in them.
    pub fn remove_group(&self, full_path: &str) {
        let mut s = self.inner.state();
        let under = |p: &str| p == full_path || p.starts_with(&format!("{full_path}/"));
        let groups: Vec<i64> = s
            .groups
            .iter()
            .filter(|g| under(&g.full_path))
            .map(|g| g.id)
            .collect();
        let projects: Vec<i64> = s
            .projects
            .iter()
            .filter(|p| under(&p.namespace))
            .map(|p| p.id)
            .collect();
        s.groups.retain(|g| !groups.contains(&g.id));
        s.projects.retain(|p| !projects.contains(&p.id));
        s.members.retain(|(kind, id, _), _| {
            !(kind == "group" && groups.contains(id) || kind == "project" && projects.contains(id))
        });
    }

    /// Makes the ids given from now on start after a random number, for tests whose users
    /// leave traces outside the fake (home volumes named by user id on the shared Docker
    /// engine), so that tests running at the same time do not share them.
    pub fn randomize_ids(&self) {
        let mut s = self.inner.state();
        let base = i64::from(uuid::Uuid::new_v4().as_u128() as u32 & 0x3fff_ffff);
        s.next_id = s.next_id.max(base + 1000);
    }

    pub fn add_user(&self, username: &str) -> FakeUser {
        let mut s = self.inner.state();
        if let Some(u) = s.users.iter().find(|u| u.username == username) {
            return u.clone();
        }
        let user = FakeUser {
            id: s.id(),
            username: username.to_owned(),
            name: title_case(username),
            email: format!("{username}@example.com"),
        };
        s.users.push(user.clone());
        user
    }

    /// Create a group and its missing ancestors.
    pub fn add_group(&self, full_path: &str) -> FakeGroup {
        let mut s = self.inner.state();
        s.ensure_groups(full_path.trim_matches('/'));
        s.find_group(full_path.trim_matches('/'))
            .cloned()
            .expect("group was just created")
    }

    pub fn group(&self, full_path: &str) -> Option<FakeGroup> {
        self.inner.state().find_group(full_path).cloned()
    }

    /// Create a project with an empty bare repository (`HEAD` → `main`). Its
    /// namespace is a user's if the first segment is a username and there is no
    /// further segment, else groups are created as needed.
    pub fn add_project(&self, path_with_namespace: &str) -> FakeProject {
        let path_with_namespace = path_with_namespace.trim_matches('/');
        let mut s = self.inner.state();
        assert!(
            s.find_project(path_with_namespace).is_none(),
            "project {path_with_namespace} exists"
        );
        let (namespace, path) = path_with_namespace
            .rsplit_once('/')
            .expect("project path has a namespace");
        let namespace = namespace.to_owned();
        let is_user_ns =
            !namespace.contains('/') && s.users.iter().any(|u| u.username == namespace);
        if !is_user_ns {
            s.ensure_groups(&namespace);
        }
        let id = s.id();
        let project = new_project(&self.inner, id, &namespace, path, None);
        if is_user_ns
            && let Some(uid) = s
                .users
                .iter()
                .find(|u| u.username == namespace)
                .map(|u| u.id)
        {
            s.members.insert(("project".into(), id, uid), 50);
        }
        s.projects.push(project.clone());
        project
    }

    /// The project's current record (after renames, visibility changes…).
    pub fn project(&self, key: &str) -> Option<FakeProject> {
        self.inner.state().find_project(key).cloned()
    }

    /// Serves the project's repository over HTTP as GitLab does (credentials checked, see
    /// `git_http`) and makes that its `http_url_to_repo`; returns the URL.
    pub fn serve_git_over_http(&self, project: &FakeProject) -> String {
        let url = format!(
            "{}/git/{}.git",
            self.inner.base_url, project.path_with_namespace
        );
        let mut s = self.inner.state();
        s.git_over_http.push(project.id);
        if let Some(p) = s.projects.iter_mut().find(|p| p.id == project.id) {
            p.http_url_to_repo = url.clone();
        }
        url
    }

    pub fn set_visibility(&self, project: &FakeProject, visibility: &str) {
        let mut s = self.inner.state();
        if let Some(p) = s.projects.iter_mut().find(|p| p.id == project.id) {
            p.visibility = visibility.to_owned();
        }
    }

    /// Rename or transfer a project: same id and repository, new path.
    pub fn move_project(
        &self,
        project: &FakeProject,
        new_path_with_namespace: &str,
    ) -> FakeProject {
        let mut s = self.inner.state();
        let (namespace, path) = new_path_with_namespace
            .trim_matches('/')
            .rsplit_once('/')
            .expect("project path has a namespace");
        let (namespace, path) = (namespace.to_owned(), path.to_owned());
        if !s.users.iter().any(|u| u.username == namespace) {
            s.ensure_groups(&namespace);
        }
        let base = self.inner.base_url.clone();
        let p = s
            .projects
            .iter_mut()
            .find(|p| p.id == project.id)
            .expect("project exists");
        p.namespace = namespace.clone();
        p.path = path.clone();
        p.name = path.clone();
        p.path_with_namespace = format!("{namespace}/{path}");
        p.web_url = format!("{base}/{}", p.path_with_namespace);
        p.clone()
    }

    /// Delete a project (its repository stays on disk until the fake is dropped).
    pub fn remove_project(&self, project: &FakeProject) {
        self.inner.state().projects.retain(|p| p.id != project.id);
    }

    /// Commit `files` (path, content) on top of `branch` (created if missing), as
    /// regular files. Returns the new commit's sha.
    pub fn commit(
        &self,
        project: &FakeProject,
        branch: &str,
        files: &[(&str, &[u8])],
        message: &str,
    ) -> String {
        let files: Vec<(&str, &[u8], i32)> =
            files.iter().map(|(p, c)| (*p, *c, 0o100644)).collect();
        self.commit_with_modes(project, branch, &files, message)
    }

    /// Like [`FakeGitLab::commit`] with a git file mode per file (`0o100755` for
    /// executables).
    pub fn commit_with_modes(
        &self,
        project: &FakeProject,
        branch: &str,
        files: &[(&str, &[u8], i32)],
        message: &str,
    ) -> String {
        commit_files(&project.repo(), branch, files, message)
    }

    /// Point `branch` at `sha` (creating or moving it).
    pub fn set_branch(&self, project: &FakeProject, branch: &str, sha: &str) {
        let repo = project.repo();
        let oid = Oid::from_str(sha).expect("sha");
        repo.reference(
            &format!("refs/heads/{branch}"),
            oid,
            true,
            "fake: set branch",
        )
        .expect("set branch");
    }

    pub fn delete_branch(&self, project: &FakeProject, branch: &str) {
        let repo = project.repo();
        if let Ok(mut r) = repo.find_reference(&format!("refs/heads/{branch}")) {
            r.delete().expect("delete branch");
        }
    }

    /// The commit `branch` points to.
    pub fn branch_sha(&self, project: &FakeProject, branch: &str) -> Option<String> {
        let repo = project.repo();
        repo.find_reference(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id().to_string())
    }

    /// Create a tag at `sha`: annotated when `message` is given, else lightweight.
    /// Returns the ref's target (the tag object for an annotated tag).
    pub fn tag(
        &self,
        project: &FakeProject,
        name: &str,
        sha: &str,
        message: Option<&str>,
    ) -> String {
        tag_commit(&project.repo(), name, sha, message)
    }

    pub fn delete_tag(&self, project: &FakeProject, name: &str) {
        let repo = project.repo();
        repo.tag_delete(name).expect("delete tag");
    }

    /// Make `user` a member of a project or group (by full path) at `access_level`.
    pub fn add_member(&self, path: &str, user: &FakeUser, access_level: i64) {
        let mut s = self.inner.state();
        let key = if let Some(p) = s.find_project(path) {
            ("project".to_owned(), p.id, user.id)
        } else if let Some(g) = s.find_group(path) {
            ("group".to_owned(), g.id, user.id)
        } else {
            panic!("no project or group {path}");
        };
        s.members.insert(key, access_level);
    }

    pub fn remove_member(&self, path: &str, user: &FakeUser) {
        let mut s = self.inner.state();
        let key = if let Some(p) = s.find_project(path) {
            ("project".to_owned(), p.id, user.id)
        } else if let Some(g) = s.find_group(path) {
            ("group".to_owned(), g.id, user.id)
        } else {
            panic!("no project or group {path}");
        };
        s.members.remove(&key);
    }

    /// Open a merge request as the actor, as a user would in the web UI.
    pub fn open_merge_request(
        &self,
        source: &FakeProject,
        source_branch: &str,
        target: &FakeProject,
        target_branch: &str,
        title: &str,
    ) -> FakeMergeRequest {
        let mut s = self.inner.state();
        let author = s.actor;
        http::create_mr(
            &mut s,
            source.id,
            target.id,
            source_branch,
            target_branch,
            title,
            "",
            author,
        )
        .expect("merge request can be opened")
    }

    /// Set a merge request's state (`opened`, `closed`, `merged`).
    pub fn set_merge_request_state(&self, mr: &FakeMergeRequest, state: &str) -> FakeMergeRequest {
        let mut s = self.inner.state();
        let m = s
            .merge_requests
            .iter_mut()
            .find(|m| m.id == mr.id)
            .expect("merge request exists");
        m.state = state.to_owned();
        m.clone()
    }

    pub fn merge_requests(&self) -> Vec<FakeMergeRequest> {
        self.inner.state().merge_requests.clone()
    }

    /// Add a note as `user` (e.g. a human comment next to the bot's).
    pub fn add_note(
        &self,
        project: &FakeProject,
        mr_iid: i64,
        user: &FakeUser,
        body: &str,
    ) -> RecordedNote {
        let mut s = self.inner.state();
        let note = RecordedNote {
            id: s.id(),
            project_id: project.id,
            mr_iid,
            body: body.to_owned(),
            author_id: user.id,
            author: user.username.clone(),
            edits: 0,
        };
        s.notes.push(note.clone());
        note
    }

    /// Every status posted for `sha`, oldest first.
    pub fn statuses_for(&self, sha: &str) -> Vec<RecordedStatus> {
        self.inner
            .state()
            .statuses
            .iter()
            .filter(|st| st.sha == sha)
            .cloned()
            .collect()
    }

    /// Notes on a merge request of `project`, oldest first.
    pub fn notes_for(&self, project: &FakeProject, mr_iid: i64) -> Vec<RecordedNote> {
        self.inner
            .state()
            .notes
            .iter()
            .filter(|n| n.project_id == project.id && n.mr_iid == mr_iid)
            .cloned()
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.state().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.inner.state().requests.clear();
    }
}

// ----- git plumbing ----------------------------------------------------------

fn new_project(
    inner: &Inner,
    id: i64,
    namespace: &str,
    path: &str,
    forked_from: Option<i64>,
) -> FakeProject {
    let bare = inner.dir.path().join(format!("{id}.git"));
    let repo = Repository::init_bare(&bare).expect("init bare repository");
    repo.set_head("refs/heads/main").expect("set HEAD");
    let path_with_namespace = format!("{namespace}/{path}");
    FakeProject {
        id,
        path: path.to_owned(),
        name: path.to_owned(),
        namespace: namespace.to_owned(),
        web_url: format!("{}/{path_with_namespace}", inner.base_url),
        http_url_to_repo: file_url(&bare),
        path_with_namespace,
        bare_repo_path: bare,
        visibility: "public".into(),
        forked_from,
    }
}

/// Commits `files` (path, content, git mode) on top of `branch` of `repo` (created if
/// missing). Returns the new commit's sha. Shared by the fake forges.
pub fn commit_files(
    repo: &Repository,
    branch: &str,
    files: &[(&str, &[u8], i32)],
    message: &str,
) -> String {
    let refname = format!("refs/heads/{branch}");
    let parent = repo
        .find_reference(&refname)
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let base_tree = parent.as_ref().map(|c| c.tree().expect("parent tree"));
    let mut entries = Vec::new();
    for (path, content, mode) in files {
        let blob = repo.blob(content).expect("write blob");
        let comps: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        assert!(!comps.is_empty(), "empty file path");
        entries.push((comps, blob, *mode));
    }
    let tree_id = build_tree(repo, base_tree, entries).expect("write tree");
    let tree = repo.find_tree(tree_id).expect("find tree");
    let sig = Signature::now("Test Author", "author@example.com").expect("signature");
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let oid = repo
        .commit(Some(&refname), &sig, &sig, message, &tree, &parents)
        .expect("commit");
    oid.to_string()
}

/// Creates tag `name` at `sha` in `repo`: annotated when `message` is given, else
/// lightweight. Returns the ref's target (the tag object for an annotated tag).
pub fn tag_commit(repo: &Repository, name: &str, sha: &str, message: Option<&str>) -> String {
    let obj = repo
        .find_object(Oid::from_str(sha).expect("sha"), None)
        .expect("tag target exists");
    let oid = match message {
        Some(m) => {
            let sig = Signature::now("Test Author", "author@example.com").expect("signature");
            repo.tag(name, &obj, &sig, m, false).expect("annotated tag")
        }
        None => repo.tag_lightweight(name, &obj, false).expect("tag"),
    };
    oid.to_string()
}

fn build_tree(
    repo: &Repository,
    base: Option<git2::Tree<'_>>,
    entries: Vec<(Vec<String>, Oid, i32)>,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(base.as_ref())?;
    let mut subdirs: BTreeMap<String, Vec<(Vec<String>, Oid, i32)>> = BTreeMap::new();
    for (mut comps, blob, mode) in entries {
        if comps.len() == 1 {
            builder.insert(&comps[0], blob, mode)?;
        } else {
            let first = comps.remove(0);
            subdirs.entry(first).or_default().push((comps, blob, mode));
        }
    }
    for (name, sub) in subdirs {
        let sub_base = base
            .as_ref()
            .and_then(|t| t.get_name(&name))
            .and_then(|e| e.to_object(repo).ok())
            .and_then(|o| o.into_tree().ok());
        let oid = build_tree(repo, sub_base, sub)?;
        builder.insert(&name, oid, 0o040000)?;
    }
    builder.write()
}

fn default_branch(repo: &Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok()??.to_owned();
    repo.find_reference(&target).ok()?;
    target.strip_prefix("refs/heads/").map(str::to_owned)
}

pub fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path)
        .map(|u| u.to_string())
        .unwrap_or_else(|_| format!("file://{}", path.display()))
}

fn commit_json(repo: &Repository, project: &FakeProject, commit: &git2::Commit<'_>) -> Value {
    let author = commit.author();
    let committer = commit.committer();
    let message = commit.message().unwrap_or("").to_owned();
    let title = message.lines().next().unwrap_or("").to_owned();
    let _ = repo;
    json!({
        "id": commit.id().to_string(),
        "short_id": commit.id().to_string()[..8],
        "created_at": git_time(committer.when()),
        "parent_ids": commit.parent_ids().map(|p| p.to_string()).collect::<Vec<_>>(),
        "title": title,
        "message": message,
        "author_name": author.name().unwrap_or(""),
        "author_email": author.email().unwrap_or(""),
        "authored_date": git_time(author.when()),
        "committer_name": committer.name().unwrap_or(""),
        "committer_email": committer.email().unwrap_or(""),
        "committed_date": git_time(committer.when()),
        "trailers": {},
        "extended_trailers": {},
        "web_url": format!("{}/-/commit/{}", project.web_url, commit.id()),
    })
}

fn avatar(u: &FakeUser) -> String {
    format!("https://www.gravatar.com/avatar/{}?s=80&d=identicon", u.id)
}

fn ssh_url(_base: &str, p: &FakeProject) -> String {
    format!("git@fake-gitlab:{}.git", p.path_with_namespace)
}

fn visibility_level(v: &str) -> i64 {
    match v {
        "public" => 20,
        "internal" => 10,
        _ => 0,
    }
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

// ----- time ------------------------------------------------------------------

/// `YYYY-MM-DDTHH:MM:SS±HH:MM` for a git time.
pub fn git_time(t: git2::Time) -> String {
    iso8601(t.seconds(), t.offset_minutes())
}

fn now_iso() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    iso8601(secs, 0)
}

fn iso8601(secs: i64, offset_minutes: i32) -> String {
    let local = secs + i64::from(offset_minutes) * 60;
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let (h, mi, se) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let zone = if offset_minutes == 0 {
        "Z".to_owned()
    } else {
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let o = offset_minutes.abs();
        format!("{sign}{:02}:{:02}", o / 60, o % 60)
    };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{se:02}{zone}")
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn iso8601_formats_known_instants() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_325_626_589, 120), "2012-01-03T23:36:29+02:00");
        assert_eq!(iso8601(951_782_400, -330), "2000-02-28T18:30:00-05:30");
    }
}
