//! Worksheet runs on the real Docker engine, from the base image: a published worksheet
//! run with new values (the executed notebook, its rendering and the files it wrote in
//! the owner's home volume), a failing cell, a run past its time limit, cancel, and
//! nobody but the owner seeing a run.
//!
//! Each test uses users with random ids; a guard removes their containers and home
//! volumes, also when the test fails.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::access::session;
use crate::catalog::publish;
use crate::on_both_databases;
use crate::sessions::{base_image, docker_cli, random_id};
use crate::support::fake_gitlab::FakeGitLab;
use crate::support::{Backend, TestApp, TestResponse};
use nbforge::access::service::random_token;
use nbforge::runs::engine::LABEL_RUN;
use nbforge::sessions::docker::{LABEL_OWNER_ID, home_volume};
use nbforge::storage::BuildPhase;

/// Removes the test users' run containers and home volumes.
pub(crate) struct Cleanup {
    pub(crate) users: Vec<i64>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for user in &self.users {
            let filter = format!("label={LABEL_OWNER_ID}={user}");
            let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &filter]);
            for id in ids.split_whitespace() {
                docker_cli(&["rm", "-f", "-v", id]);
            }
            docker_cli(&["volume", "rm", "-f", &home_volume(*user)]);
        }
    }
}

pub(crate) fn code(source: &str) -> Value {
    json!({"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [], "source": source})
}

pub(crate) fn notebook(cells: Vec<Value>) -> Vec<u8> {
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

pub(crate) fn parameters(source: &str) -> Value {
    let mut c = code(source);
    c["metadata"] = json!({"tags": ["parameters"]});
    c
}

pub(crate) fn markdown(source: &str) -> Value {
    json!({"cell_type": "markdown", "metadata": {}, "source": source})
}

const LAUNCH: &str = r#"kind = "worksheet"
title = "Runs"

[resources]
memory = "512M"

[[worksheet]]
path = "compute.ipynb"
title = "Compute"

[[worksheet]]
path = "fail.ipynb"
title = "Fails"

[[worksheet]]
path = "sleep.ipynb"
title = "Sleeps"
timeout = "1h"

[[worksheet]]
path = "nap.ipynb"
title = "Sleeps, with a short time limit"
timeout = "8s"
"#;

/// A user with a browser session: (cookie, CSRF token).
pub(crate) async fn user(t: &TestApp, id: i64) -> (String, String) {
    let (value, csrf) = t.web_session(id, &format!("user{id}")).await;
    (session(&value), csrf)
}

pub(crate) async fn send(
    t: &TestApp,
    who: Option<&(String, String)>,
    method: &str,
    path: &str,
    json_body: Option<Value>,
) -> TestResponse {
    let mut req = Request::builder().method(method).uri(path);
    if let Some((cookie, csrf)) = who {
        req = req
            .header("cookie", cookie.as_str())
            .header("x-csrf-token", csrf.as_str());
    }
    let body = match json_body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    t.request(req.body(body).unwrap()).await
}

pub(crate) fn json_of(res: &TestResponse) -> Value {
    serde_json::from_str(&res.text()).unwrap_or_else(|_| panic!("JSON: {}", res.text()))
}

/// Reads a file of a home volume with a throwaway container.
pub(crate) fn home_file(user: i64, image: &str, path: &str) -> (bool, String) {
    docker_cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{}:/home/jovyan", home_volume(user)),
        image,
        "cat",
        &format!("/home/jovyan/{path}"),
    ])
}

pub(crate) struct Fixture {
    pub(crate) t: TestApp,
    pub(crate) image: String,
    pub(crate) owner: (String, String),
    pub(crate) owner_id: i64,
    pub(crate) other: (String, String),
    pub(crate) _cleanup: Cleanup,
    pub(crate) _fake: FakeGitLab,
}

/// A published release of three worksheets whose environment is the base image, and two
/// logged-in users.
async fn fixture(backend: Backend) -> Option<Fixture> {
    fixture_with(backend, |_| {}).await
}

/// [`fixture`] with more settings.
pub(crate) async fn fixture_with(
    backend: Backend,
    tweak: impl FnOnce(&mut nbforge::config::Settings) + Send + 'static,
) -> Option<Fixture> {
    let image = base_image()?;
    let fake = FakeGitLab::start().await;
    let (url, token) = (fake.url(), fake.token());
    let t = TestApp::with_settings(backend, move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
        s.runs.timeout = Duration::from_secs(30);
        s.sessions.memory_max_bytes = 1 << 30;
        s.sessions.cpu_max = 1.0;
        tweak(s);
    })
    .await?;
    let compute = notebook(vec![
        markdown("# Growth\n\nA computed value."),
        parameters("rate = 1.5  # per hour\nname = \"none\""),
        code(
            "import os\nfor p in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n    if os.path.exists(p):\n        print('memory-limit=' + open(p).read().strip())",
        ),
        markdown("## Compute"),
        code(
            "result = rate * 2\nprint(f\"result={result}\")\nwith open(\"written.txt\", \"w\") as f:\n    f.write(name)",
        ),
    ]);
    let fail = notebook(vec![parameters("divisor = 0"), code("print(1 / divisor)")]);
    let sleep = notebook(vec![
        parameters("seconds = 600"),
        code("import time\ntime.sleep(seconds)"),
    ]);
    let p = fake.add_project("lab/runs");
    let files: Vec<(&str, &[u8])> = vec![
        ("launch.toml", LAUNCH.as_bytes()),
        ("compute.ipynb", &compute),
        ("fail.ipynb", &fail),
        ("sleep.ipynb", &sleep),
        ("nap.ipynb", &sleep),
    ];
    let sha = publish(&t, &fake, &p, "v1", &files).await;
    let build = t
        .db()
        .create_build("gitlab", "lab/runs", Some("main"), &sha, None)
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
    let (owner_id, other_id) = (random_id(), random_id());
    let owner = user(&t, owner_id).await;
    let other = user(&t, other_id).await;
    Some(Fixture {
        t,
        image,
        owner,
        owner_id,
        other,
        _cleanup: Cleanup {
            users: vec![owner_id, other_id],
        },
        _fake: fake,
    })
}

impl Fixture {
    pub(crate) async fn start(&self, worksheet: &str, values: Value) -> String {
        let res = send(
            &self.t,
            Some(&self.owner),
            "POST",
            "/api/runs",
            Some(json!({"worksheet": format!("/w/lab/runs/v1/{worksheet}"), "values": values})),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let id = json_of(&res)["id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        id
    }

    pub(crate) async fn run(&self, id: &str) -> Value {
        let res = send(
            &self.t,
            Some(&self.owner),
            "GET",
            &format!("/api/runs/{id}"),
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        json_of(&res)["run"].clone()
    }
}

on_both_databases!(
    a_worksheet_runs_with_new_values_into_the_home,
    |backend: Backend| async move {
        let Some(f) = fixture(backend).await else {
            return;
        };
        let t = &f.t;
        // Invalid values: 422 with the errors by field, and no run.
        let res = send(
        t,
        Some(&f.owner),
        "POST",
        "/api/runs",
        Some(json!({"worksheet": "/w/lab/runs/v1/compute.ipynb", "values": {"rate": "fast", "nope": 1}})),
    )
    .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            res.text()
        );
        let errors = &json_of(&res)["errors"];
        assert!(
            errors["rate"].is_string() && errors["nope"].is_string(),
            "{errors}"
        );

        let id = f
            .start("compute.ipynb", json!({"rate": 21, "name": "hello runs"}))
            .await;
        assert_eq!(f.run(&id).await["state"], "queued");
        // While it waits, its page follows it with nbforge's own script, and only there
        // may a script run.
        let page = send(t, Some(&f.owner), "GET", &format!("/runs/{id}"), None).await;
        assert_eq!(page.status, StatusCode::OK);
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert!(
            page.text()
                .contains("<script src=\"/runs/progress.js\"></script>")
        );
        assert!(page.text().contains("Waiting to start"));
        let script = send(t, None, "GET", "/runs/progress.js", None).await;
        assert_eq!(script.status, StatusCode::OK);
        assert!(script.text().contains("EventSource"));
        t.run_jobs().await;
        let run = f.run(&id).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["values"], json!({"rate": 21.0, "name": "hello runs"}));
        // The parameters cell, the injected cell, the memory limit and the computation.
        assert_eq!(run["progress"]["cells_total"], 4);
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/")
            .to_owned();
        assert!(folder.starts_with("results/lab/runs/compute/"), "{folder}");
        assert!(folder.ends_with(&id[..8]), "{folder}");

        // The home volume holds the executed notebook with the injected values and the output
        // computed from them, its rendering without code, the file it wrote, and provenance.
        let (ok, output) = home_file(f.owner_id, &f.image, &format!("{folder}/output.ipynb"));
        assert!(ok, "{output}");
        let nb: Value = serde_json::from_str(&output).unwrap();
        let injected = nb["cells"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["metadata"]["tags"]
                    .to_string()
                    .contains("injected-parameters")
            })
            .expect("an injected-parameters cell");
        let source = injected["source"].to_string();
        assert!(
            source.contains("rate = 21.0") && source.contains("hello runs"),
            "{source}"
        );
        assert!(output.contains("result=42.0"), "{output}");
        // launch.toml's [resources] memory, under the session maximum (1 GiB here).
        assert!(output.contains("memory-limit=536870912"), "{output}");
        let (ok, html) = home_file(f.owner_id, &f.image, &format!("{folder}/output.html"));
        assert!(ok, "{html}");
        assert!(html.contains("result=42.0"), "{html}");
        assert!(!html.contains("rate * 2"), "no code in output.html");
        let (ok, written) = home_file(f.owner_id, &f.image, &format!("{folder}/written.txt"));
        assert!(ok && written == "hello runs", "{written}");
        let (ok, provenance) =
            home_file(f.owner_id, &f.image, &format!("{folder}/provenance.json"));
        assert!(ok, "{provenance}");
        let provenance: Value = serde_json::from_str(&provenance).unwrap();
        assert!(
            provenance["image_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(provenance["tag"], "v1");
        assert_eq!(provenance["values"]["rate"], 21.0);
        assert!(
            provenance["packages"]
                .as_array()
                .is_some_and(|p| !p.is_empty()),
            "{provenance}"
        );
        let (ok, params) = home_file(f.owner_id, &f.image, &format!("{folder}/parameters.json"));
        assert!(ok && params.contains("hello runs"), "{params}");
        // Nothing half-written is left under another name.
        let (_, listing) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{}:/home/jovyan", home_volume(f.owner_id)),
            &f.image,
            "ls",
            &format!("/home/jovyan/{folder}"),
        ]);
        assert!(!listing.contains(".partial"), "{listing}");

        // The run page shows the result without code; the downloads work.
        let page = send(t, Some(&f.owner), "GET", &format!("/runs/{id}"), None).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("result=42.0"));
        assert!(!page.text().contains("rate * 2"));
        assert!(!page.text().contains("<script"), "no script once finished");
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'none'"), "{csp}");
        let download = send(
            t,
            Some(&f.owner),
            "GET",
            &format!("/runs/{id}/output.ipynb"),
            None,
        )
        .await;
        assert_eq!(download.status, StatusCode::OK);
        assert!(download.text().contains("injected-parameters"));
        let zip = send(
            t,
            Some(&f.owner),
            "GET",
            &format!("/runs/{id}/result.zip"),
            None,
        )
        .await;
        assert_eq!(zip.status, StatusCode::OK);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.body.to_vec())).unwrap();
        let names: Vec<String> = archive
            .file_names()
            .map(|n| n.unwrap().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.ends_with("/written.txt")),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.ends_with("/output.ipynb")),
            "{names:?}"
        );
        let name = names
            .iter()
            .find(|n| n.ends_with("/written.txt"))
            .unwrap()
            .clone();
        let mut text = String::new();
        archive
            .by_name(&name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello runs");

        // Listed on My results and by the API; another user sees none of it.
        let mine = send(t, Some(&f.owner), "GET", "/api/runs", None).await;
        assert!(mine.text().contains(&id));
        let results = send(
            t,
            Some(&f.owner),
            "GET",
            "/me/results?project=lab/runs",
            None,
        )
        .await;
        assert_eq!(results.status, StatusCode::OK);
        assert!(results.text().contains(&id));
        let forged = (
            format!("nbforge_session={}", random_token()),
            random_token(),
        );
        for who in [Some(&f.other), None, Some(&forged)] {
            for (method, path) in [
                ("GET", format!("/api/runs/{id}")),
                ("GET", format!("/runs/{id}")),
                ("GET", format!("/runs/{id}/events")),
                ("GET", format!("/runs/{id}/output.ipynb")),
                ("GET", format!("/runs/{id}/result.zip")),
                ("POST", format!("/api/runs/{id}/cancel")),
                ("DELETE", format!("/api/runs/{id}")),
            ] {
                let res = send(t, who, method, &path, None).await;
                assert_eq!(
                    res.status,
                    StatusCode::NOT_FOUND,
                    "{method} {path}: {}",
                    res.text()
                );
                assert!(!res.text().contains("hello runs"));
            }
            let list = send(t, who, "GET", "/api/runs", None).await;
            assert!(!list.text().contains(&id), "{}", list.text());
        }
        assert_eq!(f.run(&id).await["state"], "succeeded");

        // Delete forgets the run (the folder stays in the home).
        let res = send(
            t,
            Some(&f.owner),
            "DELETE",
            &format!("/api/runs/{id}"),
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::NO_CONTENT);
        let res = send(t, Some(&f.owner), "GET", &format!("/api/runs/{id}"), None).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
    }
);

on_both_databases!(
    failures_time_limits_and_cancel,
    |backend: Backend| async move {
        let Some(f) = fixture(backend).await else {
            return;
        };
        let t = &f.t;
        // A failing cell fails the run with its error; the notebook up to there is kept.
        let failing = f.start("fail.ipynb", json!({})).await;
        t.run_jobs().await;
        let run = f.run(&failing).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"].as_str().unwrap().contains("ZeroDivisionError"),
            "{run}"
        );

        // Past the time limit: stopped, canceled with the reason. The worksheet asks
        // for an hour in launch.toml, capped by NBFORGE_RUN_TIMEOUT_SECS (30 s here).
        let slow = f.start("sleep.ipynb", json!({})).await;
        t.run_jobs().await;
        let run = f.run(&slow).await;
        assert_eq!(run["state"], "canceled", "{run}");
        assert_eq!(
            run["error"], "stopped: the run took longer than its time limit of 30 s",
            "{run}"
        );
        // Its own, shorter limit in launch.toml.
        let nap = f.start("nap.ipynb", json!({})).await;
        t.run_jobs().await;
        let run = f.run(&nap).await;
        assert_eq!(run["state"], "canceled", "{run}");
        assert_eq!(
            run["error"], "stopped: the run took longer than its time limit of 8 s",
            "{run}"
        );

        // Cancel while it runs.
        let canceled = f.start("sleep.ipynb", json!({"seconds": 300})).await;
        let cancel = async {
            loop {
                let run = f.run(&canceled).await;
                if run["state"] == "running" && run["progress"]["cells_total"].as_i64() > Some(0) {
                    break;
                }
                assert!(
                    run["state"] == "queued" || run["state"] == "running",
                    "{run}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let res = send(
                t,
                Some(&f.owner),
                "POST",
                &format!("/api/runs/{canceled}/cancel"),
                None,
            )
            .await;
            assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        };
        tokio::join!(t.run_jobs(), cancel);
        let run = f.run(&canceled).await;
        assert_eq!(run["state"], "canceled", "{run}");
        // No container is left behind.
        let (_, left) = docker_cli(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={LABEL_RUN}={canceled}"),
        ]);
        assert!(left.trim().is_empty(), "{left}");

        // A queued run canceled before it starts never starts.
        let queued = f.start("compute.ipynb", json!({})).await;
        let res = send(
            t,
            Some(&f.owner),
            "POST",
            &format!("/api/runs/{queued}/cancel"),
            None,
        )
        .await;
        assert_eq!(json_of(&res)["run"]["state"], "canceled");
        t.run_jobs().await;
        assert_eq!(f.run(&queued).await["state"], "canceled");
    }
);
