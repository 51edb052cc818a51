//! Rendering benchmark: nbforge's worksheet rendering against Jupyter's nbconvert on the same
//! notebooks, in the same run, measured two ways:
//!
//! - **in-process**: nbconvert's `HTMLExporter` (without input cells, as `--no-input`) in one
//!   Python process over all the notebooks, timed inside Python per notebook over the same
//!   number of iterations as nbforge (after one untimed warm-up conversion, which loads
//!   nbconvert's templates) — like with like;
//! - **process per notebook**: one `jupyter nbconvert --to html --no-input` run per notebook,
//!   timed from outside, interpreter start-up included — what a service shelling out pays.

use crate::worksheet::{Notebook, RenderOptions, Values, render};
use anyhow::{Context as _, bail};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Timing of one notebook.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Path of the notebook, relative to the benchmarked folder.
    pub notebook: PathBuf,
    pub bytes: u64,
    /// Size of the produced page.
    pub html_bytes: usize,
    /// Mean time to parse, render and wrap the page.
    pub nbforge: Duration,
    /// Mean time of nbconvert's `HTMLExporter` in one Python process (parse and convert).
    pub in_process: Option<Duration>,
    /// Why the in-process conversion failed on this notebook.
    pub in_process_error: Option<String>,
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
    /// Why nbconvert could not be run in process at all (not installed for the Python that
    /// runs `jupyter`, ...), when it was asked for.
    pub in_process_unavailable: Option<String>,
}

impl BenchReport {
    /// Mean nbforge time per notebook.
    pub fn nbforge_per_notebook(&self) -> Duration {
        mean(self.rows.iter().map(|r| r.nbforge), self.rows.len())
    }

    /// Mean nbconvert time per notebook it converted as a process per notebook, when run.
    pub fn nbconvert_per_notebook(&self) -> Option<Duration> {
        let times: Vec<Duration> = self.rows.iter().filter_map(|r| r.nbconvert).collect();
        (!times.is_empty()).then(|| mean(times.iter().copied(), times.len()))
    }

    /// Mean in-process nbconvert time per notebook it converted, when run.
    pub fn in_process_per_notebook(&self) -> Option<Duration> {
        let times: Vec<Duration> = self.rows.iter().filter_map(|r| r.in_process).collect();
        (!times.is_empty()).then(|| mean(times.iter().copied(), times.len()))
    }

    /// How many times faster nbforge is per notebook than `jupyter nbconvert` run as a
    /// process per notebook, over the notebooks both converted.
    pub fn speedup(&self) -> Option<f64> {
        self.ratio(|r| r.nbconvert)
    }

    /// How many times faster nbforge is per notebook than nbconvert's exporter in one
    /// Python process, over the notebooks both converted.
    pub fn in_process_speedup(&self) -> Option<f64> {
        self.ratio(|r| r.in_process)
    }

    fn ratio(&self, theirs: impl Fn(&BenchRow) -> Option<Duration>) -> Option<f64> {
        let both: Vec<(Duration, Duration)> = self
            .rows
            .iter()
            .filter_map(|r| theirs(r).map(|t| (r.nbforge, t)))
            .collect();
        let ours = mean(both.iter().map(|b| b.0), both.len()).as_secs_f64();
        let theirs = mean(both.iter().map(|b| b.1), both.len()).as_secs_f64();
        (ours > 0.0 && !both.is_empty()).then(|| theirs / ours)
    }
}

fn mean(times: impl Iterator<Item = Duration>, n: usize) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    times.sum::<Duration>() / n as u32
}

fn time_cell(time: Option<Duration>, error: &Option<String>) -> String {
    match (time, error) {
        (Some(d), _) => format!("{:.2} ms", ms(d)),
        (None, Some(_)) => "failed".to_string(),
        (None, None) => "-".to_string(),
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>8} {:>8} {:>11} {:>13} {:>13}",
            "notebook", "ipynb KB", "html KB", "nbforge", "in-process", "per-process"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<36} {:>8.1} {:>8.1} {:>8.3} ms {:>13} {:>13}",
                r.notebook.display().to_string(),
                r.bytes as f64 / 1024.0,
                r.html_bytes as f64 / 1024.0,
                ms(r.nbforge),
                time_cell(r.in_process, &r.in_process_error),
                time_cell(r.nbconvert, &r.nbconvert_error),
            )?;
        }
        write!(
            f,
            "{} notebooks, {} iterations: nbforge {:.3} ms per notebook (parse, render, page)",
            self.rows.len(),
            self.iterations,
            ms(self.nbforge_per_notebook())
        )?;
        if let (Some(theirs), Some(speedup)) =
            (self.in_process_per_notebook(), self.in_process_speedup())
        {
            write!(
                f,
                "\nin-process: nbconvert HTMLExporter in one Python process, {} iterations: \
                 {:.2} ms per notebook it converted; nbforge {speedup:.1}x faster",
                self.iterations,
                ms(theirs)
            )?;
        }
        if let Some(reason) = &self.in_process_unavailable {
            write!(f, "\nin-process: nbconvert not run: {reason}")?;
        }
        if let (Some(theirs), Some(speedup)) = (self.nbconvert_per_notebook(), self.speedup()) {
            write!(
                f,
                "\nprocess per notebook: `jupyter nbconvert --to html --no-input`, one run each: \
                 {:.1} ms per notebook it converted; nbforge {speedup:.0}x faster",
                ms(theirs)
            )?;
        }
        for r in &self.rows {
            let failures = [
                ("in-process", &r.in_process_error),
                ("process per notebook", &r.nbconvert_error),
            ];
            for (how, err) in failures {
                if let Some(err) = err {
                    let path = r.notebook.display();
                    write!(f, "\nnbconvert ({how}) failed on {path}: {err}")?;
                }
            }
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Every `.ipynb` under `dir`, recursively (hidden folders such as `.ipynb_checkpoints`
/// skipped), sorted.
fn notebooks_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", d.display()))?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let file_type = entry.file_type()?;
            if file_type.is_dir() && !hidden {
                pending.push(path);
            } else if file_type.is_file() && path.extension().is_some_and(|e| e == "ipynb") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Render every `.ipynb` under `corpus_dir` (recursively) `iterations` times (each render
/// parses, renders and builds the page) and, when `compare_nbconvert`, convert each with
/// nbconvert in one Python process over the same iterations and once with
/// `jupyter nbconvert --to html --no-input` as its own process. Every notebook must render
/// with nbforge; notebooks nbconvert fails on are reported and left out of the ratios.
pub fn bench(
    corpus_dir: &Path,
    iterations: usize,
    compare_nbconvert: bool,
) -> anyhow::Result<BenchReport> {
    let iterations = iterations.max(1);
    let files = notebooks_under(corpus_dir)?;
    if files.is_empty() {
        bail!("no .ipynb files under {}", corpus_dir.display());
    }
    let options = RenderOptions::default();
    let templates = crate::web::Templates::new();
    let mut rows = Vec::with_capacity(files.len());
    for path in &files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut html_bytes = 0;
        let start = Instant::now();
        for _ in 0..iterations {
            let nb = Notebook::from_slice(&bytes).with_context(|| format!("{}", path.display()))?;
            let rendered = render(&nb, &options);
            let page = templates.standalone(
                rendered.title.as_deref().unwrap_or("Worksheet"),
                &Values::default(),
                rendered.body_html,
            )?;
            html_bytes = std::hint::black_box(page).len();
        }
        rows.push(BenchRow {
            notebook: path.strip_prefix(corpus_dir).unwrap_or(path).to_path_buf(),
            bytes: bytes.len() as u64,
            html_bytes,
            nbforge: start.elapsed() / iterations as u32,
            in_process: None,
            in_process_error: None,
            nbconvert: None,
            nbconvert_error: None,
        });
    }
    let mut in_process_unavailable = None;
    if compare_nbconvert {
        match run_in_process(&files, iterations)? {
            Ok(results) => {
                for (row, result) in rows.iter_mut().zip(results) {
                    match result {
                        Ok(d) => row.in_process = Some(d),
                        Err(e) => row.in_process_error = Some(e),
                    }
                }
            }
            Err(reason) => in_process_unavailable = Some(reason),
        }
        let out_dir = tempfile::tempdir().context("cannot make a folder for nbconvert")?;
        for (row, path) in rows.iter_mut().zip(&files) {
            match run_nbconvert(path, out_dir.path())? {
                Ok(d) => row.nbconvert = Some(d),
                Err(e) => row.nbconvert_error = Some(e),
            }
        }
    }
    Ok(BenchReport {
        iterations,
        rows,
        in_process_unavailable,
    })
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

/// Converts each notebook named on the command line `iterations` times with one
/// `HTMLExporter` (input cells and prompts excluded, as `--no-input`), after one untimed
/// warm-up conversion; prints one line per notebook: mean nanoseconds, or `error <reason>`.
const IN_PROCESS_SCRIPT: &str = r#"
import sys, time
import nbformat
from nbconvert import HTMLExporter
iterations = int(sys.argv[1])
exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
warm = False
for path in sys.argv[2:]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not warm:
            exporter.from_notebook_node(nbformat.reads(text, as_version=4))
            warm = True
        start = time.perf_counter_ns()
        for _ in range(iterations):
            exporter.from_notebook_node(nbformat.reads(text, as_version=4))
        print((time.perf_counter_ns() - start) // iterations, flush=True)
    except Exception as e:
        print("error", type(e).__name__ + ":", str(e).replace("\n", " ")[:200], flush=True)
"#;

/// nbconvert in one Python process over all `files`: per notebook, the mean time or why it
/// failed. `Ok(Err(reason))` when the Python that runs `jupyter` cannot import nbconvert.
fn run_in_process(
    files: &[PathBuf],
    iterations: usize,
) -> anyhow::Result<Result<Vec<Result<Duration, String>>, String>> {
    let python = jupyter_python();
    let output = Command::new(&python)
        .arg("-c")
        .arg(IN_PROCESS_SCRIPT)
        .arg(iterations.to_string())
        .args(files)
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    if !output.status.success() || lines.len() != files.len() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().last().unwrap_or("no output").to_string();
        return Ok(Err(format!("{}: {reason}", python.display())));
    }
    Ok(Ok(lines
        .into_iter()
        .map(|line| match line.parse::<u64>() {
            Ok(ns) => Ok(Duration::from_nanos(ns)),
            Err(_) => Err(line.strip_prefix("error ").unwrap_or(line).to_string()),
        })
        .collect()))
}

/// The Python interpreter of the `jupyter` command on `PATH` (from its `#!` line), which is
/// the one that has nbconvert installed; `python3` when that cannot be told.
fn jupyter_python() -> PathBuf {
    let fallback = PathBuf::from("python3");
    let Some(jupyter) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("jupyter"))
            .find(|p| p.is_file())
    }) else {
        return fallback;
    };
    let Ok(text) = std::fs::read(&jupyter) else {
        return fallback;
    };
    let first = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let Some(shebang) = std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.strip_prefix("#!"))
    else {
        return fallback;
    };
    let mut words = shebang.split_whitespace();
    match words.next() {
        Some(env) if env.ends_with("/env") => words
            .find(|w| !w.starts_with('-'))
            .map_or(fallback, PathBuf::from),
        Some(interpreter) => PathBuf::from(interpreter),
        None => fallback,
    }
}
