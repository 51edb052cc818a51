//! The local forge: plain bare git repositories on this machine, announced by
//! `hooks/post-receive`. Commit statuses are kept in nbforge's own database (and
//! shown through its API); projects are fetched straight from their repository.
//! Merge requests do not exist on a plain git server.

use async_trait::async_trait;

use super::{CommitStatus, FetchSource, Forge, ForgeError, ForgeResult, Note, ProjectId};
use crate::storage::{Db, LocalStatusRow, ProjectRow};

/// Projects heard of through GitLab-shaped events are recorded under this forge name.
const FORGE: &str = "gitlab";

pub struct LocalForge {
    db: Db,
}

impl LocalForge {
    pub fn new(db: Db) -> LocalForge {
        LocalForge { db }
    }

    async fn row(&self, project: &ProjectId) -> ForgeResult<ProjectRow> {
        let found = match project {
            ProjectId::Path(path) => self.db.get_project(FORGE, path).await,
            ProjectId::Id(id) => self.db.get_project_by_forge_id(FORGE, *id).await,
        }
        .map_err(|e| ForgeError::Unavailable(e.to_string()))?;
        found.ok_or_else(|| ForgeError::NotFound(format!("project {project}")))
    }
}

#[async_trait]
impl Forge for LocalForge {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn set_commit_status(
        &self,
        project: &ProjectId,
        sha: &str,
        status: &CommitStatus,
    ) -> ForgeResult<()> {
        let path = self.row(project).await?.path;
        self.db
            .insert_local_status(&LocalStatusRow {
                project: path,
                sha: sha.to_owned(),
                name: status.name.clone(),
                state: status.state.as_str().to_owned(),
                ref_name: status.ref_name.clone(),
                target_url: status.target_url.clone(),
                description: status.description.clone(),
            })
            .await
            .map_err(|e| ForgeError::Unavailable(e.to_string()))
    }

    async fn list_merge_request_notes(&self, _: &ProjectId, _: i64) -> ForgeResult<Vec<Note>> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    async fn create_merge_request_note(&self, _: &ProjectId, _: i64, _: &str) -> ForgeResult<Note> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    async fn edit_merge_request_note(
        &self,
        _: &ProjectId,
        _: i64,
        _: i64,
        _: &str,
    ) -> ForgeResult<Note> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    async fn fetch_source(&self, project: &ProjectId) -> ForgeResult<FetchSource> {
        let row = self.row(project).await?;
        let url = row
            .git_url
            .ok_or_else(|| ForgeError::NotFound(format!("repository of project {project}")))?;
        Ok(FetchSource {
            url,
            credentials: None,
        })
    }
}
