//! The security review's probes against the real `nbforge serve` binary, in a process of
//! its own: a forged clone URL (finding 1), deep nesting in a notebook (2), empty secrets
//! (5), heavy worksheet pages beside a webhook (6), unauthenticated oversized bodies (7),
//! made-up metric labels (9) and many-segment worksheet URLs (14). Each asserts the fixed
//! outcome, and that the process is still alive and answering afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use nbforge::storage::Db;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::security::{bare_with_files, plain_tag_payload};
use crate::support::process::{Server, free_port};
use crate::support::{Backend, WEBHOOK_SECRET, fresh_database, push_payload, sha};

/// A served nbforge on a fresh SQLite database in its own folder (a git root).
struct Probe {
    dir: tempfile::TempDir,
    server: Server,
    db: Db,
    client: reqwest::Client,
}

impl Probe {
    async fn start() -> Probe {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
        let server = Server::start(&url, dir.path(), &[]).await;
        let db = Db::connect(&url).await.unwrap();
        Probe {
            dir,
            server,
            db,
            client: reqwest::Client::new(),
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    /// A signed GitLab delivery, answered within GitLab's own 10 s timeout.
    async fn deliver(&self, event: &str, uuid: &str, body: Vec<u8>) -> u16 {
        self.client
            .post(format!("{}/hooks/gitlab", self.server.url))
            .header("content-type", "application/json")
            .header("x-gitlab-event", event)
            .header("x-gitlab-token", WEBHOOK_SECRET)
            .header("x-gitlab-event-uuid", uuid)
            .timeout(Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the delivery was not answered: {e}"))
            .status()
            .as_u16()
    }

    /// Waits until no job is pending or running.
    async fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let counts = self.db.job_counts().await.unwrap();
            let open: i64 = counts
                .iter()
                .filter(|(state, _)| state == "pending" || state == "running")
                .map(|(_, n)| n)
                .sum();
            if open == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "jobs still open: {counts:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process has not exited and answers its health check.
    async fn assert_alive(&mut self) {
        assert!(
            self.server.child.try_wait().unwrap().is_none(),
            "nbforge exited; log:\n{}",
            self.server.log_text()
        );
        let res = self
            .client
            .get(format!("{}/healthz", self.server.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("nbforge answers");
        assert!(res.status().is_success(), "{}", res.status());
    }

    /// Publishes `files` as tag `v1` of project `path` in this probe's git root.
    async fn publish(&self, path: &str, files: &[(&str, &[u8])]) {
        let commit = bare_with_files(&self.root(), path, files);
        let url = format!("file://{}/{path}.git", self.root().display());
        let status = self
            .deliver(
                "Tag Push Hook",
                &format!("tag-{path}"),
                plain_tag_payload(path, &url, "v1", &commit),
            )
            .await;
        assert_eq!(status, 202);
        self.drained().await;
        let releases = self.db.releases(path).await.unwrap();
        assert_eq!(releases.len(), 1, "{path} is published: {releases:?}");
    }
}

/// A notebook whose cell tagged `parameters` holds `parameters`.
fn notebook(parameters: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# A worksheet\n"]},
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": null,
             "outputs": [], "source": [parameters]}
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5
    }))
    .unwrap()
}

/// Runs `nbforge serve` with `env` (on a fresh SQLite database) and returns how it ended and
/// what it printed, when it exits by itself; stops it and returns `None` when it serves.
fn serve_once(env: &[(&str, &str)]) -> Option<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbforge"));
    cmd.arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NBFORGE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "NBFORGE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("nbforge.db").display()),
        )
        .env("NBFORGE_DATA_DIR", dir.path().join("data"))
        .env("NBFORGE_ENVIRONMENTS", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("nbforge starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some((status, std::fs::read_to_string(&log).unwrap_or_default()));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finding 1: a verified delivery naming a made-up project with the `file://` URL of a
/// repository outside the configured git roots published that repository's notebooks under
/// the made-up path. The served binary refuses the URL without fetching it, publishes
/// nothing, and its error does not repeat the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_probe_forged_clone_url_is_refused_by_the_served_binary() {
    let mut p = Probe::start().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let elsewhere_root = elsewhere.path().canonicalize().unwrap();
    let commit = bare_with_files(
        &elsewhere_root,
        "secret/notes",
        &crate::catalog::release_files(),
    );
    let url = format!("file://{}/secret/notes.git", elsewhere_root.display());
    let status = p
        .deliver(
            "Tag Push Hook",
            "forged",
            plain_tag_payload("lab/forged", &url, "v1", &commit),
        )
        .await;
    assert_eq!(status, 202);
    p.drained().await;
    assert!(p.db.releases("lab/forged").await.unwrap().is_empty());
    let failed = p.db.list_jobs(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].attempts, 1, "not retried: {failed:?}");
    let error = failed[0].last_error.clone().unwrap_or_default();
    assert!(
        !error.contains(&elsewhere_root.display().to_string()),
        "{error}"
    );
    p.assert_alive().await;
}

/// Finding 2: a 500 KB parameters line of nested `Optional[` overflowed a runtime thread's
/// stack and aborted the whole process (and again after each restart). The served binary
/// publishes the notebook, shows its page, and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_probe_deep_nesting_does_not_crash_the_served_binary() {
    let mut p = Probe::start().await;
    let levels = 50_000;
    let line = format!(
        "x: {}int{} = 1\n",
        "Optional[".repeat(levels),
        "]".repeat(levels)
    );
    let deep_list = format!("y = {}1{}\n", "[".repeat(levels), "]".repeat(levels));
    let nb = notebook(&format!("{line}{deep_list}"));
    p.publish("lab/deep", &[("deep.ipynb", &nb)]).await;
    let res = p
        .client
        .get(format!("{}/w/lab/deep/v1/deep.ipynb", p.server.url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the worksheet page is answered");
    assert_eq!(res.status(), 200);
    p.assert_alive().await;
    // A delivery after it is still taken.
    let status = p
        .deliver(
            "Push Hook",
            "after-deep",
            push_payload("lab/after", "main", &sha(1), &sha(2)),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    p.assert_alive().await;
}

/// Finding 5: an empty secret in a rotation list, or a set but empty GitHub secret,
/// switched authentication off. The binary refuses to start, saying which setting is wrong
/// (and not printing it), for the GitLab secret variable set but empty too; an empty
/// presented token never matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_probe_empty_secrets_are_refused_by_the_served_binary() {
    let (status, log) = serve_once(&[
        ("NBFORGE_GITLAB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("NBFORGE_GITHUB_WEBHOOK_SECRET", ""),
    ])
    .expect("nbforge refuses to start with an empty GitHub secret");
    assert!(!status.success());
    assert!(
        log.contains("github_webhook_secret") && log.contains("empty or shorter than 16"),
        "{log}"
    );

    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        r#"gitlab_webhook_secret = ["", "a-long-enough-new-secret"]"#,
    )
    .unwrap();
    let (status, log) = serve_once(&[("NBFORGE_CONFIG", config.path().to_str().unwrap())])
        .expect("nbforge refuses to start with an empty secret in the rotation list");
    assert!(!status.success());
    assert!(
        log.contains("gitlab_webhook_secret") && log.contains("empty or shorter than 16"),
        "{log}"
    );
    assert!(!log.contains("a-long-enough-new-secret"), "{log}");

    // Set but empty, or with a stray comma, the GitLab secret variable stops start-up too.
    for value in ["", "a-long-enough-new-secret,"] {
        let (status, log) = serve_once(&[("NBFORGE_GITLAB_WEBHOOK_SECRET", value)])
            .expect("nbforge refuses to start with an empty GitLab secret");
        assert!(!status.success(), "{value:?}");
        assert!(
            log.contains("gitlab_webhook_secret") && log.contains("empty or shorter than 16"),
            "{value:?}: {log}"
        );
        assert!(!log.contains("a-long-enough-new-secret"), "{log}");
    }

    // With a secret configured, an empty presented token is refused too.
    let mut p = Probe::start().await;
    let res = p
        .client
        .post(format!("{}/hooks/gitlab", p.server.url))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", "")
        .body(push_payload("lab/x", "main", &sha(1), &sha(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    p.assert_alive().await;
}

/// Finding 6: each anonymous GET of a big worksheet parsed its notebook and 50,000
/// parameters on a runtime thread, and a few such GETs kept a webhook from being answered
/// within GitLab's timeout. With such GETs in flight, the served binary still answers a
/// delivery, then the pages, and stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_probe_big_worksheet_pages_do_not_hold_up_webhooks() {
    let mut p = Probe::start().await;
    let parameters: String = (0..50_000).map(|i| format!("param_{i} = {i}\n")).collect();
    let nb = notebook(&parameters);
    assert!(nb.len() > 800_000, "{}", nb.len());
    p.publish("lab/heavy", &[("heavy.ipynb", &nb)]).await;
    let page = format!("{}/w/lab/heavy/v1/heavy.ipynb", p.server.url);
    let gets: Vec<_> = (0..4)
        .map(|_| {
            let client = p.client.clone();
            let page = page.clone();
            tokio::spawn(async move {
                client
                    .get(&page)
                    .timeout(Duration::from_secs(120))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let status = p
        .deliver(
            "Push Hook",
            "beside-heavy",
            push_payload("lab/other", "main", &sha(3), &sha(4)),
        )
        .await;
    assert!((200..300).contains(&status), "{status}");
    for get in gets {
        assert_eq!(get.await.unwrap().expect("the page is answered"), 200);
    }
    p.assert_alive().await;
}

/// Finding 7: bodies were read whole before the sender was authenticated. The served
/// binary answers a delivery without a valid token before its body is sent: a request
/// announcing 30 MB and sending 1 KiB of it gets its 401 all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_7_probe_unauthenticated_bodies_are_refused_before_being_read() {
    let mut p = Probe::start().await;
    let addr = p.server.url.trim_start_matches("http://").to_owned();
    for token in [None, Some("wrong-token-of-some-length")] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let mut head = String::from(
            "POST /hooks/gitlab HTTP/1.1\r\nHost: nbforge\r\nContent-Type: application/json\r\n\
             X-Gitlab-Event: Push Hook\r\nContent-Length: 31457280\r\n",
        );
        if let Some(t) = token {
            head.push_str(&format!("X-Gitlab-Token: {t}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b' '; 1024]).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        assert!(
            matches!(read, Ok(Ok(()))),
            "no answer before the body was sent"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401"), "{token:?}: {answer}");
    }
    p.assert_alive().await;
}

/// Finding 9: the delivery metric's `event` label came from the request header before
/// authentication, so 300 made-up event names made 300 series. The served binary's metrics
/// keep a fixed set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_9_probe_metric_labels_stay_bounded_in_the_served_binary() {
    let mut p = Probe::start().await;
    let sent = futures_util::stream::iter(0..300)
        .map(|n| {
            let client = p.client.clone();
            let url = format!("{}/hooks/gitlab", p.server.url);
            async move {
                client
                    .post(url)
                    .header("x-gitlab-event", format!("Made Up Hook {n}"))
                    .header("x-gitlab-token", "wrong-token-of-some-length")
                    .body("{}")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(sent.iter().all(|s| matches!(s, Ok(401))), "{sent:?}");
    let metrics = p
        .client
        .get(format!("{}/metrics", p.server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("nbforge_webhook_deliveries"))
        .collect();
    assert!(!series.is_empty(), "the metric is exported:\n{metrics}");
    assert!(series.len() < 5, "{}", series.join("\n"));
    assert!(!metrics.to_lowercase().contains("made_up_hook"));
    assert!(!metrics.to_lowercase().contains("made up hook"));
    p.assert_alive().await;
}

/// Finding 14: `/w/…` looked up one candidate project per path segment. The served binary
/// refuses a URL of many segments at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_14_probe_many_segment_worksheet_urls_are_refused() {
    let mut p = Probe::start().await;
    let url = format!("{}/w/{}x.ipynb", p.server.url, "a/".repeat(2000));
    let res = p.client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    p.assert_alive().await;
}
