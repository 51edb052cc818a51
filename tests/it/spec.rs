//! Launch specs read from real directories and real git commits: precedence, binder folders,
//! environment keys, hostile specs, Dockerfile generation, the CLI, the pre-receive hook and
//! the benchmark.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use nbforge::repo::{CommitTree, DirTree};
use nbforge::spec::cli::{SpecArgs, run};
use nbforge::spec::{self, Analysis, Kind, Options, SpecError};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// Commits the whole working tree of `root` (a fresh repository on first use) and returns
/// the repository.
fn commit(root: &Path) -> git2::Repository {
    let repo = git2::Repository::open(root)
        .or_else(|_| git2::Repository::init(root))
        .unwrap();
    let mut idx = repo.index().unwrap();
    idx.add_all(
        ["*"],
        git2::IndexAddOption::DEFAULT | git2::IndexAddOption::FORCE,
        None,
    )
    .unwrap();
    idx.update_all(["*"], None).unwrap();
    idx.write().unwrap();
    {
        let tree = repo.find_tree(idx.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Test", "test@example.org").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
            .unwrap();
    }
    repo
}

fn summary(r: &Result<Analysis, SpecError>) -> String {
    match r {
        Ok(a) => format!(
            "{:?} {:?} {} {:?}",
            a.kind, a.files, a.environment_key, a.inputs
        ),
        Err(e) => format!("err: {e}"),
    }
}

/// Analyzes `root` from disk and from a commit of it, checks both agree, returns the result.
fn analyze_at(root: &Path, opts: &Options) -> Result<Analysis, SpecError> {
    let from_dir = spec::analyze(&DirTree::new(root), opts);
    let repo = commit(root);
    let src = CommitTree::open(&repo, "HEAD").unwrap();
    let from_git = spec::analyze(&src, opts);
    assert_eq!(
        summary(&from_dir),
        summary(&from_git),
        "directory and commit disagree"
    );
    from_dir
}

fn analyze_files(files: &[(&str, &str)]) -> Result<Analysis, SpecError> {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), files);
    analyze_at(tmp.path(), &Options::default())
}

fn ok(files: &[(&str, &str)]) -> Analysis {
    match analyze_files(files) {
        Ok(a) => a,
        Err(e) => panic!("expected a valid spec for {files:?}: {e}"),
    }
}

fn err_text(files: &[(&str, &str)]) -> String {
    match analyze_files(files) {
        Ok(a) => panic!("expected an invalid spec, got {:?}", a.kind),
        Err(e) => {
            assert!(e.is_user_error(), "{e}");
            e.diagnostics()
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

/// One representative file per kind, in repo2docker's precedence order.
const KINDS: &[(Kind, &str, &str)] = &[
    (Kind::Dockerfile, "Dockerfile", "FROM scratch\n"),
    (Kind::Julia, "Project.toml", "[deps]\n"),
    (Kind::JuliaRequire, "REQUIRE", "julia 1.0\n"),
    (Kind::Nix, "default.nix", "{ }\n"),
    (Kind::R, "install.R", "install.packages('x')\n"),
    (Kind::Conda, "environment.yml", "dependencies:\n  - numpy\n"),
    (Kind::Pipfile, "Pipfile", "[packages]\nrequests = \"*\"\n"),
    (Kind::Python, "requirements.txt", "numpy\n"),
];

#[test]
fn spec_precedence_every_pair() {
    for (i, (winner, wf, wc)) in KINDS.iter().enumerate() {
        for (_, lf, lc) in &KINDS[i + 1..] {
            for dir in ["", "binder/"] {
                let wp = format!("{dir}{wf}");
                let lp = format!("{dir}{lf}");
                let a = ok(&[(&wp, wc), (&lp, lc)]);
                assert_eq!(a.kind, *winner, "{wp} + {lp}");
                assert!(a.files.contains(&wp), "{wp} + {lp}: {:?}", a.files);
            }
        }
    }
}

#[test]
fn spec_other_selectors() {
    assert_eq!(ok(&[("JuliaProject.toml", "")]).kind, Kind::Julia);
    assert_eq!(
        ok(&[("Project.toml", ""), ("REQUIRE", "")]).kind,
        Kind::Julia
    );
    assert_eq!(
        ok(&[("Pipfile.lock", "{}"), ("requirements.txt", "x\n")]).kind,
        Kind::Pipfile
    );
    // R from runtime.txt or DESCRIPTION beats conda and Python.
    let r = ok(&[
        ("runtime.txt", "r-4.1-2022-01-01\n"),
        ("environment.yml", "dependencies: []\n"),
    ]);
    assert_eq!(r.kind, Kind::R);
    assert!(
        r.warnings.iter().any(|w| w.contains("2022-01-01")),
        "{:?}",
        r.warnings
    );
    assert_eq!(ok(&[("runtime.txt", "r-2022-01-01\n")]).kind, Kind::R);
    let d = ok(&[
        ("DESCRIPTION", "Package: x\n"),
        ("requirements.txt", "numpy\n"),
    ]);
    assert_eq!(d.kind, Kind::R);
    assert!(
        d.files.contains(&"requirements.txt".to_owned()),
        "R installs requirements.txt too"
    );
    // DESCRIPTION only counts at the root when there is no binder folder.
    assert_eq!(
        ok(&[("DESCRIPTION", "x"), ("binder/requirements.txt", "numpy\n")]).kind,
        Kind::Python
    );
    // Nothing at all: Python with the default version.
    let empty = ok(&[("README.md", "hi")]);
    assert_eq!(empty.kind, Kind::Python);
    assert_eq!(empty.python_version.as_deref(), Some("3.10"));
    assert!(empty.files.is_empty());
    // setup.py / pyproject.toml alone select Python and install the repository.
    for f in ["setup.py", "pyproject.toml"] {
        let a = ok(&[(f, ""), ("mypkg/__init__.py", "")]);
        assert_eq!(a.kind, Kind::Python);
        assert!(
            a.inputs.contains(&"mypkg/__init__.py".to_owned()),
            "{:?}",
            a.inputs
        );
    }
}

#[test]
fn spec_runtime_txt() {
    let a = ok(&[
        ("runtime.txt", "python-3.11\n"),
        ("requirements.txt", "numpy\n"),
    ]);
    assert_eq!(a.python_version.as_deref(), Some("3.11"));
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let old = ok(&[("runtime.txt", "python-3.8\n")]);
    assert_eq!(old.python_version.as_deref(), Some("3.8"));
    assert!(
        old.warnings
            .iter()
            .any(|w| w.contains("3.8") && w.contains("3.11")),
        "{:?}",
        old.warnings
    );
    // Ignored next to environment.yml; the version comes from environment.yml.
    let c = ok(&[
        ("runtime.txt", "python-3.8\n"),
        ("environment.yml", "dependencies:\n  - python=3.9\n"),
    ]);
    assert_eq!(c.kind, Kind::Conda);
    assert_eq!(c.python_version.as_deref(), Some("3.9"));
    assert!(!c.files.contains(&"runtime.txt".to_owned()));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("runtime.txt is ignored")),
        "{:?}",
        c.warnings
    );
    // Pipfile's [requires] wins over runtime.txt.
    let p = ok(&[
        ("Pipfile", "[requires]\npython_version = \"3.11\"\n"),
        ("runtime.txt", "python-3.9\n"),
    ]);
    assert_eq!(p.python_version.as_deref(), Some("3.11"));
    let bad = err_text(&[("runtime.txt", "python-three\n")]);
    assert!(bad.starts_with("runtime.txt:1:8:"), "{bad}");
    let bad_r = err_text(&[("runtime.txt", "r-latest\n")]);
    assert!(bad_r.starts_with("runtime.txt:1:1:"), "{bad_r}");
    // Python version is configurable.
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("requirements.txt", "x\n")]);
    let opts = Options {
        default_python: "3.12".into(),
        ..Options::default()
    };
    assert_eq!(
        analyze_at(tmp.path(), &opts)
            .unwrap()
            .python_version
            .as_deref(),
        Some("3.12")
    );
}

#[test]
fn spec_binder_folders() {
    // A binder folder hides root-level spec files.
    let a = ok(&[
        ("Dockerfile", "FROM x\n"),
        ("binder/requirements.txt", "numpy\n"),
    ]);
    assert_eq!(a.kind, Kind::Python);
    assert_eq!(a.spec_dir.as_deref(), Some("binder"));
    let b = ok(&[
        ("requirements.txt", "numpy\n"),
        (".binder/environment.yml", "dependencies: []\n"),
    ]);
    assert_eq!(b.kind, Kind::Conda);
    assert_eq!(b.spec_dir.as_deref(), Some(".binder"));
    // Root apt.txt is hidden as well; setup.py at the root is not installed.
    let c = ok(&[
        ("apt.txt", "curl\n"),
        ("setup.py", ""),
        ("binder/requirements.txt", "x\n"),
    ]);
    assert!(c.apt_packages.is_empty());
    assert!(!c.inputs.contains(&"setup.py".to_owned()));
    let both = err_text(&[
        ("binder/requirements.txt", "x\n"),
        (".binder/requirements.txt", "y\n"),
    ]);
    assert!(
        both.contains("binder/") && both.contains(".binder/"),
        "{both}"
    );
}

#[test]
fn spec_unsupported_kinds_say_so() {
    for (files, word) in [
        (vec![("default.nix", "{}")], "Nix"),
        (vec![("binder/Project.toml", "")], "Julia"),
        (vec![("REQUIRE", "")], "Julia"),
        (vec![("environment.yml", "dependencies: []\n")], "conda"),
    ] {
        let a = ok(&files);
        let msg = a.unsupported.clone().unwrap_or_default();
        assert!(msg.contains(word), "{msg}");
        match a.dockerfile(&Options::default()) {
            Err(SpecError::Unsupported { kind, message }) => {
                assert_eq!(kind, a.kind);
                assert!(message.contains(word));
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
}

fn worksheet_example() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("worksheet"), tmp.path());
    tmp
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("binder-specs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn key(root: &Path) -> String {
    analyze_at(root, &Options::default())
        .unwrap()
        .environment_key
}

#[test]
fn spec_key_stability() {
    let tmp = worksheet_example();
    let root = tmp.path();
    let k0 = key(root);
    assert_eq!(k0.len(), 64);
    // Notebook, data and documentation edits keep the key.
    write(
        root,
        &[
            ("growth.ipynb", "{\"cells\": [1]}"),
            ("data/new.csv", "a,b\n"),
            ("docs/notes.md", "x"),
        ],
    );
    assert_eq!(key(root), k0);
    // launch.toml edits outside [build] keep it too.
    let lt = std::fs::read_to_string(root.join("launch.toml")).unwrap();
    write(
        root,
        &[("launch.toml", &lt.replace("Bacterial", "Microbial"))],
    );
    assert_eq!(key(root), k0);
    // The package tree installed by `-e .` is an input.
    write(root, &[("lib/growth/__init__.py", "X = 1\n")]);
    let k1 = key(root);
    assert_ne!(k1, k0);
    // So is the requirements file.
    write(root, &[("binder/requirements.txt", "-e .\nscipy>=1.11\n")]);
    let k2 = key(root);
    assert_ne!(k2, k1);
    // And the base image and the extra CA option.
    let other_base = Options {
        base_image: "nbforge/base:other".into(),
        ..Options::default()
    };
    assert_ne!(analyze_at(root, &other_base).unwrap().environment_key, k2);
    let ca = Options {
        extra_ca: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
        ..Options::default()
    };
    assert_ne!(analyze_at(root, &ca).unwrap().environment_key, k2);
    let a = analyze_at(root, &Options::default()).unwrap();
    assert!(!a.whole_tree);
    assert!(
        a.inputs.iter().all(|i| !i.ends_with(".ipynb")),
        "{:?}",
        a.inputs
    );
    assert!(a.inputs.contains(&"setup.py".to_owned()));
}

#[test]
fn spec_key_includes_referenced_requirement_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        &[
            (
                "requirements.txt",
                "-r requirements/base.txt\n-c constraints.txt\nnumpy\n",
            ),
            ("requirements/base.txt", "pandas\n"),
            ("constraints.txt", "pandas<3\n"),
            ("notes.ipynb", "{}"),
        ],
    );
    let a = analyze_at(root, &Options::default()).unwrap();
    for f in [
        "requirements.txt",
        "requirements/base.txt",
        "constraints.txt",
    ] {
        assert!(a.inputs.contains(&f.to_owned()), "{f}: {:?}", a.inputs);
    }
    let k0 = a.environment_key;
    write(root, &[("requirements/base.txt", "pandas>=2\n")]);
    assert_ne!(key(root), k0);
    let missing = err_text(&[("requirements.txt", "numpy\n-r nothere.txt\n")]);
    assert!(missing.starts_with("requirements.txt:2:1:"), "{missing}");
}

#[test]
fn spec_post_build_covers_whole_tree_unless_narrowed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        &[
            ("requirements.txt", "numpy\n"),
            ("postBuild", "#!/bin/sh\necho hi\n"),
            ("a.ipynb", "{}"),
        ],
    );
    let a = analyze_at(root, &Options::default()).unwrap();
    assert!(a.whole_tree);
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("postBuild") && w.contains("[build] inputs")),
        "{:?}",
        a.warnings
    );
    write(root, &[("a.ipynb", "{\"x\": 1}")]);
    assert_ne!(
        key(root),
        a.environment_key,
        "whole-tree key follows every file"
    );

    // The apt + postBuild example narrows it with [build] inputs.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    copy_dir(&examples().join("apt-postbuild"), root);
    let a = analyze_at(root, &Options::default()).unwrap();
    assert!(!a.whole_tree);
    assert!(a.inputs.contains(&"binder/reference.fa".to_owned()));
    write(
        root,
        &[
            ("data/samples.csv", "sample,reads\nb,2\n"),
            ("x.ipynb", "{}"),
        ],
    );
    assert_eq!(key(root), a.environment_key);
    write(root, &[("binder/reference.fa", ">chr2\nTT\n")]);
    assert_ne!(key(root), a.environment_key);
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

#[test]
fn spec_hostile_apt_names() {
    let e = err_text(&[("apt.txt", "curl\ncurl; rm -rf /\n$(id)\n`id`\n")]);
    let lines: Vec<&str> = e.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("apt.txt:2:1:") && l.contains("curl;")),
        "{e}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("apt.txt:2:10:") && l.contains("-rf")),
        "{e}"
    );
    assert!(lines.iter().any(|l| l.starts_with("apt.txt:3:1:")), "{e}");
    assert!(lines.iter().any(|l| l.starts_with("apt.txt:4:1:")), "{e}");
    for bad in ["Curl", "-y", "a", "pkg=1.0", "pkg:amd64", "x&&y"] {
        assert!(!spec::validate_apt_name(bad), "{bad}");
    }
    let a = ok(&[(
        "apt.txt",
        "# tools\nncbi-blast+ samtools # aligners\nlibc6.1\n",
    )]);
    assert_eq!(a.apt_packages, ["ncbi-blast+", "samtools", "libc6.1"]);
}

#[test]
fn spec_hostile_paths_and_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, "secret\n").unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(root.join("binder")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("binder/requirements.txt")).unwrap();
    let e = analyze_at(&root, &Options::default()).unwrap_err();
    assert!(e.is_user_error());
    assert!(
        e.to_string().contains("binder/requirements.txt") && e.to_string().contains("outside"),
        "{e}"
    );
    std::fs::remove_file(root.join("binder/requirements.txt")).unwrap();
    std::os::unix::fs::symlink("../../outside.txt", root.join("binder/requirements.txt")).unwrap();
    let e = analyze_at(&root, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("outside the repository"), "{e}");
    // A symlink inside the repository is fine, and the folder can be a symlink too.
    std::fs::remove_file(root.join("binder/requirements.txt")).unwrap();
    std::fs::remove_dir(root.join("binder")).unwrap();
    write(&root, &[("env/requirements.txt", "numpy\n")]);
    std::os::unix::fs::symlink("env", root.join("binder")).unwrap();
    assert_eq!(
        analyze_at(&root, &Options::default()).unwrap().kind,
        Kind::Python
    );
    // A loop is reported, not followed forever.
    std::os::unix::fs::symlink("loop", root.join("env/loop")).unwrap();
    std::os::unix::fs::symlink("loop/x", root.join("env/apt.txt")).unwrap();
    let e = analyze_at(&root, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("symlinks"), "{e}");

    // Local packages and includes outside the repository.
    let e = err_text(&[("requirements.txt", "-e ../other\n")]);
    assert!(
        e.starts_with("requirements.txt:1:1:") && e.contains("inside the repository"),
        "{e}"
    );
    let e = err_text(&[("requirements.txt", "-r ../../etc/passwd\n")]);
    assert!(e.contains("leaves the repository"), "{e}");
    // Not UTF-8.
    let tmp2 = tempfile::tempdir().unwrap();
    std::fs::write(tmp2.path().join("requirements.txt"), b"numpy\n\xff\xfe\n").unwrap();
    let e = analyze_at(tmp2.path(), &Options::default()).unwrap_err();
    assert!(
        e.to_string().contains("UTF-8") && e.to_string().contains("byte 6"),
        "{e}"
    );
}

#[test]
fn spec_huge_requirements_rejected_without_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(tmp.path().join("requirements.txt")).unwrap();
    f.set_len(100 << 20).unwrap();
    drop(f);
    let e = analyze_at(tmp.path(), &Options::default()).unwrap_err();
    assert!(e.is_user_error());
    let text = e.to_string();
    assert!(
        text.contains("requirements.txt")
            && text.contains("104857600 bytes")
            && text.contains("1048576"),
        "{text}"
    );
    // The limit is configurable.
    let small = Options {
        max_file_size: 10,
        ..Options::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("apt.txt", "curl wget git\n")]);
    assert!(
        analyze_at(tmp.path(), &small)
            .unwrap_err()
            .to_string()
            .contains("limit")
    );
}

#[test]
fn spec_dockerfile_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        &[
            ("binder/apt.txt", "samtools\n"),
            (
                "binder/requirements.txt",
                "numpy>=1.24 ; python_version > '3'\n",
            ),
            ("binder/start", "#!/bin/sh\nexport X=1\nexec \"$@\"\n"),
            ("notes.ipynb", "{}"),
        ],
    );
    let opts = Options {
        extra_ca: Some(b"PEM".to_vec()),
        ..Options::default()
    };
    let a = analyze_at(root, &opts).unwrap();
    let d1 = a.dockerfile(&opts).unwrap();
    let d2 = analyze_at(root, &opts).unwrap().dockerfile(&opts).unwrap();
    assert_eq!(d1, d2, "deterministic");
    println!("{d1}");
    assert!(
        d1.starts_with("# Generated by") && d1.contains("\nFROM nbforge/base:bookworm\n"),
        "{d1}"
    );
    // Requirement text is copied as a file, never pasted.
    assert!(!d1.contains("numpy"), "{d1}");
    let pos = |needle: &str| {
        d1.find(needle)
            .unwrap_or_else(|| panic!("missing {needle:?} in\n{d1}"))
    };
    let ca = pos("COPY nbforge-extra-ca.crt /usr/local/share/ca-certificates/");
    let user = pos("useradd --uid 1000");
    let apt = pos("samtools");
    let venv = pos("python3 -m venv --system-site-packages /srv/venv");
    let copy_req = pos(
        "COPY --chown=1000:1000 [\"repo/binder/requirements.txt\", \"/srv/repo/binder/requirements.txt\"]",
    );
    let pip = pos("RUN pip install -r ./binder/requirements.txt");
    assert!(ca < user && user < apt && apt < venv && venv < copy_req && copy_req < pip);
    assert!(d1.contains("PIP_CERT=/etc/ssl/certs/ca-certificates.crt"));
    assert!(d1.contains("REQUESTS_CA_BUNDLE=") && d1.contains("SSL_CERT_FILE="));
    assert!(d1.contains("ipykernel install --prefix /srv/venv"));
    assert!(d1.contains("USER jovyan"));
    assert!(d1.contains("ENTRYPOINT [\"/usr/local/bin/nbforge-entrypoint\"]"));
    assert!(d1.contains(&a.environment_key));

    let ctx = a.build_context(root_src(root).as_ref(), &opts).unwrap();
    let names: Vec<&str> = ctx.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"Dockerfile") && names.contains(&"nbforge-extra-ca.crt"),
        "{names:?}"
    );
    assert!(names.contains(&"repo/binder/requirements.txt"), "{names:?}");
    let entry = &ctx
        .iter()
        .find(|(n, _)| n == "nbforge-entrypoint")
        .unwrap()
        .1;
    assert!(String::from_utf8_lossy(entry).contains("exec /srv/repo/binder/start \"$@\""));
    // start makes the key cover the whole tree, so the notebook is in the context.
    assert!(a.whole_tree && names.contains(&"repo/notes.ipynb"));

    // A requirements edit changes only the layers from the requirements COPY on.
    write(root, &[("binder/requirements.txt", "pandas\n")]);
    let d3 = analyze_at(root, &opts).unwrap().dockerfile(&opts).unwrap();
    let prefix = &d1[..copy_req];
    assert!(d3.starts_with(prefix), "apt and base layers unchanged");

    // Without the CA option there is no CA step and no CA file.
    let plain = analyze_at(root, &Options::default()).unwrap();
    let d = plain.dockerfile(&Options::default()).unwrap();
    assert!(!d.contains("ca-certificates"));
}

fn root_src(root: &Path) -> Box<DirTree> {
    Box::new(DirTree::new(root))
}

#[test]
fn spec_build_context_from_git_holds_only_inputs() {
    let tmp = worksheet_example();
    let repo = commit(tmp.path());
    let src = CommitTree::open(&repo, "HEAD").unwrap();
    let opts = Options::default();
    let a = spec::analyze(&src, &opts).unwrap();
    let ctx = a.build_context(&src, &opts).unwrap();
    let names: Vec<&str> = ctx.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Dockerfile",
            // setup.py and pyproject.toml commonly read the README, so it is part of the package.
            "repo/README.md",
            "repo/binder/requirements.txt",
            "repo/lib/growth/__init__.py",
            "repo/setup.py"
        ]
    );
    let d = a.dockerfile(&opts).unwrap();
    assert!(d.contains("[\"repo/lib\", \"/srv/repo/lib\"]"), "{d}");
    let lib = d.find("repo/lib").unwrap();
    let req = d.find("repo/binder/requirements.txt").unwrap();
    assert!(
        lib < req,
        "package tree is copied before `pip install -r` needs it"
    );
}

#[test]
fn spec_r_and_pipfile_generate() {
    let opts = Options::default();
    let r = ok(&[
        ("install.R", "install.packages('x')\n"),
        ("apt.txt", "r-cran-ggplot2\n"),
    ]);
    let d = r.dockerfile(&opts).unwrap();
    assert!(
        d.contains("r-cran-irkernel") && d.contains("RUN Rscript ./install.R"),
        "{d}"
    );
    assert!(r.warnings.iter().any(|w| w.contains("CRAN")));
    let p = ok(&[
        (
            "Pipfile",
            "[packages]\nmine = {path = \".\", editable = true}\n",
        ),
        ("setup.py", ""),
    ]);
    assert!(p.inputs.contains(&"setup.py".to_owned()), "{:?}", p.inputs);
    let d = p.dockerfile(&opts).unwrap();
    assert!(
        d.contains("pipenv lock") && d.contains("pipenv requirements --dev"),
        "{d}"
    );
    let e = err_text(&[("Pipfile", "[packages\n")]);
    assert!(e.starts_with("Pipfile:1:"), "{e}");
    let own = ok(&[
        ("binder/Dockerfile", "FROM busybox\n"),
        ("launch.toml", "[build]\ninputs = [\"binder/\"]\n"),
    ]);
    assert_eq!(own.dockerfile(&opts).unwrap(), "FROM busybox\n");
    assert_eq!(own.dockerfile_path(), "binder/Dockerfile");
    assert!(!own.whole_tree);
}

fn args(path: &Path, git_ref: Option<&str>) -> SpecArgs {
    SpecArgs {
        path_or_git_url: Some(path.display().to_string()),
        git_ref: git_ref.map(String::from),
        json: true,
        dockerfile: true,
        base_python: "3.11".into(),
        max_file_size: 1 << 20,
        context: None,
    }
}

#[test]
fn spec_cli_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), &[("requirements.txt", "numpy\n")]);
    commit(tmp.path());
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
