//! The application state shared by the HTTP routes and the job workers, and the wiring
//! that builds it from the settings. Entry points (`cli`, `web`) hold an [`App`]; jobs get
//! a [`jobs::Context`] and webhook ingest an [`Ingest`], both made from it.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio::sync::Notify;

use crate::access::Access;
use crate::config::Settings;
use crate::environment::{Builder, LogHub};
use crate::forge::Forge;
pub use crate::forge::Forges;
use crate::ingest::Ingest;
use crate::jobs;
use crate::metrics::Metrics;
use crate::repo::mirror::Mirrors;
use crate::sessions::SessionBackend;
use crate::sessions::directory::Directory;
use crate::sessions::docker::DockerSessions;
use crate::storage::{Clock, Db};

/// The purpose of the key session tokens are derived from.
const SESSION_TOKENS: &str = "jupyter-session-tokens";

/// Everything a request or a job needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub forges: Forges,
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers in this process when a delivery enqueues jobs.
    pub jobs_ready: Arc<Notify>,
    /// The Docker engine for image builds.
    pub builder: Builder,
    /// Stores webhook deliveries, several per transaction under load.
    pub deliveries: crate::ingest::writer::DeliveryWriter,
    /// Turns to read webhook bodies.
    pub reading: Arc<tokio::sync::Semaphore>,
    /// Logs of the builds running in this process.
    pub build_logs: Arc<LogHub>,
    /// The git mirrors of projects, under the data directory.
    pub mirrors: Arc<Mirrors>,
    /// Where storage and jobs read the time (the database's clock).
    pub clock: Clock,
    /// Who is looking and what they may do.
    pub access: Access,
    /// Where users' Jupyter sessions run (the local Docker engine).
    pub sessions: Arc<dyn SessionBackend>,
    /// The sessions the proxy serves, read from `sessions`.
    pub directory: Arc<Directory>,
}

impl App {
    /// Connects to the database (applying migrations) and builds the configured forges.
    pub async fn new(settings: Settings) -> anyhow::Result<App> {
        let db = Db::connect(&settings.database_url).await?;
        let forges = build_forges(&settings, &db)?;
        Self::with_parts(settings, db, forges)
    }

    /// The app over `db`, reading the time from `db`'s clock. Fails when the access
    /// settings cannot be used (a bad secret key or role map).
    pub fn with_parts(settings: Settings, db: Db, forges: Forges) -> anyhow::Result<App> {
        let builder = builder_for(&settings);
        let clock = db.clock().clone();
        let access = Access::new(&settings, db.clone())?;
        let jobs_ready = Arc::new(Notify::new());
        let spool = match settings.server.spool_max_bytes {
            0 => None,
            max => Some(Arc::new(crate::ingest::spool::Spool::open(
                &settings.data_dir.join("spool"),
                max,
            )?)),
        };
        let sessions: Arc<dyn SessionBackend> = match DockerSessions::connect(
            settings.environments.docker_host.as_deref(),
            settings.sessions.clone(),
            access.derived_key(SESSION_TOKENS),
        ) {
            Ok(docker) => {
                Arc::new(docker.measure_homes_with(settings.environments.base_image.clone()))
            }
            Err(e) => {
                tracing::warn!("sessions cannot start: {e}");
                Arc::new(crate::sessions::Unavailable(e.to_string()))
            }
        };
        Ok(App {
            directory: Arc::new(Directory::new(sessions.clone())),
            sessions,
            access,
            mirrors: Arc::new(Mirrors::new(
                settings.data_dir.join("mirrors"),
                clock.clone(),
            )),
            settings: Arc::new(settings),
            deliveries: crate::ingest::writer::DeliveryWriter::spawn(
                db.clone(),
                spool,
                jobs_ready.clone(),
            ),
            reading: Arc::new(tokio::sync::Semaphore::new(
                crate::ingest::BODIES_READ_AT_ONCE,
            )),
            db,
            forges,
            metrics: Arc::new(Metrics::new()),
            jobs_ready,
            builder,
            build_logs: Arc::new(LogHub::new()),
            clock,
        })
    }

    /// What jobs see of the app.
    pub fn jobs(&self) -> jobs::Context {
        jobs::Context {
            db: self.db.clone(),
            forges: self.forges.clone(),
            builder: self.builder.clone(),
            build_logs: self.build_logs.clone(),
            mirrors: self.mirrors.clone(),
            settings: self.settings.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            jobs_ready: self.jobs_ready.clone(),
            sessions: self.sessions.clone(),
        }
    }

    /// Which jobs events cause, from the settings.
    pub fn planning(&self) -> jobs::Planning {
        jobs::Planning {
            max_attempts: self.settings.jobs.max_attempts,
            environments: self.settings.environments.enabled,
        }
    }

    /// Launch-spec options from the settings.
    pub fn spec_options(&self) -> crate::spec::Options {
        spec_options(&self.settings)
    }
}

impl FromRef<App> for Ingest {
    fn from_ref(app: &App) -> Ingest {
        Ingest {
            settings: app.settings.clone(),
            deliveries: app.deliveries.clone(),
            metrics: app.metrics.clone(),
            jobs_ready: app.jobs_ready.clone(),
            planning: app.planning(),
            reading: app.reading.clone(),
        }
    }
}

pub use crate::environment::flow::{builder_for, spec_options};

/// The forges the settings call for: GitLab with a URL and a token, GitHub with a token
/// (and optionally an Enterprise API URL), and always the local forge.
pub fn build_forges(settings: &Settings, db: &Db) -> anyhow::Result<Forges> {
    let gitlab: Option<Arc<dyn Forge>> =
        match (&settings.forges.gitlab_url, &settings.forges.gitlab_token) {
            (Some(url), Some(token)) => Some(Arc::new(crate::forge::gitlab::GitLabForge::new(
                url,
                token.clone(),
            )?)),
            _ => None,
        };
    let github: Option<Arc<dyn Forge>> = match &settings.forges.github_token {
        Some(token) => Some(Arc::new(crate::forge::github::GitHubForge::new(
            settings.forges.github_api_url.clone(),
            token.clone(),
        )?)),
        None => None,
    };
    let local: Arc<dyn Forge> = Arc::new(crate::forge::local::LocalForge::new(
        db.clone(),
        settings.forges.git_roots.clone(),
    ));
    Ok(Forges {
        gitlab,
        github,
        local,
    })
}
