//! Launch links start sessions: `/build/…` streams BinderHub's phases and ends `ready` with
//! the session's URL, as a logged-in user (persistent home, the repository checked out at
//! the launched commit) or an anonymous visitor (throwaway home), against the fake GitLab
//! and the real Docker engine; and what a launch refuses.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use crate::access::{log_in, session, set_cookie, with_login};
use crate::support::fake_gitlab::FakeUser;
use crate::support::scenario::Scenario;
use crate::support::{Backend, TestResponse};
use nbforge::sessions::{Owner, SessionInfo, SessionState};

/// Removes the sessions and home volumes a test made, even when it fails.
pub(crate) struct Cleanup {
    pub project: String,
    pub users: Vec<i64>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ps = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=org.nbforge.project={}", self.project),
            ])
            .output();
        if let Ok(out) = ps {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-fv", id])
                    .output();
            }
        }
        for user in &self.users {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f", &format!("nbforge-home-{user}")])
                .output();
        }
    }
}

/// A launch test: login set up, environment builds on, Docker there, user ids of its own
/// (homes are named by them), and a project `lab/<prefix><random>` whose sessions and
/// users' homes are removed at the end.
pub(crate) struct LaunchTest {
    pub t: Scenario,
    /// The project's name (its folder in the home), and its path.
    pub name: String,
    pub project: String,
    pub cleanup: Cleanup,
}

impl LaunchTest {
    pub(crate) async fn new(
        prefix: &str,
        tweak: impl FnOnce(&mut nbforge::config::Settings),
    ) -> Option<LaunchTest> {
        let t = with_login(Backend::Sqlite, tweak)
            .await?
            .with_environments();
        if !t.docker_ready().await {
            return None;
        }
        t.gitlab_fake().randomize_ids();
        let name = format!(
            "{prefix}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let project = format!("lab/{name}");
        Some(LaunchTest {
            t,
            name,
            cleanup: Cleanup {
                project: project.clone(),
                users: Vec::new(),
            },
            project,
        })
    }

    /// A user of the fake GitLab whose home is removed at the end.
    pub(crate) fn user(&mut self, username: &str) -> FakeUser {
        let user = self.t.gitlab_fake().add_user(username);
        self.cleanup.users.push(user.id);
        user
    }
}

fn events(res: &TestResponse) -> Vec<Value> {
    res.text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|l| serde_json::from_str(l.trim()).expect("each event is JSON"))
        .collect()
}

async fn launch(t: &Scenario, path: &str, cookies: &str) -> TestResponse {
    let mut req = Request::get(path);
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    t.request(req.body(Body::empty()).unwrap()).await
}

fn docker_exec(info: &SessionInfo, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            &format!("nbforge-session-{}", info.id),
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sessions of `owner` for `project` (other tests use the same names at the same time).
async fn sessions_of(t: &Scenario, owner: &str, project: &str) -> Vec<SessionInfo> {
    t.app
        .app
        .sessions
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.owner.url_name() == owner && s.project.path == project)
        .collect()
}

const NOTEBOOK: &str = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badge_launches_a_session_with_the_repository_checked_out() {
    let Some(mut lt) = LaunchTest::new("growth", |s| s.lifecycle.per_user = 1).await else {
        return;
    };
    let ada = lt.user("ada");
    let LaunchTest {
        t, name, project, ..
    } = &lt;
    let first = t
        .push(
            project,
            &[
                ("requirements.txt", b"# nothing beyond the base\n"),
                ("analysis.ipynb", NOTEBOOK.as_bytes()),
            ],
        )
        .await;
    t.run_jobs().await;
    let cookie = log_in(t, &ada, "/").await;
    let seg = project.replace('/', "%2F");

    // The launch page runs nbforge's script, which follows /build/….
    let page = launch(
        t,
        &format!("/v2/gl/{seg}/main?labpath=analysis.ipynb"),
        &session(&cookie),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains(&format!(
            "data-events=\"/build/gl/{seg}/main?labpath=analysis.ipynb\""
        )),
        "{html}"
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let res = launch(
        t,
        &format!("/build/gl/{seg}/main?labpath=analysis.ipynb"),
        &session(&cookie),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let ev = events(&res);
    let phases: Vec<&str> = ev.iter().map(|e| e["phase"].as_str().unwrap()).collect();
    assert_eq!(phases.first(), Some(&"waiting"), "{ev:?}");
    assert!(
        phases.contains(&"fetching") && phases.contains(&"launching"),
        "{ev:?}"
    );
    let ready = ev.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{ev:?}");
    let session_name = format!("{name}-{}", &first[..8]);
    assert_eq!(
        ready["url"],
        format!("http://nbforge.test/user/ada/{session_name}/lab/tree/{name}/analysis.ipynb")
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains(&format!("cloned at {first}")),
        "{ready}"
    );

    let mine = sessions_of(t, "ada", project).await;
    assert_eq!(mine.len(), 1);
    let s = &mine[0];
    assert_eq!(s.state, SessionState::Running);
    assert_eq!(s.project.commit, first);
    assert!(matches!(s.owner, Owner::User { id, .. } if id == ada.id));
    let out = docker_exec(
        s,
        &format!(
            "git -C ~/{name} rev-parse HEAD; git -C ~/{name} remote get-url origin; git -C ~/{name} branch --show-current"
        ),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], first);
    assert!(
        !lines[1].contains('@') && !lines[1].contains("glpat"),
        "{out}"
    );
    assert_eq!(lines[2], "main");

    // The same commit again: the running session opens, nothing new starts.
    let again = events(&launch(t, &format!("/build/gl/{seg}/{first}"), &session(&cookie)).await);
    let last = again.last().unwrap();
    assert_eq!(last["phase"], "ready", "{again:?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{last}"
    );
    assert_eq!(sessions_of(t, "ada", project).await.len(), 1);

    // A newer commit while the checkout has changes: the checkout is left alone, and the
    // launch says so.
    docker_exec(s, &format!("echo mine >> ~/{name}/analysis.ipynb"));
    t.app.app.sessions.stop(&s.id).await.unwrap();
    let second = t.push(project, &[("notes.md", b"# more\n")]).await;
    t.run_jobs().await;
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &session(&cookie)).await);
    let ready = ev.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{ev:?}");
    assert!(
        ready["message"].as_str().unwrap().contains("left alone"),
        "{ready}"
    );
    let s = sessions_of(t, "ada", project)
        .await
        .into_iter()
        .find(|s| s.project.commit == second)
        .unwrap();
    let out = docker_exec(
        &s,
        &format!("git -C ~/{name} rev-parse HEAD; tail -c 5 ~/{name}/analysis.ipynb"),
    );
    assert!(out.starts_with(&first), "{out}");
    assert!(out.ends_with("mine\n"), "{out}");
    // One session at a time here: another commit is refused while this one runs.
    let ev = events(&launch(t, &format!("/build/gl/{seg}/{first}"), &session(&cookie)).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed", "{ev:?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("You already have 1 running session"),
        "{last}"
    );
    t.app.app.sessions.stop(&s.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_launches_a_public_project_with_a_throwaway_home() {
    let Some(lt) = LaunchTest::new("open", |_| {}).await else {
        return;
    };
    let LaunchTest { t, project, .. } = &lt;
    let sha = t.push(project, &[("requirements.txt", b"# none\n")]).await;
    t.run_jobs().await;
    let seg = project.replace('/', "%2F");

    let page = launch(t, &format!("/v2/gl/{seg}/main"), "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let visitor = set_cookie(&page, "nbforge_visitor").expect("a visitor cookie");
    let cookies = format!("nbforge_visitor={visitor}");
    let res = launch(t, &format!("/build/gl/{seg}/main"), &cookies).await;
    let ev = events(&res);
    let ready = ev.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{ev:?}");
    let url = ready["url"].as_str().unwrap();
    assert!(url.starts_with("http://nbforge.test/user/~"), "{url}");
    let owner = url
        .trim_start_matches("http://nbforge.test/user/")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mine = sessions_of(t, &owner, project).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].project.commit, sha);
    // A throwaway home, and the visitor's smaller limits.
    let (ok, inspect) = {
        let out = std::process::Command::new("docker")
            .args(["inspect", &format!("nbforge-session-{}", mine[0].id)])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(ok);
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect[0]["HostConfig"]["Memory"], 1i64 << 30);
    assert!(
        inspect[0]["Config"]["Labels"]["org.nbforge.throwaway-home"]
            .as_str()
            .unwrap()
            .starts_with("nbforge-home-session-")
    );
    // BinderHub's `/v2/git/<url-escaped URL>/<ref>` names the same project by its clone URL,
    // and the visitor's running session opens again.
    let url_of_repo = t.gitlab_fake().project(project).unwrap().http_url_to_repo;
    let escaped: String = url::form_urlencoded::byte_serialize(url_of_repo.as_bytes()).collect();
    let by_url = events(&launch(t, &format!("/build/git/{escaped}/main"), &cookies).await);
    let last = by_url.last().unwrap();
    assert_eq!(last["phase"], "ready", "{by_url:?}");
    assert_eq!(last["url"], url);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{last}"
    );
    // Another visitor's launch is theirs: a second session.
    let other = events(&launch(t, &format!("/build/gl/{seg}/main"), "").await);
    let other_url = other.last().unwrap()["url"].as_str().unwrap().to_owned();
    assert_ne!(other_url, url);
    for s in t.app.app.sessions.list().await.unwrap() {
        if s.project.path == *project {
            t.app.app.sessions.stop(&s.id).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_refuse_what_they_cannot_start_and_leave_nothing() {
    let Some(mut lt) = LaunchTest::new("bad", |_| {}).await else {
        return;
    };
    let ada = lt.user("ada");
    let LaunchTest { t, project, .. } = &lt;
    let cookie = session(&log_in(t, &ada, "/").await);
    let seg = project.replace('/', "%2F");

    // A project nbforge has not seen (or that the user may not see).
    let res = launch(t, &format!("/build/gl/{seg}/main"), &cookie).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());

    // A ref that does not exist.
    t.push(project, &[("apt.txt", b"<bad>\n")]).await;
    t.run_jobs().await;
    let ev = events(&launch(t, &format!("/build/gl/{seg}/nope"), &cookie).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no branch or tag named nope"),
        "{last}"
    );

    // A failed environment: the launch repeats the status's message.
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &cookie).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.starts_with("the environment of this commit could not be prepared: apt.txt:1:"),
        "{last}"
    );

    // A container that dies at start: its log says why, and nothing is left running.
    t.push(
        project,
        &[
            ("apt.txt", b"\n"),
            ("requirements.txt", b"# none\n"),
            (
                "start",
                b"#!/bin/sh\necho 'the start script gives up' >&2\nexit 3\n",
            ),
        ],
    )
    .await;
    t.run_jobs().await;
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &cookie).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed", "{ev:?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("the start script gives up"),
        "{last}"
    );
    assert!(sessions_of(t, "ada", project).await.is_empty());

    // Paths that leave the repository.
    let ev = events(
        &launch(
            t,
            &format!("/build/gl/{seg}/main?labpath=../../etc/passwd"),
            &cookie,
        )
        .await,
    );
    assert_eq!(ev.last().unwrap()["phase"], "failed", "{ev:?}");

    // Another site cannot start a launch through the browser.
    let res = t
        .request(
            Request::get(format!("/build/gl/{seg}/main"))
                .header("cookie", &cookie)
                .header("sec-fetch-site", "cross-site")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // An unknown provider.
    let res = launch(t, &format!("/build/xx/{seg}/main"), &cookie).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);

    // A kind nbforge does not build: said plainly, with the documentation, nothing started.
    t.push(project, &[("Project.toml", b"[deps]\n")]).await;
    t.run_jobs().await;
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &cookie).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed", "{ev:?}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("Project.toml selects a Julia environment (kind `julia`), which nbforge cannot build yet")
            && message.contains(nbforge::spec::UNSUPPORTED_DOCS),
        "{last}"
    );
    assert!(sessions_of(t, "ada", project).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_checkout_is_fetched_with_the_users_own_token() {
    let Some(mut lt) = LaunchTest::new("secret", |_| {}).await else {
        return;
    };
    let ada = lt.user("ada");
    let bob = lt.user("bob");
    let LaunchTest {
        t, name, project, ..
    } = &lt;
    let fake = t.gitlab_fake();
    let p = fake.add_project(project);
    fake.set_visibility(&p, "private");
    let git_url = fake.serve_git_over_http(&p);
    fake.add_member(project, &ada, 20);
    let sha = t.push(project, &[("requirements.txt", b"# none\n")]).await;
    t.run_jobs().await;
    // nbforge believes both may read the project; GitLab knows bob no longer may.
    for user in [&ada, &bob] {
        t.db()
            .upsert_member(&nbforge::storage::MemberRow {
                forge: nbforge::events::ForgeKind::GitLab,
                scope: format!("project:{project}"),
                user_id: user.id,
                access_level: 20,
                expires_at: None,
                source: "hook".into(),
            })
            .await
            .unwrap();
    }
    let seg = project.replace('/', "%2F");

    let ada_cookie = session(&log_in(t, &ada, "/").await);
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &ada_cookie).await);
    let ready = ev.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{ev:?}");
    assert!(
        ready["message"].as_str().unwrap().contains("cloned at"),
        "{ready}"
    );
    let s = sessions_of(t, "ada", project).await.pop().unwrap();
    let out = docker_exec(
        &s,
        &format!(
            "git -C ~/{name} rev-parse HEAD; git -C ~/{name} remote get-url origin; git -C ~/{name} config --list"
        ),
    );
    assert!(out.starts_with(&sha), "{out}");
    assert!(
        out.contains(&format!("remote.origin.url={git_url}")),
        "{out}"
    );
    // No token anywhere in the checkout's configuration.
    assert!(
        !out.contains("gloas") && !out.contains("oauth2:") && !out.contains("glpat"),
        "{out}"
    );

    let bob_cookie = session(&log_in(t, &bob, "/").await);
    let ev = events(&launch(t, &format!("/build/gl/{seg}/main"), &bob_cookie).await);
    let last = ev.last().unwrap();
    assert_eq!(last["phase"], "failed", "{ev:?}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("did not let you read this repository"),
        "{last}"
    );
    assert!(sessions_of(t, "bob", project).await.is_empty());
    t.app.app.sessions.stop(&s.id).await.unwrap();
}
