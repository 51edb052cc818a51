//! Job queue storage: claiming with a lease, heartbeats, completion, retries, dead letters.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;

/// A job as stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub delivery_id: Option<i64>,
    pub kind: String,
    pub payload: String,
    pub supersede_key: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub cancel_requested: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl JobRow {
    pub fn id(&self) -> JobId {
        JobId(self.id)
    }
}

const JOB_COLUMNS: &str = "id, delivery_id, kind, payload, supersede_key, state, attempts, max_attempts, \
     run_at, lease_owner, lease_until, cancel_requested, last_error, created_at, updated_at, finished_at";

/// What the lease holder learns from a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Still ours; `cancel` is set when a newer job superseded this one.
    Held { cancel: bool },
    /// The lease was lost (expired and taken by another worker, or released).
    Lost,
}

impl Db {
    /// Claims the next ready job (pending and due, or running with an expired lease)
    /// for `owner` until `now + lease`. Each claim counts as an attempt.
    pub async fn claim_job(&self, owner: &str, lease: Duration) -> DbResult<Option<JobRow>> {
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2,
                    attempts = attempts + 1, updated_at = $3
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE (state = 'pending' AND run_at <= $3)
                    OR (state = 'running' AND lease_until < $3)
                 ORDER BY run_at, id
                 LIMIT 1 {lock})
             RETURNING {JOB_COLUMNS}"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(owner)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Extends the lease of a running job held by `owner`.
    pub async fn heartbeat(&self, id: JobId, owner: &str, lease: Duration) -> DbResult<Heartbeat> {
        let now = now_ms();
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE jobs SET lease_until = $1, updated_at = $2
             WHERE id = $3 AND lease_owner = $4 AND state = 'running'
             RETURNING cancel_requested",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(id.0)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((cancel,)) => Heartbeat::Held {
                cancel: cancel != 0,
            },
            None => Heartbeat::Lost,
        })
    }

    /// Moves a job held by `owner` out of `running`. Returns false when the lease was lost.
    async fn finish_job(
        &self,
        id: JobId,
        owner: &str,
        state: &str,
        error: Option<&str>,
        run_at: Option<i64>,
    ) -> DbResult<bool> {
        let now = now_ms();
        let terminal = !matches!(state, "pending");
        let res = sqlx::query(
            "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error),
                    run_at = COALESCE($3, run_at), lease_owner = NULL, lease_until = NULL,
                    updated_at = $4, finished_at = $5
             WHERE id = $6 AND lease_owner = $7 AND state = 'running'",
        )
        .bind(state)
        .bind(error)
        .bind(run_at)
        .bind(now)
        .bind(if terminal { Some(now) } else { None })
        .bind(id.0)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn complete_job(&self, id: JobId, owner: &str) -> DbResult<bool> {
        self.finish_job(id, owner, "done", None, None).await
    }

    /// A failure caused by the input (a bad spec): recorded, not retried.
    pub async fn fail_job(&self, id: JobId, owner: &str, error: &str) -> DbResult<bool> {
        self.finish_job(id, owner, "failed", Some(error), None)
            .await
    }

    /// A transient failure: back to `pending` until `run_at`.
    pub async fn retry_job(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        run_at: i64,
    ) -> DbResult<bool> {
        self.finish_job(id, owner, "pending", Some(error), Some(run_at))
            .await
    }

    /// Out of attempts.
    pub async fn dead_letter_job(&self, id: JobId, owner: &str, error: &str) -> DbResult<bool> {
        self.finish_job(id, owner, "dead", Some(error), None).await
    }

    /// Superseded while running.
    pub async fn cancel_job(&self, id: JobId, owner: &str) -> DbResult<bool> {
        self.finish_job(
            id,
            owner,
            "canceled",
            Some("superseded by a newer job"),
            None,
        )
        .await
    }

    /// Gives a claimed job back untouched (shutdown): the attempt is not counted.
    pub async fn release_job(&self, id: JobId, owner: &str) -> DbResult<bool> {
        let res = sqlx::query(
            "UPDATE jobs SET state = 'pending', attempts = attempts - 1, lease_owner = NULL,
                    lease_until = NULL, updated_at = $1
             WHERE id = $2 AND lease_owner = $3 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(id.0)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn get_job(&self, id: JobId) -> DbResult<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Recent jobs, newest first, optionally in one state.
    pub async fn list_jobs(&self, state: Option<&str>, limit: i64) -> DbResult<Vec<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn jobs_for_delivery(&self, delivery: DeliveryId) -> DbResult<Vec<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE delivery_id = $1 ORDER BY id");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(delivery.0)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Number of jobs in each state.
    pub async fn job_counts(&self) -> DbResult<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Jobs that a worker could claim now.
    pub async fn count_ready_jobs(&self) -> DbResult<i64> {
        let now = now_ms();
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM jobs
             WHERE (state = 'pending' AND run_at <= $1) OR (state = 'running' AND lease_until < $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}
