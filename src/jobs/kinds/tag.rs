//! `publish-tag`: a tag moved; record it and publish (or withdraw) its worksheets.

use serde::{Deserialize, Serialize};

use super::{ZERO_SHA, project_row, verified};
use crate::events::{ForgeKind, ProjectRef};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, RefUpdateRow};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishTag {
    pub forge: ForgeKind,
    pub project: ProjectRef,
    pub tag: String,
    /// The tagged commit; None when the tag was deleted.
    pub commit: Option<String>,
}

impl Job for PublishTag {
    const KIND: JobKind = JobKind::PublishTag;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(self.project.path.clone()),
            git_ref: Some(format!("refs/tags/{}", self.tag)),
            commit: self.commit.clone(),
        }
    }

    fn supersede_key(&self) -> Option<String> {
        Some(format!(
            "tag:{}:{}:{}",
            self.forge.name(),
            self.project.path,
            self.tag
        ))
    }

    async fn run(&self, ctx: &Context, run: &Run) -> Result<(), JobError> {
        let db = &ctx.db;
        let project = verified(ctx, &self.project).await?;
        db.upsert_project(&project_row(&project)).await?;
        let ref_name = format!("refs/tags/{}", self.tag);
        let forge = project.forge.name();
        // Publish first: a delivery the repository contradicts changes nothing, not even
        // the recorded tag.
        let published = crate::catalog::publish(
            db,
            &ctx.mirrors,
            &*ctx.forges.for_kind(&project.forge),
            &project,
            &self.tag,
            self.commit.as_deref(),
        )
        .await?;
        let Some(published) = published else {
            match &self.commit {
                Some(commit) => tracing::info!(
                    "{} {ref_name}: the repository's tag is no longer at {commit}; nothing published",
                    project.path,
                ),
                None => tracing::info!(
                    "{} {ref_name}: the repository still has the tag; nothing withdrawn",
                    project.path,
                ),
            }
            return Ok(());
        };
        let before = db
            .ref_sha(forge, &project.path, &ref_name)
            .await?
            .unwrap_or_else(|| ZERO_SHA.to_owned());
        db.apply_ref_update(
            run.id,
            &RefUpdateRow {
                job_id: run.id.0,
                forge: project.forge,
                project: project.path.clone(),
                ref_name,
                before_sha: before,
                after_sha: self.commit.clone().unwrap_or_else(|| ZERO_SHA.to_owned()),
            },
        )
        .await?;
        match &self.commit {
            Some(_) => tracing::info!(
                "release {} {} published with {published} worksheets",
                project.path,
                self.tag
            ),
            None => tracing::info!("release {} {} withdrawn", project.path, self.tag),
        }
        Ok(())
    }
}
