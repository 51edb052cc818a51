//! Runs of visitors who are not logged in (`NBFORGE_ANONYMOUS_RUNS`), on the real Docker
//! engine: refused while the setting is off; with it on, a visitor runs an official public
//! worksheet in a throwaway home under stricter limits, the result opens from its link
//! without the visitor's cookie, only the visitor cancels it, the limits per visitor and
//! for all visitors hold, private and unofficial worksheets are refused, and the cleanup
//! job deletes expired results with their homes (and sessions' throwaway homes nothing
//! uses), with a manual clock.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::catalog::{make_official, publish};
use crate::on_both_databases;
use crate::sessions::{base_image, docker_cli, random_id};
use crate::support::fake_gitlab::FakeGitLab;
use crate::support::{Backend, TestApp, TestResponse};
use nbforge::jobs::Job;
use nbforge::runs::visitors::home_volume as run_home;
use nbforge::sessions::docker::{
    LABEL_CREATED, LABEL_HOME, LABEL_OWNER_ID, LABEL_SESSION, home_volume,
};
use nbforge::storage::{BuildPhase, Clock, Enqueue};

const LAUNCH: &str = r#"kind = "worksheet"
title = "Open"

[[worksheet]]
path = "compute.ipynb"
title = "Compute"

[[worksheet]]
path = "sleep.ipynb"
title = "Sleeps"
"#;

fn cell(kind: &str, source: &str, tags: &[&str]) -> Value {
    let mut c = json!({"cell_type": kind, "metadata": {"tags": tags}, "source": source});
    if kind == "code" {
        c["outputs"] = json!([]);
        c["execution_count"] = Value::Null;
    }
    c
}

fn notebook(cells: Vec<Value>) -> Vec<u8> {
    let cells: Vec<Value> = cells
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            c["id"] = json!(format!("c{i}"));
            c
        })
        .collect();
    serde_json::to_vec(&json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells,
    }))
    .unwrap()
}

/// Removes what the test made: run containers and homes, the user's home, volumes.
struct Cleanup {
    runs: std::sync::Mutex<Vec<String>>,
    users: Vec<i64>,
    volumes: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.containers {
            docker_cli(&["rm", "-f", name]);
        }
        for id in self.runs.lock().unwrap().iter() {
            docker_cli(&["rm", "-f", "-v", &format!("nbforge-run-{id}")]);
            docker_cli(&["volume", "rm", "-f", &run_home(id)]);
        }
        for user in &self.users {
            let filter = format!("label={LABEL_OWNER_ID}={user}");
            let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &filter]);
            for id in ids.split_whitespace() {
                docker_cli(&["rm", "-f", "-v", id]);
            }
            docker_cli(&["volume", "rm", "-f", &home_volume(*user)]);
        }
        for volume in &self.volumes {
            docker_cli(&["volume", "rm", "-f", volume]);
        }
    }
}

struct Fixture {
    t: TestApp,
    image: String,
    /// A logged-in user: (cookie, CSRF token).
    user: (String, String),
    cleanup: Cleanup,
    _fake: FakeGitLab,
}

/// Three published projects whose environment is the base image: `lab/open` (public,
/// official), `lab/plain` (public, not official) and `lab/closed` (private, official).
async fn fixture(backend: Backend, anonymous_runs: bool) -> Option<Fixture> {
    let image = base_image()?;
    let fake = FakeGitLab::start().await;
    let (url, token) = (fake.url(), fake.token());
    let t = TestApp::with_clock(backend, Clock::manual(), move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
        s.access.anonymous_runs = anonymous_runs;
        s.runs.timeout = Duration::from_secs(120);
        s.sessions.memory_max_bytes = 1 << 30;
        s.sessions.cpu_max = 1.0;
        s.visitor_runs.memory_bytes = 256 << 20;
        s.visitor_runs.timeout = Duration::from_secs(60);
        s.visitor_runs.per_visitor = 1;
        s.visitor_runs.max = 2;
    })
    .await?;
    let compute = notebook(vec![
        cell("markdown", "# Growth", &[]),
        cell("code", "rate = 1.5", &["parameters"]),
        cell(
            "code",
            "import os\nfor p in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n    if os.path.exists(p):\n        print('memory-limit=' + open(p).read().strip())",
            &[],
        ),
        cell(
            "code",
            "print(f\"result={rate * 2}\")\nopen('written.txt', 'w').write(os.environ['HOME'])",
            &[],
        ),
    ]);
    let sleep = notebook(vec![
        cell("code", "seconds = 300", &["parameters"]),
        cell("code", "import time\ntime.sleep(seconds)", &[]),
    ]);
    for (path, visibility, official) in [
        ("lab/open", "public", true),
        ("lab/plain", "public", false),
        ("lab/closed", "private", true),
    ] {
        let p = fake.add_project(path);
        fake.set_visibility(&p, visibility);
        let readme = format!("# {path}\n");
        let files: Vec<(&str, &[u8])> = vec![
            ("launch.toml", LAUNCH.as_bytes()),
            ("compute.ipynb", &compute),
            ("sleep.ipynb", &sleep),
            ("README.md", readme.as_bytes()),
        ];
        let sha = publish(&t, &fake, &p, "v1", &files).await;
        if official {
            make_official(&t, path).await;
        }
        let build = t
            .db()
            .create_build("gitlab", path, Some("main"), &sha, None)
            .await
            .unwrap();
        t.db()
            .set_build_environment(build, "test-key", &image)
            .await
            .unwrap();
        t.db()
            .set_build_phase(build, BuildPhase::Built, None, true, None)
            .await
            .unwrap();
    }
    let user_id = random_id();
    let (value, csrf) = t.web_session(user_id, &format!("user{user_id}")).await;
    Some(Fixture {
        t,
        image,
        user: (format!("nbforge_session={value}"), csrf),
        cleanup: Cleanup {
            runs: std::sync::Mutex::default(),
            users: vec![user_id],
            volumes: Vec::new(),
            containers: Vec::new(),
        },
        _fake: fake,
    })
}

/// Who sends a request: nobody, a visitor's cookie, or a logged-in user.
#[derive(Clone, Copy)]
enum By<'a> {
    Nobody,
    Visitor(&'a str),
    User(&'a (String, String)),
}

async fn send(
    t: &TestApp,
    by: By<'_>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> TestResponse {
    let mut req = Request::builder().method(method).uri(path);
    match by {
        By::Nobody => {}
        By::Visitor(cookie) => req = req.header("cookie", format!("nbforge_visitor={cookie}")),
        By::User((cookie, csrf)) => {
            req = req
                .header("cookie", cookie.as_str())
                .header("x-csrf-token", csrf.as_str());
        }
    }
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    t.request(req.body(body).unwrap()).await
}

/// The visitor cookie a response set.
fn visitor_cookie(res: &TestResponse) -> Option<String> {
    crate::access::set_cookie(res, "nbforge_visitor")
}

fn start_body(project: &str, worksheet: &str, values: Value) -> Option<Value> {
    Some(json!({"worksheet": format!("/w/{project}/v1/{worksheet}"), "values": values}))
}

impl Fixture {
    /// Starts a run as `by`; its id and the visitor cookie set, if any.
    async fn start(&self, by: By<'_>, worksheet: &str, values: Value) -> (String, Option<String>) {
        let res = send(
            &self.t,
            by,
            "POST",
            "/api/runs",
            start_body("lab/open", worksheet, values),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let id = res.json()["id"].as_str().unwrap().to_owned();
        self.cleanup.runs.lock().unwrap().push(id.clone());
        (id, visitor_cookie(&res))
    }

    /// The run as the API shows it to a client without any cookie.
    async fn run(&self, id: &str) -> Value {
        let res = send(&self.t, By::Nobody, "GET", &format!("/api/runs/{id}"), None).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()["run"].clone()
    }

    /// A file of a home volume, read with a throwaway container.
    fn home_file(&self, volume: &str, path: &str) -> (bool, String) {
        docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{volume}:/home/jovyan"),
            &self.image,
            "cat",
            &format!("/home/jovyan/{path}"),
        ])
    }

    async fn cleanup_job(&self) {
        self.t
            .db()
            .enqueue(&Enqueue {
                supersede: vec![],
                jobs: vec![nbforge::jobs::kinds::Cleanup {}.to_new_job(3)],
            })
            .await
            .unwrap();
        self.t.run_jobs().await;
        self.t.assert_queue_empty().await;
    }
}

fn volume_exists(name: &str) -> bool {
    docker_cli(&["volume", "inspect", name]).0
}

on_both_databases!(
    visitors_cannot_run_while_the_setting_is_off,
    |backend: Backend| async move {
        let Some(f) = fixture(backend, false).await else {
            return;
        };
        let t = &f.t;
        let res = send(
            t,
            By::Nobody,
            "POST",
            "/api/runs",
            start_body("lab/open", "compute.ipynb", json!({"rate": 2})),
        )
        .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
        assert_eq!(visitor_cookie(&res), None);
        // The form checks the values and offers the notebook to download.
        let req = Request::post("/w/lab/open/v1/compute.ipynb")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("rate=2"))
            .unwrap();
        let res = t.request(req).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert!(res.text().contains("format=ipynb"), "{}", res.text());
        let all = nbforge::storage::RunFilter {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(t.db().list_runs(&all).await.unwrap().len(), 0);
    }
);

on_both_databases!(
    a_visitor_runs_an_official_public_worksheet,
    |backend: Backend| async move {
        let Some(f) = fixture(backend, true).await else {
            return;
        };
        let t = &f.t;
        // Without a cookie: the run starts and the visitor gets one.
        let (id, cookie) = f
            .start(By::Nobody, "compute.ipynb", json!({"rate": 21}))
            .await;
        let cookie = cookie.expect("a new visitor gets a cookie");
        let me = By::Visitor(&cookie);
        // One unfinished run per visitor.
        let res = send(
            t,
            me,
            "POST",
            "/api/runs",
            start_body("lab/open", "compute.ipynb", json!({})),
        )
        .await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.text());
        assert!(
            res.text().contains("wait for it to finish"),
            "{}",
            res.text()
        );
        // A second visitor may run; a third finds the visitors' cap (two) taken.
        let (second, other) = f.start(By::Nobody, "compute.ipynb", json!({})).await;
        let other = other.unwrap();
        assert_ne!(other, cookie);
        let res = send(
            t,
            By::Nobody,
            "POST",
            "/api/runs",
            start_body("lab/open", "compute.ipynb", json!({})),
        )
        .await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{}", res.text());
        assert!(res.text().contains("too many visitors"), "{}", res.text());
        // Only its visitor cancels a run: not the first visitor, not a client without the
        // cookie, not a logged-in user.
        for by in [me, By::Nobody, By::User(&f.user)] {
            let res = send(t, by, "POST", &format!("/api/runs/{second}/cancel"), None).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
        }
        let res = send(
            t,
            By::Visitor(&other),
            "POST",
            &format!("/api/runs/{second}/cancel"),
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(f.run(&second).await["state"], "canceled");

        // Unofficial and private worksheets are refused, through the API and the form.
        for project in ["lab/plain", "lab/closed"] {
            let res = send(
                t,
                By::Visitor(&other),
                "POST",
                "/api/runs",
                start_body(project, "compute.ipynb", json!({})),
            )
            .await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{project}: {}",
                res.text()
            );
        }
        let req = Request::post("/w/lab/plain/v1/compute.ipynb")
            .header("cookie", format!("nbforge_visitor={other}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("rate=2"))
            .unwrap();
        let res = t.request(req).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert!(res.text().contains("format=ipynb"), "{}", res.text());

        // A logged-in user's run is not the visitor's to see or cancel.
        let (users, _) = f.start(By::User(&f.user), "compute.ipynb", json!({})).await;
        for (method, path) in [
            ("GET", format!("/api/runs/{users}")),
            ("GET", format!("/runs/{users}")),
            ("GET", format!("/runs/{users}/events")),
            ("POST", format!("/api/runs/{users}/cancel")),
            ("POST", format!("/runs/{users}/cancel")),
            ("DELETE", format!("/api/runs/{users}")),
        ] {
            for by in [me, By::Nobody] {
                let res = send(t, by, method, &path, None).await;
                assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
            }
        }
        let res = send(t, me, "GET", "/api/runs", None).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        let res = send(
            t,
            By::User(&f.user),
            "POST",
            &format!("/api/runs/{users}/cancel"),
            None,
        )
        .await;
        assert_eq!(res.json()["run"]["state"], "canceled");

        t.run_jobs().await;
        let run = f.run(&id).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["anonymous"], true);
        assert!(run["expires_at"].as_i64().is_some(), "{run}");

        // The link is the capability: another client without the cookie opens it.
        let page = send(t, By::Nobody, "GET", &format!("/runs/{id}"), None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("result=42.0"), "{}", page.text());
        assert!(page.text().contains("Anyone with the link"));
        let download = send(
            t,
            By::Nobody,
            "GET",
            &format!("/runs/{id}/output.ipynb"),
            None,
        )
        .await;
        assert_eq!(download.status, StatusCode::OK);
        let output = download.text();
        assert!(output.contains("injected-parameters"), "{output}");
        // The visitors' memory cap (256 MiB here), under the session maximum (1 GiB).
        assert!(output.contains("memory-limit=268435456"), "{output}");
        let zip = send(
            t,
            By::Nobody,
            "GET",
            &format!("/runs/{id}/result.zip"),
            None,
        )
        .await;
        assert_eq!(zip.status, StatusCode::OK);
        // The result is in the run's own throwaway home, labelled as such.
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/");
        let (ok, written) = f.home_file(&run_home(&id), &format!("{folder}/written.txt"));
        assert!(ok && written == "/home/jovyan", "{written}");
        let (_, label) = docker_cli(&[
            "volume",
            "inspect",
            "--format",
            &format!("{{{{index .Labels \"{LABEL_HOME}\"}}}}"),
            &run_home(&id),
        ]);
        assert_eq!(label.trim(), "run");

        // Through the form: the visitor's run page, in progress, with Cancel for them
        // only; cancel works from their cookie.
        let req = Request::post("/w/lab/open/v1/sleep.ipynb")
            .header("cookie", format!("nbforge_visitor={cookie}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from("seconds=300"))
            .unwrap();
        let res = t.request(req).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let location = res.headers["location"].to_str().unwrap().to_owned();
        let sleeping = location.trim_start_matches("/runs/").to_owned();
        f.cleanup.runs.lock().unwrap().push(sleeping.clone());
        let page = send(t, me, "GET", &location, None).await;
        assert!(page.text().contains("/cancel\""), "{}", page.text());
        let page = send(t, By::Nobody, "GET", &location, None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text().contains("/cancel\""), "{}", page.text());
        let cancel = async {
            loop {
                let run = f.run(&sleeping).await;
                if run["state"] == "running" && run["progress"]["cells_total"].as_i64() > Some(0) {
                    break;
                }
                assert!(
                    run["state"] == "queued" || run["state"] == "running",
                    "{run}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let res = send(t, By::Nobody, "POST", &format!("{location}/cancel"), None).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND);
            let res = send(t, me, "POST", &format!("{location}/cancel"), None).await;
            assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        };
        tokio::join!(t.run_jobs(), cancel);
        assert_eq!(f.run(&sleeping).await["state"], "canceled");
    }
);

on_both_databases!(
    results_of_visitors_expire_with_their_homes,
    |backend: Backend| async move {
        let Some(mut f) = fixture(backend, true).await else {
            return;
        };
        // Sessions' throwaway homes: two hours old and its session gone, two hours old and
        // a session still has it, just made and no session yet (its session is starting).
        // Their age is by the wall clock (as the engine's), not the app's clock.
        let (gone, kept, young) = (
            random_id().to_string(),
            random_id().to_string(),
            random_id().to_string(),
        );
        let now = nbforge::storage::now_ms();
        let two_hours_ago = now - 7_200_000;
        for (session, created) in [
            (&gone, two_hours_ago),
            (&kept, two_hours_ago),
            (&young, now),
        ] {
            let volume = format!("nbforge-home-session-{session}");
            let (ok, out) = docker_cli(&[
                "volume",
                "create",
                "--label",
                &format!("{LABEL_HOME}=session"),
                "--label",
                &format!("{LABEL_SESSION}={session}"),
                "--label",
                &format!("{LABEL_CREATED}={created}"),
                &volume,
            ]);
            assert!(ok, "{out}");
            f.cleanup.volumes.push(volume);
        }
        let container = format!("nbforge-test-session-{kept}");
        let (ok, out) = docker_cli(&[
            "create",
            "--name",
            &container,
            "--label",
            &format!("{LABEL_SESSION}={kept}"),
            "-v",
            &format!("nbforge-home-session-{kept}:/home/jovyan"),
            &f.image,
            "true",
        ]);
        assert!(ok, "{out}");
        f.cleanup.containers.push(container);

        let (id, _) = f
            .start(By::Nobody, "compute.ipynb", json!({"rate": 1}))
            .await;
        f.t.run_jobs().await;
        assert_eq!(f.run(&id).await["state"], "succeeded");
        assert!(volume_exists(&run_home(&id)));
        // Within the retention, cleanup keeps the result; it removes the unused old home.
        f.cleanup_job().await;
        assert_eq!(f.run(&id).await["state"], "succeeded");
        assert!(volume_exists(&run_home(&id)));
        assert!(!volume_exists(&format!("nbforge-home-session-{gone}")));
        assert!(volume_exists(&format!("nbforge-home-session-{kept}")));
        assert!(volume_exists(&format!("nbforge-home-session-{young}")));
        // A day later (24 h by default), the result and its home are gone; the sessions'
        // homes still in use or young stay.
        f.t.advance(Duration::from_secs(24 * 3600 + 60));
        f.cleanup_job().await;
        let res = send(&f.t, By::Nobody, "GET", &format!("/api/runs/{id}"), None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        let page = send(
            &f.t,
            By::Nobody,
            "GET",
            &format!("/runs/{id}/output.ipynb"),
            None,
        )
        .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        assert!(!volume_exists(&run_home(&id)), "the run's home is removed");
        assert!(volume_exists(&format!("nbforge-home-session-{kept}")));
        assert!(volume_exists(&format!("nbforge-home-session-{young}")));
    }
);
