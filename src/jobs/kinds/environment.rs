//! `prepare-environment`: the environment image of a commit, reported as its status.

use serde::{Deserialize, Serialize};

use super::{project_row, verified};
use crate::environment::flow::{self, EnvironmentRequest, PrepareError};
use crate::events::{ForgeKind, ProjectRef};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::JobKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareEnvironment {
    /// The forge the event came from.
    pub forge: ForgeKind,
    /// Where the commit lives (for a merge request from a fork: the fork).
    pub project: ProjectRef,
    pub commit: String,
    /// Branch the commit was pushed to, when known.
    pub ref_name: Option<String>,
    /// What newer work replaces this one: a branch (`env:gitlab:lab/x:main`) or a merge
    /// request (`env:mr:gitlab:lab/x:7`).
    pub key: String,
}

impl PrepareEnvironment {
    /// The key of a branch's environment.
    pub fn branch_key(forge: ForgeKind, project: &str, branch: &str) -> String {
        format!("env:{}:{project}:{branch}", forge.name())
    }

    /// The key of a merge request's environment.
    pub fn merge_request_key(forge: ForgeKind, project: &str, iid: i64) -> String {
        format!("env:mr:{}:{project}:{iid}", forge.name())
    }

    /// The target project and iid of the merge request this environment is for, if any.
    pub fn merge_request(&self) -> Option<(String, i64)> {
        let rest = self
            .key
            .strip_prefix(&format!("env:mr:{}:", self.forge.name()))?;
        let (project, iid) = rest.rsplit_once(':')?;
        Some((project.to_owned(), iid.parse().ok()?))
    }
}

impl Job for PrepareEnvironment {
    const KIND: JobKind = JobKind::PrepareEnvironment;

    /// The build's own timeout, plus time to fetch, analyze and report.
    fn time_limit(settings: &crate::config::Settings) -> std::time::Duration {
        settings.environments.build_timeout + std::time::Duration::from_secs(300)
    }

    fn subject(&self) -> Subject {
        Subject {
            project: Some(self.project.path.clone()),
            git_ref: self.ref_name.as_ref().map(|b| format!("refs/heads/{b}")),
            commit: Some(self.commit.clone()),
        }
    }

    fn supersede_key(&self) -> Option<String> {
        Some(self.key.clone())
    }

    async fn run(&self, ctx: &Context, run: &Run) -> Result<(), JobError> {
        // The push or merge request job records the project too, but may run after this
        // one; the local forge finds repositories through this row.
        let project = verified(ctx, &self.project).await?;
        ctx.db.upsert_project(&project_row(&project)).await?;
        let req = EnvironmentRequest {
            forge_name: self.forge.name().to_owned(),
            project,
            ref_name: self.ref_name.clone(),
            commit: self.commit.clone(),
        };
        let preparer = ctx.preparer(self.project.forge);
        match flow::prepare(&preparer, run.id, &run.cancel, &req).await {
            Ok(env) => {
                tracing::info!(
                    "environment of {}@{} ready: {}{}",
                    self.project.path,
                    flow::short_sha(&self.commit),
                    env.image,
                    if env.cached { " (cached)" } else { "" }
                );
                Ok(())
            }
            Err(PrepareError::Infrastructure(e)) => {
                let message = format!("{e:#}");
                flow::report_infrastructure(
                    &preparer,
                    &req,
                    &message,
                    run.attempt,
                    run.max_attempts,
                )
                .await;
                Err(PrepareError::Infrastructure(e).into())
            }
            Err(PrepareError::User(message)) => {
                // A merge request's note says why too, with the file and line.
                if let Some((project, iid)) = self.merge_request() {
                    let noted = super::merge_request::note_failure(
                        ctx,
                        self.forge,
                        &project,
                        iid,
                        &self.commit,
                        &message,
                    )
                    .await;
                    if let Err(e) = noted {
                        tracing::warn!("noting the failure on {project}!{iid}: {e}");
                    }
                }
                Err(PrepareError::User(message).into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
