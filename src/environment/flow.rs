//! From a commit to a ready environment: fetch the project into its bare mirror, read
//! the launch spec at the commit, compute the environment key, find the image in the
//! cache or build it, and keep the forge's commit status `nbforge/environment` up to
//! date (`pending` → `running` → `success` / `failed`) with a link to the build log or
//! the launch page.
//!
//! Errors in the repository's spec or build end with a `failed` status naming the
//! problem ([`PrepareError::User`]); errors of the infrastructure (forge or Docker engine
//! unreachable) are [`PrepareError::Infrastructure`], for the caller to retry, and the
//! status says so ([`report_infrastructure`]).

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::environment::{
    BuildError, BuildRequest, Builder, ContextSource, LABEL_COMMIT, LABEL_KEY, LABEL_REPO,
    LABEL_VERSION, LogHub, Phase,
};
use crate::events::ProjectRef;
use crate::forge::{CommitStatus, Forge, ProjectId, StatusState};
use crate::repo::mirror::Mirrors;
use crate::storage::{Db, JobId};

/// The commit status context nbforge sets.
pub const STATUS_NAME: &str = "nbforge/environment";

/// GitLab accepts status descriptions of up to 255 characters.
const MAX_DESCRIPTION: usize = 250;

/// Which environment to prepare.
#[derive(Debug, Clone)]
pub struct EnvironmentRequest {
    /// The forge name used in nbforge's tables (`gitlab`, `github`).
    pub forge_name: String,
    /// Where the commit lives (for a merge request from a fork: the fork).
    pub project: ProjectRef,
    /// Branch the commit was pushed to, when known.
    pub ref_name: Option<String>,
    pub commit: String,
}

/// How preparing an environment ended badly.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The repository is at fault (a bad launch spec, a failing build): shown on the
    /// commit status; trying again changes nothing.
    #[error("{0}")]
    User(String),
    /// Something outside nbforge failed (forge, Docker engine, database): worth retrying.
    #[error("{0:#}")]
    Infrastructure(anyhow::Error),
    /// A newer commit superseded this one while it was prepared.
    #[error("canceled")]
    Canceled,
}

macro_rules! infrastructure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PrepareError {
            fn from(e: $t) -> Self {
                PrepareError::Infrastructure(e.into())
            }
        }
    )*};
}
infrastructure_from!(crate::storage::DbError);

impl From<crate::repo::mirror::MirrorError> for PrepareError {
    /// A missing commit or a refused project is final; the rest is retried.
    fn from(e: crate::repo::mirror::MirrorError) -> Self {
        if e.is_permanent() {
            PrepareError::User(e.to_string())
        } else {
            PrepareError::Infrastructure(e.into())
        }
    }
}

impl From<crate::forge::ForgeError> for PrepareError {
    /// A refusal the forge would repeat is final; the rest is retried.
    fn from(e: crate::forge::ForgeError) -> Self {
        if e.is_permanent() {
            PrepareError::User(e.to_string())
        } else {
            PrepareError::Infrastructure(e.into())
        }
    }
}

/// What preparing an environment uses.
#[derive(Clone)]
pub struct Preparer {
    pub db: Db,
    /// The forge of the project (statuses, fetch URLs).
    pub forge: Arc<dyn Forge>,
    pub builder: Builder,
    pub logs: Arc<LogHub>,
    pub mirrors: Arc<Mirrors>,
    pub spec: crate::spec::Options,
    /// nbforge's public URL, for links in statuses.
    pub public_url: Url,
    /// Push built images to the configured registry.
    pub push_images: bool,
    /// Conda channels and caches.
    pub conda: crate::environment::conda::CondaSettings,
}

/// Launch-spec options from the settings.
pub fn spec_options(settings: &crate::config::Settings) -> crate::spec::Options {
    crate::spec::Options {
        default_python: settings.environments.default_python.clone(),
        base_image: settings.environments.base_image.clone(),
        base_python: settings.environments.base_python.clone(),
        python_bases: settings.environments.python_bases.clone(),
        python_mismatch: settings.environments.python_mismatch,
        debian_mirror: settings.environments.debian_mirror.clone(),
        extra_ca: settings.environments.extra_ca.clone(),
        cran_mirror: settings.environments.cran_mirror.clone(),
        max_context_bytes: settings.environments.build_context_max_bytes,
        conda: settings.environments.conda.channels.clone(),
        ..crate::spec::Options::default()
    }
}

/// Conda settings from the settings: channels, limits, and the caches under the data folder.
pub fn conda_settings(
    settings: &crate::config::Settings,
) -> crate::environment::conda::CondaSettings {
    let env = &settings.environments;
    crate::environment::conda::CondaSettings {
        package_max_bytes: env.conda.package_max_bytes,
        extra_ca: env.extra_ca.clone(),
        ..crate::environment::conda::CondaSettings::new(
            env.conda.channels.clone(),
            env.conda
                .cache_dir
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("conda")),
        )
    }
}

/// The image builder the settings call for.
pub fn builder_for(settings: &crate::config::Settings) -> Builder {
    let env = &settings.environments;
    Builder::connect(crate::environment::BuilderSettings {
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

/// A prepared environment.
#[derive(Debug, Clone)]
pub struct Environment {
    pub build_id: i64,
    pub image: String,
    pub environment_key: String,
    pub cached: bool,
    pub launch_url: String,
}

/// The first 8 characters of a commit id, for messages; a malformed id is shown whole.
pub fn short_sha(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

struct Reporter<'a> {
    forge: Arc<dyn Forge>,
    project: ProjectId,
    req: &'a EnvironmentRequest,
}

impl Reporter<'_> {
    /// Sets the commit status; a forge outage here is an infrastructure error.
    async fn status(
        &self,
        state: StatusState,
        description: &str,
        target_url: &str,
    ) -> Result<(), PrepareError> {
        let status = CommitStatus {
            state,
            name: STATUS_NAME.to_owned(),
            ref_name: self.req.ref_name.clone(),
            target_url: Some(target_url.to_owned()),
            description: Some(crate::text::truncate(description, MAX_DESCRIPTION).into_owned()),
        };
        self.forge
            .set_commit_status(&self.project, &self.req.commit, &status)
            .await?;
        Ok(())
    }
}

/// Prepares the environment of `req` for `job`, reporting progress as commit statuses.
/// `cancel` stops a build when a newer commit supersedes this one.
pub async fn prepare(
    p: &Preparer,
    job: JobId,
    cancel: &CancellationToken,
    req: &EnvironmentRequest,
) -> Result<Environment, PrepareError> {
    let reporter = Reporter {
        forge: p.forge.clone(),
        project: ProjectId::from(&req.project),
        req,
    };
    let build_id =
        p.db.create_build(
            &req.forge_name,
            &req.project.path,
            req.ref_name.as_deref(),
            &req.commit,
            Some(job),
        )
        .await?;
    p.logs.start(build_id, Phase::Waiting);
    let result = run(p, cancel, req, &reporter, build_id).await;
    let log = p.logs.finish(build_id);
    let (phase, message) = match &result {
        Ok(env) if env.cached => (Phase::Built, "image found in the cache".to_owned()),
        Ok(_) => (Phase::Built, "image built".to_owned()),
        Err(PrepareError::Canceled) => (Phase::Canceled, "superseded by a newer commit".to_owned()),
        Err(e) => (Phase::Failed, e.to_string()),
    };
    let cached = matches!(&result, Ok(env) if env.cached);
    p.db.append_build_log(build_id, &log.rows()).await?;
    drop(log);
    p.db.set_build_phase(build_id, phase, Some(&message), cached, None)
        .await?;
    result
}

async fn run(
    p: &Preparer,
    cancel: &CancellationToken,
    req: &EnvironmentRequest,
    reporter: &Reporter<'_>,
    build_id: i64,
) -> Result<Environment, PrepareError> {
    let logs = p.logs.clone();
    let log_link = crate::urls::build_log(&p.public_url, build_id);
    let short = short_sha(&req.commit);
    reporter
        .status(
            StatusState::Pending,
            &format!("preparing the environment for {short}"),
            &log_link,
        )
        .await?;

    // Fetch the commit into the project's mirror.
    logs.phase(
        build_id,
        Phase::Fetching,
        &format!("fetching {} at {short}", req.project.path),
    );
    let mirror = match p
        .mirrors
        .fetch_project(&*p.forge, &req.project, &req.commit)
        .await
    {
        Ok(m) => m,
        // The commit is not in the repository, or the project is refused: say so for good.
        Err(e) if e.is_permanent() => {
            let message = e.to_string();
            logs.line(build_id, &message);
            reporter
                .status(StatusState::Failed, &message, &log_link)
                .await?;
            return Err(PrepareError::User(message));
        }
        Err(e) => return Err(e.into()),
    };
    let repo_path = mirror.path().to_owned();
    let context_repository = repo_path.clone();

    // Read the launch spec at the commit.
    let analysis_opts = p.spec.clone();
    let spec_commit = req.commit.clone();
    let analyzed = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path).map_err(|e| {
            crate::spec::SpecError::Internal(format!("opening the mirror: {}", e.message()))
        })?;
        let src = crate::repo::CommitTree::open(&repo, &spec_commit)
            .map_err(crate::spec::SpecError::from)?;
        let analysis = crate::spec::analyze(&src, &analysis_opts)?;
        let dockerfile_path = analysis.dockerfile_path();
        // Only generate the context when a build may be needed; it is cheap next to a build.
        let context = analysis.build_context_files(&src, &analysis_opts)?;
        Ok::<_, crate::spec::SpecError>((analysis, dockerfile_path, context))
    })
    .await
    .map_err(|e| PrepareError::Infrastructure(anyhow::anyhow!("spec task: {e}")))?;
    drop(mirror);
    let (analysis, dockerfile_path, context) = match analyzed {
        Ok(a) => a,
        Err(e) if e.is_user_error() => {
            let message = match &e {
                // A kind nbforge does not build: its message names the kind, the file that
                // selected it and the documentation section.
                crate::spec::SpecError::Unsupported { message, .. } => message.clone(),
                _ => e
                    .diagnostics()
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string()),
            };
            logs.line(build_id, &e.to_string());
            reporter
                .status(StatusState::Failed, &message, &log_link)
                .await?;
            return Err(PrepareError::User(message));
        }
        Err(e) => return Err(PrepareError::Infrastructure(anyhow::anyhow!("{e}"))),
    };
    for w in &analysis.warnings {
        logs.line(build_id, &format!("warning: {w}"));
    }
    // Said on every status from here on: the image's R differs from the one asked for.
    let note = analysis
        .runtime_note()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let image = p
        .builder
        .image_for(&req.project.path, &analysis.environment_key);
    p.db.set_build_environment(build_id, &analysis.environment_key, &image)
        .await?;
    let launch = crate::urls::launch(
        &p.public_url,
        req.project.forge,
        &req.project.path,
        &req.commit,
    );

    // Cache: an image for the key means nothing to build.
    let exists = p
        .builder
        .image_exists(&image)
        .await
        .map_err(|e| infrastructure(e, build_id, &logs))?;
    if exists {
        logs.phase(
            build_id,
            Phase::Built,
            &format!("{image} found in the cache"),
        );
        reporter
            .status(
                StatusState::Success,
                &format!("environment ready (cached){note}"),
                &launch,
            )
            .await?;
        return Ok(Environment {
            build_id,
            image,
            environment_key: analysis.environment_key,
            cached: true,
            launch_url: launch,
        });
    }

    if cancel.is_cancelled() {
        return Err(PrepareError::Canceled);
    }
    logs.phase(build_id, Phase::Building, &format!("building {image}"));
    reporter
        .status(
            StatusState::Running,
            &format!("building the {} environment{note}", analysis.kind),
            &log_link,
        )
        .await?;
    let labels = HashMap::from([
        (LABEL_REPO.to_owned(), req.project.path.clone()),
        (LABEL_COMMIT.to_owned(), req.commit.clone()),
        (LABEL_KEY.to_owned(), analysis.environment_key.clone()),
        (
            LABEL_VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ]);
    let line_logs = logs.clone();
    let sink = move |line: &str| line_logs.line(build_id, line);
    // A conda environment: solved (or read from its lock) and installed on the host, then
    // sent as one folder of the build context. The prefix is removed when the build ends.
    let mut prepared = None;
    if let Some(env) = &analysis.conda {
        match crate::environment::conda::prepare(&p.conda, env, &sink).await {
            Ok(c) => {
                p.db.set_build_conda_lock(build_id, &c.installed.lock)
                    .await?;
                prepared = Some(c);
            }
            Err(crate::environment::conda::CondaError::User(message)) => {
                logs.line(build_id, &message);
                reporter
                    .status(StatusState::Failed, &message, &log_link)
                    .await?;
                return Err(PrepareError::User(message));
            }
            Err(e) => {
                return Err(infrastructure(
                    BuildError::Internal(e.to_string()),
                    build_id,
                    &logs,
                ));
            }
        }
        if cancel.is_cancelled() {
            return Err(PrepareError::Canceled);
        }
    }
    let request = BuildRequest {
        tag: image.clone(),
        dockerfile: dockerfile_path,
        context,
        source: ContextSource::Git {
            repository: context_repository,
            commit: req.commit.clone(),
        },
        folders: prepared
            .iter()
            .map(|c| (crate::spec::conda::CONTEXT_DIR.to_owned(), c.prefix()))
            .collect(),
        labels,
    };
    // The base image of the environment's Python, made here the first time one needs it.
    if let Some(base) = analysis
        .base_image
        .as_deref()
        .and_then(|image| p.spec.python_bases.iter().find(|b| b.image == image))
    {
        crate::environment::base::ensure_python_base(
            &p.builder,
            base,
            &p.spec.debian_mirror,
            p.spec.extra_ca.as_deref(),
            &sink,
        )
        .await
        .map_err(|e| {
            infrastructure(
                BuildError::Internal(format!("making the base image {}: {e}", base.image)),
                build_id,
                &logs,
            )
        })?;
    }
    match p.builder.build(&request, &sink, cancel).await {
        Ok(()) => {}
        Err(BuildError::Canceled) => {
            let _ = reporter
                .status(
                    StatusState::Canceled,
                    "superseded by a newer commit",
                    &log_link,
                )
                .await;
            return Err(PrepareError::Canceled);
        }
        Err(e @ (BuildError::Failed(_) | BuildError::Timeout(_))) => {
            let message = format!("build failed: {e}");
            reporter
                .status(StatusState::Failed, &message, &log_link)
                .await?;
            return Err(PrepareError::User(message));
        }
        Err(e) => return Err(infrastructure(e, build_id, &logs)),
    }
    if p.push_images {
        logs.phase(build_id, Phase::Pushing, &format!("pushing {image}"));
        p.builder
            .push(&image, &sink)
            .await
            .map_err(|e| infrastructure(e, build_id, &logs))?;
    }
    logs.phase(build_id, Phase::Built, &format!("{image} built"));
    reporter
        .status(
            StatusState::Success,
            &format!("environment ready{note}"),
            &launch,
        )
        .await?;
    Ok(Environment {
        build_id,
        image,
        environment_key: analysis.environment_key,
        cached: false,
        launch_url: launch,
    })
}

/// An engine failure: logged, and retried by the queue.
fn infrastructure(e: BuildError, build_id: i64, logs: &LogHub) -> PrepareError {
    logs.line(build_id, &format!("{e}; will retry"));
    PrepareError::Infrastructure(anyhow::anyhow!("{e}"))
}

/// Tells the forge that an infrastructure problem stopped try `attempt` of `max`: the
/// status says it will be retried (as `running`: GitLab refuses a second `pending`, so its
/// description could not change), or, after the last try, that nbforge gave up.
pub async fn report_infrastructure(
    p: &Preparer,
    req: &EnvironmentRequest,
    error: &str,
    attempt: i64,
    max: i64,
) {
    let reporter = Reporter {
        forge: p.forge.clone(),
        project: ProjectId::from(&req.project),
        req,
    };
    let (state, description) = if attempt < max {
        (
            StatusState::Running,
            format!("infrastructure problem, retrying (try {attempt} of {max}): {error}"),
        )
    } else {
        (
            StatusState::Failed,
            format!("infrastructure problem, gave up: {error}"),
        )
    };
    let target = crate::urls::launch(
        &p.public_url,
        req.project.forge,
        &req.project.path,
        &req.commit,
    );
    if let Err(e) = reporter.status(state, &description, &target).await {
        tracing::warn!(error = %e, "could not report the infrastructure problem on the commit");
    }
}
