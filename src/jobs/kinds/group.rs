//! `sync-group`: a group deleted or renamed (GitLab `group_destroy`, `group_rename`).
//!
//! A deleted group takes the memberships of its subgroups and their projects with it; a
//! renamed group moves them under its new path. Projects themselves are not touched
//! here: GitLab sends a hook per project, and the reconciler finds the rest.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, GroupAction};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, group_scope};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncGroup {
    pub forge: ForgeKind,
    pub action: GroupAction,
    /// The group's full path (for a rename, the new one).
    pub full_path: String,
}

impl Job for SyncGroup {
    const KIND: JobKind = JobKind::SyncGroup;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(group_scope(&self.full_path)),
            ..Subject::default()
        }
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        match &self.action {
            GroupAction::Destroyed => {
                let gone = ctx
                    .db
                    .delete_group_members(self.forge, &self.full_path)
                    .await?;
                tracing::info!(
                    "group {} deleted: {gone} memberships removed",
                    self.full_path
                );
            }
            GroupAction::Renamed { old_full_path } => {
                ctx.db
                    .move_group_members(self.forge, old_full_path, &self.full_path)
                    .await?;
            }
        }
        Ok(())
    }
}
