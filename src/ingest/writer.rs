//! Group commit for deliveries: requests hand their delivery to one writer task, which
//! stores whatever has queued up in a single transaction and then answers each request.
//! A request is answered only after its transaction committed, so an acknowledged
//! delivery is durable; under load many deliveries share one commit (and one fsync).
//!
//! When the database cannot be reached, deliveries go to the [spool](super::spool) instead,
//! and a drainer stores them in order once it answers again; while anything is spooled, new
//! deliveries queue behind it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};

use super::spool::{Spool, Spooled};
use crate::storage::{Db, DbError, DbResult, Enqueue, NewDelivery, StoreOutcome};

/// How long a delivery waits for its transaction before it is spooled (GitLab gives up
/// after 10 s).
const STORE_WAIT: Duration = Duration::from_secs(4);
/// How often the drainer tries the database again while deliveries wait.
const DRAIN_RETRY: Duration = Duration::from_secs(1);

/// Most deliveries stored in one transaction.
const MAX_BATCH: usize = 256;

/// A delivery waiting to be stored.
struct Item {
    dedupe_key: String,
    forge: &'static str,
    event: String,
    result: &'static str,
    body: bytes::Bytes,
    work: Enqueue,
    reply: oneshot::Sender<DbResult<StoreOutcome>>,
}

impl Item {
    fn delivery(&self) -> NewDelivery<'_> {
        NewDelivery {
            dedupe_key: &self.dedupe_key,
            forge: self.forge,
            event: &self.event,
            result: self.result,
            body: &self.body,
        }
    }
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct DeliveryWriter {
    tx: mpsc::Sender<Item>,
    spool: Option<Arc<Spool>>,
    /// Wakes the drainer.
    drain: Arc<Notify>,
}

/// What became of a delivery.
#[derive(Debug)]
pub enum Written {
    /// Stored (or found stored already) in the database.
    Stored(StoreOutcome),
    /// In the spool, durably: it will be stored when the database answers again.
    Spooled,
}

/// What to store.
pub struct Delivery {
    pub dedupe_key: String,
    pub forge: &'static str,
    pub event: String,
    pub result: &'static str,
    pub body: bytes::Bytes,
    /// The jobs it causes and the work it supersedes.
    pub work: Enqueue,
}

impl DeliveryWriter {
    /// Starts the writer task on the current runtime, and the drainer of `spool` (which
    /// wakes `jobs_ready` when drained deliveries enqueue jobs).
    pub fn spawn(db: Db, spool: Option<Arc<Spool>>, jobs_ready: Arc<Notify>) -> DeliveryWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db.clone(), rx));
        let drain = Arc::new(Notify::new());
        if let Some(spool) = &spool {
            tokio::spawn(drain_spool(db, spool.clone(), drain.clone(), jobs_ready));
        }
        DeliveryWriter { tx, spool, drain }
    }

    /// Stores `d` with what it enqueues; returns once the transaction holding it committed,
    /// or once it is in the spool when the database cannot be reached.
    pub async fn store(&self, d: Delivery) -> DbResult<Written> {
        let Some(spool) = &self.spool else {
            return self.store_now(d).await.map(Written::Stored);
        };
        let spooled = Spooled::new(&d.dedupe_key, d.forge, &d.event, d.result, &d.body, &d.work);
        if !spool.is_empty() {
            // Behind the deliveries already waiting, to keep their order.
            return self.spool(spool, &spooled).await;
        }
        match tokio::time::timeout(STORE_WAIT, self.store_now(d)).await {
            Ok(Ok(outcome)) => Ok(Written::Stored(outcome)),
            Ok(Err(e)) if !e.is_unavailable() => Err(e),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the database cannot be reached: spooling the delivery");
                self.spool(spool, &spooled).await
            }
            Err(_) => {
                // The transaction may still commit: the spooled copy is then a duplicate,
                // which deduplication drops.
                tracing::warn!("storing a delivery is taking too long: spooling it");
                self.spool(spool, &spooled).await
            }
        }
    }

    async fn spool(&self, spool: &Arc<Spool>, d: &Spooled) -> DbResult<Written> {
        let spool = spool.clone();
        let d = d.clone();
        let pushed = tokio::task::spawn_blocking(move || spool.push(&d))
            .await
            .map_err(|e| DbError::Sqlx(sqlx::Error::Io(std::io::Error::other(e))))?;
        match pushed {
            Ok(()) => {
                self.drain.notify_one();
                Ok(Written::Spooled)
            }
            Err(e) => {
                tracing::error!(error = %e, "spooling a delivery failed");
                Err(DbError::Sqlx(sqlx::Error::Io(std::io::Error::other(
                    e.to_string(),
                ))))
            }
        }
    }

    async fn store_now(&self, d: Delivery) -> DbResult<StoreOutcome> {
        let (reply, rx) = oneshot::channel();
        let item = Item {
            dedupe_key: d.dedupe_key,
            forge: d.forge,
            event: d.event,
            result: d.result,
            body: d.body,
            work: d.work,
            reply,
        };
        let closed = || crate::storage::DbError::Sqlx(sqlx::Error::PoolClosed);
        self.tx.send(item).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Item>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let rows: Vec<(NewDelivery<'_>, &Enqueue)> =
            batch.iter().map(|i| (i.delivery(), &i.work)).collect();
        match db.store_deliveries(&rows).await {
            Ok(outcomes) => {
                drop(rows);
                for (item, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = item.reply.send(Ok(outcome));
                }
            }
            Err(_) if batch.len() > 1 => {
                // One bad delivery must not fail the others: store them one by one.
                drop(rows);
                for item in batch {
                    let outcome = db.store_delivery(&item.delivery(), &item.work).await;
                    let _ = item.reply.send(outcome);
                }
            }
            Err(e) => {
                drop(rows);
                if let Some(item) = batch.pop() {
                    let _ = item.reply.send(Err(e));
                }
            }
        }
    }
}

/// Stores spooled deliveries, oldest first, whenever woken or every [`DRAIN_RETRY`] while
/// any wait; stops at the first that cannot be stored because the database is still away.
async fn drain_spool(db: Db, spool: Arc<Spool>, wake: Arc<Notify>, jobs_ready: Arc<Notify>) {
    loop {
        if spool.is_empty() {
            wake.notified().await;
        }
        loop {
            let next = {
                let spool = spool.clone();
                tokio::task::spawn_blocking(move || spool.oldest()).await
            };
            let (n, d) = match next {
                Ok(Ok(Some(found))) => found,
                Ok(Ok(None)) => break,
                Ok(Err(super::spool::SpoolError::Damaged(e))) => {
                    // Cannot be read back: set aside so that the rest are stored.
                    if let Some(n) = spool.front() {
                        tracing::error!(
                            spool.n = n,
                            "a spooled delivery is damaged ({e}); set aside"
                        );
                        spool.set_aside(n).ok();
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reading the delivery spool failed");
                    break;
                }
                Err(_) => break,
            };
            let (body, work) = match (d.body(), d.work()) {
                (Ok(b), Ok(w)) => (b, w),
                _ => {
                    tracing::error!(spool.n = n, "a spooled delivery is damaged; set aside");
                    spool.set_aside(n).ok();
                    continue;
                }
            };
            let forge = match d.forge.as_str() {
                "github" => "github",
                _ => "gitlab",
            };
            let row = NewDelivery {
                dedupe_key: &d.dedupe_key,
                forge,
                event: &d.event,
                result: &d.result,
                body: &body,
            };
            match db.store_delivery(&row, &work).await {
                Ok(outcome) => {
                    if let StoreOutcome::Stored { jobs, .. } = &outcome
                        && !jobs.is_empty()
                    {
                        jobs_ready.notify_waiters();
                    }
                    if let Err(e) = spool.remove(n) {
                        tracing::error!(error = %e, "removing a stored delivery from the spool failed");
                        break;
                    }
                    tracing::info!(delivery.key = %d.dedupe_key, "stored a spooled delivery");
                }
                Err(e) if e.is_unavailable() => break,
                Err(e) => {
                    tracing::error!(error = %e, delivery.key = %d.dedupe_key, "a spooled delivery cannot be stored; set aside");
                    spool.set_aside(n).ok();
                }
            }
        }
        if !spool.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(DRAIN_RETRY) => {}
                () = wake.notified() => {}
            }
        }
    }
}
