//! Runs of visitors who are not logged in: created within their limits (per visitor, and
//! for all visitors together), found again when their results expire. A visitor's run has
//! `owner_visitor` (the key of their visitor cookie) and no `owner_user_id`.

use super::*;

/// Why a visitor's run was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitorRunRefused {
    /// The visitor already has as many unfinished runs as allowed.
    PerVisitor,
    /// Visitors together already have as many unfinished runs as allowed.
    AllVisitors,
}

/// The advisory lock that serializes the creation of visitors' runs on PostgreSQL (SQLite
/// serializes writers itself).
const VISITOR_RUNS_LOCK: i64 = 0x6e62_6672_7672_756e;

impl Db {
    /// Stores a visitor's queued run and its job in one transaction, unless the visitor
    /// already has `per_visitor` unfinished runs or visitors together have `max`.
    pub async fn create_visitor_run(
        &self,
        run: &NewRun<'_>,
        job: &NewJob,
        per_visitor: i64,
        max: i64,
    ) -> DbResult<Result<JobId, VisitorRunRefused>> {
        debug_assert!(run.owner_user_id.is_none() && run.owner_visitor.is_some());
        let visitor = run.owner_visitor.unwrap_or_default();
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(VISITOR_RUNS_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        // Written first, counted after: on SQLite the write takes the database's lock, so
        // the counts below see every other visitor's run.
        let ids = insert_jobs(&mut tx, &[(None, job, false)], now, self.statement_budget()).await?;
        sqlx::query(
            "INSERT INTO runs (id, owner_user_id, owner_visitor, forge, project, tag, worksheet,
                commit_sha, values_json, state, result_folder, job_id, created_at)
             VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8, 'queued', $9, $10, $11)",
        )
        .bind(run.id)
        .bind(visitor)
        .bind(run.forge)
        .bind(run.project)
        .bind(run.tag)
        .bind(run.worksheet)
        .bind(run.commit_sha)
        .bind(run.values_json)
        .bind(run.result_folder)
        .bind(ids[0].0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (mine, all): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN owner_visitor = $1 THEN 1 ELSE 0 END), 0),
                    COUNT(*)
             FROM runs WHERE owner_visitor IS NOT NULL AND state IN ('queued', 'running')",
        )
        .bind(visitor)
        .fetch_one(&mut *tx)
        .await?;
        if mine > per_visitor {
            tx.rollback().await?;
            return Ok(Err(VisitorRunRefused::PerVisitor));
        }
        if all > max {
            tx.rollback().await?;
            return Ok(Err(VisitorRunRefused::AllVisitors));
        }
        tx.commit().await?;
        Ok(Ok(ids[0]))
    }

    /// Visitors' runs that ended before `before` (epoch milliseconds), oldest first.
    pub async fn visitor_runs_ended_before(
        &self,
        before: i64,
        limit: i64,
    ) -> DbResult<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM runs
             WHERE owner_visitor IS NOT NULL AND state IN ('succeeded', 'failed', 'canceled')
               AND COALESCE(finished_at, created_at) < $1
             ORDER BY COALESCE(finished_at, created_at), id LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Whether the project is on the official listing.
    pub async fn project_is_official(&self, forge: &str, project: &str) -> DbResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT official FROM projects WHERE forge = $1 AND path = $2")
                .bind(forge)
                .bind(project)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some_and(|(o,)| o != 0))
    }
}
