//! A file tree: the [`FileTree`] trait and its two implementations,
//! a git commit tree read straight from git objects ([`CommitTree`]) and a directory on disk
//! ([`DirTree`]). Paths are repository-relative, `/`-separated, never absolute.
//!
//! Symlinks are resolved here, once, for both kinds of tree: a link whose target leaves the
//! repository is an error, as is a file over the size limit or text that is not UTF-8.

use std::path::{Path, PathBuf};

/// What a path in the source is, without following symlinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A submodule, socket, device or anything else that is not content.
    Other,
    /// An entry whose name is not UTF-8 (git allows any bytes but `/` and NUL), listed
    /// with its bytes escaped (`caf\xe9.txt`); no path can name it.
    NotUtf8Name,
}

/// Failures reading a source. `Escape`, `TooLarge`, `NotUtf8` and `Loop` are the repository
/// author's to fix; `Io` and `Git` are internal.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: symlink points outside the repository ({target})")]
    Escape { path: String, target: String },
    #[error("{path}: too many levels of symlinks")]
    Loop { path: String },
    #[error("{path}: file is {size} bytes, over the {limit}-byte limit for spec files")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: not valid UTF-8 text (at byte {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error(
        "{path}: the file name is not UTF-8, so nbforge cannot give the file to a build; \
         rename it, or list the files the build needs under [build] inputs in launch.toml"
    )]
    NotUtf8Name { path: String },
    #[error("reading {path}: {message}")]
    Io { path: String, message: String },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

impl TreeError {
    /// True when the repository content is at fault (shown to the user), false for
    /// internal failures (logged, not echoed).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, TreeError::Io { .. } | TreeError::Git(_))
    }
}

/// A tree of files: a commit or a directory. Implementations answer for exact paths and never
/// follow symlinks themselves; [`resolve`] and the helpers below do that uniformly.
pub trait FileTree {
    /// The kind of entry at `path` (no symlink following), or `None` when absent.
    /// `""` is the root directory.
    fn entry(&self, path: &str) -> Result<Option<EntryKind>, TreeError>;
    /// The size in bytes of the regular file at `path`.
    fn file_size(&self, path: &str) -> Result<u64, TreeError>;
    /// The bytes of the regular file at `path`.
    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError>;
    /// The target text of the symlink at `path`.
    fn link_target(&self, path: &str) -> Result<String, TreeError>;
    /// Names and kinds of the entries of the directory at `path`, sorted by name.
    fn list_dir(&self, path: &str) -> Result<Vec<(String, EntryKind)>, TreeError>;
    /// The git blob id of the regular file at `path` (same value for both sources, so a
    /// directory and its commit give the same environment key).
    fn blob_id(&self, path: &str) -> Result<git2::Oid, TreeError> {
        let bytes = self.read_file(path)?;
        Ok(git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)?)
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Normalizes a relative path: drops `.` and empty parts, applies `..`. `None` when `..`
/// climbs above the root or the path is absolute.
pub fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') || path.contains('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Follows symlinks in every component of `path`. Returns the symlink-free path and its kind,
/// or `None` when something along the way does not exist.
pub fn resolve(src: &dyn FileTree, path: &str) -> Result<Option<(String, EntryKind)>, TreeError> {
    let Some(norm) = normalize(path) else {
        return Err(TreeError::Escape {
            path: path.to_owned(),
            target: path.to_owned(),
        });
    };
    let mut pending: Vec<String> = norm
        .split('/')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    pending.reverse();
    let mut current = String::new();
    let mut kind = EntryKind::Dir;
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        if kind != EntryKind::Dir {
            return Ok(None);
        }
        let next = join(&current, &part);
        match src.entry(&next)? {
            None => return Ok(None),
            Some(EntryKind::Symlink) => {
                hops += 1;
                if hops > 16 {
                    return Err(TreeError::Loop {
                        path: path.to_owned(),
                    });
                }
                let target = src.link_target(&next)?;
                let combined = if target.starts_with('/') {
                    None
                } else {
                    normalize(&join(&current, &target))
                };
                let Some(combined) = combined else {
                    return Err(TreeError::Escape { path: next, target });
                };
                // Restart from the root with the link's target followed by what is left.
                let mut rest: Vec<String> = combined
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
                rest.reverse();
                pending.extend(rest);
                current.clear();
                kind = EntryKind::Dir;
            }
            Some(k) => {
                current = next;
                kind = k;
            }
        }
    }
    Ok(Some((current, kind)))
}

/// Reads the regular file at `path` (following symlinks inside the repository), refusing
/// files over `limit` bytes before loading them. `Ok(None)` when absent.
pub fn read_limited(
    src: &dyn FileTree,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, TreeError> {
    match resolve(src, path)? {
        None => Ok(None),
        Some((real, EntryKind::File)) => {
            let size = src.file_size(&real)?;
            if size > limit {
                return Err(TreeError::TooLarge {
                    path: path.to_owned(),
                    size,
                    limit,
                });
            }
            src.read_file(&real).map(Some)
        }
        Some(_) => Err(TreeError::NotAFile {
            path: path.to_owned(),
        }),
    }
}

/// Like [`read_limited`], and the bytes must be UTF-8 text.
pub fn read_text(src: &dyn FileTree, path: &str, limit: u64) -> Result<Option<String>, TreeError> {
    match read_limited(src, path, limit)? {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| TreeError::NotUtf8 {
                path: path.to_owned(),
                offset: e.utf8_error().valid_up_to(),
            }),
    }
}

/// The kind of `path` after following symlinks, `None` when absent.
pub fn kind_of(src: &dyn FileTree, path: &str) -> Result<Option<EntryKind>, TreeError> {
    Ok(resolve(src, path)?.map(|(_, k)| k))
}

/// Every regular file under `dir` (recursively, symlinks to files inside the repository
/// included under their own path; symlinked directories are not descended, so a tree is
/// never walked twice). Sorted. An entry whose name is not UTF-8 is an error
/// ([`TreeError::NotUtf8Name`]): what is walked is given to builds whole.
pub fn walk_files(src: &dyn FileTree, dir: &str) -> Result<Vec<String>, TreeError> {
    walk(src, dir, true)
}

/// [`walk_files`], leaving out entries whose names are not UTF-8 (for finding notebooks,
/// which need a name to be reached by).
pub fn walk_utf8_files(src: &dyn FileTree, dir: &str) -> Result<Vec<String>, TreeError> {
    walk(src, dir, false)
}

fn walk(src: &dyn FileTree, dir: &str, strict: bool) -> Result<Vec<String>, TreeError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for (name, kind) in src.list_dir(&d)? {
            let path = join(&d, &name);
            match kind {
                EntryKind::Dir => stack.push(path),
                EntryKind::File => out.push(path),
                // Links to files inside the repository count; links leaving it are skipped
                // here (they are an error only where a spec file is read through them).
                EntryKind::Symlink => match resolve(src, &path) {
                    Ok(Some((_, EntryKind::File))) => out.push(path),
                    Ok(_) => {}
                    Err(e) if e.is_user_error() => {}
                    Err(e) => return Err(e),
                },
                EntryKind::Other => {}
                EntryKind::NotUtf8Name if strict => {
                    return Err(TreeError::NotUtf8Name { path });
                }
                EntryKind::NotUtf8Name => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A commit's tree, read from git objects without a checkout.
pub struct CommitTree<'r> {
    repo: &'r git2::Repository,
    tree: git2::Tree<'r>,
    commit: git2::Oid,
}

impl<'r> CommitTree<'r> {
    /// Opens the tree of the commit `rev` names (a sha, branch, tag or any revspec).
    pub fn open(repo: &'r git2::Repository, rev: &str) -> Result<Self, TreeError> {
        let commit = repo.revparse_single(rev)?.peel_to_commit()?;
        Ok(CommitTree {
            repo,
            tree: commit.tree()?,
            commit: commit.id(),
        })
    }

    /// The commit this source reads.
    pub fn commit_id(&self) -> git2::Oid {
        self.commit
    }

    fn tree_entry(&self, path: &str) -> Result<Option<git2::TreeEntry<'static>>, TreeError> {
        match self.tree.get_path(Path::new(path)) {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn blob(&self, path: &str) -> Result<git2::Blob<'r>, TreeError> {
        let entry = self.tree_entry(path)?.ok_or_else(|| TreeError::NotAFile {
            path: path.to_owned(),
        })?;
        Ok(self.repo.find_blob(entry.id())?)
    }
}

fn kind_from_mode(mode: i32) -> EntryKind {
    match mode & 0o170000 {
        0o040000 => EntryKind::Dir,
        0o120000 => EntryKind::Symlink,
        0o100000 => EntryKind::File,
        _ => EntryKind::Other,
    }
}

impl FileTree for CommitTree<'_> {
    fn entry(&self, path: &str) -> Result<Option<EntryKind>, TreeError> {
        if path.is_empty() {
            return Ok(Some(EntryKind::Dir));
        }
        Ok(self.tree_entry(path)?.map(|e| kind_from_mode(e.filemode())))
    }

    fn file_size(&self, path: &str) -> Result<u64, TreeError> {
        let entry = self.tree_entry(path)?.ok_or_else(|| TreeError::NotAFile {
            path: path.to_owned(),
        })?;
        let (size, _) = self.repo.odb()?.read_header(entry.id())?;
        Ok(size as u64)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        Ok(self.blob(path)?.content().to_vec())
    }

    fn blob_id(&self, path: &str) -> Result<git2::Oid, TreeError> {
        self.tree_entry(path)?
            .map(|e| e.id())
            .ok_or_else(|| TreeError::NotAFile {
                path: path.to_owned(),
            })
    }

    fn link_target(&self, path: &str) -> Result<String, TreeError> {
        let blob = self.blob(path)?;
        String::from_utf8(blob.content().to_vec()).map_err(|e| TreeError::NotUtf8 {
            path: path.to_owned(),
            offset: e.utf8_error().valid_up_to(),
        })
    }

    fn list_dir(&self, path: &str) -> Result<Vec<(String, EntryKind)>, TreeError> {
        let sub;
        let tree = if path.is_empty() {
            &self.tree
        } else {
            let entry = self.tree_entry(path)?.ok_or_else(|| TreeError::NotAFile {
                path: path.to_owned(),
            })?;
            sub = self.repo.find_tree(entry.id())?;
            &sub
        };
        let mut out = Vec::with_capacity(tree.len());
        for e in tree.iter() {
            match std::str::from_utf8(e.name_bytes()) {
                Ok(name) => out.push((name.to_owned(), kind_from_mode(e.filemode()))),
                Err(_) => out.push((
                    e.name_bytes().escape_ascii().to_string(),
                    EntryKind::NotUtf8Name,
                )),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// A directory on disk. The `.git` folder at its root is not part of the tree.
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree { root: root.into() }
    }

    fn full(&self, path: &str) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        }
    }
}

fn io_err(path: &str, e: std::io::Error) -> TreeError {
    TreeError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn kind_from_meta(m: &std::fs::Metadata) -> EntryKind {
    let t = m.file_type();
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Dir
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

impl FileTree for DirTree {
    fn entry(&self, path: &str) -> Result<Option<EntryKind>, TreeError> {
        if path == ".git" || path.starts_with(".git/") {
            return Ok(None);
        }
        match std::fs::symlink_metadata(self.full(path)) {
            Ok(m) => Ok(Some(kind_from_meta(&m))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }

    fn file_size(&self, path: &str) -> Result<u64, TreeError> {
        std::fs::symlink_metadata(self.full(path))
            .map(|m| m.len())
            .map_err(|e| io_err(path, e))
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, TreeError> {
        std::fs::read(self.full(path)).map_err(|e| io_err(path, e))
    }

    fn link_target(&self, path: &str) -> Result<String, TreeError> {
        let target = std::fs::read_link(self.full(path)).map_err(|e| io_err(path, e))?;
        target
            .into_os_string()
            .into_string()
            .map_err(|_| TreeError::NotUtf8 {
                path: path.to_owned(),
                offset: 0,
            })
    }

    fn list_dir(&self, path: &str) -> Result<Vec<(String, EntryKind)>, TreeError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.full(path)).map_err(|e| io_err(path, e))? {
            let entry = entry.map_err(|e| io_err(path, e))?;
            let name = match entry.file_name().into_string() {
                Ok(name) => name,
                Err(raw) => {
                    use std::os::unix::ffi::OsStrExt as _;
                    out.push((
                        raw.as_bytes().escape_ascii().to_string(),
                        EntryKind::NotUtf8Name,
                    ));
                    continue;
                }
            };
            if path.is_empty() && name == ".git" {
                continue;
            }
            let meta = entry.metadata().map_err(|e| io_err(path, e))?;
            out.push((name, kind_from_meta(&meta)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("a/./b//c").as_deref(), Some("a/b/c"));
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("a/..").as_deref(), Some(""));
        assert_eq!(normalize("../a"), None);
        assert_eq!(normalize("a/../../b"), None);
        assert_eq!(normalize("/etc/passwd"), None);
        assert_eq!(normalize("a\\b"), None);
    }

    #[test]
    fn resolve_through_symlinked_folder_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("real")).unwrap();
        std::fs::write(tmp.path().join("real/f.txt"), "x").unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        std::os::unix::fs::symlink("../..", tmp.path().join("real/up")).unwrap();
        let src = DirTree::new(tmp.path());
        assert_eq!(
            resolve(&src, "link/f.txt").unwrap(),
            Some(("real/f.txt".into(), EntryKind::File))
        );
        assert_eq!(resolve(&src, "link/nope").unwrap(), None);
        assert!(matches!(
            resolve(&src, "real/up/x"),
            Err(TreeError::Escape { .. })
        ));
        assert_eq!(
            read_text(&src, "link/f.txt", 10).unwrap().as_deref(),
            Some("x")
        );
        assert!(matches!(
            read_text(&src, "link/f.txt", 0),
            Err(TreeError::TooLarge { size: 1, .. })
        ));
        assert!(matches!(
            read_text(&src, "real", 10),
            Err(TreeError::NotAFile { .. })
        ));
        assert_eq!(walk_files(&src, "").unwrap(), ["real/f.txt"]);
    }
}
