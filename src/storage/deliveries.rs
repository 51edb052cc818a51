//! Webhook deliveries as received, and the dedupe keys that make a repeat store nothing.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;

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
