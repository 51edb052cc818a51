//! Worksheet runs as stored: who owns one, what it runs, where it stands, where its result
//! is. A run's id is 128 random bits (32 hex digits): it is the only key to a run, so it
//! cannot be guessed. States: `queued`, `running`, then one of `succeeded`, `failed`,
//! `canceled`.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;

/// The states a run ends in.
pub const FINAL_RUN_STATES: [&str; 3] = ["succeeded", "failed", "canceled"];

/// A run as stored.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub owner_user_id: Option<i64>,
    pub owner_visitor: Option<String>,
    pub forge: String,
    pub project: String,
    pub tag: String,
    pub worksheet: String,
    pub commit_sha: String,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub values_json: String,
    pub state: String,
    /// What the run waits for, while queued.
    pub message: Option<String>,
    pub error: Option<String>,
    /// The result folder, relative to the owner's home.
    pub result_folder: String,
    #[serde(skip)]
    pub result_html: Option<String>,
    pub cells_done: i64,
    pub cells_total: i64,
    pub heading: Option<String>,
    pub cancel_requested: i64,
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The run this one repeats exactly: it executes in `image_digest`, set at creation.
    pub again_of: Option<String>,
}

impl RunRow {
    /// Whether the run has ended.
    pub fn is_final(&self) -> bool {
        FINAL_RUN_STATES.contains(&self.state.as_str())
    }
}

const RUN_COLUMNS: &str = "id, owner_user_id, owner_visitor, forge, project, tag, worksheet, commit_sha, \
     image, image_digest, values_json, state, message, error, result_folder, result_html, cells_done, \
     cells_total, heading, cancel_requested, job_id, created_at, started_at, finished_at, again_of";

/// A run about to be stored.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub owner_user_id: Option<i64>,
    pub owner_visitor: Option<&'a str>,
    pub forge: &'a str,
    pub project: &'a str,
    pub tag: &'a str,
    pub worksheet: &'a str,
    pub commit_sha: &'a str,
    pub values_json: &'a str,
    pub result_folder: &'a str,
}

/// Which runs a listing shows.
#[derive(Debug, Clone, Default)]
pub struct RunFilter<'a> {
    /// Only this user's (`None`: everyone's, for platform admins).
    pub owner_user_id: Option<i64>,
    pub project: Option<&'a str>,
    pub worksheet: Option<&'a str>,
    pub limit: i64,
}

impl Db {
    /// Stores a queued run and its job in one transaction; returns the job's id.
    pub async fn create_run(&self, run: &NewRun<'_>, job: &NewJob) -> DbResult<JobId> {
        self.insert_run(run, job, None).await
    }

    /// Stores a queued run that repeats `original` exactly (in its image, at its commit),
    /// and its job, in one transaction; returns the job's id.
    pub async fn create_run_again_exactly(
        &self,
        run: &NewRun<'_>,
        job: &NewJob,
        original: &RunRow,
    ) -> DbResult<JobId> {
        self.insert_run(run, job, Some(original)).await
    }

    async fn insert_run(
        &self,
        run: &NewRun<'_>,
        job: &NewJob,
        again_of: Option<&RunRow>,
    ) -> DbResult<JobId> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let ids = insert_jobs(&mut tx, &[(None, job, false)], now, self.statement_budget()).await?;
        let job_id = ids[0];
        sqlx::query(
            "INSERT INTO runs (id, owner_user_id, owner_visitor, forge, project, tag, worksheet,
                commit_sha, values_json, state, result_folder, job_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11, $12)",
        )
        .bind(run.id)
        .bind(run.owner_user_id)
        .bind(run.owner_visitor)
        .bind(run.forge)
        .bind(run.project)
        .bind(run.tag)
        .bind(run.worksheet)
        .bind(run.commit_sha)
        .bind(run.values_json)
        .bind(run.result_folder)
        .bind(job_id.0)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(original) = again_of {
            sqlx::query(
                "UPDATE runs SET again_of = $1, image = $2, image_digest = $3 WHERE id = $4",
            )
            .bind(&original.id)
            .bind(&original.image)
            .bind(&original.image_digest)
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(job_id)
    }

    pub async fn get_run(&self, id: &str) -> DbResult<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Runs newest first, as `filter` says.
    pub async fn list_runs(&self, filter: &RunFilter<'_>) -> DbResult<Vec<RunRow>> {
        // Conditions are constants; only their values are bound.
        let mut conditions = vec!["1 = 1".to_owned()];
        let mut n = 1;
        let mut next = |column: &str| {
            let c = format!("{column} = ${n}");
            n += 1;
            c
        };
        if filter.owner_user_id.is_some() {
            conditions.push(next("owner_user_id"));
        }
        if filter.project.is_some() {
            conditions.push(next("project"));
        }
        if filter.worksheet.is_some() {
            conditions.push(next("worksheet"));
        }
        let limit = next("LIMIT").replace("LIMIT = ", "");
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE {} ORDER BY created_at DESC, id LIMIT {limit}",
            conditions.join(" AND ")
        );
        let mut q = sqlx::query_as(AssertSqlSafe(sql));
        if let Some(owner) = filter.owner_user_id {
            q = q.bind(owner);
        }
        if let Some(project) = filter.project {
            q = q.bind(project);
        }
        if let Some(worksheet) = filter.worksheet {
            q = q.bind(worksheet);
        }
        Ok(q.bind(filter.limit).fetch_all(&self.pool).await?)
    }

    /// Marks a queued run running, unless its owner already has `per_owner` runs running
    /// or it was canceled; returns whether it is now running.
    pub async fn start_run(&self, id: &str, per_owner: i64) -> DbResult<bool> {
        let res = sqlx::query(
            "UPDATE runs SET state = 'running', started_at = $1, message = NULL
             WHERE id = $2 AND state = 'queued' AND cancel_requested = 0
               AND (SELECT COUNT(*) FROM runs o WHERE o.state = 'running'
                    AND ((o.owner_user_id IS NOT NULL AND o.owner_user_id = runs.owner_user_id)
                      OR (o.owner_visitor IS NOT NULL AND o.owner_visitor = runs.owner_visitor))) < $3",
        )
        .bind(self.now())
        .bind(id)
        .bind(per_owner)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// What a queued run waits for.
    pub async fn set_run_message(&self, id: &str, message: Option<&str>) -> DbResult<()> {
        sqlx::query("UPDATE runs SET message = $1 WHERE id = $2 AND state = 'queued'")
            .bind(message)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The image a run executes in.
    pub async fn set_run_image(&self, id: &str, image: &str, digest: &str) -> DbResult<()> {
        sqlx::query("UPDATE runs SET image = $1, image_digest = $2 WHERE id = $3")
            .bind(image)
            .bind(digest)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Progress of a running run: cells done of the total, and the current heading.
    pub async fn set_run_progress(
        &self,
        id: &str,
        done: i64,
        total: i64,
        heading: Option<&str>,
    ) -> DbResult<()> {
        sqlx::query(
            "UPDATE runs SET cells_done = $1, cells_total = $2, heading = $3
             WHERE id = $4 AND state = 'running'",
        )
        .bind(done)
        .bind(total)
        .bind(heading)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a run that has not ended: `state` is one of [`FINAL_RUN_STATES`]. Returns
    /// whether this call ended it.
    pub async fn finish_run(
        &self,
        id: &str,
        state: &str,
        error: Option<&str>,
        result_html: Option<&str>,
    ) -> DbResult<bool> {
        self.end_run(id, &["queued", "running"], state, error, result_html)
            .await
    }

    /// Ends the run `id` if it is in one of `from` (constants of this module).
    async fn end_run(
        &self,
        id: &str,
        from: &[&str],
        state: &str,
        error: Option<&str>,
        result_html: Option<&str>,
    ) -> DbResult<bool> {
        debug_assert!(FINAL_RUN_STATES.contains(&state));
        let from: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
        let sql = format!(
            "UPDATE runs SET state = $1, error = $2, result_html = $3, finished_at = $4, message = NULL
             WHERE id = $5 AND state IN ({})",
            from.join(", ")
        );
        let res = sqlx::query(AssertSqlSafe(sql))
            .bind(state)
            .bind(error)
            .bind(result_html)
            .bind(self.now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Asks a run to stop: a queued one ends as canceled at once; a running one is
    /// stopped by its job. Returns the run as it is now.
    pub async fn cancel_run(&self, id: &str) -> DbResult<Option<RunRow>> {
        sqlx::query(
            "UPDATE runs SET cancel_requested = 1 WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.end_run(
            id,
            &["queued"],
            "canceled",
            Some("canceled before it started"),
            None,
        )
        .await?;
        self.get_run(id).await
    }

    /// The image ids (digests) that runs still stored executed in, or will: kept by the
    /// cleanup so that any of them can be run again exactly.
    pub async fn run_image_digests(&self) -> DbResult<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT image_digest FROM runs WHERE image_digest IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(d,)| d).collect())
    }

    pub async fn delete_run(&self, id: &str) -> DbResult<bool> {
        let res = sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(res.rows_affected() == 1)
    }

    /// How many queued runs were created before this one (its place in the queue).
    pub async fn run_queue_position(&self, run: &RunRow) -> DbResult<i64> {
        let row: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM runs WHERE state = 'queued'
               AND (created_at < $1 OR (created_at = $1 AND id < $2))",
        )
        .bind(run.created_at)
        .bind(&run.id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.0)
    }
}
