//! Storage: one sqlx pool over SQLite (embedded default) or PostgreSQL, the
//! migrations in `migrations/<dialect>/`, and every SQL statement nbforge runs, split by
//! concern into the submodules below.
//!
//! Queries are runtime-checked (`sqlx::query_as` over the `Any` driver) so one build
//! serves both dialects. Columns hold plain types only: integers, text and bytes;
//! times are Unix epoch milliseconds. Where the dialects differ (row locking when
//! claiming jobs) the difference is kept in this module.

use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

mod builds;
mod catalog;
mod clock;
mod deliveries;
mod members;
mod projects;
mod queue;
mod runs;
mod schedules;
mod users;
mod visitor_runs;

pub use builds::*;
pub use catalog::*;
pub use clock::{Clock, millis};
pub use deliveries::*;
pub use members::*;
pub use projects::*;
pub use queue::*;
pub use runs::*;
pub use schedules::*;
pub use users::*;
pub use visitor_runs::*;

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

impl DbError {
    /// Whether the database could not be reached (down, restarting, refusing connections),
    /// as opposed to refusing what was asked.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Sqlx(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // Connection exceptions (08…) and operator intervention (57P…: shutting
                // down, cannot connect now).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            _ => false,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    Clock::System.now_ms()
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
    /// Where the queue and schedules read the time.
    clock: Clock,
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
        Ok(Db {
            pool,
            dialect,
            clock: Clock::System,
        })
    }

    /// The same pool, reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Db {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
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
