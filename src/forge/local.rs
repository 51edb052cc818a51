//! The local forge: plain bare git repositories on this machine, announced by
//! `hooks/post-receive`. Commit statuses are kept in nbforge's own database (and
//! shown through its API); projects are fetched straight from their repository.
//! Merge requests do not exist on a plain git server.
//!
//! A delivery cannot be trusted to say where a project lives: the local forge reads only
//! bare repositories inside its configured roots (`NBFORGE_GIT_ROOTS`), and project
//! `lab/x` is only ever the repository at `<root>/lab/x.git` (or `<root>/lab/x`). Clone
//! URLs are `file://` URLs or plain paths, resolved with symlinks followed before they are
//! compared; anything else (http(s), another folder, `..`) is refused without being read.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{CommitStatus, FetchSource, Forge, ForgeError, ForgeResult, Note, ProjectId};
use crate::events::ProjectRef;
use crate::storage::{Db, LocalStatusRow, ProjectRow};

/// Projects heard of through GitLab-shaped events are recorded under this forge name.
const FORGE: &str = "gitlab";

pub struct LocalForge {
    db: Db,
    /// Folders holding the repositories nbforge may read, as configured.
    roots: Vec<PathBuf>,
}

impl LocalForge {
    pub fn new(db: Db, roots: Vec<PathBuf>) -> LocalForge {
        LocalForge { db, roots }
    }

    async fn row(&self, project: &ProjectId) -> ForgeResult<ProjectRow> {
        let found = match project {
            ProjectId::Path(path) => self.db.get_project(FORGE, path).await,
            ProjectId::Id(id) => self.db.get_project_by_forge_id(FORGE, *id).await,
        }
        .map_err(|e| ForgeError::Unavailable(e.to_string()))?;
        found.ok_or_else(|| ForgeError::NotFound(format!("project {project}")))
    }

    /// The bare repository of project `path`: the one `url` names when given, else the one
    /// at the project's place under a root. Refused unless it lies inside a root, at
    /// `<root>/<path>.git` or `<root>/<path>`.
    pub fn locate(&self, path: &str, url: Option<&str>) -> ForgeResult<PathBuf> {
        let refuse = |why: &str| {
            ForgeError::Refused(format!(
                "project `{path}`: {why}; without GitLab, nbforge reads only bare repositories \
                 under NBFORGE_GIT_ROOTS, project `lab/x` being `<root>/lab/x.git`"
            ))
        };
        let candidates: Vec<PathBuf> = match url {
            Some(url) => vec![local_path(url).ok_or_else(|| {
                refuse("its clone URL is not a file:// URL or an absolute path on this machine")
            })?],
            None => self
                .roots
                .iter()
                .flat_map(|r| [r.join(format!("{path}.git")), r.join(path)])
                .collect(),
        };
        let roots: Vec<PathBuf> = self
            .roots
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        let mut outside = false;
        for candidate in candidates {
            let Ok(real) = std::fs::canonicalize(&candidate) else {
                continue;
            };
            let Some(place) = roots.iter().find_map(|r| project_path(r, &real)) else {
                outside = true;
                continue;
            };
            if place != path {
                return Err(refuse(&format!(
                    "its repository is the one of project `{place}`"
                )));
            }
            return match git2::Repository::open_bare(&real) {
                Ok(repo) if repo.is_bare() => Ok(real),
                _ => Err(refuse("its repository is not a bare git repository")),
            };
        }
        Err(if outside {
            refuse("its repository is outside the git roots")
        } else {
            refuse("no such repository under the git roots")
        })
    }
}

/// The filesystem path a `file://` URL or an absolute path names; None for anything else.
fn local_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("file:") {
        let parsed = url::Url::parse(url).ok()?;
        // `file://host/…` names another machine.
        if parsed.host_str().is_some_and(|h| !h.is_empty()) {
            return None;
        }
        return parsed.to_file_path().ok();
    }
    let path = Path::new(url);
    path.is_absolute().then(|| path.to_owned())
}

/// The project path of repository `repo` under `root` (both canonical): its path relative
/// to the root with `/` separators and without `.git`. None when it is not inside the root.
fn project_path(root: &Path, repo: &Path) -> Option<String> {
    let relative = repo.strip_prefix(root).ok()?;
    let parts: Vec<&str> = relative
        .components()
        .map(|c| match c {
            std::path::Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let joined = parts.join("/");
    let place = joined.strip_suffix(".git").unwrap_or(&joined);
    (!place.is_empty()).then(|| place.to_owned())
}

#[async_trait]
impl Forge for LocalForge {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn set_commit_status(
        &self,
        project: &ProjectId,
        sha: &str,
        status: &CommitStatus,
    ) -> ForgeResult<()> {
        let path = self.row(project).await?.path;
        self.db
            .insert_local_status(&LocalStatusRow {
                project: path,
                sha: sha.to_owned(),
                name: status.name.clone(),
                state: status.state.as_str().to_owned(),
                ref_name: status.ref_name.clone(),
                target_url: status.target_url.clone(),
                description: status.description.clone(),
            })
            .await
            .map_err(|e| ForgeError::Unavailable(e.to_string()))
    }

    async fn list_merge_request_notes(&self, _: &ProjectId, _: i64) -> ForgeResult<Vec<Note>> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    async fn create_merge_request_note(&self, _: &ProjectId, _: i64, _: &str) -> ForgeResult<Note> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    async fn edit_merge_request_note(
        &self,
        _: &ProjectId,
        _: i64,
        _: i64,
        _: &str,
    ) -> ForgeResult<Note> {
        Err(ForgeError::Unsupported("merge requests"))
    }

    /// The recorded repository, checked again against the roots: a row written before
    /// the roots were configured (or changed) cannot lead anywhere else.
    async fn fetch_source(&self, project: &ProjectId) -> ForgeResult<FetchSource> {
        let row = self.row(project).await?;
        let repo = self.locate(&row.path, row.git_url.as_deref())?;
        Ok(FetchSource {
            url: file_url(&repo),
            credentials: None,
        })
    }

    /// A plain git server has no ids and no visibility: the project is its path, and its
    /// repository the one at that path under a root.
    ///
    /// GitHub events reach this forge only when no GitHub token is configured: they are
    /// recorded as they come, without a clone URL, since nothing here can confirm them.
    async fn verify_project(&self, claimed: &ProjectRef) -> ForgeResult<ProjectRef> {
        if claimed.forge != crate::events::ForgeKind::GitLab {
            return Ok(ProjectRef {
                git_http_url: None,
                ..claimed.clone()
            });
        }
        let repo = self.locate(&claimed.path, claimed.git_http_url.as_deref())?;
        Ok(ProjectRef {
            id: None,
            git_http_url: Some(file_url(&repo)),
            visibility: None,
            ..claimed.clone()
        })
    }
}

/// The `file://` URL of a local (canonical, absolute) path.
fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path)
        .map(String::from)
        .unwrap_or_else(|()| format!("file://{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_paths_under_a_root() {
        let root = Path::new("/srv/git");
        assert_eq!(
            project_path(root, Path::new("/srv/git/lab/x.git")).as_deref(),
            Some("lab/x")
        );
        assert_eq!(
            project_path(root, Path::new("/srv/git/lab/x")).as_deref(),
            Some("lab/x")
        );
        assert_eq!(project_path(root, Path::new("/srv/gitx/lab/x.git")), None);
        assert_eq!(project_path(root, Path::new("/srv/git")), None);
        assert_eq!(project_path(root, Path::new("/etc/x.git")), None);
    }

    #[test]
    fn only_local_urls_name_paths() {
        assert_eq!(
            local_path("file:///srv/git/lab/x.git"),
            Some(PathBuf::from("/srv/git/lab/x.git"))
        );
        assert_eq!(
            local_path("/srv/git/lab/x.git"),
            Some(PathBuf::from("/srv/git/lab/x.git"))
        );
        for other in [
            "http://127.0.0.1:9/x.git",
            "https://example.org/x.git",
            "file://other-host/srv/git/x.git",
            "git@example.org:x.git",
            "ssh://example.org/x.git",
            "lab/x.git",
        ] {
            assert_eq!(local_path(other), None, "{other}");
        }
    }
}
