//! Detection: which repo2docker build pack a repository selects, and reading/validating the
//! spec files that pack uses (`apt.txt`, `runtime.txt`, requirement files, `Pipfile`,
//! `environment.yml`, `launch.toml`). Precedence and the `binder/` / `.binder/` rules follow
//! repo2docker's "Configuration files" documentation.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::launch::{self, LAUNCH_FILE, check_repo_path, line_col};
use super::{Analysis, Diagnostic, Kind, Options, Plan, SpecError, UNSUPPORTED_DOCS, conda};
use crate::repo::tree::{EntryKind, FileTree, kind_of, normalize, read_text};

static APT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9+.-]+$").expect("valid regex"));
static PY_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+(\.[0-9]+){0,2}$").expect("valid regex"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$").expect("valid regex")
});
/// A Python pin in `environment.yml` as repo2docker reads it: `python=X[.Y]` or
/// `python==X[.Y]` (not `>=`), a string item of the top-level `dependencies`.
static CONDA_PY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^\s*-\s*["']?python\s*=+\s*([0-9][0-9.]*)"#).expect("valid regex")
});
/// The Python of a lock: a `python-X.Y.Z-…` package file in its URLs.
static LOCKED_PY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"/python-([0-9]+\.[0-9]+)\.[0-9]+[^/]*\.(?:conda|tar\.bz2)$").expect("valid regex")
});
/// The conda files of a spec folder in the order nbforge looks for them: locks first, then
/// the environment file (repo2docker reads only `environment.yml`).
const CONDA_FILES: [&str; 6] = [
    conda::PIXI_LOCK,
    conda::CONDA_LOCK,
    conda::EXPLICIT_LOCK,
    conda::ENVIRONMENT_YML,
    conda::ENVIRONMENT_YAML,
    conda::PIXI_MANIFEST,
];

/// The conda file that selects the `conda` kind, if the spec folder has one.
fn conda_input(c: &Ctx<'_>) -> Result<Option<&'static str>, SpecError> {
    for name in CONDA_FILES {
        if c.has(name)? {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// `python_version` / `python_full_version` in a `Pipfile.lock` or `Pipfile`, as repo2docker
/// reads them.
static PIPFILE_PY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"["']?python_(?:full_)?version["']?\s*[:=]+\s*["']?([0-9][0-9a-z.]*)"#)
        .expect("valid regex")
});

/// Checks one Debian package name (`^[a-z0-9][a-z0-9+.-]+$`).
pub fn validate_apt_name(name: &str) -> bool {
    APT_NAME.is_match(name)
}

/// Checks a repository path that will appear in a Dockerfile `COPY` line: no quotes,
/// backslashes, `$` (Docker expands it), glob characters or control characters.
pub(super) fn copyable(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('-')
        && !path
            .chars()
            .any(|c| matches!(c, '"' | '\\' | '$' | '*' | '?' | '[' | ']') || c.is_control())
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

struct Ctx<'a> {
    src: &'a dyn FileTree,
    opts: &'a Options,
    dir: String,
    errors: Vec<Diagnostic>,
    warnings: Vec<String>,
    files: Vec<String>,
}

impl Ctx<'_> {
    fn path(&self, name: &str) -> String {
        join(&self.dir, name)
    }

    fn is_file(&self, path: &str) -> Result<bool, SpecError> {
        Ok(kind_of(self.src, path)? == Some(EntryKind::File))
    }

    fn has(&self, name: &str) -> Result<bool, SpecError> {
        self.is_file(&self.path(name))
    }

    /// Reads a spec file's text, records it as used.
    fn text(&mut self, path: &str) -> Result<Option<String>, SpecError> {
        let t = read_text(self.src, path, self.opts.max_file_size)?;
        if t.is_some() && !self.files.iter().any(|f| f == path) {
            self.files.push(path.to_owned());
        }
        Ok(t)
    }

    fn use_file(&mut self, path: &str) -> Result<Option<String>, SpecError> {
        if self.is_file(path)? {
            // Read it so size, UTF-8 and symlink rules apply to every spec file.
            self.text(path)?;
            Ok(Some(path.to_owned()))
        } else {
            Ok(None)
        }
    }
}

/// `runtime.txt` parsed as repo2docker does: `name-version`, `name-version-YYYY-MM-DD` or
/// `name-YYYY-MM-DD` (the text split at `-` into 2, 5 or 4 non-empty parts).
struct Runtime {
    name: String,
    version: Option<String>,
    date: Option<String>,
}

fn parse_runtime(path: &str, text: &str, errors: &mut Vec<Diagnostic>) -> Option<Runtime> {
    let t = text.trim();
    let parts: Vec<&str> = t.split('-').collect();
    if !matches!(parts.len(), 2 | 4 | 5) || parts.iter().any(|p| p.is_empty()) {
        errors.push(Diagnostic::at(
            path,
            1,
            1,
            format!(
                "{t:?} is not a runtime like python-3.11, r-4.2, r-4.2-2023-06-01 or r-2023-06-01"
            ),
        ));
        return None;
    }
    let date = (parts.len() >= 4).then(|| parts[parts.len() - 3..].join("-"));
    if let Some(d) = &date
        && !DATE.is_match(d)
    {
        errors.push(Diagnostic::at(
            path,
            1,
            1,
            format!("{d:?} in {t:?} is not a date like 2023-06-01"),
        ));
        return None;
    }
    let version = matches!(parts.len(), 2 | 5).then(|| parts[1].to_owned());
    if let Some(v) = &version
        && matches!(parts[0], "python" | "r")
        && !PY_VERSION.is_match(v)
    {
        let (what, example, column) = if parts[0] == "python" {
            ("a Python", "3.11", 8)
        } else {
            ("an R", "4.2", 1)
        };
        errors.push(Diagnostic::at(
            path,
            1,
            column,
            format!("{v:?} is not {what} version like {example}"),
        ));
        return None;
    }
    Some(Runtime {
        name: parts[0].to_owned(),
        version,
        date,
    })
}

/// A Python version as repo2docker resolves it: a bare major is its default minor (`2` is
/// 2.7, `3` the default Python), anything longer is cut to major.minor.
fn resolve_python(version: &str, opts: &Options) -> Result<String, String> {
    let parts: Vec<&str> = version.split('.').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => Err(format!("{version:?} is not a Python version")),
        ["2"] => Ok("2.7".into()),
        ["3"] => Ok(opts.default_python.clone()),
        [major] => Err(format!(
            "Python {major} is not a version repo2docker knows (python-2, python-3 or python-X.Y)"
        )),
        [major, minor, ..] => Ok(format!("{major}.{minor}")),
    }
}

pub(super) fn detect(src: &dyn FileTree, opts: &Options) -> Result<Analysis, SpecError> {
    let binder = kind_of(src, "binder")? == Some(EntryKind::Dir);
    let dot = kind_of(src, ".binder")? == Some(EntryKind::Dir);
    let dir = match (binder, dot) {
        (true, true) => {
            return Err(SpecError::Invalid(vec![Diagnostic::file(
                "",
                "both a binder/ and a .binder/ folder exist; keep only one (repo2docker refuses this too)",
            )]));
        }
        (true, false) => "binder",
        (false, true) => ".binder",
        (false, false) => "",
    };
    let mut c = Ctx {
        src,
        opts,
        dir: dir.to_owned(),
        errors: Vec::new(),
        warnings: Vec::new(),
        files: Vec::new(),
    };
    let in_root = dir.is_empty();
    let mut plan = Plan::default();

    // runtime.txt: `python-X.Y`, `r-VERSION`, `r-[VERSION-]YYYY-MM-DD`, or another runtime.
    let runtime_path = c.path("runtime.txt");
    let runtime_text = read_text(src, &runtime_path, opts.max_file_size)?;
    let runtime = runtime_text
        .as_deref()
        .and_then(|t| parse_runtime(&runtime_path, t, &mut c.errors));
    let runtime_name = runtime.as_ref().map(|r| r.name.as_str());

    let kind = if c.has("Dockerfile")? {
        Kind::Dockerfile
    } else if c.has("Project.toml")? || c.has("JuliaProject.toml")? {
        Kind::Julia
    } else if c.has("REQUIRE")? {
        Kind::JuliaRequire
    } else if c.has("default.nix")? {
        Kind::Nix
    } else if runtime_name == Some("r")
        || c.has("install.R")?
        || (in_root && c.is_file("DESCRIPTION")?)
    {
        Kind::R
    } else if conda_input(&c)?.is_some() {
        Kind::Conda
    } else if c.has("Pipfile")? || c.has("Pipfile.lock")? {
        Kind::Pipfile
    } else {
        Kind::Python
    };

    let mut python_version = None;
    let mut conda_env = None;
    let mut runtime_used = None;
    let mut unsupported = None;
    let mut r_version = None;
    let mut r_snapshot = None;
    // The file that names the Python minor version (`python-3` names none: the default).
    let mut python_asked_in: Option<String> = None;
    let runtime_names_minor = runtime
        .as_ref()
        .and_then(|r| r.version.as_deref())
        .is_some_and(names_minor);
    // The Python of runtime.txt for the kinds that read it (repo2docker's Python pack and the
    // packs built on it): `python-X.Y`, else the default.
    let runtime_python = |c: &mut Ctx, used: &mut Option<String>| -> Option<String> {
        let rt = runtime.as_ref()?;
        if rt.name != "python" {
            if rt.name != "r" {
                c.warnings.push(format!(
                    "{runtime_path}: {:?} is not a runtime nbforge knows (python-X.Y or r-…); \
                     ignored",
                    runtime_text.as_deref().unwrap_or("").trim()
                ));
            }
            return None;
        }
        let v = rt.version.as_deref()?;
        match resolve_python(v, opts) {
            Ok(v) => {
                c.files.push(runtime_path.clone());
                *used = runtime_text.as_deref().map(|t| t.trim().to_owned());
                Some(v)
            }
            Err(e) => {
                c.errors.push(Diagnostic::at(&runtime_path, 1, 8, e));
                None
            }
        }
    };

    match kind {
        Kind::Dockerfile => {
            let p = c.path("Dockerfile");
            let text = c.text(&p)?.unwrap_or_default();
            plan.dockerfile = Some((p, text));
            for other in ["apt.txt", "postBuild", "start"] {
                if c.has(other)? {
                    c.warnings.push(format!(
                        "{} is ignored next to a Dockerfile (as in repo2docker)",
                        c.path(other)
                    ));
                }
            }
        }
        Kind::Julia | Kind::JuliaRequire | Kind::Nix => {
            let names: &[&str] = match kind {
                Kind::Julia => &["Project.toml", "JuliaProject.toml", "Manifest.toml"],
                Kind::JuliaRequire => &["REQUIRE"],
                _ => &["default.nix"],
            };
            for n in names {
                let p = c.path(n);
                c.use_file(&p)?;
            }
            if kind != Kind::Nix {
                // repo2docker's Julia packs are built on its Python pack.
                python_version = Some(
                    runtime_python(&mut c, &mut runtime_used)
                        .unwrap_or_else(|| opts.default_python.clone()),
                );
            }
            let selector = c.files.first().cloned().unwrap_or_default();
            unsupported = Some(match kind {
                Kind::Nix => unsupported_message(
                    &selector,
                    kind,
                    "use requirements.txt (with apt.txt) or a Dockerfile instead",
                ),
                _ => unsupported_message(
                    &selector,
                    kind,
                    "its package registry is not reachable from the builders; use a Dockerfile \
                     based on an image that has Julia instead",
                ),
            });
        }
        Kind::R => {
            if let Some(rt) = runtime.as_ref().filter(|r| r.name == "r") {
                c.files.push(runtime_path.clone());
                runtime_used = runtime_text.as_deref().map(|t| t.trim().to_owned());
                r_version = rt.version.clone();
                r_snapshot = rt.date.clone();
            }
            plan.install_r = c.use_file(&c.path("install.R"))?;
            if let Some(path) = plan.install_r.clone() {
                let text = c.text(&path)?.unwrap_or_default();
                plan.r_packages = super::r::install_r_packages(&text);
            }
            if in_root && c.is_file("DESCRIPTION")? {
                let text = c.text("DESCRIPTION")?.unwrap_or_default();
                for p in super::r::description_packages(&text) {
                    if !plan.r_packages.iter().any(|q| q.name == p.name) {
                        plan.r_packages.push(p);
                    }
                }
                plan.description = true;
                for (name, _) in src.list_dir("")? {
                    if matches!(
                        name.as_str(),
                        "NAMESPACE" | "R" | "src" | "inst" | "data" | "man" | "vignettes"
                    ) {
                        plan.r_roots.push(name);
                    }
                }
            }
            if let Some(note) = r_difference(r_version.as_deref(), r_snapshot.as_deref(), opts) {
                c.warnings.push(format!("{runtime_path}: {note}"));
            }
            // repo2docker's R pack is built on its Python pack: the default Python, or
            // runtime.txt's where `install.R` selected R next to a `python-` runtime.
            let rt = runtime_python(&mut c, &mut runtime_used);
            if rt.is_some() && runtime_names_minor {
                python_asked_in = Some(runtime_path.clone());
            }
            python_version = Some(rt.unwrap_or_else(|| opts.default_python.clone()));
            python_requirements(&mut c, &mut plan)?;
        }
        Kind::Conda => {
            let name = conda_input(&c)?.unwrap_or(conda::ENVIRONMENT_YML);
            let p = c.path(name);
            c.use_file(&p)?;
            let text = c.text(&p)?.unwrap_or_default();
            let env = match name {
                conda::PIXI_LOCK => {
                    let manifest = c.use_file(&c.path(conda::PIXI_MANIFEST))?;
                    conda::parse_pixi_lock(&p, manifest.as_deref(), &text, &mut c.errors)
                }
                conda::CONDA_LOCK => conda::parse_conda_lock(&p, &text, &mut c.errors),
                conda::EXPLICIT_LOCK => conda::parse_explicit(&p, &text, &mut c.errors),
                conda::PIXI_MANIFEST => {
                    unsupported = Some(unsupported_message(
                        &p,
                        kind,
                        "a pixi.toml is installed from its pixi.lock; run `pixi lock` and \
                         commit pixi.lock next to it",
                    ));
                    conda::parse_explicit(&p, "@EXPLICIT\n", &mut Vec::new())
                }
                _ => conda::parse_environment_file(&p, &text, &mut c.errors),
            };
            // The other conda files of the folder are not read: the first one found wins.
            for other in CONDA_FILES {
                if other != name && other != conda::PIXI_MANIFEST && c.has(other)? {
                    c.warnings.push(format!(
                        "{} is not read: {p} describes the conda environment",
                        c.path(other)
                    ));
                }
            }
            let pinned = if env.input == conda::Input::EnvironmentFile {
                text.lines()
                    .find_map(|l| CONDA_PY.captures(l).map(|m| m[1].to_owned()))
            } else {
                env.locked
                    .iter()
                    .find_map(|u| LOCKED_PY.captures(u).map(|m| m[1].to_owned()))
            };
            if pinned.is_some() {
                python_asked_in = Some(p.clone());
            }
            python_version = Some(match pinned {
                Some(v) => resolve_python(&v, opts).unwrap_or_else(|e| {
                    c.errors.push(Diagnostic::file(&p, e));
                    String::new()
                }),
                None => opts.default_python.clone(),
            });
            if runtime_text.is_some() {
                c.warnings.push(format!(
                    "{runtime_path} is ignored next to {name} (as in repo2docker); \
                     name python in {name}"
                ));
            }
            if c.has("requirements.txt")? {
                c.warnings.push(format!(
                    "{} is ignored next to {name} (as in repo2docker); list pip \
                     packages under `- pip:` in {name}",
                    c.path("requirements.txt")
                ));
            }
            conda_env = Some(env);
        }
        Kind::Pipfile => {
            plan.pipfile = c.use_file(&c.path("Pipfile"))?;
            plan.pipfile_lock = c.use_file(&c.path("Pipfile.lock"))?;
            // repo2docker: the lock file's version, else the Pipfile's, else the default;
            // runtime.txt is not read.
            let mut v = None;
            let mut v_in = None;
            if let Some(lock) = plan.pipfile_lock.clone() {
                let text = c.text(&lock)?.unwrap_or_default();
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&text) {
                    c.errors.push(Diagnostic::at(
                        &lock,
                        e.line(),
                        e.column(),
                        format!("not valid JSON: {e}"),
                    ));
                }
                v = PIPFILE_PY.captures(&text).map(|m| m[1].to_owned());
                v_in = Some(lock);
            }
            if let Some(pf) = plan.pipfile.clone() {
                let text = c.text(&pf)?.unwrap_or_default();
                pipfile(&mut c, &mut plan, &pf, &text);
                if v.is_none() {
                    v = PIPFILE_PY.captures(&text).map(|m| m[1].to_owned());
                    v_in = Some(pf);
                }
            }
            if c.has("requirements.txt")? {
                c.warnings.push(format!(
                    "{} is ignored next to a Pipfile (as in repo2docker)",
                    c.path("requirements.txt")
                ));
            }
            if runtime.is_some() {
                c.warnings.push(format!(
                    "{runtime_path} is ignored next to a Pipfile (as in repo2docker); set \
                     python_version under [requires] in the Pipfile"
                ));
            }
            python_version = Some(match v {
                Some(v) => {
                    if names_minor(&v) {
                        python_asked_in = v_in;
                    }
                    resolve_python(&v, opts).unwrap_or_else(|_| opts.default_python.clone())
                }
                None => opts.default_python.clone(),
            });
        }
        Kind::Python => {
            let rt = runtime_python(&mut c, &mut runtime_used);
            if rt.is_some() && runtime_names_minor {
                python_asked_in = Some(runtime_path.clone());
            }
            python_version = Some(rt.unwrap_or_else(|| opts.default_python.clone()));
            python_requirements(&mut c, &mut plan)?;
            if in_root && (c.is_file("setup.py")? || c.is_file("pyproject.toml")?) {
                plan.install_root = true;
                add_package(&mut c, &mut plan, "", "setup.py", 0, 0)?;
            }
        }
    }

    // The Python the image gets: the base image of the version asked for (see python.rs).
    let (image_python, base_image) = match (kind, &python_version) {
        (Kind::Python | Kind::Pipfile | Kind::R, Some(want)) => {
            let choice = super::python::choose(kind, want, python_asked_in.as_deref(), opts);
            c.warnings.extend(choice.warning);
            if unsupported.is_none() {
                unsupported = choice.unavailable;
            }
            (Some(choice.image_python), Some(choice.base_image))
        }
        // Conda environments get Python from their channels: the pinned version, or what
        // the solve picks.
        (Kind::Conda, _) => (
            conda_env
                .as_ref()
                .filter(|_| python_asked_in.is_some())
                .and(python_version.clone()),
            Some(opts.base_image.clone()),
        ),
        _ => (None, None),
    };
    let image_r = (kind == Kind::R).then(|| opts.base_r.clone());
    // apt.txt, postBuild, start: every kind but Dockerfile.
    let mut apt_packages = Vec::new();
    if kind != Kind::Dockerfile {
        let apt = c.path("apt.txt");
        if let Some(text) = c.text(&apt)? {
            apt_packages = parse_apt(&apt, &text, &mut c.errors);
        }
        plan.post_build = c.use_file(&c.path("postBuild"))?;
        plan.start = c.use_file(&c.path("start"))?;
        for p in [&plan.post_build, &plan.start].into_iter().flatten() {
            if !copyable(p) {
                c.errors
                    .push(Diagnostic::file(p, "path cannot be copied into an image"));
            }
        }
    }

    // launch.toml at the repository root.
    let mut launch_cfg = None;
    if let Some(text) = read_text(src, LAUNCH_FILE, opts.max_file_size)? {
        match launch::parse(&text) {
            Ok(cfg) => launch_cfg = Some(cfg),
            Err(d) => c.errors.extend(d),
        }
    }

    if !c.errors.is_empty() {
        return Err(SpecError::Invalid(c.errors));
    }
    Ok(Analysis {
        kind,
        spec_dir: (!dir.is_empty()).then(|| dir.to_owned()),
        python_version,
        image_python,
        base_image,
        runtime: runtime_used,
        r_version,
        r_snapshot,
        image_r,
        files: c.files,
        inputs: Vec::new(),
        whole_tree: false,
        environment_key: String::new(),
        warnings: c.warnings,
        unsupported,
        apt_packages,
        launch: launch_cfg,
        conda: conda_env,
        plan,
    })
}

/// The status and analysis text for a kind nbforge does not build: the kind, the file that
/// selected it, the documentation section, and what to do instead (last: a commit status
/// keeps 250 characters).
fn unsupported_message(selector: &str, kind: Kind, advice: &str) -> String {
    format!(
        "{selector} selects a {} environment (kind `{kind}`), which nbforge cannot build yet \
         (see {UNSUPPORTED_DOCS}): {advice}",
        kind.title()
    )
}

/// What differs between the R that `runtime.txt` asks for and the image's (Debian's), if
/// anything: the version (major.minor) and the CRAN snapshot date, which is never used.
pub(super) fn r_difference(
    version: Option<&str>,
    date: Option<&str>,
    opts: &Options,
) -> Option<String> {
    let have = &opts.base_r;
    let other_version = version.filter(|v| !same_minor(v, have));
    match (other_version, date) {
        (None, None) => None,
        (Some(v), None) => Some(format!(
            "R {v} was asked for, but the image has Debian's R {have}; the environment is \
             built with R {have}"
        )),
        (None, Some(d)) => Some(format!(
            "the CRAN snapshot of {d} is not used: the image has Debian's R {have}, with R \
             packages from Debian and from {}",
            opts.cran_mirror
        )),
        (Some(v), Some(d)) => Some(format!(
            "R {v} and the CRAN snapshot of {d} were asked for, but the image has Debian's R \
             {have}, with R packages from Debian and from {}; the environment is built with R \
             {have}",
            opts.cran_mirror
        )),
    }
}

/// True when a Python version names a minor version (`3` alone means the default; `2` is 2.7).
fn names_minor(v: &str) -> bool {
    v.trim().trim_end_matches('.') != "3"
}

fn same_minor(a: &str, b: &str) -> bool {
    let mm = |s: &str| s.split('.').take(2).collect::<Vec<_>>().join(".");
    let (a, b) = (mm(a), mm(b));
    // A bare major ("3") matches any minor of that major.
    a == b || (!a.contains('.') && b.starts_with(&format!("{a}.")))
}

fn parse_apt(path: &str, text: &str, errors: &mut Vec<Diagnostic>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        let mut offset = 0;
        for word in content.split_whitespace() {
            let col_byte = content[offset..]
                .find(word)
                .map(|p| p + offset)
                .unwrap_or(offset);
            offset = col_byte + word.len();
            if validate_apt_name(word) {
                if !out.iter().any(|w| w == word) {
                    out.push(word.to_owned());
                }
            } else {
                let column = content[..col_byte].chars().count() + 1;
                let shown: String = word.chars().take(60).collect();
                errors.push(Diagnostic::at(
                    path,
                    i + 1,
                    column,
                    format!(
                        "{shown:?} is not a Debian package name (lowercase letters, digits, \
                         '+', '-', '.'; at least two characters)"
                    ),
                ));
            }
        }
    }
    out
}

/// Reads the requirement file of the Python pack (`requirements.txt` in the spec folder),
/// following `-r`/`-c` includes and noting local packages (`.`, `-e .`, `./pkg`).
fn python_requirements(c: &mut Ctx, plan: &mut Plan) -> Result<(), SpecError> {
    let main = c.path("requirements.txt");
    if !c.is_file(&main)? {
        return Ok(());
    }
    plan.requirements = Some(main.clone());
    let mut seen = BTreeSet::new();
    let mut queue = vec![main];
    while let Some(file) = queue.pop() {
        if !seen.insert(file.clone()) {
            continue;
        }
        if seen.len() > 50 {
            c.errors.push(Diagnostic::file(
                &file,
                "more than 50 included requirement files",
            ));
            break;
        }
        let Some(text) = c.text(&file)? else {
            continue;
        };
        if !copyable(&file) {
            c.errors.push(Diagnostic::file(
                &file,
                "path cannot be copied into an image",
            ));
        }
        plan.requirement_files.push(file.clone());
        let base = file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            let col = raw.len() - raw.trim_start().len() + 1;
            let (opt, arg) = split_option(line);
            match opt {
                Some("-r" | "--requirement" | "-c" | "--constraint") => {
                    let Some(arg) = arg else { continue };
                    if arg.contains("://") {
                        continue;
                    }
                    match normalize(&join(base, arg)).filter(|_| check_repo_path(arg).is_ok()) {
                        Some(p) if c.is_file(&p)? => queue.push(p),
                        Some(_) => c.errors.push(Diagnostic::at(
                            &file,
                            i + 1,
                            col,
                            format!("{arg:?}: included file not found in the repository"),
                        )),
                        None => c.errors.push(Diagnostic::at(
                            &file,
                            i + 1,
                            col,
                            format!("{arg:?} leaves the repository"),
                        )),
                    }
                }
                Some("-e" | "--editable") => {
                    if let Some(arg) = arg
                        && is_local(arg)
                    {
                        add_package(c, plan, arg, &file, i + 1, col)?;
                    }
                }
                Some(_) => {}
                None if is_local(line) => add_package(c, plan, line, &file, i + 1, col)?,
                None => {}
            }
        }
    }
    Ok(())
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Splits `-r file`, `-rfile`, `--requirement=file` into option and argument.
fn split_option(line: &str) -> (Option<&str>, Option<&str>) {
    if !line.starts_with('-') {
        return (None, None);
    }
    if let Some((o, a)) = line.split_once('=')
        && o.starts_with("--")
        && !o.contains(' ')
    {
        return (Some(o), Some(a.trim()));
    }
    let (o, a) = match line.split_once(char::is_whitespace) {
        Some((o, a)) => (o, Some(a.trim())),
        None => (line, None),
    };
    for short in ["-r", "-c", "-e"] {
        if o.len() > 2 && o.starts_with(short) && !o.starts_with("--") {
            return (Some(short), Some(&o[2..]));
        }
    }
    (Some(o), a.filter(|a| !a.is_empty()))
}

fn is_local(arg: &str) -> bool {
    let arg = arg.split(['[', ';', ' ']).next().unwrap_or("");
    arg == "."
        || arg == ".."
        || arg.starts_with("./")
        || arg.starts_with("../")
        || arg.starts_with('/')
        || arg.starts_with("file:")
}

/// Records a local package (a folder with setup.py / pyproject.toml) as installed from the
/// repository; its package tree becomes part of the environment inputs.
fn add_package(
    c: &mut Ctx,
    plan: &mut Plan,
    arg: &str,
    file: &str,
    line: usize,
    col: usize,
) -> Result<(), SpecError> {
    let spec = arg.split(['[', ';', ' ']).next().unwrap_or("");
    let spec = spec.strip_prefix("file:").unwrap_or(spec);
    let diag = |m: String| {
        if line == 0 {
            Diagnostic::file(file, m)
        } else {
            Diagnostic::at(file, line, col, m)
        }
    };
    // pip resolves local paths against the working directory: the repository root.
    let dir = match normalize(spec) {
        Some(d) if !spec.starts_with('/') => d,
        _ => {
            c.errors.push(diag(format!(
                "{arg:?}: local packages must be inside the repository"
            )));
            return Ok(());
        }
    };
    let meta = ["setup.py", "setup.cfg", "pyproject.toml"];
    let mut found = false;
    for m in meta {
        found |= c.is_file(&join(&dir, m))?;
    }
    if !found {
        c.errors.push(diag(format!(
            "{arg:?}: no setup.py, setup.cfg or pyproject.toml in {}",
            if dir.is_empty() {
                "the repository root"
            } else {
                &dir
            }
        )));
        return Ok(());
    }
    for (name, kind) in c.src.list_dir(&dir)? {
        let path = join(&dir, &name);
        let take = match kind {
            EntryKind::Dir => name != "binder" && name != ".binder" && holds_package(c, &path)?,
            EntryKind::File | EntryKind::Symlink => {
                meta.contains(&name.as_str())
                    || name == "MANIFEST.in"
                    || name.starts_with("README")
                    || name.starts_with("LICENSE")
                    || name.starts_with("COPYING")
                    || name.ends_with(".py")
                    || (name.starts_with("requirements") && name.ends_with(".txt"))
            }
            EntryKind::Other | EntryKind::NotUtf8Name => false,
        };
        if take {
            if !copyable(&path) {
                c.errors.push(Diagnostic::file(
                    &path,
                    "path cannot be copied into an image",
                ));
            } else if !plan.package_roots.contains(&path) {
                plan.package_roots.push(path);
            }
        }
    }
    for m in meta {
        let p = join(&dir, m);
        if c.is_file(&p)? {
            c.text(&p)?;
        }
    }
    Ok(())
}

/// True for a package folder (`__init__.py`) or a layout folder such as `src/` or `lib/`
/// holding package folders.
fn holds_package(c: &Ctx, dir: &str) -> Result<bool, SpecError> {
    if c.is_file(&join(dir, "__init__.py"))? {
        return Ok(true);
    }
    for (name, kind) in c.src.list_dir(dir)? {
        if kind == EntryKind::Dir && c.is_file(&join(&join(dir, &name), "__init__.py"))? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn pipfile(c: &mut Ctx, plan: &mut Plan, path: &str, text: &str) {
    let value: toml::Table = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (l, col) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
            c.errors
                .push(Diagnostic::at(path, l, col, e.message().trim().to_owned()));
            return;
        }
    };
    for section in ["packages", "dev-packages"] {
        let Some(t) = value.get(section).and_then(|s| s.as_table()) else {
            continue;
        };
        for (name, spec) in t {
            if let Some(p) = spec.get("path").and_then(|p| p.as_str()) {
                // Pipfile paths are relative to the Pipfile's folder.
                let base = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                let arg = if p.starts_with('/') {
                    p.to_owned()
                } else {
                    format!("./{}", join(base, p))
                };
                let before = c.errors.len();
                if let Err(e) = add_package(c, plan, &arg, path, 0, 0) {
                    c.errors.push(Diagnostic::file(path, e.to_string()));
                }
                for d in &mut c.errors[before..] {
                    d.message = format!("[{section}] {name}: {}", d.message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::testing::*;
    use crate::spec::{self, Kind, Options};

    use super::*;

    #[test]
    fn requirement_options() {
        assert_eq!(split_option("-r base.txt"), (Some("-r"), Some("base.txt")));
        assert_eq!(split_option("-rbase.txt"), (Some("-r"), Some("base.txt")));
        assert_eq!(
            split_option("--requirement=base.txt"),
            (Some("--requirement"), Some("base.txt"))
        );
        assert_eq!(split_option("-e ."), (Some("-e"), Some(".")));
        assert_eq!(split_option("numpy>=1"), (None, None));
        assert_eq!(
            split_option("--index-url https://x"),
            (Some("--index-url"), Some("https://x"))
        );
    }

    #[test]
    fn local_requirements() {
        for l in [".", "./pkg", "./pkg[extra]", "../x", "/abs", "file:./x"] {
            assert!(is_local(l), "{l}");
        }
        for r in ["numpy", "git+https://x/y.git", "pkg @ https://x/y.whl"] {
            assert!(!is_local(r), "{r}");
        }
        assert_eq!(strip_comment("numpy  # fast"), "numpy ");
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(strip_comment("https://x/#egg=y"), "https://x/#egg=y");
    }

    #[test]
    fn copyable_paths() {
        assert!(copyable("lib/growth"));
        for bad in ["a\"b", "a$b", "a*b", "-x", "a\nb", "a\\b", ""] {
            assert!(!copyable(bad), "{bad:?}");
        }
    }

    #[test]
    fn spec_precedence_every_pair() {
        for (i, (winner, wf, wc)) in KINDS.iter().enumerate() {
            for (_, lf, lc) in &KINDS[i + 1..] {
                for dir in ["", "binder/"] {
                    let wp = format!("{dir}{wf}");
                    let lp = format!("{dir}{lf}");
                    let a = ok(&[(&wp, wc), (&lp, lc)]);
                    assert_eq!(a.kind, *winner, "{wp} + {lp}");
                    assert!(a.files.contains(&wp), "{wp} + {lp}: {:?}", a.files);
                }
            }
        }
    }

    #[test]
    fn spec_other_selectors() {
        assert_eq!(ok(&[("JuliaProject.toml", "")]).kind, Kind::Julia);
        assert_eq!(
            ok(&[("Project.toml", ""), ("REQUIRE", "")]).kind,
            Kind::Julia
        );
        assert_eq!(
            ok(&[("Pipfile.lock", "{}"), ("requirements.txt", "x\n")]).kind,
            Kind::Pipfile
        );
        // R from runtime.txt or DESCRIPTION beats conda and Python.
        let r = ok(&[
            ("runtime.txt", "r-4.1-2022-01-01\n"),
            ("environment.yml", "dependencies: []\n"),
        ]);
        assert_eq!(r.kind, Kind::R);
        assert!(
            r.warnings.iter().any(|w| w.contains("2022-01-01")),
            "{:?}",
            r.warnings
        );
        assert_eq!(ok(&[("runtime.txt", "r-2022-01-01\n")]).kind, Kind::R);
        let d = ok(&[
            ("DESCRIPTION", "Package: x\n"),
            ("requirements.txt", "numpy\n"),
        ]);
        assert_eq!(d.kind, Kind::R);
        assert!(
            d.files.contains(&"requirements.txt".to_owned()),
            "R installs requirements.txt too"
        );
        // DESCRIPTION only counts at the root when there is no binder folder.
        assert_eq!(
            ok(&[("DESCRIPTION", "x"), ("binder/requirements.txt", "numpy\n")]).kind,
            Kind::Python
        );
        // Nothing at all: Python with the default version.
        let empty = ok(&[("README.md", "hi")]);
        assert_eq!(empty.kind, Kind::Python);
        assert_eq!(empty.python_version.as_deref(), Some("3.10"));
        assert!(empty.files.is_empty());
        // setup.py / pyproject.toml alone select Python and install the repository.
        for f in ["setup.py", "pyproject.toml"] {
            let a = ok(&[(f, ""), ("mypkg/__init__.py", "")]);
            assert_eq!(a.kind, Kind::Python);
            assert!(
                a.inputs.contains(&"mypkg/__init__.py".to_owned()),
                "{:?}",
                a.inputs
            );
        }
    }

    #[test]
    fn spec_runtime_txt() {
        let a = ok(&[
            ("runtime.txt", "python-3.11\n"),
            ("requirements.txt", "numpy\n"),
        ]);
        assert_eq!(a.python_version.as_deref(), Some("3.11"));
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        // A version no base provides is reported, and not built.
        let old = ok(&[("runtime.txt", "python-3.8\n")]);
        assert_eq!(old.python_version.as_deref(), Some("3.8"));
        assert!(
            old.unsupported
                .as_deref()
                .is_some_and(|u| u.contains("Python 3.8") && u.contains("3.9, 3.11, 3.13")),
            "{:?}",
            old.unsupported
        );
        // Ignored next to environment.yml; the version comes from environment.yml.
        let c = ok(&[
            ("runtime.txt", "python-3.8\n"),
            ("environment.yml", "dependencies:\n  - python=3.9\n"),
        ]);
        assert_eq!(c.kind, Kind::Conda);
        assert_eq!(c.python_version.as_deref(), Some("3.9"));
        assert!(!c.files.contains(&"runtime.txt".to_owned()));
        assert!(
            c.warnings
                .iter()
                .any(|w| w.contains("runtime.txt is ignored")),
            "{:?}",
            c.warnings
        );
        // Pipfile's [requires] wins over runtime.txt.
        let p = ok(&[
            ("Pipfile", "[requires]\npython_version = \"3.11\"\n"),
            ("runtime.txt", "python-3.9\n"),
        ]);
        assert_eq!(p.python_version.as_deref(), Some("3.11"));
        let bad = err_text(&[("runtime.txt", "python-three\n")]);
        assert!(bad.starts_with("runtime.txt:1:8:"), "{bad}");
        let bad_r = err_text(&[("runtime.txt", "r-latest\n")]);
        assert!(bad_r.starts_with("runtime.txt:1:1:"), "{bad_r}");
        // Python version is configurable.
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("requirements.txt", "x\n")]);
        let opts = Options {
            default_python: "3.12".into(),
            ..Options::default()
        };
        assert_eq!(
            analyze_at(tmp.path(), &opts)
                .unwrap()
                .python_version
                .as_deref(),
            Some("3.12")
        );
    }

    #[test]
    fn spec_binder_folders() {
        // A binder folder hides root-level spec files.
        let a = ok(&[
            ("Dockerfile", "FROM x\n"),
            ("binder/requirements.txt", "numpy\n"),
        ]);
        assert_eq!(a.kind, Kind::Python);
        assert_eq!(a.spec_dir.as_deref(), Some("binder"));
        let b = ok(&[
            ("requirements.txt", "numpy\n"),
            (".binder/environment.yml", "dependencies: []\n"),
        ]);
        assert_eq!(b.kind, Kind::Conda);
        assert_eq!(b.spec_dir.as_deref(), Some(".binder"));
        // Root apt.txt is hidden as well; setup.py at the root is not installed.
        let c = ok(&[
            ("apt.txt", "curl\n"),
            ("setup.py", ""),
            ("binder/requirements.txt", "x\n"),
        ]);
        assert!(c.apt_packages.is_empty());
        assert!(!c.inputs.contains(&"setup.py".to_owned()));
        let both = err_text(&[
            ("binder/requirements.txt", "x\n"),
            (".binder/requirements.txt", "y\n"),
        ]);
        assert!(
            both.contains("binder/") && both.contains(".binder/"),
            "{both}"
        );
    }

    #[test]
    fn spec_unsupported_kinds_say_so() {
        for (files, word) in [
            (vec![("default.nix", "{}")], "Nix"),
            (vec![("binder/Project.toml", "")], "Julia"),
            (vec![("REQUIRE", "")], "Julia"),
            (vec![("pixi.toml", "[workspace]\n")], "pixi.lock"),
        ] {
            let a = ok(&files);
            let msg = a.unsupported.clone().unwrap_or_default();
            assert!(msg.contains(word), "{msg}");
            match a.dockerfile(&Options::default()) {
                Err(SpecError::Unsupported { kind, message }) => {
                    assert_eq!(kind, a.kind);
                    assert!(message.contains(word));
                }
                other => panic!("expected Unsupported, got {other:?}"),
            }
        }
    }

    #[test]
    fn spec_hostile_apt_names() {
        let e = err_text(&[("apt.txt", "curl\ncurl; rm -rf /\n$(id)\n`id`\n")]);
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("apt.txt:2:1:") && l.contains("curl;")),
            "{e}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("apt.txt:2:10:") && l.contains("-rf")),
            "{e}"
        );
        assert!(lines.iter().any(|l| l.starts_with("apt.txt:3:1:")), "{e}");
        assert!(lines.iter().any(|l| l.starts_with("apt.txt:4:1:")), "{e}");
        for bad in ["Curl", "-y", "a", "pkg=1.0", "pkg:amd64", "x&&y"] {
            assert!(!spec::validate_apt_name(bad), "{bad}");
        }
        let a = ok(&[(
            "apt.txt",
            "# tools\nncbi-blast+ samtools # aligners\nlibc6.1\n",
        )]);
        assert_eq!(a.apt_packages, ["ncbi-blast+", "samtools", "libc6.1"]);
    }

    #[test]
    fn spec_hostile_paths_and_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        std::fs::write(&outside, "secret\n").unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("binder")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("binder/requirements.txt")).unwrap();
        let e = analyze_at(&root, &Options::default()).unwrap_err();
        assert!(e.is_user_error());
        assert!(
            e.to_string().contains("binder/requirements.txt") && e.to_string().contains("outside"),
            "{e}"
        );
        std::fs::remove_file(root.join("binder/requirements.txt")).unwrap();
        std::os::unix::fs::symlink("../../outside.txt", root.join("binder/requirements.txt"))
            .unwrap();
        let e = analyze_at(&root, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("outside the repository"), "{e}");
        // A symlink inside the repository is fine, and the folder can be a symlink too.
        std::fs::remove_file(root.join("binder/requirements.txt")).unwrap();
        std::fs::remove_dir(root.join("binder")).unwrap();
        write(&root, &[("env/requirements.txt", "numpy\n")]);
        std::os::unix::fs::symlink("env", root.join("binder")).unwrap();
        assert_eq!(
            analyze_at(&root, &Options::default()).unwrap().kind,
            Kind::Python
        );
        // A loop is reported, not followed forever.
        std::os::unix::fs::symlink("loop", root.join("env/loop")).unwrap();
        std::os::unix::fs::symlink("loop/x", root.join("env/apt.txt")).unwrap();
        let e = analyze_at(&root, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("symlinks"), "{e}");

        // Local packages and includes outside the repository.
        let e = err_text(&[("requirements.txt", "-e ../other\n")]);
        assert!(
            e.starts_with("requirements.txt:1:1:") && e.contains("inside the repository"),
            "{e}"
        );
        let e = err_text(&[("requirements.txt", "-r ../../etc/passwd\n")]);
        assert!(e.contains("leaves the repository"), "{e}");
        // Not UTF-8.
        let tmp2 = tempfile::tempdir().unwrap();
        std::fs::write(tmp2.path().join("requirements.txt"), b"numpy\n\xff\xfe\n").unwrap();
        let e = analyze_at(tmp2.path(), &Options::default()).unwrap_err();
        assert!(
            e.to_string().contains("UTF-8") && e.to_string().contains("byte 6"),
            "{e}"
        );
    }

    #[test]
    fn spec_huge_requirements_rejected_without_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(tmp.path().join("requirements.txt")).unwrap();
        f.set_len(100 << 20).unwrap();
        drop(f);
        let e = analyze_at(tmp.path(), &Options::default()).unwrap_err();
        assert!(e.is_user_error());
        let text = e.to_string();
        assert!(
            text.contains("requirements.txt")
                && text.contains("104857600 bytes")
                && text.contains("1048576"),
            "{text}"
        );
        // The limit is configurable.
        let small = Options {
            max_file_size: 10,
            ..Options::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &[("apt.txt", "curl wget git\n")]);
        assert!(
            analyze_at(tmp.path(), &small)
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
    }
}
