//! Test harness: the app under test on a fresh SQLite or PostgreSQL database, signed
//! deliveries sent through the real router, and explicit draining of the job queue.
//!
//! PostgreSQL tests use `NBFORGE_TEST_POSTGRES_URL` (a server URL whose user may create
//! databases); each test gets its own database. Where it is unset the test prints why
//! it is skipped, unless `NBFORGE_REQUIRE_SERVICES=1` (CI), which turns that into a failure.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

pub mod fake_github;
pub mod fake_gitlab;
pub mod process;
pub mod scenario;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nbforge::app::{App, build_forges};
use nbforge::config::{Secret, Settings};
use nbforge::storage::{Clock, Db};
use tower::ServiceExt;

pub const WEBHOOK_SECRET: &str = "test-webhook-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const GITHUB_SECRET: &str = "test-github-secret";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Whether missing services fail tests instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("NBFORGE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (with a printed reason) or fails when a service is missing.
pub fn missing_service(what: &str) {
    if services_required() {
        panic!("{what} is required (NBFORGE_REQUIRE_SERVICES=1) but not available");
    }
    eprintln!("SKIPPED: {what} is not available");
}

/// A fresh database URL for `backend`, or None when PostgreSQL is not configured.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("nbforge.db").display())),
        Backend::Postgres => {
            let Ok(server) = std::env::var("NBFORGE_TEST_POSTGRES_URL") else {
                missing_service("PostgreSQL (NBFORGE_TEST_POSTGRES_URL)");
                return None;
            };
            let name = format!("nbforge_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Db::connect_without_migrating(&server)
                .await
                .expect("PostgreSQL answers");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(admin.pool())
                .await
                .expect("create a test database");
            admin.close().await;
            let mut url = url::Url::parse(&server).expect("NBFORGE_TEST_POSTGRES_URL is a URL");
            url.set_path(&format!("/{name}"));
            Some(url.to_string())
        }
    }
}

/// The app under test.
pub struct TestApp {
    pub app: App,
    pub backend: Backend,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Option<TestApp> {
        Self::with_settings(backend, |_| {}).await
    }

    pub async fn sqlite() -> TestApp {
        Self::new(Backend::Sqlite)
            .await
            .expect("SQLite is always available")
    }

    /// A test app whose settings `tweak` may change before start.
    pub async fn with_settings(
        backend: Backend,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<TestApp> {
        Self::with_clock(backend, Clock::System, tweak).await
    }

    /// A test app whose storage and jobs read the time from `clock` (e.g.
    /// [`Clock::manual`], moved with [`TestApp::advance`]).
    pub async fn with_clock(
        backend: Backend,
        clock: Clock,
        tweak: impl FnOnce(&mut Settings),
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = fresh_database(backend, dir.path()).await?;
        let mut settings = Settings::for_database(&url);
        settings.forges.gitlab_webhook_secrets = vec![
            Secret::new("old-rotated-secret"),
            Secret::new(WEBHOOK_SECRET),
        ];
        settings.forges.github_webhook_secret = Some(Secret::new(GITHUB_SECRET));
        settings.server.admin_token = Some(Secret::new(ADMIN_TOKEN));
        settings.data_dir = dir.path().join("data");
        // Plain-git tests keep their bare repositories under the test's folder.
        let git_root = dir.path().join("git");
        std::fs::create_dir_all(&git_root).expect("git root");
        settings.forges.git_roots = vec![
            git_root.canonicalize().expect("git root"),
            shared_git_root(),
        ];
        settings.jobs.backoff = std::time::Duration::from_millis(1);
        // Environment builds need Docker; the tests that want them turn them on.
        settings.environments.enabled = false;
        settings.environments.image_prefix = "nbforge-test".into();
        if let Ok(path) = std::env::var("NBFORGE_EXTRA_CA_CERTS") {
            settings.environments.extra_ca =
                Some(std::fs::read(&path).expect("NBFORGE_EXTRA_CA_CERTS is readable"));
        }
        tweak(&mut settings);
        let db = Db::connect(&settings.database_url)
            .await
            .expect("database connects")
            .with_clock(clock);
        let forges = build_forges(&settings, &db).expect("forges");
        Some(TestApp {
            app: App::with_parts(settings, db, forges).expect("the app starts"),
            backend,
            dir,
        })
    }

    /// The folder plain-git repositories of this test live in (a configured git root).
    pub fn git_root(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join("git")
            .canonicalize()
            .expect("git root")
    }

    pub fn db(&self) -> &Db {
        &self.app.db
    }

    /// Sends a request through the real router.
    pub async fn request(&self, req: Request<Body>) -> TestResponse {
        let res = nbforge::web::router(self.app.clone())
            .oneshot(req)
            .await
            .expect("router answers");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// A GitLab delivery signed with the configured secret.
    pub async fn gitlab(&self, event: &str, uuid: &str, body: impl Into<Vec<u8>>) -> TestResponse {
        self.gitlab_with(
            event,
            body,
            &[
                ("x-gitlab-token", WEBHOOK_SECRET),
                ("x-gitlab-event-uuid", uuid),
            ],
        )
        .await
    }

    /// A GitLab delivery with exactly the given extra headers.
    pub async fn gitlab_with(
        &self,
        event: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut req = Request::post("/hooks/gitlab")
            .header("content-type", "application/json")
            .header("x-gitlab-event", event);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.request(req.body(Body::from(body.into())).expect("request"))
            .await
    }

    /// A GitHub delivery signed with the configured secret.
    pub async fn github(
        &self,
        event: &str,
        delivery: &str,
        body: impl Into<Vec<u8>>,
    ) -> TestResponse {
        let body = body.into();
        let sig = nbforge::ingest::github_signature(GITHUB_SECRET, &body);
        let req = Request::post("/hooks/github")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sig)
            .body(Body::from(body))
            .expect("request");
        self.request(req).await
    }

    /// GET with the admin token.
    pub async fn admin_get(&self, path: &str) -> TestResponse {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .expect("request");
        self.request(req).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// A user `id` named `username`, logged in for an hour: the value of their session
    /// cookie and their CSRF token.
    pub async fn web_session(&self, id: i64, username: &str) -> (String, String) {
        use nbforge::access::service::{digest, random_token};
        self.db()
            .upsert_user(&nbforge::storage::UserUpdate {
                id,
                username,
                name: None,
                avatar_url: None,
                state: None,
            })
            .await
            .expect("user stored");
        let (value, csrf) = (random_token(), random_token());
        self.db()
            .create_web_session(
                &digest(&["session", &value]),
                id,
                &csrf,
                nbforge::storage::now_ms() + 3_600_000,
            )
            .await
            .expect("session stored");
        (value, csrf)
    }

    /// What jobs see of the app under test.
    pub fn jobs(&self) -> nbforge::jobs::Context {
        self.app.jobs()
    }

    /// Moves the app's clock forward (a manual clock only).
    pub fn advance(&self, by: std::time::Duration) {
        self.app.clock.advance(by);
    }

    /// Runs every ready job in this task; returns how many ran.
    pub async fn run_jobs(&self) -> usize {
        nbforge::jobs::run_until_idle(&self.app.jobs())
            .await
            .expect("jobs run")
    }

    /// Job counts by state.
    pub async fn job_counts(&self) -> std::collections::BTreeMap<String, i64> {
        self.db()
            .job_counts()
            .await
            .expect("counts")
            .into_iter()
            .collect()
    }

    /// Asserts no job is waiting or running.
    pub async fn assert_queue_empty(&self) {
        let counts = self.job_counts().await;
        assert_eq!(
            counts.get("pending").copied().unwrap_or(0),
            0,
            "pending jobs left: {counts:?}"
        );
        assert_eq!(
            counts.get("running").copied().unwrap_or(0),
            0,
            "running jobs left: {counts:?}"
        );
    }
}

/// A collected response.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs the same async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let f = $body;
                f($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let f = $body;
                f($crate::support::Backend::Postgres).await;
            }
        }
    };
}

/// The git root shared by tests that deliver [`push_payload`]s without a repository of
/// their own: every test app and test server reads bare repositories from it.
pub fn shared_git_root() -> std::path::PathBuf {
    let root = std::env::temp_dir().join("nbforge-test-git");
    std::fs::create_dir_all(&root).expect("shared git root");
    root.canonicalize().expect("shared git root")
}

/// The bare repository of project `path` under `root`, made (empty) when missing.
pub fn bare_repository(root: &std::path::Path, path: &str) -> std::path::PathBuf {
    let repo = root.join(format!("{path}.git"));
    if git2::Repository::open_bare(&repo).is_err() {
        // Another test process may be making the same one: what counts is that it opens.
        let made = git2::Repository::init_bare(&repo);
        assert!(
            made.is_ok() || git2::Repository::open_bare(&repo).is_ok(),
            "bare repository {}",
            repo.display()
        );
    }
    repo
}

/// A GitLab push payload as documented, for `path` moving `branch` from `before` to `after`.
/// Its clone URL is the `file://` URL of an (empty) bare repository of `path` under
/// [`shared_git_root`], so that without GitLab nbforge finds the project where it must be;
/// with GitLab the URL is ignored for the API's.
pub fn push_payload(path: &str, branch: &str, before: &str, after: &str) -> Vec<u8> {
    let repo_url = url::Url::from_file_path(bare_repository(&shared_git_root(), path))
        .expect("absolute path")
        .to_string();
    serde_json::json!({
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": format!("refs/heads/{branch}"),
        "ref_protected": true,
        "checkout_sha": after,
        "message": null,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": path.rsplit('/').next().unwrap_or(path),
            "description": "",
            "web_url": format!("http://example.com/{path}"),
            "avatar_url": null,
            "git_ssh_url": format!("git@example.com:{path}.git"),
            "git_http_url": repo_url,
            "namespace": path.split('/').next().unwrap_or(path),
            "visibility_level": 20,
            "path_with_namespace": path,
            "default_branch": "main",
            "homepage": format!("http://example.com/{path}"),
            "url": format!("git@example.com:{path}.git"),
            "ssh_url": format!("git@example.com:{path}.git"),
            "http_url": repo_url
        },
        "repository": {
            "name": path.rsplit('/').next().unwrap_or(path),
            "url": format!("git@example.com:{path}.git"),
            "description": "",
            "homepage": format!("http://example.com/{path}"),
            "git_http_url": repo_url,
            "git_ssh_url": format!("git@example.com:{path}.git"),
            "visibility_level": 20
        },
        "commits": [],
        "total_commits_count": 1
    })
    .to_string()
    .into_bytes()
}

/// A 40-hex commit id made from `n`.
pub fn sha(n: u64) -> String {
    format!("{n:040x}")
}
