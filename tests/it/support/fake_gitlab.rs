//! An in-process fake GitLab for tests: the REST v4 endpoints nbforge calls, over
//! projects backed by real bare git repositories, plus builders for the webhook and
//! system hook payloads GitLab sends, made from the fake's real state.
//!
//! What it speaks (paths under `/api/v4`, projects by numeric id or URL-encoded path):
//! `GET /user`, `GET /personal_access_tokens/self`, `GET /projects/:id`,
//! `POST /projects/:id/statuses/:sha`, `GET /projects/:id/repository/commits/:sha/statuses`,
//! `GET|POST /projects/:id/merge_requests/:iid/notes`, `PUT …/notes/:note_id`,
//! `GET /projects/:id/repository/branches`, `GET /projects/:id/repository/tags`,
//! `GET /projects/:id/repository/files/:path/raw`, `GET /projects/:id/members/all`,
//! `GET /groups/:id/members/all`, `POST /projects/:id/fork`,
//! `POST /projects/:id/merge_requests`, `GET /projects/:id/merge_requests/:iid`.
//! Lists honour `page`/`per_page` and send GitLab's `X-*` pagination headers.
//! Every request is recorded (see [`FakeGitLab::requests`]); a missing or wrong
//! `PRIVATE-TOKEN` / `Authorization: Bearer` gets 401; [`FakeGitLab::set_down`] makes
//! every endpoint answer 503.
//!
//! Git access: a project's `http_url_to_repo` (and `git_http_url` in payloads) is the
//! `file://` URL of its bare repository, so git fetches work without an HTTP git
//! server. Production GitLab gives an `https://` URL there instead.
#![allow(
    dead_code,
    reason = "shared by several test areas; each uses a different part"
)]

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
    /// `private`, `internal` or `public`.
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

/// A webhook delivery body with the `X-Gitlab-Event` header GitLab sends with it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeHook {
    /// `X-Gitlab-Event` value, e.g. `Push Hook`.
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

/// Project system hook events (`System Hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemProjectEvent {
    Create,
    Destroy,
    Rename { old_path_with_namespace: String },
    Transfer { old_path_with_namespace: String },
}

impl SystemProjectEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            SystemProjectEvent::Create => "project_create",
            SystemProjectEvent::Destroy => "project_destroy",
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
    next_id: i64,
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

struct Inner {
    token: String,
    base_url: String,
    dir: TempDir,
    state: Mutex<FakeState>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake GitLab server. Dropping it stops the server and removes its repositories.
pub struct FakeGitLab {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGitLab {
    /// Start a fake on `127.0.0.1:<free port>`, with an administrator `root` (id 1,
    /// the actor in hook payloads) and the token's user `nbforge-bot` (id 2), whose
    /// token has the `api` scope.
    pub async fn start() -> FakeGitLab {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake GitLab");
        let addr = listener.local_addr().expect("fake GitLab address");
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
        let app = router(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitLab {
            inner,
            addr,
            server,
        }
    }

    /// The instance root, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&self.inner.base_url).expect("fake GitLab URL parses")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        let repo = project.repo();
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
        let tree_id = build_tree(&repo, base_tree, entries).expect("write tree");
        let tree = repo.find_tree(tree_id).expect("find tree");
        let sig = Signature::now("Test Author", "author@example.com").expect("signature");
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let oid = repo
            .commit(Some(&refname), &sig, &sig, message, &tree, &parents)
            .expect("commit");
        oid.to_string()
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
        let repo = project.repo();
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
        create_mr(
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

    // ----- webhook payloads -------------------------------------------------

    /// `Push Hook` for `branch` moving from `before` to `after` (either may be the
    /// all-zero sha for creation/deletion). Commits are read from the repository:
    /// those reachable from `after` and not from `before` (for a new branch: not
    /// from any other branch), newest 20 listed oldest first.
    pub fn push_payload(
        &self,
        project: &FakeProject,
        branch: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        let s = self.inner.state();
        let project = s
            .find_project(&project.id.to_string())
            .cloned()
            .expect("project exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let repo = project.repo();
        let (commits, total) = if after == ZERO_SHA {
            (Vec::new(), 0)
        } else {
            let mut walk = repo.revwalk().expect("revwalk");
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
                .expect("sorting");
            walk.push(Oid::from_str(after).expect("after sha"))
                .expect("push after");
            if before != ZERO_SHA {
                walk.hide(Oid::from_str(before).expect("before sha"))
                    .expect("hide before");
            } else {
                for r in repo
                    .references_glob("refs/heads/*")
                    .expect("branches")
                    .flatten()
                {
                    if r.shorthand().ok() != Some(branch)
                        && let Some(oid) = r.target()
                    {
                        walk.hide(oid).expect("hide other branch");
                    }
                }
            }
            let oids: Vec<Oid> = walk.filter_map(Result::ok).collect();
            let total = oids.len();
            let mut listed: Vec<Value> = oids
                .iter()
                .take(20)
                .map(|oid| hook_commit(&repo, &project, *oid, true))
                .collect();
            listed.reverse();
            (listed, total)
        };
        let body = json!({
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": after,
            "ref": format!("refs/heads/{branch}"),
            "ref_protected": default_branch(&repo).as_deref() == Some(branch),
            "checkout_sha": if after == ZERO_SHA { Value::Null } else { json!(after) },
            "message": Value::Null,
            "user_id": actor.id,
            "user_name": actor.name,
            "user_username": actor.username,
            "user_email": actor.email,
            "user_avatar": avatar(&actor),
            "project_id": project.id,
            "project": hook_project(&s, &project, &self.inner.base_url, true),
            "commits": commits,
            "total_commits_count": total,
            "push_options": {},
            "repository": hook_repository(&project, &repo),
        });
        FakeHook {
            event: "Push Hook",
            body,
        }
    }

    /// `Tag Push Hook` for `tag` going from `before` to `after` (ref targets; the
    /// all-zero sha for creation/deletion). `checkout_sha` is the tagged commit.
    pub fn tag_push_payload(
        &self,
        project: &FakeProject,
        tag: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        let s = self.inner.state();
        let project = s
            .find_project(&project.id.to_string())
            .cloned()
            .expect("project exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let repo = project.repo();
        let checkout = if after == ZERO_SHA {
            Value::Null
        } else {
            let obj = repo
                .find_object(Oid::from_str(after).expect("after sha"), None)
                .expect("tag target exists");
            json!(
                obj.peel_to_commit()
                    .expect("tag points at a commit")
                    .id()
                    .to_string()
            )
        };
        let body = json!({
            "object_kind": "tag_push",
            "event_name": "tag_push",
            "before": before,
            "after": after,
            "ref": format!("refs/tags/{tag}"),
            "ref_protected": false,
            "checkout_sha": checkout,
            "message": Value::Null,
            "user_id": actor.id,
            "user_name": actor.name,
            "user_username": actor.username,
            "user_email": actor.email,
            "user_avatar": avatar(&actor),
            "project_id": project.id,
            "project": hook_project(&s, &project, &self.inner.base_url, true),
            "commits": [],
            "total_commits_count": 0,
            "push_options": {},
            "repository": hook_repository(&project, &repo),
        });
        FakeHook {
            event: "Tag Push Hook",
            body,
        }
    }

    /// `Merge Request Hook` for `mr` with `action`. `object_attributes.state`
    /// follows the action (`close` → `closed`, `merge` → `merged`, else `opened`);
    /// `last_commit` is the source branch tip; `oldrev` is included when given
    /// (GitLab sends it on `update` when new commits were pushed).
    pub fn merge_request_payload(
        &self,
        mr: &FakeMergeRequest,
        action: MrAction,
        oldrev: Option<&str>,
    ) -> FakeHook {
        let s = self.inner.state();
        let mr = s
            .merge_requests
            .iter()
            .find(|m| m.id == mr.id)
            .cloned()
            .expect("merge request exists");
        let target = s
            .find_project(&mr.project_id.to_string())
            .cloned()
            .expect("target exists");
        let source = s
            .find_project(&mr.source_project_id.to_string())
            .cloned()
            .expect("source exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let author = s.user(mr.author_id).cloned().expect("author exists");
        let source_repo = source.repo();
        let last_commit = source_repo
            .find_reference(&format!("refs/heads/{}", mr.source_branch))
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| hook_commit(&source_repo, &source, c.id(), false))
            .unwrap_or(Value::Null);
        let now = now_iso();
        let state = action.state();
        let state_id = match state {
            "opened" => 1,
            "closed" => 2,
            _ => 3,
        };
        let mut attrs = json!({
            "id": mr.id,
            "iid": mr.iid,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "source_project_id": mr.source_project_id,
            "author_id": author.id,
            "assignee_ids": [],
            "assignee_id": Value::Null,
            "reviewer_ids": [],
            "title": mr.title,
            "created_at": now,
            "updated_at": now,
            "last_edited_at": Value::Null,
            "last_edited_by_id": Value::Null,
            "milestone_id": Value::Null,
            "state_id": state_id,
            "state": state,
            "blocking_discussions_resolved": true,
            "work_in_progress": false,
            "draft": false,
            "first_contribution": false,
            "merge_status": "can_be_merged",
            "target_project_id": mr.project_id,
            "description": mr.description,
            "prepared_at": now,
            "total_time_spent": 0,
            "time_change": 0,
            "human_total_time_spent": Value::Null,
            "human_time_change": Value::Null,
            "human_time_estimate": Value::Null,
            "url": mr.web_url,
            "source": hook_project(&s, &source, &self.inner.base_url, false),
            "target": hook_project(&s, &target, &self.inner.base_url, false),
            "last_commit": last_commit,
            "labels": [],
            "action": action.as_str(),
            "detailed_merge_status": if state == "opened" { "mergeable" } else { "not_open" },
        });
        if let Some(old) = oldrev {
            attrs["oldrev"] = json!(old);
        }
        let body = json!({
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": hook_user(&actor),
            "project": hook_project(&s, &target, &self.inner.base_url, true),
            "repository": {
                "name": target.name,
                "url": target.http_url_to_repo,
                "description": "",
                "homepage": target.web_url,
            },
            "object_attributes": attrs,
            "labels": [],
            "changes": {},
            "assignees": [],
            "reviewers": [],
        });
        FakeHook {
            event: "Merge Request Hook",
            body,
        }
    }

    /// Group `Member Hook` for `user` in `group` at `access_level`.
    pub fn member_payload(
        &self,
        group: &str,
        user: &FakeUser,
        access_level: i64,
        event: MemberEvent,
    ) -> FakeHook {
        let s = self.inner.state();
        let g = s.find_group(group).cloned().expect("group exists");
        let now = now_iso();
        let body = json!({
            "created_at": now,
            "updated_at": now,
            "group_name": g.name,
            "group_path": g.full_path.rsplit('/').next().unwrap_or(&g.full_path),
            "group_id": g.id,
            "user_username": user.username,
            "user_name": user.name,
            "user_email": user.email,
            "user_id": user.id,
            "group_access": access_level_name(access_level),
            "group_plan": Value::Null,
            "expires_at": Value::Null,
            "event_name": event.as_str(),
        });
        FakeHook {
            event: "Member Hook",
            body,
        }
    }

    /// `System Hook` for a project event. For rename/transfer, call
    /// [`FakeGitLab::move_project`] first: the payload carries the current path and
    /// the old one from the event.
    pub fn system_project_payload(
        &self,
        project: &FakeProject,
        event: SystemProjectEvent,
    ) -> FakeHook {
        let s = self.inner.state();
        // A destroyed project may already be gone from the fake: use the caller's copy.
        let p = s
            .find_project(&project.id.to_string())
            .cloned()
            .unwrap_or_else(|| project.clone());
        let owner = s
            .effective_members(&s.project_sources(&p))
            .into_iter()
            .filter(|(_, level)| *level >= 50)
            .map(|(u, _)| u)
            .next()
            .or_else(|| s.user(1).cloned())
            .expect("an owner");
        let now = now_iso();
        let namespace_id = s.find_group(&p.namespace).map(|g| g.id).unwrap_or(owner.id);
        let mut body = json!({
            "created_at": now,
            "updated_at": now,
            "event_name": event.as_str(),
            "name": p.name,
            "owner_email": owner.email,
            "owner_name": owner.name,
            "owners": [{"name": owner.name, "email": owner.email}],
            "path": p.path,
            "path_with_namespace": p.path_with_namespace,
            "project_id": p.id,
            "project_namespace_id": namespace_id,
            "project_visibility": p.visibility,
        });
        match &event {
            SystemProjectEvent::Rename {
                old_path_with_namespace,
            }
            | SystemProjectEvent::Transfer {
                old_path_with_namespace,
            } => {
                body["old_path_with_namespace"] = json!(old_path_with_namespace);
            }
            _ => {}
        }
        FakeHook {
            event: "System Hook",
            body,
        }
    }
}

// ----- git helpers -----------------------------------------------------------

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
        visibility: "private".into(),
        forked_from,
    }
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

fn file_url(path: &Path) -> String {
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

fn hook_commit(repo: &Repository, project: &FakeProject, oid: Oid, with_files: bool) -> Value {
    let commit = repo.find_commit(oid).expect("commit exists");
    let author = commit.author();
    let message = commit.message().unwrap_or("").to_owned();
    let mut v = json!({
        "id": oid.to_string(),
        "message": message,
        "title": message.lines().next().unwrap_or(""),
        "timestamp": git_time(author.when()),
        "url": format!("{}/-/commit/{oid}", project.web_url),
        "author": {
            "name": author.name().unwrap_or(""),
            "email": author.email().unwrap_or(""),
        },
    });
    if with_files {
        let tree = commit.tree().expect("tree");
        let parent_tree = commit
            .parent(0)
            .ok()
            .map(|p| p.tree().expect("parent tree"));
        let diff = repo
            .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
            .expect("diff");
        let (mut added, mut modified, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for delta in diff.deltas() {
            let path = |f: git2::DiffFile<'_>| {
                f.path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            match delta.status() {
                git2::Delta::Added => added.push(path(delta.new_file())),
                git2::Delta::Deleted => removed.push(path(delta.old_file())),
                _ => modified.push(path(delta.new_file())),
            }
        }
        v["added"] = json!(added);
        v["modified"] = json!(modified);
        v["removed"] = json!(removed);
    }
    v
}

fn hook_project(s: &FakeState, p: &FakeProject, base: &str, with_id: bool) -> Value {
    let repo = p.repo();
    let namespace_name = s
        .find_group(&p.namespace)
        .map(|g| g.name.clone())
        .or_else(|| {
            s.users
                .iter()
                .find(|u| u.username == p.namespace)
                .map(|u| u.name.clone())
        })
        .unwrap_or_else(|| p.namespace.clone());
    let ssh = ssh_url(base, p);
    let mut v = json!({
        "name": p.name,
        "description": "",
        "web_url": p.web_url,
        "avatar_url": Value::Null,
        "git_ssh_url": ssh,
        "git_http_url": p.http_url_to_repo,
        "namespace": namespace_name,
        "visibility_level": visibility_level(&p.visibility),
        "path_with_namespace": p.path_with_namespace,
        "default_branch": default_branch(&repo),
        "ci_config_path": Value::Null,
        "homepage": p.web_url,
        "url": ssh,
        "ssh_url": ssh,
        "http_url": p.http_url_to_repo,
    });
    if with_id {
        v["id"] = json!(p.id);
    }
    v
}

fn hook_repository(p: &FakeProject, _repo: &Repository) -> Value {
    json!({
        "name": p.name,
        "url": p.http_url_to_repo,
        "description": "",
        "homepage": p.web_url,
        "git_http_url": p.http_url_to_repo,
        "git_ssh_url": format!("git@fake-gitlab:{}.git", p.path_with_namespace),
        "visibility_level": visibility_level(&p.visibility),
    })
}

fn hook_user(u: &FakeUser) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "username": u.username,
        "avatar_url": avatar(u),
        "email": u.email,
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
fn git_time(t: git2::Time) -> String {
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

// ----- HTTP ------------------------------------------------------------------

type Shared = Arc<Inner>;

fn router(inner: Shared) -> Router {
    let api = Router::new()
        .route("/user", get(current_user))
        .route("/personal_access_tokens/self", get(token_self))
        .route("/projects/{id}", get(get_project))
        .route("/projects/{id}/statuses/{sha}", post(create_status))
        .route(
            "/projects/{id}/repository/commits/{sha}/statuses",
            get(list_statuses),
        )
        .route(
            "/projects/{id}/merge_requests/{iid}/notes",
            get(list_notes).post(create_note),
        )
        .route(
            "/projects/{id}/merge_requests/{iid}/notes/{note_id}",
            put(edit_note),
        )
        .route("/projects/{id}/repository/branches", get(list_branches))
        .route("/projects/{id}/repository/tags", get(list_tags))
        .route("/projects/{id}/repository/files/{path}/raw", get(file_raw))
        .route("/projects/{id}/members/all", get(project_members))
        .route("/groups/{id}/members/all", get(group_members))
        .route("/projects/{id}/fork", post(fork_project))
        .route("/projects/{id}/merge_requests", post(create_merge_request))
        .route(
            "/projects/{id}/merge_requests/{iid}",
            get(get_merge_request),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 Not Found") });
    Router::new()
        .nest("/api/v4", api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 Not Found") })
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

/// Record the request, then answer 503 when down and 401 without the right token.
async fn gatekeeper(State(inner): State<Shared>, req: Request, next: Next) -> Response {
    let authorized = {
        let headers = req.headers();
        let private = headers
            .get("private-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        private.as_deref() == Some(inner.token.as_str())
            || bearer.as_deref() == Some(inner.token.as_str())
    };
    let down = {
        let mut s = inner.state();
        s.requests.push(RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
        });
        s.down
    };
    if down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Whoops, GitLab is taking too much time to respond.</h1></body></html>",
        )
            .into_response();
    }
    if !authorized {
        return error(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    }
    next.run(req).await
}

/// An error answer, kept small so it can travel in a `Result`.
#[derive(Debug)]
struct Fail(StatusCode, Value);

impl Fail {
    fn not_found(what: &str) -> Fail {
        Fail(
            StatusCode::NOT_FOUND,
            json!({ "message": format!("404 {what} Not Found") }),
        )
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("404 {what} Not Found"))
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// Form or JSON body, merged over query parameters.
fn params(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
    } else {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    out
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// One page of `items` with GitLab's offset-pagination headers.
fn paginate(items: Vec<Value>, query: Option<&str>) -> Response {
    let q = query_params(query);
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let total_pages = total.div_ceil(per_page).max(1);
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut resp = axum::Json(Value::Array(chunk)).into_response();
    let h = resp.headers_mut();
    let num = |n: usize| HeaderValue::from_str(&n.to_string()).expect("number header");
    h.insert("x-page", num(page));
    h.insert("x-per-page", num(per_page));
    h.insert("x-total", num(total));
    h.insert("x-total-pages", num(total_pages));
    h.insert(
        "x-next-page",
        if page < total_pages {
            num(page + 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    h.insert(
        "x-prev-page",
        if page > 1 {
            num(page - 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    resp
}

fn project_json(s: &FakeState, p: &FakeProject, base: &str) -> Value {
    let repo = p.repo();
    let namespace = match s.find_group(&p.namespace) {
        Some(g) => json!({
            "id": g.id, "name": g.name, "path": g.full_path.rsplit('/').next().unwrap_or(&g.full_path),
            "kind": "group", "full_path": g.full_path, "parent_id": g.parent_id,
            "web_url": format!("{base}/groups/{}", g.full_path),
        }),
        None => {
            let u = s.users.iter().find(|u| u.username == p.namespace);
            json!({
                "id": u.map(|u| u.id), "name": u.map(|u| u.name.clone()), "path": p.namespace,
                "kind": "user", "full_path": p.namespace, "parent_id": Value::Null,
                "web_url": format!("{base}/{}", p.namespace),
            })
        }
    };
    let mut v = json!({
        "id": p.id,
        "description": Value::Null,
        "name": p.name,
        "name_with_namespace": p.path_with_namespace.replace('/', " / "),
        "path": p.path,
        "path_with_namespace": p.path_with_namespace,
        "created_at": "2024-01-01T00:00:00.000Z",
        "default_branch": default_branch(&repo),
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": ssh_url(base, p),
        "http_url_to_repo": p.http_url_to_repo,
        "web_url": p.web_url,
        "readme_url": Value::Null,
        "avatar_url": Value::Null,
        "forks_count": s.projects.iter().filter(|x| x.forked_from == Some(p.id)).count(),
        "star_count": 0,
        "last_activity_at": "2024-01-01T00:00:00.000Z",
        "namespace": namespace,
        "visibility": p.visibility,
        "empty_repo": repo.is_empty().unwrap_or(true),
        "archived": false,
        "import_status": "finished",
    });
    if let Some(parent) = p
        .forked_from
        .and_then(|id| s.projects.iter().find(|x| x.id == id))
    {
        v["forked_from_project"] = json!({
            "id": parent.id,
            "name": parent.name,
            "path": parent.path,
            "path_with_namespace": parent.path_with_namespace,
            "web_url": parent.web_url,
            "http_url_to_repo": parent.http_url_to_repo,
        });
    }
    v
}

fn user_json(u: &FakeUser, base: &str) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar(u),
        "web_url": format!("{base}/{}", u.username),
    })
}

fn mr_json(s: &FakeState, mr: &FakeMergeRequest, base: &str) -> Value {
    let author = s.user(mr.author_id).map(|u| user_json(u, base));
    let sha = s
        .projects
        .iter()
        .find(|p| p.id == mr.source_project_id)
        .and_then(|p| {
            p.repo()
                .find_reference(&format!("refs/heads/{}", mr.source_branch))
                .ok()
                .and_then(|r| r.target())
                .map(|o| o.to_string())
        });
    json!({
        "id": mr.id,
        "iid": mr.iid,
        "project_id": mr.project_id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": "2024-01-01T00:00:00.000Z",
        "target_branch": mr.target_branch,
        "source_branch": mr.source_branch,
        "author": author,
        "source_project_id": mr.source_project_id,
        "target_project_id": mr.project_id,
        "draft": false,
        "work_in_progress": false,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "mergeable",
        "sha": sha,
        "references": { "short": format!("!{}", mr.iid) },
        "web_url": mr.web_url,
    })
}

#[expect(clippy::too_many_arguments, reason = "mirrors the API's fields")]
fn create_mr(
    s: &mut FakeState,
    source_id: i64,
    target_id: i64,
    source_branch: &str,
    target_branch: &str,
    title: &str,
    description: &str,
    author_id: i64,
) -> Result<FakeMergeRequest, Fail> {
    let source = s
        .projects
        .iter()
        .find(|p| p.id == source_id)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    let target = s
        .projects
        .iter()
        .find(|p| p.id == target_id)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    if title.is_empty() {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"error": "title is missing"}),
        ));
    }
    let exists =
        |p: &FakeProject, b: &str| p.repo().find_reference(&format!("refs/heads/{b}")).is_ok();
    if !exists(&source, source_branch) {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": [format!("Source branch \"{source_branch}\" does not exist")]}),
        ));
    }
    if !exists(&target, target_branch) {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": [format!("Target branch \"{target_branch}\" does not exist")]}),
        ));
    }
    if source_id == target_id && source_branch == target_branch {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": ["You can't use same project/branch for source and target"]}),
        ));
    }
    if let Some(open) = s.merge_requests.iter().find(|m| {
        m.state == "opened"
            && m.source_project_id == source_id
            && m.project_id == target_id
            && m.source_branch == source_branch
            && m.target_branch == target_branch
    }) {
        return Err(Fail(
            StatusCode::CONFLICT,
            json!({"message": [format!(
                "Another open merge request already exists for this source branch: !{}", open.iid
            )]}),
        ));
    }
    let iid = s
        .merge_requests
        .iter()
        .filter(|m| m.project_id == target_id)
        .map(|m| m.iid)
        .max()
        .unwrap_or(0)
        + 1;
    let mr = FakeMergeRequest {
        id: s.id(),
        iid,
        project_id: target_id,
        source_project_id: source_id,
        source_branch: source_branch.to_owned(),
        target_branch: target_branch.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        author_id,
        state: "opened".into(),
        web_url: format!("{}/-/merge_requests/{iid}", target.web_url),
    };
    s.merge_requests.push(mr.clone());
    Ok(mr)
}

async fn current_user(State(inner): State<Shared>) -> Response {
    let s = inner.state();
    let u = s.user(s.token_user).cloned().expect("token user");
    let mut v = user_json(&u, &inner.base_url);
    v["email"] = json!(u.email);
    v["bot"] = json!(false);
    v["is_admin"] = json!(false);
    v["created_at"] = json!("2024-01-01T00:00:00.000Z");
    axum::Json(v).into_response()
}

async fn token_self(State(inner): State<Shared>) -> Response {
    let s = inner.state();
    match &s.token_scopes {
        None => not_found(""),
        Some(scopes) => axum::Json(json!({
            "id": 1,
            "name": "nbforge",
            "revoked": false,
            "created_at": "2024-01-01T00:00:00.000Z",
            "description": "",
            "scopes": scopes,
            "user_id": s.token_user,
            "last_used_at": now_iso(),
            "active": true,
            "expires_at": Value::Null,
        }))
        .into_response(),
    }
}

async fn get_project(State(inner): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let s = inner.state();
    match s.find_project(&id) {
        Some(p) => axum::Json(project_json(&s, p, &inner.base_url)).into_response(),
        None => not_found("Project"),
    }
}

async fn create_status(
    State(inner): State<Shared>,
    UrlPath((id, sha)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let Some(project) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let repo = project.repo();
    let commit = Oid::from_str(&sha)
        .ok()
        .and_then(|o| repo.find_commit(o).ok());
    let Some(commit) = commit else {
        return not_found("Commit");
    };
    let Some(state) = p.get("state").cloned() else {
        return bad_request("state is missing");
    };
    if ![
        "pending", "running", "success", "failed", "canceled", "skipped",
    ]
    .contains(&state.as_str())
    {
        return bad_request("state does not have a valid value");
    }
    let name = p
        .get("name")
        .or_else(|| p.get("context"))
        .cloned()
        .unwrap_or_else(|| "default".to_owned());
    let ref_name = p.get("ref").cloned().or_else(|| default_branch(&repo));
    for (field, max) in [("target_url", 255), ("description", 255), ("ref", 255)] {
        if p.get(field).is_some_and(|v| v.chars().count() > max) {
            return bad_request(&format!(
                "{field} is too long (maximum is {max} characters)"
            ));
        }
    }
    // GitLab refuses to move a still-active status to the state it is already in.
    if let Some(last) = s.statuses.iter().rev().find(|st| {
        st.project_id == project.id && st.sha == sha && st.name == name && st.ref_name == ref_name
    }) && last.state == state
        && (state == "pending" || state == "running")
    {
        let event = if state == "pending" { "enqueue" } else { "run" };
        return bad_request(&format!(
            "Cannot transition status via :{event} from :{state}"
        ));
    }
    let status = RecordedStatus {
        id: s.id(),
        project_id: project.id,
        sha: commit.id().to_string(),
        state,
        name,
        ref_name,
        target_url: p.get("target_url").cloned(),
        description: p.get("description").cloned(),
    };
    s.statuses.push(status.clone());
    let author = s.user(s.token_user).cloned().expect("token user");
    (
        StatusCode::CREATED,
        axum::Json(status_json(&status, &author, &inner.base_url)),
    )
        .into_response()
}

fn status_json(st: &RecordedStatus, author: &FakeUser, base: &str) -> Value {
    json!({
        "id": st.id,
        "sha": st.sha,
        "ref": st.ref_name,
        "status": st.state,
        "name": st.name,
        "target_url": st.target_url,
        "description": st.description,
        "created_at": now_iso(),
        "started_at": Value::Null,
        "finished_at": Value::Null,
        "allow_failure": false,
        "coverage": Value::Null,
        "pipeline_id": Value::Null,
        "author": user_json(author, base),
    })
}

async fn list_statuses(
    State(inner): State<Shared>,
    UrlPath((id, sha)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(project) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let author = s.user(s.token_user).cloned().expect("token user");
    let items = s
        .statuses
        .iter()
        .filter(|st| st.project_id == project.id && st.sha == sha)
        .map(|st| status_json(st, &author, &inner.base_url))
        .collect();
    paginate(items, query.as_deref())
}

fn note_json(s: &FakeState, n: &RecordedNote, base: &str) -> Value {
    let author = s
        .user(n.author_id)
        .map(|u| user_json(u, base))
        .unwrap_or(Value::Null);
    let mr_id = s
        .merge_requests
        .iter()
        .find(|m| m.project_id == n.project_id && m.iid == n.mr_iid)
        .map(|m| m.id);
    json!({
        "id": n.id,
        "type": Value::Null,
        "body": n.body,
        "attachment": Value::Null,
        "author": author,
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": now_iso(),
        "system": false,
        "noteable_id": mr_id,
        "noteable_type": "MergeRequest",
        "project_id": n.project_id,
        "noteable_iid": n.mr_iid,
        "resolvable": false,
        "confidential": false,
        "internal": false,
    })
}

fn find_mr(s: &FakeState, project_key: &str, iid: &str) -> Result<(FakeProject, i64), Fail> {
    let project = s
        .find_project(project_key)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    let iid: i64 = iid.parse().map_err(|_| Fail::not_found("Merge Request"))?;
    if !s
        .merge_requests
        .iter()
        .any(|m| m.project_id == project.id && m.iid == iid)
    {
        return Err(Fail::not_found("Merge Request"));
    }
    Ok((project, iid))
}

async fn list_notes(
    State(inner): State<Shared>,
    UrlPath((id, iid)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    // GitLab's default order is newest first (`order_by=created_at`, `sort=desc`).
    let mut notes: Vec<&RecordedNote> = s
        .notes
        .iter()
        .filter(|n| n.project_id == project.id && n.mr_iid == iid)
        .collect();
    let asc = query_params(query.as_deref())
        .get("sort")
        .map(String::as_str)
        == Some("asc");
    if !asc {
        notes.reverse();
    }
    let items = notes
        .into_iter()
        .map(|n| note_json(&s, n, &inner.base_url))
        .collect();
    paginate(items, query.as_deref())
}

async fn create_note(
    State(inner): State<Shared>,
    UrlPath((id, iid)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    let Some(text) = p.get("body").filter(|b| !b.is_empty()).cloned() else {
        return bad_request("body is missing");
    };
    let author = s.user(s.token_user).cloned().expect("token user");
    let note = RecordedNote {
        id: s.id(),
        project_id: project.id,
        mr_iid: iid,
        body: text,
        author_id: author.id,
        author: author.username.clone(),
        edits: 0,
    };
    s.notes.push(note.clone());
    (
        StatusCode::CREATED,
        axum::Json(note_json(&s, &note, &inner.base_url)),
    )
        .into_response()
}

async fn edit_note(
    State(inner): State<Shared>,
    UrlPath((id, iid, note_id)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    let Some(text) = p.get("body").filter(|b| !b.is_empty()).cloned() else {
        return bad_request("body is missing");
    };
    let token_user = s.token_user;
    let Some(note) = s.notes.iter_mut().find(|n| {
        n.project_id == project.id && n.mr_iid == iid && note_id.parse::<i64>().ok() == Some(n.id)
    }) else {
        return not_found("Note");
    };
    if note.author_id != token_user {
        return error(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    note.body = text;
    note.edits += 1;
    let note = note.clone();
    axum::Json(note_json(&s, &note, &inner.base_url)).into_response()
}

fn refs_json(project: &FakeProject, tags: bool) -> Vec<Value> {
    let repo = project.repo();
    let glob = if tags { "refs/tags/*" } else { "refs/heads/*" };
    let default = default_branch(&repo);
    let mut out: Vec<(String, Value)> = Vec::new();
    for r in repo.references_glob(glob).expect("refs").flatten() {
        let Ok(name) = r.shorthand().map(str::to_owned) else {
            continue;
        };
        let Ok(commit) = r.peel_to_commit() else {
            continue;
        };
        let commit_v = commit_json(&repo, project, &commit);
        let v = if tags {
            let target = r.target().map(|o| o.to_string());
            let annotated = r.peel_to_tag().ok();
            json!({
                "name": name,
                "message": annotated.as_ref().and_then(|t| t.message().ok().flatten().map(str::to_owned)).unwrap_or_default(),
                "target": target,
                "commit": commit_v,
                "release": Value::Null,
                "protected": false,
                "created_at": annotated.as_ref().and_then(|t| t.tagger()).map(|s| git_time(s.when())),
            })
        } else {
            let is_default = default.as_deref() == Some(name.as_str());
            json!({
                "name": name,
                "commit": commit_v,
                "merged": false,
                "protected": is_default,
                "developers_can_push": false,
                "developers_can_merge": false,
                "can_push": true,
                "default": is_default,
                "web_url": format!("{}/-/tree/{name}", project.web_url),
            })
        };
        out.push((name, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

async fn list_branches(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let project = inner.state().find_project(&id).cloned();
    match project {
        Some(p) => paginate(refs_json(&p, false), query.as_deref()),
        None => not_found("Project"),
    }
}

async fn list_tags(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let project = inner.state().find_project(&id).cloned();
    match project {
        Some(p) => paginate(refs_json(&p, true), query.as_deref()),
        None => not_found("Project"),
    }
}

async fn file_raw(
    State(inner): State<Shared>,
    UrlPath((id, path)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(project) = inner.state().find_project(&id).cloned() else {
        return not_found("Project");
    };
    let repo = project.repo();
    let q = query_params(query.as_deref());
    let Some(rev) = q.get("ref").cloned().or_else(|| default_branch(&repo)) else {
        return not_found("File");
    };
    let Ok(commit) = repo.revparse_single(&rev).and_then(|o| o.peel_to_commit()) else {
        return not_found("Commit");
    };
    let blob = commit
        .tree()
        .ok()
        .and_then(|t| t.get_path(Path::new(&path)).ok())
        .and_then(|e| e.to_object(&repo).ok())
        .and_then(|o| o.into_blob().ok());
    match blob {
        Some(b) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (
                    header::HeaderName::from_static("x-gitlab-blob-id"),
                    b.id().to_string(),
                ),
                (
                    header::HeaderName::from_static("x-gitlab-commit-id"),
                    commit.id().to_string(),
                ),
            ],
            b.content().to_vec(),
        )
            .into_response(),
        None => not_found("File"),
    }
}

fn members_json(members: Vec<(FakeUser, i64)>, base: &str) -> Vec<Value> {
    members
        .into_iter()
        .map(|(u, level)| {
            let mut v = user_json(&u, base);
            v["access_level"] = json!(level);
            v["created_at"] = json!("2024-01-01T00:00:00.000Z");
            v["expires_at"] = Value::Null;
            v["membership_state"] = json!("active");
            v
        })
        .collect()
}

async fn project_members(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(project) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let members = s.effective_members(&s.project_sources(&project));
    paginate(members_json(members, &inner.base_url), query.as_deref())
}

async fn group_members(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(group) = s.find_group(&id).cloned() else {
        return not_found("Group");
    };
    let sources: Vec<(String, i64)> = s
        .group_chain(&group.full_path)
        .into_iter()
        .map(|g| ("group".to_owned(), g.id))
        .collect();
    let members = s.effective_members(&sources);
    paginate(members_json(members, &inner.base_url), query.as_deref())
}

async fn fork_project(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let (source, namespace) = {
        let s = inner.state();
        let Some(source) = s.find_project(&id).cloned() else {
            return not_found("Project");
        };
        let bot = s.user(s.token_user).cloned().expect("token user");
        let ns_key = p
            .get("namespace_path")
            .or_else(|| p.get("namespace_id"))
            .or_else(|| p.get("namespace"))
            .cloned()
            .unwrap_or_else(|| bot.username.clone());
        let namespace = if let Some(g) = s.find_group(&ns_key) {
            g.full_path.clone()
        } else if let Some(u) = s
            .users
            .iter()
            .find(|u| u.username == ns_key || u.id.to_string() == ns_key)
        {
            u.username.clone()
        } else {
            return not_found("Target Namespace");
        };
        (source, namespace)
    };
    let path = p
        .get("path")
        .cloned()
        .unwrap_or_else(|| source.path.clone());
    let new_path = format!("{namespace}/{path}");
    if inner.state().find_project(&new_path).is_some() {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"message": {"path": ["has already been taken"], "name": ["has already been taken"]}})),
        )
            .into_response();
    }
    // Build the fork outside the lock: copying refs runs git.
    let id = inner.state().id();
    let fork = new_project(&inner, id, &namespace, &path, Some(source.id));
    {
        let repo = fork.repo();
        let mut remote = repo
            .remote_anonymous(&source.http_url_to_repo)
            .expect("remote");
        remote
            .fetch(
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                None,
                None,
            )
            .expect("copy refs into fork");
        if let Some(b) = default_branch(&source.repo()) {
            repo.set_head(&format!("refs/heads/{b}"))
                .expect("fork HEAD");
        }
    }
    let mut s = inner.state();
    let bot = s.token_user;
    if !s.groups.iter().any(|g| g.full_path == namespace) {
        s.members.insert(("project".into(), fork.id, bot), 50);
    }
    s.projects.push(fork.clone());
    (
        StatusCode::CREATED,
        axum::Json(project_json(&s, &fork, &inner.base_url)),
    )
        .into_response()
}

async fn create_merge_request(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let Some(source) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let target_id = match p.get("target_project_id") {
        Some(t) => match t.parse::<i64>() {
            Ok(t) => t,
            Err(_) => return bad_request("target_project_id is invalid"),
        },
        None => source.id,
    };
    let (Some(sb), Some(tb), Some(title)) = (
        p.get("source_branch").cloned(),
        p.get("target_branch").cloned(),
        p.get("title").cloned(),
    ) else {
        return bad_request("source_branch, target_branch and title are required");
    };
    let description = p.get("description").cloned().unwrap_or_default();
    let author = s.token_user;
    match create_mr(
        &mut s,
        source.id,
        target_id,
        &sb,
        &tb,
        &title,
        &description,
        author,
    ) {
        Ok(mr) => (
            StatusCode::CREATED,
            axum::Json(mr_json(&s, &mr, &inner.base_url)),
        )
            .into_response(),
        Err(f) => f.into_response(),
    }
}

async fn get_merge_request(
    State(inner): State<Shared>,
    UrlPath((id, iid)): UrlPath<(String, String)>,
) -> Response {
    let s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    let mr = s
        .merge_requests
        .iter()
        .find(|m| m.project_id == project.id && m.iid == iid)
        .cloned()
        .expect("found above");
    axum::Json(mr_json(&s, &mr, &inner.base_url)).into_response()
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
