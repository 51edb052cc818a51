//! `nbforge spec [PATH | GIT-URL] [--ref REF] [--json] [--dockerfile]`: analyze a launch spec
//! from a folder, a local repository at a commit, or a remote repository, and print the result.
//!
//! Exit status: 0 valid and buildable; 1 invalid spec (diagnostics printed as
//! `file:line:column: message`); 2 nbforge could not read the repository; 3 valid, but a kind
//! nbforge cannot build. Inside a git `pre-receive` hook, objects still in quarantine
//! (`GIT_QUARANTINE_PATH`) are read too.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::{Analysis, Options, SpecError, analyze};
use crate::repo::{CommitTree, DirTree, FileTree};

/// Arguments of `nbforge spec`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpecArgs {
    /// Repository folder (working tree or bare), or a git URL. Defaults to the current folder.
    pub path_or_git_url: Option<String>,
    /// Read the spec at this commit, branch or tag from git objects instead of the files on disk.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Print the analysis as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the generated Dockerfile (in JSON output: a `dockerfile` field).
    #[arg(long)]
    pub dockerfile: bool,
    /// Python version of the base image [default: the Python of its Debian release in
    /// NBFORGE_PYTHON_BASES, else 3.11].
    #[arg(long, env = "NBFORGE_BASE_PYTHON")]
    pub base_python: Option<String>,
    /// Largest spec file read, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_file_size: u64,
    /// Write the image build context (the Dockerfile and only the environment inputs) into
    /// this folder, for `docker build DIR` elsewhere (e.g. on a GitLab runner).
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// For a conda environment: solve it (or read its lock) against the configured channels
    /// and print the packages with their URLs and hashes, as an `@EXPLICIT` list. With
    /// `--context`, the conda environment is always prepared into the context's `conda/`.
    #[arg(long)]
    pub solve: bool,
}

const EXIT_INVALID: u8 = 1;
const EXIT_INTERNAL: u8 = 2;
const EXIT_UNSUPPORTED: u8 = 3;

fn is_url(s: &str) -> bool {
    s.contains("://") || (s.contains('@') && s.contains(':') && !s.starts_with('/'))
}

/// Runs `nbforge spec` with the base image, default Python and extra CA of `settings`.
pub fn run(args: &SpecArgs, settings: &Options) -> anyhow::Result<ExitCode> {
    Ok(run_reading_conda(args, settings)?.0)
}

/// Runs `nbforge spec`; also returns the conda environment the repository describes, if any
/// (its prefix is prepared by the caller for `--solve` and `--context`).
pub fn run_reading_conda(
    args: &SpecArgs,
    settings: &Options,
) -> anyhow::Result<(ExitCode, Option<super::conda::CondaEnvironment>)> {
    let mut conda = None;
    let opts = Options {
        base_python: args
            .base_python
            .clone()
            .unwrap_or_else(|| settings.base_python.clone()),
        max_file_size: args.max_file_size,
        ..settings.clone()
    };
    let target = args.path_or_git_url.clone().unwrap_or_else(|| ".".into());
    let mut tmp_cache = None;
    let repo = if is_url(&target) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("nbforge-spec-{}-{nanos}", std::process::id()));
        tmp_cache = Some(dir.clone());
        Some(
            crate::repo::mirror::fetch_mirror(&dir, "remote", &target, None, &[])
                .map_err(anyhow::Error::from),
        )
    } else if args.git_ref.is_some() {
        Some(
            git2::Repository::open(&target)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    if let Some(q) = std::env::var_os("GIT_QUARANTINE_PATH") {
                        r.odb()?.add_disk_alternate(&q.to_string_lossy())?;
                    }
                    Ok(r)
                }),
        )
    } else {
        None
    };
    let result = match repo {
        Some(Ok(repo)) => {
            let rev = match &args.git_ref {
                Some(r) => r.clone(),
                None => ["HEAD", "refs/heads/main", "refs/heads/master"]
                    .into_iter()
                    .find(|r| repo.revparse_single(r).is_ok())
                    .unwrap_or("HEAD")
                    .to_owned(),
            };
            match CommitTree::open(&repo, &rev) {
                Ok(src) => report(args, &src, &opts, &mut conda),
                Err(e) => internal(args, &format!("{rev}: {e}")),
            }
        }
        Some(Err(e)) => internal(args, &e.to_string()),
        None => report(args, &DirTree::new(&target), &opts, &mut conda),
    };
    if let Some(dir) = tmp_cache {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok((result?, conda))
}

fn internal(args: &SpecArgs, message: &str) -> anyhow::Result<ExitCode> {
    if args.json {
        println!(
            "{}",
            json!({ "kind": null, "errors": [], "internal_error": message })
        );
    } else {
        eprintln!("error: nbforge could not read the repository: {message}");
    }
    Ok(ExitCode::from(EXIT_INTERNAL))
}

fn report(
    args: &SpecArgs,
    src: &dyn FileTree,
    opts: &Options,
    conda: &mut Option<super::conda::CondaEnvironment>,
) -> anyhow::Result<ExitCode> {
    let analysis = match analyze(src, opts) {
        Ok(a) => a,
        Err(SpecError::Internal(m)) => return internal(args, &m),
        Err(e) => {
            let diags = e.diagnostics();
            if args.json {
                let errors: Vec<_> = diags
                    .iter()
                    .map(|d| json!({"file": d.file, "line": d.line, "column": d.column, "message": d.message, "text": d.to_string()}))
                    .collect();
                println!(
                    "{}",
                    json!({"kind": null, "python_version": null, "files": [], "environment_key": null,
                           "inputs": [], "warnings": [], "errors": errors})
                );
            } else {
                let mut out = std::io::stdout().lock();
                for d in &diags {
                    writeln!(out, "error: {d}")?;
                }
            }
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if let Some(dir) = &args.context {
        match analysis.build_context(src, opts) {
            Ok(files) => write_context(dir, &files)?,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(if e.is_user_error() {
                    EXIT_UNSUPPORTED
                } else {
                    EXIT_INTERNAL
                }));
            }
        }
    }
    let dockerfile = if args.dockerfile {
        Some(analysis.dockerfile(opts))
    } else {
        None
    };
    let code = if analysis.unsupported.is_some() {
        EXIT_UNSUPPORTED
    } else {
        0
    };
    if code == 0 {
        conda.clone_from(&analysis.conda);
    }
    if args.json {
        let mut v = json_of(&analysis);
        if let Some(d) = &dockerfile {
            v["dockerfile"] = d
                .as_ref()
                .map(|s| json!(s))
                .unwrap_or(serde_json::Value::Null);
        }
        println!("{v}");
    } else if let Some(d) = dockerfile {
        match d {
            Ok(text) => print!("{text}"),
            Err(e) => eprintln!("error: {e}"),
        }
        for w in &analysis.warnings {
            eprintln!("warning: {w}");
        }
    } else {
        print_human(&analysis)?;
    }
    Ok(ExitCode::from(code))
}

/// Writes build-context files under `dir` (paths come from the analysis, never `..`).
fn write_context(dir: &std::path::Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    for (path, bytes) in files {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            anyhow::bail!("refusing context path {path}");
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        #[cfg(unix)]
        if path.ends_with("postBuild") || path.ends_with("start") || path.contains("entrypoint") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// The JSON form printed by `nbforge spec --json`.
pub fn json_of(a: &Analysis) -> serde_json::Value {
    let errors: Vec<serde_json::Value> = a
        .unsupported
        .iter()
        .map(|m| json!({"file": "", "line": null, "column": null, "message": format!("cannot build yet: {m}"), "text": format!("cannot build yet: {m}")}))
        .collect();
    json!({
        "kind": a.kind,
        "spec_dir": a.spec_dir,
        "python_version": a.python_version,
        "image_python": a.image_python,
        "base_image": a.base_image,
        "runtime": a.runtime,
        "r_version": a.r_version,
        "r_snapshot": a.r_snapshot,
        "image_r": a.image_r,
        "files": a.files,
        "environment_key": a.environment_key,
        "inputs": a.inputs,
        "whole_tree": a.whole_tree,
        "apt_packages": a.apt_packages,
        "warnings": a.warnings,
        "buildable": a.unsupported.is_none(),
        "errors": errors,
        "launch": a.launch,
        "conda": a.conda,
    })
}

fn print_human(a: &Analysis) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let dir = a
        .spec_dir
        .as_deref()
        .map(|d| format!(" (from {d}/)"))
        .unwrap_or_default();
    writeln!(out, "kind: {}{dir}", a.kind)?;
    if let Some(v) = &a.python_version {
        writeln!(
            out,
            "python: {v}{}",
            a.image_python
                .as_deref()
                .map(|i| format!(" (image has {i})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(have) = &a.image_r {
        let asked = match (&a.r_version, &a.r_snapshot) {
            (Some(v), Some(d)) => format!("{v}, CRAN snapshot {d}"),
            (Some(v), None) => v.clone(),
            (None, Some(d)) => format!("CRAN snapshot {d}"),
            (None, None) => "any".to_owned(),
        };
        writeln!(out, "r: {asked} (image has Debian's R {have})")?;
        if let Some(note) = a.runtime_note() {
            writeln!(out, "note: {note}")?;
        }
    }
    if let Some(base) = &a.base_image {
        writeln!(out, "base image: {base}")?;
    }
    if let Some(c) = &a.conda {
        writeln!(out, "conda: {} {}", c.file, c.input.describe())?;
        if !c.channels.is_empty() {
            writeln!(out, "conda channels: {}", c.channels.join(", "))?;
        }
        if !c.dependencies.is_empty() {
            let specs: Vec<&str> = c.dependencies.iter().map(|d| d.spec.as_str()).collect();
            writeln!(out, "conda packages: {}", specs.join(", "))?;
        }
        if !c.locked.is_empty() {
            writeln!(out, "conda packages: {} locked", c.locked.len())?;
        }
        if !c.pip.is_empty() {
            writeln!(out, "pip packages: {}", c.pip.join(", "))?;
        }
    }
    writeln!(out, "files: {}", a.files.join(", "))?;
    writeln!(out, "environment key: {}", a.environment_key)?;
    writeln!(
        out,
        "inputs: {} file(s){}",
        a.inputs.len(),
        if a.whole_tree {
            " (whole repository)"
        } else {
            ""
        }
    )?;
    if let Some(l) = &a.launch {
        writeln!(
            out,
            "launch: {:?}{}",
            l.kind,
            l.default
                .as_deref()
                .map(|d| format!(", default {d}"))
                .unwrap_or_default()
        )?;
    }
    for w in &a.warnings {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(u) = &a.unsupported {
        writeln!(out, "error: cannot build yet: {u}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testing::example_repositories;

    #[test]
    fn analysis_json_of_each_example_repository() {
        for (name, path) in example_repositories() {
            let analysis = analyze(&DirTree::new(&path), &Options::default()).unwrap();
            let text = serde_json::to_string_pretty(&json_of(&analysis)).unwrap();
            insta::assert_snapshot!(format!("analysis_{name}"), text);
        }
    }
}
