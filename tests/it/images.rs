//! The base image and what environments built on it offer: a current JupyterLab on
//! jupyter_server 2, and a default kernel that imports the environment's packages.

use std::process::Command;

use nbforge::config::Settings;
use nbforge::environment::base::{BASE_VERSION, LABEL_BASE};

use crate::support::missing_service;

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The base image as `nbforge base-image` makes it now, or `None` (after saying why).
fn current_base() -> Option<String> {
    let base = Settings::for_database("sqlite::memory:")
        .environments
        .base_image;
    let (ok, label) = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{LABEL_BASE}\"}}}}"),
        &base,
    ]);
    if !ok || label.trim() != BASE_VERSION {
        missing_service(&format!(
            "the base image {base} at version {BASE_VERSION} (nbforge base-image)"
        ));
        return None;
    }
    Some(base)
}

#[test]
fn base_image_serves_jupyterlab_4_on_jupyter_server_2() {
    let Some(base) = current_base() else {
        return;
    };
    let (ok, versions) = docker(&[
        "run",
        "--rm",
        "--user",
        "1000",
        &base,
        "sh",
        "-c",
        "jupyter lab --version && jupyter server --version && jupyter notebook --version && python3 --version",
    ]);
    assert!(ok, "{versions}");
    let lines: Vec<&str> = versions.lines().collect();
    assert!(lines[0].starts_with("4."), "JupyterLab 4: {versions}");
    assert!(lines[1].starts_with("2."), "jupyter_server 2: {versions}");
    assert!(lines[2].starts_with("7."), "Notebook 7: {versions}");
    // The kernel's Python stays Debian's, not the server's environment.
    let (ok, which) = docker(&["run", "--rm", &base, "sh", "-c", "command -v python3"]);
    assert!(ok && which.trim() == "/usr/bin/python3", "{which}");
}

/// An environment built on the base image keeps its packages importable from the default
/// kernel that the (separate) Jupyter server starts.
#[test]
fn environment_packages_import_in_the_default_kernel() {
    let Some(_) = current_base() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("requirements.txt"),
        format!("# {}\ntomli-w\n", uuid::Uuid::new_v4()),
    )
    .unwrap();
    let tag = format!("nbforge-test/kernel:{}", uuid::Uuid::new_v4().simple());
    let mut build = Command::new(env!("CARGO_BIN_EXE_nbforge"));
    build
        .arg("build")
        .arg(dir.path())
        .arg("--tag")
        .arg(&tag)
        .env("NBFORGE_IMAGE_PREFIX", "nbforge-test");
    if let Ok(ca) = std::env::var("NBFORGE_EXTRA_CA_CERTS") {
        build.env("NBFORGE_EXTRA_CA_CERTS", ca);
    }
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let notebook = serde_json::json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "execution_count": null, "outputs": [],
                   "source": "import sys, tomli_w\nprint(sys.executable, tomli_w.dumps({'ok': 1}).strip())"}]
    })
    .to_string();
    let script = format!(
        "cat > /tmp/t.ipynb <<'EOF'\n{notebook}\nEOF\njupyter execute --output=/tmp/out /tmp/t.ipynb >/dev/null 2>&1 && cat /tmp/out.ipynb"
    );
    let (ok, executed) = docker(&["run", "--rm", &tag, "sh", "-c", &script]);
    let _ = docker(&["image", "rm", "-f", &tag]);
    assert!(ok, "{executed}");
    assert!(
        executed.contains("/srv/venv/bin/python") && executed.contains("ok = 1"),
        "the default kernel is the environment's Python and imports its packages: {executed}"
    );
}
