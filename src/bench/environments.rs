//! `nbforge bench environments`: push → `success` status, end to end, for
//! (a) a change to a notebook only (the environment key is kept: no build),
//! (b) a change to `requirements.txt` with Docker's layer cache warm, and
//! (c) a cold build (Docker's layer cache ignored); before them, the conda measurements of
//! [`super::conda`] (a solve next to py-rattler's, and rebuilds after adding one package).
//!
//! It runs the real service in this process (router, job workers, spec reading from a
//! git mirror, the Docker engine) against a plain bare repository through the local
//! forge, and times each push from the delivery to the `success` status.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::app::{App, build_forges};
use crate::config::{Secret, Settings};
use crate::environment::{Builder, BuilderSettings};

#[derive(Debug, Clone, clap::Args)]
pub struct EnvironmentsArgs {
    /// Notebook-only pushes to time.
    #[arg(long, default_value_t = 10)]
    pub code_only: usize,
    /// Requirements changes to time (each downloads its packages again).
    #[arg(long, default_value_t = 3)]
    pub requirements: usize,
    /// Cold builds to time.
    #[arg(long, default_value_t = 1)]
    pub cold: usize,
    /// Package the example environment installs with pip.
    #[arg(long, default_value = "tomli-w")]
    pub package: String,
    /// Records of the generated conda channel the solve is measured against.
    #[arg(long, default_value_t = 20000)]
    pub conda_records: usize,
    /// Conda solves to time, for nbforge and for py-rattler.
    #[arg(long, default_value_t = 5)]
    pub conda_solves: usize,
    /// Conda rebuilds to time, each adding one package to `environment.yml`.
    #[arg(long, default_value_t = 3)]
    pub conda_rebuilds: usize,
    /// Skip py-rattler (installed from PyPI into the bench's temporary folder).
    #[arg(long)]
    pub no_py_rattler: bool,
    /// Only the conda measurements.
    #[arg(long)]
    pub conda_only: bool,
}

const SECRET: &str = "bench-secret";
const ZERO: &str = "0000000000000000000000000000000000000000";
const PROJECT: &str = "bench/env";

/// Commits `files` on top of `branch` of the bare repository; returns the new commit.
fn commit(
    repo: &git2::Repository,
    branch: &str,
    files: &[(&str, &[u8])],
) -> anyhow::Result<String> {
    let refname = format!("refs/heads/{branch}");
    let parent = repo
        .find_reference(&refname)
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parent_tree = parent.as_ref().map(|p| p.tree()).transpose()?;
    let mut builder = repo.treebuilder(parent_tree.as_ref())?;
    for (path, bytes) in files {
        let blob = repo.blob(bytes)?;
        builder.insert(path, blob, 0o100644)?;
    }
    let tree = repo.find_tree(builder.write()?)?;
    let sig = git2::Signature::now("nbforge bench", "bench@nbforge.invalid")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo.commit(Some(&refname), &sig, &sig, "bench", &tree, &parents)?;
    Ok(id.to_string())
}

fn push_body(repo_path: &Path, before: &str, after: &str, branch: &str) -> Vec<u8> {
    let url = format!("file://{}", repo_path.display());
    serde_json::json!({
        "object_kind": "push", "event_name": "push", "before": before, "after": after,
        "ref": format!("refs/heads/{branch}"), "checkout_sha": after, "user_username": "bench",
        "project_id": null,
        "project": { "id": null, "name": "env", "path_with_namespace": PROJECT,
                     "web_url": url, "git_http_url": url, "default_branch": "main" },
        "commits": [], "total_commits_count": 1
    })
    .to_string()
    .into_bytes()
}

/// Pushes an `environment.yml` (built once, not timed), then `rebuilds` commits that each add
/// one package; returns each rebuild's time, outcome, and steps taken from the layer cache.
async fn conda_rebuilds(
    app: &App,
    repo: &git2::Repository,
    repo_path: &Path,
    run_id: &str,
    rebuilds: usize,
) -> anyhow::Result<Vec<(Duration, bool, usize, usize)>> {
    let env = |n: usize| {
        let mut text = format!("# bench {run_id}\ndependencies:\n  - python=3.11\n");
        for i in 0..=n {
            text.push_str(&format!("  - nbforge-extra-{i}\n"));
        }
        text
    };
    let before = repo
        .find_reference("refs/heads/conda")
        .ok()
        .and_then(|r| r.target())
        .map(|o| o.to_string())
        .unwrap_or_else(|| ZERO.to_owned());
    let mut head = commit(repo, "conda", &[("environment.yml", env(0).as_bytes())])?;
    let (t, ok) = time_push_on(app, repo_path, &before, &head, "conda").await?;
    anyhow::ensure!(ok, "the first conda build failed");
    println!(
        "\nfirst conda build (not counted): {:.1} s",
        t.as_secs_f64()
    );
    let mut out = Vec::new();
    for n in 1..=rebuilds {
        let before = head.clone();
        head = commit(repo, "conda", &[("environment.yml", env(n).as_bytes())])?;
        let (t, ok) = time_push_on(app, repo_path, &before, &head, "conda").await?;
        // The status is set before the build's log is stored: wait for the build to end.
        let mut build = None;
        for _ in 0..500 {
            build = app
                .db
                .builds_for_commit("gitlab", PROJECT, &head)
                .await?
                .into_iter()
                .next()
                .filter(|b| b.finished_at.is_some());
            if build.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut log = String::new();
        if let Some(b) = build {
            let mut after = None;
            while let Some((seq, body)) = app.db.build_log_chunk(b.id, after).await? {
                log.push_str(&body);
                after = Some(seq);
            }
        }
        let steps = log.lines().filter(|l| l.starts_with("Step ")).count();
        let cached = log.matches("Using cache").count();
        out.push((t, ok, cached, steps));
    }
    Ok(out)
}

/// Sends the push and waits for the environment status of `after` to end.
async fn time_push(
    app: &App,
    repo_path: &Path,
    before: &str,
    after: &str,
) -> anyhow::Result<(Duration, bool)> {
    time_push_on(app, repo_path, before, after, "main").await
}

async fn time_push_on(
    app: &App,
    repo_path: &Path,
    before: &str,
    after: &str,
    branch: &str,
) -> anyhow::Result<(Duration, bool)> {
    let started = Instant::now();
    let req = Request::post("/hooks/gitlab")
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", SECRET)
        .header("x-gitlab-event-uuid", format!("bench-{after}"))
        .body(Body::from(push_body(repo_path, before, after, branch)))?;
    let res = crate::web::router(app.clone()).oneshot(req).await?;
    anyhow::ensure!(
        res.status().is_success(),
        "delivery refused: {}",
        res.status()
    );
    loop {
        let statuses = app.db.local_statuses(PROJECT, after).await?;
        if let Some(last) = statuses.last()
            && matches!(last.state.as_str(), "success" | "failed")
        {
            return Ok((started.elapsed(), last.state == "success"));
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "no result after 30 minutes"
        );
        // A job that failed before any status (the repository could not be read) ends it.
        if let Some(job) = app
            .db
            .list_jobs(Some("failed"), 1)
            .await?
            .into_iter()
            .next()
        {
            anyhow::bail!(
                "job {} failed: {}",
                job.id,
                job.last_error.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn summary(name: &str, times: &[(Duration, bool)]) {
    let mut ms: Vec<f64> = times
        .iter()
        .map(|(d, _)| d.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let ok = times.iter().filter(|(_, s)| *s).count();
    if ms.is_empty() {
        return;
    }
    println!(
        "{name:<38} {:>3} runs {:>3} ok   min {:>9.1} ms   p50 {:>9.1} ms   max {:>9.1} ms",
        ms.len(),
        ok,
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
}

async fn start_workers(app: &App) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(crate::jobs::run_workers(app.jobs(), shutdown.clone()));
    (shutdown, handle)
}

pub async fn run(base: &Settings, args: &EnvironmentsArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::Builder::new()
        .prefix("nbforge-bench-env-")
        .tempdir()?;
    super::conda::solve_section(
        tmp.path(),
        args.conda_records,
        args.conda_solves,
        !args.no_py_rattler,
    )
    .await?;
    // A local channel for the rebuilds: the Python stand-in, and one package per rebuild.
    let channel_dir = tmp.path().join("rebuild-channel");
    let mut channel = super::conda_channel::LocalChannel::new(&channel_dir)?;
    channel.add_python_stand_in()?;
    for i in 0..=args.conda_rebuilds {
        channel.add(&super::conda::extra_package(i))?;
    }
    channel.write_index()?;
    let (channel_addr, _channel_server) = super::conda_channel::serve(
        channel_dir.clone(),
        std::sync::Arc::new(super::conda_channel::Behaviour::default()),
    )
    .await?;
    let mut settings = Settings::for_database(&format!(
        "sqlite://{}",
        tmp.path().join("bench.db").display()
    ));
    settings.forges.gitlab_webhook_secrets = vec![Secret::new(SECRET)];
    settings.data_dir = tmp.path().join("data");
    // The bench's repository is `<tmp>/bench/env.git`, project `bench/env`.
    settings.forges.git_roots = vec![tmp.path().to_owned()];
    settings.environments.base_image = base.environments.base_image.clone();
    settings.environments.extra_ca = base.environments.extra_ca.clone();
    settings.environments.docker_host = base.environments.docker_host.clone();
    settings.environments.image_prefix = "nbforge-bench".into();
    settings.jobs.poll_interval = Duration::from_millis(5);
    settings.jobs.workers = 2;
    settings.environments.conda.channels.default_channels = vec![format!("http://{channel_addr}")];
    let db = crate::storage::Db::connect(&settings.database_url).await?;
    let forges = build_forges(&settings, &db)?;
    let mut app = App::with_parts(settings.clone(), db, forges)?;
    if !app
        .builder
        .image_exists(&settings.environments.base_image)
        .await?
    {
        eprintln!(
            "the base image {} is missing: run `nbforge base-image` first",
            settings.environments.base_image
        );
        return Ok(ExitCode::FAILURE);
    }
    let repo_path = tmp.path().join("bench").join("env.git");
    let repo = git2::Repository::init_bare(&repo_path)?;
    let (shutdown, workers) = start_workers(&app).await;

    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let conda = conda_rebuilds(&app, &repo, &repo_path, &run_id, args.conda_rebuilds).await?;
    println!(
        "\nconda rebuild after adding one package to environment.yml (push -> `success`, package and layer caches warm):"
    );
    for (i, (t, ok, cached, steps)) in conda.iter().enumerate() {
        println!(
            "  rebuild {}: {:>6.1} s  {}  {cached} of {steps} steps from the layer cache",
            i + 1,
            t.as_secs_f64(),
            if *ok { "success" } else { "FAILED" }
        );
    }
    if args.conda_only {
        shutdown.cancel();
        let _ = workers.await;
        return Ok(ExitCode::SUCCESS);
    }

    // The first environment: built once, not timed.
    let requirements = |n: usize| format!("# bench {run_id} {n}\n{}\n", args.package);
    let mut head = commit(
        &repo,
        "main",
        &[
            ("requirements.txt", requirements(0).as_bytes()),
            ("analysis.ipynb", b"{}"),
        ],
    )?;
    let (t, ok) = time_push(&app, &repo_path, ZERO, &head).await?;
    anyhow::ensure!(
        ok,
        "the first build failed; try `nbforge build` on a copy of the repository"
    );
    println!("first build (not counted): {:.1} s", t.as_secs_f64());

    let mut code_only = Vec::new();
    for i in 0..args.code_only {
        let before = head.clone();
        head = commit(
            &repo,
            "main",
            &[("analysis.ipynb", format!("{{\"v\": {i}}}").as_bytes())],
        )?;
        code_only.push(time_push(&app, &repo_path, &before, &head).await?);
    }
    let mut requirement_changes = Vec::new();
    for i in 0..args.requirements {
        let before = head.clone();
        head = commit(
            &repo,
            "main",
            &[("requirements.txt", requirements(i + 1).as_bytes())],
        )?;
        requirement_changes.push(time_push(&app, &repo_path, &before, &head).await?);
    }
    shutdown.cancel();
    let _ = workers.await;

    let mut cold = Vec::new();
    if args.cold > 0 {
        app.builder = Builder::connect(BuilderSettings {
            no_cache: true,
            ..app.builder.settings().clone()
        });
        let (shutdown, workers) = start_workers(&app).await;
        for i in 0..args.cold {
            let before = head.clone();
            head = commit(
                &repo,
                "main",
                &[("requirements.txt", requirements(1000 + i).as_bytes())],
            )?;
            cold.push(time_push(&app, &repo_path, &before, &head).await?);
        }
        shutdown.cancel();
        let _ = workers.await;
    }
    println!(
        "\npush -> `success` status, end to end (ingest, queue, git fetch, spec, cache or build):"
    );
    summary("(a) notebook-only change", &code_only);
    summary("(b) requirements change, warm cache", &requirement_changes);
    summary("(c) cold build (no layer cache)", &cold);
    Ok(ExitCode::SUCCESS)
}
