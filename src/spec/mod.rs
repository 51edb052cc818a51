//! Launch specs: repo2docker-compatible detection (REES files and precedence), nbforge's own
//! `launch.toml`, the environment key (a hash of exactly what the image build reads), and
//! Dockerfile plus build-context generation.
//!
//! Everything is read through one code path over a [`FileTree`](crate::repo::FileTree): a commit tree read from git
//! objects or a directory. Problems in a repository are
//! [`SpecError::Invalid`] with `file:line:column` diagnostics; a kind nbforge cannot build is
//! reported by [`Analysis::unsupported`] and by [`SpecError::Unsupported`] from generation.

pub mod bench;
pub mod cli;
pub mod conda;
mod detect;
mod dockerfile;
mod key;
pub mod launch;
pub mod python;
pub mod r;
#[cfg(test)]
mod testing;

use crate::repo::{FileTree, TreeError};
use serde::Serialize;

pub use detect::validate_apt_name;
pub use dockerfile::{ContextData, ContextFile};
pub use launch::{LaunchConfig, ProjectKind, Resources, WorksheetEntry};
pub use python::{PythonBase, PythonMismatch};

/// Version of the generator; part of every environment key, so a change to what nbforge
/// generates rebuilds environments.
pub const GENERATOR_VERSION: &str = concat!("nbforge-spec/", env!("CARGO_PKG_VERSION"), "/3");

/// The documentation section on the kinds nbforge detects but does not build, named in their
/// messages and commit statuses.
pub const UNSUPPORTED_DOCS: &str = "docs/launch-spec.md#kinds-nbforge-does-not-build";

pub use crate::config::DEFAULT_CRAN_MIRROR;

/// Build-context file name of the optional extra CA bundle.
pub const EXTRA_CA_FILE: &str = "nbforge-extra-ca.crt";

/// Settings of detection and generation. [`Options::default`] gives repo2docker's defaults and
/// nbforge's Debian bookworm base.
#[derive(Clone, Debug)]
pub struct Options {
    /// Python version reported when the repository names none (repo2docker: 3.10).
    pub default_python: String,
    /// The default base image reference (a Debian bookworm image with Debian's python3, venv,
    /// pip and ipykernel, and the Jupyter server in `/opt/jupyter`): for R, and for
    /// repositories that name no Python version the bases below do not provide.
    pub base_image: String,
    /// The Python version the default base image provides.
    pub base_python: String,
    /// The Pythons nbforge provides, each with its base image (one per Debian release).
    pub python_bases: Vec<PythonBase>,
    /// What happens when a repository asks for a Python none of `python_bases` provides.
    pub python_mismatch: PythonMismatch,
    /// Debian mirror a missing base image is made from (not part of the key).
    pub debian_mirror: String,
    /// Largest spec file read, in bytes.
    pub max_file_size: u64,
    /// PEM bundle of extra CA certificates to trust at build and run time, if any.
    pub extra_ca: Option<Vec<u8>>,
    /// The R version the image gets for the `r` kind (Debian's `r-base-core`).
    pub base_r: String,
    /// CRAN mirror for the R packages Debian does not have (also Bioconductor's CRAN).
    pub cran_mirror: String,
    /// Largest build context (the sum of its files), in bytes.
    pub max_context_bytes: u64,
    /// How conda channels are found: part of the key of conda environments.
    pub conda: CondaChannels,
}

/// The conda channel settings a solve depends on (so the environment key covers them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CondaChannels {
    /// Channels used when an environment file names none.
    pub default_channels: Vec<String>,
    /// The base URL channel names are resolved against (`https://conda.anaconda.org`, or a
    /// mirror).
    pub channel_alias: String,
    /// `strict`, `flexible` or `disabled` (conda's `channel_priority`).
    pub priority: String,
}

impl Default for CondaChannels {
    fn default() -> Self {
        CondaChannels {
            default_channels: vec!["conda-forge".into(), "bioconda".into()],
            channel_alias: DEFAULT_CONDA_CHANNEL_ALIAS.into(),
            priority: "strict".into(),
        }
    }
}

/// Where channel names point unless `NBFORGE_CONDA_CHANNEL_ALIAS` says otherwise.
pub const DEFAULT_CONDA_CHANNEL_ALIAS: &str = "https://conda.anaconda.org";

impl Default for Options {
    fn default() -> Self {
        Options {
            default_python: "3.10".into(),
            base_image: "nbforge/base:bookworm".into(),
            base_python: "3.11".into(),
            python_bases: python::default_bases("nbforge/base:bookworm"),
            python_mismatch: PythonMismatch::Fail,
            debian_mirror: crate::config::DEFAULT_DEBIAN_MIRROR.into(),
            max_file_size: 1 << 20,
            extra_ca: None,
            base_r: r::DEBIAN_R.into(),
            cran_mirror: DEFAULT_CRAN_MIRROR.into(),
            max_context_bytes: 512 * 1024 * 1024,
            conda: CondaChannels::default(),
        }
    }
}

/// The environment kind, in repo2docker's precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Dockerfile,
    Julia,
    JuliaRequire,
    Nix,
    R,
    Conda,
    Pipfile,
    Python,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dockerfile => "dockerfile",
            Kind::Julia => "julia",
            Kind::JuliaRequire => "julia-require",
            Kind::Nix => "nix",
            Kind::R => "r",
            Kind::Conda => "conda",
            Kind::Pipfile => "pipfile",
            Kind::Python => "python",
        }
    }
}

impl Kind {
    /// The kind's name in a sentence: "Julia", "Nix", "R", "conda".
    pub fn title(self) -> &'static str {
        match self {
            Kind::Dockerfile => "Dockerfile",
            Kind::Julia | Kind::JuliaRequire => "Julia",
            Kind::Nix => "Nix",
            Kind::R => "R",
            Kind::Conda => "conda",
            Kind::Pipfile => "Pipfile",
            Kind::Python => "Python",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem in a repository's launch spec, located where possible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub fn at(file: &str, line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = if self.file.is_empty() {
            "."
        } else {
            &self.file
        };
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{file}:{l}:{c}: {}", self.message),
            (Some(l), None) => write!(f, "{file}:{l}: {}", self.message),
            _ => write!(f, "{file}: {}", self.message),
        }
    }
}

/// Why a spec could not be analyzed or generated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The repository's spec is wrong; the diagnostics are for its authors.
    #[error("invalid launch spec: {}", join_diags(.0))]
    Invalid(Vec<Diagnostic>),
    /// The spec is valid but nbforge cannot build this kind here.
    #[error("cannot build yet: {message}")]
    Unsupported { kind: Kind, message: String },
    /// Something failed on nbforge's side (git object store, disk); not the user's fault.
    #[error("internal error reading the launch spec: {0}")]
    Internal(String),
}

fn join_diags(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl SpecError {
    /// True when the message is meant for the repository's authors.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, SpecError::Internal(_))
    }

    /// The located problems (empty for internal errors).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            SpecError::Invalid(d) => d.clone(),
            SpecError::Unsupported { message, .. } => vec![Diagnostic::file("", message.clone())],
            SpecError::Internal(_) => Vec::new(),
        }
    }
}

impl From<TreeError> for SpecError {
    fn from(e: TreeError) -> Self {
        if !e.is_user_error() {
            return SpecError::Internal(e.to_string());
        }
        let text = e.to_string();
        let path = match &e {
            TreeError::Escape { path, .. }
            | TreeError::Loop { path }
            | TreeError::TooLarge { path, .. }
            | TreeError::NotUtf8 { path, .. }
            | TreeError::NotAFile { path }
            | TreeError::NotUtf8Name { path } => path.clone(),
            TreeError::Io { path, .. } => path.clone(),
            TreeError::Git(_) => String::new(),
        };
        let message = text
            .strip_prefix(&format!("{path}: "))
            .unwrap_or(&text)
            .to_owned();
        SpecError::Invalid(vec![Diagnostic::file(&path, message)])
    }
}

/// What the image build of a repository needs, found by [`analyze`].
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub kind: Kind,
    /// `binder` or `.binder` when spec files are read from that folder.
    pub spec_dir: Option<String>,
    /// The Python version asked for (or the default); `None` where Python is not configured
    /// by the spec (Dockerfile, Julia, Nix).
    pub python_version: Option<String>,
    /// The Python the generated image actually has (its base image's), where one is generated.
    pub image_python: Option<String>,
    /// The base image the generated Dockerfile starts from (one per Python version).
    pub base_image: Option<String>,
    /// `runtime.txt` content when it was used.
    pub runtime: Option<String>,
    /// The R version `runtime.txt` asks for (`r-<version>[-<date>]`), for the `r` kind.
    pub r_version: Option<String>,
    /// The CRAN snapshot date `runtime.txt` asks for; never used (packages come from Debian
    /// and the CRAN mirror).
    pub r_snapshot: Option<String>,
    /// The R the generated image has (Debian's), for the `r` kind.
    pub image_r: Option<String>,
    /// Spec files used, repository paths.
    pub files: Vec<String>,
    /// Every file the environment key covers, repository paths.
    pub inputs: Vec<String>,
    /// True when the key covers the whole tree (inputs could not be narrowed).
    pub whole_tree: bool,
    pub environment_key: String,
    pub warnings: Vec<String>,
    /// Set when the spec is valid but nbforge cannot build this kind: the reason.
    pub unsupported: Option<String>,
    /// Validated package names from `apt.txt`.
    pub apt_packages: Vec<String>,
    pub launch: Option<LaunchConfig>,
    /// The conda environment, for the `conda` kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conda: Option<conda::CondaEnvironment>,
    #[serde(skip)]
    plan: Plan,
}

/// Internal build plan: which spec files feed which Dockerfile step.
#[derive(Clone, Debug, Default)]
struct Plan {
    /// Requirement files in install order (main file first) and every file they include.
    requirements: Option<String>,
    requirement_files: Vec<String>,
    /// Package roots (files or folders) installed from the repository (`-e .`, `setup.py`).
    package_roots: Vec<String>,
    /// Install the repository root as a package (`pip install .`).
    install_root: bool,
    pipfile: Option<String>,
    pipfile_lock: Option<String>,
    install_r: Option<String>,
    /// R packages named by `install.R` and `DESCRIPTION`, installed from Debian where it has them.
    r_packages: Vec<r::RPackage>,
    description: bool,
    r_roots: Vec<String>,
    post_build: Option<String>,
    start: Option<String>,
    /// The repository's own Dockerfile, path and text (Dockerfile kind).
    dockerfile: Option<(String, String)>,
}

/// Detects the kind, reads and validates the spec files and `launch.toml`, and computes the
/// environment key.
pub fn analyze(src: &dyn FileTree, opts: &Options) -> Result<Analysis, SpecError> {
    let mut a = detect::detect(src, opts)?;
    key::compute(src, opts, &mut a)?;
    Ok(a)
}

impl Analysis {
    /// The Dockerfile for this environment. Deterministic: the same analysis and options give
    /// the same bytes. For the Dockerfile kind, the repository's own Dockerfile.
    pub fn dockerfile(&self, opts: &Options) -> Result<String, SpecError> {
        dockerfile::generate(self, opts)
    }

    /// Path of the Dockerfile inside the build context.
    pub fn dockerfile_path(&self) -> String {
        match &self.plan.dockerfile {
            Some((p, _)) => p.clone(),
            None => "Dockerfile".into(),
        }
    }

    /// The build context's files, the repository's not yet read ([`ContextFile`]): what the
    /// builder streams to the engine.
    pub fn build_context_files(
        &self,
        src: &dyn FileTree,
        opts: &Options,
    ) -> Result<Vec<ContextFile>, SpecError> {
        dockerfile::context_files(self, src, opts)
    }

    /// The build context as (path in context, bytes): the Dockerfile, generated helper files
    /// and only the environment inputs (under `repo/` for generated Dockerfiles; at their own
    /// paths for the Dockerfile kind). Sorted by path, ready to be written into a tar.
    pub fn build_context(
        &self,
        src: &dyn FileTree,
        opts: &Options,
    ) -> Result<Vec<(String, Vec<u8>)>, SpecError> {
        dockerfile::context(self, src, opts)
    }

    /// A short note for commit statuses when the image's R differs from what `runtime.txt`
    /// asks for (version or CRAN snapshot date), e.g. "R 4.2 from Debian, not 4.1".
    pub fn runtime_note(&self) -> Option<String> {
        let have = self.image_r.as_deref()?;
        let other = self
            .r_version
            .as_deref()
            .filter(|v| v.split('.').take(2).collect::<Vec<_>>().join(".") != have);
        match (other, self.r_snapshot.as_deref()) {
            (Some(v), Some(d)) => Some(format!(
                "R {have} from Debian, not {v}; CRAN snapshot {d} not used"
            )),
            (Some(v), None) => Some(format!("R {have} from Debian, not {v}")),
            (None, Some(d)) => Some(format!("R {have} from Debian; CRAN snapshot {d} not used")),
            (None, None) => None,
        }
    }

    /// The environment key's short form for image tags (first 16 hex digits).
    pub fn short_key(&self) -> &str {
        &self.environment_key[..16.min(self.environment_key.len())]
    }
}
