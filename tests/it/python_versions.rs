//! The Python a repository asks for: `runtime.txt` `python-3.9` is built on the base made
//! from Debian bullseye, whose `python3` (the kernel's) is 3.9 as `nbforge spec` says; a
//! version no base provides fails with a clear status, or with
//! `NBFORGE_PYTHON_MISMATCH=warn` is built with the base image's Python and a warning.
//!
//! The bullseye base is made once per test run by `scripts/test`
//! (`nbforge base-image --python 3.9`), like the bookworm base; these tests only look for it.

use std::path::Path;
use std::process::{Command, Output};

use nbforge::config::Settings;
use nbforge::environment::base::{BASE_VERSION, LABEL_BASE};

use crate::support::fake_gitlab::FakeGitLab;
use crate::support::{Backend, TestApp, missing_service};

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The base image of Python `python` as `nbforge base-image --python` makes it, or `None`
/// (after saying why).
fn base_of(python: &str) -> Option<String> {
    let settings = Settings::for_database("sqlite::memory:");
    let base = settings
        .environments
        .python_bases
        .iter()
        .find(|b| b.python == python)
        .expect("a default base of that Python")
        .image
        .clone();
    let (ok, label) = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{LABEL_BASE}\"}}}}"),
        &base,
    ]);
    if !ok || label.trim() != BASE_VERSION {
        missing_service(&format!(
            "the base image {base} at version {BASE_VERSION} (nbforge base-image --python {python})"
        ));
        return None;
    }
    Some(base)
}

fn nbforge(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbforge"));
    cmd.args(args)
        .arg(dir)
        .env("NBFORGE_IMAGE_PREFIX", "nbforge-test")
        .env_remove("NBFORGE_PYTHON_MISMATCH")
        .env_remove("NBFORGE_PYTHON_BASES");
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Ok(ca) = std::env::var("NBFORGE_EXTRA_CA_CERTS") {
        cmd.env("NBFORGE_EXTRA_CA_CERTS", ca);
    }
    cmd.output().expect("nbforge runs")
}

fn spec_json(dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let out = nbforge(&["spec", "--json"], dir, env);
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (out.status.code(), json)
}

/// Executes a notebook with the image's default kernel as uid 1000 and returns the output
/// notebook's text.
fn execute_notebook(image: &str, source: &str) -> (bool, String) {
    let notebook = serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "execution_count": null, "outputs": [],
                   "source": source}]
    })
    .to_string();
    let script = format!(
        "cat > /tmp/t.ipynb <<'EOF'\n{notebook}\nEOF\njupyter execute --output=/tmp/out /tmp/t.ipynb 2>&1 && cat /tmp/out.ipynb"
    );
    docker(&["run", "--rm", "--user", "1000", image, "sh", "-c", &script])
}

/// `runtime.txt` `python-3.9` with a requirement that has compiled wheels per Python: the
/// image's `python3` is 3.9, as `nbforge spec` reports, its notebooks run in 3.9 and import
/// the 3.9 build of the package; the same spec keeps its key, another Python changes it.
#[test]
fn python_3_9_is_built_on_bullseye_and_notebooks_run_in_it() {
    let Some(base) = base_of("3.9") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runtime.txt"), "python-3.9\n").unwrap();
    // A unique comment makes this run's key new, so it really builds.
    std::fs::write(
        dir.path().join("requirements.txt"),
        format!("# run {}\nmarkupsafe==2.1.5\n", uuid::Uuid::new_v4()),
    )
    .unwrap();

    let (code, spec) = spec_json(dir.path(), &[]);
    assert_eq!(code, Some(0), "{spec}");
    assert_eq!(spec["python_version"], "3.9", "{spec}");
    assert_eq!(spec["image_python"], "3.9", "{spec}");
    assert_eq!(spec["base_image"], base.as_str(), "{spec}");
    assert!(
        spec["warnings"].as_array().unwrap().is_empty(),
        "no warning: {spec}"
    );
    let key = spec["environment_key"].as_str().unwrap().to_owned();

    let tag = format!("nbforge-test/py39:{}", uuid::Uuid::new_v4().simple());
    let out = nbforge(&["build", "--tag", &tag], dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let (ok, version) = docker(&[
        "run",
        "--rm",
        "--user",
        "1000",
        &tag,
        "python3",
        "--version",
    ]);
    let (executed_ok, executed) = execute_notebook(
        &tag,
        "import sys, markupsafe._speedups as s\nprint('python', '%d.%d' % sys.version_info[:2], sys.executable, s.__file__)",
    );
    let _ = docker(&["image", "rm", "-f", &tag]);
    assert!(ok && version.starts_with("Python 3.9."), "{version}");
    assert!(executed_ok, "{executed}");
    assert!(
        executed.contains("python 3.9 /srv/venv/bin/python")
            && executed.contains("cpython-39-x86_64-linux-gnu.so"),
        "the notebook's kernel is the environment's Python 3.9 and imports the 3.9 wheel: {executed}"
    );

    // Same runtime.txt, same key; another Python, another key.
    let (_, again) = spec_json(dir.path(), &[]);
    assert_eq!(again["environment_key"], key.as_str());
    std::fs::write(dir.path().join("runtime.txt"), "python-3.11\n").unwrap();
    let (_, other) = spec_json(dir.path(), &[]);
    assert_ne!(other["environment_key"], key.as_str(), "{other}");
    assert_eq!(other["image_python"], "3.11", "{other}");
}

/// A Python no base provides: `nbforge spec` and `nbforge build` refuse it naming the
/// versions there are; with `NBFORGE_PYTHON_MISMATCH=warn` it builds with the base image's
/// Python 3.11 and a warning.
#[test]
fn unavailable_python_fails_clearly_or_warns_and_builds_with_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runtime.txt"), "python-3.6\n").unwrap();
    std::fs::write(
        dir.path().join("requirements.txt"),
        format!("# run {}\ntomli-w\n", uuid::Uuid::new_v4()),
    )
    .unwrap();

    let (code, spec) = spec_json(dir.path(), &[]);
    assert_eq!(code, Some(3), "valid but not buildable: {spec}");
    let message = spec["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("runtime.txt asks for Python 3.6")
            && message.contains("3.9, 3.11, 3.13")
            && message.contains(nbforge::spec::python::PYTHON_DOCS),
        "{spec}"
    );
    let out = nbforge(&["build"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("runtime.txt asks for Python 3.6"),
        "{}",
        text(&out)
    );

    let warn = [("NBFORGE_PYTHON_MISMATCH", "warn")];
    let (code, spec) = spec_json(dir.path(), &warn);
    assert_eq!(code, Some(0), "{spec}");
    assert_eq!(spec["image_python"], "3.11", "{spec}");
    assert!(
        spec["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("built with Python 3.11"),
        "{spec}"
    );

    let Some(_) = base_of("3.11") else {
        return;
    };
    let tag = format!("nbforge-test/py36:{}", uuid::Uuid::new_v4().simple());
    let out = nbforge(&["build", "--tag", &tag], dir.path(), &warn);
    let (ok, version) = docker(&[
        "run",
        "--rm",
        "--user",
        "1000",
        &tag,
        "python3",
        "--version",
    ]);
    let _ = docker(&["image", "rm", "-f", &tag]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("warning: runtime.txt asks for Python 3.6"),
        "{}",
        text(&out)
    );
    assert!(ok && version.starts_with("Python 3.11."), "{version}");
}

/// Pushed to the service, a Python no base provides fails the commit status with the clear
/// message (not a build failure), and nothing is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_python_fails_the_status_clearly() {
    let fake = FakeGitLab::start().await;
    let (url, token) = (fake.url(), fake.token());
    let t = TestApp::with_settings(Backend::Sqlite, move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
        s.environments.enabled = true;
        s.server.public_url = "http://nbforge.test/".parse().unwrap();
    })
    .await
    .expect("SQLite app");
    let p = fake.add_project("lab/old-python");
    let sha = fake.commit(
        &p,
        "main",
        &[
            ("runtime.txt", &b"python-3.6\n"[..]),
            ("requirements.txt", b"numpy\n"),
        ],
        "pinned to an old Python",
    );
    let hook = fake.push_payload(&p, "main", "0000000000000000000000000000000000000000", &sha);
    let res = t
        .gitlab(hook.event, &format!("push-{sha}"), hook.bytes())
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    t.run_jobs().await;
    let statuses = fake.statuses_for(&sha);
    let states: Vec<String> = statuses.iter().map(|s| s.state.clone()).collect();
    assert_eq!(states, ["pending", "failed"]);
    let description = statuses
        .last()
        .unwrap()
        .description
        .clone()
        .unwrap_or_default();
    assert!(
        description.starts_with("runtime.txt asks for Python 3.6, which nbforge does not provide")
            && description.contains(nbforge::spec::python::PYTHON_DOCS),
        "{description}"
    );
    let build = t
        .db()
        .builds_for_commit("gitlab", "lab/old-python", &sha)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(build.phase.as_str(), "failed");
    assert!(build.image.is_none(), "nothing is built");
}
