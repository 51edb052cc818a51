//! The Docker image builder (bollard): builds from a generated Dockerfile and a context
//! holding only the environment inputs, a cache keyed by the environment key, and
//! streamed build logs.
//!
//! The build context is streamed to the engine as a tar made on a blocking thread, the
//! repository's files read one at a time as the engine takes them: a build holds one file
//! of its context in memory, not all of it.
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

pub use crate::spec::{ContextData, ContextFile};

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
    /// Files of the context, sorted by path.
    pub context: Vec<ContextFile>,
    /// Where the context's repository files are read from.
    pub source: ContextSource,
    /// Folders of the host added to the context after its files, as (path in the context,
    /// folder): a prepared conda prefix.
    pub folders: Vec<(String, std::path::PathBuf)>,
    pub labels: HashMap<String, String>,
}

/// The tree a build context's repository files ([`ContextData::Source`]) are read from.
#[derive(Debug, Clone)]
pub enum ContextSource {
    /// Every file of the context is in memory.
    None,
    /// A commit of a bare repository.
    Git {
        repository: std::path::PathBuf,
        commit: String,
    },
    /// A folder on disk (`nbforge build`).
    Dir(std::path::PathBuf),
}

impl BuildRequest {
    /// A request whose context files are all in memory, given as (path, bytes).
    pub fn in_memory(
        tag: String,
        dockerfile: String,
        files: Vec<(String, Vec<u8>)>,
        labels: HashMap<String, String>,
    ) -> BuildRequest {
        let mut context: Vec<ContextFile> = files
            .into_iter()
            .map(|(path, bytes)| ContextFile {
                path,
                data: ContextData::Bytes(bytes),
            })
            .collect();
        context.sort_by(|x, y| x.path.cmp(&y.path));
        BuildRequest {
            tag,
            dockerfile,
            context,
            source: ContextSource::None,
            folders: Vec::new(),
            labels,
        }
    }
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
    /// Memory a build's steps may use, in bytes (the engine's API takes at most 2 GiB).
    pub memory_bytes: i32,
    /// CPUs a build's steps may use.
    pub cpus: f64,
    /// Docker network build steps run on (`None`: the engine's default bridge).
    pub network: Option<String>,
    /// Glob patterns (`docker.io/library/*`, `registry.example.org/bases/*`) of the images a
    /// repository's own Dockerfile may start `FROM`; empty allows any image except
    /// nbforge's environment images, which are always refused.
    pub allowed_bases: Vec<String>,
}

impl BuilderSettings {
    /// The defaults for the other fields.
    pub fn new(prefix: impl Into<String>) -> BuilderSettings {
        BuilderSettings {
            prefix: prefix.into(),
            concurrency: 1,
            timeout: Duration::from_secs(3600),
            registry: None,
            docker_host: None,
            no_cache: false,
            memory_bytes: DEFAULT_BUILD_MEMORY_BYTES,
            cpus: 2.0,
            network: None,
            allowed_bases: Vec::new(),
        }
    }
}

/// Memory build steps may use by default: the most the engine's API field takes.
pub const DEFAULT_BUILD_MEMORY_BYTES: i32 = i32::MAX;

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
                repository_path(project)
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

    /// Builds a repository's environment `req`, sending every log line to `log`, after
    /// checking the images its Dockerfile starts from ([`check_base_images`]). Waits for a
    /// free build slot first.
    pub async fn build(
        &self,
        req: &BuildRequest,
        log: &(dyn Fn(&str) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), BuildError> {
        let dockerfile = req
            .context
            .iter()
            .find(|f| f.path == req.dockerfile)
            .and_then(|f| match &f.data {
                ContextData::Bytes(bytes) => Some(String::from_utf8_lossy(bytes)),
                ContextData::Source { .. } => None,
            })
            .ok_or_else(|| {
                BuildError::Internal(format!("{} is not in the context", req.dockerfile))
            })?;
        check_base_images(&dockerfile, &self.settings)?;
        self.build_unchecked(req, log, cancel).await
    }

    /// Builds one of nbforge's own images (the base image), whose Dockerfile nbforge wrote.
    pub async fn build_own(
        &self,
        req: &BuildRequest,
        log: &(dyn Fn(&str) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), BuildError> {
        self.build_unchecked(req, log, cancel).await
    }

    async fn build_unchecked(
        &self,
        req: &BuildRequest,
        log: &(dyn Fn(&str) + Send + Sync),
        cancel: &CancellationToken,
    ) -> Result<(), BuildError> {
        let _slot = tokio::select! {
            s = self.slots.acquire() => s.map_err(|_| BuildError::Internal("builder closed".into()))?,
            _ = cancel.cancelled() => return Err(BuildError::Canceled),
        };
        let labels: HashMap<&str, &str> = req
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let docker = self.docker()?;
        const CPU_PERIOD: i32 = 100_000;
        let memory = self.settings.memory_bytes.max(64 * 1024 * 1024);
        let mut opts = BuildImageOptionsBuilder::default()
            .dockerfile(&req.dockerfile)
            .t(&req.tag)
            .rm(true)
            .forcerm(true)
            .nocache(self.settings.no_cache)
            .labels(&labels)
            .memory(memory)
            // No swap beyond the memory limit.
            .memswap(memory)
            .cpuperiod(CPU_PERIOD)
            .cpuquota((self.settings.cpus.max(0.01) * f64::from(CPU_PERIOD)) as i32);
        if let Some(network) = &self.settings.network {
            opts = opts.networkmode(network);
        }
        let opts = opts.build();
        let timeout = self.settings.timeout;
        let run = async {
            let body = context_stream(req.context.clone(), req.source.clone(), req.folders.clone());
            let mut stream = docker.build_image(opts, None, Some(bollard::body_try_stream(body)));
            let mut last_lines: Vec<String> = Vec::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| match e {
                    bollard::errors::Error::DockerStreamError { error } => {
                        BuildError::Failed(summarize_failure(&error, &last_lines))
                    }
                    other => engine(other),
                })?;
                if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                    // The engine colours a step's standard error; logs and statuses are text.
                    let text = crate::text::strip_ansi(text);
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        log(line);
                        last_lines.push(line.to_owned());
                        if last_lines.len() > 20 {
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

/// Refuses a Dockerfile that starts `FROM` (or copies or mounts `--from`) one of nbforge's
/// environment images — another project's environment, with its files — or, when an
/// allowlist is set, an image the allowlist does not match. Build stages named earlier in
/// the file are always allowed; `ARG` defaults are substituted, and a variable without one
/// is refused (nbforge passes no build arguments).
pub fn check_base_images(dockerfile: &str, settings: &BuilderSettings) -> Result<(), BuildError> {
    let mut allow = globset::GlobSetBuilder::new();
    for pattern in &settings.allowed_bases {
        let glob = globset::Glob::new(pattern)
            .map_err(|e| BuildError::Internal(format!("base image allowlist: {e}")))?;
        allow.add(glob);
    }
    let allow = allow
        .build()
        .map_err(|e| BuildError::Internal(format!("base image allowlist: {e}")))?;
    let own_repos: Vec<String> = std::iter::once(format!("{}/env", settings.prefix))
        .map(|r| normalize_repository(&r))
        .collect();
    let registry = settings
        .registry
        .as_deref()
        .map(|r| format!("{}/", r.trim_end_matches('/').to_ascii_lowercase()));
    let is_own = |repo: &str| {
        own_repos.iter().any(|o| o == repo)
            || registry
                .as_deref()
                .is_some_and(|r| repo.starts_with(r) && repo.ends_with("/env"))
    };

    let mut args: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<String> = Vec::new();
    for (n, raw) in dockerfile.lines().enumerate() {
        let place = format!("{}:{}", "Dockerfile", n + 1);
        let mut words = raw.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        let words: Vec<&str> = words.collect();
        let mut refs: Vec<String> = Vec::new();
        let mut stage = None;
        match instruction.to_ascii_uppercase().as_str() {
            "ARG" => {
                for w in &words {
                    if let Some((k, v)) = w.split_once('=') {
                        args.insert(k.to_owned(), v.trim_matches('"').to_owned());
                    }
                }
            }
            "FROM" => {
                let rest: Vec<&&str> = words.iter().filter(|w| !w.starts_with("--")).collect();
                if let Some(image) = rest.first() {
                    refs.push((**image).to_owned());
                }
                if let [_, as_kw, name] = rest.as_slice()
                    && as_kw.eq_ignore_ascii_case("as")
                {
                    stage = Some(name.to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" | "RUN" => {
                for w in &words {
                    if let Some(from) = w.strip_prefix("--from=") {
                        refs.push(from.to_owned());
                    }
                    if let Some(mount) = w.strip_prefix("--mount=") {
                        refs.extend(
                            mount
                                .split(',')
                                .filter_map(|kv| kv.strip_prefix("from="))
                                .map(str::to_owned),
                        );
                    }
                }
            }
            _ => {}
        }
        for reference in refs {
            let image = substitute_args(&reference, &args).ok_or_else(|| {
                BuildError::Failed(format!(
                    "{place}: `{reference}` uses a build argument without a default value"
                ))
            })?;
            let lower = image.to_ascii_lowercase();
            if stages.contains(&lower) || image.parse::<u32>().is_ok() {
                continue;
            }
            if is_own(&normalize_repository(&image)) {
                return Err(BuildError::Failed(format!(
                    "{place}: `{image}` is an nbforge environment image; a Dockerfile may not start from or copy out of another environment"
                )));
            }
            if !settings.allowed_bases.is_empty() && !allow.is_match(&image) {
                return Err(BuildError::Failed(format!(
                    "{place}: `{image}` is not an allowed base image here (allowed: {})",
                    settings.allowed_bases.join(", ")
                )));
            }
        }
        if let Some(stage) = stage {
            stages.push(stage);
        }
    }
    Ok(())
}

/// `$NAME` and `${NAME}` replaced by `ARG` defaults; `None` when one has none.
fn substitute_args(text: &str, args: &HashMap<String, String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, used) = match after.strip_prefix('{') {
            Some(inner) => {
                let end = inner.find('}')?;
                // `${NAME:-default}` and friends: take the name only.
                let name = inner[..end].split(':').next().unwrap_or("");
                (name, end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        out.push_str(args.get(name)?);
        rest = &after[used..];
    }
    out.push_str(rest);
    Some(out)
}

/// An image reference's repository, as the engine resolves it: lowercase, without tag or
/// digest, without the implicit `docker.io/` (and `library/`) prefix.
fn normalize_repository(image: &str) -> String {
    let image = image.to_ascii_lowercase();
    let no_digest = image.split('@').next().unwrap_or(&image);
    let repo = match no_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => no_digest,
    };
    let repo = repo
        .strip_prefix("docker.io/")
        .or_else(|| repo.strip_prefix("index.docker.io/"))
        .unwrap_or(repo);
    repo.strip_prefix("library/").unwrap_or(repo).to_owned()
}

/// A short user-facing reason: the engine's message and the step's last output line; or
/// the last line nbforge's own build helpers wrote (`nbforge: …`), then the engine's message.
fn summarize_failure(detail: &str, last_lines: &[String]) -> String {
    let output = |l: &&String| {
        !l.starts_with("Step ")
            && !l.starts_with(" ---> ")
            && !l.starts_with("Removing intermediate container")
            && l.as_str() != detail
            && !l.trim().is_empty()
    };
    // nbforge's own line comes first: a commit status keeps 250 characters.
    if let Some(own) = last_lines
        .iter()
        .rev()
        .filter(output)
        .find(|l| l.trim_start().starts_with("nbforge: "))
    {
        return format!("{} ({detail})", own.trim());
    }
    match last_lines.iter().rev().find(output) {
        Some(l) => format!("{detail}: {}", l.trim()),
        None => detail.to_owned(),
    }
}

/// The size of the pieces the context's tar is sent in.
pub const CONTEXT_PIECE_BYTES: usize = 256 * 1024;

/// The context's tar as a stream of pieces of at most about [`CONTEXT_PIECE_BYTES`], made
/// on a blocking thread as the engine reads them (a few pieces ahead at most). A failure
/// reading the source ends the stream with the error; an engine that stops reading stops
/// the thread.
pub fn context_stream(
    files: Vec<ContextFile>,
    source: ContextSource,
    folders: Vec<(String, std::path::PathBuf)>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = PieceWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CONTEXT_PIECE_BYTES),
        };
        let written =
            write_context_tar(&files, &source, &folders, &mut out).and_then(|()| out.flush());
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}

/// Sends what is written to it as pieces over a bounded channel.
struct PieceWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for PieceWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CONTEXT_PIECE_BYTES.saturating_sub(self.buf.len()).max(1);
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CONTEXT_PIECE_BYTES {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(CONTEXT_PIECE_BYTES));
        self.tx
            .blocking_send(Ok(piece.into()))
            .map_err(|_| std::io::Error::other("the engine stopped reading the build context"))
    }
}

/// Writes the context's tar to `out`, reading its repository files from `source` one at a
/// time (regular files, mode 0644; scripts keep 0755).
pub fn write_context_tar(
    files: &[ContextFile],
    source: &ContextSource,
    folders: &[(String, std::path::PathBuf)],
    out: impl std::io::Write,
) -> std::io::Result<()> {
    use crate::repo::{CommitTree, DirTree, FileTree};
    let other = |e: crate::repo::TreeError| std::io::Error::other(e.to_string());
    let write = |tree: Option<&dyn FileTree>| -> std::io::Result<()> {
        let mut builder = tar::Builder::new(out);
        for file in files {
            let read;
            let bytes: &[u8] = match (&file.data, tree) {
                (ContextData::Bytes(b), _) => b,
                (ContextData::Source { path, .. }, Some(tree)) => {
                    read = tree.read_file(path).map_err(other)?;
                    &read
                }
                (ContextData::Source { path, .. }, None) => {
                    return Err(std::io::Error::other(format!(
                        "{path}: no source to read the build context from"
                    )));
                }
            };
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            let path = &file.path;
            let executable = path.ends_with("postBuild")
                || path.ends_with("/start")
                || path == "start"
                || path.contains("entrypoint");
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, path, bytes)?;
        }
        for (name, dir) in folders {
            append_folder(&mut builder, name, dir)?;
        }
        builder.into_inner()?.flush()
    };
    match source {
        ContextSource::None => write(None),
        ContextSource::Dir(dir) => write(Some(&DirTree::new(dir))),
        ContextSource::Git { repository, commit } => {
            let repo = git2::Repository::open_bare(repository)
                .map_err(|e| std::io::Error::other(e.message().to_owned()))?;
            let tree = CommitTree::open(&repo, commit).map_err(other)?;
            write(Some(&tree))
        }
    }
}

/// Appends a host folder under `name`: files keep their mode, symlinks stay links, and every
/// entry gets mtime 0 and owner 0 so that the same content gives the same layer.
fn append_folder<W: std::io::Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    dir: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut stack = vec![(dir.to_path_buf(), name.to_owned())];
    while let Some((host, inside)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&host)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(0);
        header.set_size(0);
        builder.append_data(&mut header, format!("{inside}/"), std::io::empty())?;
        // Subfolders are pushed in reverse so they come out sorted.
        let mut subfolders = Vec::new();
        for e in entries {
            let Some(file_name) = e.file_name().to_str().map(str::to_owned) else {
                return Err(std::io::Error::other(format!(
                    "{}: a name that is not UTF-8",
                    e.path().display()
                )));
            };
            let path = e.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let target = format!("{inside}/{file_name}");
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            if meta.file_type().is_symlink() {
                let link = std::fs::read_link(&path)?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &target, &link)?;
            } else if meta.is_dir() {
                subfolders.push((path, target));
            } else if meta.is_file() {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(meta.permissions().mode() & 0o7777);
                header.set_size(meta.len());
                builder.append_data(&mut header, &target, std::fs::File::open(&path)?)?;
            }
        }
        stack.extend(subfolders.into_iter().rev());
    }
    Ok(())
}

/// A project path as a Docker repository path: each component lowercase ASCII letters and
/// digits joined by single `.`, `_` or `-` (the engine's grammar), anything else made a
/// `-`; at most 200 characters. GitLab allows paths (`lab/_x.`, `lab/über`, `a..b`) that the
/// engine refuses, which would fail every build of the project as if the engine were down.
pub fn repository_path(project: &str) -> String {
    let components: Vec<String> = project
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            let mut out = String::new();
            for ch in c.chars().flat_map(char::to_lowercase) {
                if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
                    out.push(ch);
                } else if !out.is_empty() && !out.ends_with(['.', '_', '-']) {
                    out.push(if matches!(ch, '.' | '_') { ch } else { '-' });
                }
            }
            let out = out.trim_end_matches(['.', '_', '-']).to_owned();
            if out.is_empty() { "x".to_owned() } else { out }
        })
        .collect();
    let mut path = if components.is_empty() {
        "project".to_owned()
    } else {
        components.join("/")
    };
    if path.len() > 200 {
        path.truncate(200);
        path = path.trim_end_matches(['.', '_', '-', '/']).to_owned();
    }
    path
}

#[cfg(test)]
mod tests {

    #[test]
    fn any_gitlab_path_makes_a_valid_repository_path() {
        let grammar = regex::Regex::new(
            r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$",
        )
        .unwrap();
        for (path, want) in [
            ("Lab/RNA-seq", "lab/rna-seq"),
            ("lab/_x.", "lab/x"),
            ("lab/a..b", "lab/a.b"),
            ("lab/über-tool", "lab/ber-tool"),
            ("lab/-", "lab/x"),
            ("", "project"),
            ("grp/sub/proj.v2", "grp/sub/proj.v2"),
        ] {
            let got = repository_path(path);
            assert_eq!(got, want, "{path}");
            assert!(grammar.is_match(&got), "{got}");
        }
        let long = repository_path(&format!("lab/{}", "a-".repeat(300)));
        assert!(long.len() <= 200 && grammar.is_match(&long), "{long}");
    }
    use super::*;

    fn settings(allowed: &[&str]) -> BuilderSettings {
        BuilderSettings {
            registry: Some("registry.example.org".into()),
            allowed_bases: allowed.iter().map(|s| s.to_string()).collect(),
            ..BuilderSettings::new("nbforge")
        }
    }

    /// A repository could start `FROM` another project's environment image and print that
    /// project's files into its own public build log.
    #[test]
    fn dockerfile_from_another_environment() {
        let s = settings(&[]);
        for dockerfile in [
            "FROM nbforge/env:0123abcd\nRUN cat /home/jovyan/*",
            "FROM docker.io/nbforge/env:0123abcd",
            "FROM --platform=linux/amd64 NBFORGE/ENV@sha256:00",
            "ARG BASE=nbforge/env:0123abcd\nFROM ${BASE}",
            "FROM python:3.11\nCOPY --from=nbforge/env:0123abcd /home/jovyan /stolen",
            "FROM python:3.11\nRUN --mount=type=bind,from=nbforge/env:x,target=/x cat /x/secret",
            "FROM registry.example.org/lab/other/env:0123abcd",
        ] {
            let err = check_base_images(dockerfile, &s).expect_err(dockerfile);
            assert!(
                matches!(&err, BuildError::Failed(m) if m.contains("environment image")),
                "{dockerfile}: {err}"
            );
        }
        let err = check_base_images("FROM $UNSET", &s).unwrap_err();
        assert!(err.to_string().contains("without a default"), "{err}");
    }

    #[test]
    fn ordinary_dockerfiles_and_stages_pass() {
        let s = settings(&[]);
        for dockerfile in [
            "FROM python:3.11-slim AS build\nRUN pip wheel .\nFROM python:3.11-slim\nCOPY --from=build /w /w",
            "FROM nbforge/base:bookworm\nCOPY --from=0 /a /b",
            "# FROM nbforge/env:x in a comment\nFROM debian:bookworm",
            "ARG TAG=3.11\nFROM python:${TAG}",
        ] {
            check_base_images(dockerfile, &s).expect(dockerfile);
        }
    }

    #[test]
    fn allowlist_limits_base_images() {
        let s = settings(&["docker.io/library/*", "nbforge/base:*"]);
        check_base_images("FROM nbforge/base:bookworm", &s).unwrap();
        check_base_images("FROM docker.io/library/python:3.11", &s).unwrap();
        let err = check_base_images("FROM evil.example/miner:latest", &s).unwrap_err();
        assert!(
            err.to_string().contains("not an allowed base image"),
            "{err}"
        );
    }
}
