//! `cull-sessions` (scheduled, every `NBFORGE_SESSION_CULL_PERIOD_SECS`): stops idle and
//! old Jupyter sessions, removes sessions that ended on their own once kept long enough,
//! and records sessions by state and their CPU and memory in the metrics (see
//! [`crate::sessions::lifecycle::cull`]).

use serde::{Deserialize, Serialize};

use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::sessions::lifecycle;
use crate::storage::JobKind;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CullSessions {}

impl Job for CullSessions {
    const KIND: JobKind = JobKind::CullSessions;

    fn subject(&self) -> Subject {
        Subject::default()
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let report = lifecycle::cull(ctx.sessions.as_ref(), &ctx.settings.lifecycle, &ctx.metrics)
            .await
            .map_err(|e| JobError::Transient(e.into()))?;
        if !report.culled.is_empty() {
            tracing::info!(
                "cull-sessions stopped {} of {} sessions",
                report.culled.len(),
                report.sessions
            );
        }
        Ok(())
    }

    /// A pass that takes longer than its period is stuck on the runtime: try again later.
    fn time_limit(settings: &crate::config::Settings) -> std::time::Duration {
        settings
            .lifecycle
            .cull_period
            .max(std::time::Duration::from_secs(60))
            * 4
    }
}
