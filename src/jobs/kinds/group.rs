//! `sync-group`: a group deleted or renamed (GitLab `group_destroy`, `group_rename`).
//!
//! A deleted group takes the memberships of its subgroups and their projects with it
//! (the projects themselves go by their own `project_destroy` hooks, or when the
//! reconciler finds them gone). A renamed group moves the memberships, and the projects
//! under it (refs, releases, merge requests…, as a project rename does), to its new
//! path: GitLab sends no project hook for them.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, GroupAction};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, ProjectRow, group_scope};

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
                let forge = self.forge.name();
                for p in ctx.db.projects_of_forge(forge).await? {
                    let Some(rest) = p
                        .path
                        .strip_prefix(old_full_path.as_str())
                        .and_then(|r| r.strip_prefix('/'))
                    else {
                        continue;
                    };
                    let old_path = p.path.clone();
                    let moved = ProjectRow {
                        path: format!("{}/{rest}", self.full_path),
                        ..p
                    };
                    ctx.db.rename_project(forge, &old_path, &moved).await?;
                }
                ctx.db
                    .move_group_members(self.forge, old_full_path, &self.full_path)
                    .await?;
            }
        }
        Ok(())
    }
}
