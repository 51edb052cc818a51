//! Launch specs from the outside: the `nbforge spec` command, the pre-receive hook with a
//! real `git push`, and the benchmark over `binder-specs/`. Detection, environment keys,
//! hostile specs and Dockerfiles are tested next to their code in `src/spec/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nbforge::repo::DirTree;
use nbforge::spec::cli::{SpecArgs, run};
use nbforge::spec::{self, Kind, Options};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("binder-specs")
}

fn args(path: &Path, git_ref: Option<&str>) -> SpecArgs {
    SpecArgs {
        path_or_git_url: Some(path.display().to_string()),
        git_ref: git_ref.map(String::from),
        json: true,
        dockerfile: true,
        base_python: None,
        max_file_size: 1 << 20,
        context: None,
        solve: false,
    }
}

#[test]
fn spec_cli_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("requirements.txt", "numpy\n")]);
    for a in [&["init", "-q"][..], &["add", "-A"], &["commit", "-qm", "c"]] {
        assert!(git(tmp.path(), a).status.success());
    }
    assert_eq!(
        run(&args(tmp.path(), None), &Options::default()).unwrap(),
        ExitCode::SUCCESS
    );
    assert_eq!(
        run(&args(tmp.path(), Some("HEAD")), &Options::default()).unwrap(),
        ExitCode::SUCCESS
    );
    let url = format!("file://{}", tmp.path().display());
    let mut remote = args(tmp.path(), None);
    remote.path_or_git_url = Some(url);
    assert_eq!(
        run(&remote, &Options::default()).unwrap(),
        ExitCode::SUCCESS
    );
    write(tmp.path(), &[("apt.txt", "bad;name\n")]);
    assert_eq!(
        run(&args(tmp.path(), None), &Options::default()).unwrap(),
        ExitCode::from(1)
    );
    assert_eq!(
        run(&args(tmp.path(), Some("HEAD")), &Options::default()).unwrap(),
        ExitCode::SUCCESS,
        "HEAD has no apt.txt yet"
    );
    assert_eq!(
        run(&args(tmp.path(), Some("no-such-ref")), &Options::default()).unwrap(),
        ExitCode::from(2)
    );
    std::fs::remove_file(tmp.path().join("apt.txt")).unwrap();
    write(tmp.path(), &[("default.nix", "{}")]);
    assert_eq!(
        run(&args(tmp.path(), None), &Options::default()).unwrap(),
        ExitCode::from(3)
    );
}

fn git(dir: &Path, a: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(a)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Sets up a bare remote with the pre-receive hook and a clone to push from.
fn hook_setup(bin: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("remote.git");
    assert!(
        git(tmp.path(), &["init", "-q", "--bare", "remote.git"])
            .status
            .success()
    );
    let hook = bare.join("hooks/pre-receive");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/pre-receive"),
        &hook,
    )
    .unwrap();
    // The hook reads NBFORGE_BIN; git passes our environment through to it.
    let work = tmp.path().join("work");
    assert!(
        git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), "work"])
            .status
            .success()
    );
    let _ = bin;
    (tmp, work)
}

fn push(work: &Path, bin: &Path, refspec: &[&str]) -> std::process::Output {
    let mut a = vec!["push", "origin"];
    a.extend_from_slice(refspec);
    Command::new("git")
        .args(&a)
        .current_dir(work)
        .env("NBFORGE_BIN", bin)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The hook's plumbing (stdin parsing, deletions, exit statuses, messages) against a real
/// `git push`, with `nbforge spec` played by a script that fails when `apt.txt` at the pushed
/// commit contains a semicolon.
#[test]
fn spec_pre_receive_hook_plumbing() {
    let scripts = tempfile::tempdir().unwrap();
    let bin = scripts.path().join("nbforge");
    std::fs::write(
        &bin,
        "#!/bin/sh\n\
         [ \"$1\" = spec ] && [ \"$2\" = --ref ] || exit 9\n\
         echo \"$3\" >> \"$(dirname \"$0\")/calls\"\n\
         if git --git-dir=\"$4\" show \"$3:apt.txt\" 2>/dev/null | grep -q ';'; then\n\
         echo 'error: apt.txt:1:1: \"a;b\" is not a Debian package name'; exit 1; fi\n\
         exit 0\n",
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&bin).unwrap().permissions(),
        0o755,
    );
    Command::new("chmod")
        .args(["+x", bin.to_str().unwrap()])
        .status()
        .unwrap();
    let (_tmp, work) = hook_setup(&bin);
    write(&work, &[("apt.txt", "curl\n")]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "ok"]);
    let out = push(&work, &bin, &["HEAD:refs/heads/main"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write(&work, &[("apt.txt", "a;b\n")]);
    git(&work, &["commit", "-qam", "bad"]);
    let out = push(&work, &bin, &["HEAD:refs/heads/main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("apt.txt:1:1:") && stderr.contains("push rejected"),
        "{stderr}"
    );
    // Deleting a branch is not checked.
    let out = push(&work, &bin, &["HEAD~1:refs/heads/other"]);
    assert!(out.status.success());
    let calls_before = std::fs::read_to_string(scripts.path().join("calls"))
        .unwrap()
        .lines()
        .count();
    let out = push(&work, &bin, &[":refs/heads/other"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls_after = std::fs::read_to_string(scripts.path().join("calls"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(calls_before, calls_after);
}

/// The hook with the real `nbforge spec`.
#[test]
fn spec_pre_receive_hook_real_binary() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_nbforge"));
    let help = Command::new(&bin).args(["spec", "--help"]).output();
    let wired = matches!(&help, Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("--ref"));
    assert!(
        wired,
        "{} has a `spec` subcommand with --ref",
        bin.display()
    );
    let (_tmp, work) = hook_setup(&bin);
    write(&work, &[("requirements.txt", "numpy\n")]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "ok"]);
    assert!(
        push(&work, &bin, &["HEAD:refs/heads/main"])
            .status
            .success()
    );
    write(
        &work,
        &[("launch.toml", "kind = \"notebook\"\nbogus = 1\n")],
    );
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "bad"]);
    let out = push(&work, &bin, &["HEAD:refs/heads/main"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("launch.toml:2:1:"),
        "{stderr}"
    );
}

#[test]
fn spec_examples_and_bench() {
    let expect = [
        ("apt-postbuild", Kind::Python),
        ("conda", Kind::Conda),
        ("dockerfile", Kind::Dockerfile),
        ("julia", Kind::Julia),
        ("pip", Kind::Python),
        ("pipfile", Kind::Pipfile),
        ("r", Kind::R),
        ("worksheet", Kind::Python),
    ];
    let report = spec::bench::bench(&examples(), 300);
    println!("{report}");
    let got: Vec<(String, Option<Kind>)> = report
        .repos
        .iter()
        .map(|r| (r.name.clone(), r.kind))
        .collect();
    let want: Vec<(String, Option<Kind>)> = expect
        .iter()
        .map(|(n, k)| (n.to_string(), Some(*k)))
        .collect();
    assert_eq!(got, want);
    for r in &report.repos {
        assert!(r.error.is_none(), "{}: {:?}", r.name, r.error);
        assert!(r.p50_us > 0.0 && r.p50_us <= r.p99_us);
    }
    // Every example is warning-free except where a warning is the point.
    for (name, _) in expect {
        let a = spec::analyze(&DirTree::new(examples().join(name)), &Options::default()).unwrap();
        if matches!(name, "pip" | "pipfile" | "worksheet" | "apt-postbuild") {
            assert!(a.warnings.is_empty(), "{name}: {:?}", a.warnings);
            a.dockerfile(&Options::default()).unwrap();
        }
    }
}

/// `nbforge spec` says plainly when the image's R (Debian's) differs from the one
/// `runtime.txt` asks for, in its text and its JSON.
#[test]
fn spec_cli_shows_an_r_version_difference() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[
            ("runtime.txt", "r-4.1-2022-01-01\n"),
            ("install.R", "install.packages(\"jsonlite\")\n"),
        ],
    );
    let spec = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbforge"));
        cmd.arg("spec");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg(tmp.path()).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = spec(false);
    assert!(text.contains("kind: r\n"), "{text}");
    assert!(
        text.contains("r: 4.1, CRAN snapshot 2022-01-01 (image has Debian's R 4.2)"),
        "{text}"
    );
    assert!(
        text.contains("note: R 4.2 from Debian, not 4.1; CRAN snapshot 2022-01-01 not used"),
        "{text}"
    );
    assert!(
        text.contains(
            "warning: runtime.txt: R 4.1 and the CRAN snapshot of 2022-01-01 were asked for"
        ),
        "{text}"
    );

    let v: serde_json::Value = serde_json::from_str(&spec(true)).unwrap();
    assert_eq!(v["r_version"], "4.1");
    assert_eq!(v["r_snapshot"], "2022-01-01");
    assert_eq!(v["image_r"], "4.2");

    // The same R as Debian's: no note.
    write(tmp.path(), &[("runtime.txt", "r-4.2\n")]);
    let text = spec(false);
    assert!(text.contains("r: 4.2 (image has Debian's R 4.2)"), "{text}");
    assert!(!text.contains("note:"), "{text}");
}

/// `NBFORGE_CRAN_MIRROR` must be an http(s) URL; it reaches R environments' Dockerfile and key.
#[test]
fn cran_mirror_setting_is_checked_and_keys_r_environments() {
    use nbforge::config::{ImageArgs, Settings, SettingsArgs};
    let load = |mirror: &str| {
        Settings::load(&SettingsArgs {
            image: ImageArgs {
                cran_mirror: Some(mirror.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        })
    };
    for bad in [
        "ftp://cran.example.org",
        "not a url",
        "https://x.org/'$(id)'",
    ] {
        let err = load(bad).expect_err("refused").to_string();
        assert!(err.contains("cran_mirror"), "{bad}: {err}");
    }
    let settings = load("https://cran.example.org/").unwrap();
    let opts = nbforge::app::spec_options(&settings);
    assert_eq!(opts.cran_mirror, "https://cran.example.org/");

    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        &[("install.R", "install.packages('jsonlite')\n")],
    );
    let a = spec::analyze(&DirTree::new(tmp.path()), &opts).unwrap();
    let default = spec::analyze(&DirTree::new(tmp.path()), &Options::default()).unwrap();
    assert_ne!(a.environment_key, default.environment_key);
    assert!(
        a.dockerfile(&opts)
            .unwrap()
            .contains("https://cran.example.org/")
    );
    // Other kinds do not depend on it.
    std::fs::remove_file(tmp.path().join("install.R")).unwrap();
    write(tmp.path(), &[("requirements.txt", "numpy\n")]);
    assert_eq!(
        spec::analyze(&DirTree::new(tmp.path()), &opts)
            .unwrap()
            .environment_key,
        spec::analyze(&DirTree::new(tmp.path()), &Options::default())
            .unwrap()
            .environment_key
    );
}
