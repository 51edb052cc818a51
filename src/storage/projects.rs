//! Projects, their refs, merge requests and the local forge's commit statuses.

use serde::Serialize;
use sqlx::FromRow;

use super::*;
use crate::events::ForgeKind;

/// A ref update applied by a push job; one row per job, so re-running a job after
/// a crash records nothing twice.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct RefUpdateRow {
    pub job_id: i64,
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub ref_name: String,
    pub before_sha: String,
    pub after_sha: String,
}

/// A project as nbforge last heard of it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct ProjectRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub path: String,
    pub forge_id: Option<i64>,
    pub web_url: Option<String>,
    pub git_url: Option<String>,
    pub default_branch: Option<String>,
    pub forked_from: Option<String>,
    /// `public`, `internal` or `private`; `None` until the forge has said.
    pub visibility: Option<String>,
}

impl ProjectRow {
    /// The project's visibility, when known.
    pub fn visibility(&self) -> Option<crate::events::Visibility> {
        self.visibility
            .as_deref()
            .map(crate::events::Visibility::parse)
    }
}

/// A merge request as nbforge last heard of it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct MergeRequestRow {
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub iid: i64,
    pub source_project: String,
    pub source_branch: String,
    pub target_branch: String,
    pub head_sha: String,
    pub state: String,
    pub title: String,
}

/// A commit status recorded by the local forge.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct LocalStatusRow {
    pub project: String,
    pub sha: String,
    pub name: String,
    pub state: String,
    pub ref_name: Option<String>,
    pub target_url: Option<String>,
    pub description: Option<String>,
}

impl Db {
    /// Records a branch or tag moving from `before` to `after` (zeros: created or deleted).
    pub async fn apply_ref_update(&self, job: JobId, u: &RefUpdateRow) -> DbResult<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO ref_updates (job_id, forge, project, ref_name, before_sha, after_sha, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(job.0)
        .bind(u.forge.name())
        .bind(&u.project)
        .bind(&u.ref_name)
        .bind(&u.before_sha)
        .bind(&u.after_sha)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() == 1 {
            if u.after_sha.bytes().all(|b| b == b'0') {
                sqlx::query("DELETE FROM refs WHERE forge = $1 AND project = $2 AND ref_name = $3")
                    .bind(u.forge.name())
                    .bind(&u.project)
                    .bind(&u.ref_name)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO refs (forge, project, ref_name, sha, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (forge, project, ref_name) DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at",
                )
                .bind(u.forge.name())
                .bind(&u.project)
                .bind(&u.ref_name)
                .bind(&u.after_sha)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn ref_updates_for_job(&self, job: JobId) -> DbResult<Vec<RefUpdateRow>> {
        Ok(sqlx::query_as(
            "SELECT job_id, forge, project, ref_name, before_sha, after_sha FROM ref_updates WHERE job_id = $1",
        )
        .bind(job.0)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_ref_updates(&self) -> DbResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ref_updates")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// The commit a branch or tag points to, as last pushed.
    pub async fn ref_sha(
        &self,
        forge: &str,
        project: &str,
        ref_name: &str,
    ) -> DbResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT sha FROM refs WHERE forge = $1 AND project = $2 AND ref_name = $3",
        )
        .bind(forge)
        .bind(project)
        .bind(ref_name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn upsert_project(&self, p: &ProjectRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO projects (forge, path, forge_id, web_url, git_url, default_branch, forked_from, visibility, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (forge, path) DO UPDATE SET
                forge_id = COALESCE(excluded.forge_id, projects.forge_id),
                web_url = COALESCE(excluded.web_url, projects.web_url),
                git_url = COALESCE(excluded.git_url, projects.git_url),
                default_branch = COALESCE(excluded.default_branch, projects.default_branch),
                forked_from = COALESCE(excluded.forked_from, projects.forked_from),
                visibility = COALESCE(excluded.visibility, projects.visibility),
                updated_at = excluded.updated_at",
        )
        .bind(p.forge.name())
        .bind(&p.path)
        .bind(p.forge_id)
        .bind(p.web_url.as_deref())
        .bind(p.git_url.as_deref())
        .bind(p.default_branch.as_deref())
        .bind(p.forked_from.as_deref())
        .bind(p.visibility.as_deref())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_project(&self, forge: &str, path: &str) -> DbResult<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from, visibility
             FROM projects WHERE forge = $1 AND path = $2",
        )
        .bind(forge)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every project of one forge, by path (what the membership reconciler reads, and
    /// what a group rename moves).
    pub async fn projects_of_forge(&self, forge: &str) -> DbResult<Vec<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from, visibility
             FROM projects WHERE forge = $1 ORDER BY path",
        )
        .bind(forge)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The project whose clone or web URL is `url` (`.git` and a trailing `/` ignored):
    /// how BinderHub's `/v2/git/<url>/<ref>` names a repository.
    pub async fn project_by_url(&self, url: &str) -> DbResult<Option<ProjectRow>> {
        let bare = url.trim_end_matches('/');
        let bare = bare.strip_suffix(".git").unwrap_or(bare);
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from, visibility
             FROM projects WHERE git_url = $1 OR git_url = $2 OR web_url = $1 OR web_url = $3
             ORDER BY forge, path LIMIT 1",
        )
        .bind(bare)
        .bind(format!("{bare}.git"))
        .bind(format!("{bare}/"))
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_project_by_forge_id(
        &self,
        forge: &str,
        forge_id: i64,
    ) -> DbResult<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from, visibility
             FROM projects WHERE forge = $1 AND forge_id = $2",
        )
        .bind(forge)
        .bind(forge_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn delete_project(&self, forge: &str, path: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        // Its publications are withdrawn, so that nothing stays published under a path
        // someone else may take later.
        for sql in [
            "DELETE FROM projects WHERE forge = $1 AND path = $2",
            "DELETE FROM refs WHERE forge = $1 AND project = $2",
            "DELETE FROM members WHERE forge = $1 AND scope = 'project:' || $2",
            "DELETE FROM releases WHERE forge = $1 AND project = $2",
            "DELETE FROM worksheets WHERE forge = $1 AND project = $2",
            "DELETE FROM merge_requests WHERE forge = $1 AND project = $2",
            "DELETE FROM mr_notes WHERE forge = $1 AND project = $2",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(path)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A project moved (rename or transfer): everything keyed by its path follows it.
    pub async fn rename_project(
        &self,
        forge: &str,
        old_path: &str,
        new: &ProjectRow,
    ) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        // Whatever was left at the new path belonged to no live project: the moved one wins.
        for sql in [
            "DELETE FROM releases WHERE forge = $1 AND project = $2",
            "DELETE FROM worksheets WHERE forge = $1 AND project = $2",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(&new.path)
                .execute(&mut *tx)
                .await?;
        }
        for sql in [
            "UPDATE projects SET path = $3 WHERE forge = $1 AND path = $2",
            "UPDATE refs SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE merge_requests SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE releases SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE worksheets SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE builds SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE mr_notes SET project = $3 WHERE forge = $1 AND project = $2",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(old_path)
                .bind(&new.path)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE members SET scope = 'project:' || $3 WHERE forge = $1 AND scope = 'project:' || $2")
            .bind(forge)
            .bind(old_path)
            .bind(&new.path)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.upsert_project(new).await
    }

    pub async fn upsert_merge_request(&self, m: &MergeRequestRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO merge_requests (forge, project, iid, source_project, source_branch, target_branch,
                                         head_sha, state, title, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (forge, project, iid) DO UPDATE SET
                source_project = excluded.source_project, source_branch = excluded.source_branch,
                target_branch = excluded.target_branch, head_sha = excluded.head_sha,
                state = excluded.state, title = excluded.title, updated_at = excluded.updated_at",
        )
        .bind(m.forge.name())
        .bind(&m.project)
        .bind(m.iid)
        .bind(&m.source_project)
        .bind(&m.source_branch)
        .bind(&m.target_branch)
        .bind(&m.head_sha)
        .bind(&m.state)
        .bind(&m.title)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_merge_request(
        &self,
        forge: &str,
        project: &str,
        iid: i64,
    ) -> DbResult<Option<MergeRequestRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, project, iid, source_project, source_branch, target_branch, head_sha, state, title
             FROM merge_requests WHERE forge = $1 AND project = $2 AND iid = $3",
        )
        .bind(forge)
        .bind(project)
        .bind(iid)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn insert_local_status(&self, s: &LocalStatusRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO local_statuses (project, sha, name, state, ref_name, target_url, description, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.project)
        .bind(&s.sha)
        .bind(&s.name)
        .bind(&s.state)
        .bind(s.ref_name.as_deref())
        .bind(s.target_url.as_deref())
        .bind(s.description.as_deref())
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Statuses recorded for a commit, oldest first.
    pub async fn local_statuses(&self, project: &str, sha: &str) -> DbResult<Vec<LocalStatusRow>> {
        Ok(sqlx::query_as(
            "SELECT project, sha, name, state, ref_name, target_url, description FROM local_statuses
             WHERE project = $1 AND sha = $2 ORDER BY id",
        )
        .bind(project)
        .bind(sha)
        .fetch_all(&self.pool)
        .await?)
    }
}
