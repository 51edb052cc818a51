//! Conda environments as a repository describes them: an `environment.yml` to solve, or a
//! lock to install as it is (an `@EXPLICIT` list, a `conda-lock.yml`, or a `pixi.lock` next to
//! its `pixi.toml`). Read and checked here without network; solving, fetching and installing
//! the packages is the environment builder's (`environment::conda`).
//!
//! Only `http(s)` URLs and channel names are accepted from a repository: a `file://` channel or
//! package URL would make the builder read the host's files.

use std::str::FromStr;

use rattler_conda_types::{EnvironmentYaml, ExplicitEnvironmentSpec, NamedChannelOrUrl};
use serde::Serialize;

use super::Diagnostic;

/// The conda file names nbforge reads, in the order it looks for them in the spec folder.
pub const PIXI_LOCK: &str = "pixi.lock";
pub const PIXI_MANIFEST: &str = "pixi.toml";
pub const CONDA_LOCK: &str = "conda-lock.yml";
pub const EXPLICIT_LOCK: &str = "conda-linux-64.lock";
pub const ENVIRONMENT_YML: &str = "environment.yml";
pub const ENVIRONMENT_YAML: &str = "environment.yaml";

/// The platform environments are built for.
pub const PLATFORM: &str = "linux-64";
/// Where the environment's prefix lives in the image.
pub const PREFIX: &str = "/srv/conda";
/// The build-context folder the prepared prefix is sent in.
pub const CONTEXT_DIR: &str = "conda";
/// The build-context file holding the `pip:` section, installed after the conda packages.
pub const PIP_FILE: &str = "nbforge-conda-pip.txt";
/// The explicit lock of the installed packages, in the prefix (and so in the image).
pub const LOCK_IN_PREFIX: &str = "conda-meta/nbforge-explicit.txt";

/// How the packages are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Input {
    /// `environment.yml`: solved against its channels.
    EnvironmentFile,
    /// An `@EXPLICIT` list of package URLs (in `environment.yml` or `conda-linux-64.lock`).
    Explicit,
    /// A `conda-lock.yml` (the unified conda-lock format).
    CondaLock,
    /// A `pixi.lock`, with the `pixi.toml` it was made from.
    Pixi,
}

impl Input {
    pub fn describe(self) -> &'static str {
        match self {
            Input::EnvironmentFile => "solved from an environment file",
            Input::Explicit => "installed as locked (@EXPLICIT)",
            Input::CondaLock => "installed as locked (conda-lock)",
            Input::Pixi => "installed as locked (pixi)",
        }
    }
}

/// A conda package the environment file asks for, with the line that asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub spec: String,
    pub line: usize,
}

/// A repository's conda environment.
#[derive(Clone, Debug, Serialize)]
pub struct CondaEnvironment {
    pub input: Input,
    /// The file that describes it (the lock for locked inputs).
    pub file: String,
    /// The file the lock was made from, where there is one (`pixi.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Channels as the file names them; empty means nbforge's default channels.
    pub channels: Vec<String>,
    /// The conda packages asked for (environment files only).
    pub dependencies: Vec<Dependency>,
    /// The `pip:` section, installed with the environment's pip after the conda packages.
    pub pip: Vec<String>,
    /// The locked package URLs (locked inputs only).
    pub locked: Vec<String>,
    /// The file's text, read again by the builder.
    #[serde(skip)]
    pub text: String,
}

impl CondaEnvironment {
    fn new(input: Input, file: &str, text: &str) -> Self {
        CondaEnvironment {
            input,
            file: file.to_owned(),
            manifest: None,
            channels: Vec::new(),
            dependencies: Vec::new(),
            pip: Vec::new(),
            locked: Vec::new(),
            text: text.to_owned(),
        }
    }

    /// The line of the environment file that asks for the package `name`, if any.
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.dependencies
            .iter()
            .find(|d| spec_name(&d.spec).eq_ignore_ascii_case(name))
            .map(|d| d.line)
    }

    pub fn names(&self, name: &str) -> bool {
        self.line_of(name).is_some()
            || self
                .pip
                .iter()
                .any(|p| spec_name(p).eq_ignore_ascii_case(name))
    }
}

/// The package name at the start of a conda or pip spec (`numpy>=1.2` → `numpy`,
/// `conda-forge::numpy` → `numpy`).
pub fn spec_name(spec: &str) -> &str {
    let s = spec.trim();
    let s = s.rsplit_once("::").map_or(s, |(_, n)| n);
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(s.len());
    &s[..end]
}

/// A channel as a repository may name it: a name (`conda-forge`, `bioconda`, `owner/label`)
/// or an `http(s)` URL.
fn check_channel(channel: &str) -> Result<(), String> {
    let ok = if channel.contains("://") {
        url::Url::parse(channel).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    } else {
        !channel.is_empty()
            && !channel.starts_with(['/', '.', '~'])
            && !channel.contains("..")
            && channel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "channel `{channel}` is not allowed: only channel names and http(s) URLs"
        ))
    }
}

fn check_package_url(url: &url::Url) -> Result<(), String> {
    if matches!(url.scheme(), "http" | "https") {
        Ok(())
    } else {
        Err(format!(
            "package URL `{url}` is not allowed: only http(s) URLs"
        ))
    }
}

/// The 1-based line of the `dependencies` item that names `spec`.
fn line_of_item(text: &str, spec: &str, from: usize) -> usize {
    let name = spec_name(spec);
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| {
            let t = l.trim_start();
            t.strip_prefix('-').is_some_and(|rest| {
                let rest = rest.trim_start().trim_start_matches(['"', '\'']);
                spec_name(rest).eq_ignore_ascii_case(name)
            })
        })
        .map_or(0, |(i, _)| i + 1)
}

/// Reads an `environment.yml` (or an explicit list in its place).
pub fn parse_environment_file(
    file: &str,
    text: &str,
    errors: &mut Vec<Diagnostic>,
) -> CondaEnvironment {
    if is_explicit(text) {
        return parse_explicit(file, text, errors);
    }
    let mut env = CondaEnvironment::new(Input::EnvironmentFile, file, text);
    let parsed = if text.trim().is_empty() {
        Ok(EnvironmentYaml::default())
    } else {
        EnvironmentYaml::from_yaml_str(text)
    };
    let yaml = match parsed {
        Ok(y) => y,
        Err(e) => {
            let (line, column) = e
                .location()
                .map_or((1, 1), |l| (l.line(), l.column().max(1)));
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            errors.push(Diagnostic::at(
                file,
                line,
                column,
                format!("not a valid environment file: {message}"),
            ));
            return env;
        }
    };
    for c in &yaml.channels {
        let name = match c {
            NamedChannelOrUrl::Name(n) => n.clone(),
            NamedChannelOrUrl::Url(u) => u.to_string(),
            NamedChannelOrUrl::Path(p) => p.to_string(),
        };
        if let Err(e) = check_channel(&name) {
            let line = text
                .lines()
                .position(|l| l.contains(name.trim_end_matches('/')))
                .map_or(1, |i| i + 1);
            errors.push(Diagnostic::at(file, line, 1, e));
        }
        env.channels.push(name);
    }
    let mut after = 0;
    for spec in yaml.match_specs() {
        let spec = spec.to_string();
        let line = line_of_item(text, &spec, after);
        if line > 0 {
            after = line;
        }
        if let Some(channel) = spec.split_once("::").map(|(c, _)| c)
            && let Err(e) = check_channel(channel)
        {
            errors.push(Diagnostic::at(file, line.max(1), 1, e));
        }
        env.dependencies.push(Dependency { spec, line });
    }
    for (section, specs) in yaml.dependencies.iter().filter_map(|d| d.as_sub_section()) {
        if section != "pip" {
            errors.push(Diagnostic::file(
                file,
                format!("`{section}:` sections are not supported; only `pip:`"),
            ));
            continue;
        }
        for s in specs {
            if s.chars().any(char::is_control) {
                errors.push(Diagnostic::file(
                    file,
                    "a pip entry holds a control character",
                ));
            } else {
                env.pip.push(s.trim().to_owned());
            }
        }
    }
    env
}

/// True when the text is an `@EXPLICIT` list (conda's `conda list --explicit`).
pub fn is_explicit(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "@EXPLICIT")
}

/// Reads an `@EXPLICIT` list.
pub fn parse_explicit(file: &str, text: &str, errors: &mut Vec<Diagnostic>) -> CondaEnvironment {
    let mut env = CondaEnvironment::new(Input::Explicit, file, text);
    match ExplicitEnvironmentSpec::from_str(text) {
        Ok(spec) => {
            if let Some(p) = spec.platform
                && p.as_str() != PLATFORM
            {
                errors.push(Diagnostic::file(
                    file,
                    format!("the list is for {p}; environments are built for {PLATFORM}"),
                ));
            }
            for entry in spec.packages {
                if let Err(e) = check_package_url(&entry.url) {
                    let line = text
                        .lines()
                        .position(|l| l.trim_start().starts_with(entry.url.as_str()))
                        .map_or(1, |i| i + 1);
                    errors.push(Diagnostic::at(file, line, 1, e));
                }
                env.locked.push(entry.url.to_string());
            }
        }
        Err(e) => errors.push(Diagnostic::file(
            file,
            format!("not a valid @EXPLICIT list: {e}"),
        )),
    }
    env
}

/// Reads a `conda-lock.yml`.
pub fn parse_conda_lock(file: &str, text: &str, errors: &mut Vec<Diagnostic>) -> CondaEnvironment {
    let mut env = CondaEnvironment::new(Input::CondaLock, file, text);
    match locked_records(Input::CondaLock, text) {
        Ok(urls) => record_urls(file, text, &urls, &mut env, errors),
        Err(e) => errors.push(Diagnostic::file(file, e)),
    }
    env
}

/// Reads a `pixi.lock` (`manifest` is the `pixi.toml` next to it).
pub fn parse_pixi_lock(
    file: &str,
    manifest: Option<&str>,
    text: &str,
    errors: &mut Vec<Diagnostic>,
) -> CondaEnvironment {
    let mut env = CondaEnvironment {
        manifest: manifest.map(str::to_owned),
        ..CondaEnvironment::new(Input::Pixi, file, text)
    };
    match locked_records(Input::Pixi, text) {
        Ok(urls) => record_urls(file, text, &urls, &mut env, errors),
        Err(e) => errors.push(Diagnostic::file(file, e)),
    }
    env
}

fn record_urls(
    file: &str,
    text: &str,
    records: &LockedRecords,
    env: &mut CondaEnvironment,
    errors: &mut Vec<Diagnostic>,
) {
    for url in &records.conda {
        if let Err(e) = check_package_url(url) {
            let line = text
                .lines()
                .position(|l| l.contains(url.as_str()))
                .map_or(1, |i| i + 1);
            errors.push(Diagnostic::at(file, line, 1, e));
        }
        env.locked.push(url.to_string());
    }
    env.pip.extend(records.pypi.iter().cloned());
}

/// The packages of a lock for `linux-64`: conda package URLs, and PyPI packages as pinned
/// requirement lines (`name==version`, or the URL of a direct reference).
pub struct LockedRecords {
    pub conda: Vec<url::Url>,
    pub records: Vec<rattler_conda_types::RepoDataRecord>,
    pub pypi: Vec<String>,
}

/// Reads the `linux-64` packages of the default environment of a `conda-lock.yml` or
/// `pixi.lock`.
pub fn locked_records(input: Input, text: &str) -> Result<LockedRecords, String> {
    use rattler_lock::{LockFile, LockedPackage};
    let lock = match input {
        Input::Pixi => LockFile::from_str_with_base_directory(text, None)
            .map_err(|e| format!("not a valid pixi.lock: {e}"))?,
        Input::CondaLock => {
            let document = rattler_conda_lock::Document::parse(text)
                .map_err(|e| format!("not a valid conda-lock.yml: {e}"))?;
            LockFile::from_conda_lock_document(
                &document,
                &rattler_lock::conda_lock::ImportOptions::default(),
            )
            .map_err(|e| format!("not a valid conda-lock.yml: {e}"))?
        }
        _ => return Err("not a lock file".into()),
    };
    let env = lock
        .default_environment()
        .ok_or("the lock has no default environment")?;
    let platform = lock
        .platform(PLATFORM)
        .ok_or_else(|| format!("the lock has no packages for {PLATFORM}"))?;
    let mut out = LockedRecords {
        conda: Vec::new(),
        records: Vec::new(),
        pypi: Vec::new(),
    };
    let Some(packages) = env.packages(platform) else {
        return Err(format!("the lock has no packages for {PLATFORM}"));
    };
    for package in packages {
        match package {
            LockedPackage::Conda(c) => {
                let Some(binary) = c.as_binary() else {
                    return Err(format!(
                        "{} is a source package; only built packages can be installed",
                        c.location()
                    ));
                };
                let record = rattler_conda_types::RepoDataRecord::try_from(binary)
                    .map_err(|e| format!("{}: {e}", c.location()))?;
                out.conda.push(record.url.clone());
                out.records.push(record);
            }
            LockedPackage::Pypi(p) => {
                out.pypi
                    .push(format!("{}=={}", p.name(), p.version_string()));
            }
        }
    }
    Ok(out)
}
