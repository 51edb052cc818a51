//! Bare mirrors of remote repositories under a cache folder, fetched with git2. Launch specs
//! are read from these mirrors' objects at a commit (no checkout). HTTPS remotes authenticate
//! with a username and a token given to libgit2 through a credentials callback; the token never
//! appears in URLs, remote config or error messages. Local paths and `file://` URLs work too.
//!
//! [`Mirrors`] is the one door to the mirrors of forge projects: it names them (mirror keys),
//! serializes fetches into each with a per-mirror lock, records when each was last fetched,
//! and removes those of projects gone or not fetched for a while.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Secret, redact_url};
use crate::forge::FetchSource;
use crate::storage::{Clock, millis};

/// The file in a mirror holding when it was last fetched (epoch milliseconds).
const FETCHED_AT: &str = "nbforge-fetched-at";

/// The most characters of a project's path a mirror key shows (keys stay well within
/// the 200 characters a key may have).
const KEY_PATH_CHARS: usize = 120;

/// Refspecs used when the caller passes none: all branches and tags, force-updated.
pub const DEFAULT_REFSPECS: &[&str] = &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The cache key cannot name a folder (only letters, digits, `.`, `_`, `-`).
    #[error("invalid mirror key {0:?}")]
    InvalidKey(String),
    /// Creating or opening the mirror on disk failed.
    #[error("mirror {path}: {message}")]
    Local { path: PathBuf, message: String },
    /// The fetch failed; `url` has any userinfo removed, and `message` is nbforge's own
    /// description of what failed (with the HTTP status when there was one), never the
    /// remote's or the network's words.
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// The commit a job is about is not in the fetched repository.
    #[error("commit {commit} is not in the repository of {project}")]
    MissingCommit { project: String, commit: String },
    /// The remote refused the credentials.
    #[error("fetching {url}: authentication failed")]
    Auth { url: String },
    /// The blocking task doing the work did not finish.
    #[error("mirror task: {0}")]
    Task(String),
    /// The forge did not say where to fetch from.
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
}

impl MirrorError {
    /// Whether trying again cannot help: the commit is not there, or the forge refused
    /// the project for good. Such errors are the user's to see, the rest are retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            MirrorError::MissingCommit { .. } => true,
            MirrorError::Forge(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// The bare mirrors of forge projects under one folder.
pub struct Mirrors {
    root: PathBuf,
    clock: Clock,
    /// One lock per mirror, so that fetches into it (and its removal) do not overlap.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A fetched mirror, held: no fetch into it or removal runs until this is dropped.
pub struct MirrorGuard {
    path: PathBuf,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl MirrorGuard {
    /// The mirror's folder (a bare repository).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Mirrors {
    pub fn new(root: PathBuf, clock: Clock) -> Mirrors {
        Mirrors {
            root,
            clock,
            locks: std::sync::Mutex::default(),
        }
    }

    /// The folder-safe key of a project's mirror: readable, and distinct for distinct
    /// (forge, path) pairs. GitLab paths can be far longer than a folder name may be: a
    /// long path keeps its first [`KEY_PATH_CHARS`] characters and is told apart by a
    /// SHA-256 prefix of the whole path.
    pub fn key(forge: &str, path: &str) -> String {
        let safe: String = path
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe.trim_start_matches('.');
        if safe.len() <= KEY_PATH_CHARS {
            return format!("{forge}-{safe}-{:08x}", fnv(path));
        }
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(path.as_bytes()));
        format!("{forge}-{}-{}", &safe[..KEY_PATH_CHARS], &digest[..24])
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Fetches project `path` of `forge` from `source` into its mirror, and holds the
    /// mirror for reading until the guard is dropped.
    pub async fn fetch(
        &self,
        forge: &str,
        path: &str,
        source: FetchSource,
    ) -> Result<MirrorGuard, MirrorError> {
        let key = Self::key(forge, path);
        let lock = self.lock(&key).lock_owned().await;
        let root = self.root.clone();
        let now = self.clock.now_ms();
        let path = tokio::task::spawn_blocking(move || {
            let creds = source.credentials.as_ref().map(|(u, t)| (u.as_str(), t));
            let repo = fetch_mirror(&root, &key, &source.url, creds, &[])?;
            let path = repo.path().to_owned();
            std::fs::write(path.join(FETCHED_AT), now.to_string()).map_err(|e| {
                MirrorError::Local {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            Ok::<_, MirrorError>(path)
        })
        .await
        .map_err(|e| MirrorError::Task(e.to_string()))??;
        Ok(MirrorGuard { path, _lock: lock })
    }

    /// Asks `forge` where `project` is fetched from, fetches it as [`Mirrors::fetch`], and
    /// requires `commit` to be a commit in it ([`MirrorError::MissingCommit`] otherwise).
    pub async fn fetch_project(
        &self,
        forge: &dyn crate::forge::Forge,
        project: &crate::events::ProjectRef,
        commit: &str,
    ) -> Result<MirrorGuard, MirrorError> {
        let source = forge.fetch_source(&project.into()).await?;
        let mirror = self
            .fetch(project.forge.name(), &project.path, source)
            .await?;
        let path = mirror.path().to_owned();
        let sha = commit.to_owned();
        let found = tokio::task::spawn_blocking(move || has_commit(&path, &sha))
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))??;
        if !found {
            return Err(MirrorError::MissingCommit {
                project: project.path.clone(),
                commit: commit.to_owned(),
            });
        }
        Ok(mirror)
    }

    /// Removes the mirrors of projects not in `projects` (forge, path), and those not
    /// fetched for `retention`. A mirror being fetched is left alone. Returns the removed
    /// mirrors' keys.
    pub async fn remove_unused(
        &self,
        projects: &[(String, String)],
        retention: Duration,
    ) -> Result<Vec<String>, MirrorError> {
        let known: HashSet<String> = projects.iter().map(|(f, p)| Self::key(f, p)).collect();
        let cutoff = self.clock.now_ms() - millis(retention);
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(MirrorError::Local {
                    path: self.root.clone(),
                    message: e.to_string(),
                });
            }
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".git") else {
                continue;
            };
            if !valid_key(key) {
                continue;
            }
            let fetched_at = std::fs::read_to_string(entry.path().join(FETCHED_AT))
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .unwrap_or(0);
            if known.contains(key) && fetched_at >= cutoff {
                continue;
            }
            let Ok(_held) = self.lock(key).try_lock_owned() else {
                continue;
            };
            let path = entry.path();
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path).map(|_| path))
                .await
                .map_err(|e| MirrorError::Task(e.to_string()))?
                .map_err(|e| MirrorError::Local {
                    path: entry.path(),
                    message: e.to_string(),
                })?;
            removed.push(key.to_owned());
        }
        removed.sort();
        Ok(removed)
    }
}

/// Whether the bare repository at `path` holds commit `sha` (a full 40/64-hex id).
fn has_commit(path: &Path, sha: &str) -> Result<bool, MirrorError> {
    let repo = git2::Repository::open_bare(path).map_err(|e| MirrorError::Local {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })?;
    let Ok(oid) = git2::Oid::from_str(sha) else {
        return Ok(false);
    };
    // A full id only: a prefix would name whatever commit happens to start with it.
    if oid.to_string() != sha.to_ascii_lowercase() {
        return Ok(false);
    }
    Ok(repo.find_commit(oid).is_ok())
}

/// nbforge's words for a failed fetch: what went wrong and, from HTTP, the status code;
/// never the remote's answer or the network's error text (which can tell a port open
/// from a closed one, or carry whatever a server chose to say).
fn fetch_failure(e: &git2::Error) -> String {
    if let Some(status) = http_status(e.message()) {
        return format!("the remote answered HTTP {status}");
    }
    match e.class() {
        git2::ErrorClass::Net | git2::ErrorClass::Os => "the remote could not be reached".into(),
        git2::ErrorClass::Ssl => "the TLS connection to the remote failed".into(),
        git2::ErrorClass::Http => "the remote's HTTP answer was not a git repository".into(),
        git2::ErrorClass::Repository | git2::ErrorClass::Odb | git2::ErrorClass::Reference => {
            "the remote is not a readable git repository".into()
        }
        _ => "the remote could not be read".into(),
    }
}

/// The status code in libgit2's "unexpected http status code: 404".
fn http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A small stable hash so that distinct paths never share a mirror.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x01000193)
    })
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The folder of the mirror named `key` under `cache_root`.
pub fn mirror_path(cache_root: &Path, key: &str) -> Result<PathBuf, MirrorError> {
    if !valid_key(key) {
        return Err(MirrorError::InvalidKey(key.to_owned()));
    }
    Ok(cache_root.join(format!("{key}.git")))
}

/// Whether git asks for credentials for the same scheme, host and port as the URL nbforge
/// gave it: a token is never handed to a host a redirect led to.
fn same_origin(given: &str, asked: &str) -> bool {
    match (url::Url::parse(given), url::Url::parse(asked)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// Opens (creating if needed) the bare mirror `key` under `cache_root` and fetches `url` into
/// it with `refspecs` (or [`DEFAULT_REFSPECS`] when empty), pruning refs gone upstream.
/// `creds` is (username, token) for HTTPS remotes.
pub fn fetch_mirror(
    cache_root: &Path,
    key: &str,
    url: &str,
    creds: Option<(&str, &Secret)>,
    refspecs: &[&str],
) -> Result<git2::Repository, MirrorError> {
    let path = mirror_path(cache_root, key)?;
    let local = |e: &dyn std::fmt::Display| MirrorError::Local {
        path: path.clone(),
        message: e.to_string(),
    };
    let repo = match git2::Repository::open_bare(&path) {
        Ok(r) => r,
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            std::fs::create_dir_all(&path).map_err(|e| local(&e))?;
            git2::Repository::init_bare(&path).map_err(|e| local(&e))?
        }
        Err(e) => return Err(local(&e)),
    };
    let shown = redact_url(url);
    {
        // An anonymous remote: the URL is not written to the mirror's config.
        let mut remote = repo.remote_anonymous(url).map_err(|e| MirrorError::Fetch {
            url: shown.clone(),
            message: fetch_failure(&e),
        })?;
        let mut callbacks = git2::RemoteCallbacks::new();
        let mut attempts = 0u32;
        let origin = url.to_owned();
        callbacks.credentials(move |asked, _user_from_url, allowed| {
            attempts += 1;
            match creds {
                Some((user, token))
                    if attempts == 1
                        && same_origin(&origin, asked)
                        && allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    git2::Cred::userpass_plaintext(user, token.expose())
                }
                _ => Err(git2::Error::new(
                    git2::ErrorCode::Auth,
                    git2::ErrorClass::Http,
                    "no usable credentials",
                )),
            }
        });
        let mut fo = git2::FetchOptions::new();
        fo.remote_callbacks(callbacks);
        fo.prune(git2::FetchPrune::On);
        fo.download_tags(git2::AutotagOption::None);
        let specs: &[&str] = if refspecs.is_empty() {
            DEFAULT_REFSPECS
        } else {
            refspecs
        };
        remote.fetch(specs, Some(&mut fo), None).map_err(|e| {
            if e.code() == git2::ErrorCode::Auth {
                MirrorError::Auth { url: shown.clone() }
            } else {
                tracing::debug!(
                    url = %shown,
                    git.class = ?e.class(),
                    git.code = ?e.code(),
                    "fetch failed"
                );
                MirrorError::Fetch {
                    url: shown.clone(),
                    message: fetch_failure(&e),
                }
            }
        })?;
    }
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 18: the credential callback handed the token to whatever URL git asked about.
    #[test]
    fn finding_18_tokens_go_to_another_host() {
        let given = "https://gitlab.example.org/lab/x.git";
        assert!(same_origin(
            given,
            "https://gitlab.example.org/lab/x.git/info/refs"
        ));
        assert!(same_origin(
            given,
            "https://gitlab.example.org:443/other.git"
        ));
        for other in [
            "https://evil.example/lab/x.git",
            "http://gitlab.example.org/lab/x.git",
            "https://gitlab.example.org:8443/lab/x.git",
            "https://gitlab.example.org.evil.example/x.git",
            "not a url",
        ] {
            assert!(!same_origin(given, other), "{other}");
        }
    }

    #[test]
    fn fetch_errors_are_in_our_words() {
        assert_eq!(http_status("unexpected http status code: 404"), Some(404));
        assert_eq!(http_status("failed to connect to 127.0.0.1: refused"), None);
        let tmp = tempfile::tempdir().unwrap();
        // A port nothing listens on: the listener is dropped before the fetch.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x.git");
        let Err(MirrorError::Fetch { message, .. }) =
            fetch_mirror(tmp.path(), "p", &url, None, &[])
        else {
            panic!("fetching from a closed port succeeded");
        };
        assert_eq!(message, "the remote could not be reached");
    }

    #[test]
    fn missing_commits_are_found_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(tmp.path().join("r.git")).unwrap();
        let tree = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let id = repo
            .commit(Some("refs/heads/main"), &sig, &sig, "c", &tree, &[])
            .unwrap()
            .to_string();
        let path = tmp.path().join("r.git");
        assert!(has_commit(&path, &id).unwrap());
        assert!(!has_commit(&path, &"ab".repeat(20)).unwrap());
        assert!(
            !has_commit(&path, &id[..12]).unwrap(),
            "a prefix is not an id"
        );
        // A tree is an object, but not a commit.
        assert!(!has_commit(&path, &tree.id().to_string()).unwrap());
    }

    #[test]
    fn long_paths_make_valid_distinct_keys() {
        let long = format!("lab/{}", "sub-group/".repeat(40));
        let a = Mirrors::key("gitlab", &format!("{long}a"));
        let b = Mirrors::key("gitlab", &format!("{long}b"));
        assert_ne!(a, b);
        for k in [&a, &b] {
            assert!(k.len() <= 200, "{k}");
            assert!(mirror_path(Path::new("/c"), k).is_ok(), "{k}");
        }
        // Short paths keep the keys they had.
        assert_eq!(
            Mirrors::key("gitlab", "lab/x"),
            format!("gitlab-lab_x-{:08x}", fnv("lab/x"))
        );
    }

    #[test]
    fn keys_are_folder_names() {
        assert!(mirror_path(Path::new("/c"), "gitlab_42").is_ok());
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(
                matches!(
                    mirror_path(Path::new("/c"), bad),
                    Err(MirrorError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn fetches_a_local_repository_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = git2::Repository::init(tmp.path().join("up")).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = |msg: &str, content: &str| {
            std::fs::write(tmp.path().join("up/f.txt"), content).unwrap();
            let mut idx = upstream.index().unwrap();
            idx.add_path(Path::new("f.txt")).unwrap();
            let tree = upstream.find_tree(idx.write_tree().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = upstream
                .head()
                .ok()
                .and_then(|h| h.peel_to_commit().ok())
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            upstream
                .commit(Some("HEAD"), &sig, &sig, msg, &tree, &refs)
                .unwrap()
        };
        let first = commit("one", "1");
        let url = format!("file://{}", tmp.path().join("up").display());
        let cache = tmp.path().join("cache");
        let m = fetch_mirror(&cache, "p1", &url, None, &[]).unwrap();
        assert!(m.is_bare());
        let head = upstream.head().unwrap().name().unwrap().to_owned();
        assert_eq!(m.refname_to_id(&head).unwrap(), first);
        let second = commit("two", "2");
        let token = Secret::new("tok-123");
        let m = fetch_mirror(&cache, "p1", &url, Some(("oauth2", &token)), &[]).unwrap();
        assert_eq!(m.refname_to_id(&head).unwrap(), second);
        assert!(
            m.remotes().unwrap().is_empty(),
            "no remote with a URL is stored"
        );
        let Err(err) = fetch_mirror(&cache, "p2", "/nonexistent/repo", Some(("u", &token)), &[])
        else {
            panic!("fetching a missing repository succeeded");
        };
        assert!(!err.to_string().contains("tok-123"));
    }
}
