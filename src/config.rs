//! Settings from flags, `NBFORGE_*` environment variables and an optional TOML file.

use serde::Deserialize;
use subtle::ConstantTimeEq;

/// A secret string: never printed by `Debug` or `Display`, compared in constant time.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's text, for the one place that must send it (a header, a URL credential).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// Default address when nothing is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database when nothing is configured: SQLite next to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://nbforge.db";
/// The shortest webhook secret or admin token accepted: an empty or short one would let
/// anyone guess their way in.
pub const MIN_SECRET_CHARS: usize = 16;
/// Where R packages Debian lacks come from, unless configured.
pub const DEFAULT_CRAN_MIRROR: &str = "https://cloud.r-project.org";
/// The Debian mirror base images are made from, unless configured.
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// GitLab sends bodies of up to 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One secret or several, as a TOML string (comma-separated) or array.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SecretList {
    One(String),
    Many(Vec<Secret>),
}

/// The secrets of a comma-separated list. Empty pieces are kept (as empty secrets), so
/// that a variable set but empty, or a stray comma, is refused at start-up rather than
/// taken for "no secret".
fn split_secrets(s: &str) -> Vec<Secret> {
    s.split(',').map(str::trim).map(Secret::new).collect()
}

/// The TOML settings file, accepted by every command that reads settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FileArgs {
    /// TOML file with the settings (keys are the flag names with `_`).
    #[arg(long, env = "NBFORGE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How the process logs.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "NBFORGE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// Where nbforge keeps its state.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Storage")]
pub struct StorageArgs {
    /// `sqlite://FILE` or `postgres://…` [default: sqlite://nbforge.db].
    #[arg(long, env = "NBFORGE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for git mirrors and other working files [default: ./nbforge-data].
    #[arg(long, env = "NBFORGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The HTTP service.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "HTTP service")]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "NBFORGE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// URL users reach nbforge at, for links in statuses and comments [default: http://LISTEN].
    #[arg(long, env = "NBFORGE_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Largest webhook body accepted, in bytes [default: 26214400].
    #[arg(long, env = "NBFORGE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most disk the delivery spool (`<data dir>/spool`, used while the database cannot be
    /// reached) may take: bytes, or a number with KiB, MiB, GiB; 0 turns it off [default: 1GiB].
    #[arg(long, env = "NBFORGE_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<String>,
    /// Bearer token for the admin API (`/api/...`); without it the admin API is closed.
    #[arg(long, env = "NBFORGE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
}

/// The forges nbforge hears from and answers to.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Forges")]
pub struct ForgeArgs {
    /// Base URL of the GitLab instance, e.g. https://gitlab.example.org.
    #[arg(long, env = "NBFORGE_GITLAB_URL")]
    pub gitlab_url: Option<Url>,
    /// GitLab access token (scope `api`); prefer the environment variable.
    #[arg(long, env = "NBFORGE_GITLAB_TOKEN", hide_env_values = true)]
    pub gitlab_token: Option<Secret>,
    /// Secret token(s) GitLab sends in `X-Gitlab-Token`; comma-separated for rotation.
    #[arg(long, env = "NBFORGE_GITLAB_WEBHOOK_SECRET", hide_env_values = true)]
    pub gitlab_webhook_secret: Option<String>,
    /// Secret GitHub signs deliveries with (`X-Hub-Signature-256`).
    #[arg(long, env = "NBFORGE_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub github_webhook_secret: Option<Secret>,
    /// GitHub token for statuses and comments.
    #[arg(long, env = "NBFORGE_GITHUB_TOKEN", hide_env_values = true)]
    pub github_token: Option<Secret>,
    /// GitHub API base URL (GitHub Enterprise) [default: https://api.github.com].
    #[arg(long, env = "NBFORGE_GITHUB_API_URL")]
    pub github_api_url: Option<Url>,
    /// Without GitLab: the folders holding the bare repositories nbforge may read,
    /// comma-separated absolute paths. A project `lab/x` is the repository
    /// `<root>/lab/x.git` (or `<root>/lab/x`) [default: /srv/git].
    #[arg(long, env = "NBFORGE_GIT_ROOTS")]
    pub git_roots: Option<String>,
}

/// Where plain bare repositories are looked for when no roots are configured.
pub const DEFAULT_GIT_ROOT: &str = "/srv/git";

/// The job workers and their queue.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Jobs")]
pub struct JobArgs {
    /// Job workers in this process for every kind but environment builds, which get one
    /// worker per build slot (`NBFORGE_BUILD_CONCURRENCY`); 0 makes an ingest-only process
    /// [default: 2].
    #[arg(long, env = "NBFORGE_WORKERS")]
    pub workers: Option<usize>,
    /// Tries before a job is dead-lettered [default: 10, about 20 minutes of retries].
    #[arg(long, env = "NBFORGE_JOB_MAX_ATTEMPTS")]
    pub job_max_attempts: Option<u32>,
    /// Seconds a claimed job's lease lasts without a heartbeat [default: 60].
    #[arg(long, env = "NBFORGE_JOB_LEASE_SECS")]
    pub job_lease_secs: Option<u64>,
    /// First retry delay in milliseconds; doubles each try [default: 2000].
    #[arg(long, env = "NBFORGE_JOB_BACKOFF_MS")]
    pub job_backoff_ms: Option<u64>,
    /// Longest delay between two tries, in seconds [default: 600].
    #[arg(long, env = "NBFORGE_JOB_BACKOFF_MAX_SECS")]
    pub job_backoff_max_secs: Option<u64>,
    /// How often idle workers look for jobs queued by other processes, in ms [default: 500].
    #[arg(long, env = "NBFORGE_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,
    /// Seconds running jobs get to finish on shutdown before they are released [default: 20].
    #[arg(long, env = "NBFORGE_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Seconds between two runs of the cleanup job [default: 3600].
    #[arg(long, env = "NBFORGE_CLEANUP_PERIOD_SECS")]
    pub cleanup_period_secs: Option<u64>,
    /// Seconds between two runs of the membership reconciler, which reads members and
    /// visibility from the GitLab API and repairs what hooks missed; 0 turns it off
    /// [default: 3600].
    #[arg(long, env = "NBFORGE_RECONCILE_INTERVAL_SECS")]
    pub reconcile_interval_secs: Option<u64>,
    /// Seconds a job may run before it is stopped and retried later; environment builds
    /// get their build timeout plus five minutes, the reconciler four hours [default: 900].
    #[arg(long, env = "NBFORGE_JOB_TIMEOUT_SECS")]
    pub job_timeout_secs: Option<u64>,
    /// Days finished jobs and their deliveries are kept [default: 30].
    #[arg(long, env = "NBFORGE_JOB_RETENTION_DAYS")]
    pub job_retention_days: Option<u64>,
    /// Days a project's git mirror is kept after its last fetch [default: 30].
    #[arg(long, env = "NBFORGE_MIRROR_RETENTION_DAYS")]
    pub mirror_retention_days: Option<u64>,
    /// Days an environment image is kept after its last build or launch, unless a current
    /// branch or tag uses it [default: 30].
    #[arg(long, env = "NBFORGE_IMAGE_RETENTION_DAYS")]
    pub image_retention_days: Option<u64>,
}

/// The Docker engine images are built and run on.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Docker engine")]
pub struct DockerArgs {
    /// Docker engine address, e.g. unix:///var/run/docker.sock [default: DOCKER_HOST or the local socket].
    #[arg(long, env = "NBFORGE_DOCKER_HOST")]
    pub docker_host: Option<String>,
}

/// What an environment is made from: the inputs of the environment key and the Dockerfile.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Environment images")]
pub struct ImageArgs {
    /// Image every environment starts from (`nbforge base-image` makes it) [default: nbforge/base:bookworm].
    #[arg(long, env = "NBFORGE_BASE_IMAGE")]
    pub base_image: Option<String>,
    /// PEM file of extra CA certificates to trust in builds and images (TLS-intercepting networks).
    #[arg(long, env = "NBFORGE_EXTRA_CA_CERTS")]
    pub extra_ca_certs: Option<PathBuf>,
    /// Python version assumed when a repository names none [default: 3.10, as repo2docker].
    #[arg(long, env = "NBFORGE_DEFAULT_PYTHON")]
    pub default_python: Option<String>,
    /// CRAN mirror for the R packages Debian does not package (an http(s) URL) [default: https://cloud.r-project.org].
    #[arg(long, env = "NBFORGE_CRAN_MIRROR")]
    pub cran_mirror: Option<String>,
    /// The Pythons environments can have and the Debian release each comes from, as
    /// VERSION=SUITE pairs; each gets its own base image, named like the base image with the
    /// suite as tag [default: 3.9=bullseye,3.11=bookworm,3.13=trixie].
    #[arg(long, env = "NBFORGE_PYTHON_BASES")]
    pub python_bases: Option<String>,
    /// When a repository asks for a Python none of the bases has: `fail` its environment, or
    /// `warn` and build it with the base image's Python [default: fail].
    #[arg(long, env = "NBFORGE_PYTHON_MISMATCH")]
    pub python_mismatch: Option<crate::spec::PythonMismatch>,
    #[command(flatten)]
    pub conda: CondaArgs,
}

/// How environment images are built, named and stored.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Environment builds")]
pub struct BuilderArgs {
    /// Prefix of environment image names: `<prefix>/env:<key>` [default: nbforge].
    #[arg(long, env = "NBFORGE_IMAGE_PREFIX")]
    pub image_prefix: Option<String>,
    /// Container registry to push environment images to, e.g. registry.example.org.
    #[arg(long, env = "NBFORGE_REGISTRY")]
    pub registry: Option<String>,
    /// Image builds allowed at once [default: 1].
    #[arg(long, env = "NBFORGE_BUILD_CONCURRENCY")]
    pub build_concurrency: Option<usize>,
    /// Longest an image build may take, in seconds [default: 3600].
    #[arg(long, env = "NBFORGE_BUILD_TIMEOUT_SECS")]
    pub build_timeout_secs: Option<u64>,
    /// Memory a build's steps may use, in MiB; at most 2047 [default: 2047].
    #[arg(long, env = "NBFORGE_BUILD_MEMORY_MB")]
    pub build_memory_mb: Option<u32>,
    /// CPUs a build's steps may use [default: 1].
    #[arg(long, env = "NBFORGE_BUILD_CPUS")]
    pub build_cpus: Option<f64>,
    /// Largest build context (the files a build is given), in MiB [default: 512].
    #[arg(long, env = "NBFORGE_BUILD_CONTEXT_MAX_MB")]
    pub build_context_max_mb: Option<u64>,
    /// Docker network build steps run on, e.g. one that cannot reach this host's services
    /// (see docs/security.md) [default: the engine's default bridge].
    #[arg(long, env = "NBFORGE_BUILD_NETWORK")]
    pub build_network: Option<String>,
    /// Comma-separated glob patterns of the images a repository's own Dockerfile may start
    /// from, e.g. `docker.io/library/*` [default: any, except nbforge's environment images].
    #[arg(long, env = "NBFORGE_ALLOWED_BASE_IMAGES")]
    pub allowed_base_images: Option<String>,
}

/// Whether pushes and merge requests prepare environments.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Environment builds")]
pub struct EnvironmentArgs {
    /// Prepare environment images on pushes and merge requests (`false`: record events only) [default: true].
    #[arg(long, env = "NBFORGE_ENVIRONMENTS")]
    pub environments: Option<bool>,
}

/// Making the base image.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Base image")]
pub struct BaseImageArgs {
    /// Debian mirror used to make the base image [default: http://deb.debian.org/debian].
    #[arg(long, env = "NBFORGE_DEBIAN_MIRROR")]
    pub debian_mirror: Option<String>,
}

/// Conda environments: where channel names point and what a solve may pick.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Conda environments")]
pub struct CondaArgs {
    /// Comma-separated channels used when an environment file names none [default: conda-forge,bioconda].
    #[arg(long, env = "NBFORGE_CONDA_CHANNELS")]
    pub conda_channels: Option<String>,
    /// Base URL channel names resolve against: a mirror or proxy of anaconda.org [default: https://conda.anaconda.org].
    #[arg(long, env = "NBFORGE_CONDA_CHANNEL_ALIAS")]
    pub conda_channel_alias: Option<String>,
    /// Channel priority of solves: strict (bioconda's advice), flexible or disabled [default: strict].
    #[arg(long, env = "NBFORGE_CONDA_CHANNEL_PRIORITY")]
    pub conda_channel_priority: Option<String>,
    /// Largest conda package a solve may pick, in MiB [default: 1024].
    #[arg(long, env = "NBFORGE_CONDA_PACKAGE_MAX_MB")]
    pub conda_package_max_mb: Option<u64>,
    /// Where channels' package lists and packages are cached, shared by all builds [default: <data dir>/conda].
    #[arg(long, env = "NBFORGE_CONDA_CACHE_DIR")]
    pub conda_cache_dir: Option<PathBuf>,
}

/// Jupyter sessions on the Docker engine: the platform's limits and where they run.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Jupyter sessions")]
pub struct SessionArgs {
    /// Most memory a session may use: bytes, or a number with KiB, MiB, GiB (or K, M, G) [default: 4GiB].
    #[arg(long, env = "NBFORGE_SESSION_MEMORY_MAX")]
    pub session_memory_max: Option<String>,
    /// Most CPUs a session may use, fractions allowed [default: 2].
    #[arg(long, env = "NBFORGE_SESSION_CPU_MAX")]
    pub session_cpu_max: Option<f64>,
    /// Docker network sessions run on, created with traffic between its containers off
    /// [default: nbforge-sessions].
    #[arg(long, env = "NBFORGE_SESSION_NETWORK")]
    pub session_network: Option<String>,
    /// Seconds a session's Jupyter server has to answer after it starts [default: 120].
    #[arg(long, env = "NBFORGE_SESSION_START_TIMEOUT_SECS")]
    pub session_start_timeout_secs: Option<u64>,
}

/// What happens to Jupyter sessions once they run: culling, limits, retention, metrics.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Jupyter session lifecycle")]
pub struct LifecycleArgs {
    /// Seconds without activity after which a user's Jupyter session is stopped; a kernel
    /// busy computing counts as activity [default: 600].
    #[arg(long, env = "NBFORGE_SESSION_IDLE_SECS")]
    pub session_idle_secs: Option<u64>,
    /// The same for anonymous visitors' sessions [default: 300].
    #[arg(long, env = "NBFORGE_ANONYMOUS_SESSION_IDLE_SECS")]
    pub anonymous_session_idle_secs: Option<u64>,
    /// Seconds after its start at which a session is stopped, active or not [default: 28800].
    #[arg(long, env = "NBFORGE_SESSION_MAX_AGE_SECS")]
    pub session_max_age_secs: Option<u64>,
    /// Seconds between two runs of the session culler [default: 30].
    #[arg(long, env = "NBFORGE_SESSION_CULL_PERIOD_SECS")]
    pub session_cull_period_secs: Option<u64>,
    /// Sessions a logged-in user may have at once [default: 2].
    #[arg(long, env = "NBFORGE_SESSIONS_PER_USER")]
    pub sessions_per_user: Option<usize>,
    /// Sessions an anonymous visitor may have at once [default: 1].
    #[arg(long, env = "NBFORGE_SESSIONS_PER_VISITOR")]
    pub sessions_per_visitor: Option<usize>,
    /// Most disk a user's home may use before new sessions and worksheet runs are
    /// refused: bytes, or a number with KiB, MiB, GiB (or K, M, G) [default: no quota].
    #[arg(long, env = "NBFORGE_HOME_QUOTA")]
    pub home_quota: Option<String>,
    /// Seconds a session that ended on its own (e.g. killed for memory) stays listed
    /// before it is removed, unless dismissed earlier [default: 86400].
    #[arg(long, env = "NBFORGE_SESSION_ENDED_RETENTION_SECS")]
    pub session_ended_retention_secs: Option<u64>,
    /// Label session CPU and memory metrics with the owner's name [default: false].
    #[arg(long, env = "NBFORGE_METRICS_PER_USER")]
    pub metrics_per_user: Option<bool>,
}

/// Worksheet runs: how long one may take and how many run at once.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Worksheet runs")]
pub struct RunArgs {
    /// Seconds a worksheet run may execute before it is stopped; caps a worksheet's own
    /// `timeout` in launch.toml [default: 3600].
    #[arg(long, env = "NBFORGE_RUN_TIMEOUT_SECS")]
    pub run_timeout_secs: Option<u64>,
    /// Runs one user may have executing at once; more wait in the queue [default: 2].
    #[arg(long, env = "NBFORGE_RUNS_PER_USER")]
    pub runs_per_user: Option<usize>,
    /// Runs executing at once on this nbforge [default: the number of CPU cores].
    #[arg(long, env = "NBFORGE_RUNS_MAX")]
    pub runs_max: Option<usize>,
    /// Largest file a user may upload to their ~/data: bytes, or a number with KiB, MiB,
    /// GiB (or K, M, G) [default: 100MiB].
    #[arg(long, env = "NBFORGE_UPLOAD_MAX_BYTES")]
    pub upload_max_bytes: Option<String>,
}

/// Settings as given by flags or `NBFORGE_*` variables, grouped by concern. Every field is
/// optional so that the TOML file and the defaults fill the gaps; each command flattens
/// only the groups it uses, so its `--help` lists only its own options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    pub access: AccessArgs,
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub storage: StorageArgs,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub forge: ForgeArgs,
    #[command(flatten)]
    pub jobs: JobArgs,
    #[command(flatten)]
    pub docker: DockerArgs,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub build: BuilderArgs,
    #[command(flatten)]
    pub environment: EnvironmentArgs,
    #[command(flatten)]
    pub base: BaseImageArgs,
    #[command(flatten)]
    pub sessions: SessionArgs,
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    #[command(flatten)]
    pub runs: RunArgs,
    #[command(flatten)]
    pub visitor_runs: VisitorRunArgs,
}

/// Login with GitLab, browser sessions and who may do what.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessArgs {
    /// The application id of nbforge's OAuth application in GitLab (login is off without it).
    #[arg(long, env = "NBFORGE_GITLAB_OAUTH_CLIENT_ID")]
    pub gitlab_oauth_client_id: Option<String>,
    /// The application's secret.
    #[arg(
        long,
        env = "NBFORGE_GITLAB_OAUTH_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub gitlab_oauth_client_secret: Option<Secret>,
    /// Scopes asked at login, space-separated [default: openid read_user api].
    #[arg(long, env = "NBFORGE_GITLAB_OAUTH_SCOPES")]
    pub gitlab_oauth_scopes: Option<String>,
    /// Key sealing users' GitLab tokens at rest: 64 hex digits or 43 base64url characters
    /// [default: generated into <data dir>/secret.key on first start].
    #[arg(long, env = "NBFORGE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<Secret>,
    /// Platform administrators: GitLab usernames, comma-separated.
    #[arg(long, env = "NBFORGE_ADMINS")]
    pub admins: Option<String>,
    /// Members of this GitLab group with maintainer or more are platform administrators.
    #[arg(long, env = "NBFORGE_ADMIN_GROUP")]
    pub admin_group: Option<String>,
    /// Interface levels from GitLab groups, e.g. `script-author=biolab/authors,developer=biolab/dev`.
    #[arg(long, env = "NBFORGE_LEVEL_GROUPS")]
    pub level_groups: Option<String>,
    /// Access level to role, e.g. `guest=none,reporter=read,developer=write,maintainer=admin`
    /// [default: guest none, planner and reporter read, developer write, maintainer and owner admin].
    #[arg(long, env = "NBFORGE_ROLE_MAP")]
    pub role_map: Option<String>,
    /// A browser session ends after this many idle minutes [default: 1440].
    #[arg(long, env = "NBFORGE_SESSION_IDLE_MINUTES")]
    pub session_idle_minutes: Option<u64>,
    /// A browser session ends this many hours after login, active or not [default: 336].
    #[arg(long, env = "NBFORGE_SESSION_MAX_HOURS")]
    pub session_max_hours: Option<u64>,
    /// Visibility of projects whose forge does not say (plain git servers): public,
    /// internal or private [default: public].
    #[arg(long, env = "NBFORGE_PLAIN_GIT_VISIBILITY")]
    pub plain_git_visibility: Option<String>,
    /// Anonymous visitors may launch sessions of public projects [default: true].
    #[arg(long, env = "NBFORGE_ANONYMOUS_SESSIONS")]
    pub anonymous_sessions: Option<bool>,
    /// Anonymous visitors may run worksheets of public projects [default: false].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RUNS")]
    pub anonymous_runs: Option<bool>,
}

/// The TOML file: the same keys as the flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    public_url: Option<Url>,
    gitlab_url: Option<Url>,
    gitlab_token: Option<Secret>,
    gitlab_webhook_secret: Option<SecretList>,
    github_webhook_secret: Option<Secret>,
    github_token: Option<Secret>,
    github_api_url: Option<Url>,
    git_roots: Option<String>,
    admin_token: Option<Secret>,
    data_dir: Option<PathBuf>,
    workers: Option<usize>,
    job_max_attempts: Option<u32>,
    job_lease_secs: Option<u64>,
    job_backoff_ms: Option<u64>,
    job_backoff_max_secs: Option<u64>,
    poll_interval_ms: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    cleanup_period_secs: Option<u64>,
    reconcile_interval_secs: Option<u64>,
    job_timeout_secs: Option<u64>,
    job_retention_days: Option<u64>,
    mirror_retention_days: Option<u64>,
    image_retention_days: Option<u64>,
    max_body_bytes: Option<usize>,
    spool_max_bytes: Option<String>,
    log_format: Option<LogFormat>,
    base_image: Option<String>,
    extra_ca_certs: Option<PathBuf>,
    image_prefix: Option<String>,
    registry: Option<String>,
    build_concurrency: Option<usize>,
    build_timeout_secs: Option<u64>,
    build_memory_mb: Option<u32>,
    build_cpus: Option<f64>,
    build_context_max_mb: Option<u64>,
    build_network: Option<String>,
    allowed_base_images: Option<Vec<String>>,
    conda_channels: Option<Vec<String>>,
    conda_channel_alias: Option<String>,
    conda_channel_priority: Option<String>,
    conda_package_max_mb: Option<u64>,
    conda_cache_dir: Option<PathBuf>,
    default_python: Option<String>,
    python_bases: Option<String>,
    python_mismatch: Option<String>,
    debian_mirror: Option<String>,
    environments: Option<bool>,
    cran_mirror: Option<String>,
    docker_host: Option<String>,
    gitlab_oauth_client_id: Option<String>,
    gitlab_oauth_client_secret: Option<Secret>,
    gitlab_oauth_scopes: Option<String>,
    secret_key: Option<Secret>,
    admins: Option<Vec<String>>,
    admin_group: Option<String>,
    level_groups: Option<String>,
    role_map: Option<String>,
    session_idle_minutes: Option<u64>,
    session_max_hours: Option<u64>,
    plain_git_visibility: Option<String>,
    anonymous_sessions: Option<bool>,
    anonymous_runs: Option<bool>,
    session_memory_max: Option<String>,
    session_cpu_max: Option<f64>,
    session_network: Option<String>,
    session_start_timeout_secs: Option<u64>,
    session_idle_secs: Option<u64>,
    anonymous_session_idle_secs: Option<u64>,
    session_max_age_secs: Option<u64>,
    session_cull_period_secs: Option<u64>,
    sessions_per_user: Option<usize>,
    sessions_per_visitor: Option<usize>,
    home_quota: Option<String>,
    session_ended_retention_secs: Option<u64>,
    metrics_per_user: Option<bool>,
}

/// Validated settings, read once at start-up and passed in, grouped by concern.
#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub server: ServerSettings,
    pub forges: ForgeSettings,
    pub jobs: JobSettings,
    pub environments: EnvironmentSettings,
    pub access: AccessSettings,
    pub sessions: SessionSettings,
    pub lifecycle: LifecycleSettings,
    pub runs: RunSettings,
    pub visitor_runs: VisitorRunSettings,
}

/// Worksheet runs (see `crate::runs`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunSettings {
    /// How long a run may execute.
    pub timeout: Duration,
    /// Runs one owner may have executing at once.
    pub per_user: usize,
    /// Runs executing at once in this process (one worker each).
    pub max: usize,
    /// The largest upload to a user's `~/data/`, in bytes.
    pub upload_max_bytes: u64,
}

impl Default for RunSettings {
    fn default() -> RunSettings {
        RunSettings {
            timeout: Duration::from_secs(3600),
            per_user: 2,
            max: std::thread::available_parallelism().map_or(2, |n| n.get()),
            upload_max_bytes: 100 << 20,
        }
    }
}

impl RunSettings {
    fn from_args(args: &RunArgs, problems: &mut Vec<String>) -> RunSettings {
        let defaults = RunSettings::default();
        let settings = RunSettings {
            timeout: args
                .run_timeout_secs
                .map_or(defaults.timeout, Duration::from_secs),
            per_user: args.runs_per_user.unwrap_or(defaults.per_user),
            max: args.runs_max.unwrap_or(defaults.max),
            upload_max_bytes: match args.upload_max_bytes.as_deref() {
                None => defaults.upload_max_bytes,
                Some(text) => parse_size(text).unwrap_or_else(|| {
                    problems.push(format!(
                        "upload_max_bytes: `{text}` is not a size (e.g. 100MiB)"
                    ));
                    defaults.upload_max_bytes
                }),
            },
        };
        if settings.timeout.is_zero() || settings.per_user == 0 || settings.max == 0 {
            problems
                .push("run_timeout_secs, runs_per_user and runs_max must be at least 1".to_owned());
        }
        settings
    }
}

/// Jupyter sessions: the platform's limits and where they run.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSettings {
    /// Most memory a session may use, in bytes.
    pub memory_max_bytes: u64,
    /// Most CPUs a session may use.
    pub cpu_max: f64,
    /// The Docker network sessions run on.
    pub network: String,
    /// How long a session's Jupyter server has to answer after it starts.
    pub start_timeout: Duration,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        SessionSettings {
            memory_max_bytes: 4 << 30,
            cpu_max: 2.0,
            network: "nbforge-sessions".into(),
            start_timeout: Duration::from_secs(120),
        }
    }
}

/// The delivery spool's default bound.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;

/// Reads a size: bytes, or a number with `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`, also
/// powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The session keys of the TOML file.
struct FileSessions {
    memory_max: Option<String>,
    cpu_max: Option<f64>,
    network: Option<String>,
    start_timeout_secs: Option<u64>,
}

fn session_settings(
    args: &SessionArgs,
    file: FileSessions,
    problems: &mut Vec<String>,
) -> SessionSettings {
    let defaults = SessionSettings::default();
    let memory_max_bytes = match args.session_memory_max.clone().or(file.memory_max) {
        None => defaults.memory_max_bytes,
        Some(text) => match parse_size(&text) {
            Some(n) if n >= 64 << 20 => n,
            _ => {
                problems.push(format!(
                    "session_memory_max: `{text}` is not a size of at least 64MiB (e.g. 4GiB)"
                ));
                defaults.memory_max_bytes
            }
        },
    };
    let cpu_max = args
        .session_cpu_max
        .or(file.cpu_max)
        .unwrap_or(defaults.cpu_max);
    if !(cpu_max.is_finite() && cpu_max >= 0.01) {
        problems.push(format!(
            "session_cpu_max: `{cpu_max}` is not a positive number of CPUs"
        ));
    }
    let network = args
        .session_network
        .clone()
        .or(file.network)
        .unwrap_or(defaults.network);
    if network.is_empty()
        || !network
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        problems.push(format!(
            "session_network: `{network}` is not a Docker network name"
        ));
    }
    let start_timeout = args
        .session_start_timeout_secs
        .or(file.start_timeout_secs)
        .map_or(defaults.start_timeout, |s| Duration::from_secs(s.max(1)));
    SessionSettings {
        memory_max_bytes,
        cpu_max,
        network,
        start_timeout,
    }
}

/// What happens to Jupyter sessions once they run (see `sessions::lifecycle`).
#[derive(Clone, Debug, PartialEq)]
pub struct LifecycleSettings {
    /// A user's session idle this long is stopped.
    pub idle: Duration,
    /// An anonymous visitor's session idle this long is stopped.
    pub anonymous_idle: Duration,
    /// A session this old is stopped, active or not.
    pub max_age: Duration,
    /// How often the culler runs.
    pub cull_period: Duration,
    /// Sessions a user may have at once.
    pub per_user: usize,
    /// Sessions an anonymous visitor may have at once.
    pub per_visitor: usize,
    /// Most bytes a user's home may hold before new sessions are refused.
    pub home_quota: Option<u64>,
    /// How long a session that ended on its own stays listed.
    pub ended_retention: Duration,
    /// Session CPU and memory metrics labelled by owner.
    pub metrics_per_user: bool,
}

impl Default for LifecycleSettings {
    fn default() -> LifecycleSettings {
        LifecycleSettings {
            idle: Duration::from_secs(600),
            anonymous_idle: Duration::from_secs(300),
            max_age: Duration::from_secs(8 * 3600),
            cull_period: Duration::from_secs(30),
            per_user: 2,
            per_visitor: 1,
            home_quota: None,
            ended_retention: Duration::from_secs(24 * 3600),
            metrics_per_user: false,
        }
    }
}

/// The lifecycle keys of the TOML file.
struct FileLifecycle {
    idle_secs: Option<u64>,
    anonymous_idle_secs: Option<u64>,
    max_age_secs: Option<u64>,
    cull_period_secs: Option<u64>,
    per_user: Option<usize>,
    per_visitor: Option<usize>,
    home_quota: Option<String>,
    ended_retention_secs: Option<u64>,
    metrics_per_user: Option<bool>,
}

fn lifecycle_settings(
    args: &LifecycleArgs,
    file: FileLifecycle,
    problems: &mut Vec<String>,
) -> LifecycleSettings {
    let d = LifecycleSettings::default();
    let secs = |a: Option<u64>, f: Option<u64>, default: Duration| {
        a.or(f).map_or(default, |s| Duration::from_secs(s.max(1)))
    };
    let home_quota = match args.home_quota.clone().or(file.home_quota) {
        None => None,
        Some(text) if text.trim().is_empty() || text.trim() == "none" => None,
        Some(text) => match parse_size(&text) {
            Some(n) if n > 0 => Some(n),
            _ => {
                problems.push(format!("home_quota: `{text}` is not a size (e.g. 10GiB)"));
                None
            }
        },
    };
    let per_user = args
        .sessions_per_user
        .or(file.per_user)
        .unwrap_or(d.per_user);
    let per_visitor = args
        .sessions_per_visitor
        .or(file.per_visitor)
        .unwrap_or(d.per_visitor);
    if per_user == 0 {
        problems.push("sessions_per_user: must be at least 1".into());
    }
    LifecycleSettings {
        idle: secs(args.session_idle_secs, file.idle_secs, d.idle),
        anonymous_idle: secs(
            args.anonymous_session_idle_secs,
            file.anonymous_idle_secs,
            d.anonymous_idle,
        ),
        max_age: secs(args.session_max_age_secs, file.max_age_secs, d.max_age),
        cull_period: secs(
            args.session_cull_period_secs,
            file.cull_period_secs,
            d.cull_period,
        ),
        per_user,
        per_visitor,
        home_quota,
        ended_retention: secs(
            args.session_ended_retention_secs,
            file.ended_retention_secs,
            d.ended_retention,
        ),
        metrics_per_user: args
            .metrics_per_user
            .or(file.metrics_per_user)
            .unwrap_or(d.metrics_per_user),
    }
}

/// The HTTP service.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub public_url: Url,
    pub max_body_bytes: usize,
    pub admin_token: Option<Secret>,
    /// Most bytes the delivery spool may hold; 0: no spool.
    pub spool_max_bytes: u64,
}

/// The forges: where events come from and where statuses and notes go.
#[derive(Clone)]
pub struct ForgeSettings {
    pub gitlab_url: Option<Url>,
    pub gitlab_token: Option<Secret>,
    pub gitlab_webhook_secrets: Vec<Secret>,
    pub github_webhook_secret: Option<Secret>,
    pub github_token: Option<Secret>,
    pub github_api_url: Option<Url>,
    /// The folders whose bare repositories the local forge may read (absolute).
    pub git_roots: Vec<PathBuf>,
}

/// The job workers and their queue.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub workers: usize,
    pub max_attempts: u32,
    pub lease: Duration,
    pub backoff: Duration,
    /// The longest delay between two tries.
    pub backoff_max: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    /// How often the cleanup job runs.
    pub cleanup_period: Duration,
    /// How often the membership reconciler runs; `None`: never on its own.
    pub reconcile_interval: Option<Duration>,
    /// How long a job may run (see `jobs::Job::time_limit` for the kinds that differ).
    pub timeout: Duration,
    pub retention: Retention,
}

/// How long the cleanup job keeps what nbforge no longer needs.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Finished jobs, and deliveries none of whose jobs remain.
    pub jobs: Duration,
    /// Git mirrors, after their last fetch.
    pub mirrors: Duration,
    /// Environment images, after their last build or launch.
    pub images: Duration,
}

/// Environment images: what they are made from, how they are built and where they go.
#[derive(Clone)]
pub struct EnvironmentSettings {
    /// Prepare environment images on pushes and merge requests.
    pub enabled: bool,
    pub base_image: String,
    /// Contents of the extra CA bundle, read at start-up.
    pub extra_ca: Option<Vec<u8>>,
    pub default_python: String,
    /// The Pythons environments can have, each with its base image.
    pub python_bases: Vec<crate::spec::PythonBase>,
    /// The Python of `base_image`.
    pub base_python: String,
    /// What happens when a repository asks for a Python no base has.
    pub python_mismatch: crate::spec::PythonMismatch,
    pub image_prefix: String,
    pub registry: Option<String>,
    pub build_concurrency: usize,
    pub build_timeout: Duration,
    /// Memory a build's steps may use, in bytes.
    pub build_memory_bytes: i32,
    pub build_cpus: f64,
    /// Largest build context, in bytes.
    pub build_context_max_bytes: u64,
    pub build_network: Option<String>,
    /// Glob patterns of the images a repository's Dockerfile may start from (empty: any).
    pub allowed_base_images: Vec<String>,
    pub debian_mirror: String,
    pub docker_host: Option<String>,
    /// CRAN mirror for the R packages Debian does not package.
    pub cran_mirror: String,
    pub conda: CondaSettings,
}

/// Conda channels and limits.
#[derive(Debug, Clone)]
pub struct CondaSettings {
    pub channels: crate::spec::CondaChannels,
    /// Largest package a solve may pick, in bytes.
    pub package_max_bytes: u64,
    /// The conda caches, when not `<data dir>/conda`.
    pub cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact_url(&self.database_url))
            .field("server", &self.server)
            .field(
                "gitlab_url",
                &self.forges.gitlab_url.as_ref().map(Url::as_str),
            )
            .field("gitlab_token", &self.forges.gitlab_token)
            .field(
                "gitlab_webhook_secrets",
                &self.forges.gitlab_webhook_secrets.len(),
            )
            .field("github_webhook_secret", &self.forges.github_webhook_secret)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

/// Conda settings from flags, environment and file; problems are collected.
fn conda_settings(
    args: &CondaArgs,
    file: &mut FileSettings,
    problems: &mut Vec<String>,
) -> CondaSettings {
    let defaults = crate::spec::CondaChannels::default();
    let channels: Vec<String> = match (&args.conda_channels, file.conda_channels.take()) {
        (Some(s), _) => s
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect(),
        (None, Some(v)) => v,
        (None, None) => defaults.default_channels.clone(),
    };
    if channels.is_empty() {
        problems.push("conda_channels: name at least one channel".into());
    }
    let channel_alias = args
        .conda_channel_alias
        .clone()
        .or(file.conda_channel_alias.take())
        .unwrap_or(defaults.channel_alias);
    if !matches!(Url::parse(&channel_alias), Ok(u) if matches!(u.scheme(), "http" | "https")) {
        problems.push(format!(
            "conda_channel_alias: `{}` is not an http(s) URL",
            redact_url(&channel_alias)
        ));
    }
    let priority = args
        .conda_channel_priority
        .clone()
        .or(file.conda_channel_priority.take())
        .unwrap_or(defaults.priority);
    if !matches!(priority.as_str(), "strict" | "flexible" | "disabled") {
        problems.push(format!(
            "conda_channel_priority: `{priority}` is not strict, flexible or disabled"
        ));
    }
    let max_mb = args
        .conda_package_max_mb
        .or(file.conda_package_max_mb)
        .unwrap_or(1024)
        .max(1);
    CondaSettings {
        channels: crate::spec::CondaChannels {
            default_channels: channels,
            channel_alias: channel_alias.trim_end_matches('/').to_owned(),
            priority,
        },
        package_max_bytes: max_mb.saturating_mul(1024 * 1024),
        cache_dir: args.conda_cache_dir.clone().or(file.conda_cache_dir.take()),
    }
}

/// A URL fit for logs and messages: any `user:password@` part removed, and the values of
/// query parameters that carry credentials (`password`, `token`, …) replaced. Text that
/// is not a URL with a host (a local path) comes back as it is, less anything before an `@`.
pub fn redact_url(url: &str) -> String {
    const SECRET_PARAMS: &[&str] = &[
        "password",
        "pass",
        "passwd",
        "token",
        "secret",
        "sslpassword",
    ];
    match Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let hidden = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                        (
                            k.into_owned(),
                            if hidden {
                                "redacted".into()
                            } else {
                                v.into_owned()
                            },
                        )
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        _ => match url.rsplit_once('@') {
            Some((_, rest)) if url.contains("://") => {
                let scheme = url.split("://").next().unwrap_or("");
                format!("{scheme}://{rest}")
            }
            _ => url.to_owned(),
        },
    }
}

/// Everything wrong with the configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Merges flags/environment over the TOML file over defaults, then validates the whole.
    pub fn load(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let mut file = match &args.file.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let mut file_access = file_access(&file);
        let mut problems = Vec::new();
        let conda = conda_settings(&args.image.conda, &mut file, &mut problems);
        let listen = args
            .server
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address parses"));
        let database_url = args
            .storage
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            problems.push(format!(
                "database_url: `{}` is neither sqlite://… nor postgres://…",
                redact_url(&database_url)
            ));
        }
        let public_url = match args.server.public_url.clone().or(file.public_url) {
            Some(u) => u,
            None => Url::parse(&format!("http://{listen}/")).expect("address URL parses"),
        };
        let gitlab_url = args.forge.gitlab_url.clone().or(file.gitlab_url);
        for (name, url) in [
            ("gitlab_url", &gitlab_url),
            ("public_url", &Some(public_url.clone())),
        ] {
            if let Some(u) = url
                && !matches!(u.scheme(), "http" | "https")
            {
                problems.push(format!("{name}: `{u}` must be an http(s) URL"));
            }
        }
        let gitlab_token = args.forge.gitlab_token.clone().or(file.gitlab_token);
        let git_roots: Vec<PathBuf> = args
            .forge
            .git_roots
            .clone()
            .or(file.git_roots)
            .unwrap_or_else(|| DEFAULT_GIT_ROOT.to_owned())
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
            .collect();
        for root in git_roots.iter().filter(|r| !r.is_absolute()) {
            problems.push(format!(
                "git_roots: `{}` is not an absolute path",
                root.display()
            ));
        }
        if gitlab_url.is_some() && gitlab_token.is_none() {
            problems.push(
                "gitlab_token: required when gitlab_url is set (NBFORGE_GITLAB_TOKEN)".into(),
            );
        }
        let gitlab_webhook_secrets = match (
            &args.forge.gitlab_webhook_secret,
            file.gitlab_webhook_secret,
        ) {
            (Some(s), _) => split_secrets(s),
            (None, Some(SecretList::One(s))) => split_secrets(&s),
            (None, Some(SecretList::Many(v))) => v,
            (None, None) => Vec::new(),
        };
        let github_webhook_secret = args
            .forge
            .github_webhook_secret
            .clone()
            .or(file.github_webhook_secret);
        let admin_token = args.server.admin_token.clone().or(file.admin_token);
        let named_secrets = gitlab_webhook_secrets
            .iter()
            .map(|s| ("gitlab_webhook_secret", s))
            .chain(
                github_webhook_secret
                    .iter()
                    .map(|s| ("github_webhook_secret", s)),
            )
            .chain(admin_token.iter().map(|s| ("admin_token", s)));
        for (name, secret) in named_secrets {
            if secret.expose().trim().chars().count() < MIN_SECRET_CHARS {
                problems.push(format!(
                    "{name}: a secret is empty or shorter than {MIN_SECRET_CHARS} characters; \
                     use a long random value (e.g. `openssl rand -hex 20`)"
                ));
            }
        }
        let workers = args.jobs.workers.or(file.workers).unwrap_or(2);
        let job_max_attempts = args
            .jobs
            .job_max_attempts
            .or(file.job_max_attempts)
            .unwrap_or(10);
        if job_max_attempts == 0 {
            problems.push("job_max_attempts: must be at least 1".into());
        }
        let job_lease_secs = args
            .jobs
            .job_lease_secs
            .or(file.job_lease_secs)
            .unwrap_or(60);
        if job_lease_secs < 2 {
            problems.push("job_lease_secs: must be at least 2".into());
        }
        let max_body_bytes = args
            .server
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            problems.push("max_body_bytes: must be at least 1024".into());
        }
        let spool_max_bytes = match args.server.spool_max_bytes.clone().or(file.spool_max_bytes) {
            None => DEFAULT_SPOOL_MAX_BYTES,
            Some(text) => parse_size(&text).unwrap_or_else(|| {
                problems.push(format!(
                    "spool_max_bytes: `{}` is not a size (e.g. 512MiB, or 0 for no spool)",
                    crate::text::truncate(&text, 40)
                ));
                DEFAULT_SPOOL_MAX_BYTES
            }),
        };
        let extra_ca = match args.image.extra_ca_certs.clone().or(file.extra_ca_certs) {
            None => None,
            Some(path) => match std::fs::read(&path) {
                Ok(pem) => match certificate_blocks(&pem) {
                    Some(certs) => Some(certs),
                    None => {
                        problems.push(format!(
                            "extra_ca_certs: {} holds no PEM certificate",
                            path.display()
                        ));
                        None
                    }
                },
                Err(e) => {
                    problems.push(format!(
                        "extra_ca_certs: cannot read {}: {e}",
                        path.display()
                    ));
                    None
                }
            },
        };
        let image_prefix = args
            .build
            .image_prefix
            .clone()
            .or(file.image_prefix)
            .unwrap_or_else(|| "nbforge".into());
        let base_image = args
            .image
            .base_image
            .clone()
            .or(file.base_image)
            .unwrap_or_else(|| "nbforge/base:bookworm".into());
        for (name, value) in [("image_prefix", &image_prefix), ("base_image", &base_image)] {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                problems.push(format!("{name}: `{value}` is not an image reference"));
            }
        }
        let build_concurrency = args
            .build
            .build_concurrency
            .or(file.build_concurrency)
            .unwrap_or(1);
        if build_concurrency == 0 {
            problems.push("build_concurrency: must be at least 1".into());
        }
        let default_python = args
            .image
            .default_python
            .clone()
            .or(file.default_python)
            .unwrap_or_else(|| "3.10".into());
        if !default_python
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            problems.push(format!(
                "default_python: `{default_python}` is not a version like 3.10"
            ));
        }
        let python_bases = match args.image.python_bases.clone().or(file.python_bases) {
            Some(text) => match crate::spec::python::parse_suites(&text) {
                Ok(suites) => crate::spec::python::bases(&base_image, &suites),
                Err(e) => {
                    problems.push(format!("python_bases: {e}"));
                    Vec::new()
                }
            },
            None => crate::spec::python::default_bases(&base_image),
        };
        let base_python = crate::spec::python::python_of(&python_bases, &base_image)
            .unwrap_or_else(|| "3.11".into());
        let python_mismatch = match (args.image.python_mismatch, file.python_mismatch) {
            (Some(m), _) => m,
            (None, Some(text)) => text.parse().unwrap_or_else(|e| {
                problems.push(format!("python_mismatch: {e}"));
                crate::spec::PythonMismatch::Fail
            }),
            (None, None) => crate::spec::PythonMismatch::Fail,
        };
        let build_memory_mb = args
            .build
            .build_memory_mb
            .or(file.build_memory_mb)
            .unwrap_or(2047);
        if !(64..=2047).contains(&build_memory_mb) {
            problems.push(format!(
                "build_memory_mb: {build_memory_mb} is outside 64 to 2047"
            ));
        }
        let build_cpus = args.build.build_cpus.or(file.build_cpus).unwrap_or(1.0);
        if !(build_cpus > 0.0 && build_cpus <= 1024.0) {
            problems.push(format!("build_cpus: {build_cpus} must be above 0"));
        }
        let allowed_base_images: Vec<String> =
            match (&args.build.allowed_base_images, file.allowed_base_images) {
                (Some(s), _) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                (None, Some(v)) => v,
                (None, None) => Vec::new(),
            };
        for pattern in &allowed_base_images {
            if let Err(e) = globset::Glob::new(pattern) {
                problems.push(format!("allowed_base_images: `{pattern}`: {e}"));
            }
        }
        let access = access_settings(&args.access, &mut file_access, &mut problems);
        if access.oauth_client_id.is_some() && gitlab_url.is_none() {
            problems.push(
                "gitlab_oauth_client_id: login with GitLab needs gitlab_url (NBFORGE_GITLAB_URL)"
                    .into(),
            );
        }
        let cran_mirror = args
            .image
            .cran_mirror
            .clone()
            .or(file.cran_mirror)
            .unwrap_or_else(|| DEFAULT_CRAN_MIRROR.into());
        if !matches!(Url::parse(&cran_mirror), Ok(u) if matches!(u.scheme(), "http" | "https"))
            || cran_mirror.contains(['\'', '"', '$', '`', '\\', ' '])
        {
            problems.push(format!(
                "cran_mirror: `{cran_mirror}` is not an http(s) URL"
            ));
        }
        let sessions = session_settings(
            &args.sessions,
            FileSessions {
                memory_max: file.session_memory_max,
                cpu_max: file.session_cpu_max,
                network: file.session_network,
                start_timeout_secs: file.session_start_timeout_secs,
            },
            &mut problems,
        );
        let lifecycle = lifecycle_settings(
            &args.lifecycle,
            FileLifecycle {
                idle_secs: file.session_idle_secs,
                anonymous_idle_secs: file.anonymous_session_idle_secs,
                max_age_secs: file.session_max_age_secs,
                cull_period_secs: file.session_cull_period_secs,
                per_user: file.sessions_per_user,
                per_visitor: file.sessions_per_visitor,
                home_quota: file.home_quota,
                ended_retention_secs: file.session_ended_retention_secs,
                metrics_per_user: file.metrics_per_user,
            },
            &mut problems,
        );
        let runs = RunSettings::from_args(&args.runs, &mut problems);
        let visitor_runs = VisitorRunSettings::from_args(&args.visitor_runs, &runs, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Settings {
            access,
            sessions,
            lifecycle,
            runs,
            visitor_runs,
            database_url,
            data_dir: args
                .storage
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("nbforge-data")),
            log_format: args.log.log_format.or(file.log_format).unwrap_or_default(),
            server: ServerSettings {
                listen,
                public_url,
                max_body_bytes,
                admin_token,
                spool_max_bytes,
            },
            forges: ForgeSettings {
                gitlab_url,
                gitlab_token,
                gitlab_webhook_secrets,
                github_webhook_secret,
                github_token: args.forge.github_token.clone().or(file.github_token),
                github_api_url: args.forge.github_api_url.clone().or(file.github_api_url),
                git_roots,
            },
            jobs: JobSettings {
                workers,
                max_attempts: job_max_attempts,
                lease: Duration::from_secs(job_lease_secs),
                backoff: Duration::from_millis(
                    args.jobs
                        .job_backoff_ms
                        .or(file.job_backoff_ms)
                        .unwrap_or(2000),
                ),
                backoff_max: Duration::from_secs(
                    args.jobs
                        .job_backoff_max_secs
                        .or(file.job_backoff_max_secs)
                        .unwrap_or(600)
                        .max(1),
                ),
                poll_interval: Duration::from_millis(
                    args.jobs
                        .poll_interval_ms
                        .or(file.poll_interval_ms)
                        .unwrap_or(500)
                        .max(10),
                ),
                shutdown_grace: Duration::from_secs(
                    args.jobs
                        .shutdown_grace_secs
                        .or(file.shutdown_grace_secs)
                        .unwrap_or(20),
                ),
                cleanup_period: Duration::from_secs(
                    args.jobs
                        .cleanup_period_secs
                        .or(file.cleanup_period_secs)
                        .unwrap_or(3600)
                        .max(1),
                ),
                reconcile_interval: Some(
                    args.jobs
                        .reconcile_interval_secs
                        .or(file.reconcile_interval_secs)
                        .unwrap_or(3600),
                )
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
                timeout: Duration::from_secs(
                    args.jobs
                        .job_timeout_secs
                        .or(file.job_timeout_secs)
                        .unwrap_or(900)
                        .max(1),
                ),
                retention: Retention {
                    jobs: days(args.jobs.job_retention_days.or(file.job_retention_days)),
                    mirrors: days(
                        args.jobs
                            .mirror_retention_days
                            .or(file.mirror_retention_days),
                    ),
                    images: days(args.jobs.image_retention_days.or(file.image_retention_days)),
                },
            },
            environments: EnvironmentSettings {
                enabled: args
                    .environment
                    .environments
                    .or(file.environments)
                    .unwrap_or(true),
                base_image,
                extra_ca,
                default_python,
                python_bases,
                base_python,
                python_mismatch,
                image_prefix,
                registry: args.build.registry.clone().or(file.registry),
                build_concurrency,
                build_timeout: Duration::from_secs(
                    args.build
                        .build_timeout_secs
                        .or(file.build_timeout_secs)
                        .unwrap_or(3600),
                ),
                build_memory_bytes: i32::try_from(u64::from(build_memory_mb) * 1024 * 1024)
                    .unwrap_or(i32::MAX),
                build_cpus,
                build_context_max_bytes: args
                    .build
                    .build_context_max_mb
                    .or(file.build_context_max_mb)
                    .unwrap_or(512)
                    .max(1)
                    .saturating_mul(1024 * 1024),
                build_network: args.build.build_network.clone().or(file.build_network),
                allowed_base_images,
                debian_mirror: args
                    .base
                    .debian_mirror
                    .clone()
                    .or(file.debian_mirror)
                    .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.into()),
                docker_host: args.docker.docker_host.clone().or(file.docker_host),
                cran_mirror,
                conda,
            },
        })
    }

    /// Warnings about forge URLs that would send tokens in clear text: `http://` to a host
    /// other than this one.
    pub fn insecure_forge_urls(&self) -> Vec<String> {
        [
            ("NBFORGE_GITLAB_URL", &self.forges.gitlab_url),
            ("NBFORGE_GITHUB_API_URL", &self.forges.github_api_url),
        ]
        .into_iter()
        .filter_map(|(name, url)| {
            let url = url.as_ref()?;
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            (url.scheme() == "http" && !loopback).then(|| {
                format!(
                    "{name} is {url}: plain http, so the API token and webhook data cross the network unencrypted; use https"
                )
            })
        })
        .collect()
    }

    /// Settings for tests and tools: the defaults with the given database.
    pub fn for_database(database_url: &str) -> Settings {
        let args = SettingsArgs {
            storage: StorageArgs {
                database_url: Some(database_url.to_owned()),
                data_dir: None,
            },
            ..Default::default()
        };
        Settings::load(&args).expect("default settings are valid")
    }
}

/// Login, sessions and the rules of access. Role maps and level names are checked by
/// `access` when the service starts.
#[derive(Debug, Clone)]
pub struct AccessSettings {
    pub oauth_client_id: Option<String>,
    pub oauth_client_secret: Option<Secret>,
    pub oauth_scopes: Vec<String>,
    pub secret_key: Option<Secret>,
    pub admins: Vec<String>,
    pub admin_group: Option<String>,
    /// `(level name, group path)` pairs.
    pub level_groups: Vec<(String, String)>,
    pub role_map: Option<String>,
    pub session_idle: Duration,
    pub session_max: Duration,
    pub plain_git_visibility: String,
    pub anonymous_sessions: bool,
    pub anonymous_runs: bool,
}

impl AccessSettings {
    /// Whether login with GitLab is configured.
    pub fn login_enabled(&self) -> bool {
        self.oauth_client_id.is_some()
    }
}

/// The access keys of the TOML file.
struct FileAccess {
    client_id: Option<String>,
    client_secret: Option<Secret>,
    scopes: Option<String>,
    secret_key: Option<Secret>,
    admins: Option<Vec<String>>,
    admin_group: Option<String>,
    level_groups: Option<String>,
    role_map: Option<String>,
    idle: Option<u64>,
    max: Option<u64>,
    plain_git_visibility: Option<String>,
    anonymous_sessions: Option<bool>,
    anonymous_runs: Option<bool>,
}

fn file_access(f: &FileSettings) -> FileAccess {
    FileAccess {
        client_id: f.gitlab_oauth_client_id.clone(),
        client_secret: f.gitlab_oauth_client_secret.clone(),
        scopes: f.gitlab_oauth_scopes.clone(),
        secret_key: f.secret_key.clone(),
        admins: f.admins.clone(),
        admin_group: f.admin_group.clone(),
        level_groups: f.level_groups.clone(),
        role_map: f.role_map.clone(),
        idle: f.session_idle_minutes,
        max: f.session_max_hours,
        plain_git_visibility: f.plain_git_visibility.clone(),
        anonymous_sessions: f.anonymous_sessions,
        anonymous_runs: f.anonymous_runs,
    }
}

/// Comma-separated items, trimmed, empty ones dropped.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn access_settings(
    a: &AccessArgs,
    f: &mut FileAccess,
    problems: &mut Vec<String>,
) -> AccessSettings {
    let oauth_client_id = a.gitlab_oauth_client_id.clone().or(f.client_id.take());
    let oauth_client_secret = a
        .gitlab_oauth_client_secret
        .clone()
        .or(f.client_secret.take());
    if oauth_client_id.is_some() && oauth_client_secret.is_none() {
        problems.push(
            "gitlab_oauth_client_secret: required with gitlab_oauth_client_id \
             (NBFORGE_GITLAB_OAUTH_CLIENT_SECRET)"
                .into(),
        );
    }
    let oauth_scopes: Vec<String> = a
        .gitlab_oauth_scopes
        .clone()
        .or(f.scopes.take())
        .unwrap_or_else(|| "openid read_user api".into())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let level_groups = a
        .level_groups
        .clone()
        .or(f.level_groups.take())
        .map(|s| list(&s))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pair| match pair.split_once('=') {
            Some((level, group)) if !group.trim().is_empty() => Some((
                level.trim().to_owned(),
                group.trim().trim_matches('/').to_owned(),
            )),
            _ => {
                problems.push(format!("level_groups: `{pair}` is not LEVEL=GROUP"));
                None
            }
        })
        .collect();
    let plain_git_visibility = a
        .plain_git_visibility
        .clone()
        .or(f.plain_git_visibility.take())
        .unwrap_or_else(|| "public".into())
        .trim()
        .to_ascii_lowercase();
    if !matches!(
        plain_git_visibility.as_str(),
        "public" | "internal" | "private"
    ) {
        problems.push(format!(
            "plain_git_visibility: `{plain_git_visibility}` is not public, internal or private"
        ));
    }
    let idle = a.session_idle_minutes.or(f.idle).unwrap_or(24 * 60).max(1);
    let max = a.session_max_hours.or(f.max).unwrap_or(14 * 24).max(1);
    AccessSettings {
        oauth_client_id,
        oauth_client_secret,
        oauth_scopes,
        secret_key: a.secret_key.clone().or(f.secret_key.take()),
        admins: match (&a.admins, f.admins.take()) {
            (Some(s), _) => list(s),
            (None, Some(v)) => v,
            (None, None) => Vec::new(),
        },
        admin_group: a
            .admin_group
            .clone()
            .or(f.admin_group.take())
            .map(|g| g.trim().trim_matches('/').to_owned())
            .filter(|g| !g.is_empty()),
        level_groups,
        role_map: a.role_map.clone().or(f.role_map.take()),
        session_idle: Duration::from_secs(idle * 60),
        session_max: Duration::from_secs(max * 3600),
        plain_git_visibility,
        anonymous_sessions: a
            .anonymous_sessions
            .or(f.anonymous_sessions)
            .unwrap_or(true),
        anonymous_runs: a.anonymous_runs.or(f.anonymous_runs).unwrap_or(false),
    }
}

/// A retention in days, 30 by default.
fn days(n: Option<u64>) -> Duration {
    Duration::from_secs(n.unwrap_or(30) * 24 * 3600)
}

/// Only the `CERTIFICATE` blocks of a PEM bundle, each with its BEGIN and END lines, so
/// that nothing else a bundle may hold (a private key, comments) is copied into images.
/// `None` when there is no certificate.
pub fn certificate_blocks(pem: &[u8]) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = String::new();
    let mut block: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match &mut block {
            None if line == BEGIN => block = Some(format!("{BEGIN}\n")),
            None => {}
            Some(b) if line == END => {
                b.push_str(END);
                b.push('\n');
                out.push_str(b);
                block = None;
            }
            Some(b) => {
                let base64 = line
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='));
                if base64 {
                    b.push_str(line);
                    b.push('\n');
                } else {
                    // Not a certificate body: drop the block.
                    block = None;
                }
            }
        }
    }
    (!out.is_empty()).then(|| out.into_bytes())
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", path.display())]))?;
    toml::from_str(&text).map_err(|e| {
        let place = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.rsplit('\n').next().map_or(0, str::len) + 1;
                format!(":{line}:{col}")
            })
            .unwrap_or_default();
        ConfigError(vec![format!("{}{place}: {}", path.display(), e.message())])
    })
}

/// Runs of visitors who are not logged in (`NBFORGE_ANONYMOUS_RUNS`): stricter limits, and
/// how long their results are kept (see `crate::runs::visitors`).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Worksheet runs of visitors who are not logged in")]
pub struct VisitorRunArgs {
    /// Most memory of a visitor's run, e.g. 512MiB [default: 1GiB, at most the session maximum].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RUN_MEMORY")]
    pub anonymous_run_memory: Option<String>,
    /// Most CPUs of a visitor's run [default: 1, at most the session maximum].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RUN_CPUS")]
    pub anonymous_run_cpus: Option<f64>,
    /// Seconds a visitor's run may execute [default: 600, at most NBFORGE_RUN_TIMEOUT_SECS].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RUN_TIMEOUT_SECS")]
    pub anonymous_run_timeout_secs: Option<u64>,
    /// Hours a visitor's result is kept, with its throwaway home [default: 24].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RESULT_HOURS")]
    pub anonymous_result_hours: Option<u64>,
    /// Runs one visitor may have waiting or executing at once [default: 1].
    #[arg(long, env = "NBFORGE_RUNS_PER_VISITOR")]
    pub runs_per_visitor: Option<usize>,
    /// Visitors' runs waiting or executing at once, all visitors together [default: half of
    /// NBFORGE_RUNS_MAX, at least 1].
    #[arg(long, env = "NBFORGE_ANONYMOUS_RUNS_MAX")]
    pub anonymous_runs_max: Option<usize>,
}

/// Limits of visitors' runs.
#[derive(Clone, Debug, PartialEq)]
pub struct VisitorRunSettings {
    /// Most memory of one run, in bytes (also capped by the session maximum).
    pub memory_bytes: u64,
    /// Most CPUs of one run (also capped by the session maximum).
    pub cpus: f64,
    /// How long one run may execute (at most the runs' own limit).
    pub timeout: Duration,
    /// How long a result is kept after its run ended.
    pub retention: Duration,
    /// Unfinished runs one visitor may have.
    pub per_visitor: usize,
    /// Unfinished visitors' runs, all visitors together.
    pub max: usize,
}

impl Default for VisitorRunSettings {
    fn default() -> VisitorRunSettings {
        VisitorRunSettings::from_args(
            &VisitorRunArgs::default(),
            &RunSettings::default(),
            &mut Vec::new(),
        )
    }
}

impl VisitorRunSettings {
    fn from_args(
        args: &VisitorRunArgs,
        runs: &RunSettings,
        problems: &mut Vec<String>,
    ) -> VisitorRunSettings {
        let memory_bytes = match &args.anonymous_run_memory {
            None => 1 << 30,
            Some(text) => match parse_size(text) {
                Some(n) if n >= 64 << 20 => n,
                _ => {
                    problems.push(format!(
                        "anonymous_run_memory: `{text}` is not a size of at least 64MiB (e.g. 1GiB)"
                    ));
                    1 << 30
                }
            },
        };
        let cpus = args.anonymous_run_cpus.unwrap_or(1.0);
        if !(cpus.is_finite() && cpus > 0.0) {
            problems.push(format!(
                "anonymous_run_cpus: `{cpus}` is not a positive number"
            ));
        }
        let timeout = Duration::from_secs(args.anonymous_run_timeout_secs.unwrap_or(600));
        let retention = Duration::from_secs(
            args.anonymous_result_hours
                .unwrap_or(24)
                .saturating_mul(3600),
        );
        let settings = VisitorRunSettings {
            memory_bytes,
            cpus,
            timeout: timeout.min(runs.timeout),
            retention,
            per_visitor: args.runs_per_visitor.unwrap_or(1),
            max: args.anonymous_runs_max.unwrap_or((runs.max / 2).max(1)),
        };
        if timeout.is_zero()
            || retention.is_zero()
            || settings.per_visitor == 0
            || settings.max == 0
        {
            problems.push(
                "anonymous_run_timeout_secs, anonymous_result_hours, runs_per_visitor and \
                 anonymous_runs_max must be at least 1"
                    .to_owned(),
            );
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_forges_are_flagged() {
        let mut s = Settings::for_database("sqlite::memory:");
        assert!(s.insecure_forge_urls().is_empty());
        s.forges.gitlab_url = Some(Url::parse("http://gitlab.example.org").unwrap());
        s.forges.github_api_url = Some(Url::parse("http://127.0.0.1:9000/api").unwrap());
        let warnings = s.insecure_forge_urls();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("NBFORGE_GITLAB_URL"));
        s.forges.gitlab_url = Some(Url::parse("https://gitlab.example.org").unwrap());
        assert!(s.insecure_forge_urls().is_empty());
    }

    #[test]
    fn session_limits_default_and_read_sizes() {
        let s = Settings::for_database("sqlite::memory:");
        assert_eq!(s.sessions, SessionSettings::default());
        assert_eq!(s.sessions.memory_max_bytes, 4 << 30);
        let load = |memory: &str, cpus: f64| {
            Settings::load(&SettingsArgs {
                sessions: SessionArgs {
                    session_memory_max: Some(memory.into()),
                    session_cpu_max: Some(cpus),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let s = load("512MiB", 0.5).unwrap();
        assert_eq!(s.sessions.memory_max_bytes, 512 << 20);
        assert_eq!(s.sessions.cpu_max, 0.5);
        assert_eq!(load("8G", 4.0).unwrap().sessions.memory_max_bytes, 8 << 30);
        assert_eq!(
            load("1073741824", 1.0).unwrap().sessions.memory_max_bytes,
            1 << 30
        );
        let ConfigError(problems) = load("lots", 0.0).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(load("1M", 1.0).is_err(), "below 64 MiB");
    }

    #[test]
    fn lifecycle_settings_default_and_read_quotas() {
        let s = Settings::for_database("sqlite::memory:");
        assert_eq!(s.lifecycle, LifecycleSettings::default());
        assert_eq!(s.lifecycle.idle, Duration::from_secs(600));
        assert_eq!(s.lifecycle.home_quota, None);
        let load = |quota: &str| {
            Settings::load(&SettingsArgs {
                lifecycle: LifecycleArgs {
                    home_quota: Some(quota.into()),
                    session_idle_secs: Some(0),
                    sessions_per_user: Some(3),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let s = load("10GiB").unwrap();
        assert_eq!(s.lifecycle.home_quota, Some(10 << 30));
        assert_eq!(
            s.lifecycle.idle,
            Duration::from_secs(1),
            "at least a second"
        );
        assert_eq!(s.lifecycle.per_user, 3);
        assert_eq!(load("none").unwrap().lifecycle.home_quota, None);
        let ConfigError(problems) = load("a lot").unwrap_err();
        assert!(problems[0].contains("home_quota"), "{problems:?}");
    }

    #[test]
    fn the_upload_limit_defaults_to_100_mib_and_reads_sizes() {
        let s = Settings::for_database("sqlite::memory:");
        assert_eq!(s.runs.upload_max_bytes, 100 << 20);
        let load = |limit: &str| {
            Settings::load(&SettingsArgs {
                runs: RunArgs {
                    upload_max_bytes: Some(limit.into()),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        assert_eq!(load("2GiB").unwrap().runs.upload_max_bytes, 2 << 30);
        assert_eq!(load("4096").unwrap().runs.upload_max_bytes, 4096);
        let ConfigError(problems) = load("big").unwrap_err();
        assert!(problems[0].contains("upload_max_bytes"), "{problems:?}");
    }

    #[test]
    fn visitors_runs_have_stricter_limits_by_default() {
        let s = Settings::for_database("sqlite::memory:");
        assert_eq!(s.visitor_runs, VisitorRunSettings::default());
        let v = &s.visitor_runs;
        assert_eq!(v.memory_bytes, 1 << 30);
        assert_eq!(v.cpus, 1.0);
        assert_eq!(v.timeout, Duration::from_secs(600));
        assert_eq!(v.retention, Duration::from_secs(24 * 3600));
        assert_eq!(v.per_visitor, 1);
        assert_eq!(v.max, (s.runs.max / 2).max(1));
        assert!(!s.access.anonymous_runs, "off by default");
        let load = |memory: &str, timeout: u64, max: usize| {
            Settings::load(&SettingsArgs {
                runs: RunArgs {
                    run_timeout_secs: Some(300),
                    runs_max: Some(4),
                    ..Default::default()
                },
                visitor_runs: VisitorRunArgs {
                    anonymous_run_memory: Some(memory.into()),
                    anonymous_run_timeout_secs: Some(timeout),
                    anonymous_result_hours: Some(2),
                    anonymous_runs_max: Some(max),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let s = load("256MiB", 900, 3).unwrap();
        assert_eq!(s.visitor_runs.memory_bytes, 256 << 20);
        assert_eq!(
            s.visitor_runs.timeout,
            Duration::from_secs(300),
            "never longer than users' runs"
        );
        assert_eq!(s.visitor_runs.retention, Duration::from_secs(7200));
        assert_eq!(s.visitor_runs.max, 3);
        let ConfigError(problems) = load("lots", 0, 0).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("anonymous_run_memory"), "{problems:?}");
    }

    #[test]
    fn redaction_removes_userinfo_and_query_passwords() {
        assert_eq!(
            redact_url("https://oauth2:glpat-secret@gitlab.example/g/p.git"),
            "https://gitlab.example/g/p.git"
        );
        assert_eq!(redact_url("/srv/repos/p.git"), "/srv/repos/p.git");
        assert_eq!(
            redact_url("postgres://nbforge:hunter2@db.example/nbforge?sslmode=require"),
            "postgres://db.example/nbforge?sslmode=require"
        );
        let shown = redact_url("postgres://db.example/nbforge?user=nb&password=hunter2");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user=nb"), "{shown}");
    }
}
