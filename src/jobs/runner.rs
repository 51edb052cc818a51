//! Workers: claim a job with a lease, keep the lease with a heartbeat, run the job's
//! type from the registry, and record how it ended.
//!
//! A job whose worker died is claimed again once its lease runs out. Failures caused by
//! the input are recorded and not retried; other failures are retried with exponential
//! backoff and dead-lettered after `max_attempts` tries. On shutdown, workers stop
//! claiming, give running jobs a grace period, then release what is left so another
//! process picks it up at once. A row whose kind is unknown, or whose arguments do not
//! read, fails at once with that reason.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::kinds::{
    Cleanup, CullSessions, PrepareEnvironment, PublishTag, Reconcile, RecordMember, RecordPush,
    RunWorksheet, SyncGroup, SyncMergeRequest, SyncProject, SyncUser,
};
use super::{Context, Job, JobError, Run, Subject};
use crate::storage::{Heartbeat, JobId, JobKind, JobRow, Pool};

/// A job read back from its row, ready to run.
trait Runnable: Send + Sync {
    fn subject(&self) -> Subject;
    fn time_limit(&self, settings: &crate::config::Settings) -> Duration;
    fn run<'a>(&'a self, ctx: &'a Context, run: &'a Run) -> BoxFuture<'a, Result<(), JobError>>;
}

impl<J: Job> Runnable for J {
    fn subject(&self) -> Subject {
        Job::subject(self)
    }

    fn time_limit(&self, settings: &crate::config::Settings) -> Duration {
        J::time_limit(settings)
    }

    fn run<'a>(&'a self, ctx: &'a Context, run: &'a Run) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(Job::run(self, ctx, run))
    }
}

type Load = fn(&str) -> Result<Box<dyn Runnable>, serde_json::Error>;

fn load<J: Job>(args: &str) -> Result<Box<dyn Runnable>, serde_json::Error> {
    Ok(Box::new(serde_json::from_str::<J>(args)?))
}

/// The job types a runner knows, by kind.
#[derive(Default)]
pub struct Registry {
    loaders: HashMap<JobKind, Load>,
}

impl Registry {
    pub fn register<J: Job>(mut self) -> Registry {
        self.loaders.insert(J::KIND, load::<J>);
        self
    }

    /// Reads a claimed row into its job, or says why it cannot run.
    fn load(&self, row: &JobRow) -> Result<Box<dyn Runnable>, String> {
        let kind = row.kind.clone().map_err(|e| e.to_string())?;
        let load = self
            .loaders
            .get(&kind)
            .ok_or_else(|| format!("no runner for job kind {kind}"))?;
        load(&row.args).map_err(|e| format!("the arguments of this {kind} job do not read: {e}"))
    }
}

/// Every job type nbforge runs.
pub fn registry() -> Registry {
    Registry::default()
        .register::<RecordPush>()
        .register::<PublishTag>()
        .register::<PrepareEnvironment>()
        .register::<SyncMergeRequest>()
        .register::<RecordMember>()
        .register::<SyncProject>()
        .register::<Cleanup>()
        .register::<SyncGroup>()
        .register::<SyncUser>()
        .register::<Reconcile>()
        .register::<CullSessions>()
        .register::<RunWorksheet>()
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(registry);

/// A unique name for this process's workers, used as the lease owner.
pub fn worker_owner(index: usize) -> String {
    format!(
        "{}-{}-{index}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Delay before try number `attempt + 1`: `base * 2^(attempt-1)`, at most `max`.
pub fn backoff(base: Duration, max: Duration, attempt: i64) -> Duration {
    let exp = attempt.clamp(1, 20) - 1;
    base.saturating_mul(1u32 << exp).min(max)
}

/// Runs the configured number of job loops, and the schedule ticker, until `shutdown`
/// is cancelled; then waits for them.
pub async fn run_workers(ctx: Context, shutdown: CancellationToken) {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(super::schedule::run_ticker(
        ctx.clone(),
        shutdown.clone(),
    )));
    let general = ctx.settings.jobs.workers;
    // One build worker per build slot: a build job is only claimed by a worker that can
    // build now, and waits in the queue (not in a worker) otherwise.
    let builds = if general > 0 && ctx.settings.environments.enabled {
        ctx.settings.environments.build_concurrency.max(1)
    } else {
        0
    };
    // One run worker per run allowed at once: runs wait in the queue, not in a worker.
    let runs = if general > 0 {
        ctx.settings.runs.max
    } else {
        0
    };
    let pools = std::iter::repeat_n(Pool::General, general)
        .chain(std::iter::repeat_n(Pool::Builds, builds))
        .chain(std::iter::repeat_n(Pool::Runs, runs));
    for (i, pool) in pools.enumerate() {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            worker_loop(ctx, worker_owner(i), pool, shutdown).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn worker_loop(ctx: Context, owner: String, pool: Pool, shutdown: CancellationToken) {
    let jobs = &ctx.settings.jobs;
    while !shutdown.is_cancelled() {
        match ctx.db.claim_job_in(&owner, jobs.lease, pool).await {
            Ok(Some(job)) => {
                run_claimed(&ctx, &owner, job, &shutdown).await;
            }
            Ok(None) => {
                let notified = ctx.jobs_ready.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(jobs.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming a job failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(jobs.poll_interval * 4) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// Claims and runs jobs in this task until none is ready. For tests and one-shot tools.
pub async fn run_until_idle(ctx: &Context) -> anyhow::Result<usize> {
    let owner = worker_owner(0);
    let never = CancellationToken::new();
    let mut n = 0;
    while let Some(job) = ctx.db.claim_job(&owner, ctx.settings.jobs.lease).await? {
        run_claimed(ctx, &owner, job, &never).await;
        n += 1;
    }
    Ok(n)
}

/// Claims and runs at most one ready job in this task; returns whether one ran.
pub async fn run_one(ctx: &Context) -> anyhow::Result<bool> {
    let owner = worker_owner(0);
    match ctx.db.claim_job(&owner, ctx.settings.jobs.lease).await? {
        Some(job) => {
            run_claimed(ctx, &owner, job, &CancellationToken::new()).await;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// How a run ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Lost,
    Released,
    Canceled,
    Failed,
    Retry,
    Dead,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Lost => "lost",
            Outcome::Released => "released",
            Outcome::Canceled => "canceled",
            Outcome::Failed => "failed",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
        }
    }
}

/// How long a job asked to stop at its time limit has to finish before it is aborted (at
/// most its time limit again).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs one claimed job with a heartbeat, and records how it ended.
async fn run_claimed(ctx: &Context, owner: &str, row: JobRow, shutdown: &CancellationToken) {
    let id = row.id();
    let kind = row.kind_name().to_owned();
    let loaded = REGISTRY.load(&row);
    let subject = loaded.as_ref().map(|j| j.subject()).unwrap_or_default();
    let name = format!("job {id} ({kind} {subject})");
    let span = tracing::info_span!(
        "job",
        job.id = id.0,
        job.kind = %kind,
        job.attempt = row.attempts,
        forge.project = subject.project.as_deref(),
        "git.ref" = subject.git_ref.as_deref(),
        git.commit = subject.commit.as_deref(),
    );
    let started = Instant::now();
    let outcome = async {
        let job = match loaded {
            Ok(job) => job,
            Err(why) => {
                tracing::error!("{name} failed: {why}");
                let _ = ctx.db.fail_job(id, owner, &why).await;
                return Outcome::Failed;
            }
        };
        if row.attempts > row.max_attempts {
            // Claimed again after its worker died too often.
            let why = row
                .last_error
                .as_deref()
                .unwrap_or("lease expired too often");
            tracing::error!(
                "{name} dead-lettered after {} tries: {why}",
                row.max_attempts
            );
            let _ = ctx.db.dead_letter_job(id, owner, why).await;
            return Outcome::Dead;
        }
        let run = Run {
            id,
            attempt: row.attempts,
            max_attempts: row.max_attempts,
            cancel: CancellationToken::new(),
        };
        if row.cancel_requested != 0 {
            // Superseded while an earlier try ran, then claimed again after its lease ran out.
            run.cancel.cancel();
        }
        let heartbeat = spawn_heartbeat(ctx.clone(), owner.to_owned(), id, run.cancel.clone());
        let limit = job.time_limit(&ctx.settings);

        // The job runs in its own task, so that a bug that panics fails the job (and
        // dead-letters it after its tries) instead of taking the worker down.
        let mut work = tokio::spawn({
            let (ctx, run) = (ctx.clone(), run.clone());
            async move {
                if run.cancel.is_cancelled() {
                    return Err(JobError::Canceled);
                }
                job.run(&ctx, &run).await
            }
            .instrument(tracing::Span::current())
        });
        let joined = tokio::select! {
            r = &mut work => Some(r),
            _ = tokio::time::sleep(limit) => {
                // Ask it to stop, give it a moment to tidy up, then stop it.
                run.cancel.cancel();
                match tokio::time::timeout(STOP_GRACE.min(limit), &mut work).await {
                    Ok(Ok(Ok(()))) => Some(Ok(Ok(()))),
                    _ => {
                        work.abort();
                        tracing::warn!(
                            "{name} ran longer than {} s and was stopped",
                            limit.as_secs()
                        );
                        Some(Ok(Err(JobError::Transient(anyhow::anyhow!(
                            "stopped after running longer than {} s (NBFORGE_JOB_TIMEOUT_SECS)",
                            limit.as_secs()
                        )))))
                    }
                }
            }
            _ = shutdown.cancelled() => {
                // Give the job its grace period, then release it.
                match tokio::time::timeout(ctx.settings.jobs.shutdown_grace, &mut work).await {
                    Ok(r) => Some(r),
                    Err(_) => {
                        work.abort();
                        None
                    }
                }
            }
        };
        heartbeat.abort();
        let result = joined.map(|r| {
            r.unwrap_or_else(|e| {
                Err(JobError::Transient(anyhow::anyhow!(
                    "the job's task failed: {e}"
                )))
            })
        });
        record(ctx, owner, &row, &name, result).await
    }
    .instrument(span)
    .await;
    // Unknown kinds share one label, so that stored rows cannot grow the number of series.
    let label = row.kind.as_ref().map_or("unknown", |k| k.as_str());
    ctx.metrics
        .job_ran(label, outcome.label(), started.elapsed().as_secs_f64());
}

/// The one place where a job's result becomes its next state.
async fn record(
    ctx: &Context,
    owner: &str,
    row: &JobRow,
    name: &str,
    result: Option<Result<(), JobError>>,
) -> Outcome {
    let (db, id) = (&ctx.db, row.id());
    match result {
        None => {
            let _ = db.release_job(id, owner).await;
            tracing::info!("{name} released at shutdown");
            Outcome::Released
        }
        Some(Ok(())) => {
            if db.complete_job(id, owner).await.unwrap_or(false) {
                tracing::debug!("{name} done");
                Outcome::Done
            } else {
                tracing::warn!("{name} finished after its lease was lost");
                Outcome::Lost
            }
        }
        Some(Err(JobError::Canceled)) => {
            let _ = db.cancel_job(id, owner).await;
            tracing::info!("{name} canceled: superseded");
            Outcome::Canceled
        }
        Some(Err(JobError::User(msg))) => {
            tracing::info!("{name} failed on its input: {msg}");
            let _ = db.fail_job(id, owner, &msg).await;
            Outcome::Failed
        }
        Some(Err(JobError::Transient(e))) => {
            let msg = format!("{e:#}");
            if row.attempts >= row.max_attempts {
                tracing::error!("{name} dead-lettered after {} tries: {msg}", row.attempts);
                let _ = db.dead_letter_job(id, owner, &msg).await;
                Outcome::Dead
            } else {
                let jobs = &ctx.settings.jobs;
                let delay = backoff(jobs.backoff, jobs.backoff_max, row.attempts);
                tracing::warn!(
                    "{name} failed (try {} of {}), retrying in {delay:?}: {msg}",
                    row.attempts,
                    row.max_attempts
                );
                let _ = db.retry_job(id, owner, &msg, delay).await;
                Outcome::Retry
            }
        }
    }
}

fn spawn_heartbeat(
    ctx: Context,
    owner: String,
    id: JobId,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let lease = ctx.settings.jobs.lease;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(lease / 3).await;
            match ctx.db.heartbeat(id, &owner, lease).await {
                Ok(Heartbeat::Held { cancel: false }) => {}
                Ok(Heartbeat::Held { cancel: true }) | Ok(Heartbeat::Lost) => {
                    cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "job {id}: heartbeat failed"),
            }
        }
    })
}
