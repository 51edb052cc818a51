//! `record-push`: a branch moved (or was created or deleted).

use serde::{Deserialize, Serialize};

use super::{ZERO_SHA, project_row, verified};
use crate::events::{ForgeKind, ProjectRef};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, RefUpdateRow};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPush {
    pub forge: ForgeKind,
    pub project: ProjectRef,
    pub branch: String,
    pub before: String,
    /// Zeros when the branch was deleted.
    pub after: String,
}

impl Job for RecordPush {
    const KIND: JobKind = JobKind::RecordPush;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(self.project.path.clone()),
            git_ref: Some(format!("refs/heads/{}", self.branch)),
            commit: (self.after != ZERO_SHA).then(|| self.after.clone()),
        }
    }

    fn supersede_key(&self) -> Option<String> {
        Some(format!(
            "push:{}:{}:{}",
            self.forge.name(),
            self.project.path,
            self.branch
        ))
    }

    async fn run(&self, ctx: &Context, run: &Run) -> Result<(), JobError> {
        let project = verified(ctx, &self.project).await?;
        ctx.db.upsert_project(&project_row(&project)).await?;
        ctx.db
            .apply_ref_update(
                run.id,
                &RefUpdateRow {
                    job_id: run.id.0,
                    forge: project.forge,
                    project: project.path.clone(),
                    ref_name: format!("refs/heads/{}", self.branch),
                    before_sha: self.before.clone(),
                    after_sha: self.after.clone(),
                },
            )
            .await?;
        Ok(())
    }
}
