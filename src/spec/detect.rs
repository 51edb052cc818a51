//! Detection: which repo2docker build pack a repository selects, and reading/validating the
//! spec files that pack uses (`apt.txt`, `runtime.txt`, requirement files, `Pipfile`,
//! `environment.yml`, `launch.toml`). Precedence and the `binder/` / `.binder/` rules follow
//! repo2docker's "Configuration files" documentation.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

use super::launch::{self, LAUNCH_FILE, check_repo_path, line_col};
use super::{Analysis, Diagnostic, Kind, Options, Plan, SpecError};
use crate::repo::tree::{EntryKind, FileTree, kind_of, normalize, read_text};

static APT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9+.-]+$").expect("valid regex"));
static PY_VERSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+(\.[0-9]+){0,2}$").expect("valid regex"));
static R_RUNTIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^r-(?:([0-9]+(?:\.[0-9]+){0,2})-)?([0-9]{4}-[0-9]{2}-[0-9]{2})$")
        .expect("valid regex")
});
static CONDA_PY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*-\s*python\s*(?:==|=|>=|~=)?\s*([0-9]+(?:\.[0-9]+)?)").expect("valid regex")
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

enum Runtime {
    None,
    Python(String),
    R {
        version: Option<String>,
        date: String,
    },
    Other(String),
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

    // runtime.txt: `python-X.Y` or `r-[VERSION-]YYYY-MM-DD`.
    let runtime_path = c.path("runtime.txt");
    let runtime_text = read_text(src, &runtime_path, opts.max_file_size)?;
    let runtime = match runtime_text.as_deref().map(str::trim) {
        None => Runtime::None,
        Some(t) => {
            if let Some(v) = t.strip_prefix("python-") {
                if PY_VERSION.is_match(v) {
                    Runtime::Python(v.to_owned())
                } else {
                    c.errors.push(Diagnostic::at(
                        &runtime_path,
                        1,
                        8,
                        format!("{v:?} is not a Python version like 3.11"),
                    ));
                    Runtime::None
                }
            } else if t.starts_with("r-") {
                match R_RUNTIME.captures(t) {
                    Some(cap) => Runtime::R {
                        version: cap.get(1).map(|m| m.as_str().to_owned()),
                        date: cap[2].to_owned(),
                    },
                    None => {
                        c.errors.push(Diagnostic::at(
                            &runtime_path,
                            1,
                            1,
                            format!(
                                "{t:?} is not an R runtime like r-4.2-2023-06-01 or r-2023-06-01"
                            ),
                        ));
                        Runtime::None
                    }
                }
            } else {
                Runtime::Other(t.to_owned())
            }
        }
    };

    let kind = if c.has("Dockerfile")? {
        Kind::Dockerfile
    } else if c.has("Project.toml")? || c.has("JuliaProject.toml")? {
        Kind::Julia
    } else if c.has("REQUIRE")? {
        Kind::JuliaRequire
    } else if c.has("default.nix")? {
        Kind::Nix
    } else if matches!(runtime, Runtime::R { .. })
        || c.has("install.R")?
        || (in_root && c.is_file("DESCRIPTION")?)
    {
        Kind::R
    } else if c.has("environment.yml")? {
        Kind::Conda
    } else if c.has("Pipfile")? || c.has("Pipfile.lock")? {
        Kind::Pipfile
    } else {
        Kind::Python
    };

    let mut python_version = None;
    let mut runtime_used = None;
    let mut unsupported = None;
    let runtime_python = |c: &mut Ctx, runtime: &Runtime| -> Option<String> {
        match runtime {
            Runtime::Python(v) => {
                c.files.push(runtime_path.clone());
                Some(v.clone())
            }
            Runtime::Other(t) => {
                c.warnings.push(format!(
                    "{runtime_path}: {t:?} is not a runtime nbforge knows (python-X.Y or r-…); ignored"
                ));
                None
            }
            _ => None,
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
            unsupported = Some(match kind {
                Kind::Nix => format!(
                    "{} selects a Nix environment; nbforge cannot build Nix environments. \
                     Use requirements.txt (with apt.txt) or a Dockerfile",
                    c.path("default.nix")
                ),
                _ => format!(
                    "{} selects a Julia environment; nbforge cannot build Julia environments yet \
                     (the Julia package registry is not reachable from its builders). \
                     Use a Dockerfile based on an image that already has Julia",
                    c.files.first().cloned().unwrap_or_default()
                ),
            });
        }
        Kind::R => {
            if let Runtime::R { version, date } = &runtime {
                c.files.push(runtime_path.clone());
                runtime_used = runtime_text.as_deref().map(|t| t.trim().to_owned());
                c.warnings.push(format!(
                    "{runtime_path}: the image has Debian bookworm's R (4.2); R {} and the CRAN \
                     snapshot of {date} are not honoured",
                    version.as_deref().unwrap_or("(latest)")
                ));
            }
            plan.install_r = c.use_file(&c.path("install.R"))?;
            if plan.install_r.is_some() {
                c.warnings.push(format!(
                    "{}: packages are installed from CRAN (https://cloud.r-project.org) at build \
                     time; where CRAN is not reachable list Debian r-cran-* packages in apt.txt instead",
                    c.path("install.R")
                ));
            }
            if in_root && c.is_file("DESCRIPTION")? {
                c.use_file("DESCRIPTION")?;
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
            python_version = Some(opts.default_python.clone());
            python_requirements(&mut c, &mut plan)?;
        }
        Kind::Conda => {
            let p = c.path("environment.yml");
            let text = c.text(&p)?.unwrap_or_default();
            python_version = Some(
                text.lines()
                    .find_map(|l| CONDA_PY.captures(l).map(|m| m[1].to_owned()))
                    .unwrap_or_else(|| opts.default_python.clone()),
            );
            if runtime_text.is_some() {
                c.warnings.push(format!(
                    "{runtime_path} is ignored next to environment.yml (as in repo2docker); \
                     name python in environment.yml"
                ));
            }
            if c.has("requirements.txt")? {
                c.warnings.push(format!(
                    "{} is ignored next to environment.yml (as in repo2docker); list pip \
                     packages under `- pip:` in environment.yml",
                    c.path("requirements.txt")
                ));
            }
            unsupported = Some(format!(
                "{p} selects a conda environment; nbforge cannot build conda environments yet \
                 (no conda package channel is reachable from its builders). Use requirements.txt \
                 (with apt.txt for system packages) instead"
            ));
        }
        Kind::Pipfile => {
            plan.pipfile = c.use_file(&c.path("Pipfile"))?;
            plan.pipfile_lock = c.use_file(&c.path("Pipfile.lock"))?;
            let mut v = None;
            if let Some(lock) = plan.pipfile_lock.clone() {
                let text = c.text(&lock)?.unwrap_or_default();
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(j) => {
                        v = j
                            .pointer("/_meta/requires/python_version")
                            .and_then(|x| x.as_str())
                            .map(String::from);
                    }
                    Err(e) => c.errors.push(Diagnostic::at(
                        &lock,
                        e.line(),
                        e.column(),
                        format!("not valid JSON: {e}"),
                    )),
                }
            }
            if let Some(pf) = plan.pipfile.clone() {
                let text = c.text(&pf)?.unwrap_or_default();
                pipfile(&mut c, &mut plan, &pf, &text, &mut v);
            }
            if c.has("requirements.txt")? {
                c.warnings.push(format!(
                    "{} is ignored next to a Pipfile (as in repo2docker)",
                    c.path("requirements.txt")
                ));
            }
            let rt = runtime_python(&mut c, &runtime);
            if v.is_none() {
                v = rt;
                if v.is_some() {
                    runtime_used = runtime_text.as_deref().map(|t| t.trim().to_owned());
                }
            }
            python_version = Some(v.unwrap_or_else(|| opts.default_python.clone()));
        }
        Kind::Python => {
            let rt = runtime_python(&mut c, &runtime);
            if rt.is_some() {
                runtime_used = runtime_text.as_deref().map(|t| t.trim().to_owned());
            }
            python_version = Some(rt.unwrap_or_else(|| opts.default_python.clone()));
            python_requirements(&mut c, &mut plan)?;
            if in_root && (c.is_file("setup.py")? || c.is_file("pyproject.toml")?) {
                plan.install_root = true;
                add_package(&mut c, &mut plan, "", "setup.py", 0, 0)?;
            }
        }
    }

    let image_python = match kind {
        Kind::Python | Kind::Pipfile | Kind::R => Some(opts.base_python.clone()),
        _ => None,
    };
    if let (Some(want), Some(have)) = (&python_version, &image_python) {
        let explicit = runtime_used.is_some() || kind == Kind::Pipfile;
        if explicit && !same_minor(want, have) {
            c.warnings.push(format!(
                "Python {want} was asked for, but the image has Python {have} from its base \
                 image; the environment is built with Python {have}"
            ));
        }
    }

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
        runtime: runtime_used,
        files: c.files,
        inputs: Vec::new(),
        whole_tree: false,
        environment_key: String::new(),
        warnings: c.warnings,
        unsupported,
        apt_packages,
        launch: launch_cfg,
        plan,
    })
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
            EntryKind::Other => false,
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

fn pipfile(c: &mut Ctx, plan: &mut Plan, path: &str, text: &str, version: &mut Option<String>) {
    let value: toml::Table = match toml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (l, col) = line_col(text, e.span().map(|s| s.start).unwrap_or(0));
            c.errors
                .push(Diagnostic::at(path, l, col, e.message().trim().to_owned()));
            return;
        }
    };
    if version.is_none() {
        *version = value
            .get("requires")
            .and_then(|r| {
                r.get("python_version")
                    .or_else(|| r.get("python_full_version"))
            })
            .and_then(|v| v.as_str())
            .map(String::from);
    }
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
}
