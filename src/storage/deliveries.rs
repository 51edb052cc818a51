//! Webhook deliveries as received, the dedupe keys that make a repeat store nothing, and
//! the jobs a delivery enqueues, stored in the delivery's transaction.

use serde::Serialize;
use sqlx::{AssertSqlSafe, FromRow};

use super::*;
use crate::events::ForgeKind;

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
    #[sqlx(try_from = "String")]
    pub forge: ForgeKind,
    pub event: String,
    pub result: String,
    pub received_at: i64,
    pub body_bytes: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, dedupe_key, forge, event, result, received_at, CAST(LENGTH(body) AS BIGINT) AS body_bytes";

impl Db {
    /// Stores a delivery and what it enqueues in one transaction. A repeated dedupe key
    /// stores nothing and reports [`StoreOutcome::Duplicate`].
    pub async fn store_delivery(
        &self,
        d: &NewDelivery<'_>,
        work: &Enqueue,
    ) -> DbResult<StoreOutcome> {
        let mut out = self.store_deliveries(&[(d.clone(), work)]).await?;
        Ok(out.pop().unwrap_or(StoreOutcome::Duplicate))
    }

    /// Stores several deliveries with what they enqueue in one transaction (group commit):
    /// all are stored or none is. Outcomes come back in order. A batch takes a few
    /// multi-row statements whatever its size: insert the deliveries, supersede older
    /// jobs, insert the jobs (each insert split to stay under a size budget on PostgreSQL).
    /// A duplicate delivery enqueues and supersedes nothing.
    pub async fn store_deliveries(
        &self,
        batch: &[(NewDelivery<'_>, &Enqueue)],
    ) -> DbResult<Vec<StoreOutcome>> {
        let now = self.now();
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

        // The stored deliveries, in order, with their delivery ids.
        let stored: Vec<(usize, i64, &Enqueue)> = batch
            .iter()
            .enumerate()
            .filter(|(i, _)| fresh[*i])
            .filter_map(|(i, (d, work))| inserted.get(d.dedupe_key).map(|&id| (i, id, *work)))
            .collect();
        let plan = supersede_plan(stored.iter().map(|(_, _, w)| *w));
        supersede_keys(&mut tx, &plan.keys, now).await?;
        let mut rows: Vec<JobInsert<'_>> = Vec::new();
        let mut owner: Vec<usize> = Vec::new();
        for &(i, delivery_id, work) in &stored {
            for j in &work.jobs {
                rows.push((Some(delivery_id), j, plan.superseded[rows.len()]));
                owner.push(i);
            }
        }
        let job_ids = insert_jobs(&mut tx, &rows, now, budget).await?;
        tx.commit().await?;

        let mut ids: Vec<Vec<JobId>> = vec![Vec::new(); batch.len()];
        for (i, id) in owner.into_iter().zip(job_ids) {
            ids[i].push(id);
        }
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

    /// The delivery stored under `dedupe_key`: as given, or as a forge's delivery id
    /// (stored as `<forge>:<id>`, the GitLab one first).
    pub async fn get_delivery(&self, dedupe_key: &str) -> DbResult<Option<DeliveryRow>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE dedupe_key IN ($1, $2, $3)
             ORDER BY CASE dedupe_key WHEN $1 THEN 0 WHEN $2 THEN 1 ELSE 2 END LIMIT 1"
        );
        Ok(sqlx::query_as(AssertSqlSafe(sql))
            .bind(dedupe_key)
            .bind(format!("gitlab:{dedupe_key}"))
            .bind(format!("github:{dedupe_key}"))
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
