//! `nbforge bench spec`: times detection + environment key + Dockerfile for each example
//! repository under a folder (normally `binder-specs/`), reading from git objects. Each example
//! is first committed into a temporary bare repository; timings are per repository.

use std::path::Path;
use std::time::Instant;

use super::{Kind, Options, analyze};
use crate::repo::CommitTree;

/// Timings of one example repository, in microseconds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RepoTiming {
    pub name: String,
    pub kind: Option<Kind>,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Set when the example could not be analyzed (it is then not timed).
    pub error: Option<String>,
}

/// The result of [`bench`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub iterations: usize,
    pub repos: Vec<RepoTiming>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} iterations per repository; detect + key + Dockerfile from git objects",
            self.iterations
        )?;
        writeln!(
            f,
            "{:<20} {:<14} {:>10} {:>10} {:>10}",
            "repository", "kind", "mean µs", "p50 µs", "p99 µs"
        )?;
        for r in &self.repos {
            match &r.error {
                Some(e) => writeln!(f, "{:<20} error: {e}", r.name)?,
                None => writeln!(
                    f,
                    "{:<20} {:<14} {:>10.1} {:>10.1} {:>10.1}",
                    r.name,
                    r.kind.map(|k| k.as_str()).unwrap_or("-"),
                    r.mean_us,
                    r.p50_us,
                    r.p99_us
                )?,
            }
        }
        Ok(())
    }
}

/// Writes `dir` into `repo` as a tree (files, executables, symlinks), returning its id.
fn write_tree(
    repo: &git2::Repository,
    dir: &Path,
) -> Result<git2::Oid, Box<dyn std::error::Error>> {
    let mut tb = repo.treebuilder(None)?;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let meta = std::fs::symlink_metadata(e.path())?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(e.path())?;
            let oid = repo.blob(target.to_string_lossy().as_bytes())?;
            tb.insert(name, oid, 0o120000)?;
        } else if meta.is_dir() {
            let oid = write_tree(repo, &e.path())?;
            tb.insert(name, oid, 0o040000)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt as _;
            let oid = repo.blob(&std::fs::read(e.path())?)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o100755
            } else {
                0o100644
            };
            tb.insert(name, oid, mode)?;
        }
    }
    Ok(tb.write()?)
}

/// Commits the folder `dir` into `repo` as a root commit on `refname`.
pub fn commit_dir(
    repo: &git2::Repository,
    dir: &Path,
    refname: &str,
) -> Result<git2::Oid, Box<dyn std::error::Error>> {
    let tree = repo.find_tree(write_tree(repo, dir)?)?;
    let sig = git2::Signature::new("nbforge", "nbforge@localhost", &git2::Time::new(0, 0))?;
    Ok(repo.commit(Some(refname), &sig, &sig, "example", &tree, &[])?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Benchmarks every sub-folder of `dir` (each an example repository).
pub fn bench(dir: &Path, iterations: usize) -> BenchReport {
    let iterations = iterations.max(1);
    let mut repos = Vec::new();
    let tmp = std::env::temp_dir().join(format!(
        "nbforge-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let opts = Options::default();
    for name in names {
        let name_s = name.to_string_lossy().into_owned();
        let mut timing = RepoTiming {
            name: name_s.clone(),
            kind: None,
            mean_us: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            error: None,
        };
        let setup = (|| -> Result<git2::Repository, Box<dyn std::error::Error>> {
            let repo = git2::Repository::init_bare(tmp.join(&name))?;
            commit_dir(&repo, &dir.join(&name), "refs/heads/main")?;
            Ok(repo)
        })();
        let repo = match setup {
            Ok(r) => r,
            Err(e) => {
                timing.error = Some(e.to_string());
                repos.push(timing);
                continue;
            }
        };
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let outcome = CommitTree::open(&repo, "refs/heads/main")
                .map_err(|e| e.to_string())
                .and_then(|src| analyze(&src, &opts).map_err(|e| e.to_string()))
                .map(|a| {
                    let df = a.dockerfile(&opts).map(|d| d.len()).unwrap_or(0);
                    (a.kind, df)
                });
            let elapsed = start.elapsed().as_secs_f64() * 1e6;
            match outcome {
                Ok((kind, _)) => timing.kind = Some(kind),
                Err(e) => {
                    timing.error = Some(e);
                    break;
                }
            }
            samples.push(elapsed);
        }
        if timing.error.is_none() {
            timing.mean_us = samples.iter().sum::<f64>() / samples.len() as f64;
            samples.sort_by(|a, b| a.total_cmp(b));
            timing.p50_us = percentile(&samples, 0.5);
            timing.p99_us = percentile(&samples, 0.99);
        }
        repos.push(timing);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    BenchReport { iterations, repos }
}
