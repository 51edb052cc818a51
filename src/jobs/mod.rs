//! The durable job queue and its workers.
//!
//! A delivery's jobs are inserted in the same transaction as the delivery (see
//! [`crate::ingest`]). Workers claim one job at a time with a lease that a heartbeat
//! extends; a job whose worker died is claimed again once its lease runs out. Failures
//! caused by the input are recorded and not retried; other failures are retried with
//! exponential backoff and dead-lettered after `job_max_attempts` tries. A newer job
//! with the same supersede key cancels older pending ones (and asks running ones to
//! stop). On shutdown, workers stop claiming, give running jobs a grace period, then
//! release what is left so another process picks it up at once.

pub mod handlers;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::App;
use crate::events::{Event, ForgeKind, MergeRequestAction};
use crate::storage::{Heartbeat, JobId, JobRow, NewJob};

/// What a job row carries: the event and the forge it came from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobPayload {
    pub forge: ForgeKind,
    pub event: Event,
}

/// How a job ended badly.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input is wrong (a bad launch spec, a missing file): shown to the user, not retried.
    #[error("{0}")]
    User(String),
    /// Something outside nbforge failed (forge down, Docker engine down): retried.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// The job was superseded or the lease was lost while it ran.
    #[error("canceled")]
    Canceled,
}

impl From<anyhow::Error> for JobError {
    fn from(e: anyhow::Error) -> Self {
        JobError::Transient(e)
    }
}

impl From<crate::storage::DbError> for JobError {
    fn from(e: crate::storage::DbError) -> Self {
        JobError::Transient(e.into())
    }
}

impl From<crate::forge::ForgeError> for JobError {
    fn from(e: crate::forge::ForgeError) -> Self {
        JobError::Transient(e.into())
    }
}

/// What a running job can see of its circumstances.
#[derive(Clone)]
pub struct JobContext {
    pub id: JobId,
    pub attempt: i64,
    pub max_attempts: i64,
    /// Cancelled when the job is superseded, its lease is lost, or the process stops for good.
    pub cancel: CancellationToken,
}

/// What decides which jobs an event causes.
#[derive(Debug, Clone, Copy)]
pub struct Planning {
    pub max_attempts: u32,
    /// Prepare environment images for pushes and merge requests.
    pub environments: bool,
}

/// The jobs a domain event causes. The supersede key makes a newer event about the
/// same branch or merge request replace older pending work (and stop running work).
///
/// - push: `push` (record the ref) and, unless the branch was deleted, `environment`;
/// - merge request opened, reopened or updated with new commits: `merge_request`
///   (record it, keep its note) and `environment` for the source branch; closed:
///   `merge_request` plus a `cancel` that supersedes its environment job; merged:
///   `merge_request` and `environment` for the target branch;
/// - tag push, member and project events: one job each.
pub fn plan(forge: ForgeKind, event: &Event, planning: Planning) -> Vec<NewJob> {
    // One serialization, shared by every job of the event.
    let payload = serde_json::to_string(&JobPayload {
        forge,
        event: event.clone(),
    })
    .expect("events serialize");
    let job = |kind: &str, key: Option<String>| NewJob {
        kind: kind.to_owned(),
        payload: payload.clone(),
        supersede_key: key,
        max_attempts: i64::from(planning.max_attempts),
    };
    let envs = planning.environments;
    match event {
        Event::Push(p) => {
            let mut jobs = vec![job(
                "push",
                Some(format!("push:{}:{}", p.project.path, p.branch)),
            )];
            let key = Some(format!("env:{}:{}", p.project.path, p.branch));
            if envs && !p.deleted {
                jobs.push(job("environment", key));
            } else if envs {
                jobs.push(job("cancel", key));
            }
            jobs
        }
        Event::TagPush(t) => vec![job(
            "tag_push",
            Some(format!("tag:{}:{}", t.project.path, t.tag)),
        )],
        Event::MergeRequest(m) => {
            let mut jobs = vec![job(
                "merge_request",
                Some(format!("mr:{}:{}", m.project.path, m.iid)),
            )];
            let mr_env = Some(format!("env:mr:{}:{}", m.project.path, m.iid));
            match &m.action {
                MergeRequestAction::Open | MergeRequestAction::Reopen if envs => {
                    jobs.push(job("environment", mr_env));
                }
                MergeRequestAction::Update if envs && m.new_commits => {
                    jobs.push(job("environment", mr_env))
                }
                MergeRequestAction::Close if envs => jobs.push(job("cancel", mr_env)),
                MergeRequestAction::Merge if envs => {
                    jobs.push(job("cancel", mr_env));
                    jobs.push(job(
                        "environment",
                        Some(format!("env:{}:{}", m.project.path, m.target_branch)),
                    ));
                }
                _ => {}
            }
            jobs
        }
        Event::Member(_) => vec![job("member", None)],
        Event::Project(_) => vec![job("project", None)],
    }
}

/// A unique name for this process's workers, used as the lease owner.
pub fn worker_owner(index: usize) -> String {
    format!(
        "{}-{}-{index}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Delay before try number `attempt + 1`: `base * 2^(attempt-1)`, at most an hour.
pub fn backoff(base: Duration, attempt: i64) -> Duration {
    let exp = attempt.clamp(1, 20) - 1;
    base.saturating_mul(1u32 << exp)
        .min(Duration::from_secs(3600))
}

/// Runs `workers` job loops until `shutdown` is cancelled, then waits for them.
pub async fn run_workers(app: App, shutdown: CancellationToken) {
    let mut tasks = Vec::new();
    for i in 0..app.settings.jobs.workers {
        let app = app.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            worker_loop(app, worker_owner(i), shutdown).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn worker_loop(app: App, owner: String, shutdown: CancellationToken) {
    let lease = app.settings.jobs.lease;
    while !shutdown.is_cancelled() {
        match app.db.claim_job(&owner, lease).await {
            Ok(Some(job)) => {
                run_claimed(&app, &owner, job, &shutdown).await;
            }
            Ok(None) => {
                let notified = app.jobs_ready.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(app.settings.jobs.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(app.settings.jobs.poll_interval * 4) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Claims and runs jobs in this task until none is ready. For tests and one-shot tools.
pub async fn run_until_idle(app: &App) -> anyhow::Result<usize> {
    let owner = worker_owner(0);
    let never = CancellationToken::new();
    let mut n = 0;
    while let Some(job) = app.db.claim_job(&owner, app.settings.jobs.lease).await? {
        run_claimed(app, &owner, job, &never).await;
        n += 1;
    }
    Ok(n)
}

/// Claims and runs at most one ready job in this task; returns whether one ran.
pub async fn run_one(app: &App) -> anyhow::Result<bool> {
    let owner = worker_owner(0);
    match app.db.claim_job(&owner, app.settings.jobs.lease).await? {
        Some(job) => {
            run_claimed(app, &owner, job, &CancellationToken::new()).await;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Runs one claimed job with a heartbeat, and records how it ended.
async fn run_claimed(app: &App, owner: &str, job: JobRow, shutdown: &CancellationToken) {
    let id = job.id();
    let span =
        tracing::info_span!("job", job.id = id.0, job.kind = %job.kind, job.attempt = job.attempts);
    async {
        if job.attempts > job.max_attempts {
            // Claimed again after its worker died too often.
            let _ = app
                .db
                .dead_letter_job(id, owner, job.last_error.as_deref().unwrap_or("lease expired too often"))
                .await;
            tracing::warn!("job dead-lettered: out of attempts");
            return;
        }
        let cancel = CancellationToken::new();
        let ctx = JobContext { id, attempt: job.attempts, max_attempts: job.max_attempts, cancel: cancel.clone() };
        let heartbeat = spawn_heartbeat(app.clone(), owner.to_owned(), id, cancel.clone());
        let started = Instant::now();

        // The handler runs in its own task, so that a bug that panics fails the job (and
        // dead-letters it after its tries) instead of taking the worker down.
        let mut work = tokio::spawn({
            let (app, ctx, job) = (app.clone(), ctx.clone(), job.clone());
            async move { handlers::dispatch(&app, &ctx, &job).await }
                .instrument(tracing::Span::current())
        });
        let joined = tokio::select! {
            r = &mut work => Some(r),
            _ = shutdown.cancelled() => {
                // Give the job its grace period, then release it.
                match tokio::time::timeout(app.settings.jobs.shutdown_grace, &mut work).await {
                    Ok(r) => Some(r),
                    Err(_) => {
                        work.abort();
                        None
                    }
                }
            }
        };
        let result = joined.map(|r| {
            r.unwrap_or_else(|e| Err(JobError::Transient(anyhow::anyhow!("the job's handler failed: {e}"))))
        });
        heartbeat.abort();
        let secs = started.elapsed().as_secs_f64();

        let outcome = match result {
            None => {
                let _ = app.db.release_job(id, owner).await;
                tracing::info!("job released at shutdown");
                "released"
            }
            Some(Ok(())) => {
                if app.db.complete_job(id, owner).await.unwrap_or(false) {
                    "done"
                } else {
                    tracing::warn!("job finished after its lease was lost");
                    "lost"
                }
            }
            Some(Err(JobError::Canceled)) => {
                let _ = app.db.cancel_job(id, owner).await;
                "canceled"
            }
            Some(Err(JobError::User(msg))) => {
                tracing::info!(error = %msg, "job failed on its input");
                let _ = app.db.fail_job(id, owner, &msg).await;
                "failed"
            }
            Some(Err(JobError::Transient(e))) => {
                let msg = format!("{e:#}");
                if job.attempts >= job.max_attempts {
                    tracing::error!(error = %msg, "job dead-lettered");
                    let _ = app.db.dead_letter_job(id, owner, &msg).await;
                    "dead"
                } else {
                    let delay = backoff(app.settings.jobs.backoff, job.attempts);
                    tracing::warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "job will be retried");
                    let run_at = crate::storage::now_ms() + delay.as_millis() as i64;
                    let _ = app.db.retry_job(id, owner, &msg, run_at).await;
                    "retry"
                }
            }
        };
        app.metrics.job_ran(&job.kind, outcome, secs);
    }
    .instrument(span)
    .await
}

fn spawn_heartbeat(
    app: App,
    owner: String,
    id: JobId,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = app.settings.jobs.lease / 3;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match app.db.heartbeat(id, &owner, app.settings.jobs.lease).await {
                Ok(Heartbeat::Held { cancel: false }) => {}
                Ok(Heartbeat::Held { cancel: true }) | Ok(Heartbeat::Lost) => {
                    cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    })
}
