//! `sync-project`: a project created, updated (its visibility), destroyed, renamed,
//! transferred or forked.

use serde::{Deserialize, Serialize};

use super::project_row;
use crate::events::{ProjectAction, ProjectRef};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::JobKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProject {
    pub action: ProjectAction,
    pub project: ProjectRef,
}

impl Job for SyncProject {
    const KIND: JobKind = JobKind::SyncProject;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(self.project.path.clone()),
            ..Subject::default()
        }
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let db = &ctx.db;
        let forge = self.project.forge.name();
        match &self.action {
            ProjectAction::Created | ProjectAction::Updated => {
                db.upsert_project(&project_row(&self.project)).await?
            }
            ProjectAction::Destroyed => db.delete_project(forge, &self.project.path).await?,
            ProjectAction::Renamed { old_path } | ProjectAction::Transferred { old_path } => {
                db.rename_project(forge, old_path, &project_row(&self.project))
                    .await?
            }
            ProjectAction::Forked { from } => {
                let mut row = project_row(&self.project);
                row.forked_from = Some(from.path.clone());
                db.upsert_project(&row).await?
            }
        }
        Ok(())
    }
}
