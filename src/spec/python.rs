//! Which Python an image gets. nbforge provides a Python minor version by starting the image
//! from a base made from the Debian release that ships it (bullseye 3.9, bookworm 3.11,
//! trixie 3.13; `NBFORGE_PYTHON_BASES`), so `python3` in the image is Debian's build of the
//! version asked for. A version no base provides fails the analysis with a clear message
//! ([`PythonMismatch::Fail`], the default) or, with [`PythonMismatch::Warn`], is built with
//! the default base's Python and a warning.

use serde::Serialize;

use super::{Kind, Options};

/// The documentation section on Python versions, named in messages.
pub const PYTHON_DOCS: &str = "docs/environments.md#python-versions";

/// The Debian release each Python minor version comes from, unless configured.
pub const DEFAULT_PYTHON_SUITES: &[(&str, &str)] = &[
    ("3.9", "bullseye"),
    ("3.11", "bookworm"),
    ("3.13", "trixie"),
];

/// What to do when a repository asks for a Python no base image provides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PythonMismatch {
    /// The environment is not built; the status says which versions there are.
    #[default]
    Fail,
    /// Built with the default base image's Python, with a warning.
    Warn,
}

impl std::str::FromStr for PythonMismatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(PythonMismatch::Fail),
            "warn" => Ok(PythonMismatch::Warn),
            other => Err(format!("`{other}` is neither fail nor warn")),
        }
    }
}

/// A Python nbforge provides: its minor version, the Debian suite that ships it and the base
/// image made from that suite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PythonBase {
    pub python: String,
    pub suite: String,
    pub image: String,
}

/// Parses `3.9=bullseye,3.11=bookworm`: Python minor versions and Debian suites.
pub fn parse_suites(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((python, suite)) = item.split_once('=') else {
            return Err(format!("`{item}` is not VERSION=SUITE, e.g. 3.9=bullseye"));
        };
        let (python, suite) = (python.trim(), suite.trim());
        let parts: Vec<&str> = python.split('.').collect();
        if parts.len() != 2
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("`{python}` is not a Python version like 3.9"));
        }
        if suite.is_empty()
            || !suite
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("`{suite}` is not a Debian suite like bullseye"));
        }
        if out.iter().any(|(p, _)| p == python) {
            return Err(format!("Python {python} is named twice"));
        }
        out.push((python.to_owned(), suite.to_owned()));
    }
    Ok(out)
}

/// The base image of each Python: the configured base image's name with the suite as its
/// tag (`nbforge/base:bookworm` → `nbforge/base:bullseye`); the base image itself where its
/// tag is the suite.
pub fn bases(base_image: &str, suites: &[(String, String)]) -> Vec<PythonBase> {
    let (repo, tag) = split_tag(base_image);
    suites
        .iter()
        .map(|(python, suite)| PythonBase {
            python: python.clone(),
            suite: suite.clone(),
            image: if tag == Some(suite.as_str()) {
                base_image.to_owned()
            } else {
                format!("{repo}:{suite}")
            },
        })
        .collect()
}

/// The default bases for a base image name.
pub fn default_bases(base_image: &str) -> Vec<PythonBase> {
    let suites: Vec<(String, String)> = DEFAULT_PYTHON_SUITES
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    bases(base_image, &suites)
}

/// The Python of the base image named `base_image` by the table, if it is one of them.
pub fn python_of(bases: &[PythonBase], base_image: &str) -> Option<String> {
    bases
        .iter()
        .find(|b| b.image == base_image)
        .map(|b| b.python.clone())
}

/// `repo:tag` split at the tag's colon (not a registry port's).
fn split_tag(image: &str) -> (&str, Option<&str>) {
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (image, None),
    }
}

fn minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The Python and base image chosen for an analysis.
#[derive(Debug)]
pub(super) struct Choice {
    pub image_python: String,
    pub base_image: String,
    pub warning: Option<String>,
    /// The version asked for is not provided and the policy is to fail: the reason.
    pub unavailable: Option<String>,
}

/// Chooses the base for a generated image. `want` is the Python the analysis reports;
/// `asked_in` the file that names it (`None` when the repository names no minor version,
/// which gets the default Python's base where there is one, else the default base).
pub(super) fn choose(kind: Kind, want: &str, asked_in: Option<&str>, opts: &Options) -> Choice {
    let default = Choice {
        image_python: opts.base_python.clone(),
        base_image: opts.base_image.clone(),
        warning: None,
        unavailable: None,
    };
    let found = opts.python_bases.iter().find(|b| b.python == minor(want));
    // R comes from the default base's Debian release: its Python is kept.
    if kind == Kind::R {
        return match asked_in {
            Some(_) if minor(want) != minor(&opts.base_python) => Choice {
                warning: Some(format!(
                    "Python {want} was asked for, but R environments are built on the default \
                     base image, whose Python is {}; the environment is built with Python {}",
                    opts.base_python, opts.base_python
                )),
                ..default
            },
            _ => default,
        };
    }
    let Some(file) = asked_in else {
        return match found {
            Some(b) => Choice {
                image_python: b.python.clone(),
                base_image: b.image.clone(),
                warning: None,
                unavailable: None,
            },
            None => default,
        };
    };
    if let Some(b) = found {
        return Choice {
            image_python: b.python.clone(),
            base_image: b.image.clone(),
            warning: None,
            unavailable: None,
        };
    }
    let have = opts
        .python_bases
        .iter()
        .map(|b| b.python.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match opts.python_mismatch {
        PythonMismatch::Fail => Choice {
            unavailable: Some(format!(
                "{file} asks for Python {want}, which nbforge does not provide here (it has \
                 {have}; see {PYTHON_DOCS}): ask for one of those"
            )),
            ..default
        },
        PythonMismatch::Warn => Choice {
            warning: Some(format!(
                "{file} asks for Python {want}, which nbforge does not provide here (it has \
                 {have}); the environment is built with Python {} (NBFORGE_PYTHON_MISMATCH=warn)",
                opts.base_python
            )),
            ..default
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mismatch: PythonMismatch) -> Options {
        Options {
            python_mismatch: mismatch,
            ..Options::default()
        }
    }

    #[test]
    fn bases_are_named_after_the_base_image() {
        let b = default_bases("nbforge/base:bookworm");
        let names: Vec<(&str, &str)> = b
            .iter()
            .map(|b| (b.python.as_str(), b.image.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("3.9", "nbforge/base:bullseye"),
                ("3.11", "nbforge/base:bookworm"),
                ("3.13", "nbforge/base:trixie"),
            ]
        );
        let b = default_bases("registry.example.org:5000/nbforge/base:bookworm");
        assert_eq!(
            b[0].image,
            "registry.example.org:5000/nbforge/base:bullseye"
        );
        assert_eq!(
            b[1].image,
            "registry.example.org:5000/nbforge/base:bookworm"
        );
        let b = default_bases("registry.example.org:5000/base");
        assert_eq!(b[0].image, "registry.example.org:5000/base:bullseye");
        assert_eq!(
            python_of(&default_bases("x/b:trixie"), "x/b:trixie").as_deref(),
            Some("3.13")
        );
    }

    #[test]
    fn suites_parse_and_refuse_nonsense() {
        assert_eq!(
            parse_suites(" 3.9=bullseye, 3.14=forky ").unwrap(),
            [
                ("3.9".to_owned(), "bullseye".to_owned()),
                ("3.14".to_owned(), "forky".to_owned())
            ]
        );
        for bad in [
            "3.9",
            "3=bullseye",
            "3.9=Bull seye",
            "3.9=a,3.9=b",
            "x.y=sid",
        ] {
            assert!(parse_suites(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn asked_versions_get_their_base_or_a_clear_refusal() {
        let o = opts(PythonMismatch::Fail);
        let c = choose(Kind::Python, "3.9", Some("runtime.txt"), &o);
        assert_eq!(
            (c.image_python.as_str(), c.base_image.as_str()),
            ("3.9", "nbforge/base:bullseye")
        );
        assert!(c.warning.is_none() && c.unavailable.is_none());
        let c = choose(Kind::Pipfile, "3.13", Some("Pipfile"), &o);
        assert_eq!(c.base_image, "nbforge/base:trixie");

        let c = choose(Kind::Python, "3.6", Some("runtime.txt"), &o);
        let why = c.unavailable.unwrap();
        assert!(
            why.contains("runtime.txt asks for Python 3.6")
                && why.contains("3.9, 3.11, 3.13")
                && why.contains(PYTHON_DOCS),
            "{why}"
        );

        let c = choose(
            Kind::Python,
            "3.6",
            Some("runtime.txt"),
            &opts(PythonMismatch::Warn),
        );
        assert!(c.unavailable.is_none());
        assert_eq!(
            (c.image_python.as_str(), c.base_image.as_str()),
            ("3.11", "nbforge/base:bookworm")
        );
        assert!(c.warning.unwrap().contains("built with Python 3.11"));

        // Nothing asked: the default Python's base, else the default base, silently.
        let c = choose(Kind::Python, "3.10", None, &o);
        assert_eq!(
            (c.image_python.as_str(), c.base_image.as_str()),
            ("3.11", "nbforge/base:bookworm")
        );
        assert!(c.warning.is_none() && c.unavailable.is_none());
        let c = choose(Kind::Python, "3.9", None, &o);
        assert_eq!(c.base_image, "nbforge/base:bullseye");

        // R stays on the default base and warns.
        let c = choose(Kind::R, "3.9", Some("runtime.txt"), &o);
        assert_eq!(c.base_image, "nbforge/base:bookworm");
        assert!(c.unavailable.is_none() && c.warning.is_some());
    }

    /// Through detection: which file names the version, what names none, and the
    /// generated Dockerfile's base.
    #[test]
    fn detection_picks_the_base_of_the_asked_python() {
        use crate::spec::testing::{analyze_at, write};
        let at = |files: &[(&str, &str)]| {
            let tmp = tempfile::tempdir().unwrap();
            write(tmp.path(), files);
            analyze_at(tmp.path(), &Options::default()).unwrap()
        };
        let a = at(&[("runtime.txt", "python-3.9\n"), ("requirements.txt", "x\n")]);
        assert_eq!(a.base_image.as_deref(), Some("nbforge/base:bullseye"));
        assert!(a.unsupported.is_none());
        let d = a.dockerfile(&Options::default()).unwrap();
        assert!(d.contains("\nFROM nbforge/base:bullseye\n"), "{d}");

        // `python-3` names no minor version: the default base, no warning, buildable.
        let a = at(&[("runtime.txt", "python-3\n")]);
        assert_eq!(a.python_version.as_deref(), Some("3.10"));
        assert_eq!(a.image_python.as_deref(), Some("3.11"));
        assert!(
            a.unsupported.is_none() && a.warnings.is_empty(),
            "{:?}",
            a.warnings
        );

        let a = at(&[
            ("Pipfile", "[requires]\npython_version = \"3.13\"\n"),
            (
                "Pipfile.lock",
                "{\"_meta\": {\"requires\": {\"python_version\": \"3.12\"}}}\n",
            ),
        ]);
        let why = a.unsupported.unwrap_or_default();
        assert!(
            why.starts_with("Pipfile.lock asks for Python 3.12"),
            "{why}"
        );
        let a = at(&[("Pipfile", "[requires]\npython_version = \"3.13\"\n")]);
        assert_eq!(a.base_image.as_deref(), Some("nbforge/base:trixie"));

        // Python 2 is not provided either.
        let a = at(&[("runtime.txt", "python-2.7\n")]);
        assert!(a.unsupported.unwrap_or_default().contains("Python 2.7"));

        // The key follows the base: another Python, another key.
        let k39 = at(&[("runtime.txt", "python-3.9\n")]).environment_key;
        let k313 = at(&[("runtime.txt", "python-3.13\n")]).environment_key;
        assert_ne!(k39, k313);
        assert_eq!(k39, at(&[("runtime.txt", "python-3.9\n")]).environment_key);
    }
}
