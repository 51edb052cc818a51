//! Bare mirrors of remote repositories under a cache folder, fetched with git2. Launch specs
//! are read from these mirrors' objects at a commit (no checkout). HTTPS remotes authenticate
//! with a username and a token given to libgit2 through a credentials callback; the token never
//! appears in URLs, remote config or error messages. Local paths and `file://` URLs work too.

use std::path::{Path, PathBuf};

use crate::config::{Secret, redact_url};

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
    /// The fetch failed; `url` has any userinfo removed and `message` any token scrubbed.
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    /// The remote refused the credentials.
    #[error("fetching {url}: authentication failed")]
    Auth { url: String },
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
    let scrub = |m: String| match creds {
        Some((_, t)) if !t.expose().is_empty() => m.replace(t.expose(), "<redacted>"),
        _ => m,
    };
    {
        // An anonymous remote: the URL is not written to the mirror's config.
        let mut remote = repo.remote_anonymous(url).map_err(|e| MirrorError::Fetch {
            url: shown.clone(),
            message: scrub(e.message().to_owned()),
        })?;
        let mut callbacks = git2::RemoteCallbacks::new();
        let mut attempts = 0u32;
        callbacks.credentials(move |_url, _user_from_url, allowed| {
            attempts += 1;
            match creds {
                Some((user, token))
                    if attempts == 1
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
                MirrorError::Fetch {
                    url: shown.clone(),
                    message: scrub(e.message().to_owned()),
                }
            }
        })?;
    }
    Ok(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

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
