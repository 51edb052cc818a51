//! `nbforge serve` as real processes: kill -9 mid-stream, several processes on one
//! database, graceful shutdown, and the plain-git post-receive hook.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nbforge::storage::Db;

use crate::on_both_databases;
use crate::support::process::Server;
use crate::support::{ADMIN_TOKEN, Backend, WEBHOOK_SECRET, fresh_database, push_payload, sha};

async fn send_push(client: &reqwest::Client, url: &str, uuid: &str, n: u64) -> Option<u16> {
    let res = client
        .post(format!("{url}/hooks/gitlab"))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", WEBHOOK_SECRET)
        .header("x-gitlab-event-uuid", uuid)
        .timeout(Duration::from_secs(5))
        .body(push_payload(
            &format!("crash/p{}", n % 7),
            &format!("b{n}"),
            &sha(n),
            &sha(n + 1),
        ))
        .send()
        .await
        .ok()?;
    Some(res.status().as_u16())
}

/// Waits until no job is pending or running.
async fn wait_drained(db: &Db, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let counts: std::collections::HashMap<String, i64> =
            db.job_counts().await.unwrap().into_iter().collect();
        let open = counts.get("pending").copied().unwrap_or(0)
            + counts.get("running").copied().unwrap_or(0);
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "jobs still open after {limit:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every acknowledged delivery is stored and each of its jobs completed exactly once.
async fn assert_each_acked_delivery_ran_once(db: &Db, acked: &[String]) {
    for key in acked {
        let d = db
            .get_delivery(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        let jobs = db
            .jobs_for_delivery(nbforge::storage::DeliveryId(d.id))
            .await
            .unwrap();
        assert_eq!(jobs.len(), 1, "{key}");
        for j in jobs {
            assert_eq!(j.state, "done", "{key}: {j:?}");
            let effects = db.ref_updates_for_job(j.id()).await.unwrap();
            assert_eq!(
                effects.len(),
                1,
                "{key}: job {} took effect {} times",
                j.id,
                effects.len()
            );
        }
    }
}

on_both_databases!(
    kill_9_mid_stream_loses_nothing_acknowledged,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = fresh_database(backend, dir.path()).await else {
            return;
        };
        let mut server = Server::start(&url, dir.path(), &[]).await;
        let client = reqwest::Client::new();

        let mut acked = Vec::new();
        let mut n = 0u64;
        // Stream until well after the kill, so deliveries are in flight when it lands.
        let kill_at = 150;
        while n < 300 {
            let uuid = format!("crash-{n}");
            if n == kill_at {
                server.kill9();
            }
            if let Some(code) = send_push(&client, &server.url, &uuid, n).await
                && (200..300).contains(&code)
            {
                acked.push(uuid);
            }
            n += 1;
        }
        assert!(
            acked.len() >= kill_at as usize,
            "the server acknowledged {} before the kill",
            acked.len()
        );
        assert!(
            acked.len() < 300,
            "deliveries after the kill cannot have been acknowledged"
        );

        let restarted = Server::start(&url, dir.path(), &[]).await;
        let db = Db::connect(&url).await.unwrap();
        wait_drained(&db, Duration::from_secs(60)).await;
        assert_each_acked_delivery_ran_once(&db, &acked).await;
        assert_eq!(db.count_ref_updates().await.unwrap() as usize, acked.len());
        drop(restarted);
    }
);

on_both_databases!(
    several_servers_never_run_a_job_twice,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let Some(url) = fresh_database(backend, dir.path()).await else {
            return;
        };
        // Enqueue first, then let three processes race for the jobs.
        let db = Db::connect(&url).await.unwrap();
        let loader = Server::start(&url, dir.path(), &[("NBFORGE_WORKERS", "0")]).await;
        let client = reqwest::Client::new();
        let mut acked = Vec::new();
        for n in 0..240u64 {
            let uuid = format!("multi-{n}");
            if send_push(&client, &loader.url, &uuid, n)
                .await
                .is_some_and(|c| c == 202)
            {
                acked.push(uuid);
            }
        }
        assert_eq!(acked.len(), 240);
        let servers: Vec<Server> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(Server::start(&url, dir.path(), &[("NBFORGE_WORKERS", "3")]).await);
            }
            v
        };
        wait_drained(&db, Duration::from_secs(60)).await;
        assert_each_acked_delivery_ran_once(&db, &acked).await;
        let jobs = db.list_jobs(None, 1000).await.unwrap();
        assert!(
            jobs.iter().all(|j| j.attempts == 1),
            "a job was claimed twice"
        );
        drop(servers);
        drop(loader);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let mut server = Server::start(&url, dir.path(), &[]).await;
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains(WEBHOOK_SECRET) && !log.contains(ADMIN_TOKEN),
        "secrets in the log"
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether the Docker engine has the base image (else skip, or fail where services are required).
fn base_image_ready() -> bool {
    let ready = std::process::Command::new("docker")
        .args(["image", "inspect", "nbforge/base:bookworm"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        crate::support::missing_service(
            "the Docker engine with the base image nbforge/base:bookworm",
        );
    }
    ready
}

/// A bare repository `lab/rnaseq.git` with nbforge's post-receive hook pointing at
/// `server_url`, and a clone that pushed a first commit with `requirements`.
fn plain_repository(
    dir: &std::path::Path,
    server_url: &str,
    requirements: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    plain_repository_with(dir, server_url, &[("requirements.txt", requirements)])
}

/// The same, with the first commit holding `files`.
fn plain_repository_with(
    dir: &std::path::Path,
    server_url: &str,
    files: &[(&str, &str)],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let bare = dir.join("lab").join("rnaseq.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--bare", "-b", "main"]);
    let hook = bare.join("hooks").join("post-receive");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"),
        &hook,
    )
    .unwrap();
    git(&bare, &["config", "nbforge.url", server_url]);
    let secret_file = dir.join("webhook-secret");
    std::fs::write(&secret_file, WEBHOOK_SECRET).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    git(
        &bare,
        &[
            "config",
            "nbforge.secretFile",
            secret_file.to_str().unwrap(),
        ],
    );

    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-b", "main"]);
    for (name, text) in files {
        std::fs::write(work.join(name), text).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "-m", "first"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&work, &["push", "origin", "main"]);
    (bare, work)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_receive_prepares_the_environment_with_local_statuses() {
    if !base_image_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let ca = std::env::var("NBFORGE_EXTRA_CA_CERTS").unwrap_or_default();
    let mut env = vec![
        ("NBFORGE_ENVIRONMENTS", "true"),
        ("NBFORGE_IMAGE_PREFIX", "nbforge-test"),
    ];
    if !ca.is_empty() {
        env.push(("NBFORGE_EXTRA_CA_CERTS", ca.as_str()));
    }
    let server = Server::start(&url, dir.path(), &env).await;
    let requirements = format!("# {}\ntomli-w\n", uuid::Uuid::new_v4());
    let (_bare, work) = plain_repository(dir.path(), &server.url, &requirements);
    let head = git(&work, &["rev-parse", "HEAD"]);
    let db = Db::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let statuses = db.local_statuses("lab/rnaseq", &head).await.unwrap();
        match statuses.last().map(|s| s.state.as_str()) {
            Some("success") => break,
            Some("failed") => panic!("{statuses:?}\n{}", server.log_text()),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no result; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses = db.local_statuses("lab/rnaseq", &head).await.unwrap();
    assert_eq!(statuses[0].state, "pending");
    assert_eq!(statuses[0].name, "nbforge/environment");
    assert!(
        statuses
            .last()
            .unwrap()
            .target_url
            .as_deref()
            .unwrap()
            .contains("/v2/gl/lab%2Frnaseq/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_receive_hook_drives_a_plain_git_repository() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let server = Server::start(&url, dir.path(), &[]).await;

    let (bare, work) = plain_repository(dir.path(), &server.url, "numpy\n");
    git(&work, &["tag", "v1"]);
    git(&work, &["push", "origin", "v1"]);
    let head = git(&work, &["rev-parse", "HEAD"]);

    let db = Db::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let branch = db
            .ref_sha("gitlab", "lab/rnaseq", "refs/heads/main")
            .await
            .unwrap();
        let tag = db
            .ref_sha("gitlab", "lab/rnaseq", "refs/tags/v1")
            .await
            .unwrap();
        if branch.as_deref() == Some(head.as_str()) && tag.as_deref() == Some(head.as_str()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the push never arrived; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let project = db
        .get_project("gitlab", "lab/rnaseq")
        .await
        .unwrap()
        .expect("project recorded");
    assert_eq!(
        project.git_url.as_deref(),
        Some(format!("file://{}", bare.canonicalize().unwrap().display()).as_str())
    );
    let keys: HashSet<String> = db
        .list_deliveries(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.event)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["push".to_owned(), "tag_push".to_owned()])
    );
}

fn doctor(dir: &std::path::Path, gitlab: &str, token: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nbforge"))
        .arg("doctor")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "NBFORGE_DATABASE_URL",
            format!("sqlite://{}", dir.join("doctor.db").display()),
        )
        .env("NBFORGE_GITLAB_URL", gitlab)
        .env("NBFORGE_GITLAB_TOKEN", token)
        .env("NBFORGE_GITLAB_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("NBFORGE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("nbforge doctor runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_gitlab_and_the_token_without_printing_it() {
    let fake = crate::support::fake_gitlab::FakeGitLab::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = fake.url().to_string();
    let token = fake.token_str().to_owned();
    let (_, text) = tokio::task::spawn_blocking({
        let (dir, url, token) = (dir.path().to_owned(), url.clone(), token.clone());
        move || doctor(&dir, &url, &token)
    })
    .await
    .unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("gitlab"))
        .unwrap_or_default();
    assert!(line.starts_with("ok"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("database")),
        "{text}"
    );
    assert!(!text.contains(&token), "the token was printed");

    fake.set_token_scopes(Some(&["read_api"]));
    let (ok, text) = tokio::task::spawn_blocking({
        let (dir, url, token) = (dir.path().to_owned(), url.clone(), token.clone());
        move || doctor(&dir, &url, &token)
    })
    .await
    .unwrap();
    assert!(!ok, "{text}");
    assert!(
        text.contains("PROBLEM gitlab") && text.contains("api"),
        "{text}"
    );
    assert!(text.contains("fix:"), "{text}");

    let (ok, text) = tokio::task::spawn_blocking({
        let (dir, url) = (dir.path().to_owned(), url.clone());
        move || doctor(&dir, &url, "glpat-wrong-token-value")
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(text.contains("PROBLEM gitlab"), "{text}");
    assert!(!text.contains("glpat-wrong-token-value"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let mut server = Server::start(&url, dir.path(), &[("NBFORGE_LOG_FORMAT", "json")]).await;
    assert!(server.terminate().success());
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_a_job_still_running_after_the_grace_period() {
    if !base_image_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Sqlite, dir.path()).await.unwrap();
    let env = [
        ("NBFORGE_ENVIRONMENTS", "true"),
        ("NBFORGE_IMAGE_PREFIX", "nbforge-test"),
        ("NBFORGE_SHUTDOWN_GRACE_SECS", "1"),
    ];
    let mut server = Server::start(&url, dir.path(), &env).await;
    // A build that takes minutes: still running when the grace period ends.
    let dockerfile = format!(
        "FROM nbforge/base:bookworm\nRUN echo {} && sleep 300\n",
        uuid::Uuid::new_v4()
    );
    let (_bare, _work) =
        plain_repository_with(dir.path(), &server.url, &[("Dockerfile", &dockerfile)]);
    let db = Db::connect(&url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = db.list_jobs(Some("running"), 10).await.unwrap();
        if running.iter().any(|j| j.kind == "environment") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build never started; log:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopped = Instant::now();
    assert!(server.terminate().success(), "log:\n{}", server.log_text());
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "shutdown took {:?}",
        stopped.elapsed()
    );
    let jobs = db.list_jobs(None, 10).await.unwrap();
    let env_job = jobs.iter().find(|j| j.kind == "environment").unwrap();
    assert_eq!(
        env_job.state, "pending",
        "released for another process: {env_job:?}"
    );
    assert_eq!(env_job.attempts, 0, "a released try is not counted");
    assert!(env_job.lease_owner.is_none());
    assert!(server.log_text().contains("job released at shutdown"));
}
