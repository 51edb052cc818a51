//! The Docker image builder (bollard): builds from a generated Dockerfile and a context
//! holding only the environment inputs, a cache keyed by the environment key, and
//! streamed build logs.
//!
//! Images are tagged `<prefix>/env:<environment key>` and labelled with the repository,
//! commit, key and nbforge version. An image already present for a key is never built
//! again; Docker's layer cache is shared across keys.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Label keys put on every image nbforge builds.
pub const LABEL_REPO: &str = "org.nbforge.repo";
pub const LABEL_COMMIT: &str = "org.nbforge.commit";
pub const LABEL_KEY: &str = "org.nbforge.environment-key";
pub const LABEL_VERSION: &str = "org.nbforge.version";

/// How a build went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Docker engine cannot be reached or answered with an error of its own: worth retrying.
    #[error("Docker engine unavailable: {0}")]
    Engine(String),
    /// A step of the build failed (a package that does not install, a failing postBuild):
    /// the repository's problem, reported and not retried.
    #[error("{0}")]
    Failed(String),
    #[error("the build took longer than {0:?}")]
    Timeout(Duration),
    #[error("the build was canceled")]
    Canceled,
    #[error("{0}")]
    Internal(String),
}

impl BuildError {
    /// Whether the error lies outside the repository (retry later).
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, BuildError::Engine(_) | BuildError::Internal(_))
    }
}

fn engine(e: bollard::errors::Error) -> BuildError {
    BuildError::Engine(e.to_string())
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Full image reference to tag, e.g. `nbforge/env:<key>`.
    pub tag: String,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    /// Files of the context: (path, bytes).
    pub context: Vec<(String, Vec<u8>)>,
    pub labels: HashMap<String, String>,
}

/// Settings of the image builder.
#[derive(Debug, Clone)]
pub struct BuilderSettings {
    /// Image name prefix: images are `<prefix>/env:<key>`.
    pub prefix: String,
    /// Builds allowed at once.
    pub concurrency: usize,
    /// Longest a build may take.
    pub timeout: Duration,
    /// Registry to push to, e.g. `registry.example.org`; images are then named
    /// `<registry>/<namespace>/<project>/env:<key>` as GitLab's container registry expects.
    pub registry: Option<String>,
    /// Docker engine address (`unix:///…` or `tcp://…`); default: `DOCKER_HOST` or the local socket.
    pub docker_host: Option<String>,
    /// Ignore Docker's layer cache (cold builds, for measurements).
    pub no_cache: bool,
}

/// The Docker engine, with a limit on concurrent builds.
#[derive(Clone)]
pub struct Builder {
    docker: Arc<std::sync::Mutex<Option<Docker>>>,
    settings: BuilderSettings,
    slots: Arc<Semaphore>,
}

fn connect_engine(settings: &BuilderSettings) -> Result<Docker, BuildError> {
    match settings.docker_host.as_deref() {
        None => Docker::connect_with_local_defaults(),
        Some(h) if h.starts_with("unix://") || h.starts_with('/') => Docker::connect_with_unix(
            h.trim_start_matches("unix://"),
            120,
            bollard::API_DEFAULT_VERSION,
        ),
        Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
    }
    .map_err(engine)
}

impl Builder {
    /// A builder for the engine at `settings.docker_host` (`DOCKER_HOST` or the local socket
    /// by default). Nothing is sent, and a missing engine is not an error, until the first
    /// call: a stopped engine then shows up as [`BuildError::Engine`], and is connected to
    /// again on the next call.
    pub fn connect(settings: BuilderSettings) -> Builder {
        let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
        let docker = connect_engine(&settings).ok();
        Builder {
            docker: Arc::new(std::sync::Mutex::new(docker)),
            settings,
            slots,
        }
    }

    pub fn settings(&self) -> &BuilderSettings {
        &self.settings
    }

    /// The engine client, connecting now if the last try failed.
    pub fn docker(&self) -> Result<Docker, BuildError> {
        let mut guard = self.docker.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let d = connect_engine(&self.settings)?;
        *guard = Some(d.clone());
        Ok(d)
    }

    /// The image reference for an environment key of a project (`namespace/project`).
    pub fn image_for(&self, project: &str, key: &str) -> String {
        match &self.settings.registry {
            Some(registry) => format!(
                "{}/{}/env:{key}",
                registry.trim_end_matches('/'),
                project.to_lowercase()
            ),
            None => format!("{}/env:{key}", self.settings.prefix),
        }
    }

    /// Whether `tag` names an environment image of this builder (`<prefix>/env:<key>`,
    /// or `<registry>/<project>/env:<key>` with a registry).
    pub fn owns_image(&self, tag: &str) -> bool {
        match &self.settings.registry {
            Some(registry) => tag
                .strip_prefix(registry.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/') && rest.contains("/env:")),
            None => tag
                .strip_prefix(self.settings.prefix.as_str())
                .is_some_and(|rest| rest.starts_with("/env:")),
        }
    }

    /// Whether `image` is already built: in the engine, or in the registry when one is
    /// configured (the image is then pulled when a session needs it).
    pub async fn image_exists(&self, image: &str) -> Result<bool, BuildError> {
        let docker = self.docker()?;
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(engine(e)),
        }
        if self.settings.registry.is_none() {
            return Ok(false);
        }
        match docker.inspect_registry_image(image, None).await {
            Ok(_) => Ok(true),
            // The registry answers "unknown manifest" (a 4xx through the engine) for a new key.
            Err(bollard::errors::Error::DockerResponseServerError { status_code, .. })
                if status_code < 500 =>
            {
                Ok(false)
            }
            Err(e) => Err(engine(e)),
        }
    }

    /// Builds `req`, sending every log line to `log`. Waits for a free build slot first.
    pub async fn build(
        &self,
        req: &BuildRequest,
        log: &(dyn Fn(&str) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), BuildError> {
        let _slot = tokio::select! {
            s = self.slots.acquire() => s.map_err(|_| BuildError::Internal("builder closed".into()))?,
            _ = cancel.cancelled() => return Err(BuildError::Canceled),
        };
        let tar = context_tar(&req.context)
            .map_err(|e| BuildError::Internal(format!("build context: {e}")))?;
        let labels: HashMap<&str, &str> = req
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let docker = self.docker()?;
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile(&req.dockerfile)
            .t(&req.tag)
            .rm(true)
            .forcerm(true)
            .nocache(self.settings.no_cache)
            .labels(&labels)
            .build();
        let timeout = self.settings.timeout;
        let run = async {
            let mut stream = docker.build_image(opts, None, Some(bollard::body_full(tar.into())));
            let mut last_lines: Vec<String> = Vec::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| match e {
                    bollard::errors::Error::DockerStreamError { error } => {
                        BuildError::Failed(error)
                    }
                    other => engine(other),
                })?;
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        log(line);
                        last_lines.push(line.to_owned());
                        if last_lines.len() > 5 {
                            last_lines.remove(0);
                        }
                    }
                }
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    log(&detail);
                    return Err(BuildError::Failed(summarize_failure(&detail, &last_lines)));
                }
            }
            Ok(())
        };
        tokio::select! {
            r = tokio::time::timeout(timeout, run) => r.map_err(|_| BuildError::Timeout(timeout))?,
            _ = cancel.cancelled() => Err(BuildError::Canceled),
        }
    }

    /// Pushes `image` to its registry (only when a registry is configured).
    pub async fn push(
        &self,
        image: &str,
        log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<(), BuildError> {
        if self.settings.registry.is_none() {
            return Ok(());
        }
        let (repo, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
        let opts = PushImageOptionsBuilder::default().tag(tag).build();
        let docker = self.docker()?;
        let mut stream = docker.push_image(repo, Some(opts), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(engine)?;
            if let Some(status) = info.status {
                log(&status);
            }
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Engine(format!("push of {image} failed: {err}")));
            }
        }
        Ok(())
    }

    /// Tags `image` also as `target` (`repo:tag`).
    pub async fn tag(&self, image: &str, target: &str) -> Result<(), BuildError> {
        let (repo, tag) = target.rsplit_once(':').unwrap_or((target, "latest"));
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker()?
            .tag_image(image, Some(opts))
            .await
            .map_err(engine)
    }
}

/// A short user-facing reason: the engine's message and the step's last output line.
fn summarize_failure(detail: &str, last_lines: &[String]) -> String {
    let last = last_lines
        .iter()
        .rev()
        .find(|l| !l.starts_with("Step ") && !l.starts_with(" ---> ") && l.as_str() != detail)
        .map(|l| l.trim().to_owned());
    match last {
        Some(l) if !l.is_empty() => format!("{detail}: {l}"),
        _ => detail.to_owned(),
    }
}

/// A tar of the context files (regular files, mode 0644; scripts keep 0755).
pub fn context_tar(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        let executable = path.ends_with("postBuild")
            || path.ends_with("/start")
            || path == "start"
            || path.contains("entrypoint");
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes.as_slice())?;
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out)
}
