//! From a commit to a ready environment: fetch the project into its bare mirror, read
//! the launch spec at the commit, compute the environment key, find the image in the
//! cache or build it, and keep the forge's commit status `nbforge/environment` up to
//! date (`pending` → `running` → `success` / `failed`) with a link to the build log or
//! the launch page.
//!
//! Errors in the repository's spec or build end the job with a `failed` status naming
//! the problem; errors of the infrastructure (forge or Docker engine unreachable) are
//! retried by the job queue and the status says so.

use std::collections::HashMap;
use std::sync::Arc;

use crate::app::App;
use crate::environment::{
    BuildError, BuildRequest, LABEL_COMMIT, LABEL_KEY, LABEL_REPO, LABEL_VERSION, Phase,
};
use crate::events::ProjectRef;
use crate::forge::{CommitStatus, Forge, ProjectId, StatusState};
use crate::jobs::{JobContext, JobError};

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

/// The project id the forge understands for an event's project.
pub fn forge_project_id(p: &ProjectRef) -> ProjectId {
    match p.id {
        Some(id) => ProjectId::Id(id),
        None => ProjectId::Path(p.path.clone()),
    }
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
    ) -> Result<(), JobError> {
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

/// A directory-safe mirror name for a project.
fn mirror_key(forge: &str, path: &str) -> String {
    let safe: String = path
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{forge}-{}-{:08x}", safe.trim_start_matches('.'), fnv(path))
}

/// A small stable hash so that distinct paths never share a mirror.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x01000193)
    })
}

/// Fetches a project into its bare mirror under the data directory. The returned guard
/// keeps other fetches of the same mirror out while the caller reads from it.
pub async fn fetch_project(
    app: &App,
    forge_name: &str,
    project: &ProjectRef,
) -> Result<(std::path::PathBuf, tokio::sync::OwnedMutexGuard<()>), JobError> {
    let forge = app.forges.for_kind(&project.forge);
    let source = forge.fetch_source(&forge_project_id(project)).await?;
    let mirrors = app.settings.data_dir.join("mirrors");
    let key = mirror_key(forge_name, &project.path);
    let guard = app.mirror_lock(&key).lock_owned().await;
    let repo_path = tokio::task::spawn_blocking(move || {
        let creds = source.credentials.as_ref().map(|(u, t)| (u.as_str(), t));
        crate::repo::mirror::fetch_mirror(&mirrors, &key, &source.url, creds, &[])
            .map(|r| r.path().to_owned())
    })
    .await
    .map_err(|e| JobError::Transient(anyhow::anyhow!("fetch task: {e}")))?
    .map_err(|e| JobError::Transient(anyhow::anyhow!("{e}")))?;
    Ok((repo_path, guard))
}

/// Prepares the environment of `req`, reporting progress as commit statuses.
pub async fn prepare(
    app: &App,
    ctx: &JobContext,
    req: &EnvironmentRequest,
) -> Result<Environment, JobError> {
    let forge = app.forges.for_kind(&req.project.forge);
    let reporter = Reporter {
        forge: forge.clone(),
        project: forge_project_id(&req.project),
        req,
    };
    let build_id = app
        .db
        .create_build(
            &req.forge_name,
            &req.project.path,
            req.ref_name.as_deref(),
            &req.commit,
            Some(ctx.id),
        )
        .await?;
    let logs = app.build_logs.clone();
    logs.start(build_id, Phase::Waiting);
    let result = run(app, ctx, req, &reporter, build_id).await;
    let log = logs.finish(build_id);
    let (phase, message) = match &result {
        Ok(env) if env.cached => (Phase::Built, "image found in the cache".to_owned()),
        Ok(_) => (Phase::Built, "image built".to_owned()),
        Err(JobError::Canceled) => (Phase::Canceled, "superseded by a newer commit".to_owned()),
        Err(e) => (Phase::Failed, e.to_string()),
    };
    let cached = matches!(&result, Ok(env) if env.cached);
    app.db
        .set_build_phase(build_id, phase, Some(&message), cached, Some(&log))
        .await?;
    result
}

async fn run(
    app: &App,
    ctx: &JobContext,
    req: &EnvironmentRequest,
    reporter: &Reporter<'_>,
    build_id: i64,
) -> Result<Environment, JobError> {
    let logs = app.build_logs.clone();
    let log_link = crate::web::urls::build_log(&app.settings.server.public_url, build_id);
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
    let (repo_path, _guard) = fetch_project(app, &req.forge_name, &req.project).await?;
    let commit = req.commit.clone();

    // Read the launch spec at the commit.
    let opts = app.spec_options();
    let analysis_opts = opts.clone();
    let spec_commit = commit.clone();
    let repo_path2 = repo_path.clone();
    let analyzed = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path2).map_err(|e| {
            crate::spec::SpecError::Internal(format!("opening the mirror: {}", e.message()))
        })?;
        let src = crate::repo::CommitTree::open(&repo, &spec_commit)
            .map_err(crate::spec::SpecError::from)?;
        let analysis = crate::spec::analyze(&src, &analysis_opts)?;
        let dockerfile_path = analysis.dockerfile_path();
        // Only generate the context when a build may be needed; it is cheap next to a build.
        let context = analysis.build_context(&src, &analysis_opts)?;
        Ok::<_, crate::spec::SpecError>((analysis, dockerfile_path, context))
    })
    .await
    .map_err(|e| JobError::Transient(anyhow::anyhow!("spec task: {e}")))?;
    drop(_guard);
    let (analysis, dockerfile_path, context) = match analyzed {
        Ok(a) => a,
        Err(e) if e.is_user_error() => {
            let message = e
                .diagnostics()
                .first()
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string());
            logs.line(build_id, &e.to_string());
            reporter
                .status(StatusState::Failed, &message, &log_link)
                .await?;
            return Err(JobError::User(message));
        }
        Err(e) => return Err(JobError::Transient(anyhow::anyhow!("{e}"))),
    };
    for w in &analysis.warnings {
        logs.line(build_id, &format!("warning: {w}"));
    }
    let image = app
        .builder
        .image_for(&req.project.path, &analysis.environment_key);
    app.db
        .set_build_environment(build_id, &analysis.environment_key, &image)
        .await?;
    let launch = crate::web::urls::launch(
        &app.settings.server.public_url,
        &req.project.path,
        &req.commit,
    );

    // Cache: an image for the key means nothing to build.
    let exists = app
        .builder
        .image_exists(&image)
        .await
        .map_err(|e| infrastructure(e, build_id, app))?;
    if exists {
        logs.phase(
            build_id,
            Phase::Built,
            &format!("{image} found in the cache"),
        );
        reporter
            .status(StatusState::Success, "environment ready (cached)", &launch)
            .await?;
        return Ok(Environment {
            build_id,
            image,
            environment_key: analysis.environment_key,
            cached: true,
            launch_url: launch,
        });
    }

    if ctx.cancel.is_cancelled() {
        return Err(JobError::Canceled);
    }
    logs.phase(build_id, Phase::Building, &format!("building {image}"));
    reporter
        .status(
            StatusState::Running,
            &format!("building the {} environment", analysis.kind),
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
    let request = BuildRequest {
        tag: image.clone(),
        dockerfile: dockerfile_path,
        context,
        labels,
    };
    let line_logs = logs.clone();
    let sink = move |line: &str| line_logs.line(build_id, line);
    match app.builder.build(&request, &sink, &ctx.cancel).await {
        Ok(()) => {}
        Err(BuildError::Canceled) => {
            let _ = reporter
                .status(
                    StatusState::Canceled,
                    "superseded by a newer commit",
                    &log_link,
                )
                .await;
            return Err(JobError::Canceled);
        }
        Err(e @ (BuildError::Failed(_) | BuildError::Timeout(_))) => {
            let message = format!("build failed: {e}");
            reporter
                .status(StatusState::Failed, &message, &log_link)
                .await?;
            return Err(JobError::User(message));
        }
        Err(e) => return Err(infrastructure(e, build_id, app)),
    }
    if app.settings.environments.registry.is_some() {
        logs.phase(build_id, Phase::Pushing, &format!("pushing {image}"));
        app.builder
            .push(&image, &sink)
            .await
            .map_err(|e| infrastructure(e, build_id, app))?;
    }
    logs.phase(build_id, Phase::Built, &format!("{image} built"));
    reporter
        .status(StatusState::Success, "environment ready", &launch)
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
fn infrastructure(e: BuildError, build_id: i64, app: &App) -> JobError {
    app.build_logs.line(build_id, &format!("{e}; will retry"));
    JobError::Transient(anyhow::anyhow!("{e}"))
}

/// Tells the forge that an infrastructure problem stopped try `attempt` of `max`: the
/// status says it will be retried (as `running`: GitLab refuses a second `pending`, so its
/// description could not change), or, after the last try, that nbforge gave up.
pub async fn report_infrastructure(
    app: &App,
    req: &EnvironmentRequest,
    error: &str,
    attempt: i64,
    max: i64,
) {
    let reporter = Reporter {
        forge: app.forges.for_kind(&req.project.forge),
        project: forge_project_id(&req.project),
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
    let target = crate::web::urls::launch(
        &app.settings.server.public_url,
        &req.project.path,
        &req.commit,
    );
    if let Err(e) = reporter.status(state, &description, &target).await {
        tracing::warn!(error = %e, "could not report the infrastructure problem on the commit");
    }
}
