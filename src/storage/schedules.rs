//! Recurring jobs (the `schedules` table) and the retention queries the cleanup job runs.
//!
//! Each period of a schedule is claimed by one atomic update that moves `next_run_at` on
//! by the period from now; the process whose update matched enqueues that period's job in
//! the same transaction. A period missed during downtime therefore runs once, not once per
//! missed period, and any number of processes run each period once.

use sqlx::FromRow;

use super::*;

/// A schedule as stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct ScheduleRow {
    pub name: String,
    pub period_ms: i64,
    pub next_run_at: i64,
    pub last_job_id: Option<i64>,
    pub updated_at: i64,
}

/// What cleaning up the queue removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCleanup {
    pub jobs: u64,
    pub deliveries: u64,
}

/// The states a job does not leave.
const FINISHED: &str = "('done', 'failed', 'dead', 'canceled', 'superseded')";

impl Db {
    /// Records the schedule `name` (due at once when new) or updates its period.
    pub async fn register_schedule(&self, name: &str, period: Duration) -> DbResult<()> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO schedules (name, period_ms, next_run_at, updated_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (name) DO UPDATE SET period_ms = excluded.period_ms",
        )
        .bind(name)
        .bind(millis(period).max(1))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the schedule `name` is due: moves its next run to `now + period` and enqueues
    /// `job`, in one transaction. Returns the job's id, or None when the period was
    /// already taken (by this or another process) or the schedule is unknown.
    pub async fn fire_schedule(&self, name: &str, job: &NewJob) -> DbResult<Option<JobId>> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE schedules SET next_run_at = $1 + period_ms, updated_at = $1
             WHERE name = $2 AND next_run_at <= $1",
        )
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken != 1 {
            return Ok(None);
        }
        let ids = insert_jobs(&mut tx, &[(None, job, false)], now, self.statement_budget()).await?;
        let id = ids.first().copied();
        sqlx::query("UPDATE schedules SET last_job_id = $1 WHERE name = $2")
            .bind(id.map(|i| i.0))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn schedules(&self) -> DbResult<Vec<ScheduleRow>> {
        Ok(sqlx::query_as(
            "SELECT name, period_ms, next_run_at, last_job_id, updated_at FROM schedules ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes jobs that finished before `now - retention`, the branch and tag updates they
    /// recorded, and deliveries received before then that no remaining job belongs to.
    pub async fn delete_finished_jobs(&self, retention: Duration) -> DbResult<QueueCleanup> {
        let cutoff = self.now() - millis(retention);
        let mut tx = self.pool.begin().await?;
        let old = format!("SELECT id FROM jobs WHERE state IN {FINISHED} AND finished_at < $1");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM ref_updates WHERE job_id IN ({old})"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        let jobs = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM jobs WHERE id IN ({old})"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM deliveries WHERE received_at < $1
               AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.delivery_id = deliveries.id)",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(QueueCleanup { jobs, deliveries })
    }

    /// The environment images still in use: those of builds recorded since
    /// `now - retention`, and those of any build of a commit a branch or tag points at.
    pub async fn images_in_use(&self, retention: Duration) -> DbResult<Vec<String>> {
        let cutoff = self.now() - millis(retention);
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT image FROM builds WHERE image IS NOT NULL AND updated_at >= $1
             UNION
             SELECT b.image FROM builds b JOIN refs r
                ON r.forge = b.forge AND r.project = b.project AND r.sha = b.commit_sha
             WHERE b.image IS NOT NULL",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(i,)| i).collect())
    }

    /// Every known project, as (forge, path).
    pub async fn project_paths(&self) -> DbResult<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT forge, path FROM projects ORDER BY forge, path")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
