//! `launch.toml`, nbforge's own optional project file: what kind of project this is, its
//! default file, worksheets, resources, the time limit of worksheet runs and extra build
//! inputs. Parsing is strict: unknown keys
//! and bad values are errors carrying `launch.toml:line:column`.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Diagnostic;

/// The file name, at the repository root.
pub const LAUNCH_FILE: &str = "launch.toml";

/// How the project is presented when launched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectKind {
    #[default]
    Notebook,
    Worksheet,
    Dashboard,
    Shell,
}

/// One published worksheet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorksheetEntry {
    pub path: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The time limit of this worksheet's runs, in seconds (`timeout = "10m"`).
    pub timeout_secs: Option<u64>,
}

/// Resource requests for sessions.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Resources {
    /// Memory in bytes (written `"2G"`, `"512M"` in the file; suffixes are powers of 1024).
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
}

/// A parsed, validated `launch.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LaunchConfig {
    pub kind: ProjectKind,
    pub default: Option<String>,
    pub title: Option<String>,
    pub area: Option<String>,
    pub worksheets: Vec<WorksheetEntry>,
    pub resources: Resources,
    /// Extra paths or globs the environment depends on (`[build] inputs`).
    pub build_inputs: Vec<String>,
    /// The time limit of the project's worksheet runs, in seconds (`[runs] timeout`).
    pub run_timeout_secs: Option<u64>,
}

impl LaunchConfig {
    /// The time limit `launch.toml` sets for runs of the worksheet at `path`: its
    /// `[[worksheet]]` `timeout`, else `[runs] timeout`.
    pub fn run_timeout_secs(&self, path: &str) -> Option<u64> {
        self.worksheets
            .iter()
            .find(|w| w.path == path)
            .and_then(|w| w.timeout_secs)
            .or(self.run_timeout_secs)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLaunch {
    kind: Option<ProjectKind>,
    default: Option<Spanned<String>>,
    title: Option<String>,
    area: Option<String>,
    #[serde(default)]
    worksheet: Vec<RawWorksheet>,
    resources: Option<RawResources>,
    build: Option<RawBuild>,
    runs: Option<RawRuns>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuns {
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorksheet {
    path: Spanned<String>,
    title: Option<String>,
    description: Option<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    memory: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    #[serde(default)]
    inputs: Vec<Spanned<String>>,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn diag_at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Diagnostic {
    let (line, column) = line_col(text, offset);
    Diagnostic {
        file: file.to_owned(),
        line: Some(line),
        column: Some(column),
        message: message.into(),
    }
}

/// Parses a memory size: digits with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0)
}

/// Parses a duration: digits with an optional `s`, `m` or `h` suffix (seconds without
/// one), e.g. `"90s"`, `"10m"`, `"2h"`; at most 30 days, more than zero. In seconds.
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.chars().last()? {
        's' | 'S' => (&s[..s.len() - 1], 1u64),
        'm' | 'M' => (&s[..s.len() - 1], 60),
        'h' | 'H' => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|&n| n > 0 && n <= 30 * 24 * 3600)
}

/// Checks a repository-relative path (or glob) written by a user: relative, no `..`, no
/// backslashes or control characters.
pub fn check_repo_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.starts_with('/') {
        return Err(format!(
            "{p:?} is absolute; paths are relative to the repository root"
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!("{p:?} leaves the repository ('..' is not allowed)"));
    }
    if p.contains('\\') || p.chars().any(char::is_control) {
        return Err(format!("{p:?} contains a backslash or control character"));
    }
    Ok(())
}

/// Parses and validates `launch.toml` text. All problems found are returned, each with
/// line:column.
pub fn parse(text: &str) -> Result<LaunchConfig, Vec<Diagnostic>> {
    let raw: RawLaunch = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_owned();
            return Err(vec![diag_at(LAUNCH_FILE, text, offset, msg)]);
        }
    };
    let mut errors = Vec::new();
    let path_field = |errors: &mut Vec<Diagnostic>, sp: &Spanned<String>, what: &str| {
        if let Err(m) = check_repo_path(sp.get_ref()) {
            errors.push(diag_at(
                LAUNCH_FILE,
                text,
                sp.span().start,
                format!("{what}: {m}"),
            ));
        }
    };
    if let Some(d) = &raw.default {
        path_field(&mut errors, d, "default");
    }
    for w in &raw.worksheet {
        path_field(&mut errors, &w.path, "worksheet path");
    }
    for i in raw.build.iter().flat_map(|b| &b.inputs) {
        path_field(&mut errors, i, "build input");
        if let Err(e) = globset::Glob::new(i.get_ref()) {
            errors.push(diag_at(
                LAUNCH_FILE,
                text,
                i.span().start,
                format!("build input: bad glob: {e}"),
            ));
        }
    }
    let timeout = |errors: &mut Vec<Diagnostic>, sp: &Option<Spanned<String>>, what: &str| {
        let sp = sp.as_ref()?;
        let secs = parse_duration_secs(sp.get_ref());
        if secs.is_none() {
            errors.push(diag_at(
                LAUNCH_FILE,
                text,
                sp.span().start,
                format!(
                    "{what}: {:?} is not a time like \"90s\", \"10m\" or \"2h\" (at most 30 days)",
                    sp.get_ref()
                ),
            ));
        }
        secs
    };
    let run_timeout_secs = raw
        .runs
        .as_ref()
        .and_then(|r| timeout(&mut errors, &r.timeout, "runs.timeout"));
    let worksheet_timeouts: Vec<Option<u64>> = raw
        .worksheet
        .iter()
        .map(|w| timeout(&mut errors, &w.timeout, "worksheet timeout"))
        .collect();
    let mut resources = Resources::default();
    if let Some(r) = &raw.resources {
        if let Some(m) = &r.memory {
            match parse_memory(m.get_ref()) {
                Some(n) => resources.memory = Some(n),
                None => errors.push(diag_at(
                    LAUNCH_FILE,
                    text,
                    m.span().start,
                    format!(
                        "resources.memory: {:?} is not a size like \"512M\" or \"2G\"",
                        m.get_ref()
                    ),
                )),
            }
        }
        if let Some(c) = &r.cpus {
            let v = *c.get_ref();
            if v.is_finite() && v > 0.0 && v <= 1024.0 {
                resources.cpus = Some(v);
            } else {
                errors.push(diag_at(
                    LAUNCH_FILE,
                    text,
                    c.span().start,
                    "resources.cpus: must be a number above 0 and at most 1024",
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LaunchConfig {
        kind: raw.kind.unwrap_or_default(),
        default: raw.default.map(Spanned::into_inner),
        title: raw.title,
        area: raw.area,
        worksheets: raw
            .worksheet
            .into_iter()
            .zip(worksheet_timeouts)
            .map(|(w, timeout_secs)| WorksheetEntry {
                path: w.path.into_inner(),
                title: w.title,
                description: w.description,
                timeout_secs,
            })
            .collect(),
        resources,
        build_inputs: raw
            .build
            .map(|b| b.inputs.into_iter().map(Spanned::into_inner).collect())
            .unwrap_or_default(),
        run_timeout_secs,
    })
}

#[cfg(test)]
mod tests {
    use crate::spec::testing::*;
    use crate::spec::{self};

    use super::*;

    #[test]
    fn full_file_parses() {
        let cfg = parse(
            r#"kind = "worksheet"
default = "index.ipynb"
title = "Growth curves"
area = "microbiology"

[[worksheet]]
path = "growth.ipynb"
title = "Fit a growth curve"

[resources]
memory = "2G"
cpus = 1.5

[build]
inputs = ["data/schema.json", "lib/**/*.py"]
"#,
        )
        .unwrap();
        assert_eq!(cfg.kind, ProjectKind::Worksheet);
        assert_eq!(cfg.worksheets[0].path, "growth.ipynb");
        assert_eq!(cfg.resources.memory, Some(2 << 30));
        assert_eq!(cfg.resources.cpus, Some(1.5));
        assert_eq!(cfg.build_inputs.len(), 2);
    }

    #[test]
    fn unknown_key_has_line_and_column() {
        let errs = parse("kind = \"notebook\"\n\n[resources]\nmemroy = \"2G\"\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (Some(4), Some(1)));
        assert!(errs[0].message.contains("memroy"), "{}", errs[0].message);
    }

    #[test]
    fn bad_values_are_all_reported() {
        let errs = parse(
            "[resources]\nmemory = \"lots\"\ncpus = -1.0\n[build]\ninputs = [\"../secret\"]\n",
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("launch.toml:5:") && t.contains(".."))
        );
        assert!(text.iter().any(|t| t.starts_with("launch.toml:2:10")));
    }

    #[test]
    fn wrong_kind_value() {
        let errs = parse("kind = \"webapp\"\n").unwrap_err();
        assert_eq!(errs[0].line, Some(1));
        assert!(errs[0].message.contains("webapp") || errs[0].message.contains("variant"));
    }

    #[test]
    fn run_time_limits() {
        let cfg = parse(
            "[runs]\ntimeout = \"20m\"\n\n[[worksheet]]\npath = \"long.ipynb\"\ntimeout = \"2h\"\n\n[[worksheet]]\npath = \"short.ipynb\"\n",
        )
        .unwrap();
        assert_eq!(cfg.run_timeout_secs("long.ipynb"), Some(7200));
        assert_eq!(cfg.run_timeout_secs("short.ipynb"), Some(1200));
        assert_eq!(cfg.run_timeout_secs("other.ipynb"), Some(1200));
        assert_eq!(parse("").unwrap().run_timeout_secs("a.ipynb"), None);
        let errs = parse(
            "[[worksheet]]\npath = \"a.ipynb\"\ntimeout = \"soon\"\n[runs]\ntimeout = \"0s\"\n",
        )
        .unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.starts_with("launch.toml:3:11:") && t.contains("soon"))
        );
        assert!(text.iter().any(|t| t.starts_with("launch.toml:5:11:")));
        assert_eq!(parse_duration_secs("90"), Some(90));
        assert_eq!(parse_duration_secs("90s"), Some(90));
        assert_eq!(parse_duration_secs("1.5h"), None);
        assert_eq!(parse_duration_secs("31d"), None);
        assert_eq!(parse_duration_secs("999999h"), None);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Some(512 << 20));
        assert_eq!(parse_memory("1024"), Some(1024));
        assert_eq!(parse_memory("2.5G"), None);
        assert_eq!(parse_memory("G"), None);
        assert_eq!(parse_memory("0"), None);
        assert_eq!(parse_memory("99999999999999T"), None);
    }

    #[test]
    fn deeply_nested_launch_toml_is_refused() {
        // The toml parser stops at its recursion limit with an error: nested arrays, inline
        // tables and dotted keys in a hostile launch.toml cannot overflow the stack.
        let levels = 100_000;
        let texts = [
            format!("title = {}1{}\n", "[".repeat(levels), "]".repeat(levels)),
            format!(
                "title = {}1{}\n",
                "{a = ".repeat(levels),
                "}".repeat(levels)
            ),
            format!("{}= 1\n", "a.".repeat(levels)),
            format!("[{}a]\n", "a.".repeat(levels)),
        ];
        for text in texts {
            let errors = parse(&text).unwrap_err();
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].line, Some(1), "{}", errors[0]);
        }
    }

    #[test]
    fn spec_launch_toml_errors_have_positions() {
        let e = err_text(&[("launch.toml", "kind = \"worksheet\"\ncolour = \"red\"\n")]);
        assert!(e.starts_with("launch.toml:2:1:"), "{e}");
        let e = err_text(&[(
            "launch.toml",
            "[build]\ninputs = [\"ok.txt\", \"../../etc/passwd\"]\n",
        )]);
        assert!(
            e.starts_with("launch.toml:2:21:") && e.contains(".."),
            "{e}"
        );
        let e = err_text(&[("launch.toml", "[build]\ninputs = [\"/etc/passwd\"]\n")]);
        assert!(e.contains("absolute"), "{e}");
        let e = err_text(&[("launch.toml", "[[worksheet]]\ntitle = \"no path\"\n")]);
        assert!(e.contains("path"), "{e}");
        let a = ok(&[(
            "launch.toml",
            "kind = \"dashboard\"\ndefault = \"app.ipynb\"\n",
        )]);
        assert_eq!(a.launch.unwrap().kind, spec::ProjectKind::Dashboard);
        let w = ok(&[
            ("requirements.txt", "x\n"),
            ("data/a.csv", "1"),
            (
                "launch.toml",
                "[build]\ninputs = [\"nothere.txt\", \"*.tsv\", \"data/*.csv\"]\n",
            ),
        ]);
        assert!(
            w.inputs.contains(&"data/a.csv".to_owned()),
            "{:?}",
            w.inputs
        );
        let unmatched = w
            .warnings
            .iter()
            .filter(|m| m.contains("matches no file"))
            .count();
        assert_eq!(unmatched, 2, "{:?}", w.warnings);
    }
}
