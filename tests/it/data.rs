//! The user's own data on the real Docker engine: uploads into `~/data/` of the home
//! volume (the API and the worksheet page's form), refused names and sizes, the picker of a
//! file parameter, and a run on an uploaded file whose provenance has its SHA-256.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::access::session;
use crate::catalog::publish;
use crate::on_both_databases;
use crate::sessions::{base_image, docker_cli, random_id};
use crate::support::fake_gitlab::FakeGitLab;
use crate::support::{Backend, TestApp, TestResponse};
use nbforge::access::service::random_token;
use nbforge::sessions::docker::{LABEL_OWNER_ID, home_volume};
use nbforge::storage::BuildPhase;

/// The upload limit of these tests.
const LIMIT: u64 = 1024;
const CSV: &str = "gene,count\nlacZ,3\nrecA,4\n";

/// Removes the test users' containers and home volumes.
struct Cleanup {
    users: Vec<i64>,
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

fn notebook() -> Vec<u8> {
    let code = |id: &str, source: &str, tags: &[&str]| {
        json!({"cell_type": "code", "id": id, "metadata": {"tags": tags},
               "execution_count": null, "outputs": [], "source": source})
    };
    serde_json::to_vec(&json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            code("p", "counts_file = \"data/counts.csv\"  # type: file  # a table of counts\nscale = 1", &["parameters"]),
            code("c", "import csv\nwith open(counts_file) as f:\n    rows = list(csv.DictReader(f))\ntotal = sum(int(r['count']) for r in rows) * scale\nprint(f'total={total} from {len(rows)} rows')", &[]),
        ],
    }))
    .unwrap()
}

/// A request as a user (cookie and CSRF header), or as nobody.
async fn send(
    t: &TestApp,
    who: Option<&(String, String)>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> TestResponse {
    let mut req = Request::builder().method(method).uri(path);
    if let Some((cookie, csrf)) = who {
        req = req
            .header("cookie", cookie.as_str())
            .header("x-csrf-token", csrf.as_str());
    }
    if let Some(c) = content_type {
        req = req.header("content-type", c);
    }
    t.request(req.body(Body::from(body)).unwrap()).await
}

/// The worksheet page's upload form: multipart, its CSRF token in the address.
async fn form_upload(
    t: &TestApp,
    who: Option<&(String, String)>,
    file_name: &str,
    bytes: &[u8],
) -> TestResponse {
    let boundary = "nbforge-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let csrf = who.map(|w| w.1.as_str()).unwrap_or("none");
    let next = "/w/lab/data/v1/counts.ipynb";
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("/data?next={next}&csrf_token={csrf}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        );
    if let Some((cookie, _)) = who {
        req = req.header("cookie", cookie.as_str());
    }
    t.request(req.body(Body::from(body)).unwrap()).await
}

fn listed(res: &TestResponse) -> Vec<String> {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `ls -A` of a folder of a home volume.
fn home_listing(user: i64, image: &str, path: &str) -> String {
    docker_cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{}:/home/jovyan", home_volume(user)),
        image,
        "ls",
        "-A",
        &format!("/home/jovyan/{path}"),
    ])
    .1
}

on_both_databases!(
    uploaded_data_is_picked_and_run_with_its_checksum_in_provenance,
    |backend: Backend| async move {
        let Some(image) = base_image() else {
            return;
        };
        let fake = FakeGitLab::start().await;
        let (url, token) = (fake.url(), fake.token());
        let Some(t) = TestApp::with_settings(backend, move |s| {
            s.forges.gitlab_url = Some(url);
            s.forges.gitlab_token = Some(token);
            s.runs.timeout = std::time::Duration::from_secs(60);
            s.runs.upload_max_bytes = LIMIT;
            s.sessions.memory_max_bytes = 1 << 30;
            s.sessions.cpu_max = 1.0;
        })
        .await
        else {
            return;
        };
        let nb = notebook();
        let p = fake.add_project("lab/data");
        let sha = publish(&t, &fake, &p, "v1", &[("counts.ipynb", &nb)]).await;
        let build = t
            .db()
            .create_build("gitlab", "lab/data", Some("main"), &sha, None)
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
        let _cleanup = Cleanup {
            users: vec![owner_id, other_id],
        };
        let login = |id: i64| {
            let t = &t;
            async move {
                let (value, csrf) = t.web_session(id, &format!("user{id}")).await;
                (session(&value), csrf)
            }
        };
        let owner = login(owner_id).await;
        let other = login(other_id).await;
        let me = Some(&owner);

        // Nothing yet (and no home volume is made for looking).
        let res = send(&t, me, "GET", "/api/data", None, vec![]).await;
        assert!(listed(&res).is_empty());
        assert_eq!(res.json()["upload_max_bytes"], LIMIT);

        // An upload through the API: the file is in ~/data, owned by the user.
        let res = send(
            &t,
            me,
            "POST",
            "/api/data?name=counts.csv",
            Some("text/csv"),
            CSV.into(),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let sha256 = hex::encode(Sha256::digest(CSV.as_bytes()));
        assert_eq!(res.json()["sha256"], sha256.as_str());
        assert_eq!(res.json()["path"], "/home/jovyan/data/counts.csv");
        let (ok, stat) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{}:/home/jovyan", home_volume(owner_id)),
            &image,
            "stat",
            "-c",
            "%u %s",
            "/home/jovyan/data/counts.csv",
        ]);
        assert!(ok, "{stat}");
        assert_eq!(stat.trim(), format!("1000 {}", CSV.len()));
        let res = send(&t, me, "GET", "/api/data", None, vec![]).await;
        assert_eq!(listed(&res), ["counts.csv"]);
        assert_eq!(res.json()["files"][0]["size"], CSV.len());

        // The same name again is kept unless replaced.
        let again = send(
            &t,
            me,
            "POST",
            "/api/data?name=counts.csv",
            None,
            b"x".to_vec(),
        )
        .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());
        assert!(again.text().contains("exists already"), "{}", again.text());

        // Names with a path in them are refused with a message; nothing is written.
        for name in [
            "..%2Fevil.csv",
            "..",
            "sub%2Fx.csv",
            "%2Fetc%2Fpasswd",
            ".hidden",
            "",
        ] {
            let res = send(
                &t,
                me,
                "POST",
                &format!("/api/data?name={name}"),
                None,
                b"bad".to_vec(),
            )
            .await;
            assert_eq!(
                res.status,
                StatusCode::BAD_REQUEST,
                "{name}: {}",
                res.text()
            );
            assert!(
                res.json()["error"].as_str().unwrap().contains("name"),
                "{name}: {}",
                res.text()
            );
        }
        let res = form_upload(&t, me, "../evil.csv", b"bad").await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
        assert!(res.text().contains("contains `..`"), "{}", res.text());
        assert!(!home_listing(owner_id, &image, "").contains("evil"));
        assert_eq!(
            home_listing(owner_id, &image, "data")
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["counts.csv"]
        );

        // Over the limit: 413 saying so, declared or not, and no file anywhere.
        let big = vec![b'x'; usize::try_from(LIMIT).unwrap() + 1];
        let res = send(&t, me, "POST", "/api/data?name=big.csv", None, big.clone()).await;
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
        assert!(res.text().contains("upload limit"), "{}", res.text());
        let declared = t
            .request(
                Request::builder()
                    .method("POST")
                    .uri("/api/data?name=big.csv")
                    .header("cookie", owner.0.as_str())
                    .header("x-csrf-token", owner.1.as_str())
                    .header("content-length", big.len().to_string())
                    .body(Body::from(big.clone()))
                    .unwrap(),
            )
            .await;
        assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
        let res = form_upload(&t, me, "big.csv", &big).await;
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
        assert!(res.text().contains("upload limit"), "{}", res.text());
        let res = send(&t, me, "GET", "/api/data", None, vec![]).await;
        assert_eq!(listed(&res), ["counts.csv"]);
        let spool = t.app.settings.data_dir.join("uploads");
        let left: Vec<_> = std::fs::read_dir(&spool).unwrap().collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");

        // The page's upload form, back to the worksheet, whose picker lists the files.
        let res = form_upload(&t, me, "more counts.csv", b"gene,count\nx,1\n").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        assert_eq!(res.headers["location"], "/w/lab/data/v1/counts.ipynb");
        let page = send(&t, me, "GET", "/w/lab/data/v1/counts.ipynb", None, vec![]).await;
        assert_eq!(page.status, StatusCode::OK);
        let html = page.text();
        assert!(
            html.contains("<select id=\"param-counts_file\" name=\"counts_file\""),
            "{html}"
        );
        assert!(
            html.contains("<option value=\"counts.csv\">counts.csv (25 B)</option>"),
            "{html}"
        );
        assert!(
            html.contains("<option value=\"more counts.csv\">"),
            "{html}"
        );
        assert!(
            html.contains("the worksheet&#39;s own: data/counts.csv"),
            "{html}"
        );
        assert!(html.contains("enctype=\"multipart/form-data\""), "{html}");
        assert!(html.contains(&format!("&amp;csrf_token={}", owner.1)));
        // Another user's picker and list hold none of it.
        let theirs = send(&t, Some(&other), "GET", "/api/data", None, vec![]).await;
        assert!(listed(&theirs).is_empty());
        let page = send(
            &t,
            Some(&other),
            "GET",
            "/w/lab/data/v1/counts.ipynb",
            None,
            vec![],
        )
        .await;
        assert!(!page.text().contains("counts.csv ("));

        // A picked file that is not there: 422 under its field, and no run.
        let res = send(
            &t,
            me,
            "POST",
            "/api/runs",
            Some("application/json"),
            json!({"worksheet": "/w/lab/data/v1/counts.ipynb", "values": {"counts_file": "nope.csv"}})
                .to_string()
                .into(),
        )
        .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            res.text()
        );
        assert!(
            res.json()["errors"]["counts_file"]
                .as_str()
                .unwrap()
                .contains("no file `nope.csv`"),
            "{}",
            res.text()
        );
        // The other user has no counts.csv.
        let res = send(
            &t,
            Some(&other),
            "POST",
            "/api/runs",
            Some("application/json"),
            json!({"worksheet": "/w/lab/data/v1/counts.ipynb", "values": {"counts_file": "counts.csv"}})
                .to_string()
                .into(),
        )
        .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            res.text()
        );

        // Run with it picked (through the page's form): the notebook reads it.
        let form = "_worksheet_form=1&counts_file=counts.csv&scale=2";
        let res = send(
            &t,
            me,
            "POST",
            "/w/lab/data/v1/counts.ipynb",
            Some("application/x-www-form-urlencoded"),
            form.into(),
        )
        .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let run_url = res.headers["location"].to_str().unwrap().to_owned();
        let id = run_url.trim_start_matches("/runs/").to_owned();
        t.run_jobs().await;
        let res = send(&t, me, "GET", &format!("/api/runs/{id}"), None, vec![]).await;
        let run: Value = res.json()["run"].clone();
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["values"]["counts_file"], "/home/jovyan/data/counts.csv");
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/");
        let read = |name: &str| {
            let (ok, text) = docker_cli(&[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                &format!("{}:/home/jovyan", home_volume(owner_id)),
                &image,
                "cat",
                &format!("/home/jovyan/{folder}/{name}"),
            ]);
            assert!(ok, "{text}");
            text
        };
        let output = read("output.ipynb");
        assert!(output.contains("total=14 from 2 rows"), "{output}");
        assert!(
            output.contains("counts_file = \\\"/home/jovyan/data/counts.csv\\\""),
            "{output}"
        );
        let provenance: Value = serde_json::from_str(&read("provenance.json")).unwrap();
        assert_eq!(
            provenance["inputs"],
            json!([{
                "parameter": "counts_file",
                "path": "/home/jovyan/data/counts.csv",
                "size": CSV.len(),
                "sha256": sha256,
            }]),
            "{provenance}"
        );

        // Visitors and forged cookies can neither list nor upload.
        let forged = (
            format!("nbforge_session={}", random_token()),
            random_token(),
        );
        for who in [None, Some(&forged)] {
            let res = send(&t, who, "GET", "/api/data", None, vec![]).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
            assert!(!res.text().contains("counts.csv"));
            let res = send(&t, who, "POST", "/api/data?name=x.csv", None, CSV.into()).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
            // The form answers as the other pages of a user do (the login page, or 404
            // where login is not set up, as here).
            let res = form_upload(&t, who, "x.csv", CSV.as_bytes()).await;
            let results = send(&t, who, "GET", "/me/results", None, vec![]).await;
            assert_eq!(res.status, results.status, "{}", res.text());
            assert!(!res.status.is_success());
        }
        // A form upload whose token does not match the session is refused.
        let wrong = (owner.0.clone(), random_token());
        let res = form_upload(&t, Some(&wrong), "x.csv", CSV.as_bytes()).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
        let res = send(&t, me, "GET", "/api/data", None, vec![]).await;
        assert_eq!(listed(&res), ["counts.csv", "more counts.csv"]);
    }
);
