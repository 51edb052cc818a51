//! repo2docker's detection rules, one small repository per rule: the environment kind, the
//! Python version and the spec folder nbforge decides, next to what repo2docker decides. Rows
//! where nbforge differs on purpose name the difference, and each is listed in the table of
//! differences in docs/launch-spec.md.

use std::path::Path;

use nbforge::repo::DirTree;
use nbforge::spec::{self, Options};

/// What a repository's detection gives: kind, Python version, spec folder; or an error.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Env {
        kind: &'static str,
        python: Option<&'static str>,
        dir: Option<&'static str>,
    },
    Error(&'static str),
}

const fn env(kind: &'static str, python: Option<&'static str>) -> Outcome {
    Outcome::Env {
        kind,
        python,
        dir: None,
    }
}

const fn env_in(kind: &'static str, python: Option<&'static str>, dir: &'static str) -> Outcome {
    Outcome::Env {
        kind,
        python,
        dir: Some(dir),
    }
}

struct Rule {
    rule: &'static str,
    files: &'static [(&'static str, &'static str)],
    nbforge: Outcome,
    /// repo2docker's outcome where it differs, with the difference's name in the docs table.
    repo2docker: Option<(Outcome, &'static str)>,
}

const P310: Option<&str> = Some("3.10");

fn rules() -> Vec<Rule> {
    let same = |rule, files, nbforge| Rule {
        rule,
        files,
        nbforge,
        repo2docker: None,
    };
    vec![
        // The Python pack and its Python versions.
        same(
            "nothing at all: the default pack and Python",
            &[("README.md", "hi\n")],
            env("python", P310),
        ),
        same(
            "requirements.txt",
            &[("requirements.txt", "numpy\n")],
            env("python", P310),
        ),
        same(
            "runtime.txt python-X.Y",
            &[
                ("runtime.txt", "python-3.11\n"),
                ("requirements.txt", "numpy\n"),
            ],
            env("python", Some("3.11")),
        ),
        same(
            "runtime.txt major only python-3: the default minor",
            &[("runtime.txt", "python-3\n")],
            env("python", P310),
        ),
        same(
            "runtime.txt python-2: 2.7",
            &[("runtime.txt", "python-2\n")],
            env("python", Some("2.7")),
        ),
        same(
            "runtime.txt old python-2.7",
            &[("runtime.txt", "python-2.7\n")],
            env("python", Some("2.7")),
        ),
        same(
            "runtime.txt old python-3.6",
            &[("runtime.txt", "python-3.6\n")],
            env("python", Some("3.6")),
        ),
        Rule {
            rule: "runtime.txt python-X.Y.Z",
            files: &[("runtime.txt", "python-3.12.1\n")],
            nbforge: env("python", Some("3.12")),
            repo2docker: Some((env("python", Some("3.12.1")), "python-X.Y.Z")),
        },
        same(
            "runtime.txt of another language: the default Python",
            &[("runtime.txt", "julia-1.9\n"), ("requirements.txt", "x\n")],
            env("python", P310),
        ),
        same(
            "runtime.txt without a version is an error",
            &[("runtime.txt", "python\n")],
            Outcome::Error("runtime.txt:1:1:"),
        ),
        same(
            "runtime.txt with a bad Python version is an error",
            &[("runtime.txt", "python-three\n")],
            Outcome::Error("runtime.txt:1:8:"),
        ),
        same(
            "setup.py at the root",
            &[("setup.py", "")],
            env("python", P310),
        ),
        same(
            "pyproject.toml at the root",
            &[("pyproject.toml", "[project]\nname = \"x\"\n")],
            env("python", P310),
        ),
        same(
            "apt.txt, postBuild and start alone",
            &[
                ("apt.txt", "curl\n"),
                ("postBuild", "#!/bin/sh\n"),
                ("start", "#!/bin/sh\nexec \"$@\"\n"),
            ],
            env("python", P310),
        ),
        // binder/ and .binder/.
        same(
            "binder/ hides root spec files",
            &[
                ("Dockerfile", "FROM x\n"),
                ("runtime.txt", "python-3.7\n"),
                ("binder/requirements.txt", "x\n"),
            ],
            env_in("python", P310, "binder"),
        ),
        same(
            "binder/runtime.txt, not the root one",
            &[
                ("runtime.txt", "python-3.7\n"),
                ("binder/runtime.txt", "python-3.9\n"),
            ],
            env_in("python", Some("3.9"), "binder"),
        ),
        same(
            "binder/Dockerfile",
            &[
                ("requirements.txt", "x\n"),
                ("binder/Dockerfile", "FROM x\n"),
            ],
            env_in("dockerfile", None, "binder"),
        ),
        same(
            ".binder/environment.yml",
            &[
                ("requirements.txt", "x\n"),
                (".binder/environment.yml", "dependencies: []\n"),
            ],
            env_in("conda", P310, ".binder"),
        ),
        same(
            "binder/ hides the root setup.py and DESCRIPTION",
            &[
                ("setup.py", ""),
                ("DESCRIPTION", "Package: x\n"),
                ("binder/apt.txt", "curl\n"),
            ],
            env_in("python", P310, "binder"),
        ),
        same(
            "binder/ and .binder/ together are an error",
            &[
                ("binder/requirements.txt", "x\n"),
                (".binder/requirements.txt", "y\n"),
            ],
            Outcome::Error(".binder/"),
        ),
        // Dockerfile first.
        same(
            "Dockerfile",
            &[("Dockerfile", "FROM x\n")],
            env("dockerfile", None),
        ),
        same(
            "Dockerfile beats every other file",
            &[
                ("Dockerfile", "FROM x\n"),
                ("Project.toml", ""),
                ("default.nix", "{}"),
                ("install.R", ""),
                ("environment.yml", ""),
                ("Pipfile", ""),
                ("requirements.txt", "x\n"),
                ("runtime.txt", "python-3.9\n"),
            ],
            env("dockerfile", None),
        ),
        // Julia and Nix: detected, not built (repo2docker's Julia packs are Python packs).
        same(
            "Project.toml",
            &[("Project.toml", "[deps]\n")],
            env("julia", P310),
        ),
        same(
            "JuliaProject.toml",
            &[("JuliaProject.toml", "[deps]\n")],
            env("julia", P310),
        ),
        same(
            "Project.toml beats REQUIRE",
            &[("Project.toml", ""), ("REQUIRE", "julia 1.0\n")],
            env("julia", P310),
        ),
        same(
            "REQUIRE",
            &[("REQUIRE", "julia 1.0\n")],
            env("julia-require", P310),
        ),
        same(
            "Julia with runtime.txt python-3.9",
            &[("Project.toml", ""), ("runtime.txt", "python-3.9\n")],
            env("julia", Some("3.9")),
        ),
        same("default.nix", &[("default.nix", "{ }\n")], env("nix", None)),
        same(
            "Julia beats Nix",
            &[("Project.toml", ""), ("default.nix", "{ }\n")],
            env("julia", P310),
        ),
        same(
            "Nix beats R and conda",
            &[
                ("default.nix", "{ }\n"),
                ("runtime.txt", "r-2023-06-01\n"),
                ("environment.yml", ""),
            ],
            env("nix", None),
        ),
        // R.
        same(
            "runtime.txt r-YYYY-MM-DD",
            &[("runtime.txt", "r-2023-06-01\n")],
            env("r", P310),
        ),
        same(
            "runtime.txt r-VERSION-YYYY-MM-DD",
            &[("runtime.txt", "r-4.1-2022-01-01\n"), ("install.R", "")],
            env("r", P310),
        ),
        same(
            "DESCRIPTION at the root",
            &[("DESCRIPTION", "Package: x\n")],
            env("r", P310),
        ),
        same(
            "R beats conda",
            &[
                ("runtime.txt", "r-2023-06-01\n"),
                ("environment.yml", "dependencies:\n  - python=3.9\n"),
            ],
            env("r", P310),
        ),
        same(
            "R beats Pipfile and requirements.txt",
            &[
                ("DESCRIPTION", "Package: x\n"),
                ("Pipfile", ""),
                ("requirements.txt", "x\n"),
            ],
            env("r", P310),
        ),
        same(
            "runtime.txt r-… with a bad date is an error",
            &[("runtime.txt", "r-2023-13-01\n")],
            Outcome::Error("runtime.txt:1:1:"),
        ),
        Rule {
            rule: "runtime.txt r-VERSION without a date",
            files: &[("runtime.txt", "r-4.2\n")],
            nbforge: env("r", P310),
            repo2docker: Some((env("python", P310), "R without a snapshot date")),
        },
        Rule {
            rule: "install.R without runtime.txt",
            files: &[("install.R", "install.packages('jsonlite')\n")],
            nbforge: env("r", P310),
            repo2docker: Some((env("python", P310), "R without a snapshot date")),
        },
        Rule {
            rule: "install.R with runtime.txt python-X.Y",
            files: &[("install.R", ""), ("runtime.txt", "python-3.9\n")],
            nbforge: env("r", Some("3.9")),
            repo2docker: Some((env("python", Some("3.9")), "R without a snapshot date")),
        },
        // Conda.
        same(
            "environment.yml without python: the default",
            &[("environment.yml", "dependencies:\n  - numpy\n")],
            env("conda", P310),
        ),
        same(
            "environment.yml python=X.Y",
            &[(
                "environment.yml",
                "dependencies:\n  - python=3.9\n  - numpy\n",
            )],
            env("conda", Some("3.9")),
        ),
        same(
            "environment.yml python==X.Y.Z",
            &[("environment.yml", "dependencies:\n  - python==3.8.5\n")],
            env("conda", Some("3.8")),
        ),
        same(
            "environment.yml python=3: the default minor",
            &[("environment.yml", "dependencies:\n  - python=3\n")],
            env("conda", P310),
        ),
        same(
            "environment.yml python>=X.Y is not a pin",
            &[("environment.yml", "dependencies:\n  - python>=3.9\n")],
            env("conda", P310),
        ),
        same(
            "environment.yml ignores runtime.txt",
            &[
                ("environment.yml", "dependencies: []\n"),
                ("runtime.txt", "python-3.7\n"),
            ],
            env("conda", P310),
        ),
        same(
            "environment.yml beats Pipfile and requirements.txt",
            &[
                ("environment.yml", ""),
                ("Pipfile", ""),
                ("requirements.txt", "x\n"),
            ],
            env("conda", P310),
        ),
        Rule {
            rule: "environment.yaml is read when there is no environment.yml",
            files: &[("environment.yaml", "dependencies:\n  - python=3.9\n")],
            nbforge: env("conda", Some("3.9")),
            repo2docker: Some((env("python", P310), "conda locks and pixi")),
        },
        same(
            "environment.yml as an @EXPLICIT list",
            &[(
                "environment.yml",
                "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/python-3.9.18-h0755675_1_cpython.conda\n",
            )],
            env("conda", Some("3.9")),
        ),
        Rule {
            rule: "conda-linux-64.lock alone",
            files: &[(
                "conda-linux-64.lock",
                "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/python-3.12.1-hab00c5b_1_cpython.conda\n",
            )],
            nbforge: env("conda", Some("3.12")),
            repo2docker: Some((env("python", P310), "conda locks and pixi")),
        },
        Rule {
            rule: "conda-linux-64.lock beats environment.yml and requirements.txt",
            files: &[
                (
                    "conda-linux-64.lock",
                    "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/python-3.11.7-hab00c5b_1_cpython.conda\n",
                ),
                ("environment.yml", "dependencies:\n  - python=3.9\n"),
                ("requirements.txt", "numpy\n"),
            ],
            nbforge: env("conda", Some("3.11")),
            repo2docker: Some((env("conda", Some("3.9")), "conda locks and pixi")),
        },
        Rule {
            rule: "pixi.toml without its pixi.lock",
            files: &[("pixi.toml", "[workspace]\nchannels = [\"conda-forge\"]\n")],
            nbforge: env("conda", P310),
            repo2docker: Some((env("python", P310), "conda locks and pixi")),
        },
        // Pipfile.
        same(
            "Pipfile without a version: the default",
            &[("Pipfile", "[packages]\nrequests = \"*\"\n")],
            env("pipfile", P310),
        ),
        same(
            "Pipfile [requires] python_version",
            &[("Pipfile", "[requires]\npython_version = \"3.9\"\n")],
            env("pipfile", Some("3.9")),
        ),
        same(
            "Pipfile python_full_version",
            &[("Pipfile", "[requires]\npython_full_version = \"3.8.10\"\n")],
            env("pipfile", Some("3.8")),
        ),
        same(
            "Pipfile.lock alone",
            &[(
                "Pipfile.lock",
                "{\"_meta\": {\"requires\": {\"python_version\": \"3.8\"}}}",
            )],
            env("pipfile", Some("3.8")),
        ),
        same(
            "Pipfile.lock's version beats Pipfile's",
            &[
                ("Pipfile", "[requires]\npython_version = \"3.9\"\n"),
                (
                    "Pipfile.lock",
                    "{\"_meta\": {\"requires\": {\"python_version\": \"3.7\"}}}",
                ),
            ],
            env("pipfile", Some("3.7")),
        ),
        same(
            "Pipfile ignores runtime.txt",
            &[("Pipfile", ""), ("runtime.txt", "python-3.7\n")],
            env("pipfile", P310),
        ),
        same(
            "Pipfile beats requirements.txt",
            &[("Pipfile", ""), ("requirements.txt", "x\n")],
            env("pipfile", P310),
        ),
    ]
}

fn outcome(root: &Path) -> Result<(String, Option<String>, Option<String>), String> {
    match spec::analyze(&DirTree::new(root), &Options::default()) {
        Ok(a) => Ok((a.kind.as_str().to_owned(), a.python_version, a.spec_dir)),
        Err(e) => Err(e
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

fn matches(got: &Result<(String, Option<String>, Option<String>), String>, want: &Outcome) -> bool {
    match (got, want) {
        (Ok((k, p, d)), Outcome::Env { kind, python, dir }) => {
            k == kind && p.as_deref() == *python && d.as_deref() == *dir
        }
        (Err(text), Outcome::Error(needle)) => text.contains(needle),
        _ => false,
    }
}

#[test]
fn detection_follows_repo2docker_rule_by_rule() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/launch-spec.md"))
            .unwrap();
    let mut failures = Vec::new();
    let rules = rules();
    for r in &rules {
        let tmp = tempfile::tempdir().unwrap();
        for (path, content) in r.files {
            let p = tmp.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let got = outcome(tmp.path());
        if !matches(&got, &r.nbforge) {
            failures.push(format!("{}: expected {:?}, got {got:?}", r.rule, r.nbforge));
        }
        if let Some((theirs, difference)) = &r.repo2docker {
            assert_ne!(&r.nbforge, theirs, "{}: not a difference", r.rule);
            assert!(
                docs.contains(&format!("| {difference} |")),
                "{}: the difference {difference:?} is not in the table of docs/launch-spec.md",
                r.rule
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(rules.len() > 40);
}
