//! Job queue storage: the kinds of job, enqueueing with supersession, claiming with a
//! lease, heartbeats, completion, retries and dead letters.
//!
//! A job's kind is stored as text and converted to [`JobKind`] once, where rows are read;
//! a kind this build does not know is kept as an [`UnknownKind`] so that the runner fails
//! that job with a clear message. Every time comes from the pool's [`Clock`].

use std::collections::HashMap;

use serde::{Serialize, Serializer};
use sqlx::{AssertSqlSafe, FromRow};

use super::*;

/// The kinds of job nbforge runs. The names are stored in `jobs.kind` and shown by
/// `/api/jobs`; renaming one needs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Record a branch moving (push event).
    RecordPush,
    /// Record a tag moving and publish its worksheets.
    PublishTag,
    /// Prepare the environment image of a commit and report it as a commit status.
    PrepareEnvironment,
    /// Record a merge request and keep nbforge's note on it.
    SyncMergeRequest,
    /// Record a membership change.
    RecordMember,
    /// Record a project created, renamed, transferred, forked or deleted.
    SyncProject,
    /// Remove old finished jobs, deliveries, git mirrors and environment images.
    Cleanup,
    /// Record a group deleted or renamed (its memberships).
    SyncGroup,
    /// Record a user deleted, renamed or blocked.
    SyncUser,
    /// Read memberships and visibility from the forge and repair what hooks missed.
    Reconcile,
    /// Stop idle and old Jupyter sessions; record session metrics.
    CullSessions,
    /// Execute a worksheet run in its environment.
    RunWorksheet,
}

/// Which jobs a worker takes: environment builds wait for a build slot, so they have
/// their own workers, and the other kinds (recording, publishing, notes) never queue
/// behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Every kind (tests and `run_until_idle`).
    Any,
    /// `prepare-environment` only.
    Builds,
    /// Every kind but `prepare-environment` and `run-worksheet`.
    General,
    /// `run-worksheet` only: each worker is one run executing at once.
    Runs,
}

impl JobKind {
    pub const ALL: [JobKind; 12] = [
        JobKind::RecordPush,
        JobKind::PublishTag,
        JobKind::PrepareEnvironment,
        JobKind::SyncMergeRequest,
        JobKind::RecordMember,
        JobKind::SyncProject,
        JobKind::Cleanup,
        JobKind::SyncGroup,
        JobKind::SyncUser,
        JobKind::Reconcile,
        JobKind::CullSessions,
        JobKind::RunWorksheet,
    ];

    /// The stored name, e.g. `prepare-environment`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::RecordPush => "record-push",
            JobKind::PublishTag => "publish-tag",
            JobKind::PrepareEnvironment => "prepare-environment",
            JobKind::SyncMergeRequest => "sync-merge-request",
            JobKind::RecordMember => "record-member",
            JobKind::SyncProject => "sync-project",
            JobKind::Cleanup => "cleanup",
            JobKind::SyncGroup => "sync-group",
            JobKind::SyncUser => "sync-user",
            JobKind::Reconcile => "reconcile",
            JobKind::CullSessions => "cull-sessions",
            JobKind::RunWorksheet => "run-worksheet",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Result<JobKind, UnknownKind> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| UnknownKind(name.to_owned()))
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A stored kind this build does not know (a row written by a newer or older version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job kind {0:?}")]
pub struct UnknownKind(pub String);

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: i64,
    pub delivery_id: Option<i64>,
    #[serde(serialize_with = "kind_name")]
    pub kind: Result<JobKind, UnknownKind>,
    /// The job's arguments, as JSON.
    pub args: String,
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

fn kind_name<S: Serializer>(kind: &Result<JobKind, UnknownKind>, s: S) -> Result<S::Ok, S::Error> {
    match kind {
        Ok(k) => s.serialize_str(k.as_str()),
        Err(UnknownKind(name)) => s.serialize_str(name),
    }
}

impl JobRow {
    pub fn id(&self) -> JobId {
        JobId(self.id)
    }

    /// The kind's name, known or not.
    pub fn kind_name(&self) -> &str {
        match &self.kind {
            Ok(k) => k.as_str(),
            Err(UnknownKind(name)) => name,
        }
    }
}

/// The row as the driver reads it.
#[derive(FromRow)]
struct RawJob {
    id: i64,
    delivery_id: Option<i64>,
    kind: String,
    args: String,
    supersede_key: Option<String>,
    state: String,
    attempts: i64,
    max_attempts: i64,
    run_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    cancel_requested: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

impl From<RawJob> for JobRow {
    fn from(r: RawJob) -> JobRow {
        JobRow {
            id: r.id,
            delivery_id: r.delivery_id,
            kind: JobKind::parse(&r.kind),
            args: r.args,
            supersede_key: r.supersede_key,
            state: r.state,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: r.run_at,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until,
            cancel_requested: r.cancel_requested,
            last_error: r.last_error,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

const JOB_COLUMNS: &str = "id, delivery_id, kind, args, supersede_key, state, attempts, max_attempts, \
     run_at, lease_owner, lease_until, cancel_requested, last_error, created_at, updated_at, finished_at";

/// A job about to be enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: JobKind,
    /// The job's arguments, as JSON.
    pub args: String,
    /// A newer job with the same key supersedes this one.
    pub supersede_key: Option<String>,
    pub max_attempts: i64,
}

/// What one delivery (or one caller) adds to the queue, applied in one transaction:
/// first the keys in `supersede` are superseded (pending jobs with them are canceled,
/// running ones asked to stop), then `jobs` are added, each superseding older jobs with
/// its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueue {
    pub supersede: Vec<String>,
    pub jobs: Vec<NewJob>,
}

impl Enqueue {
    pub fn is_empty(&self) -> bool {
        self.supersede.is_empty() && self.jobs.is_empty()
    }
}

/// Which of a batch's jobs are stored as already superseded, and which keys supersede
/// stored jobs. Within a batch, a later job or supersession of a key wins over earlier
/// jobs with that key.
pub(super) struct SupersedePlan<'a> {
    pub keys: Vec<&'a str>,
    /// Per job of the batch (in order), whether it is stored superseded.
    pub superseded: Vec<bool>,
}

pub(super) fn supersede_plan<'a>(
    batch: impl IntoIterator<Item = &'a Enqueue>,
) -> SupersedePlan<'a> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut job_seq: Vec<(Option<&str>, usize)> = Vec::new();
    let mut seq = 0;
    for e in batch {
        for k in &e.supersede {
            last.insert(k.as_str(), seq);
            seq += 1;
        }
        for j in &e.jobs {
            if let Some(k) = &j.supersede_key {
                last.insert(k.as_str(), seq);
            }
            job_seq.push((j.supersede_key.as_deref(), seq));
            seq += 1;
        }
    }
    let superseded = job_seq
        .iter()
        .map(|(k, s)| k.is_some_and(|k| last.get(k) != Some(s)))
        .collect();
    let mut keys: Vec<&str> = last.into_keys().collect();
    keys.sort_unstable();
    SupersedePlan { keys, superseded }
}

/// Supersedes stored jobs with any of `keys`: pending ones end as `superseded`, running
/// ones are asked to stop (their next heartbeat says so).
pub(super) async fn supersede_keys(
    conn: &mut sqlx::AnyConnection,
    keys: &[&str],
    now: i64,
) -> DbResult<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let placeholders: Vec<String> = (0..keys.len()).map(|k| format!("${}", k + 2)).collect();
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
        q = q.bind(*k);
    }
    Ok(q.execute(conn).await?.rows_affected())
}

/// A job to insert: its delivery, the job, and whether it is stored already superseded.
pub(super) type JobInsert<'a> = (Option<i64>, &'a NewJob, bool);

/// Inserts jobs with a few multi-row statements (split to stay under `budget`); returns
/// their ids in order.
pub(super) async fn insert_jobs(
    conn: &mut sqlx::AnyConnection,
    jobs: &[JobInsert<'_>],
    now: i64,
    budget: usize,
) -> DbResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(jobs.len());
    for range in chunk_ranges(jobs, |(_, j, _)| j.args.len() + 64, budget) {
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
            "INSERT INTO jobs (delivery_id, kind, args, supersede_key, state, attempts, max_attempts, \
             run_at, created_at, updated_at, finished_at) VALUES {} RETURNING id",
            values.join(", ")
        );
        let mut q = sqlx::query_as::<_, (i64,)>(AssertSqlSafe(sql));
        for &(delivery_id, j, superseded) in &jobs[range] {
            q = q
                .bind(delivery_id)
                .bind(j.kind.as_str())
                .bind(&j.args)
                .bind(j.supersede_key.as_deref())
                .bind(if superseded { "superseded" } else { "pending" })
                .bind(j.max_attempts)
                .bind(now)
                .bind(superseded.then_some(now));
        }
        let mut rows = q.fetch_all(&mut *conn).await?;
        // Ids are assigned in the order of the VALUES list.
        rows.sort_unstable();
        ids.extend(rows.into_iter().map(|(id,)| JobId(id)));
    }
    Ok(ids)
}

/// Splits `items` into consecutive ranges whose estimated sizes stay within `budget`
/// (a range always holds at least one item).
pub(super) fn chunk_ranges<T>(
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

/// What the lease holder learns from a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// Still ours; `cancel` is set when a newer job superseded this one.
    Held { cancel: bool },
    /// The lease was lost (expired and taken by another worker, or released).
    Lost,
}

impl Db {
    /// Adds jobs that belong to no delivery (scheduled work, tools), superseding as
    /// [`Enqueue`] says, in one transaction.
    pub async fn enqueue(&self, e: &Enqueue) -> DbResult<Vec<JobId>> {
        let now = self.now();
        let plan = supersede_plan([e]);
        let mut tx = self.pool.begin().await?;
        supersede_keys(&mut tx, &plan.keys, now).await?;
        let rows: Vec<JobInsert<'_>> = e
            .jobs
            .iter()
            .zip(&plan.superseded)
            .map(|(j, s)| (None, j, *s))
            .collect();
        let ids = insert_jobs(&mut tx, &rows, now, self.statement_budget()).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Cancels pending jobs with any of `keys` and asks running ones to stop; returns
    /// how many jobs were touched.
    pub async fn supersede(&self, keys: &[&str]) -> DbResult<u64> {
        let mut conn = self.pool.acquire().await?;
        supersede_keys(&mut conn, keys, self.now()).await
    }

    /// Claims the next ready job (pending and due, or running with an expired lease)
    /// for `owner` until `now + lease`. Each claim counts as an attempt.
    pub async fn claim_job(&self, owner: &str, lease: Duration) -> DbResult<Option<JobRow>> {
        self.claim_job_in(owner, lease, Pool::Any).await
    }

    /// Claims the oldest ready job of `pool`'s kinds (see [`Pool`]).
    pub async fn claim_job_in(
        &self,
        owner: &str,
        lease: Duration,
        pool: Pool,
    ) -> DbResult<Option<JobRow>> {
        let now = self.now();
        let until = now + millis(lease);
        let lock = match self.dialect {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // Kind names are constants of this crate, never input.
        let builds = format!("'{}'", JobKind::PrepareEnvironment.as_str());
        let runs = format!("'{}'", JobKind::RunWorksheet.as_str());
        let kinds = match pool {
            Pool::Any => String::new(),
            Pool::Builds => format!(" AND kind IN ({builds})"),
            Pool::Runs => format!(" AND kind IN ({runs})"),
            Pool::General => format!(" AND kind NOT IN ({builds}, {runs})"),
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2,
                    attempts = attempts + 1, updated_at = $3
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE ((state = 'pending' AND run_at <= $3)
                    OR (state = 'running' AND lease_until < $3)){kinds}
                 ORDER BY run_at, id
                 LIMIT 1 {lock})
             RETURNING {JOB_COLUMNS}"
        );
        let row: Option<RawJob> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(owner)
            .bind(until)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(JobRow::from))
    }

    /// Extends the lease of a running job held by `owner`.
    pub async fn heartbeat(&self, id: JobId, owner: &str, lease: Duration) -> DbResult<Heartbeat> {
        let now = self.now();
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE jobs SET lease_until = $1, updated_at = $2
             WHERE id = $3 AND lease_owner = $4 AND state = 'running'
             RETURNING cancel_requested",
        )
        .bind(now + millis(lease))
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
        let now = self.now();
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

    /// A transient failure: back to `pending` for another try after `delay`.
    pub async fn retry_job(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        delay: Duration,
    ) -> DbResult<bool> {
        let run_at = self.now() + millis(delay);
        self.finish_job(id, owner, "pending", Some(error), Some(run_at))
            .await
    }

    /// Out of attempts.
    pub async fn dead_letter_job(&self, id: JobId, owner: &str, error: &str) -> DbResult<bool> {
        self.finish_job(id, owner, "dead", Some(error), None).await
    }

    /// Puts a dead-lettered or failed job back in the queue with its tries counted from
    /// zero (an administrator's re-drive after an outage). `false` when the job is not dead
    /// or failed.
    pub async fn redrive_job(&self, id: JobId) -> DbResult<bool> {
        let now = self.now();
        let res = sqlx::query(
            "UPDATE jobs SET state = 'pending', attempts = 0, run_at = $1, lease_owner = NULL,
                    lease_until = NULL, cancel_requested = 0, updated_at = $1, finished_at = NULL
             WHERE id = $2 AND state IN ('dead', 'failed')",
        )
        .bind(now)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
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
        .bind(self.now())
        .bind(id.0)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn get_job(&self, id: JobId) -> DbResult<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<RawJob> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(JobRow::from))
    }

    /// Recent jobs, newest first, optionally in one state.
    pub async fn list_jobs(&self, state: Option<&str>, limit: i64) -> DbResult<Vec<JobRow>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<RawJob> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(JobRow::from).collect())
    }

    pub async fn jobs_for_delivery(&self, delivery: DeliveryId) -> DbResult<Vec<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE delivery_id = $1 ORDER BY id");
        let rows: Vec<RawJob> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(delivery.0)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(JobRow::from).collect())
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
        let now = self.now();
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
