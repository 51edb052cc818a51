//! Conda environments, prepared on the host with the conda ecosystem's Rust crates (rattler):
//! the environment file's channels are read (repodata cached between builds), the packages
//! solved (resolvo, strict channel priority by default), fetched into a package cache shared
//! by all builds, and linked into a prefix whose paths are patched for `/srv/conda`. The
//! prefix is sent in the build context and becomes one image layer (`spec::conda`). Locks
//! (`@EXPLICIT`, `conda-lock.yml`, `pixi.lock`) skip the solve and install what they list.
//!
//! The packages' own link scripts are never run. Channel names resolve against
//! `NBFORGE_CONDA_CHANNEL_ALIAS`; a channel that is missing or does not answer fails the build
//! with a status naming it, after retries.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rattler::install::Installer;
use rattler::package_cache::PackageCache;
use rattler_conda_types::package::{IndexJson, PackageFile};
use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, MatchSpec, PackageName, PackageRecord,
    ParseStrictness, RepoDataRecord, Subdir, Version,
};
use rattler_repodata_gateway::{Gateway, RepoData};
use rattler_solve::{ChannelPriority, SolveError, SolverImpl, SolverTask};

use crate::spec::CondaChannels;
use crate::spec::conda::{CondaEnvironment, Input, LOCK_IN_PREFIX, PREFIX, locked_records};

/// Settings of conda environments.
#[derive(Clone, Debug)]
pub struct CondaSettings {
    pub channels: CondaChannels,
    /// Repodata and package caches, and the prefixes being sent to builds.
    pub cache_dir: PathBuf,
    /// Largest package a solve may pick, in bytes (its repodata size).
    pub package_max_bytes: u64,
    /// Extra CA certificates (PEM) to trust when talking to channels.
    pub extra_ca: Option<Vec<u8>>,
    /// Tries of a channel before it is called unreachable.
    pub tries: u32,
    /// Time limit of one request to a channel (connect and headers).
    pub request_timeout: Duration,
    /// Time limit of a solve.
    pub solve_timeout: Duration,
}

impl CondaSettings {
    pub fn new(channels: CondaChannels, cache_dir: PathBuf) -> Self {
        CondaSettings {
            channels,
            cache_dir,
            package_max_bytes: 1024 * 1024 * 1024,
            extra_ca: None,
            tries: 3,
            request_timeout: Duration::from_secs(30),
            solve_timeout: Duration::from_secs(600),
        }
    }
}

/// Why a conda environment could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    /// The repository's environment cannot be made: the message is for its authors.
    #[error("{0}")]
    User(String),
    /// Something failed on nbforge's side (disk, cache); retried by the queue.
    #[error("preparing the conda environment: {0}")]
    Infrastructure(String),
}

/// A prepared prefix, removed when dropped.
pub struct Prepared {
    dir: tempfile::TempDir,
    pub installed: Installed,
}

impl Prepared {
    /// The prefix folder, to be sent as the build context's `conda/`.
    pub fn prefix(&self) -> PathBuf {
        self.dir.path().join("prefix")
    }
}

/// The Linux the images run on: what the solver may assume of the machine.
pub fn virtual_packages() -> Vec<GenericVirtualPackage> {
    let v = |name: &str, version: &str, build: &str| GenericVirtualPackage {
        name: PackageName::new_unchecked(name),
        version: Version::from_str(version).expect("valid version"),
        build_string: rattler_conda_types::package::BuildString::new_unchecked(build),
    };
    vec![
        v("__unix", "0", "0"),
        v("__linux", "6.1", "0"),
        v("__glibc", "2.36", "0"),
        v("__archspec", "1", "x86_64"),
    ]
}

fn priority(name: &str) -> ChannelPriority {
    match name {
        "disabled" => ChannelPriority::Disabled,
        "flexible" => ChannelPriority::Flexible,
        _ => ChannelPriority::Strict,
    }
}

/// Solves `specs` against repodata already read. Returns the records and the solve's time.
pub fn solve(
    repodata: &[RepoData],
    specs: Vec<MatchSpec>,
    channel_priority: &str,
    timeout: Duration,
) -> Result<(Vec<RepoDataRecord>, Duration), SolveError> {
    let started = Instant::now();
    let task = SolverTask {
        virtual_packages: virtual_packages(),
        specs,
        channel_priority: priority(channel_priority),
        timeout: Some(timeout),
        ..SolverTask::from_iter(repodata)
    };
    let solved = rattler_solve::resolvo::Solver.solve(task)?;
    Ok((solved.records, started.elapsed()))
}

/// The HTTP client for channels: the request time limit and the extra CA certificates.
pub fn client(s: &CondaSettings) -> Result<reqwest::Client, CondaError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(s.request_timeout)
        .read_timeout(s.request_timeout)
        .user_agent(concat!("nbforge/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &s.extra_ca {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| CondaError::Infrastructure(format!("extra CA certificates: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| CondaError::Infrastructure(format!("HTTP client: {e}")))
}

/// The channels an environment uses, resolved to URLs; `defaults` is left out (with a note),
/// as Anaconda's default channels are not what nbforge offers.
pub fn channels(
    s: &CondaSettings,
    env: &CondaEnvironment,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<Vec<Channel>, CondaError> {
    let alias = url::Url::parse(&s.channels.channel_alias).map_err(|e| {
        CondaError::Infrastructure(format!(
            "channel alias {}: {e}",
            crate::config::redact_url(&s.channels.channel_alias)
        ))
    })?;
    let config = ChannelConfig {
        channel_alias: alias,
        root_dir: PathBuf::from("/nonexistent"),
    };
    let names: &[String] = if env.channels.is_empty() {
        &s.channels.default_channels
    } else {
        &env.channels
    };
    let mut out = Vec::new();
    for name in names {
        if matches!(name.as_str(), "defaults" | "nodefaults") {
            if name == "defaults" {
                log(
                    "channel `defaults` is not used: packages come from the other channels \
                     (conda-forge and bioconda unless the file names others)",
                );
            }
            continue;
        }
        let channel = Channel::from_str(name, &config)
            .map_err(|e| CondaError::User(format!("{}: channel `{name}`: {e}", env.file)))?;
        if !matches!(channel.base_url.url().scheme(), "http" | "https") {
            return Err(CondaError::User(format!(
                "{}: channel `{name}` is not allowed: only channel names and http(s) URLs",
                env.file
            )));
        }
        out.push(channel);
    }
    if out.is_empty() {
        return Err(CondaError::User(format!(
            "{}: no channel to install from",
            env.file
        )));
    }
    Ok(out)
}

/// Checks that each channel answers, retrying what may pass: a 404 for its `noarch`
/// repodata means the channel does not exist; a timeout or 5xx after every try means it is
/// unreachable.
pub async fn check_channels(
    s: &CondaSettings,
    client: &reqwest::Client,
    env: &CondaEnvironment,
    channels: &[Channel],
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), CondaError> {
    for channel in channels {
        let url = channel.platform_url(Subdir::NoArch);
        let shown = crate::config::redact_url(channel.base_url.as_str());
        let repodata = url
            .join("repodata.json")
            .map_err(|e| CondaError::User(format!("channel {shown}: {e}")))?;
        let mut last = String::new();
        let mut found = false;
        for attempt in 1..=s.tries.max(1) {
            match client.head(repodata.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    found = true;
                    break;
                }
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Err(CondaError::User(format!(
                        "{}: channel `{}` was not found ({shown} answers 404 for noarch/repodata.json)",
                        env.file,
                        channel.canonical_name()
                    )));
                }
                Ok(r) if r.status().is_client_error() => {
                    return Err(CondaError::User(format!(
                        "{}: channel `{}` refused the request ({shown} answers {})",
                        env.file,
                        channel.canonical_name(),
                        r.status()
                    )));
                }
                Ok(r) => last = format!("answers {}", r.status()),
                Err(e) if e.is_timeout() => last = "did not answer in time".into(),
                Err(e) => last = format!("cannot be reached ({})", short_error(&e)),
            }
            log(&format!(
                "channel {shown} {last} (try {attempt} of {})",
                s.tries.max(1)
            ));
            pause_before_retry(attempt, s.tries.max(1)).await;
        }
        if !found {
            return Err(CondaError::User(format!(
                "{}: channel `{}` {last} after {} tries",
                env.file,
                channel.canonical_name(),
                s.tries.max(1)
            )));
        }
    }
    Ok(())
}

/// The messages of an error and of each error it came from, outermost first.
fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = String> + 'a {
    std::iter::successors(Some(e), |e| e.source()).map(ToString::to_string)
}

/// The innermost cause of a request's failure (what went wrong on the wire), credentials
/// removed.
fn short_error(e: &reqwest::Error) -> String {
    crate::config::redact_url(&causes(e).last().unwrap_or_default())
}

/// Waits before try `attempt + 1` of `tries`: 0.5 s more each time; not after the last.
async fn pause_before_retry(attempt: u32, tries: u32) {
    if attempt < tries {
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
}

/// The specs of an environment file, with ipykernel added when the file does not name it (the
/// notebook kernel runs in the environment), and pip when it has a `pip:` section.
pub fn specs(env: &CondaEnvironment) -> Result<Vec<MatchSpec>, CondaError> {
    let mut out = Vec::new();
    for d in &env.dependencies {
        let spec = MatchSpec::from_str(&d.spec, ParseStrictness::Lenient).map_err(|e| {
            CondaError::User(format!("{}:{}: `{}`: {e}", env.file, d.line.max(1), d.spec))
        })?;
        out.push(spec);
    }
    if !env.names("ipykernel") {
        out.push(MatchSpec::from_str("ipykernel", ParseStrictness::Lenient).expect("valid spec"));
    }
    // The `pip:` section is installed with the environment's own pip.
    if !env.pip.is_empty() && env.line_of("pip").is_none() {
        out.push(MatchSpec::from_str("pip", ParseStrictness::Lenient).expect("valid spec"));
    }
    Ok(out)
}

/// Reads the repodata the specs need from the channels (cached under `cache_dir`).
pub async fn repodata(
    s: &CondaSettings,
    client: reqwest::Client,
    channels: Vec<Channel>,
    specs: &[MatchSpec],
) -> Result<Vec<RepoData>, CondaError> {
    let gateway = Gateway::builder()
        .with_cache_dir(s.cache_dir.join("repodata"))
        .with_package_cache(PackageCache::new(s.cache_dir.join("pkgs")))
        .with_client(client)
        .finish();
    let mut last = String::new();
    for attempt in 1..=s.tries.max(1) {
        match gateway
            .query(
                channels.clone(),
                [Subdir::Linux64, Subdir::NoArch],
                specs.to_vec(),
            )
            .recursive(true)
            .await
        {
            Ok(r) => return Ok(r.repodata),
            Err(e) => last = crate::config::redact_url(&e.to_string()),
        }
        pause_before_retry(attempt, s.tries.max(1)).await;
    }
    Err(CondaError::User(format!(
        "reading the channels' package lists failed after {} tries: {last}",
        s.tries.max(1)
    )))
}

/// The solver's explanation, kept short for a status, located at the environment file's line
/// of the first package it names.
fn unsolvable(env: &CondaEnvironment, reasons: &[String]) -> String {
    let text = reasons.join("\n");
    // The package the explanation names first is the one asked for that conflicts.
    let line = env
        .dependencies
        .iter()
        .filter_map(|d| {
            let name = crate::spec::conda::spec_name(&d.spec);
            (!name.is_empty())
                .then(|| first_word(&text, name))
                .flatten()
                .map(|at| (at, d.line))
        })
        .min()
        .map(|(_, line)| line)
        .filter(|l| *l > 0);
    let mut short: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .take(6)
        .collect();
    if text.lines().filter(|l| !l.trim().is_empty()).count() > 6 {
        short.push("…");
    }
    let explanation = crate::text::truncate(&short.join(" / "), 600).into_owned();
    match line {
        Some(l) => format!("{}:{l}: cannot be solved: {explanation}", env.file),
        None => format!("{}: cannot be solved: {explanation}", env.file),
    }
}

/// Where `name` first appears in `text` as a whole word (package names hold `-`, `_`, `.`).
fn first_word(text: &str, name: &str) -> Option<usize> {
    let part = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    text.match_indices(name)
        .find(|(at, _)| {
            let before = text[..*at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            !before.is_some_and(part) && !after.is_some_and(|c| part(c) && c != '.')
        })
        .map(|(at, _)| at)
}

/// The `@EXPLICIT` list of records (SHA-256 where known, else MD5).
pub fn explicit_lock(records: &[RepoDataRecord]) -> String {
    let mut sorted: Vec<&RepoDataRecord> = records.iter().collect();
    sorted.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    let mut out = String::from("# platform: linux-64\n@EXPLICIT\n");
    for r in sorted {
        out.push_str(r.url.as_str());
        if let Some(h) = r.package_record.sha256 {
            out.push_str(&format!("#sha256={}", hex::encode(h)));
        } else if let Some(h) = r.package_record.md5 {
            out.push_str(&format!("#{}", hex::encode(h)));
        }
        out.push('\n');
    }
    out
}

/// The packages of `env`: solved (environment files; the solve's time is returned) or read
/// from its lock. Nothing is installed.
pub async fn resolve(
    s: &CondaSettings,
    client: &reqwest::Client,
    env: &CondaEnvironment,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(Vec<RepoDataRecord>, Option<Duration>), CondaError> {
    match env.input {
        Input::EnvironmentFile => {
            let channels = channels(s, env, log)?;
            log(&format!(
                "conda channels: {} ({} channel priority)",
                channels
                    .iter()
                    .map(|c| crate::config::redact_url(c.base_url.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.channels.priority
            ));
            check_channels(s, client, env, &channels, log).await?;
            let specs = specs(env)?;
            let fetched = Instant::now();
            let repodata = repodata(s, client.clone(), channels, &specs).await?;
            let records: usize = repodata.iter().map(RepoData::len).sum();
            log(&format!(
                "read {records} package records in {:.2} s",
                fetched.elapsed().as_secs_f64()
            ));
            let priority = s.channels.priority.clone();
            let timeout = s.solve_timeout;
            let solved =
                tokio::task::spawn_blocking(move || solve(&repodata, specs, &priority, timeout))
                    .await
                    .map_err(|e| CondaError::Infrastructure(format!("solve task: {e}")))?;
            let (records, took) = match solved {
                Ok(r) => r,
                Err(SolveError::Unsolvable(reasons)) => {
                    return Err(CondaError::User(unsolvable(env, &reasons)));
                }
                Err(SolveError::Cancelled) => {
                    return Err(CondaError::User(format!(
                        "{}: the solve took longer than {} s",
                        env.file,
                        s.solve_timeout.as_secs()
                    )));
                }
                Err(e) => return Err(CondaError::User(format!("{}: {e}", env.file))),
            };
            log(&format!(
                "solved {} packages in {:.2} s",
                records.len(),
                took.as_secs_f64()
            ));
            Ok((records, Some(took)))
        }
        Input::CondaLock | Input::Pixi => Ok((
            locked_records(env.input, &env.text)
                .map_err(|e| CondaError::User(format!("{}: {e}", env.file)))?
                .records,
            None,
        )),
        Input::Explicit => Ok((explicit_records(s, client, env).await?, None)),
    }
}

/// What [`install_into`] installed.
pub struct Installed {
    /// The installed packages as an `@EXPLICIT` list with SHA-256 hashes.
    pub lock: String,
    pub packages: usize,
    /// How long the solve took (environment files only).
    pub solve_time: Option<Duration>,
    /// The Python the environment has, `X.Y.Z`.
    pub python: Option<String>,
}

/// Prepares the prefix of `env` in a folder of its own under the cache, removed when the
/// value is dropped (see [`install_into`]).
pub async fn prepare(
    s: &CondaSettings,
    env: &CondaEnvironment,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<Prepared, CondaError> {
    let work = s.cache_dir.join("prefixes");
    std::fs::create_dir_all(&work)
        .map_err(|e| CondaError::Infrastructure(format!("creating {}: {e}", work.display())))?;
    let dir = tempfile::Builder::new()
        .prefix("env-")
        .tempdir_in(&work)
        .map_err(|e| CondaError::Infrastructure(format!("{}: {e}", work.display())))?;
    let installed = install_into(s, env, &dir.path().join("prefix"), log).await?;
    Ok(Prepared { dir, installed })
}

/// Installs `env` into the folder `prefix`: solved (environment files) or read from its lock,
/// fetched into the shared package cache, and linked for `/srv/conda`.
pub async fn install_into(
    s: &CondaSettings,
    env: &CondaEnvironment,
    prefix: &Path,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<Installed, CondaError> {
    let client = client(s)?;
    let (records, solve_time) = resolve(s, &client, env, log).await?;
    for r in &records {
        if let Some(size) = r.package_record.size
            && size > s.package_max_bytes
        {
            return Err(CondaError::User(format!(
                "{}: package {}-{} is {} MiB, over the limit of {} MiB \
                 (NBFORGE_CONDA_PACKAGE_MAX_MB)",
                env.file,
                r.package_record.name.as_normalized(),
                r.package_record.version,
                size / (1024 * 1024),
                s.package_max_bytes / (1024 * 1024)
            )));
        }
    }
    let python = records
        .iter()
        .find(|r| r.package_record.name.as_normalized() == "python")
        .map(|r| r.package_record.version.to_string());
    let has = |name: &str| {
        records
            .iter()
            .any(|r| r.package_record.name.as_normalized() == name)
            || env
                .pip
                .iter()
                .any(|p| crate::spec::conda::spec_name(p).eq_ignore_ascii_case(name))
    };
    if python.is_some() && !has("ipykernel") {
        log(&format!(
            "warning: {} has no ipykernel: notebooks will run with the base image's Python, not \
             the environment's; add ipykernel to it",
            env.file
        ));
    }
    let lock = explicit_lock(&records);
    let installed = Instant::now();
    let packages = records.len();
    Installer::new()
        .with_package_cache(PackageCache::new(s.cache_dir.join("pkgs")))
        .with_download_client(client)
        .with_target_platform(Subdir::Linux64)
        .with_alternative_target_prefix(PREFIX)
        .with_execute_link_scripts(false)
        .install(prefix, records)
        .await
        .map_err(|e| install_error(env, &e))?;
    log(&format!(
        "installed {packages} packages for {PREFIX} in {:.2} s",
        installed.elapsed().as_secs_f64()
    ));
    let lock_path = prefix.join(LOCK_IN_PREFIX);
    std::fs::write(&lock_path, &lock)
        .map_err(|e| CondaError::Infrastructure(format!("writing {}: {e}", lock_path.display())))?;
    Ok(Installed {
        lock,
        packages,
        solve_time,
        python,
    })
}

/// An install failure: a package that cannot be fetched is the environment's problem (its URL
/// or channel); anything else is nbforge's.
fn install_error(env: &CondaEnvironment, e: &rattler::install::InstallerError) -> CondaError {
    let text = crate::config::redact_url(&causes(e).collect::<Vec<_>>().join(": "));
    if matches!(e, rattler::install::InstallerError::FailedToFetch(..)) {
        CondaError::User(format!("{}: {text}", env.file))
    } else {
        CondaError::Infrastructure(text)
    }
}

/// The records of an `@EXPLICIT` list: each package fetched into the cache and its
/// `info/index.json` read.
async fn explicit_records(
    s: &CondaSettings,
    client: &reqwest::Client,
    env: &CondaEnvironment,
) -> Result<Vec<RepoDataRecord>, CondaError> {
    let cache = PackageCache::new(s.cache_dir.join("pkgs"));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for raw in &env.locked {
        let url = url::Url::parse(raw)
            .map_err(|e| CondaError::User(format!("{}: `{raw}`: {e}", env.file)))?;
        let mut plain = url.clone();
        plain.set_fragment(None);
        let file_name = plain
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or_default()
            .to_owned();
        let Some(id) =
            rattler_conda_types::package::CondaArchiveIdentifier::try_from_filename(&file_name)
        else {
            return Err(CondaError::User(format!(
                "{}: `{file_name}` is not a conda package file name",
                env.file
            )));
        };
        if !seen.insert(file_name.clone()) {
            continue;
        }
        let meta = cache
            .get_or_fetch_from_url(id.clone(), plain.clone(), client.clone().into(), None, None)
            .await
            .map_err(|e| {
                CondaError::User(format!(
                    "{}: fetching {}: {}",
                    env.file,
                    crate::config::redact_url(plain.as_str()),
                    crate::config::redact_url(&e.to_string())
                ))
            })?;
        let index = IndexJson::from_package_directory(meta.path()).map_err(|e| {
            CondaError::User(format!("{}: {file_name}: info/index.json: {e}", env.file))
        })?;
        let (sha256, md5) = match explicit_hash(raw) {
            Some(rattler_conda_types::PackageArchiveHash::Sha256(h)) => (Some(h), None),
            Some(rattler_conda_types::PackageArchiveHash::Md5(h)) => (None, Some(h)),
            None => (None, None),
        };
        let record = PackageRecord::from_index_json(index, None, sha256, md5)
            .map_err(|e| CondaError::User(format!("{}: {file_name}: {e}", env.file)))?;
        let channel = plain.as_str().rsplitn(3, '/').nth(2).map(str::to_owned);
        out.push(RepoDataRecord {
            package_record: record,
            identifier: id.into(),
            url: plain,
            channel,
        });
    }
    Ok(out)
}

/// The hash an `@EXPLICIT` entry carries after `#` (MD5, or `sha256=` / `sha256:`).
fn explicit_hash(entry: &str) -> Option<rattler_conda_types::PackageArchiveHash> {
    let url = url::Url::parse(entry).ok()?;
    rattler_conda_types::ExplicitEnvironmentEntry { url }
        .package_archive_hash()
        .ok()
        .flatten()
}

/// Removes prefixes left behind by builds that did not end (a crash, a killed process):
/// those not changed for `older_than` (longer than any build may take). Returns how many.
pub fn remove_stale_prefixes(cache_dir: &Path, older_than: Duration) -> usize {
    let work = cache_dir.join("prefixes");
    let Ok(entries) = std::fs::read_dir(&work) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than);
        if old && std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}
