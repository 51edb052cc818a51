//! The repository a session opens: fetched as the user, handed to the session as a git
//! bundle.
//!
//! nbforge fetches the launched ref from the project's own clone URL with the user's token
//! (from their GitLab login; never the service's token), into a scratch repository that
//! borrows the objects of nbforge's mirror, so only what the mirror lacks crosses the
//! network while the forge still decides whether this user may read the project. The launched
//! commit and its history are then written as a git bundle (git's own transport file: a
//! header naming the commit, then a pack) that the session clones or fast-forwards from
//! inside its container. The token never enters the container nor the checkout's remote URL.

use std::path::{Path, PathBuf};

use crate::config::Secret;
use crate::repo::mirror::{MirrorError, fetch_mirror};

/// The ref the bundle names the launched commit by.
pub const BUNDLE_REF: &str = "refs/nbforge/launch";

/// How fetching as the user went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The forge refused the user's credentials or the user may not read the project.
    #[error("GitLab did not let you read this repository with your login")]
    Refused,
    /// The commit is not on the ref the forge gave the user.
    #[error("commit {0} is not on the launched ref")]
    MissingCommit(String),
    #[error("fetching the repository failed: {0}")]
    Fetch(String),
    #[error("writing the repository bundle failed: {0}")]
    Local(String),
}

impl From<MirrorError> for CheckoutError {
    fn from(e: MirrorError) -> CheckoutError {
        match e {
            MirrorError::Auth { .. } => CheckoutError::Refused,
            // GitLab answers 404 (or 403) to a user who may not read the project.
            MirrorError::Fetch { message, .. }
                if ["HTTP 401", "HTTP 403", "HTTP 404"]
                    .iter()
                    .any(|s| message.ends_with(s)) =>
            {
                CheckoutError::Refused
            }
            e => CheckoutError::Fetch(e.to_string()),
        }
    }
}

/// Where the user's fetch comes from.
pub struct UserFetch<'a> {
    /// The project's clone URL (from the forge API).
    pub url: &'a str,
    /// (username, token) for the forge (`oauth2`, the user's OAuth token); `None` for
    /// public repositories fetched without credentials.
    pub credentials: Option<(&'a str, &'a Secret)>,
    /// The refs to fetch (`refs/heads/<branch>`, `refs/tags/<tag>`), or empty for all
    /// branches and tags.
    pub refs: Vec<String>,
}

/// Writes the bundle of `commit` (the commit and its history) to `out`, fetched as the
/// user when `fetch` is given (into a scratch repository under `scratch` that borrows the
/// objects of the bare `mirror`), or straight from `mirror` otherwise (plain-git projects,
/// whose access nbforge decides itself).
pub fn write_bundle(
    mirror: &Path,
    fetch: Option<UserFetch<'_>>,
    scratch: &Path,
    commit: &str,
    out: &Path,
) -> Result<(), CheckoutError> {
    let local = |e: &dyn std::fmt::Display| CheckoutError::Local(e.to_string());
    let oid = git2::Oid::from_str(commit).map_err(|e| local(&e))?;
    let source: PathBuf = match fetch {
        None => mirror.to_owned(),
        Some(fetch) => {
            std::fs::create_dir_all(scratch).map_err(|e| local(&e))?;
            let key = format!("user-{}", uuid::Uuid::new_v4().simple());
            let path = crate::repo::mirror::mirror_path(scratch, &key)?;
            let result = (|| {
                let repo = git2::Repository::init_bare(&path).map_err(|e| local(&e))?;
                std::fs::write(
                    repo.path().join("objects/info/alternates"),
                    format!("{}\n", mirror.join("objects").display()),
                )
                .map_err(|e| local(&e))?;
                let specs: Vec<String> = if fetch.refs.is_empty() {
                    vec![
                        "+refs/heads/*:refs/heads/*".into(),
                        "+refs/tags/*:refs/tags/*".into(),
                    ]
                } else {
                    fetch.refs.iter().map(|r| format!("+{r}:{r}")).collect()
                };
                let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
                drop(repo);
                let repo = fetch_mirror(scratch, &key, fetch.url, fetch.credentials, &specs)?;
                if !reachable(&repo, oid)? {
                    return Err(CheckoutError::MissingCommit(commit.to_owned()));
                }
                pack_bundle(&repo, oid, out)
            })();
            std::fs::remove_dir_all(&path).ok();
            return result;
        }
    };
    let repo = git2::Repository::open_bare(&source).map_err(|e| local(&e))?;
    pack_bundle(&repo, oid, out)
}

/// Whether `oid` is a fetched ref's commit or one of its ancestors.
fn reachable(repo: &git2::Repository, oid: git2::Oid) -> Result<bool, CheckoutError> {
    let local = |e: git2::Error| CheckoutError::Local(e.to_string());
    for r in repo.references().map_err(local)? {
        let r = r.map_err(local)?;
        let Ok(tip) = r.peel_to_commit() else {
            continue;
        };
        if tip.id() == oid || repo.graph_descendant_of(tip.id(), oid).unwrap_or(false) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A v2 git bundle of `oid` and its history: `# v2 git bundle`, the ref line, an empty
/// line, then the pack.
fn pack_bundle(repo: &git2::Repository, oid: git2::Oid, out: &Path) -> Result<(), CheckoutError> {
    let local = |e: &dyn std::fmt::Display| CheckoutError::Local(e.to_string());
    let mut walk = repo.revwalk().map_err(|e| local(&e))?;
    walk.push(oid).map_err(|e| local(&e))?;
    let mut pack = repo.packbuilder().map_err(|e| local(&e))?;
    pack.insert_walk(&mut walk).map_err(|e| local(&e))?;
    let mut bytes = git2::Buf::new();
    pack.write_buf(&mut bytes).map_err(|e| local(&e))?;
    let mut file = std::fs::File::create(out).map_err(|e| local(&e))?;
    use std::io::Write as _;
    write!(file, "# v2 git bundle\n{oid} {BUNDLE_REF}\n\n").map_err(|e| local(&e))?;
    file.write_all(&bytes).map_err(|e| local(&e))?;
    file.sync_all().map_err(|e| local(&e))
}

/// The folder a project is checked out into below the home: the project's own name
/// (the last path segment), restricted to a plain file name.
pub fn folder_for(project: &str) -> String {
    let name = project.rsplit('/').next().unwrap_or(project);
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.');
    if clean.is_empty() {
        "project".into()
    } else {
        crate::text::truncate(clean, 100).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_file(repo: &git2::Repository, name: &str, text: &str) -> git2::Oid {
        let blob = repo.blob(text.as_bytes()).unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert(name, blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
            .unwrap()
    }

    #[test]
    fn a_bundle_clones_with_git_at_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let origin = git2::Repository::init(dir.path().join("origin")).unwrap();
        let first = commit_file(&origin, "a.txt", "one");
        let second = commit_file(&origin, "a.txt", "two");
        let mirror = dir.path().join("mirror.git");
        let url = format!("file://{}", dir.path().join("origin").display());
        crate::repo::mirror::fetch_mirror(dir.path(), "mirror", &url, None, &[]).unwrap();
        let out = dir.path().join("x.bundle");
        let fetch = UserFetch {
            url: &url,
            credentials: None,
            refs: vec![],
        };
        write_bundle(
            &mirror,
            Some(fetch),
            &dir.path().join("scratch"),
            &first.to_string(),
            &out,
        )
        .unwrap();
        // The scratch repository is gone.
        assert_eq!(
            std::fs::read_dir(dir.path().join("scratch"))
                .unwrap()
                .count(),
            0
        );
        let clone = dir.path().join("clone");
        let git = |args: &[&str]| {
            let st = std::process::Command::new("git")
                .arg("-C")
                .arg(&clone)
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "git {args:?}");
        };
        std::fs::create_dir(&clone).unwrap();
        git(&["init", "-q"]);
        let spec = format!("{BUNDLE_REF}:{BUNDLE_REF}");
        git(&["fetch", "-q", out.to_str().unwrap(), &spec]);
        git(&["checkout", "-q", "--detach", &first.to_string()]);
        let repo = git2::Repository::open(&clone).unwrap();
        assert_eq!(repo.head().unwrap().peel_to_commit().unwrap().id(), first);
        assert_eq!(std::fs::read_to_string(clone.join("a.txt")).unwrap(), "one");
        // A commit that is on no fetched ref is refused.
        let other = git2::Oid::from_str(&"ab".repeat(20)).unwrap();
        let fetch = UserFetch {
            url: &url,
            credentials: None,
            refs: vec![],
        };
        assert!(matches!(
            write_bundle(
                &mirror,
                Some(fetch),
                &dir.path().join("scratch"),
                &other.to_string(),
                &out
            ),
            Err(CheckoutError::MissingCommit(_))
        ));
        // Straight from the mirror.
        write_bundle(
            &mirror,
            None,
            &dir.path().join("scratch"),
            &second.to_string(),
            &out,
        )
        .unwrap();
        let text = std::fs::read(&out).unwrap();
        assert!(text.starts_with(format!("# v2 git bundle\n{second} {BUNDLE_REF}\n\n").as_bytes()));
    }

    #[test]
    fn checkout_folders() {
        assert_eq!(folder_for("lab/rna-seq"), "rna-seq");
        assert_eq!(folder_for("lab/..."), "project");
        assert_eq!(folder_for("lab/a b"), "a_b");
    }
}
