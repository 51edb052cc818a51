//! Typed jobs over the durable queue.
//!
//! Each kind of job is a type implementing [`Job`]: a [`JobKind`] (stored as its name),
//! small serializable arguments, the subject it is about (for logs), and `run`, which gets
//! the [`Context`] (storage, forges, builder, mirrors, settings, clock) and the [`Run`] (job
//! id, attempt, cancel token) — never the application state. The kinds live in [`kinds`],
//! one file each, and are registered with the runner in [`runner::registry`].
//!
//! Which jobs a webhook event causes is decided in [`plan`]; they are stored in the same
//! transaction as the delivery by webhook ingest; the delivery is the stored event. Domain
//! errors (of [`crate::environment::flow`], [`crate::catalog`], storage, forges) become a
//! [`JobError`] here, and [`runner`] turns that into done / failed / retried / dead-lettered
//! in one place. Recurring work goes through the same queue ([`schedule`]).

pub mod kinds;
pub mod plan;
pub mod runner;
pub mod schedule;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::environment::flow::{PrepareError, Preparer};
use crate::environment::{Builder, LogHub};
use crate::events::ForgeKind;
use crate::forge::Forges;
use crate::metrics::Metrics;
use crate::repo::mirror::Mirrors;
use crate::storage::{Clock, Db, JobId, JobKind, NewJob};

pub use plan::{Planning, plan};
pub use runner::{backoff, run_one, run_until_idle, run_workers, worker_owner};

/// What every job can use; cheap to clone.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub forges: Forges,
    pub builder: Builder,
    pub build_logs: Arc<LogHub>,
    pub mirrors: Arc<Mirrors>,
    pub settings: Arc<Settings>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers in this process when jobs are enqueued.
    pub jobs_ready: Arc<Notify>,
    /// Where users' Jupyter sessions run.
    pub sessions: Arc<dyn crate::sessions::SessionBackend>,
}

impl Context {
    /// What preparing an environment on `forge` uses.
    pub fn preparer(&self, forge: ForgeKind) -> Preparer {
        let env = &self.settings.environments;
        Preparer {
            db: self.db.clone(),
            forge: self.forges.for_kind(&forge),
            builder: self.builder.clone(),
            logs: self.build_logs.clone(),
            mirrors: self.mirrors.clone(),
            spec: crate::environment::flow::spec_options(&self.settings),
            public_url: self.settings.server.public_url.clone(),
            push_images: env.registry.is_some(),
            conda: crate::environment::flow::conda_settings(&self.settings),
        }
    }
}

/// One run of one job.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: JobId,
    pub attempt: i64,
    pub max_attempts: i64,
    /// Cancelled when the job is superseded, its lease is lost, or the process stops for good.
    pub cancel: CancellationToken,
}

/// What a job is about, for its log span and messages: `lab/rnaseq@1a2b3c4d`.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub project: Option<String>,
    pub git_ref: Option<String>,
    pub commit: Option<String>,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(p) = &self.project {
            f.write_str(p)?;
            sep = " ";
        }
        match (&self.git_ref, &self.commit) {
            (_, Some(c)) => write!(f, "@{}", crate::environment::flow::short_sha(c)),
            (Some(r), None) => write!(f, "{sep}{r}"),
            (None, None) => Ok(()),
        }
    }
}

/// A kind of job: its stored name, its arguments (the type itself), and what it does.
/// Running a job twice (after a crash between its work and its completion) must leave
/// the same state as running it once.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: JobKind;

    /// What the job is about.
    fn subject(&self) -> Subject;

    /// A newer job with the same key supersedes this one while it waits (and asks it to
    /// stop while it runs). Keys name the forge: `env:gitlab:lab/x:main`.
    fn supersede_key(&self) -> Option<String> {
        None
    }

    fn run(&self, ctx: &Context, run: &Run) -> impl Future<Output = Result<(), JobError>> + Send;

    /// How long one try may run before it is stopped and retried later.
    fn time_limit(settings: &crate::config::Settings) -> std::time::Duration {
        settings.jobs.timeout
    }

    /// The row that enqueues this job.
    fn to_new_job(&self, max_attempts: u32) -> NewJob {
        NewJob {
            kind: Self::KIND,
            args: serde_json::to_string(self).expect("job arguments serialize"),
            supersede_key: self.supersede_key(),
            max_attempts: i64::from(max_attempts),
        }
    }
}

/// How a job ended badly; [`runner`] turns it into failed, retried or canceled.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input is wrong (a bad launch spec, a missing file): recorded, not retried.
    #[error("{0}")]
    User(String),
    /// Something outside nbforge failed (forge down, Docker engine down): retried.
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// The job was superseded or the lease was lost while it ran.
    #[error("canceled")]
    Canceled,
}

impl From<PrepareError> for JobError {
    fn from(e: PrepareError) -> Self {
        match e {
            PrepareError::User(m) => JobError::User(m),
            PrepareError::Infrastructure(e) => JobError::Transient(e),
            PrepareError::Canceled => JobError::Canceled,
        }
    }
}

impl From<crate::catalog::PublishError> for JobError {
    fn from(e: crate::catalog::PublishError) -> Self {
        match e {
            crate::catalog::PublishError::User(m) => JobError::User(m),
            crate::catalog::PublishError::Infrastructure(e) => JobError::Transient(e),
        }
    }
}

macro_rules! transient_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JobError {
            fn from(e: $t) -> Self {
                JobError::Transient(e.into())
            }
        }
    )*};
}
transient_from!(
    anyhow::Error,
    crate::storage::DbError,
    crate::repo::mirror::MirrorError
);

impl From<crate::forge::ForgeError> for JobError {
    /// A refusal the forge would repeat fails the job at once; the rest is retried.
    fn from(e: crate::forge::ForgeError) -> Self {
        if e.is_permanent() {
            JobError::User(e.to_string())
        } else {
            JobError::Transient(e.into())
        }
    }
}
