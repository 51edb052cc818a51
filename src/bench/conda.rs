//! The conda part of `nbforge bench environments`:
//!
//! - **Solve:** a typical bioconda-style environment file (a dozen packages asked for, with
//!   Python pins) solved against a generated local channel of realistic size (thousands of
//!   records over `linux-64` and `noarch`, each with dependencies). nbforge reads the
//!   repodata with its gateway and solves, in this process; py-rattler (installed from PyPI
//!   into a virtual environment of the bench's own) does the same in its Python process
//!   (`rattler.solve`), timed there. Both start from a fresh gateway each time.
//! - **Rebuild:** push → `success` of an `environment.yml` that gains one package, with the
//!   package cache and Docker's layer cache warm; the build log says which steps the engine
//!   took from its cache.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::conda_channel::{LocalChannel, Package};

/// A small deterministic generator (the same channel every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The packages a typical bioconda environment file asks for in the generated channel.
pub const TYPICAL_SPECS: &[&str] = &[
    "python 3.11.*",
    "bio-aligner",
    "bio-variants >=2",
    "bio-reads",
    "bio-plots",
    "bio-workflow",
    "bio-stats <5",
    "bio-formats",
    "bio-tables",
    "bio-assembly",
    "bio-annotate",
    "bio-notebook",
];

/// Writes a channel of about `records` package records (no archives: a solve reads only
/// the repodata) and returns how many it wrote.
pub fn generate_channel(dir: &Path, records: usize) -> std::io::Result<usize> {
    let mut channel = LocalChannel::new(dir)?;
    let mut rng = Lcg(0x006e_6266_6f72_6765);
    let mut count = 0;
    let pythons = ["3.9.18", "3.10.13", "3.11.7", "3.12.1"];
    for (i, v) in pythons.iter().enumerate() {
        for build in 0..3 {
            let name = format!("python-{v}-h{i}_{build}_cpython.conda");
            channel.record(
                "linux-64",
                &name,
                json!({"name": "python", "version": v, "build": format!("h{i}_{build}_cpython"),
                       "build_number": build, "depends": ["libc-base >=2.17"], "subdir": "linux-64",
                       "size": 30_000_000u64, "timestamp": 1_700_000_000_000u64 + build}),
            );
            count += 1;
        }
    }
    channel.record(
        "linux-64",
        "libc-base-2.17-0.conda",
        json!({"name": "libc-base", "version": "2.17", "build": "0", "build_number": 0,
               "depends": [], "subdir": "linux-64", "size": 1000u64}),
    );
    count += 1;
    // Library packages: each version depends on a few packages generated before it.
    let bio = [
        "bio-aligner",
        "bio-variants",
        "bio-reads",
        "bio-plots",
        "bio-workflow",
        "bio-stats",
        "bio-formats",
        "bio-tables",
        "bio-assembly",
        "bio-annotate",
        "bio-notebook",
    ];
    let per_name = 8usize;
    let builds = 2usize;
    let names = (records.saturating_sub(count) / (per_name * builds)).max(bio.len() + 10);
    let name_of = |i: usize| {
        if i >= names - bio.len() {
            bio[i - (names - bio.len())].to_owned()
        } else {
            format!("lib-{i:05}")
        }
    };
    for i in 0..names {
        let name = name_of(i);
        for major in 1..=per_name {
            for build in 0..builds {
                let mut depends: Vec<String> = Vec::new();
                let python_pkg = rng.below(3) > 0;
                if python_pkg {
                    let py = pythons[rng.below(pythons.len() as u64) as usize];
                    let minor: String = py.split('.').take(2).collect::<Vec<_>>().join(".");
                    depends.push(format!("python >={minor},<{minor}.999"));
                }
                if i > 0 {
                    let deps = 1 + rng.below(4);
                    for _ in 0..deps {
                        let j = rng.below(i as u64) as usize;
                        let lo = 1 + rng.below(per_name as u64 / 2);
                        depends.push(format!("{} >={lo}", name_of(j)));
                    }
                }
                let (subdir, noarch) = if python_pkg && build == 0 {
                    ("noarch", true)
                } else {
                    ("linux-64", false)
                };
                let build_string = format!("h{:08x}_{build}", rng.next() as u32);
                let file = format!("{name}-{major}.0.{build}-{build_string}.conda");
                let mut record = json!({"name": name, "version": format!("{major}.0.{build}"),
                    "build": build_string, "build_number": build, "depends": depends,
                    "subdir": subdir, "size": 100_000 + rng.below(5_000_000),
                    "timestamp": 1_700_000_000_000u64 + rng.below(10_000_000)});
                if noarch {
                    record["noarch"] = json!("python");
                }
                channel.record(subdir, &file, record);
                count += 1;
            }
        }
    }
    channel.write_index()?;
    Ok(count)
}

/// nbforge's gateway and solve over the local channel, in this process: (load, solve).
pub async fn nbforge_solve(channel_dir: &Path) -> anyhow::Result<(Duration, Duration, usize)> {
    use rattler_conda_types::{Channel, ChannelConfig, MatchSpec, ParseStrictness, Subdir};
    let url =
        url::Url::from_directory_path(channel_dir).map_err(|()| anyhow::anyhow!("channel path"))?;
    let config = ChannelConfig::default_with_root_dir(channel_dir.to_owned());
    let channel = Channel::from_str(url.as_str(), &config)?;
    let specs: Vec<MatchSpec> = TYPICAL_SPECS
        .iter()
        .map(|s| MatchSpec::from_str(s, ParseStrictness::Lenient))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let gateway = rattler_repodata_gateway::Gateway::new();
    let repodata = gateway
        .query([channel], [Subdir::Linux64, Subdir::NoArch], specs.clone())
        .recursive(true)
        .await?
        .repodata;
    let load = started.elapsed();
    let (records, solve) =
        crate::environment::conda::solve(&repodata, specs, "strict", Duration::from_secs(600))?;
    Ok((load, solve, records.len()))
}

/// The py-rattler script: `iterations` solves from a fresh gateway, each timed in Python.
const PY_RATTLER: &str = r#"
import asyncio, sys, time, rattler
channel, iterations, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
async def main():
    for _ in range(iterations):
        started = time.perf_counter()
        records = await rattler.solve(
            sources=[rattler.Channel(channel)], specs=specs, platforms=["linux-64", "noarch"],
            virtual_packages=[rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version(v), rattler.BuildString(b))
                              for n, v, b in [("__unix", "0", "0"), ("__linux", "6.1", "0"),
                                              ("__glibc", "2.36", "0"), ("__archspec", "1", "x86_64")]],
            gateway=rattler.Gateway(), channel_priority=rattler.ChannelPriority.Strict)
        print(f"{(time.perf_counter() - started) * 1000:.3f} {len(records)}", flush=True)
asyncio.run(main())
"#;

/// Installs py-rattler into `venv` (from PyPI) and runs the solves; `None` when it cannot be
/// installed here.
pub fn py_rattler_solves(
    venv: &Path,
    channel_dir: &Path,
    iterations: usize,
) -> Option<(String, Vec<(f64, usize)>)> {
    use std::process::Command;
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .ok()?;
        if !made.success() {
            eprintln!("py-rattler: python3 -m venv failed");
            return None;
        }
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "-q", "py-rattler"])
            .status()
            .ok()?;
        if !installed.success() {
            eprintln!("py-rattler: pip install py-rattler failed");
            return None;
        }
    }
    let version = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('py-rattler'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let url = url::Url::from_directory_path(channel_dir).ok()?;
    let out = Command::new(&python)
        .args(["-c", PY_RATTLER, url.as_str(), &iterations.to_string()])
        .args(TYPICAL_SPECS)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "py-rattler failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let times = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (ms, n) = l.split_once(' ')?;
            Some((ms.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    Some((version, times))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The solve comparison, printed.
pub async fn solve_section(
    dir: &Path,
    records: usize,
    iterations: usize,
    py_rattler: bool,
) -> anyhow::Result<()> {
    let channel = dir.join("channel");
    let written = generate_channel(&channel, records)?;
    let size: u64 = ["linux-64", "noarch"]
        .iter()
        .filter_map(|s| std::fs::metadata(channel.join(s).join("repodata.json")).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "\nconda solve: {} asked for, against a local channel of {written} records ({:.1} MiB of repodata), strict channel priority",
        TYPICAL_SPECS.len(),
        size as f64 / (1024.0 * 1024.0)
    );
    let mut totals = Vec::new();
    let mut solves = Vec::new();
    let mut solved = 0;
    for _ in 0..iterations.max(1) {
        let (load, solve, n) = nbforge_solve(&channel).await?;
        totals.push((load + solve).as_secs_f64() * 1000.0);
        solves.push(solve.as_secs_f64() * 1000.0);
        solved = n;
    }
    println!(
        "  nbforge (rattler crates, in-process)   read + solve p50 {:>8.1} ms   solve alone p50 {:>8.1} ms   {solved} packages",
        median(totals.clone()),
        median(solves)
    );
    if py_rattler {
        match py_rattler_solves(&dir.join("py-rattler"), &channel, iterations.max(1)) {
            Some((version, times)) if !times.is_empty() => {
                let n = times[0].1;
                let ms: Vec<f64> = times.iter().map(|t| t.0).collect();
                let p = median(ms);
                println!(
                    "  py-rattler {version} (in its process)     read + solve p50 {p:>8.1} ms   {n} packages"
                );
                println!("  nbforge / py-rattler: {:.2}×", median(totals) / p);
            }
            _ => println!("  py-rattler: not available here"),
        }
        println!(
            "  conda-lock: not run (it needs conda, mamba or micromamba, which come from anaconda.org)"
        );
    }
    Ok(())
}

/// The package a rebuild adds, `nbforge-extra-<i>`.
pub fn extra_package(i: usize) -> Package {
    Package::python_module(
        &format!("nbforge-extra-{i}"),
        "1.0",
        &format!("nbforge_extra_{i}"),
        &format!("N = {i}\n"),
    )
}
