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

fn split_secrets(s: &str) -> Vec<Secret> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

/// Settings as given by flags or `NBFORGE_*` variables; every field optional so that
/// the TOML file and the defaults can fill the gaps.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SettingsArgs {
    /// TOML file with the same settings (keys are the flag names with `_`).
    #[arg(long, env = "NBFORGE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "NBFORGE_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// `sqlite://FILE` or `postgres://…` [default: sqlite://nbforge.db].
    #[arg(
        long,
        env = "NBFORGE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// URL users reach nbforge at, for links in statuses and comments [default: http://LISTEN].
    #[arg(long, env = "NBFORGE_PUBLIC_URL", global = true)]
    pub public_url: Option<Url>,
    /// Base URL of the GitLab instance, e.g. https://gitlab.example.org.
    #[arg(long, env = "NBFORGE_GITLAB_URL", global = true)]
    pub gitlab_url: Option<Url>,
    /// GitLab access token (scope `api`); prefer the environment variable.
    #[arg(
        long,
        env = "NBFORGE_GITLAB_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub gitlab_token: Option<Secret>,
    /// Secret token(s) GitLab sends in `X-Gitlab-Token`; comma-separated for rotation.
    #[arg(
        long,
        env = "NBFORGE_GITLAB_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub gitlab_webhook_secret: Option<String>,
    /// Secret GitHub signs deliveries with (`X-Hub-Signature-256`).
    #[arg(
        long,
        env = "NBFORGE_GITHUB_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub github_webhook_secret: Option<Secret>,
    /// GitHub token for statuses and comments.
    #[arg(
        long,
        env = "NBFORGE_GITHUB_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub github_token: Option<Secret>,
    /// GitHub API base URL (GitHub Enterprise) [default: https://api.github.com].
    #[arg(long, env = "NBFORGE_GITHUB_API_URL", global = true)]
    pub github_api_url: Option<Url>,
    /// Bearer token for the admin API (`/api/...`); without it the admin API is closed.
    #[arg(
        long,
        env = "NBFORGE_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub admin_token: Option<Secret>,
    /// Directory for git mirrors and other working files [default: ./nbforge-data].
    #[arg(long, env = "NBFORGE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Job workers in this process; 0 makes an ingest-only process [default: 2].
    #[arg(long, env = "NBFORGE_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// Tries before a job is dead-lettered [default: 5].
    #[arg(long, env = "NBFORGE_JOB_MAX_ATTEMPTS", global = true)]
    pub job_max_attempts: Option<u32>,
    /// Seconds a claimed job's lease lasts without a heartbeat [default: 60].
    #[arg(long, env = "NBFORGE_JOB_LEASE_SECS", global = true)]
    pub job_lease_secs: Option<u64>,
    /// First retry delay in milliseconds; doubles each try [default: 2000].
    #[arg(long, env = "NBFORGE_JOB_BACKOFF_MS", global = true)]
    pub job_backoff_ms: Option<u64>,
    /// How often idle workers look for jobs queued by other processes, in ms [default: 500].
    #[arg(long, env = "NBFORGE_POLL_INTERVAL_MS", global = true)]
    pub poll_interval_ms: Option<u64>,
    /// Seconds running jobs get to finish on shutdown before they are released [default: 20].
    #[arg(long, env = "NBFORGE_SHUTDOWN_GRACE_SECS", global = true)]
    pub shutdown_grace_secs: Option<u64>,
    /// Largest webhook body accepted, in bytes [default: 26214400].
    #[arg(long, env = "NBFORGE_MAX_BODY_BYTES", global = true)]
    pub max_body_bytes: Option<usize>,
    /// Log format.
    #[arg(long, env = "NBFORGE_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Image every environment starts from (`nbforge base-image` makes it) [default: nbforge/base:bookworm].
    #[arg(long, env = "NBFORGE_BASE_IMAGE", global = true)]
    pub base_image: Option<String>,
    /// PEM file of extra CA certificates to trust in builds and images (TLS-intercepting networks).
    #[arg(long, env = "NBFORGE_EXTRA_CA_CERTS", global = true)]
    pub extra_ca_certs: Option<PathBuf>,
    /// Prefix of environment image names: `<prefix>/env:<key>` [default: nbforge].
    #[arg(long, env = "NBFORGE_IMAGE_PREFIX", global = true)]
    pub image_prefix: Option<String>,
    /// Container registry to push environment images to, e.g. registry.example.org.
    #[arg(long, env = "NBFORGE_REGISTRY", global = true)]
    pub registry: Option<String>,
    /// Image builds allowed at once [default: 1].
    #[arg(long, env = "NBFORGE_BUILD_CONCURRENCY", global = true)]
    pub build_concurrency: Option<usize>,
    /// Longest an image build may take, in seconds [default: 3600].
    #[arg(long, env = "NBFORGE_BUILD_TIMEOUT_SECS", global = true)]
    pub build_timeout_secs: Option<u64>,
    /// Python version assumed when a repository names none [default: 3.10, as repo2docker].
    #[arg(long, env = "NBFORGE_DEFAULT_PYTHON", global = true)]
    pub default_python: Option<String>,
    /// Debian mirror used to make the base image [default: http://deb.debian.org/debian].
    #[arg(long, env = "NBFORGE_DEBIAN_MIRROR", global = true)]
    pub debian_mirror: Option<String>,
    /// Docker engine address, e.g. unix:///var/run/docker.sock [default: DOCKER_HOST or the local socket].
    #[arg(long, env = "NBFORGE_DOCKER_HOST", global = true)]
    pub docker_host: Option<String>,
    /// Prepare environment images on pushes and merge requests (`false`: record events only) [default: true].
    #[arg(long, env = "NBFORGE_ENVIRONMENTS", global = true)]
    pub environments: Option<bool>,
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
    admin_token: Option<Secret>,
    data_dir: Option<PathBuf>,
    workers: Option<usize>,
    job_max_attempts: Option<u32>,
    job_lease_secs: Option<u64>,
    job_backoff_ms: Option<u64>,
    poll_interval_ms: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    max_body_bytes: Option<usize>,
    log_format: Option<LogFormat>,
    base_image: Option<String>,
    extra_ca_certs: Option<PathBuf>,
    image_prefix: Option<String>,
    registry: Option<String>,
    build_concurrency: Option<usize>,
    build_timeout_secs: Option<u64>,
    default_python: Option<String>,
    debian_mirror: Option<String>,
    environments: Option<bool>,
    docker_host: Option<String>,
}

/// Validated settings, read once at start-up and passed in.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub public_url: Url,
    pub gitlab_url: Option<Url>,
    pub gitlab_token: Option<Secret>,
    pub gitlab_webhook_secrets: Vec<Secret>,
    pub github_webhook_secret: Option<Secret>,
    pub github_token: Option<Secret>,
    pub github_api_url: Option<Url>,
    pub admin_token: Option<Secret>,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub job_max_attempts: u32,
    pub job_lease: Duration,
    pub job_backoff: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub base_image: String,
    /// Contents of the extra CA bundle, read at start-up.
    pub extra_ca: Option<Vec<u8>>,
    pub image_prefix: String,
    pub registry: Option<String>,
    pub build_concurrency: usize,
    pub build_timeout: Duration,
    pub default_python: String,
    pub debian_mirror: String,
    pub environments: bool,
    pub docker_host: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("public_url", &self.public_url.as_str())
            .field("gitlab_url", &self.gitlab_url.as_ref().map(Url::as_str))
            .field("gitlab_token", &self.gitlab_token)
            .field("gitlab_webhook_secrets", &self.gitlab_webhook_secrets.len())
            .field("github_webhook_secret", &self.github_webhook_secret)
            .field("admin_token", &self.admin_token)
            .field("workers", &self.workers)
            .field("job_max_attempts", &self.job_max_attempts)
            .finish_non_exhaustive()
    }
}

/// A URL with any password replaced, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Everything wrong with the configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Merges flags/environment over the TOML file over defaults, then validates the whole.
    pub fn load(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let mut problems = Vec::new();
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("default address parses"));
        let database_url = args
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
        let public_url = match args.public_url.clone().or(file.public_url) {
            Some(u) => u,
            None => Url::parse(&format!("http://{listen}/")).expect("address URL parses"),
        };
        let gitlab_url = args.gitlab_url.clone().or(file.gitlab_url);
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
        let gitlab_token = args.gitlab_token.clone().or(file.gitlab_token);
        if gitlab_url.is_some() && gitlab_token.is_none() {
            problems.push(
                "gitlab_token: required when gitlab_url is set (NBFORGE_GITLAB_TOKEN)".into(),
            );
        }
        let gitlab_webhook_secrets = match (&args.gitlab_webhook_secret, file.gitlab_webhook_secret)
        {
            (Some(s), _) => split_secrets(s),
            (None, Some(SecretList::One(s))) => split_secrets(&s),
            (None, Some(SecretList::Many(v))) => v,
            (None, None) => Vec::new(),
        };
        let workers = args.workers.or(file.workers).unwrap_or(2);
        let job_max_attempts = args.job_max_attempts.or(file.job_max_attempts).unwrap_or(5);
        if job_max_attempts == 0 {
            problems.push("job_max_attempts: must be at least 1".into());
        }
        let job_lease_secs = args.job_lease_secs.or(file.job_lease_secs).unwrap_or(60);
        if job_lease_secs < 2 {
            problems.push("job_lease_secs: must be at least 2".into());
        }
        let max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            problems.push("max_body_bytes: must be at least 1024".into());
        }
        let extra_ca = match args.extra_ca_certs.clone().or(file.extra_ca_certs) {
            None => None,
            Some(path) => match std::fs::read(&path) {
                Ok(pem)
                    if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    Some(pem)
                }
                Ok(_) => {
                    problems.push(format!(
                        "extra_ca_certs: {} holds no PEM certificate",
                        path.display()
                    ));
                    None
                }
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
            .image_prefix
            .clone()
            .or(file.image_prefix)
            .unwrap_or_else(|| "nbforge".into());
        let base_image = args
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
            .build_concurrency
            .or(file.build_concurrency)
            .unwrap_or(1);
        if build_concurrency == 0 {
            problems.push("build_concurrency: must be at least 1".into());
        }
        let default_python = args
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
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Settings {
            listen,
            database_url,
            public_url,
            gitlab_url,
            gitlab_token,
            gitlab_webhook_secrets,
            github_webhook_secret: args
                .github_webhook_secret
                .clone()
                .or(file.github_webhook_secret),
            github_token: args.github_token.clone().or(file.github_token),
            github_api_url: args.github_api_url.clone().or(file.github_api_url),
            admin_token: args.admin_token.clone().or(file.admin_token),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("nbforge-data")),
            workers,
            job_max_attempts,
            job_lease: Duration::from_secs(job_lease_secs),
            job_backoff: Duration::from_millis(
                args.job_backoff_ms.or(file.job_backoff_ms).unwrap_or(2000),
            ),
            poll_interval: Duration::from_millis(
                args.poll_interval_ms
                    .or(file.poll_interval_ms)
                    .unwrap_or(500)
                    .max(10),
            ),
            shutdown_grace: Duration::from_secs(
                args.shutdown_grace_secs
                    .or(file.shutdown_grace_secs)
                    .unwrap_or(20),
            ),
            max_body_bytes,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            base_image,
            extra_ca,
            image_prefix,
            registry: args.registry.clone().or(file.registry),
            build_concurrency,
            build_timeout: Duration::from_secs(
                args.build_timeout_secs
                    .or(file.build_timeout_secs)
                    .unwrap_or(3600),
            ),
            default_python,
            debian_mirror: args
                .debian_mirror
                .clone()
                .or(file.debian_mirror)
                .unwrap_or_else(|| "http://deb.debian.org/debian".into()),
            environments: args.environments.or(file.environments).unwrap_or(true),
            docker_host: args.docker_host.clone().or(file.docker_host),
        })
    }

    /// Settings for tests and tools: the defaults with the given database.
    pub fn for_database(database_url: &str) -> Settings {
        let args = SettingsArgs {
            database_url: Some(database_url.to_owned()),
            ..Default::default()
        };
        Settings::load(&args).expect("default settings are valid")
    }
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
