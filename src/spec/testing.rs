//! Helpers for the launch-spec unit tests: repositories written to temporary folders and
//! committed, analysed from disk and from the commit (which must agree), and the example
//! repositories of `binder-specs/`.

use super::{Analysis, Kind, Options, SpecError};
use crate::repo::{CommitTree, DirTree};
use std::path::{Path, PathBuf};

pub fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// Commits the whole working tree of `root` (a fresh repository on first use) and returns
/// the repository.
pub fn commit(root: &Path) -> git2::Repository {
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

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("binder-specs")
}

pub fn summary(r: &Result<Analysis, SpecError>) -> String {
    match r {
        Ok(a) => format!(
            "{:?} {:?} {} {:?}",
            a.kind, a.files, a.environment_key, a.inputs
        ),
        Err(e) => format!("err: {e}"),
    }
}

/// Analyzes `root` from disk and from a commit of it, checks both agree, returns the result.
pub fn analyze_at(root: &Path, opts: &Options) -> Result<Analysis, SpecError> {
    let from_dir = super::analyze(&DirTree::new(root), opts);
    let repo = commit(root);
    let src = CommitTree::open(&repo, "HEAD").unwrap();
    let from_git = super::analyze(&src, opts);
    assert_eq!(
        summary(&from_dir),
        summary(&from_git),
        "directory and commit disagree"
    );
    from_dir
}

pub fn analyze_files(files: &[(&str, &str)]) -> Result<Analysis, SpecError> {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), files);
    analyze_at(tmp.path(), &Options::default())
}

pub fn ok(files: &[(&str, &str)]) -> Analysis {
    match analyze_files(files) {
        Ok(a) => a,
        Err(e) => panic!("expected a valid spec for {files:?}: {e}"),
    }
}

pub fn err_text(files: &[(&str, &str)]) -> String {
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

pub fn worksheet_example() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&examples().join("worksheet"), tmp.path());
    tmp
}

pub fn copy_dir(from: &Path, to: &Path) {
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

pub fn key(root: &Path) -> String {
    analyze_at(root, &Options::default())
        .unwrap()
        .environment_key
}

pub fn root_src(root: &Path) -> Box<DirTree> {
    Box::new(DirTree::new(root))
}

/// One representative file per kind, in repo2docker's precedence order.
pub const KINDS: &[(Kind, &str, &str)] = &[
    (Kind::Dockerfile, "Dockerfile", "FROM scratch\n"),
    (Kind::Julia, "Project.toml", "[deps]\n"),
    (Kind::JuliaRequire, "REQUIRE", "julia 1.0\n"),
    (Kind::Nix, "default.nix", "{ }\n"),
    (Kind::R, "install.R", "install.packages('x')\n"),
    (Kind::Conda, "environment.yml", "dependencies:\n  - numpy\n"),
    (Kind::Pipfile, "Pipfile", "[packages]\nrequests = \"*\"\n"),
    (Kind::Python, "requirements.txt", "numpy\n"),
];

/// The example repositories of `binder-specs/`, by folder name, sorted.
pub fn example_repositories() -> Vec<(String, PathBuf)> {
    let mut repos: Vec<(String, PathBuf)> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    repos.sort();
    repos
}
