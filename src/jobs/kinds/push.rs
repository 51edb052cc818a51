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
        let ref_name = format!("refs/heads/{}", self.branch);
        let recorded = ctx
            .db
            .ref_sha(project.forge.name(), &project.path, &ref_name)
            .await?;
        if let Some(recorded) = recorded.filter(|r| *r != self.before && *r != self.after)
            && self.is_older_than(ctx, &project, &recorded).await?
        {
            tracing::info!(
                "{} {ref_name}: the push to {} is older than the recorded {}; the branch stays",
                project.path,
                crate::environment::flow::short_sha(&self.after),
                crate::environment::flow::short_sha(&recorded),
            );
            return Ok(());
        }
        ctx.db
            .apply_ref_update(
                run.id,
                &RefUpdateRow {
                    job_id: run.id.0,
                    forge: project.forge,
                    project: project.path.clone(),
                    ref_name,
                    before_sha: self.before.clone(),
                    after_sha: self.after.clone(),
                },
            )
            .await?;
        Ok(())
    }
}

impl RecordPush {
    /// Whether this push is older than the branch as nbforge recorded it (`recorded`,
    /// which is neither this push's `before` nor its `after`): a delivery replayed or
    /// arriving late. A deletion is older when the branch has moved since the tip it
    /// deleted; a move is older when its commit is an ancestor of the recorded one (a
    /// force push elsewhere, whose history does not hold the recorded commit, is not).
    async fn is_older_than(
        &self,
        ctx: &Context,
        project: &ProjectRef,
        recorded: &str,
    ) -> Result<bool, JobError> {
        if self.after == ZERO_SHA {
            return Ok(true);
        }
        let forge = ctx.forges.for_kind(&project.forge);
        let mirror = ctx
            .mirrors
            .fetch_project(&*forge, project, &self.after)
            .await
            .map_err(|e| {
                if e.is_permanent() {
                    JobError::User(e.to_string())
                } else {
                    JobError::Transient(e.into())
                }
            })?;
        let path = mirror.path().to_owned();
        let (after, recorded) = (self.after.clone(), recorded.to_owned());
        let older = tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open_bare(&path).ok()?;
            let after = git2::Oid::from_str(&after).ok()?;
            let recorded = git2::Oid::from_str(&recorded).ok()?;
            repo.graph_descendant_of(recorded, after).ok()
        })
        .await
        .map_err(|e| JobError::Transient(anyhow::anyhow!("comparing commits: {e}")))?;
        drop(mirror);
        Ok(older.unwrap_or(false))
    }
}
