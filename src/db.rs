//! The database: one sqlx pool over SQLite (embedded default) or PostgreSQL, the
//! migrations in `migrations/<dialect>/`, and every SQL statement nbforge runs.
//!
//! Queries are runtime-checked (`sqlx::query_as` over the `Any` driver) so one build
//! serves both dialects. Columns hold plain types only: integers, text and bytes;
//! times are Unix epoch milliseconds. Where the dialects differ (row locking when
//! claiming jobs) the difference is kept in this module.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Executor, FromRow};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which SQL dialect the pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL: expected sqlite://… or postgres://…")]
    UnsupportedUrl,
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type DbResult<T> = Result<T, DbError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Identifier of a stored webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DeliveryId(pub i64);

/// Identifier of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The connection pool and its dialect.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
}

impl Db {
    /// Connects (creating a SQLite file when missing) and applies pending migrations.
    pub async fn connect(url: &str) -> DbResult<Db> {
        let db = Self::connect_without_migrating(url).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects without touching the schema.
    pub async fn connect_without_migrating(url: &str) -> DbResult<Db> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(DbError::UnsupportedUrl);
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                // The Any driver takes SQLite settings from the URL only: create the
                // file when missing there, and set the rest on every new connection.
                let url = if url.contains("mode=") {
                    url.to_owned()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                AnyPoolOptions::new()
                    .max_connections(8)
                    .min_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        Ok(Db { pool, dialect })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Largest estimated size of one multi-row statement. sqlx does not set TCP_NODELAY,
    /// and a PostgreSQL message larger than its 8 KiB write buffer leaves in several writes,
    /// the last of which Nagle's algorithm holds back until the server's delayed ACK
    /// (about 40 ms). Keeping statements under the buffer keeps each a single write.
    fn statement_budget(&self) -> usize {
        match self.dialect {
            Dialect::Postgres => 7 * 1024,
            Dialect::Sqlite => 4 * 1024 * 1024,
        }
    }

    pub async fn migrate(&self) -> DbResult<()> {
        match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATOR.run(&self.pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATOR.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------

/// A webhook delivery about to be stored.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub dedupe_key: &'a str,
    pub forge: &'a str,
    pub event: &'a str,
    /// `queued` (jobs created) or `ignored` (a kind nbforge does not act on).
    pub result: &'a str,
    pub body: &'a [u8],
}

/// A job about to be enqueued.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: String,
    pub supersede_key: Option<String>,
    pub max_attempts: i64,
}

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored {
        delivery: DeliveryId,
        jobs: Vec<JobId>,
    },
    Duplicate,
}

/// A stored delivery, without its body.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub dedupe_key: String,
    pub forge: String,
    pub event: String,
    pub result: String,
    pub received_at: i64,
    pub body_bytes: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, dedupe_key, forge, event, result, received_at, CAST(LENGTH(body) AS BIGINT) AS body_bytes";

impl Db {
    /// Stores a delivery and its jobs in one transaction. A repeated dedupe key stores
    /// nothing and reports [`StoreOutcome::Duplicate`].
    pub async fn store_delivery(
        &self,
        d: &NewDelivery<'_>,
        jobs: &[NewJob],
    ) -> DbResult<StoreOutcome> {
        let mut out = self.store_deliveries(&[(d.clone(), jobs)]).await?;
        Ok(out.pop().unwrap_or(StoreOutcome::Duplicate))
    }

    /// Stores several deliveries with their jobs in one transaction (group commit): all
    /// are stored or none is. Outcomes come back in order. A batch takes a few multi-row
    /// statements whatever its size: insert the deliveries, supersede older jobs, insert
    /// the jobs (each insert split to stay under a size budget on PostgreSQL).
    pub async fn store_deliveries(
        &self,
        batch: &[(NewDelivery<'_>, &[NewJob])],
    ) -> DbResult<Vec<StoreOutcome>> {
        let now = now_ms();
        // A key repeated inside the batch is a duplicate of its first occurrence.
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<bool> = batch
            .iter()
            .map(|(d, _)| seen.insert(d.dedupe_key))
            .collect();

        let mut tx = self.pool.begin().await?;
        let fresh_rows: Vec<&NewDelivery<'_>> = batch
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|((d, _), _)| d)
            .collect();
        let budget = self.statement_budget();
        let mut inserted = std::collections::HashMap::new();
        for range in chunk_ranges(
            &fresh_rows,
            |d| d.body.len() + d.dedupe_key.len() + 64,
            budget,
        ) {
            let rows = &fresh_rows[range];
            let values: Vec<String> = (0..rows.len())
                .map(|n| {
                    let b = n * 6;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO deliveries (dedupe_key, forge, event, result, received_at, body) VALUES {} \
                 ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key",
                values.join(", ")
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(AssertSqlSafe(sql));
            for d in rows {
                q = q
                    .bind(d.dedupe_key)
                    .bind(d.forge)
                    .bind(d.event)
                    .bind(d.result)
                    .bind(now)
                    .bind(d.body);
            }
            inserted.extend(
                q.fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(id, k)| (k, id)),
            );
        }

        // Which delivery each stored job belongs to; within the batch the last job with a
        // supersede key wins, earlier ones are stored as superseded.
        let mut jobs: Vec<(usize, i64, &NewJob)> = Vec::new();
        for (i, (d, js)) in batch.iter().enumerate() {
            if !fresh[i] {
                continue;
            }
            if let Some(&delivery_id) = inserted.get(d.dedupe_key) {
                jobs.extend(js.iter().map(|j| (i, delivery_id, j)));
            }
        }
        let mut last_for_key = std::collections::HashMap::new();
        for (pos, (_, _, j)) in jobs.iter().enumerate() {
            if let Some(k) = &j.supersede_key {
                last_for_key.insert(k.as_str(), pos);
            }
        }
        if !last_for_key.is_empty() {
            let mut keys: Vec<&str> = last_for_key.keys().copied().collect();
            keys.sort_unstable();
            let placeholders: Vec<String> =
                (0..keys.len()).map(|k| format!("${}", k + 2)).collect();
            // Pending jobs with these keys are superseded; running ones are asked to stop.
            let sql = format!(
                "UPDATE jobs SET
                    state = CASE WHEN state = 'pending' THEN 'superseded' ELSE state END,
                    finished_at = CASE WHEN state = 'pending' THEN $1 ELSE finished_at END,
                    cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE cancel_requested END,
                    updated_at = $1
                 WHERE supersede_key IN ({}) AND state IN ('pending', 'running')",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for k in keys {
                q = q.bind(k);
            }
            q.execute(&mut *tx).await?;
        }
        let mut ids: Vec<Vec<JobId>> = vec![Vec::new(); batch.len()];
        let index_of: std::collections::HashMap<i64, usize> = jobs
            .iter()
            .map(|(i, delivery_id, _)| (*delivery_id, *i))
            .collect();
        for range in chunk_ranges(&jobs, |(_, _, j)| j.payload.len() + 64, budget) {
            let values: Vec<String> = (0..range.len())
                .map(|n| {
                    let b = n * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, 0, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        b + 7,
                        b + 7,
                        b + 8
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO jobs (delivery_id, kind, payload, supersede_key, state, attempts, max_attempts, \
                 run_at, created_at, updated_at, finished_at) VALUES {} RETURNING id, delivery_id",
                values.join(", ")
            );
            let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
            for pos in range {
                let (_, delivery_id, j) = jobs[pos];
                let superseded = j
                    .supersede_key
                    .as_deref()
                    .is_some_and(|k| last_for_key.get(k) != Some(&pos));
                q = q
                    .bind(delivery_id)
                    .bind(&j.kind)
                    .bind(&j.payload)
                    .bind(j.supersede_key.as_deref())
                    .bind(if superseded { "superseded" } else { "pending" })
                    .bind(j.max_attempts)
                    .bind(now)
                    .bind(superseded.then_some(now));
            }
            let mut rows = q.fetch_all(&mut *tx).await?;
            rows.sort_unstable_by_key(|r| r.0);
            for (id, delivery_id) in rows {
                if let Some(&i) = index_of.get(&delivery_id) {
                    ids[i].push(JobId(id));
                }
            }
        }
        tx.commit().await?;
        Ok(batch
            .iter()
            .enumerate()
            .map(|(i, (d, _))| match (fresh[i], inserted.get(d.dedupe_key)) {
                (true, Some(&id)) => StoreOutcome::Stored {
                    delivery: DeliveryId(id),
                    jobs: std::mem::take(&mut ids[i]),
                },
                _ => StoreOutcome::Duplicate,
            })
            .collect())
    }

    pub async fn list_deliveries(&self, limit: i64) -> DbResult<Vec<DeliveryRow>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn get_delivery(&self, dedupe_key: &str) -> DbResult<Option<DeliveryRow>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE dedupe_key = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(dedupe_key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn count_deliveries(&self) -> DbResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}

/// Splits `items` into consecutive ranges whose estimated sizes stay within `budget`
/// (a range always holds at least one item).
fn chunk_ranges<T>(
    items: &[T],
    size: impl Fn(&T) -> usize,
    budget: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let s = size(item);
        if i > start && used + s > budget {
            out.push(start..i);
            start = i;
            used = 0;
        }
        used += s;
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// State kept by the foundation handlers
// ---------------------------------------------------------------------------

/// A ref update applied by a push job; one row per job, so re-running a job after
/// a crash records nothing twice.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct RefUpdateRow {
    pub job_id: i64,
    pub forge: String,
    pub project: String,
    pub ref_name: String,
    pub before_sha: String,
    pub after_sha: String,
}

/// A project as nbforge last heard of it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct ProjectRow {
    pub forge: String,
    pub path: String,
    pub forge_id: Option<i64>,
    pub web_url: Option<String>,
    pub git_url: Option<String>,
    pub default_branch: Option<String>,
    pub forked_from: Option<String>,
}

/// A membership as nbforge last heard of it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct MembershipRow {
    pub forge: String,
    pub scope: String,
    pub user_id: Option<i64>,
    pub username: String,
    pub access_level: i64,
    pub expires_at: Option<String>,
}

/// A merge request as nbforge last heard of it.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct MergeRequestRow {
    pub forge: String,
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
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "INSERT INTO ref_updates (job_id, forge, project, ref_name, before_sha, after_sha, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(job.0)
        .bind(&u.forge)
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
                    .bind(&u.forge)
                    .bind(&u.project)
                    .bind(&u.ref_name)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO refs (forge, project, ref_name, sha, updated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (forge, project, ref_name) DO UPDATE SET sha = excluded.sha, updated_at = excluded.updated_at",
                )
                .bind(&u.forge)
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
            "INSERT INTO projects (forge, path, forge_id, web_url, git_url, default_branch, forked_from, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (forge, path) DO UPDATE SET
                forge_id = COALESCE(excluded.forge_id, projects.forge_id),
                web_url = COALESCE(excluded.web_url, projects.web_url),
                git_url = COALESCE(excluded.git_url, projects.git_url),
                default_branch = COALESCE(excluded.default_branch, projects.default_branch),
                forked_from = COALESCE(excluded.forked_from, projects.forked_from),
                updated_at = excluded.updated_at",
        )
        .bind(&p.forge)
        .bind(&p.path)
        .bind(p.forge_id)
        .bind(p.web_url.as_deref())
        .bind(p.git_url.as_deref())
        .bind(p.default_branch.as_deref())
        .bind(p.forked_from.as_deref())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_project(&self, forge: &str, path: &str) -> DbResult<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from
             FROM projects WHERE forge = $1 AND path = $2",
        )
        .bind(forge)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn get_project_by_forge_id(
        &self,
        forge: &str,
        forge_id: i64,
    ) -> DbResult<Option<ProjectRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, path, forge_id, web_url, git_url, default_branch, forked_from
             FROM projects WHERE forge = $1 AND forge_id = $2",
        )
        .bind(forge)
        .bind(forge_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn delete_project(&self, forge: &str, path: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM projects WHERE forge = $1 AND path = $2",
            "DELETE FROM refs WHERE forge = $1 AND project = $2",
            "DELETE FROM memberships WHERE forge = $1 AND scope = 'project:' || $2",
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
        for sql in [
            "UPDATE projects SET path = $3 WHERE forge = $1 AND path = $2",
            "UPDATE refs SET project = $3 WHERE forge = $1 AND project = $2",
            "UPDATE merge_requests SET project = $3 WHERE forge = $1 AND project = $2",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(old_path)
                .bind(&new.path)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE memberships SET scope = 'project:' || $3 WHERE forge = $1 AND scope = 'project:' || $2")
            .bind(forge)
            .bind(old_path)
            .bind(&new.path)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.upsert_project(new).await
    }

    pub async fn upsert_membership(&self, m: &MembershipRow) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO memberships (forge, scope, user_id, username, access_level, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (forge, scope, username) DO UPDATE SET
                user_id = excluded.user_id, access_level = excluded.access_level,
                expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(&m.forge)
        .bind(&m.scope)
        .bind(m.user_id)
        .bind(&m.username)
        .bind(m.access_level)
        .bind(m.expires_at.as_deref())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_membership(
        &self,
        forge: &str,
        scope: &str,
        username: &str,
    ) -> DbResult<()> {
        sqlx::query("DELETE FROM memberships WHERE forge = $1 AND scope = $2 AND username = $3")
            .bind(forge)
            .bind(scope)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn memberships(&self, forge: &str, scope: &str) -> DbResult<Vec<MembershipRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, scope, user_id, username, access_level, expires_at FROM memberships
             WHERE forge = $1 AND scope = $2 ORDER BY username",
        )
        .bind(forge)
        .bind(scope)
        .fetch_all(&self.pool)
        .await?)
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
        .bind(&m.forge)
        .bind(&m.project)
        .bind(m.iid)
        .bind(&m.source_project)
        .bind(&m.source_branch)
        .bind(&m.target_branch)
        .bind(&m.head_sha)
        .bind(&m.state)
        .bind(&m.title)
        .bind(now_ms())
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
        .bind(now_ms())
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

// ---------------------------------------------------------------------------
// Builds and merge request notes
// ---------------------------------------------------------------------------

/// An environment build as stored.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BuildRow {
    pub id: i64,
    pub forge: String,
    pub project: String,
    pub ref_name: Option<String>,
    pub commit_sha: String,
    pub environment_key: Option<String>,
    pub image: Option<String>,
    pub phase: String,
    pub cached: i64,
    pub message: Option<String>,
    pub job_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const BUILD_COLUMNS: &str = "id, forge, project, ref_name, commit_sha, environment_key, image, phase, cached, \
     message, job_id, created_at, updated_at, finished_at";

impl Db {
    pub async fn create_build(
        &self,
        forge: &str,
        project: &str,
        ref_name: Option<&str>,
        commit: &str,
        job: Option<JobId>,
    ) -> DbResult<i64> {
        let now = now_ms();
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
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a build to `phase`; final phases also store the whole log.
    pub async fn set_build_phase(
        &self,
        id: i64,
        phase: &str,
        message: Option<&str>,
        cached: bool,
        log: Option<&str>,
    ) -> DbResult<()> {
        let now = now_ms();
        let finished = matches!(phase, "built" | "failed" | "canceled").then_some(now);
        sqlx::query(
            "UPDATE builds SET phase = $1, message = COALESCE($2, message), cached = $3,
                    log = COALESCE($4, log), updated_at = $5, finished_at = $6
             WHERE id = $7",
        )
        .bind(phase)
        .bind(message)
        .bind(i64::from(cached))
        .bind(log)
        .bind(now)
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_build(&self, id: i64) -> DbResult<Option<BuildRow>> {
        let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1");
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn build_log(&self, id: i64) -> DbResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT log FROM builds WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
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
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Published worksheets
// ---------------------------------------------------------------------------

/// A release: the worksheets of a project at a tag.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct ReleaseRow {
    pub forge: String,
    pub project: String,
    pub tag: String,
    pub commit_sha: String,
    pub title: Option<String>,
    pub area: Option<String>,
    pub error: Option<String>,
    pub published_at: i64,
}

/// A worksheet of a release, without its notebook bytes.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct WorksheetRow {
    pub forge: String,
    pub project: String,
    pub tag: String,
    pub path: String,
    pub title: String,
    pub description: Option<String>,
    pub error: Option<String>,
    pub published_at: i64,
}

/// A worksheet to publish.
#[derive(Debug, Clone)]
pub struct NewWorksheet {
    pub path: String,
    pub title: String,
    pub description: Option<String>,
    pub body_html: String,
    pub notebook: Vec<u8>,
    pub error: Option<String>,
}

/// A card of the landing page: an official project's worksheet at its newest release.
#[derive(Debug, Clone, FromRow, Serialize, PartialEq, Eq)]
pub struct CardRow {
    pub project: String,
    pub project_title: Option<String>,
    pub area: Option<String>,
    pub tag: String,
    pub path: String,
    pub title: String,
    pub description: Option<String>,
}

const WORKSHEET_COLUMNS: &str =
    "forge, project, tag, path, title, description, error, published_at";

impl Db {
    /// Replaces the release `tag` of a project with these worksheets, in one transaction.
    pub async fn publish_release(
        &self,
        release: &ReleaseRow,
        sheets: &[NewWorksheet],
    ) -> DbResult<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM worksheets WHERE forge = $1 AND project = $2 AND tag = $3")
            .bind(&release.forge)
            .bind(&release.project)
            .bind(&release.tag)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO releases (forge, project, tag, commit_sha, title, area, error, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (forge, project, tag) DO UPDATE SET commit_sha = excluded.commit_sha,
                title = excluded.title, area = excluded.area, error = excluded.error,
                published_at = excluded.published_at",
        )
        .bind(&release.forge)
        .bind(&release.project)
        .bind(&release.tag)
        .bind(&release.commit_sha)
        .bind(release.title.as_deref())
        .bind(release.area.as_deref())
        .bind(release.error.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for w in sheets {
            sqlx::query(
                "INSERT INTO worksheets (forge, project, tag, path, title, description, body_html, notebook, error, published_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&release.forge)
            .bind(&release.project)
            .bind(&release.tag)
            .bind(&w.path)
            .bind(&w.title)
            .bind(w.description.as_deref())
            .bind(&w.body_html)
            .bind(w.notebook.as_slice())
            .bind(w.error.as_deref())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE projects SET title = COALESCE($3, title), area = COALESCE($4, area)
             WHERE forge = $1 AND path = $2",
        )
        .bind(&release.forge)
        .bind(&release.project)
        .bind(release.title.as_deref())
        .bind(release.area.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a release (its tag was deleted).
    pub async fn delete_release(&self, forge: &str, project: &str, tag: &str) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM worksheets WHERE forge = $1 AND project = $2 AND tag = $3",
            "DELETE FROM releases WHERE forge = $1 AND project = $2 AND tag = $3",
        ] {
            sqlx::query(sql)
                .bind(forge)
                .bind(project)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases of a project, newest first.
    pub async fn releases(&self, project: &str) -> DbResult<Vec<ReleaseRow>> {
        Ok(sqlx::query_as(
            "SELECT forge, project, tag, commit_sha, title, area, error, published_at FROM releases
             WHERE project = $1 ORDER BY published_at DESC, tag DESC",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any release of `project` exists.
    pub async fn has_releases(&self, project: &str) -> DbResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM releases WHERE project = $1 LIMIT 1")
                .bind(project)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    pub async fn worksheets(&self, project: &str, tag: &str) -> DbResult<Vec<WorksheetRow>> {
        let sql = format!(
            "SELECT {WORKSHEET_COLUMNS} FROM worksheets WHERE project = $1 AND tag = $2 ORDER BY path"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(project)
            .bind(tag)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A worksheet with its rendered body and notebook bytes.
    pub async fn worksheet(
        &self,
        project: &str,
        tag: &str,
        path: &str,
    ) -> DbResult<Option<(WorksheetRow, String, Vec<u8>)>> {
        let sql = format!(
            "SELECT {WORKSHEET_COLUMNS}, body_html, notebook FROM worksheets WHERE project = $1 AND tag = $2 AND path = $3"
        );
        let row: Option<sqlx::any::AnyRow> = sqlx::query(AssertSqlSafe(sql))
            .bind(project)
            .bind(tag)
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        use sqlx::Row as _;
        let sheet = WorksheetRow::from_row(&row)?;
        Ok(Some((
            sheet,
            row.try_get("body_html")?,
            row.try_get("notebook")?,
        )))
    }

    /// Marks a project official (listed on the landing page), with its field of biology.
    pub async fn set_official(
        &self,
        forge: &str,
        project: &str,
        official: bool,
        area: Option<&str>,
    ) -> DbResult<bool> {
        let res = sqlx::query(
            "UPDATE projects SET official = $3, area = COALESCE($4, area), updated_at = $5 WHERE forge = $1 AND path = $2",
        )
        .bind(forge)
        .bind(project)
        .bind(i64::from(official))
        .bind(area)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// The landing page's cards: official projects' worksheets at their newest release,
    /// optionally only those whose title contains `query` (case-insensitive).
    pub async fn official_cards(&self, query: Option<&str>) -> DbResult<Vec<CardRow>> {
        let pattern = query.map(|q| format!("%{}%", q.to_lowercase().replace(['%', '_'], "")));
        Ok(sqlx::query_as(
            "SELECT w.project AS project, p.title AS project_title, COALESCE(p.area, r.area) AS area,
                    w.tag AS tag, w.path AS path, w.title AS title, w.description AS description
             FROM projects p
             JOIN releases r ON r.forge = p.forge AND r.project = p.path
             JOIN worksheets w ON w.forge = r.forge AND w.project = r.project AND w.tag = r.tag
             WHERE p.official = 1 AND w.error IS NULL
               AND r.published_at = (SELECT MAX(r2.published_at) FROM releases r2
                                     WHERE r2.forge = r.forge AND r2.project = r.project)
               AND ($1 IS NULL OR LOWER(w.title) LIKE $1 OR LOWER(COALESCE(p.title, '')) LIKE $1)
             ORDER BY COALESCE(p.area, r.area, 'zzzz'), w.project, w.title",
        )
        .bind(pattern)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Db {
    /// The newest build of any of `commits` of a project (a branch may have moved on).
    pub async fn latest_build(&self, project: &str, commit: &str) -> DbResult<Option<BuildRow>> {
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE project = $1 AND commit_sha = $2 ORDER BY id DESC LIMIT 1"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(project)
            .bind(commit)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The commit a branch or tag of a project points to, whichever forge it is on.
    pub async fn resolve_ref(&self, project: &str, name: &str) -> DbResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT sha FROM refs WHERE project = $1 AND (ref_name = $2 OR ref_name = $3)
             ORDER BY CASE WHEN ref_name = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(project)
        .bind(format!("refs/heads/{name}"))
        .bind(format!("refs/tags/{name}"))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.0))
    }
}
