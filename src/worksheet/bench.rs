//! Rendering benchmark: nbforge's worksheet rendering against `jupyter nbconvert --to html
//! --no-input` on the same notebooks, in the same run.

use super::{Notebook, RenderOptions, Values, render};
use anyhow::{Context as _, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Timing of one notebook.
#[derive(Debug, Clone)]
pub struct BenchRow {
    pub notebook: PathBuf,
    pub bytes: u64,
    /// Size of the produced page.
    pub html_bytes: usize,
    /// Mean time to parse, render and wrap the page.
    pub nbforge: Duration,
    /// Time of one successful `jupyter nbconvert --to html --no-input` run.
    pub nbconvert: Option<Duration>,
    /// Why nbconvert failed on this notebook (the last line of its error output).
    pub nbconvert_error: Option<String>,
}

/// Result of [`bench`].
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub iterations: usize,
    pub rows: Vec<BenchRow>,
}

impl BenchReport {
    /// Mean nbforge time per notebook.
    pub fn nbforge_per_notebook(&self) -> Duration {
        mean(self.rows.iter().map(|r| r.nbforge), self.rows.len())
    }

    /// Mean nbconvert time per notebook it converted, when it was run.
    pub fn nbconvert_per_notebook(&self) -> Option<Duration> {
        let times: Vec<Duration> = self.rows.iter().filter_map(|r| r.nbconvert).collect();
        (!times.is_empty()).then(|| mean(times.iter().copied(), times.len()))
    }

    /// How many times faster nbforge is per notebook, over the notebooks both converted.
    pub fn speedup(&self) -> Option<f64> {
        let both: Vec<&BenchRow> = self.rows.iter().filter(|r| r.nbconvert.is_some()).collect();
        let ours = mean(both.iter().map(|r| r.nbforge), both.len()).as_secs_f64();
        let theirs = mean(both.iter().filter_map(|r| r.nbconvert), both.len()).as_secs_f64();
        (ours > 0.0 && !both.is_empty()).then(|| theirs / ours)
    }

    /// Notebooks nbconvert failed on, with its reason.
    pub fn nbconvert_failures(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.rows.iter().filter_map(|r| {
            r.nbconvert_error
                .as_deref()
                .map(|e| (r.notebook.as_path(), e))
        })
    }
}

fn mean(times: impl Iterator<Item = Duration>, n: usize) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    times.sum::<Duration>() / n as u32
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:>9} {:>9} {:>12} {:>12} {:>9}",
            "notebook", "ipynb KB", "html KB", "nbforge", "nbconvert", "speedup"
        )?;
        for r in &self.rows {
            let name = r
                .notebook
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let theirs = match (&r.nbconvert, &r.nbconvert_error) {
                (Some(d), _) => format!("{:.1} ms", ms(*d)),
                (None, Some(_)) => "failed".to_string(),
                (None, None) => "-".to_string(),
            };
            let speed = r.nbconvert.map_or("-".to_string(), |d| {
                format!(
                    "{:.0}x",
                    d.as_secs_f64() / r.nbforge.as_secs_f64().max(1e-9)
                )
            });
            writeln!(
                f,
                "{:<28} {:>9.1} {:>9.1} {:>9.3} ms {:>12} {:>9}",
                name,
                r.bytes as f64 / 1024.0,
                r.html_bytes as f64 / 1024.0,
                ms(r.nbforge),
                theirs,
                speed
            )?;
        }
        write!(
            f,
            "{} notebooks, {} iterations: nbforge {:.3} ms per notebook",
            self.rows.len(),
            self.iterations,
            ms(self.nbforge_per_notebook())
        )?;
        if let (Some(theirs), Some(speedup)) = (self.nbconvert_per_notebook(), self.speedup()) {
            write!(
                f,
                ", nbconvert {:.1} ms per notebook it converted, nbforge {speedup:.0}x faster",
                ms(theirs)
            )?;
        }
        for (path, err) in self.nbconvert_failures() {
            write!(f, "\nnbconvert failed on {}: {err}", path.display())?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Render every `.ipynb` in `corpus_dir` `iterations` times (each render reads, parses,
/// renders and builds the page) and, when `compare_nbconvert`, convert each once with
/// `jupyter nbconvert --to html --no-input`. Every notebook must render with nbforge;
/// notebooks nbconvert fails on are reported and left out of the speedup.
pub fn bench(
    corpus_dir: &Path,
    iterations: usize,
    compare_nbconvert: bool,
) -> anyhow::Result<BenchReport> {
    let iterations = iterations.max(1);
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir)
        .with_context(|| format!("cannot read {}", corpus_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .ipynb files in {}", corpus_dir.display());
    }
    let out_dir = std::env::temp_dir().join(format!("nbforge-bench-{}", std::process::id()));
    if compare_nbconvert {
        std::fs::create_dir_all(&out_dir)?;
    }
    let options = RenderOptions::default();
    let templates = crate::web::Templates::new();
    let mut rows = Vec::with_capacity(files.len());
    let result = (|| -> anyhow::Result<()> {
        for path in &files {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut html_bytes = 0;
            let start = Instant::now();
            for _ in 0..iterations {
                let nb =
                    Notebook::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;
                let rendered = render(&nb, &options);
                let page = templates.standalone(
                    rendered.title.as_deref().unwrap_or("Worksheet"),
                    &Values::default(),
                    rendered.body_html,
                )?;
                html_bytes = std::hint::black_box(page).len();
            }
            let nbforge = start.elapsed() / iterations as u32;
            let (nbconvert, nbconvert_error) = if compare_nbconvert {
                match run_nbconvert(path, &out_dir)? {
                    Ok(d) => (Some(d), None),
                    Err(e) => (None, Some(e)),
                }
            } else {
                (None, None)
            };
            rows.push(BenchRow {
                notebook: path.clone(),
                bytes: bytes.len() as u64,
                html_bytes,
                nbforge,
                nbconvert,
                nbconvert_error,
            });
        }
        Ok(())
    })();
    if compare_nbconvert {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    result?;
    Ok(BenchReport { iterations, rows })
}

/// Time one nbconvert run; `Ok(Err(reason))` when nbconvert ran but failed on the notebook.
fn run_nbconvert(path: &Path, out_dir: &Path) -> anyhow::Result<Result<Duration, String>> {
    let start = Instant::now();
    let output = Command::new("jupyter")
        .args(["nbconvert", "--to", "html", "--no-input", "--output-dir"])
        .arg(out_dir)
        .arg(path)
        .output()
        .context("cannot run `jupyter nbconvert` (install jupyter-nbconvert)")?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Ok(Err(stderr.lines().last().unwrap_or("").to_string()));
    }
    Ok(Ok(elapsed))
}
