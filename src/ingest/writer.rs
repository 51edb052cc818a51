//! Group commit for deliveries: requests hand their delivery to one writer task, which
//! stores whatever has queued up in a single transaction and then answers each request.
//! A request is answered only after its transaction committed, so an acknowledged
//! delivery is durable; under load many deliveries share one commit (and one fsync).

use tokio::sync::{mpsc, oneshot};

use crate::storage::{Db, DbResult, Enqueue, NewDelivery, StoreOutcome};

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
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: Db) -> DeliveryWriter {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(db, rx));
        DeliveryWriter { tx }
    }

    /// Stores `d` with what it enqueues; returns once the transaction holding it committed.
    pub async fn store(&self, d: Delivery) -> DbResult<StoreOutcome> {
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
