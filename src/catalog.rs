//! The catalog of published worksheets. A tag push publishes the project's worksheets at
//! that tag: the `[[worksheet]]` entries of `launch.toml`, or else every notebook with a
//! `parameters` cell. Each is rendered without code and stored with its notebook, under
//! `/w/<namespace>/<project>/<tag>/<path>`. A broken notebook fails that worksheet with
//! its reason; the rest of the release is published.

use crate::events::ProjectRef;
use crate::forge::Forge;
use crate::repo::FileTree;
use crate::repo::mirror::{MirrorError, Mirrors};
use crate::repo::tree::{read_limited, read_text, walk_utf8_files};
use crate::storage::{Db, NewWorksheet, ReleaseRow};
use crate::worksheet::{Notebook, PARAMETERS_TAG, RenderOptions, render};

/// Largest notebook published.
pub const MAX_NOTEBOOK_BYTES: u64 = 50 * 1024 * 1024;
/// Most worksheets in one release.
pub const MAX_WORKSHEETS: usize = 200;
/// Most notebook bytes in one release. Publishing holds one notebook at a time: each is
/// rendered and stored as it is read, and the release is switched to them at the end.
pub const MAX_RELEASE_BYTES: usize = 256 * 1024 * 1024;

/// How publishing a tag ended badly.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The tag cannot be published as it is (its commit is not in the repository).
    #[error("{0}")]
    User(String),
    /// Something outside nbforge failed (forge, database, disk): worth retrying.
    #[error("{0:#}")]
    Infrastructure(anyhow::Error),
}

macro_rules! infrastructure_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PublishError {
            fn from(e: $t) -> Self {
                PublishError::Infrastructure(e.into())
            }
        }
    )*};
}
infrastructure_from!(crate::storage::DbError);

impl From<crate::repo::mirror::MirrorError> for PublishError {
    /// A missing commit or a refused project is final; the rest is retried.
    fn from(e: crate::repo::mirror::MirrorError) -> Self {
        if e.is_permanent() {
            PublishError::User(e.to_string())
        } else {
            PublishError::Infrastructure(e.into())
        }
    }
}

/// What a release holds.
#[derive(Debug, Clone, Default)]
pub struct Publication {
    pub title: Option<String>,
    pub area: Option<String>,
    /// A problem with the release as a whole (e.g. an invalid `launch.toml`).
    pub error: Option<String>,
    /// The worksheets, when collected with [`collect`] ([`collect_each`] keeps none).
    pub sheets: Vec<NewWorksheet>,
    /// Worksheets admitted, and their notebook bytes.
    pub count: usize,
    pub held: usize,
    /// The receiver of worksheets stopped taking them.
    pub stopped: bool,
}

fn file_name(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".ipynb")
        .unwrap_or(name)
        .replace(['_', '-'], " ")
}

/// Renders one notebook as a worksheet; a notebook that cannot be read is kept with its reason.
fn sheet(
    src: &dyn FileTree,
    path: &str,
    title: Option<&str>,
    description: Option<&str>,
) -> NewWorksheet {
    let failed = |reason: String| NewWorksheet {
        path: path.to_owned(),
        title: title.map(str::to_owned).unwrap_or_else(|| file_name(path)),
        description: description.map(str::to_owned),
        body_html: String::new(),
        notebook: Vec::new(),
        error: Some(reason),
    };
    let bytes = match read_limited(src, path, MAX_NOTEBOOK_BYTES) {
        Ok(Some(b)) => b,
        Ok(None) => return failed(format!("{path}: no such notebook at this tag")),
        Err(e) => return failed(e.to_string()),
    };
    let nb = match Notebook::from_slice(&bytes) {
        Ok(nb) => nb,
        Err(e) => return failed(format!("{path}: {e}")),
    };
    let rendered = render(&nb, &RenderOptions::default());
    NewWorksheet {
        path: path.to_owned(),
        title: title
            .map(str::to_owned)
            .or(rendered.title)
            .unwrap_or_else(|| file_name(path)),
        description: description.map(str::to_owned),
        body_html: rendered.body_html,
        notebook: bytes,
        error: None,
    }
}

/// Whether `path` is a notebook to consider when no worksheets are listed.
fn is_candidate(path: &str) -> bool {
    path.ends_with(".ipynb")
        && !path
            .split('/')
            .any(|c| c.starts_with('.') || c == "__pycache__")
}

impl Publication {
    /// Adds a worksheet within the release's limits: past [`MAX_WORKSHEETS`] the rest are
    /// left out (the release says so), and a notebook that would take the release past
    /// [`MAX_RELEASE_BYTES`] is kept as an error without its content.
    fn admit(&mut self, mut sheet: NewWorksheet, each: &mut dyn FnMut(NewWorksheet) -> bool) {
        if self.count >= MAX_WORKSHEETS {
            self.error.get_or_insert_with(|| {
                format!("more than {MAX_WORKSHEETS} worksheets: only the first {MAX_WORKSHEETS} are published")
            });
            return;
        }
        if self.held + sheet.notebook.len() > MAX_RELEASE_BYTES {
            sheet.error = Some(format!(
                "{}: the release's notebooks are over {} MiB together; this one is left out",
                sheet.path,
                MAX_RELEASE_BYTES >> 20
            ));
            sheet.notebook = Vec::new();
            sheet.body_html = String::new();
        }
        self.count += 1;
        self.held += sheet.notebook.len();
        if !each(sheet) {
            self.stopped = true;
        }
    }
}

/// Collects the worksheets of a tree, all in memory (for tests and tools).
pub fn collect(src: &dyn FileTree) -> Publication {
    let mut sheets = Vec::new();
    let mut p = collect_each(src, &mut |s| {
        sheets.push(s);
        true
    });
    p.sheets = sheets;
    p
}

/// Collects the worksheets of a tree, handing each to `each` as soon as it is rendered
/// (`each` answers false to stop); the publication returned holds none of them.
pub fn collect_each(src: &dyn FileTree, each: &mut dyn FnMut(NewWorksheet) -> bool) -> Publication {
    let mut p = Publication::default();
    let launch = match read_text(src, "launch.toml", 1 << 20) {
        Ok(Some(text)) => match crate::spec::launch::parse(&text) {
            Ok(cfg) => Some(cfg),
            Err(diags) => {
                let text: Vec<String> = diags
                    .iter()
                    .map(|d| {
                        let mut d = d.clone();
                        d.file = "launch.toml".into();
                        d.to_string()
                    })
                    .collect();
                p.error = Some(text.join("; "));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            p.error = Some(e.to_string());
            None
        }
    };
    if let Some(cfg) = &launch {
        p.title = cfg.title.clone();
        p.area = cfg.area.clone();
        if !cfg.worksheets.is_empty() {
            for w in cfg.worksheets.iter().take(MAX_WORKSHEETS + 1) {
                p.admit(
                    sheet(src, &w.path, w.title.as_deref(), w.description.as_deref()),
                    each,
                );
                if p.stopped {
                    break;
                }
            }
            return p;
        }
    }
    let files = match walk_utf8_files(src, "") {
        Ok(f) => f,
        Err(e) => {
            p.error = Some(e.to_string());
            return p;
        }
    };
    for path in files.iter().filter(|f| is_candidate(f)) {
        let s = sheet(src, path, None, None);
        let keep = match &s.error {
            Some(_) => true,
            None => Notebook::from_slice(&s.notebook)
                .is_ok_and(|nb| nb.find_tagged(PARAMETERS_TAG).is_some()),
        };
        if keep {
            p.admit(s, each);
            if p.stopped || (p.count >= MAX_WORKSHEETS && p.error.is_some()) {
                break;
            }
        }
    }
    p
}

/// Publishes the worksheets of `project` at `tag` (pointing at `commit`), or withdraws
/// them when the tag was deleted (`commit` is None). Returns how many were published, or
/// `None` when the repository's tag no longer points at `commit` (a late or replayed
/// delivery), which publishes nothing.
pub async fn publish(
    db: &Db,
    mirrors: &Mirrors,
    forge: &dyn Forge,
    project: &ProjectRef,
    tag: &str,
    commit: Option<&str>,
) -> Result<Option<usize>, PublishError> {
    let forge_name = project.forge.name();
    let tag_ref = format!("refs/tags/{tag}");
    let Some(commit) = commit else {
        // A deletion replayed after the tag was made again withdraws nothing: the
        // repository must not have the tag.
        let source = forge
            .fetch_source(&project.into())
            .await
            .map_err(MirrorError::from)?;
        let mirror = mirrors.fetch(forge_name, &project.path, source).await?;
        let repo_path = mirror.path().to_owned();
        let tag_ref = tag_ref.clone();
        let exists = tokio::task::spawn_blocking(move || {
            git2::Repository::open_bare(&repo_path)
                .map(|repo| repo.find_reference(&tag_ref).is_ok())
                .map_err(|e| {
                    PublishError::Infrastructure(anyhow::anyhow!(
                        "opening the mirror: {}",
                        e.message()
                    ))
                })
        })
        .await
        .map_err(|e| PublishError::Infrastructure(anyhow::anyhow!("publish task: {e}")))??;
        drop(mirror);
        if exists {
            return Ok(None);
        }
        db.delete_release(forge_name, &project.path, tag).await?;
        return Ok(Some(0));
    };
    let mirror = mirrors.fetch_project(forge, project, commit).await?;
    let repo_path = mirror.path().to_owned();
    let at = commit.to_owned();
    // Each worksheet is stored as soon as it is rendered, under a staging tag, so that
    // one notebook at a time is in memory; the release moves to them at the end.
    let staging = format!(
        "{}{} {tag}",
        crate::storage::STAGING_PREFIX,
        uuid::Uuid::new_v4().simple()
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<NewWorksheet>(1);
    let task = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open_bare(&repo_path).map_err(|e| {
            PublishError::Infrastructure(anyhow::anyhow!("opening the mirror: {}", e.message()))
        })?;
        // What the repository says the tag is now: a delivery replayed after the tag was
        // deleted or moved publishes nothing.
        let now = repo
            .find_reference(&tag_ref)
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| c.id().to_string());
        if now.as_deref() != Some(at.as_str()) {
            return Ok(None);
        }
        let src = crate::repo::CommitTree::open(&repo, &at)
            .map_err(|e| PublishError::User(format!("tag commit {at}: {e}")))?;
        Ok::<_, PublishError>(Some(collect_each(&src, &mut |s| {
            tx.blocking_send(s).is_ok()
        })))
    });
    let staged = async {
        db.discard_staged(forge_name, &project.path, &staging)
            .await?;
        while let Some(sheet) = rx.recv().await {
            db.stage_worksheet(forge_name, &project.path, &staging, &sheet)
                .await?;
        }
        Ok::<_, PublishError>(())
    }
    .await;
    drop(rx);
    let publication = task
        .await
        .map_err(|e| PublishError::Infrastructure(anyhow::anyhow!("publish task: {e}")));
    drop(mirror);
    let publication = match (staged, publication) {
        (Ok(()), Ok(Ok(Some(p)))) if !p.stopped => p,
        (staged, publication) => {
            db.discard_staged(forge_name, &project.path, &staging)
                .await?;
            staged?;
            return match publication?? {
                None => Ok(None),
                Some(_) => Err(PublishError::Infrastructure(anyhow::anyhow!(
                    "publishing stopped before its last worksheet"
                ))),
            };
        }
    };
    let release = ReleaseRow {
        forge: project.forge,
        project: project.path.clone(),
        tag: tag.to_owned(),
        commit_sha: commit.to_owned(),
        title: publication.title,
        area: publication.area,
        error: publication.error,
        published_at: 0,
    };
    db.publish_staged_release(&release, &staging).await?;
    Ok(Some(publication.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_holds_at_most_its_limit_of_worksheets() {
        let dir = tempfile::tempdir().unwrap();
        let nb = br#"{"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": null, "outputs": [], "source": ["x = 1\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
        for i in 0..MAX_WORKSHEETS + 5 {
            std::fs::write(dir.path().join(format!("sheet{i:03}.ipynb")), nb).unwrap();
        }
        let p = collect(&crate::repo::DirTree::new(dir.path()));
        assert_eq!(p.sheets.len(), MAX_WORKSHEETS);
        let error = p.error.expect("the release says some were left out");
        assert!(error.contains("only the first 200"), "{error}");
    }
}
