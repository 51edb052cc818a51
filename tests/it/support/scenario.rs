//! Scenarios: a [`TestApp`] wired to a fake GitLab or a fake GitHub, driven in the
//! words of the feature: push files, tag, open and update a merge request, run the
//! jobs, then read what the forge was told.
//!
//! ```ignore
//! let t = Scenario::gitlab(Backend::Sqlite).await.unwrap();
//! let sha = t.push("lab/rnaseq", &[("requirements.txt", b"numpy\n")]).await;
//! t.run_jobs().await;
//! t.expect_statuses(&sha, &["pending", "running", "success"]);
//! ```
//!
//! Projects are created in the fake on first use; every delivery goes through the real
//! router, signed as the forge signs it. Commit status states are the forge's own words
//! (GitLab `running` / `failed`, GitHub `pending` / `failure`).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use nbforge::config::Settings;

use super::fake_github::{FakeGitHub, FakePull, FakeRepo, PullAction};
use super::fake_gitlab::{FakeGitLab, FakeMergeRequest, FakeProject, MrAction};
use super::{Backend, TestApp, missing_service};

const ZERO: &str = "0000000000000000000000000000000000000000";

/// The commit status nbforge reports environments under.
pub const ENVIRONMENT_STATUS: &str = "nbforge/environment";

/// The fake forge a scenario runs against.
pub enum Fake {
    GitLab(FakeGitLab),
    GitHub(FakeGitHub),
}

/// A merge request (GitLab) or pull request (GitHub) opened by a scenario.
#[derive(Debug, Clone)]
pub enum Mr {
    GitLab(FakeMergeRequest),
    GitHub(FakePull),
}

impl Mr {
    pub fn iid(&self) -> i64 {
        match self {
            Mr::GitLab(m) => m.iid,
            Mr::GitHub(p) => p.number,
        }
    }
}

/// A test app and the fake forge it talks to.
pub struct Scenario {
    pub app: TestApp,
    pub fake: Fake,
    deliveries: AtomicU64,
}

impl std::ops::Deref for Scenario {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Scenario {
    /// Against a fake GitLab, on `backend` (None when that database is unavailable).
    pub async fn gitlab(backend: Backend) -> Option<Scenario> {
        Self::gitlab_with(backend, |_| {}).await
    }

    /// Against a fake GitLab, with settings `tweak` may change.
    pub async fn gitlab_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Scenario> {
        let fake = FakeGitLab::start().await;
        let (url, token) = (fake.url(), fake.token());
        let app = TestApp::with_settings(backend, move |s| {
            s.forges.gitlab_url = Some(url);
            s.forges.gitlab_token = Some(token);
            s.server.public_url = "http://nbforge.test/".parse().expect("URL");
            tweak(s);
        })
        .await?;
        Some(Scenario::new(app, Fake::GitLab(fake)))
    }

    /// Against a fake GitHub, on `backend`.
    pub async fn github(backend: Backend) -> Option<Scenario> {
        Self::github_with(backend, |_| {}).await
    }

    /// Against a fake GitHub, with settings `tweak` may change.
    pub async fn github_with(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<Scenario> {
        let fake = FakeGitHub::start().await;
        let (url, token) = (fake.url(), fake.token());
        let app = TestApp::with_settings(backend, move |s| {
            s.forges.github_api_url = Some(url);
            s.forges.github_token = Some(token);
            s.server.public_url = "http://nbforge.test/".parse().expect("URL");
            tweak(s);
        })
        .await?;
        Some(Scenario::new(app, Fake::GitHub(fake)))
    }

    fn new(app: TestApp, fake: Fake) -> Scenario {
        Scenario {
            app,
            fake,
            deliveries: AtomicU64::new(0),
        }
    }

    /// The fake GitLab (panics on a GitHub scenario).
    pub fn gitlab_fake(&self) -> &FakeGitLab {
        match &self.fake {
            Fake::GitLab(f) => f,
            Fake::GitHub(_) => panic!("a GitHub scenario has no fake GitLab"),
        }
    }

    /// The fake GitHub (panics on a GitLab scenario).
    pub fn github_fake(&self) -> &FakeGitHub {
        match &self.fake {
            Fake::GitHub(f) => f,
            Fake::GitLab(_) => panic!("a GitLab scenario has no fake GitHub"),
        }
    }

    /// Turns environment builds on (they are off in a plain [`TestApp`]).
    pub fn with_environments(mut self) -> Scenario {
        let mut settings = (*self.app.app.settings).clone();
        settings.environments.enabled = true;
        self.app.app.settings = std::sync::Arc::new(settings);
        self
    }

    /// Whether the Docker engine and the base image are there; when not, prints why the
    /// test is skipped (or fails, where services are required).
    pub async fn docker_ready(&self) -> bool {
        docker_ready(&self.app).await
    }

    fn project(&self, path: &str) -> FakeProject {
        let fake = self.gitlab_fake();
        fake.project(path).unwrap_or_else(|| fake.add_project(path))
    }

    fn repo(&self, path: &str) -> FakeRepo {
        let fake = self.github_fake();
        fake.repo(path).unwrap_or_else(|| fake.add_repo(path))
    }

    fn delivery_id(&self, what: &str) -> String {
        let n = self.deliveries.fetch_add(1, Ordering::Relaxed);
        format!("scenario-{what}-{n}")
    }

    async fn deliver_gitlab(&self, event: &str, body: Vec<u8>) {
        let id = self.delivery_id("gitlab");
        let res = self.app.gitlab(event, &id, body).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{event}: {}", res.text());
    }

    async fn deliver_github(&self, event: &str, body: Vec<u8>) {
        let id = self.delivery_id("github");
        let res = self.app.github(event, &id, body).await;
        assert!(
            res.status.is_success(),
            "{event}: {} {}",
            res.status,
            res.text()
        );
    }

    /// Commits `files` on `main` of `path` and delivers the push; returns the new sha.
    pub async fn push(&self, path: &str, files: &[(&str, &[u8])]) -> String {
        self.push_to(path, "main", files).await
    }

    /// Commits `files` on `branch` of `path` and delivers the push; returns the new sha.
    pub async fn push_to(&self, path: &str, branch: &str, files: &[(&str, &[u8])]) -> String {
        match &self.fake {
            Fake::GitLab(fake) => {
                let p = self.project(path);
                let before = fake.branch_sha(&p, branch).unwrap_or_else(|| ZERO.into());
                let sha = fake.commit(&p, branch, files, "scenario commit");
                let hook = fake.push_payload(&p, branch, &before, &sha);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
                sha
            }
            Fake::GitHub(fake) => {
                let r = self.repo(path);
                let before = fake.branch_sha(&r, branch).unwrap_or_else(|| ZERO.into());
                let sha = fake.commit(&r, branch, files, "scenario commit");
                let hook = fake.push_payload(&r, branch, &before, &sha);
                self.deliver_github(hook.event, hook.bytes()).await;
                sha
            }
        }
    }

    /// Tags the head of `main` of `path` as `tag` (annotated) and delivers the tag
    /// push (on GitHub also the `create` event that comes with it); returns the sha.
    pub async fn tag(&self, path: &str, tag: &str) -> String {
        match &self.fake {
            Fake::GitLab(fake) => {
                let p = self.project(path);
                let sha = fake.branch_sha(&p, "main").expect("main has a commit");
                fake.tag(&p, tag, &sha, Some("release"));
                let hook = fake.tag_push_payload(&p, tag, ZERO, &sha);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
                sha
            }
            Fake::GitHub(fake) => {
                let r = self.repo(path);
                let sha = fake.branch_sha(&r, "main").expect("main has a commit");
                fake.tag(&r, tag, &sha, Some("release"));
                let hook = fake.tag_push_payload(&r, tag, ZERO, &sha);
                self.deliver_github(hook.event, hook.bytes()).await;
                let hook = fake.create_tag_payload(&r, tag);
                self.deliver_github(hook.event, hook.bytes()).await;
                sha
            }
        }
    }

    /// Delivers the deletion of tag `tag` of `path`.
    pub async fn delete_tag(&self, path: &str, tag: &str) {
        match &self.fake {
            Fake::GitLab(fake) => {
                let p = self.project(path);
                let before = fake.branch_sha(&p, "main").expect("main has a commit");
                fake.delete_tag(&p, tag);
                let hook = fake.tag_push_payload(&p, tag, &before, ZERO);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
            }
            Fake::GitHub(fake) => {
                let r = self.repo(path);
                let before = fake.branch_sha(&r, "main").expect("main has a commit");
                fake.delete_tag(&r, tag);
                let hook = fake.tag_push_payload(&r, tag, &before, ZERO);
                self.deliver_github(hook.event, hook.bytes()).await;
            }
        }
    }

    /// Commits `files` on `branch` of `path` and opens a merge request from it into
    /// `main`, delivering the opening; the branch's push is not delivered.
    pub async fn open_mr(
        &self,
        path: &str,
        branch: &str,
        files: &[(&str, &[u8])],
        title: &str,
    ) -> Mr {
        match &self.fake {
            Fake::GitLab(fake) => {
                let p = self.project(path);
                fake.commit(&p, branch, files, "scenario work");
                let mr = fake.open_merge_request(&p, branch, &p, "main", title);
                let hook = fake.merge_request_payload(&mr, MrAction::Open, None);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
                Mr::GitLab(mr)
            }
            Fake::GitHub(fake) => {
                let r = self.repo(path);
                fake.commit(&r, branch, files, "scenario work");
                let pull = fake.open_pull(&r, &r, branch, "main", title);
                let hook = fake.pull_request_payload(&pull, PullAction::Opened, None);
                self.deliver_github(hook.event, hook.bytes()).await;
                Mr::GitHub(pull)
            }
        }
    }

    /// Commits `files` on the merge request's source branch and delivers the update
    /// (GitLab `update` with `oldrev`, GitHub `synchronize`); returns the new head.
    pub async fn update_mr(&self, mr: &Mr, files: &[(&str, &[u8])]) -> String {
        match (&self.fake, mr) {
            (Fake::GitLab(fake), Mr::GitLab(m)) => {
                let source = fake
                    .project(&m.source_project_id.to_string())
                    .expect("source project");
                let before = fake
                    .branch_sha(&source, &m.source_branch)
                    .expect("source branch");
                let head = fake.commit(&source, &m.source_branch, files, "scenario update");
                let hook = fake.merge_request_payload(m, MrAction::Update, Some(&before));
                self.deliver_gitlab(hook.event, hook.bytes()).await;
                head
            }
            (Fake::GitHub(fake), Mr::GitHub(p)) => {
                let before = fake
                    .branch_sha(&p.head_repo, &p.head_ref)
                    .expect("head branch");
                let head = fake.commit(&p.head_repo, &p.head_ref, files, "scenario update");
                let hook = fake.pull_request_payload(p, PullAction::Synchronize, Some(&before));
                self.deliver_github(hook.event, hook.bytes()).await;
                head
            }
            _ => panic!("the merge request is from another forge"),
        }
    }

    /// Merges the merge request and delivers that.
    pub async fn merge_mr(&self, mr: &Mr) {
        match (&self.fake, mr) {
            (Fake::GitLab(fake), Mr::GitLab(m)) => {
                let merged = fake.set_merge_request_state(m, "merged");
                let hook = fake.merge_request_payload(&merged, MrAction::Merge, None);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
            }
            (Fake::GitHub(fake), Mr::GitHub(p)) => {
                let merged = fake.close_pull(p, true);
                let hook = fake.pull_request_payload(&merged, PullAction::Closed, None);
                self.deliver_github(hook.event, hook.bytes()).await;
            }
            _ => panic!("the merge request is from another forge"),
        }
    }

    /// Closes the merge request without merging and delivers that.
    pub async fn close_mr(&self, mr: &Mr) {
        match (&self.fake, mr) {
            (Fake::GitLab(fake), Mr::GitLab(m)) => {
                let closed = fake.set_merge_request_state(m, "closed");
                let hook = fake.merge_request_payload(&closed, MrAction::Close, None);
                self.deliver_gitlab(hook.event, hook.bytes()).await;
            }
            (Fake::GitHub(fake), Mr::GitHub(p)) => {
                let closed = fake.close_pull(p, false);
                let hook = fake.pull_request_payload(&closed, PullAction::Closed, None);
                self.deliver_github(hook.event, hook.bytes()).await;
            }
            _ => panic!("the merge request is from another forge"),
        }
    }

    /// The `nbforge/environment` statuses of `sha`, oldest first: (state, description).
    pub fn statuses(&self, sha: &str) -> Vec<(String, String)> {
        match &self.fake {
            Fake::GitLab(fake) => fake
                .statuses_for(sha)
                .into_iter()
                .filter(|s| s.name == ENVIRONMENT_STATUS)
                .map(|s| (s.state, s.description.unwrap_or_default()))
                .collect(),
            Fake::GitHub(fake) => fake
                .statuses_for(sha)
                .into_iter()
                .filter(|s| s.context == ENVIRONMENT_STATUS)
                .map(|s| (s.state, s.description.unwrap_or_default()))
                .collect(),
        }
    }

    /// Asserts the states of the `nbforge/environment` statuses of `sha`, in order.
    #[track_caller]
    pub fn expect_statuses(&self, sha: &str, states: &[&str]) {
        let got = self.statuses(sha);
        let names: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, states, "statuses of {sha}: {got:?}");
    }

    /// The last `nbforge/environment` status of `sha`: (state, description).
    #[track_caller]
    pub fn last_status(&self, sha: &str) -> (String, String) {
        self.statuses(sha)
            .pop()
            .unwrap_or_else(|| panic!("no status on {sha}"))
    }

    /// The bodies of the notes (comments) on the merge request, oldest first.
    pub fn notes(&self, mr: &Mr) -> Vec<String> {
        match (&self.fake, mr) {
            (Fake::GitLab(fake), Mr::GitLab(m)) => {
                let p = fake
                    .project(&m.project_id.to_string())
                    .expect("target project");
                fake.notes_for(&p, m.iid)
                    .into_iter()
                    .map(|n| n.body)
                    .collect()
            }
            (Fake::GitHub(fake), Mr::GitHub(p)) => fake
                .comments_for(&p.repo, p.number)
                .into_iter()
                .map(|c| c.body)
                .collect(),
            _ => panic!("the merge request is from another forge"),
        }
    }

    /// Runs every ready job, then asserts none is left waiting or running.
    pub async fn run_jobs(&self) -> usize {
        let n = self.app.run_jobs().await;
        self.app.assert_queue_empty().await;
        n
    }
}

/// Whether the Docker engine and the base image are there (else skip or fail, as
/// configured).
pub async fn docker_ready(t: &TestApp) -> bool {
    match t
        .app
        .builder
        .image_exists(&t.app.settings.environments.base_image)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            missing_service(&format!(
                "the base image {} (nbforge base-image)",
                t.app.settings.environments.base_image
            ));
            false
        }
        Err(e) => {
            missing_service(&format!("the Docker engine ({e})"));
            false
        }
    }
}
