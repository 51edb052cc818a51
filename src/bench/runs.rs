//! `nbforge bench runs`: worksheet runs on the local Docker engine, next to papermill.
//!
//! A SQLite database in a temporary folder gets a published release of two worksheets
//! whose environment is `--image` (default: the base image with papermill added, made
//! as `nbforge-bench/papermill` when missing), one user with a browser session, the real
//! router on a loopback port and the job workers of a server. Then:
//!
//! - **first cell**: from the `POST /api/runs` of a one-cell worksheet to its first cell
//!   executing (the run's first progress report), `--iterations` times; the median;
//! - **20 trivial cells**: a worksheet of 20 `x = x + 1` cells, from the post to the run
//!   stored as succeeded (result rendered and saved in the home), and papermill executing
//!   the same notebook with the same value in the same image
//!   (`docker run … papermill in.ipynb out.ipynb -p n 3`, timed from outside), alternated
//!   in one run; the medians.
//!
//! The user's home volume and the containers are removed at the end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::percentile;
use crate::access::service::{digest, random_token};
use crate::app::{App, build_forges};
use crate::config::Settings;
use crate::events::ForgeKind;
use crate::storage::{BuildPhase, Db, NewWorksheet, ProjectRow, ReleaseRow, UserUpdate};

#[derive(Debug, Clone, clap::Args)]
pub struct RunsArgs {
    /// Runs of each kind timed.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// The environment image (it must have papermill in /opt/jupyter) [default: the base
    /// image with papermill, made when missing].
    #[arg(long)]
    pub image: Option<String>,
}

const PROJECT: &str = "bench/runs";
const USER_ID: i64 = 2_000_000_001;

fn notebook(cells: usize) -> Vec<u8> {
    let mut list = vec![json!({
        "cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]},
        "execution_count": null, "outputs": [], "source": "n = 1\nx = 0"
    })];
    for i in 0..cells {
        list.push(json!({
            "cell_type": "code", "id": format!("c{i}"), "metadata": {},
            "execution_count": null, "outputs": [], "source": "x = x + n"
        }));
    }
    serde_json::to_vec_pretty(&json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": list,
    }))
    .expect("a notebook serializes")
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("docker").args(args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "docker {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The base image with papermill, made when missing.
fn papermill_image(base: &str) -> anyhow::Result<String> {
    let image = "nbforge-bench/papermill:latest".to_owned();
    if docker(&["image", "inspect", &image]).is_ok() {
        return Ok(image);
    }
    println!("making {image} from {base} (pip install papermill)");
    let dockerfile =
        format!("FROM {base}\nRUN /opt/jupyter/bin/pip install --no-cache-dir papermill\n");
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &image, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(dockerfile.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "building {image} failed");
    Ok(image)
}

async fn prepare(db: &Db, image: &str) -> anyhow::Result<()> {
    db.upsert_project(&ProjectRow {
        forge: ForgeKind::GitLab,
        path: PROJECT.into(),
        forge_id: None,
        web_url: None,
        git_url: None,
        default_branch: None,
        forked_from: None,
        visibility: Some("public".into()),
    })
    .await?;
    let commit = "0".repeat(40);
    let sheet = |path: &str, cells| NewWorksheet {
        path: path.into(),
        title: path.into(),
        description: None,
        body_html: String::new(),
        notebook: notebook(cells),
        error: None,
    };
    db.publish_release(
        &ReleaseRow {
            forge: ForgeKind::GitLab,
            project: PROJECT.into(),
            tag: "v1".into(),
            commit_sha: commit.clone(),
            title: None,
            area: None,
            error: None,
            published_at: 0,
        },
        &[sheet("one.ipynb", 1), sheet("twenty.ipynb", 20)],
    )
    .await?;
    let build = db
        .create_build("gitlab", PROJECT, Some("main"), &commit, None)
        .await?;
    db.set_build_environment(build, "bench", image).await?;
    db.set_build_phase(build, BuildPhase::Built, None, true, None)
        .await?;
    db.upsert_user(&UserUpdate {
        id: USER_ID,
        username: "bench",
        name: None,
        avatar_url: None,
        state: None,
    })
    .await?;
    Ok(())
}

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

impl Client {
    async fn post(&self, worksheet: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(format!("{}/api/runs", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .json(&json!({"worksheet": format!("/w/{PROJECT}/v1/{worksheet}"), "values": {"n": 3}}))
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "POST /api/runs: {}", res.status());
        let body: Value = res.json().await?;
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }
}

/// Waits for `done` of the run's row; the time from `start`.
async fn until(
    db: &Db,
    id: &str,
    start: Instant,
    done: impl Fn(&crate::storage::RunRow) -> bool,
) -> anyhow::Result<f64> {
    loop {
        let row = db
            .get_run(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run gone"))?;
        if done(&row) {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        if row.is_final() {
            anyhow::bail!("run {id} {}: {}", row.state, row.error.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn papermill(image: &str, dir: &std::path::Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000:1000",
        "-e",
        "HOME=/tmp",
        "-v",
        &format!("{}:/work", dir.display()),
        "-w",
        "/work",
        image,
        "/opt/jupyter/bin/papermill",
        "--log-level",
        "WARNING",
        "twenty.ipynb",
        "out.ipynb",
        "-p",
        "n",
        "3",
    ])?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

pub async fn run(settings: &Settings, args: &RunsArgs) -> anyhow::Result<ExitCode> {
    let image = match &args.image {
        Some(i) => i.clone(),
        None => papermill_image(&settings.environments.base_image)?,
    };
    let dir = std::env::temp_dir().join(format!(
        "nbforge-bench-runs-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let mut settings = Settings::for_database(&url);
    settings.data_dir = dir.join("data");
    settings.forges.gitlab_token = Some(crate::config::Secret::new("bench-token-not-used"));
    settings.environments.enabled = false;
    settings.runs.max = 1;
    let db = Db::connect(&url).await?;
    let forges = build_forges(&settings, &db)?;
    let app = App::with_parts(settings, db.clone(), forges)?;
    prepare(&db, &image).await?;
    let (session, csrf) = (random_token(), random_token());
    db.create_web_session(
        &digest(&["session", &session]),
        USER_ID,
        &csrf,
        db.clock().now_ms() + 3_600_000,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, crate::web::router(app.clone())).into_future());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let workers = tokio::spawn(crate::jobs::run_workers(app.jobs(), shutdown.clone()));
    let client = Client {
        http: reqwest::Client::new(),
        base,
        cookie: format!("nbforge_session={session}"),
        csrf,
    };
    let pm_dir = dir.join("papermill");
    std::fs::create_dir_all(&pm_dir)?;
    std::fs::write(pm_dir.join("twenty.ipynb"), notebook(20))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pm_dir, std::fs::Permissions::from_mode(0o777))?;
    }

    let result = async {
        // Warm up: the home volume, the image's pages in the cache, papermill's imports.
        let id = client.post("one.ipynb").await?;
        until(&db, &id, Instant::now(), |r| r.state == "succeeded").await?;
        papermill(&image, &pm_dir)?;

        let (mut first, mut twenty, mut pm) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            let start = Instant::now();
            let id = client.post("one.ipynb").await?;
            first.push(until(&db, &id, start, |r| r.cells_total > 0).await?);
            until(&db, &id, start, |r| r.state == "succeeded").await?;

            let start = Instant::now();
            let id = client.post("twenty.ipynb").await?;
            twenty.push(until(&db, &id, start, |r| r.state == "succeeded").await?);
            pm.push(papermill(&image, &pm_dir)?);
        }
        println!("image: {image}; {} iterations", args.iterations);
        println!("{:<58} {:>10}", "", "median ms");
        println!(
            "{:<58} {:>10.0}",
            "Run post -> first cell executing (cached image)",
            median(first)
        );
        let (nb, pm) = (median(twenty), median(pm));
        println!(
            "{:<58} {:>10.0}",
            "20 trivial cells: nbforge run (post -> saved, rendered)", nb
        );
        println!(
            "{:<58} {:>10.0}",
            "20 trivial cells: papermill (docker run, same image)", pm
        );
        println!("nbforge / papermill = {:.2}", nb / pm);
        anyhow::Ok(())
    }
    .await;
    shutdown.cancel();
    let _ = workers.await;
    server.abort();
    db.close().await;
    let _ = docker(&[
        "volume",
        "rm",
        "-f",
        &crate::sessions::docker::home_volume(USER_ID),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    Ok(ExitCode::SUCCESS)
}
