//! Conda environments from a local channel served over HTTP by the test (anaconda.org cannot be
//! reached here): real packages made and indexed by the test, solved and installed on the
//! host with rattler, built into images by the real engine, and run as uid 1000; the locks
//! (`@EXPLICIT`, `conda-lock.yml`, `pixi.lock`); and the bad input of conda environments.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nbforge::bench::conda_channel::{Behaviour, LocalChannel, Package, serve};
use nbforge::environment::conda::{CondaError, CondaSettings, prepare};
use nbforge::spec::conda::{CondaEnvironment, parse_environment_file};
use nbforge::spec::{CondaChannels, Diagnostic};

use crate::environments::{app_for, push_and_build, remove_images, run_in_image};
use crate::support::fake_gitlab::FakeGitLab;
use crate::support::scenario::docker_ready;

/// A served channel with the python stand-in, ipykernel and two small packages.
struct Channel {
    url: String,
    behaviour: Arc<Behaviour>,
    channel: LocalChannel,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

const DEMO: &str = "ANSWER = 42\n";

async fn channel() -> Channel {
    let dir = tempfile::tempdir().unwrap();
    let mut channel = LocalChannel::new(dir.path()).unwrap();
    channel.add_python_stand_in().unwrap();
    channel
        .add(&Package::python_module(
            "nbforge-demo",
            "1.0",
            "nbforge_demo",
            DEMO,
        ))
        .unwrap();
    channel
        .add(&Package::python_module(
            "nbforge-extra",
            "2.1",
            "nbforge_extra",
            "NAME = 'extra'\n",
        ))
        .unwrap();
    channel.write_index().unwrap();
    let behaviour = Arc::new(Behaviour::default());
    let (addr, server) = serve(dir.path().to_owned(), behaviour.clone())
        .await
        .unwrap();
    Channel {
        url: format!("http://{addr}"),
        behaviour,
        channel,
        _dir: dir,
        _server: server,
    }
}

impl Channel {
    /// Settings that use this channel by default, with short time limits.
    fn settings(&self, cache: &Path) -> CondaSettings {
        CondaSettings {
            tries: 2,
            request_timeout: Duration::from_secs(2),
            ..CondaSettings::new(
                CondaChannels {
                    default_channels: vec![self.url.clone()],
                    ..CondaChannels::default()
                },
                cache.to_owned(),
            )
        }
    }
}

fn env_file(text: &str) -> CondaEnvironment {
    let mut errors = Vec::new();
    let env = parse_environment_file("binder/environment.yml", text, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    env
}

fn user_error(r: Result<nbforge::environment::conda::Prepared, CondaError>) -> String {
    match r {
        Err(CondaError::User(m)) => m,
        Err(e) => panic!("expected an error for the repository, got {e}"),
        Ok(_) => panic!("expected an error for the repository, got a prefix"),
    }
}

fn quiet(_: &str) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_file_is_solved_and_installed_for_srv_conda() {
    let ch = channel().await;
    let cache = tempfile::tempdir().unwrap();
    let s = ch.settings(cache.path());
    let env = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - python=3.11\n  - nbforge-demo >=1\n",
        ch.url
    ));
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |l: &str| lines.lock().unwrap().push(l.to_owned());
    let prepared = prepare(&s, &env, &log).await.expect("prepared");
    let prefix = prepared.prefix();
    // The noarch package went to the stand-in Python's site-packages, and ipykernel was added.
    let module = prefix.join("lib/python3.11/site-packages/nbforge_demo/__init__.py");
    assert_eq!(std::fs::read_to_string(&module).unwrap(), DEMO);
    assert_eq!(
        prepared.installed.packages, 3,
        "python, ipykernel, nbforge-demo"
    );
    assert_eq!(prepared.installed.python.as_deref(), Some("3.11.2"));
    assert!(
        prepared
            .installed
            .lock
            .starts_with("# platform: linux-64\n@EXPLICIT\n")
            && prepared.installed.lock.contains(&format!(
                "{}/noarch/nbforge-demo-1.0-py_0.tar.bz2#sha256=",
                ch.url
            )),
        "{}",
        prepared.installed.lock
    );
    let in_prefix =
        std::fs::read_to_string(prefix.join("conda-meta/nbforge-explicit.txt")).unwrap();
    assert_eq!(in_prefix, prepared.installed.lock);
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("solved 3 packages in") && log.contains("(strict channel priority)"),
        "{log}"
    );
    // The prefix is removed with the value; the package cache stays for the next build.
    drop(prepared);
    assert!(!prefix.exists());
    assert!(cache.path().join("pkgs").read_dir().unwrap().count() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_conda_input_gets_a_clear_status_and_leaves_nothing() {
    let mut ch = channel().await;
    let cache = tempfile::tempdir().unwrap();
    let s = ch.settings(cache.path());

    // Unsolvable: the solver's explanation, located at the line that asks.
    let env = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - python=3.11\n  - nbforge-demo >=7\n",
        ch.url
    ));
    let m = user_error(prepare(&s, &env, &quiet).await);
    assert!(
        m.starts_with("binder/environment.yml:5: cannot be solved:") && m.contains("nbforge-demo"),
        "{m}"
    );
    // Nothing asked for exists.
    let env = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - no-such-package\n",
        ch.url
    ));
    let m = user_error(prepare(&s, &env, &quiet).await);
    assert!(
        m.starts_with("binder/environment.yml:4: cannot be solved:")
            && m.contains("no-such-package"),
        "{m}"
    );

    // A channel that does not exist answers 404.
    let env = env_file(&format!(
        "channels:\n  - {}/missing\ndependencies:\n  - nbforge-demo\n",
        ch.url
    ));
    let m = user_error(prepare(&s, &env, &quiet).await);
    assert!(m.contains("was not found") && m.contains("404"), "{m}");

    // A channel that fails once is retried.
    ch.behaviour.fail_next.store(1, Ordering::SeqCst);
    let ok = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - nbforge-demo\n",
        ch.url
    ));
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |l: &str| lines.lock().unwrap().push(l.to_owned());
    prepare(&s, &ok, &log)
        .await
        .expect("prepared after a retry");
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("answers 503 Service Unavailable (try 1 of 2)"),
        "{log}"
    );

    // A channel that never answers: every try, then a status that says so.
    ch.behaviour.hang.store(true, Ordering::SeqCst);
    let m = user_error(prepare(&s, &ok, &quiet).await);
    assert!(m.contains("did not answer in time after 2 tries"), "{m}");
    ch.behaviour.hang.store(false, Ordering::SeqCst);

    // A package over the size limit is refused before it is fetched.
    ch.channel.record(
        "noarch",
        "huge-reference-1.0-0.tar.bz2",
        serde_json::json!({"name": "huge-reference", "version": "1.0", "build": "0",
            "build_number": 0, "depends": [], "subdir": "noarch", "noarch": "generic",
            "size": 1100u64 * 1024 * 1024,
            "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}),
    );
    ch.channel.write_index().unwrap();
    let env = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - huge-reference\n",
        ch.url
    ));
    let fresh = tempfile::tempdir().unwrap();
    let m = user_error(prepare(&ch.settings(fresh.path()), &env, &quiet).await);
    assert!(
        m.contains("package huge-reference-1.0 is 1100 MiB, over the limit of 1024 MiB"),
        "{m}"
    );

    // Nothing half-built is left for a later build to reuse.
    let left: Vec<_> = std::fs::read_dir(cache.path().join("prefixes"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn malformed_and_hostile_environment_files_are_located() {
    let mut errors: Vec<Diagnostic> = Vec::new();
    parse_environment_file(
        "environment.yml",
        "channels:\n  - conda-forge\ndependencies:\n  - numpy\n\t- scipy\n",
        &mut errors,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let d = errors[0].to_string();
    assert!(
        d.starts_with("environment.yml:5:") && d.contains("not a valid environment file"),
        "{d}"
    );

    // A local folder as a channel would make the builder read the host's files.
    for channel in ["file:///etc", "/var/lib", "../other"] {
        let mut errors = Vec::new();
        parse_environment_file(
            "environment.yml",
            &format!("channels:\n  - {channel}\ndependencies:\n  - numpy\n"),
            &mut errors,
        );
        assert!(
            errors.iter().any(|e| e
                .to_string()
                .contains("is not allowed: only channel names and http(s) URLs")),
            "{channel}: {errors:?}"
        );
    }
    let mut errors = Vec::new();
    nbforge::spec::conda::parse_explicit(
        "conda-linux-64.lock",
        "@EXPLICIT\nfile:///etc/passwd-1.0-0.tar.bz2\n",
        &mut errors,
    );
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("only http(s) URLs")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_list_is_installed_as_locked() {
    let ch = channel().await;
    let cache = tempfile::tempdir().unwrap();
    let s = ch.settings(cache.path());
    let text = format!(
        "# platform: linux-64\n@EXPLICIT\n{0}/linux-64/python-3.11.2-0_nbforge.tar.bz2\n{0}/noarch/nbforge-extra-2.1-py_0.tar.bz2\n",
        ch.url
    );
    let mut errors = Vec::new();
    let env = nbforge::spec::conda::parse_explicit("conda-linux-64.lock", &text, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |l: &str| lines.lock().unwrap().push(l.to_owned());
    let prepared = prepare(&s, &env, &log).await.expect("installed");
    // Nothing is added to a lock; one without ipykernel is said to run on the base's kernel.
    let log = lines.lock().unwrap().join("\n");
    assert!(
        log.contains("warning: conda-linux-64.lock has no ipykernel"),
        "{log}"
    );
    let prefix = prepared.prefix();
    assert!(
        prefix
            .join("lib/python3.11/site-packages/nbforge_extra/__init__.py")
            .is_file()
    );
    // Exactly what the list names: no solve, nothing added.
    assert_eq!(prepared.installed.packages, 2);
    assert!(prepared.installed.solve_time.is_none());
    assert!(
        !prefix
            .join("lib/python3.11/site-packages/nbforge_demo")
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conda_lock_file_is_installed_as_locked() {
    let ch = channel().await;
    let cache = tempfile::tempdir().unwrap();
    let s = ch.settings(cache.path());
    // What conda-lock writes (its unified format), for two of the channel's packages.
    let mut packages = String::new();
    for (subdir, file, name, version, deps) in [
        (
            "linux-64",
            "python-3.11.2-0_nbforge.tar.bz2",
            "python",
            "3.11.2",
            "{}",
        ),
        (
            "noarch",
            "nbforge-demo-1.0-py_0.tar.bz2",
            "nbforge-demo",
            "1.0",
            "\n    python: '>=3.8'",
        ),
    ] {
        let r = ch.channel.record_of(subdir, file).unwrap();
        packages.push_str(&format!(
            "- name: {name}\n  version: {version}\n  manager: conda\n  platform: linux-64\n  dependencies: {deps}\n  url: {url}/{subdir}/{file}\n  hash:\n    md5: {md5}\n    sha256: {sha}\n  category: main\n  optional: false\n",
            url = ch.url,
            md5 = r["md5"].as_str().unwrap(),
            sha = r["sha256"].as_str().unwrap(),
        ));
    }
    let lock = format!(
        "version: 1\nmetadata:\n  content_hash:\n    linux-64: 4f2a0e6a1f1c5e0b8d7c3b2a190817263544536271809a0b1c2d3e4f5a6b7c8d\n  channels:\n  - url: {}\n    used_env_vars: []\n  platforms:\n  - linux-64\n  sources:\n  - environment.yml\npackage:\n{packages}",
        ch.url
    );
    let mut errors = Vec::new();
    let env = nbforge::spec::conda::parse_conda_lock("conda-lock.yml", &lock, &mut errors);
    assert!(errors.is_empty(), "{errors:?}\n{lock}");
    let prepared = prepare(&s, &env, &quiet).await.expect("installed");
    assert!(
        prepared
            .prefix()
            .join("lib/python3.11/site-packages/nbforge_demo/__init__.py")
            .is_file()
    );
    assert_eq!(
        prepared.installed.packages, 2,
        "as locked: no ipykernel added, no solve"
    );
    assert!(prepared.installed.solve_time.is_none());

    // A lock whose hash does not match what the channel serves installs nothing.
    let tampered = lock.replacen(
        ch.channel
            .record_of("noarch", "nbforge-demo-1.0-py_0.tar.bz2")
            .unwrap()["sha256"]
            .as_str()
            .unwrap(),
        "1111111111111111111111111111111111111111111111111111111111111111",
        1,
    );
    let env = nbforge::spec::conda::parse_conda_lock("conda-lock.yml", &tampered, &mut errors);
    let fresh = tempfile::tempdir().unwrap();
    let m = user_error(prepare(&ch.settings(fresh.path()), &env, &quiet).await);
    assert!(
        m.starts_with("conda-lock.yml:") && m.contains("nbforge-demo"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pixi_lock_is_installed_as_locked() {
    use rattler_conda_types::{RepoDataRecord, Subdir};
    let ch = channel().await;
    let cache = tempfile::tempdir().unwrap();
    let s = ch.settings(cache.path());
    // The lock pixi writes, made with the same crate pixi uses, from the channel's records.
    let client = nbforge::environment::conda::client(&s).unwrap();
    let env = env_file(&format!(
        "channels:\n  - {}\ndependencies:\n  - nbforge-extra\n",
        ch.url
    ));
    let (records, _) = nbforge::environment::conda::resolve(&s, &client, &env, &quiet)
        .await
        .unwrap();
    let mut builder = rattler_lock::LockFile::builder()
        .add_platform(rattler_lock::PlatformData {
            name: (&Subdir::Linux64).into(),
            subdir: Subdir::Linux64,
            virtual_packages: Vec::new(),
        })
        .unwrap();
    builder.set_channels("default", [rattler_lock::Channel::from(ch.url.clone())]);
    for r in records {
        let r: RepoDataRecord = r;
        builder
            .add_conda_package("default", "linux-64", r.into())
            .unwrap();
    }
    let lock = builder.finish().render_to_string().unwrap();
    let mut errors = Vec::new();
    let locked =
        nbforge::spec::conda::parse_pixi_lock("pixi.lock", Some("pixi.toml"), &lock, &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let prepared = prepare(&s, &locked, &quiet).await.expect("installed");
    assert!(
        prepared
            .prefix()
            .join("lib/python3.11/site-packages/nbforge_extra/__init__.py")
            .is_file()
    );
    assert_eq!(
        prepared.installed.packages, 3,
        "python, ipykernel and nbforge-extra, as locked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conda_push_builds_an_image_whose_kernel_runs_in_the_environment() {
    let ch = channel().await;
    let fake = FakeGitLab::start().await;
    let channel_url = ch.url.clone();
    let t = app_for(&fake, move |s| {
        s.environments.conda.channels.default_channels = vec![channel_url];
    })
    .await;
    if !docker_ready(&t).await {
        return;
    }
    let p = fake.add_project("lab/conda-demo");
    // A unique comment makes the environment key new, so it really builds.
    let env = format!(
        "# run {}\ndependencies:\n  - python=3.11\n  - nbforge-demo\n  - pip:\n    - six==1.16.0\n",
        uuid::Uuid::new_v4()
    );
    let (_, build) =
        push_and_build(&t, &fake, &p, &[("binder/environment.yml", env.as_bytes())]).await;
    let lock = build
        .conda_lock
        .clone()
        .expect("the lock is stored with the build");
    assert!(
        lock.contains("/noarch/nbforge-demo-1.0-py_0.tar.bz2#sha256="),
        "{lock}"
    );
    let log = t.get(&format!("/api/builds/{}/log", build.id)).await.text();
    assert!(
        log.contains("solved 4 packages in"),
        "python, ipykernel and pip added, nbforge-demo: {log}"
    );
    let image = build.image.clone().unwrap();

    // Another repository with the same environment file and a postBuild: a new key, but the
    // engine takes the environment's layer from its cache (the same prefix, byte for byte).
    let q = fake.add_project("lab/conda-again");
    let (_, again) = push_and_build(
        &t,
        &fake,
        &q,
        &[
            ("binder/environment.yml", env.as_bytes()),
            ("binder/postBuild", b"#!/bin/sh\necho post > /tmp/post\n"),
        ],
    )
    .await;
    let log2 = t.get(&format!("/api/builds/{}/log", again.id)).await.text();
    let lines: Vec<&str> = log2.lines().collect();
    let copy = lines
        .iter()
        .position(|l| l.contains("COPY --chown=1000:1000 conda/ /srv/conda/"))
        .unwrap_or_else(|| panic!("no conda layer step: {log2}"));
    assert!(
        lines[copy + 1..]
            .iter()
            .take(2)
            .any(|l| l.contains("Using cache")),
        "the conda layer was rebuilt: {log2}"
    );
    let image2 = again.image.clone().unwrap();

    // As uid 1000: the environment's Python, its conda package and its pip package, and a
    // notebook executed by the Jupyter kernel registered for the environment.
    let script = r#"set -e
id -u
python -c 'import sys, six, nbforge_demo; print("prefix", sys.prefix, "answer", nbforge_demo.ANSWER, "six", six.__version__)'
cat > /tmp/nb.ipynb <<'EOF'
{"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "cells": [{"cell_type": "code", "id": "a", "metadata": {}, "execution_count": null, "outputs": [],
            "source": "import sys, nbforge_demo\nprint('kernel', sys.prefix, nbforge_demo.ANSWER)"}]}
EOF
jupyter execute --output=/tmp/out /tmp/nb.ipynb 2>&1
cat /tmp/out.ipynb
"#;
    let (code, out) = run_in_image(&t, &image, &["sh", "-c", script]).await;
    remove_images(&t, &[&image, &image2]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("1000\n"), "{out}");
    assert!(
        out.contains("prefix /srv/conda answer 42 six 1.16.0"),
        "{out}"
    );
    assert!(
        out.contains("kernel /srv/conda 42"),
        "the kernel ran in the environment: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolvable_merge_request_says_why_in_its_note() {
    let ch = channel().await;
    let url = ch.url.clone();
    let Some(t) = crate::support::scenario::Scenario::gitlab_with(
        crate::support::Backend::Sqlite,
        move |s| {
            s.environments.conda.channels.default_channels = vec![url];
        },
    )
    .await
    else {
        return;
    };
    let t = t.with_environments();
    t.push("lab/mr-conda", &[("README.md", b"analysis\n")])
        .await;
    t.run_jobs().await;
    let mr = t
        .open_mr(
            "lab/mr-conda",
            "feature",
            &[(
                "environment.yml",
                b"dependencies:\n  - python=3.11\n  - nbforge-demo >=7\n",
            )],
            "Use conda",
        )
        .await;
    t.run_jobs().await;
    let notes = t.notes(&mr);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("could not be prepared")
            && notes[0].contains("environment.yml:3: cannot be solved:")
            && notes[0].contains("nbforge-demo"),
        "{}",
        notes[0]
    );
    // The commit status says the same, shortened to what a status holds.
    let build = t
        .db()
        .list_builds(10)
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.project == "lab/mr-conda" && b.phase == nbforge::storage::BuildPhase::Failed)
        .expect("the merge request's failed build");
    let (state, description) = t.last_status(&build.commit_sha);
    assert_eq!(state, "failed");
    assert!(
        description.contains("environment.yml:3: cannot be solved"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbforge_spec_solves_and_writes_the_context_of_a_conda_environment() {
    let ch = channel().await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("environment.yml"),
        "dependencies:\n  - python=3.11\n  - nbforge-demo\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let context = tempfile::tempdir().unwrap();
    let nbforge = |args: &[&str]| {
        let ch_url = ch.url.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let data = data.path().to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_nbforge"))
                    .args(&args)
                    .env("NBFORGE_CONDA_CHANNELS", ch_url)
                    .env("NBFORGE_CONDA_CACHE_DIR", data)
                    .output()
                    .expect("nbforge runs")
            })
            .await
            .unwrap()
        }
    };
    let dir = repo.path().to_str().unwrap();
    let out = nbforge(&["spec", "--solve", dir]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("kind: conda"), "{stdout}");
    assert!(
        stdout.contains("@EXPLICIT\n")
            && stdout.contains("/noarch/nbforge-demo-1.0-py_0.tar.bz2#sha256=")
            && stdout.contains("/noarch/ipykernel-6.20.2-0.tar.bz2#sha256="),
        "{stdout}"
    );
    assert!(
        stderr.contains("python: 3.11.2 (from the channels)"),
        "{stderr}"
    );

    let target = context.path().to_str().unwrap();
    let out = nbforge(&["spec", "--context", target, dir]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module = context
        .path()
        .join("conda/lib/python3.11/site-packages/nbforge_demo/__init__.py");
    assert_eq!(std::fs::read_to_string(module).unwrap(), DEMO);
    assert_eq!(
        std::fs::read_link(context.path().join("conda/bin/python3.11")).unwrap(),
        Path::new("/usr/bin/python3.11")
    );
    let dockerfile = std::fs::read_to_string(context.path().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY --chown=1000:1000 conda/ /srv/conda/"));
}

#[test]
fn prefixes_of_builds_that_never_ended_are_removed_later() {
    let cache = tempfile::tempdir().unwrap();
    let work = cache.path().join("prefixes");
    let old = work.join("env-old");
    let fresh = work.join("env-fresh");
    std::fs::create_dir_all(old.join("prefix/bin")).unwrap();
    std::fs::create_dir_all(fresh.join("prefix")).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let removed =
        nbforge::environment::conda::remove_stale_prefixes(cache.path(), Duration::from_secs(3600));
    assert_eq!(removed, 1);
    assert!(!old.exists() && fresh.exists());
}
