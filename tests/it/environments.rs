//! Environment images on push and merge request, against the fake GitLab and the real
//! Docker engine: builds, the cache, statuses, retries, and the merge request note.

use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptions, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use nbforge::storage::{BuildPhase, JobKind};

use crate::support::fake_gitlab::{FakeGitLab, FakeProject};
use crate::support::scenario::docker_ready;
use crate::support::{Backend, TestApp};

pub(crate) const ZERO: &str = "0000000000000000000000000000000000000000";

/// A test app wired to `fake`, with environments on.
pub(crate) async fn app_for(
    fake: &FakeGitLab,
    tweak: impl FnOnce(&mut nbforge::config::Settings),
) -> TestApp {
    let url = fake.url();
    let token = fake.token();
    TestApp::with_settings(Backend::Sqlite, move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
        s.environments.enabled = true;
        s.server.public_url = "http://nbforge.test/".parse().unwrap();
        tweak(s);
    })
    .await
    .expect("SQLite app")
}

pub(crate) async fn deliver_push(
    t: &TestApp,
    fake: &FakeGitLab,
    p: &FakeProject,
    before: &str,
    after: &str,
) {
    let hook = fake.push_payload(p, "main", before, after);
    let res = t
        .gitlab(hook.event, &format!("push-{after}"), hook.bytes())
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
}

/// Runs `cmd` in a container of `image`; returns its exit code and output.
pub(crate) async fn run_in_image(t: &TestApp, image: &str, cmd: &[&str]) -> (i64, String) {
    let docker = t.app.builder.docker().expect("Docker engine");
    let config = bollard::models::ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        entrypoint: Some(vec![]),
        ..Default::default()
    };
    let c = docker
        .create_container(None::<CreateContainerOptions>, config)
        .await
        .expect("create container");
    docker
        .start_container(
            &c.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .expect("start");
    let mut wait = docker.wait_container(
        &c.id,
        None::<bollard::query_parameters::WaitContainerOptions>,
    );
    let mut code = -1;
    while let Some(r) = wait.next().await {
        match r {
            Ok(w) => code = w.status_code,
            Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
            Err(e) => panic!("wait: {e}"),
        }
    }
    let mut logs = docker.logs(
        &c.id,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    let mut out = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    let _ = docker
        .remove_container(
            &c.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    (code, out)
}

pub(crate) fn states(fake: &FakeGitLab, sha: &str) -> Vec<String> {
    fake.statuses_for(sha)
        .into_iter()
        .filter(|s| s.name == "nbforge/environment")
        .map(|s| s.state)
        .collect()
}

/// Commits `files` to project `p`, delivers the push and runs the jobs; asserts that the
/// environment status ended `success`. Returns the commit and its build.
pub(crate) async fn push_and_build(
    t: &TestApp,
    fake: &FakeGitLab,
    p: &FakeProject,
    files: &[(&str, &[u8])],
) -> (String, nbforge::storage::BuildRow) {
    let sha = fake.commit(p, "main", files, "environment");
    deliver_push(t, fake, p, ZERO, &sha).await;
    t.run_jobs().await;
    assert_eq!(
        states(fake, &sha).last().map(String::as_str),
        Some("success"),
        "{:?}",
        fake.statuses_for(&sha)
    );
    let build = t
        .db()
        .builds_for_commit("gitlab", &p.path_with_namespace, &sha)
        .await
        .unwrap()
        .remove(0);
    (sha, build)
}

/// Removes images a test built.
pub(crate) async fn remove_images(t: &TestApp, images: &[&str]) {
    let docker = t.app.builder.docker().unwrap();
    for image in images {
        let _ = docker
            .remove_image(
                image,
                Some(
                    bollard::query_parameters::RemoveImageOptionsBuilder::default()
                        .force(true)
                        .build(),
                ),
                None,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_push_builds_and_a_notebook_only_push_is_ready_at_once() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, |_| {}).await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/pip-demo");
    // A unique comment makes this run's environment key new, so it really builds.
    let requirements = format!("# run {}\ntomli-w\n", uuid::Uuid::new_v4());
    let first = fake.commit(
        &p,
        "main",
        &[
            ("requirements.txt", requirements.as_bytes()),
            (
                "analysis.ipynb",
                br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
            ),
        ],
        "environment and notebook",
    );
    deliver_push(&t, &fake, &p, ZERO, &first).await;
    t.run_jobs().await;
    t.assert_queue_empty().await;

    let s = states(&fake, &first);
    assert_eq!(s.first().map(String::as_str), Some("pending"), "{s:?}");
    assert!(s.contains(&"running".to_owned()), "{s:?}");
    assert_eq!(s.last().map(String::as_str), Some("success"), "{s:?}");
    let last = fake.statuses_for(&first).pop().unwrap();
    assert_eq!(
        last.target_url.as_deref(),
        Some(format!("http://nbforge.test/v2/gl/lab%2Fpip%2Ddemo/{first}").as_str())
    );
    let build = t
        .db()
        .builds_for_commit("gitlab", "lab/pip-demo", &first)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((build.phase.as_str(), build.cached.0), ("built", false));
    let image = build.image.clone().unwrap();
    assert!(image.starts_with("nbforge-test/env:"), "{image}");

    // The package is importable inside, from the environment's own venv, as uid 1000.
    let (code, out) = run_in_image(
        &t,
        &image,
        &[
            "python",
            "-c",
            "import os, tomli_w; print(tomli_w.__file__); print(os.getuid())",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/srv/venv/") && out.trim_end().ends_with("1000"),
        "{out}"
    );

    // The status's link is the launch page, which names the ready image to developers (the
    // admin token sees what they see).
    let launch = t
        .admin_get(&format!("/v2/gl/lab%2Fpip%2Ddemo/{first}"))
        .await;
    assert_eq!(launch.status, 200);
    assert!(
        launch.text().contains("is ready") && launch.text().contains(&image),
        "{}",
        launch.text()
    );

    // The log is kept as plain text after the build.
    let log = t.get(&format!("/api/builds/{}/log", build.id)).await;
    assert_eq!(log.status, 200);
    assert!(log.text().contains("tomli"), "{}", log.text());

    // A push that changes only the notebook keeps the key: no build.
    let second = fake.commit(
        &p,
        "main",
        &[(
            "analysis.ipynb",
            br#"{"cells": [], "metadata": {"x": 1}, "nbformat": 4, "nbformat_minor": 5}"#,
        )],
        "notebook only",
    );
    deliver_push(&t, &fake, &p, &first, &second).await;
    t.run_jobs().await;
    let s = states(&fake, &second);
    assert_eq!(
        s,
        vec!["pending", "success"],
        "no running phase: nothing was built"
    );
    let again = t
        .db()
        .builds_for_commit("gitlab", "lab/pip-demo", &second)
        .await
        .unwrap()
        .remove(0);
    assert!(again.cached.0);
    assert_eq!(again.image.as_deref(), Some(image.as_str()));
    assert_eq!(again.environment_key, build.environment_key);
    // A branch name resolves to its newest commit.
    let by_branch = t.admin_get("/v2/gl/lab%2Fpip-demo/main").await.text();
    assert!(
        by_branch.contains("from the cache") && by_branch.contains(&second),
        "{by_branch}"
    );
    assert_eq!(t.get("/v2/gl/lab%2Fpip-demo/nope").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_is_retried_and_the_status_recovers() {
    let fake = FakeGitLab::start().await;
    let mut t = app_for(&fake, |s| {
        s.environments.docker_host = Some("unix:///nonexistent/docker.sock".into());
    })
    .await;
    let p = fake.add_project("lab/retry");
    let sha = fake.commit(&p, "main", &[("requirements.txt", b"tomli-w\n")], "env");
    deliver_push(&t, &fake, &p, ZERO, &sha).await;
    // The push job, then the environment job, which finds no engine.
    while t
        .db()
        .list_jobs(Some("pending"), 10)
        .await
        .unwrap()
        .iter()
        .any(|j| j.kind == Ok(JobKind::RecordPush))
    {
        nbforge::jobs::run_one(&t.app.jobs()).await.unwrap();
    }
    assert!(nbforge::jobs::run_one(&t.app.jobs()).await.unwrap());
    let env_job = t
        .db()
        .list_jobs(None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == Ok(JobKind::PrepareEnvironment))
        .unwrap();
    assert_eq!(
        (env_job.state.as_str(), env_job.attempts),
        ("pending", 1),
        "{env_job:?}"
    );
    assert!(
        env_job
            .last_error
            .unwrap_or_default()
            .contains("Docker engine unavailable")
    );
    let last = fake.statuses_for(&sha).pop().unwrap();
    assert_eq!(last.state, "running");
    assert!(
        last.description.unwrap_or_default().contains("retrying"),
        "the status says so"
    );

    // The engine is back.
    let mut settings = (*t.app.settings).clone();
    settings.environments.docker_host = None;
    t.app.builder = nbforge::app::builder_for(&settings);
    if !docker_ready(&t).await {
        return;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.run_jobs().await;
    t.assert_queue_empty().await;
    let job = t
        .db()
        .get_job(nbforge::storage::JobId(env_job.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2));
    assert_eq!(fake.statuses_for(&sha).pop().unwrap().state, "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_build_log_streams_as_server_sent_events() {
    use nbforge::environment::Phase;
    let t = TestApp::sqlite().await;
    let id = t
        .db()
        .create_build("gitlab", "lab/x", Some("main"), &"a".repeat(40), None)
        .await
        .unwrap();
    let logs = t.app.build_logs.clone();
    logs.start(id, Phase::Building);
    logs.line(id, "Step 1/3 : FROM nbforge/base:bookworm");
    let feeder = {
        let logs = logs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            logs.line(id, "Step 2/3 : RUN pip install -r requirements.txt");
            logs.phase(id, Phase::Built, "image built");
            let text = logs.finish(id).text();
            assert!(text.contains("Step 2/3"));
        })
    };
    let res = t.get(&format!("/api/builds/{id}/log")).await;
    feeder.await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(
        res.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    let events: Vec<serde_json::Value> = res
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        events.first().unwrap()["message"],
        "Step 1/3 : FROM nbforge/base:bookworm"
    );
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "Step 2/3 : RUN pip install -r requirements.txt")
    );
    assert_eq!(events.last().unwrap()["phase"], "built");

    // Once ended, the stored log is plain text.
    t.db()
        .set_build_phase(
            id,
            BuildPhase::Built,
            Some("image built"),
            false,
            Some("all of it\n"),
        )
        .await
        .unwrap();
    let res = t.get(&format!("/api/builds/{id}/log")).await;
    assert!(
        res.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text(), "all of it\n");
    assert_eq!(t.get("/api/builds/999999/log").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbforge_build_builds_a_folder() {
    let t = TestApp::sqlite().await;
    if !docker_ready(&t).await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("requirements.txt"),
        format!("# {}\ntomli-w\n", uuid::Uuid::new_v4()),
    )
    .unwrap();
    std::fs::write(dir.path().join("apt.txt"), "bad;name\n").unwrap();
    let run = |dir: std::path::PathBuf| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nbforge"));
        cmd.arg("build")
            .arg(&dir)
            .env("NBFORGE_IMAGE_PREFIX", "nbforge-test");
        if let Ok(ca) = std::env::var("NBFORGE_EXTRA_CA_CERTS") {
            cmd.env("NBFORGE_EXTRA_CA_CERTS", ca);
        }
        cmd.output().unwrap()
    };
    let bad = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || run(d)
    })
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("apt.txt:1:"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    std::fs::remove_file(dir.path().join("apt.txt")).unwrap();
    let good = tokio::task::spawn_blocking({
        let d = dir.path().to_owned();
        move || run(d)
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&good.stdout).into_owned();
    assert!(
        good.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let image = out
        .lines()
        .last()
        .unwrap()
        .split("ready: ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert!(t.app.builder.image_exists(&image).await.unwrap(), "{image}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pushed_to_the_registry_and_found_there_again() {
    let Some(registry) = tokio::task::spawn_blocking(crate::ci_template::Registry::start)
        .await
        .unwrap()
    else {
        return;
    };
    let fake = FakeGitLab::start().await;
    let address = registry.address.clone();
    let t = app_for(&fake, move |s| s.environments.registry = Some(address)).await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/registry-demo");
    let requirements = format!("# run {}\ntomli-w\n", uuid::Uuid::new_v4());
    let first = fake.commit(
        &p,
        "main",
        &[("requirements.txt", requirements.as_bytes())],
        "env",
    );
    deliver_push(&t, &fake, &p, ZERO, &first).await;
    t.run_jobs().await;
    assert_eq!(
        states(&fake, &first).last().map(String::as_str),
        Some("success")
    );
    let build = t
        .db()
        .builds_for_commit("gitlab", "lab/registry-demo", &first)
        .await
        .unwrap()
        .remove(0);
    let image = build.image.clone().unwrap();
    let key = build.environment_key.clone().unwrap();
    assert_eq!(
        image,
        format!("{}/lab/registry-demo/env:{key}", registry.address)
    );
    let manifest = format!("/v2/lab/registry-demo/env/manifests/{key}");
    let registry = std::sync::Arc::new(registry);
    let status = tokio::task::spawn_blocking({
        let registry = registry.clone();
        move || registry_status(&registry, &manifest)
    })
    .await
    .unwrap();
    assert_eq!(status, Some(200), "the image is in the registry");

    // Gone from the engine, still in the registry: a notebook-only push builds nothing.
    let docker = t.app.builder.docker().unwrap();
    docker
        .remove_image(
            &image,
            Some(
                bollard::query_parameters::RemoveImageOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
            None,
        )
        .await
        .unwrap();
    let second = fake.commit(&p, "main", &[("analysis.ipynb", b"{}")], "notebook");
    deliver_push(&t, &fake, &p, &first, &second).await;
    t.run_jobs().await;
    assert_eq!(states(&fake, &second), vec!["pending", "success"]);
    assert!(
        t.db()
            .builds_for_commit("gitlab", "lab/registry-demo", &second)
            .await
            .unwrap()[0]
            .cached
            .0
    );
    drop(registry);
}

fn registry_status(registry: &crate::ci_template::Registry, path: &str) -> Option<u16> {
    registry.status(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_push_cancels_a_running_build() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, |s| {
        s.jobs.lease = Duration::from_secs(3);
        s.jobs.poll_interval = Duration::from_millis(20);
    })
    .await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/slow");
    let slow = format!(
        "FROM {}\nRUN echo {} && sleep 120\n",
        t.app.settings.environments.base_image,
        uuid::Uuid::new_v4()
    );
    let first = fake.commit(&p, "main", &[("Dockerfile", slow.as_bytes())], "slow");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(nbforge::jobs::run_workers(t.app.jobs(), shutdown.clone()));
    deliver_push(&t, &fake, &p, ZERO, &first).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !states(&fake, &first).contains(&"running".to_owned()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow build never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quick = format!(
        "FROM {}\nRUN echo {}\n",
        t.app.settings.environments.base_image,
        uuid::Uuid::new_v4()
    );
    let second = fake.commit(&p, "main", &[("Dockerfile", quick.as_bytes())], "quick");
    let pushed = std::time::Instant::now();
    deliver_push(&t, &fake, &p, &first, &second).await;
    while states(&fake, &first).last().map(String::as_str) != Some("canceled")
        || states(&fake, &second).last().map(String::as_str) != Some("success")
    {
        assert!(
            pushed.elapsed() < Duration::from_secs(90),
            "first: {:?} second: {:?}",
            states(&fake, &first),
            states(&fake, &second)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Canceled well before its two minutes of sleep were over.
    assert!(
        pushed.elapsed() < Duration::from_secs(60),
        "{:?}",
        pushed.elapsed()
    );
    shutdown.cancel();
    workers.await.unwrap();
    let jobs = t.db().list_jobs(None, 20).await.unwrap();
    assert!(
        jobs.iter()
            .any(|j| j.kind == Ok(JobKind::PrepareEnvironment) && j.state == "canceled"),
        "{jobs:#?}"
    );
}

/// A kind nbforge does not build fails the status with a message naming the kind, the file
/// that selected it and the documentation section, not with a generic failure; no image is
/// built or looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_not_built_say_so_in_the_status() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, |_| {}).await;
    for (path, file, content, says) in [
        (
            "lab/julia-demo",
            "Project.toml",
            &b"[deps]\n"[..],
            "Project.toml selects a Julia environment (kind `julia`)",
        ),
        (
            "lab/require-demo",
            "binder/REQUIRE",
            b"julia 1.0\n",
            "binder/REQUIRE selects a Julia environment (kind `julia-require`)",
        ),
        (
            "lab/nix-demo",
            "default.nix",
            b"{ }\n",
            "default.nix selects a Nix environment (kind `nix`)",
        ),
    ] {
        let p = fake.add_project(path);
        let sha = fake.commit(
            &p,
            "main",
            &[(file, content)],
            "an environment nbforge does not build",
        );
        deliver_push(&t, &fake, &p, ZERO, &sha).await;
        t.run_jobs().await;
        assert_eq!(states(&fake, &sha), vec!["pending", "failed"], "{path}");
        let last = fake.statuses_for(&sha).pop().unwrap();
        let description = last.description.unwrap_or_default();
        assert!(
            description.contains(says)
                && description.contains("cannot build")
                && description.contains(nbforge::spec::UNSUPPORTED_DOCS),
            "{path}: {description}"
        );
        let build = t
            .db()
            .builds_for_commit("gitlab", path, &sha)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(build.phase.as_str(), "failed", "{path}");
        assert!(build.image.is_none(), "{path}: nothing is built");
    }
}

/// An R package that neither Debian nor the CRAN mirror has fails the build, and the status
/// names it (R alone would only warn and build an image without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r_package_in_no_source_fails_the_build_naming_it() {
    let fake = FakeGitLab::start().await;
    // A mirror that cannot answer: nothing is found there.
    let t = app_for(&fake, |s| {
        s.environments.cran_mirror = "http://127.0.0.1:9/cran".into();
    })
    .await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/r-missing");
    let install = format!(
        "# run {}\ninstall.packages(\"jsonlite\")\ninstall.packages(\"nbforgeNoSuchPackage\")\n",
        uuid::Uuid::new_v4()
    );
    let sha = fake.commit(&p, "main", &[("install.R", install.as_bytes())], "R");
    deliver_push(&t, &fake, &p, ZERO, &sha).await;
    t.run_jobs().await;
    let statuses = fake.statuses_for(&sha);
    let last = statuses.last().unwrap();
    assert_eq!(last.state, "failed", "{statuses:?}");
    let description = last.description.clone().unwrap_or_default();
    let build = t
        .db()
        .builds_for_commit("gitlab", "lab/r-missing", &sha)
        .await
        .unwrap()
        .remove(0);
    let log = t.get(&format!("/api/builds/{}/log", build.id)).await.text();
    assert!(
        description.contains("nbforge: R package(s) found in no source (Debian, CRAN http://127.0.0.1:9/cran): nbforgeNoSuchPackage"),
        "{description}\n{log}"
    );
    // Nothing was tagged for the key.
    let image = build.image.clone().unwrap();
    assert!(!t.app.builder.image_exists(&image).await.unwrap());
}

/// An R repository is built from Debian: `install.R`'s CRAN and Bioconductor packages come
/// from Debian's `r-cran-*` / `r-bioc-*` packages (no CRAN needed), the IRkernel runs an R
/// notebook in the image as uid 1000, and the status says the R differs from runtime.txt's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_push_builds_from_debian_and_runs_an_r_notebook() {
    let fake = FakeGitLab::start().await;
    let t = app_for(&fake, |_| {}).await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/r-demo");
    // A unique comment makes this run's environment key new, so it really builds.
    let install = format!(
        "# run {}\ninstall.packages(\"jsonlite\")\nBiocManager::install(\"Biobase\")\nlibrary(jsonlite)\n",
        uuid::Uuid::new_v4()
    );
    let (sha, build) = push_and_build(
        &t,
        &fake,
        &p,
        &[
            ("runtime.txt", b"r-4.1-2022-01-01\n"),
            ("install.R", install.as_bytes()),
        ],
    )
    .await;
    let statuses = fake.statuses_for(&sha);
    assert_eq!(
        statuses
            .last()
            .unwrap()
            .description
            .as_deref()
            .unwrap_or_default(),
        "environment ready (R 4.2 from Debian, not 4.1; CRAN snapshot 2022-01-01 not used)"
    );
    let image = build.image.clone().unwrap();
    let log = t.get(&format!("/api/builds/{}/log", build.id)).await.text();
    assert!(
        log.contains("jsonlite from Debian (r-cran-jsonlite)")
            && log.contains("Biobase from Debian (r-bioc-biobase)")
            && log.contains("already installed: jsonlite")
            && log.contains("already installed: Biobase"),
        "{log}"
    );

    let notebook = serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "ir", "display_name": "R", "language": "R"}},
        "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "execution_count": null, "outputs": [],
                   "source": "suppressPackageStartupMessages({library(jsonlite); library(Biobase)})\ncat(toJSON(list(ok = 1L), auto_unbox = TRUE), '\\n')\ncat('Biobase', as.character(packageVersion('Biobase')), 'uid', system('id -u', intern = TRUE), '\\n')"}]
    })
    .to_string();
    let script = format!(
        "cat > /tmp/r.ipynb <<'EOF'\n{notebook}\nEOF\njupyter execute --output=/tmp/out /tmp/r.ipynb 2>&1 && cat /tmp/out.ipynb"
    );
    let (code, out) = run_in_image(&t, &image, &["sh", "-c", &script]).await;
    remove_images(&t, &[&image]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(r#"{\"ok\":1}"#) && out.contains("Biobase 2.") && out.contains("uid 1000"),
        "the R notebook ran with both packages, as uid 1000: {out}"
    );
}
