//! The application state shared by the HTTP routes and the job workers.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Settings;
use crate::environment::{Builder, BuilderSettings, LogHub};
use crate::events::ForgeKind;
use crate::forge::Forge;
use crate::metrics::Metrics;
use crate::storage::Db;

/// The forges nbforge talks to. GitLab-shaped events go to GitLab when it is
/// configured and to the local forge (plain git, `hooks/post-receive`) otherwise.
#[derive(Clone)]
pub struct Forges {
    pub gitlab: Option<Arc<dyn Forge>>,
    pub github: Option<Arc<dyn Forge>>,
    pub local: Arc<dyn Forge>,
}

impl Forges {
    /// The forge that answers for events from `kind`.
    pub fn for_kind(&self, kind: &ForgeKind) -> Arc<dyn Forge> {
        match kind {
            ForgeKind::GitLab => self.gitlab.clone().unwrap_or_else(|| self.local.clone()),
            ForgeKind::GitHub => self.github.clone().unwrap_or_else(|| self.local.clone()),
        }
    }
}

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
    /// Logs of the builds running in this process.
    pub build_logs: Arc<LogHub>,
    /// One lock per git mirror, so that fetches into it do not overlap.
    mirror_locks: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl App {
    /// Connects to the database (applying migrations) and builds the configured forges.
    pub async fn new(settings: Settings) -> anyhow::Result<App> {
        let db = Db::connect(&settings.database_url).await?;
        let forges = build_forges(&settings, &db)?;
        Ok(Self::with_parts(settings, db, forges))
    }

    pub fn with_parts(settings: Settings, db: Db, forges: Forges) -> App {
        let builder = builder_for(&settings);
        App {
            settings: Arc::new(settings),
            deliveries: crate::ingest::writer::DeliveryWriter::spawn(db.clone()),
            db,
            forges,
            metrics: Arc::new(Metrics::new()),
            jobs_ready: Arc::new(Notify::new()),
            builder,
            build_logs: Arc::new(LogHub::new()),
            mirror_locks: Arc::default(),
        }
    }

    /// Which jobs events cause, from the settings.
    pub fn planning(&self) -> crate::jobs::Planning {
        crate::jobs::Planning {
            max_attempts: self.settings.jobs.max_attempts,
            environments: self.settings.environments.enabled,
        }
    }

    /// The lock of the git mirror named `key`.
    pub fn mirror_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.mirror_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Launch-spec options from the settings.
    pub fn spec_options(&self) -> crate::spec::Options {
        spec_options(&self.settings)
    }
}

/// Launch-spec options from the settings.
pub fn spec_options(settings: &Settings) -> crate::spec::Options {
    crate::spec::Options {
        default_python: settings.environments.default_python.clone(),
        base_image: settings.environments.base_image.clone(),
        extra_ca: settings.environments.extra_ca.clone(),
        ..crate::spec::Options::default()
    }
}

/// The image builder the settings call for.
pub fn builder_for(settings: &Settings) -> Builder {
    let env = &settings.environments;
    Builder::connect(BuilderSettings {
        prefix: env.image_prefix.clone(),
        concurrency: env.build_concurrency,
        timeout: env.build_timeout,
        registry: env.registry.clone(),
        docker_host: env.docker_host.clone(),
        no_cache: false,
        memory_bytes: env.build_memory_bytes,
        cpus: env.build_cpus,
        network: env.build_network.clone(),
        allowed_bases: env.allowed_base_images.clone(),
    })
}

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
    let local: Arc<dyn Forge> = Arc::new(crate::forge::local::LocalForge::new(db.clone()));
    Ok(Forges {
        gitlab,
        github,
        local,
    })
}
