//! The local forge: plain bare git repositories on this machine, announced by
//! `hooks/post-receive`. Commit statuses are kept in nbforge's own database (and
//! shown through its API); refs and files are read straight from the repository.
//! Merge requests and forks do not exist on a plain git server.

use async_trait::async_trait;

use super::{
    CommitStatus, FetchSource, Forge, ForgeError, ForgeResult, GitRef, Member, MergeRequestInfo,
    NewMergeRequest, Note, ProjectId, ProjectInfo,
};
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

    async fn repo(&self, project: &ProjectId) -> ForgeResult<git2::Repository> {
        let row = self.row(project).await?;
        let url = row
            .git_url
            .ok_or_else(|| ForgeError::NotFound(format!("repository of project {project}")))?;
        let path = url.strip_prefix("file://").unwrap_or(&url).to_owned();
        git2::Repository::open_bare(&path)
            .or_else(|_| git2::Repository::open(&path))
            .map_err(|e| {
                ForgeError::NotFound(format!("repository of project {project}: {}", e.message()))
            })
    }

    /// Members recorded from member events for a scope (`project:<path>` or `group:<path>`).
    async fn members(&self, scope: &str) -> ForgeResult<Vec<Member>> {
        let rows = self
            .db
            .memberships(FORGE, scope)
            .await
            .map_err(|e| ForgeError::Unavailable(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|m| Member {
                user_id: m.user_id.unwrap_or(0),
                username: m.username,
                access_level: m.access_level,
            })
            .collect())
    }

    async fn refs(&self, project: &ProjectId, prefix: &str) -> ForgeResult<Vec<GitRef>> {
        let repo = self.repo(project).await?;
        let mut out = Vec::new();
        let refs = repo
            .references_glob(&format!("{prefix}*"))
            .map_err(|e| ForgeError::Other(e.message().to_owned()))?;
        for r in refs.flatten() {
            let (Ok(name), Ok(commit)) = (r.name(), r.peel_to_commit()) else {
                continue;
            };
            out.push(GitRef {
                name: name.trim_start_matches(prefix).to_owned(),
                commit: commit.id().to_string(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[async_trait]
impl Forge for LocalForge {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn project(&self, project: &ProjectId) -> ForgeResult<ProjectInfo> {
        let row = self.row(project).await?;
        Ok(ProjectInfo {
            id: row.forge_id.unwrap_or(0),
            path_with_namespace: row.path.clone(),
            web_url: row.web_url.clone().unwrap_or_default(),
            http_url_to_repo: row.git_url.clone().unwrap_or_default(),
            default_branch: row.default_branch,
        })
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

    async fn list_branches(&self, project: &ProjectId) -> ForgeResult<Vec<GitRef>> {
        self.refs(project, "refs/heads/").await
    }

    async fn list_tags(&self, project: &ProjectId) -> ForgeResult<Vec<GitRef>> {
        self.refs(project, "refs/tags/").await
    }

    async fn read_file(
        &self,
        project: &ProjectId,
        git_ref: &str,
        path: &str,
    ) -> ForgeResult<Vec<u8>> {
        let repo = self.repo(project).await?;
        let not_found = || ForgeError::NotFound(format!("{path} at {git_ref}"));
        let commit = repo
            .revparse_single(git_ref)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| not_found())?;
        let tree = commit.tree().map_err(|_| not_found())?;
        let entry = tree
            .get_path(std::path::Path::new(path))
            .map_err(|_| not_found())?;
        let blob = entry
            .to_object(&repo)
            .and_then(|o| o.peel_to_blob())
            .map_err(|_| not_found())?;
        Ok(blob.content().to_vec())
    }

    async fn list_project_members(&self, project: &ProjectId) -> ForgeResult<Vec<Member>> {
        let path = self.row(project).await?.path;
        self.members(&format!("project:{path}")).await
    }

    async fn list_group_members(&self, group: &str) -> ForgeResult<Vec<Member>> {
        self.members(&format!("group:{group}")).await
    }

    async fn create_fork(&self, _: &ProjectId, _: &str) -> ForgeResult<ProjectInfo> {
        Err(ForgeError::Unsupported("forks"))
    }

    async fn create_merge_request(
        &self,
        _: &ProjectId,
        _: &NewMergeRequest,
    ) -> ForgeResult<MergeRequestInfo> {
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
