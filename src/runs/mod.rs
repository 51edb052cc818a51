//! Worksheet runs: a published worksheet executed with a user's values in its release's
//! environment image, the result kept in the owner's home.
//!
//! A run is a row (`storage::runs`) and a `run-worksheet` job. The job finds the image of
//! the release's commit ([`image_for`]), starts a container from it with the owner's home
//! volume and the hardening of sessions (`sessions::docker::user_code_host_config`, no
//! network), and hands it the parameterized notebook and [`RUNNER`], a small Python script
//! that executes it cell by cell with nbclient and prints one JSON line per progress event.
//! The result folder `~/results/<project>/<worksheet>/<UTC time>-<short id>/` receives
//! `output.ipynb` (written under a temporary name and renamed), `parameters.json`, the
//! notebook's own files; nbforge adds `output.html` (rendered without code) and
//! `provenance.json`. A run that outlives nbforge ends by itself (the runner's own
//! time limit) and is marked failed when its job is tried again.

pub mod data;
pub mod engine;
pub mod visitors;

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::jobs::kinds::PrepareEnvironment;
use crate::jobs::{Context, Job, JobError};
use crate::storage::{BuildPhase, Enqueue, RunRow};
use crate::worksheet::{ParamValue, Values};

pub use engine::{Engine, Outcome};

/// The script that executes a notebook inside the environment.
pub const RUNNER: &str = include_str!("runner.py");

/// The Python that runs [`RUNNER`]: the Jupyter tools of every environment image.
pub const RUNNER_PYTHON: &str = "/opt/jupyter/bin/python";

/// The most rendered HTML kept for the run page; a larger result is only in the home.
pub const MAX_RESULT_HTML: usize = 8 << 20;

/// A new run id: 128 random bits as 32 hex digits.
pub fn new_run_id() -> String {
    hex::encode(crate::access::sealed::random_bytes::<16>())
}

/// Where a run's result goes, relative to the home:
/// `results/<project>/<worksheet without .ipynb>/<UTC time>-<first 8 digits of the id>`.
pub fn result_folder(project: &str, worksheet: &str, created_ms: i64, id: &str) -> String {
    let clean = |p: &str| {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != "." && *s != "..")
            .map(|s| {
                s.chars()
                    .map(|c| if c.is_control() { '_' } else { c })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("/")
    };
    let sheet = worksheet.strip_suffix(".ipynb").unwrap_or(worksheet);
    let when = time::OffsetDateTime::from_unix_timestamp(created_ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    );
    format!(
        "results/{}/{}/{stamp}-{}",
        clean(project),
        clean(sheet),
        &id[..id.len().min(8)]
    )
}

/// Values as stored with a run: a JSON object in the parameters' order.
pub fn values_to_json(values: &Values) -> String {
    let map: Map<String, Value> = values
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    Value::Object(map).to_string()
}

/// Values read back from [`values_to_json`], in the order of `order` (the parameters
/// cell's names; JSON objects keep no order), names not in it last.
pub fn values_from_json(text: &str, order: &[&str]) -> Values {
    fn value(v: &Value) -> ParamValue {
        match v {
            Value::Null => ParamValue::None,
            Value::Bool(b) => ParamValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => ParamValue::Int(i),
                _ => ParamValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => ParamValue::Str(s.clone()),
            Value::Array(items) => ParamValue::List(items.iter().map(value).collect()),
            Value::Object(_) => ParamValue::Str(v.to_string()),
        }
    }
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return Values::default();
    };
    let mut values: Vec<(String, ParamValue)> =
        map.iter().map(|(k, v)| (k.clone(), value(v))).collect();
    values.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(usize::MAX));
    Values(values)
}

/// JSON values (of `POST /api/runs`) as the form would send them, for
/// [`crate::worksheet::validate`]: numbers and booleans as text, `null` as empty (`None`
/// for optional fields), lists one item per line.
pub fn form_from_json(values: &Map<String, Value>) -> HashMap<String, String> {
    fn text(v: &Value) -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
            other => other.to_string(),
        }
    }
    values.iter().map(|(k, v)| (k.clone(), text(v))).collect()
}

/// The memory and CPUs a run of the commit asks for: `[resources]` of the commit's
/// `launch.toml`, read from the project's mirror (kept since the tag was published). The
/// engine caps them by the session maxima; anything unreadable asks for the maxima.
pub async fn resources_for(
    settings: &crate::config::Settings,
    run: &RunRow,
) -> crate::sessions::Resources {
    let maxima = crate::sessions::Resources {
        memory_bytes: 0,
        cpus: 0.0,
    };
    let key = crate::repo::mirror::Mirrors::key(&run.forge, &run.project);
    let Ok(path) = crate::repo::mirror::mirror_path(&settings.data_dir.join("mirrors"), &key)
    else {
        return maxima;
    };
    let commit = run.commit_sha.clone();
    let read = tokio::task::spawn_blocking(move || -> Option<crate::spec::launch::Resources> {
        let repo = git2::Repository::open_bare(path).ok()?;
        let tree = crate::repo::CommitTree::open(&repo, &commit).ok()?;
        let text = crate::repo::tree::read_text(&tree, "launch.toml", 1 << 20).ok()??;
        Some(crate::spec::launch::parse(&text).ok()?.resources)
    })
    .await;
    match read {
        Ok(Some(r)) => crate::sessions::Resources {
            memory_bytes: r.memory.unwrap_or(0),
            cpus: r.cpus.unwrap_or(0.0),
        },
        _ => maxima,
    }
}

/// A run's time limit: the worksheet's `timeout` in the commit's `launch.toml` (or its
/// `[runs] timeout`), capped by `NBFORGE_RUN_TIMEOUT_SECS`, which is also the limit when
/// `launch.toml` sets none (or cannot be read).
pub async fn timeout_for(settings: &crate::config::Settings, run: &RunRow) -> std::time::Duration {
    let max = settings.runs.timeout;
    let worksheet = run.worksheet.clone();
    let asked = read_at_commit(settings, run, move |tree| {
        let text = crate::repo::tree::read_text(tree, "launch.toml", 1 << 20).ok()??;
        crate::spec::launch::parse(&text)
            .ok()?
            .run_timeout_secs(&worksheet)
    })
    .await;
    asked.map_or(max, |secs| max.min(std::time::Duration::from_secs(secs)))
}

/// Why a run that has not ended will never be ended by its job: the job has ended for
/// good (done, dead-lettered, canceled) or is gone. `None` while the job may still run.
pub async fn given_up(
    db: &crate::storage::Db,
    run: &RunRow,
) -> crate::storage::DbResult<Option<String>> {
    if run.is_final() {
        return Ok(None);
    }
    let Some(job_id) = run.job_id else {
        return Ok(None);
    };
    let job = db.get_job(crate::storage::JobId(job_id)).await?;
    let ended = job.as_ref().is_none_or(|j| {
        matches!(
            j.state.as_str(),
            "done" | "failed" | "dead" | "canceled" | "superseded"
        )
    });
    if !ended {
        return Ok(None);
    }
    Ok(Some(match job.and_then(|j| j.last_error) {
        Some(e) => format!("the run was given up: {}", crate::text::truncate(&e, 500)),
        None => "the run was given up".into(),
    }))
}

/// How long a container that reads a home for a download may stay before the cleanup
/// removes it (a download that streams longer is cut).
const READER_MAX_AGE_SECS: i64 = 24 * 3600;

/// Removes run containers left behind: those of runs that have ended, and those of runs
/// whose job has ended for good without ending them (the run then fails with the job's
/// reason); home readers older than a day. Containers of runs this database does not know
/// are left alone (another nbforge may share the engine). Returns how many were removed.
pub async fn remove_stale_containers(ctx: &Context) -> Result<usize, JobError> {
    let engine = Engine::connect(&ctx.settings).map_err(JobError::Transient)?;
    let containers = engine.run_containers().await.map_err(JobError::Transient)?;
    let now_secs = ctx.clock.now_ms() / 1000;
    let mut removed = 0;
    for (container, run_id, created) in containers {
        let stale = if run_id == "reader" {
            created < now_secs - READER_MAX_AGE_SECS
        } else {
            match ctx.db.get_run(&run_id).await? {
                None => false,
                Some(row) if row.is_final() => true,
                Some(row) => match given_up(&ctx.db, &row).await? {
                    Some(reason) => {
                        engine.remove_container(&container).await;
                        ctx.db
                            .finish_run(&row.id, "failed", Some(&reason), None)
                            .await?;
                        tracing::info!(run.id = %row.id, "run {} given up: {reason}", row.id);
                        removed += 1;
                        false
                    }
                    None => false,
                },
            }
        };
        if stale {
            engine.remove_container(&container).await;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The image a run executes in, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageLookup {
    /// The image is in the engine: its name and id (digest).
    Ready { image: String, digest: String },
    /// Being built; the message says so.
    Pending(String),
}

/// The environment image of a run's commit: the newest build of the commit whose image
/// the engine has. When there is none, the commit's environment is prepared (the
/// `prepare-environment` job) and the run waits for it; a build that failed fails the run.
pub async fn image_for(
    ctx: &Context,
    engine: &Engine,
    run: &RunRow,
) -> Result<ImageLookup, JobError> {
    if run.again_of.is_some() {
        return pinned_image(engine, run).await;
    }
    let build = ctx
        .db
        .latest_build(&run.forge, &run.project, &run.commit_sha)
        .await?;
    if let Some(b) = &build {
        match (b.phase, &b.image) {
            (BuildPhase::Built, Some(image)) => {
                if let Some(digest) = engine.image_digest(image).await? {
                    return Ok(ImageLookup::Ready {
                        image: image.clone(),
                        digest,
                    });
                }
            }
            (phase, _) if !phase.is_final() => {
                return Ok(ImageLookup::Pending(
                    "waiting for the environment to be built".into(),
                ));
            }
            (BuildPhase::Failed, _) => {
                return Err(JobError::User(format!(
                    "the environment of this version could not be built: {}",
                    b.message.as_deref().unwrap_or("see the build log")
                )));
            }
            _ => {}
        }
    }
    let key = format!("env:run:{}:{}:{}", run.forge, run.project, run.commit_sha);
    let project = ctx
        .db
        .get_project(&run.forge, &run.project)
        .await?
        .ok_or_else(|| JobError::User("the worksheet's project is no longer known".into()))?;
    let job = PrepareEnvironment {
        forge: project.forge,
        project: crate::events::ProjectRef {
            forge: project.forge,
            id: project.forge_id,
            path: project.path.clone(),
            web_url: project.web_url.clone(),
            git_http_url: project.git_url.clone(),
            default_branch: project.default_branch.clone(),
            visibility: None,
        },
        commit: run.commit_sha.clone(),
        ref_name: None,
        key,
    };
    // Enqueued once: a build row appears when the job starts, and later lookups wait on it.
    let mut already = false;
    for state in ["pending", "running"] {
        already |= ctx
            .db
            .list_jobs(Some(state), 1000)
            .await?
            .iter()
            .any(|j| j.supersede_key.as_deref() == Some(job.key.as_str()));
    }
    if !already {
        ctx.db
            .enqueue(&Enqueue {
                supersede: vec![],
                jobs: vec![job.to_new_job(ctx.settings.jobs.max_attempts)],
            })
            .await?;
        ctx.jobs_ready.notify_waiters();
    }
    Ok(ImageLookup::Pending(
        "waiting for the environment to be built".into(),
    ))
}

/// The image of a run again exactly: the image (by id) of the run it repeats, which the
/// cleanup keeps while a run refers to it.
async fn pinned_image(engine: &Engine, run: &RunRow) -> Result<ImageLookup, JobError> {
    let gone = || {
        JobError::User(
            "the environment image of the run repeated is no longer kept; run it again on the newest version".into(),
        )
    };
    let digest = run.image_digest.clone().ok_or_else(gone)?;
    match engine.image_digest(&digest).await? {
        Some(found) if found == digest => Ok(ImageLookup::Ready {
            image: digest.clone(),
            digest,
        }),
        _ => Err(gone()),
    }
}

/// The message of a run whose worksheet was withdrawn while it waited.
pub const WITHDRAWN: &str =
    "withdrawn: this version of the worksheet is no longer published (its tag was deleted)";

/// The notebook a run executes: the worksheet as published at the run's commit. A run
/// whose release is no longer published fails as withdrawn; a run whose tag has since
/// moved to another commit (a run again exactly) reads the notebook at its own commit from
/// the project's mirror.
pub async fn notebook_for(ctx: &Context, run: &RunRow) -> Result<Vec<u8>, JobError> {
    let published = ctx
        .db
        .worksheet_notebook(&run.project, &run.tag, &run.worksheet)
        .await?
        .ok_or_else(|| JobError::User(WITHDRAWN.into()))?;
    let release = ctx
        .db
        .releases(&run.project)
        .await?
        .into_iter()
        .find(|r| r.tag == run.tag && r.forge.name() == run.forge)
        .ok_or_else(|| JobError::User(WITHDRAWN.into()))?;
    if release.commit_sha == run.commit_sha {
        return Ok(published);
    }
    let path = run.worksheet.clone();
    read_at_commit(&ctx.settings, run, move |tree| {
        crate::repo::tree::read_limited(tree, &path, 64 << 20).ok()?
    })
    .await
    .ok_or_else(|| {
        JobError::User(format!(
            "the worksheet at commit {} can no longer be read",
            &run.commit_sha[..run.commit_sha.len().min(12)]
        ))
    })
}

/// Whether the run's release (its tag) is still published.
pub async fn withdrawn(ctx: &Context, run: &RunRow) -> Result<bool, JobError> {
    Ok(ctx
        .db
        .worksheet_notebook(&run.project, &run.tag, &run.worksheet)
        .await?
        .is_none())
}

/// Reads something of the run's commit from the project's git mirror.
async fn read_at_commit<T: Send + 'static>(
    settings: &crate::config::Settings,
    run: &RunRow,
    read: impl FnOnce(&crate::repo::CommitTree<'_>) -> Option<T> + Send + 'static,
) -> Option<T> {
    let key = crate::repo::mirror::Mirrors::key(&run.forge, &run.project);
    let path = crate::repo::mirror::mirror_path(&settings.data_dir.join("mirrors"), &key).ok()?;
    let commit = run.commit_sha.clone();
    tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(path).ok()?;
        let tree = crate::repo::CommitTree::open(&repo, &commit).ok()?;
        read(&tree)
    })
    .await
    .ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_random_bits() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn result_folders_are_inside_results() {
        let f = result_folder("lab/growth", "sub/../growth.ipynb", 0, "0123456789abcdef");
        assert_eq!(f, "results/lab/growth/sub/growth/19700101T000000Z-01234567");
    }

    #[test]
    fn values_round_trip_through_json() {
        let mut v = Values::default();
        v.insert("rate", ParamValue::Float(2.0));
        v.insert("hours", ParamValue::Int(3));
        v.insert("name", ParamValue::Str("K-12".into()));
        v.insert("flag", ParamValue::Bool(true));
        v.insert("none", ParamValue::None);
        v.insert(
            "xs",
            ParamValue::List(vec![ParamValue::Int(1), ParamValue::Int(2)]),
        );
        let order = ["rate", "hours", "name", "flag", "none", "xs"];
        assert_eq!(values_from_json(&values_to_json(&v), &order), v);
    }
}
