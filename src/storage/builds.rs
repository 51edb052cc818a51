//! Environment builds with their logs, and the one note nbforge keeps on a merge request.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;
use crate::events::ForgeKind;

/// A build's phase, named as BinderHub names them; stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildPhase {
    Waiting,
    Fetching,
    Building,
    Pushing,
    Built,
    Failed,
    Canceled,
}

impl BuildPhase {
    pub const ALL: [BuildPhase; 7] = [
        BuildPhase::Waiting,
        BuildPhase::Fetching,
        BuildPhase::Building,
        BuildPhase::Pushing,
        BuildPhase::Built,
        BuildPhase::Failed,
        BuildPhase::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildPhase::Waiting => "waiting",
            BuildPhase::Fetching => "fetching",
            BuildPhase::Building => "building",
            BuildPhase::Pushing => "pushing",
            BuildPhase::Built => "built",
            BuildPhase::Failed => "failed",
            BuildPhase::Canceled => "canceled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            BuildPhase::Built | BuildPhase::Failed | BuildPhase::Canceled
        )
    }
}

impl std::fmt::Display for BuildPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for BuildPhase {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        BuildPhase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown build phase {s:?}"))
    }
}

/// A stored boolean: SQLite and PostgreSQL both hold it as an integer, 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl From<i64> for Flag {
    fn from(v: i64) -> Self {
        Flag(v != 0)
    }
}

/// An environment build as stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BuildRow {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub project: String,
    pub ref_name: Option<String>,
    pub commit_sha: String,
    pub environment_key: Option<String>,
    pub image: Option<String>,
    #[sqlx(try_from = "String")]
    pub phase: BuildPhase,
    /// The image was found, not built.
    #[sqlx(try_from = "i64")]
    pub cached: Flag,
    pub message: Option<String>,
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// For conda environments: the installed packages as an `@EXPLICIT` list with hashes.
    pub conda_lock: Option<String>,
}

const BUILD_COLUMNS: &str = "id, forge, project, ref_name, commit_sha, environment_key, image, phase, cached, \
     message, job_id, created_at, updated_at, finished_at, conda_lock";

impl Db {
    pub async fn create_build(
        &self,
        forge: &str,
        project: &str,
        ref_name: Option<&str>,
        commit: &str,
        job: Option<JobId>,
    ) -> DbResult<i64> {
        let now = self.now();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO builds (forge, project, ref_name, commit_sha, phase, job_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'waiting', $5, $6, $6) RETURNING id",
        )
        .bind(forge)
        .bind(project)
        .bind(ref_name)
        .bind(commit)
        .bind(job.map(|j| j.0))
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Records the key and image once the spec is read.
    pub async fn set_build_environment(&self, id: i64, key: &str, image: &str) -> DbResult<()> {
        sqlx::query(
            "UPDATE builds SET environment_key = $1, image = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(key)
        .bind(image)
        .bind(self.now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores the lock of a conda environment's solve with its build.
    pub async fn set_build_conda_lock(&self, id: i64, lock: &str) -> DbResult<()> {
        sqlx::query("UPDATE builds SET conda_lock = $1, updated_at = $2 WHERE id = $3")
            .bind(lock)
            .bind(self.now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a build to `phase`, appending `log` (when given) to its stored log.
    pub async fn set_build_phase(
        &self,
        id: i64,
        phase: BuildPhase,
        message: Option<&str>,
        cached: bool,
        log: Option<&str>,
    ) -> DbResult<()> {
        if let Some(log) = log.filter(|l| !l.is_empty()) {
            let next: (Option<i64>,) =
                sqlx::query_as("SELECT MAX(seq) FROM build_log_chunks WHERE build_id = $1")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await?;
            let first = next.0.map_or(0, |s| s + 1);
            let rows: Vec<(i64, &str)> = split_log(log)
                .into_iter()
                .zip(first..)
                .map(|(text, seq)| (seq, text))
                .collect();
            self.append_build_log(id, &rows).await?;
        }
        let now = self.now();
        let finished = phase.is_final().then_some(now);
        sqlx::query(
            "UPDATE builds SET phase = $1, message = COALESCE($2, message), cached = $3,
                    updated_at = $4, finished_at = $5
             WHERE id = $6",
        )
        .bind(phase.as_str())
        .bind(message)
        .bind(i64::from(cached))
        .bind(now)
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Appends `(seq, text)` chunks to a build's stored log. Chunks are only ever added,
    /// never changed; a chunk already stored under its `seq` is kept as it is.
    pub async fn append_build_log(&self, id: i64, chunks: &[(i64, &str)]) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        for (seq, text) in chunks {
            sqlx::query(
                "INSERT INTO build_log_chunks (build_id, seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (build_id, seq) DO NOTHING",
            )
            .bind(id)
            .bind(*seq)
            .bind(*text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The first chunk of a build's stored log after `after` (from the start when `None`):
    /// logs are read one chunk at a time, never whole.
    pub async fn build_log_chunk(
        &self,
        id: i64,
        after: Option<i64>,
    ) -> DbResult<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT seq, body FROM build_log_chunks WHERE build_id = $1 AND seq > $2
             ORDER BY seq LIMIT 1",
        )
        .bind(id)
        .bind(after.unwrap_or(-1))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `(seq, length in characters)` of each stored chunk of a build's log, in order.
    pub async fn build_log_chunk_sizes(&self, id: i64) -> DbResult<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT seq, CAST(LENGTH(body) AS BIGINT) FROM build_log_chunks WHERE build_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_build(&self, id: i64) -> DbResult<Option<BuildRow>> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Builds of a commit, newest first.
    pub async fn builds_for_commit(
        &self,
        forge: &str,
        project: &str,
        commit: &str,
    ) -> DbResult<Vec<BuildRow>> {
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE forge = $1 AND project = $2 AND commit_sha = $3 ORDER BY id DESC"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(forge)
            .bind(project)
            .bind(commit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Recent builds, newest first.
    pub async fn list_builds(&self, limit: i64) -> DbResult<Vec<BuildRow>> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds ORDER BY id DESC LIMIT $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// The newest finished, successful build for an environment key, if any.
    pub async fn built_image_for_key(&self, key: &str) -> DbResult<Option<String>> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT image FROM builds WHERE environment_key = $1 AND phase = 'built' ORDER BY id DESC LIMIT 1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| r.0))
    }

    /// The note nbforge keeps on a merge request, if it made one.
    pub async fn mr_note(&self, forge: &str, project: &str, iid: i64) -> DbResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT note_id FROM mr_notes WHERE forge = $1 AND project = $2 AND iid = $3",
        )
        .bind(forge)
        .bind(project)
        .bind(iid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }

    pub async fn set_mr_note(
        &self,
        forge: &str,
        project: &str,
        iid: i64,
        note_id: i64,
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO mr_notes (forge, project, iid, note_id, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (forge, project, iid) DO UPDATE SET note_id = excluded.note_id, updated_at = excluded.updated_at",
        )
        .bind(forge)
        .bind(project)
        .bind(iid)
        .bind(note_id)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Splits a log's text into chunks of whole lines of about 64 KiB (a line longer than
/// that is a chunk of its own).
fn split_log(text: &str) -> Vec<&str> {
    const CHUNK: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        let mut end = rest.len();
        if rest.len() > CHUNK {
            let mut cut = CHUNK;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            end = rest[cut..].find('\n').map_or(rest.len(), |i| cut + i + 1);
        }
        out.push(&rest[..end]);
        start += end;
    }
    out
}

impl Db {
    /// The newest build of any of `commits` of a project (a branch may have moved on).
    pub async fn latest_build(
        &self,
        forge: &str,
        project: &str,
        commit: &str,
    ) -> DbResult<Option<BuildRow>> {
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE forge = $1 AND project = $2 AND commit_sha = $3
             ORDER BY id DESC LIMIT 1"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(forge)
            .bind(project)
            .bind(commit)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The commit a branch (or else a tag) of a project on `forge` points to.
    pub async fn resolve_ref(
        &self,
        forge: &str,
        project: &str,
        name: &str,
    ) -> DbResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT sha FROM refs WHERE forge = $1 AND project = $2 AND (ref_name = $3 OR ref_name = $4)
             ORDER BY CASE WHEN ref_name = $3 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(forge)
        .bind(project)
        .bind(format!("refs/heads/{name}"))
        .bind(format!("refs/tags/{name}"))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }
}
