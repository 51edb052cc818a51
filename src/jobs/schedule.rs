//! Recurring jobs through the durable queue.
//!
//! Each schedule is a job with a period. Every `nbforge serve` process ticks; one atomic
//! update of the schedule's row decides which process enqueues each period's job (see
//! [`crate::storage::Db::fire_schedule`]), so each period runs once across processes, and
//! after downtime a missed period runs once on start. Scheduled jobs are ordinary jobs:
//! retried, dead-lettered and listed in `/api/jobs` like the others.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::kinds::{Cleanup, CullSessions, Reconcile};
use super::{Context, Job};
use crate::config::Settings;
use crate::storage::{JobId, NewJob};

/// Longest wait between two ticks.
const MAX_TICK: Duration = Duration::from_secs(30);

/// A job enqueued once per period.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// The schedule's name: the job's kind.
    pub name: &'static str,
    pub period: Duration,
    pub job: NewJob,
}

impl Scheduled {
    /// `job` every `period`.
    pub fn every<J: Job>(period: Duration, job: J, settings: &Settings) -> Scheduled {
        Scheduled {
            name: J::KIND.as_str(),
            period,
            job: job.to_new_job(settings.jobs.max_attempts),
        }
    }
}

/// The recurring jobs, one line each.
pub fn schedules(settings: &Settings) -> Vec<Scheduled> {
    let gitlab = settings.forges.gitlab_url.is_some() && settings.forges.gitlab_token.is_some();
    let mut all = vec![
        Scheduled::every(settings.jobs.cleanup_period, Cleanup {}, settings),
        Scheduled::every(settings.lifecycle.cull_period, CullSessions {}, settings),
    ];
    all.extend(
        (settings.jobs.reconcile_interval)
            .filter(|_| gitlab)
            .map(|every| Scheduled::every(every, Reconcile::default(), settings)),
    );
    all
}

/// Records the schedules (a new one is due at once), then enqueues the job of each one
/// whose period has come, unless another process did. Returns the jobs enqueued here.
pub async fn tick(ctx: &Context, schedules: &[Scheduled]) -> anyhow::Result<Vec<JobId>> {
    let mut enqueued = Vec::new();
    for s in schedules {
        ctx.db.register_schedule(s.name, s.period).await?;
        if let Some(id) = ctx.db.fire_schedule(s.name, &s.job).await? {
            tracing::info!(job.id = id.0, "schedule {}: job {id} enqueued", s.name);
            enqueued.push(id);
        }
    }
    if !enqueued.is_empty() {
        ctx.jobs_ready.notify_waiters();
    }
    Ok(enqueued)
}

/// Ticks until `shutdown`: at start, then at least every [`MAX_TICK`].
pub async fn run_ticker(ctx: Context, shutdown: CancellationToken) {
    let schedules = schedules(&ctx.settings);
    let every = schedules
        .iter()
        .map(|s| s.period)
        .min()
        .unwrap_or(MAX_TICK)
        .clamp(Duration::from_millis(100), MAX_TICK);
    while !shutdown.is_cancelled() {
        if let Err(e) = tick(&ctx, &schedules).await {
            tracing::warn!("schedules: tick failed, trying again: {e:#}");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
