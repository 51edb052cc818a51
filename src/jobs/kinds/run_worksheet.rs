//! `run-worksheet`: executes one worksheet run (see [`crate::runs`]) and records how it
//! ended. A run found `running` when its job starts again was interrupted (nbforge
//! stopped during it): its container is removed and it fails with that reason, so no run
//! stays `running` for ever.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::runs::engine::Launch;
use crate::runs::{Engine, ImageLookup, MAX_RESULT_HTML, Outcome, image_for, values_from_json};
use crate::sessions::docker::HOME_DIR;
use crate::storage::{JobKind, RunRow};
use crate::worksheet::{Notebook, RenderOptions, parameterize, render};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunWorksheet {
    pub run_id: String,
    /// The worksheet's project, for logs.
    pub project: String,
}

/// How often a waiting or running run looks at its row (cancel, slots, builds).
const POLL: Duration = Duration::from_millis(500);

/// How often a running run's home is measured against the owner's quota.
const HOME_MEASURED_EVERY: Duration = Duration::from_secs(5);

/// The largest executed notebook read back for rendering: a larger one stays whole in
/// the home, and its rendering says so (nbforge never holds it in memory).
const MAX_OUTPUT_BYTES: u64 = 32 << 20;

impl Job for RunWorksheet {
    const KIND: JobKind = JobKind::RunWorksheet;

    /// The run's own limit, plus time to wait for its environment and to save its result.
    fn time_limit(settings: &crate::config::Settings) -> Duration {
        settings.runs.timeout + settings.environments.build_timeout + Duration::from_secs(600)
    }

    fn subject(&self) -> Subject {
        Subject {
            project: Some(self.project.clone()),
            git_ref: None,
            commit: None,
        }
    }

    async fn run(&self, ctx: &Context, run: &Run) -> Result<(), JobError> {
        let id = self.run_id.as_str();
        let Some(row) = ctx.db.get_run(id).await? else {
            return Ok(()); // deleted meanwhile
        };
        if row.is_final() {
            return Ok(());
        }
        let engine = Engine::connect(&ctx.settings).map_err(JobError::Transient)?;
        if row.state == "running" {
            engine.kill(id).await;
            engine.remove(id).await;
            ctx.db
                .finish_run(
                    id,
                    "failed",
                    Some("interrupted: nbforge stopped while this run was executing; run it again"),
                    None,
                )
                .await?;
            return Ok(());
        }
        match execute(ctx, run, &engine, &row).await {
            Ok(()) => Ok(()),
            Err(JobError::User(message)) => {
                ctx.db
                    .finish_run(id, "failed", Some(&message), None)
                    .await?;
                Ok(())
            }
            Err(JobError::Transient(e)) if run.attempt >= run.max_attempts => {
                tracing::warn!(run.id = %id, "run failed: {e:#}");
                ctx.db
                    .finish_run(
                        id,
                        "failed",
                        Some("the run could not be started (the service's logs say why)"),
                        None,
                    )
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Waits `POLL`, or less when the job is asked to stop.
async fn pause(run: &Run) -> Result<(), JobError> {
    tokio::select! {
        _ = tokio::time::sleep(POLL) => Ok(()),
        _ = run.cancel.cancelled() => Err(JobError::Canceled),
    }
}

/// Whether the run was canceled while queued (the row then says so already).
async fn canceled(ctx: &Context, id: &str) -> Result<bool, JobError> {
    Ok(ctx
        .db
        .get_run(id)
        .await?
        .is_none_or(|r| r.is_final() || r.cancel_requested != 0))
}

async fn execute(ctx: &Context, run: &Run, engine: &Engine, row: &RunRow) -> Result<(), JobError> {
    let id = row.id.as_str();
    let Some(home) = crate::runs::visitors::RunHome::of(row) else {
        return Err(JobError::User("the run has no owner".into()));
    };
    // The notebook, at the run's commit (a withdrawn worksheet fails the run here).
    let notebook = crate::runs::notebook_for(ctx, row).await?;
    let notebook = Notebook::from_slice(&notebook).map_err(|e| JobError::User(e.to_string()))?;
    // The environment.
    if let Some(quota) = ctx.settings.lifecycle.home_quota
        && let crate::runs::visitors::RunHome::User(user_id) = &home
        && let Ok(Some(usage)) = ctx
            .sessions
            .home_usage(*user_id, crate::sessions::lifecycle::QUOTA_MEASURE_MAX_AGE)
            .await
        && usage.bytes >= quota
    {
        return Err(JobError::User(format!(
            "your home folder uses {} of its {} quota: delete some files to run worksheets",
            crate::sessions::lifecycle::human_bytes(usage.bytes),
            crate::sessions::lifecycle::human_bytes(quota)
        )));
    }
    let (image, digest) = loop {
        if canceled(ctx, id).await? {
            ctx.db
                .finish_run(id, "canceled", Some("canceled before it started"), None)
                .await?;
            return Ok(());
        }
        if crate::runs::withdrawn(ctx, row).await? {
            return Err(JobError::User(crate::runs::WITHDRAWN.into()));
        }
        match image_for(ctx, engine, row).await? {
            ImageLookup::Ready { image, digest } => break (image, digest),
            ImageLookup::Pending(message) => ctx.db.set_run_message(id, Some(&message)).await?,
        }
        pause(run).await?;
    };
    let params = crate::worksheet::parameters(&notebook);
    let order: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let values = values_from_json(&row.values_json, &order);
    let input = parameterize(&notebook, &values).to_json_pretty();
    // A turn among the owner's runs.
    let per_owner = i64::try_from(ctx.settings.runs.per_user).unwrap_or(i64::MAX);
    loop {
        if ctx.db.start_run(id, per_owner).await? {
            break;
        }
        if canceled(ctx, id).await? {
            ctx.db
                .finish_run(id, "canceled", Some("canceled before it started"), None)
                .await?;
            return Ok(());
        }
        if crate::runs::withdrawn(ctx, row).await? {
            return Err(JobError::User(crate::runs::WITHDRAWN.into()));
        }
        ctx.db
            .set_run_message(id, Some("waiting for another of your runs to finish"))
            .await?;
        pause(run).await?;
    }
    ctx.db.set_run_image(id, &image, &digest).await?;
    let started_ms = crate::storage::now_ms();
    // The files of file parameters, checksummed as the run starts (a visitor's throwaway
    // home has no data of its own).
    let inputs = match &home {
        crate::runs::visitors::RunHome::User(user_id) => {
            match crate::runs::data::run_inputs(&ctx.settings, id, *user_id, &params, &values).await
            {
                Ok(inputs) => inputs,
                Err(message) => {
                    ctx.db
                        .finish_run(id, "failed", Some(&message), None)
                        .await?;
                    return Ok(());
                }
            }
        }
        crate::runs::visitors::RunHome::Throwaway { .. } => Vec::new(),
    };
    // The worksheet's own limit (launch.toml), and for a visitor's run at most theirs.
    let timeout = crate::runs::timeout_for(&ctx.settings, row)
        .await
        .min(crate::runs::visitors::timeout(&ctx.settings, row));
    engine.remove(id).await;
    let resources = crate::runs::resources_for(&ctx.settings, row).await;
    let resources = crate::runs::visitors::resources(&ctx.settings, row, resources);
    let launch = Launch {
        run_id: id,
        home,
        image: &image,
        notebook: input.as_bytes(),
        parameters: row.values_json.as_bytes(),
        folder: &row.result_folder,
        timeout_secs: timeout.as_secs().max(1),
        resources,
    };
    if let Err(e) = engine.start(&launch).await {
        tracing::warn!(run.id = %id, "starting run {id}: {e:#}");
        engine.remove(id).await;
        ctx.db
            .finish_run(
                id,
                "failed",
                Some("the run's container did not start (the service's logs say why)"),
                None,
            )
            .await?;
        return Ok(());
    }
    tracing::info!(run.id = %id, forge.project = %row.project, "run {id} started in {image}");

    let (outcome, packages) = follow(ctx, run, engine, row, timeout).await?;
    let finished_ms = crate::storage::now_ms();
    let (html, save_error) = save_result(
        engine,
        row,
        &image,
        &digest,
        &outcome,
        &packages,
        (started_ms, finished_ms),
        &inputs,
    )
    .await;
    engine.remove(id).await;
    let (state, mut error) = match &outcome {
        Outcome::Succeeded => ("succeeded", None),
        Outcome::Failed(m) => ("failed", Some(m.clone())),
        Outcome::Canceled(m) => ("canceled", Some(m.clone())),
    };
    if let Some(e) = save_error {
        tracing::warn!(run.id = %id, "saving the result of run {id}: {e:#}");
        error.get_or_insert_with(|| "the result could not be saved".into());
    }
    let state = if error.is_some() && state == "succeeded" {
        "failed"
    } else {
        state
    };
    ctx.db
        .finish_run(id, state, error.as_deref(), html.as_deref())
        .await?;
    tracing::info!(run.id = %id, "run {id} {state}");
    Ok(())
}

/// Reads the runner's progress until the container ends, stopping it when the run is
/// canceled, takes too long, or nbforge stops. How it ended, and the packages it listed.
async fn follow(
    ctx: &Context,
    run: &Run,
    engine: &Engine,
    row: &RunRow,
    timeout: Duration,
) -> Result<(Outcome, Value), JobError> {
    let id = row.id.as_str();
    // The owner's home quota holds while the run writes, not only when it starts: the
    // home is measured every `HOME_MEASURED_EVERY` (one short container each time).
    let quota = ctx.settings.lifecycle.home_quota.zip(row.owner_user_id);
    let output = engine.output(id);
    tokio::pin!(output);
    let mut buffer: Vec<u8> = Vec::new();
    let mut done: Option<Value> = None;
    let mut stop: Option<Outcome> = None;
    let deadline = tokio::time::sleep(timeout + Duration::from_secs(15));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(POLL);
    let limit = format!(
        "stopped: the run took longer than its time limit of {} s",
        timeout.as_secs()
    );
    loop {
        tokio::select! {
            chunk = output.next() => {
                let Some(chunk) = chunk else { break };
                buffer.extend_from_slice(&chunk);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
                    // The first `cell` event (not `start`, sent before the kernel starts)
                    // is the first progress stored: a total means a cell is executing.
                    match event["event"].as_str() {
                        Some("cell") => {
                            let n = event["n"].as_i64().unwrap_or(1);
                            let total = event["total"].as_i64().unwrap_or(0);
                            let heading = event["heading"].as_str().map(|h| crate::text::truncate(h, 200).into_owned());
                            ctx.db.set_run_progress(id, n - 1, total, heading.as_deref()).await?;
                        }
                        Some("done") => done = Some(event),
                        _ => {}
                    }
                }
            }
            _ = tick.tick(), if stop.is_none() => {
                if ctx.db.get_run(id).await?.is_none_or(|r| r.cancel_requested != 0) {
                    engine.kill(id).await;
                    stop = Some(Outcome::Canceled("canceled".into()));
                } else if let Some((quota, user_id)) = quota
                    && let Ok(Some(usage)) = ctx.sessions.home_usage(user_id, HOME_MEASURED_EVERY).await
                    && usage.bytes > quota
                {
                    engine.kill(id).await;
                    stop = Some(Outcome::Failed(format!(
                        "stopped: the run filled your home folder past its {} quota ({} used); delete some files and run it again",
                        crate::sessions::lifecycle::human_bytes(quota),
                        crate::sessions::lifecycle::human_bytes(usage.bytes)
                    )));
                }
            }
            _ = &mut deadline, if stop.is_none() => {
                engine.kill(id).await;
                stop = Some(Outcome::Canceled(limit.clone()));
            }
            _ = run.cancel.cancelled(), if stop.is_none() => {
                engine.kill(id).await;
                stop = Some(Outcome::Failed("interrupted: nbforge stopped during the run; run it again".into()));
            }
        }
    }
    let code = engine.wait(id).await;
    let packages = done
        .as_ref()
        .map_or(Value::Array(vec![]), |d| d["packages"].clone());
    let outcome = match (stop, done) {
        (Some(stop), _) => stop,
        (None, Some(d)) if d["ok"].as_bool() == Some(true) => Outcome::Succeeded,
        (None, Some(d)) if d["timeout"].as_bool() == Some(true) => Outcome::Canceled(limit),
        (None, Some(d)) => Outcome::Failed(d["error"].as_str().map_or_else(
            || "the notebook failed".into(),
            |e| crate::text::truncate(e, 2000).into_owned(),
        )),
        (None, None) => {
            let tail = engine.error_tail(id).await;
            Outcome::Failed(if code == 137 {
                "the run was stopped: out of memory or killed".into()
            } else if tail.is_empty() {
                format!("the run ended with exit code {code} before finishing")
            } else {
                format!("the run ended with exit code {code} before finishing:\n{tail}")
            })
        }
    };
    Ok((outcome, packages))
}

/// `2026-01-31T12:00:00Z` for epoch milliseconds.
fn utc(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Renders `output.ipynb` of the result folder into `output.html` and writes
/// `provenance.json` next to it. The rendered body for the run page (capped), and what
/// went wrong saving, if anything.
#[expect(
    clippy::too_many_arguments,
    reason = "what provenance.json records, each from its own step of the run"
)]
async fn save_result(
    engine: &Engine,
    row: &RunRow,
    image: &str,
    digest: &str,
    outcome: &Outcome,
    packages: &Value,
    (started, finished): (i64, i64),
    inputs: &[crate::runs::data::InputFile],
) -> (Option<String>, Option<anyhow::Error>) {
    let folder = format!("{HOME_DIR}/{}", row.result_folder);
    let values: Value = serde_json::from_str(&row.values_json).unwrap_or(json!({}));
    let provenance = json!({
        "run": row.id,
        "forge": row.forge,
        "project": row.project,
        "tag": row.tag,
        "worksheet": row.worksheet,
        "commit": row.commit_sha,
        "image": image,
        "image_digest": digest,
        "values": values,
        "started": utc(started),
        "finished": utc(finished),
        "state": match outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Canceled(_) => "canceled",
        },
        "packages": packages,
        "inputs": inputs,
    });
    let provenance = serde_json::to_vec_pretty(&provenance).unwrap_or_default();
    let mut files: Vec<(&str, Vec<u8>)> = vec![("provenance.json", provenance)];
    let mut body = None;
    let output = format!("{folder}/output.ipynb");
    let read = match engine.file_size(&row.id, &output).await {
        Ok(Some(size)) if size > MAX_OUTPUT_BYTES => Ok(Some(Err(size))),
        _ => engine
            .read_file(&row.id, &output, MAX_OUTPUT_BYTES)
            .await
            .map(|read| read.map(Ok)),
    };
    let mut problem = None;
    match read {
        Ok(Some(content)) => {
            let values = values_from_json(&row.values_json, &[]);
            let title = row.worksheet.clone();
            let rendered = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, String)> {
                let mut body = match content {
                    Ok(bytes) => {
                        let nb = Notebook::from_slice(&bytes)?;
                        render(&nb, &RenderOptions::default()).body_html
                    }
                    Err(size) => format!(
                        "<p class=\"error\">The executed notebook ({} MiB) is larger than {} MiB and is not shown; output.ipynb is complete in your results folder.</p>",
                        size >> 20,
                        MAX_OUTPUT_BYTES >> 20
                    ),
                };
                if body.len() > MAX_RESULT_HTML {
                    body = format!(
                        "<p class=\"error\">The result is larger than {} MiB and is not shown; open output.ipynb from your results.</p>",
                        MAX_RESULT_HTML >> 20
                    );
                }
                let page = crate::web::Templates::new()
                    .standalone(&title, &values, body.clone())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok((body, page))
            })
            .await;
            match rendered {
                Ok(Ok((b, page))) => {
                    files.push(("output.html", page.into_bytes()));
                    body = Some(b);
                }
                Ok(Err(e)) => problem = Some(e),
                Err(e) => problem = Some(e.into()),
            }
        }
        Ok(None) => {}
        Err(e) => problem = Some(e),
    }
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    if let Err(e) = engine.write_files(&row.id, &folder, &borrowed).await {
        problem.get_or_insert(e);
    }
    (body, problem)
}
