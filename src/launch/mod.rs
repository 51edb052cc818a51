//! Launching a session from a launch link, as BinderHub does: resolve the ref to a commit,
//! find or build the commit's environment, fetch the repository as the user, start the
//! session, and report each phase on the way (`waiting`, `fetching`, `building`,
//! `launching`, then `ready` with the URL or `failed` with a message), in BinderHub's event
//! shape so that BinderHub clients can drive nbforge.
//!
//! The caller (the `/build/…` event stream) has already checked that the viewer may launch
//! the project. A launch runs to its end even when the browser goes away: the session then
//! waits in "My sessions".

pub mod checkout;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::app::App;
use crate::events::{ForgeKind, ProjectRef, Visibility};
use crate::jobs::Job;
use crate::jobs::kinds::PrepareEnvironment;
use crate::sessions::{
    Checkout, Home, Owner, Resources, SessionProject, SessionSpec, SessionState,
};
use crate::spec::launch::ProjectKind;
use crate::storage::{BuildPhase, Enqueue, ProjectRow};

/// A phase of a launch, named as BinderHub names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Waiting,
    Fetching,
    Building,
    Launching,
    Ready,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Fetching => "fetching",
            Phase::Building => "building",
            Phase::Launching => "launching",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
        }
    }
}

/// One progress event: BinderHub's `phase`, `message`, and for `ready` the session's `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What to open in the session, as BinderHub's query parameters say it. Paths are relative
/// to the repository (`labpath`, `filepath`) or to the server (`urlpath`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Open {
    pub urlpath: Option<String>,
    pub labpath: Option<String>,
    pub filepath: Option<String>,
}

/// A launch: who, what, where to open.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub forge: ForgeKind,
    /// `namespace/project`.
    pub project: String,
    /// A branch, a tag, or a commit id.
    pub git_ref: String,
    pub owner: Owner,
    pub open: Open,
    /// Whether the viewer may read build logs: the build's lines are then sent as
    /// `building` events.
    pub show_build_log: bool,
}

/// Why a launch failed. The messages of all but `Internal` are for the user.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    User(String),
    /// Logged, shown without detail.
    #[error("internal error: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> LaunchError {
    LaunchError::Internal(e.to_string())
}

/// The events a launch sends; a closed receiver (the browser left) does not stop it. It
/// times each phase for the metrics.
struct Reporter<'a> {
    tx: &'a mpsc::Sender<Progress>,
    started: Instant,
    metrics: &'a crate::metrics::Metrics,
    /// The phase under way and since when.
    current: std::sync::Mutex<Option<(Phase, Instant)>>,
}

impl Reporter<'_> {
    /// Ends the timing of the phase under way.
    fn time_phase(&self, next: Option<Phase>) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.map(|(p, _)| p) == next {
            return;
        }
        if let Some((phase, since)) = *current {
            let timed = match phase {
                Phase::Waiting => Some(crate::metrics::LaunchPhase::Waiting),
                Phase::Fetching => Some(crate::metrics::LaunchPhase::Fetching),
                Phase::Building => Some(crate::metrics::LaunchPhase::Building),
                Phase::Launching => Some(crate::metrics::LaunchPhase::Launching),
                Phase::Ready | Phase::Failed => None,
            };
            if let Some(timed) = timed {
                self.metrics
                    .launch_phase(timed, since.elapsed().as_secs_f64());
            }
        }
        *current = next.map(|p| (p, Instant::now()));
    }

    async fn send(&self, phase: Phase, message: impl Into<String>) {
        self.time_phase(Some(phase));
        let _ = self
            .tx
            .send(Progress {
                phase,
                message: message.into(),
                url: None,
            })
            .await;
    }
}

/// Runs a launch to its end, sending progress on `tx` and finally `ready` (with the URL,
/// relative to the site) or `failed`. Returns the final event.
pub async fn launch(app: &App, req: LaunchRequest, tx: mpsc::Sender<Progress>) -> Progress {
    let r = Reporter {
        tx: &tx,
        started: Instant::now(),
        metrics: &app.metrics,
        current: std::sync::Mutex::new(None),
    };
    let last = match run(app, &req, &r).await {
        Ok((url, message)) => Progress {
            phase: Phase::Ready,
            message,
            url: Some(url),
        },
        Err(LaunchError::User(message)) => Progress {
            phase: Phase::Failed,
            message,
            url: None,
        },
        Err(LaunchError::Internal(e)) => {
            tracing::error!(forge.project = %req.project, git.ref = %req.git_ref, "launch failed: {e}");
            Progress {
                phase: Phase::Failed,
                message: "nbforge could not start the session because of an internal error; it was logged".into(),
                url: None,
            }
        }
    };
    r.time_phase(None);
    app.metrics.launch_result(last.phase == Phase::Ready);
    tracing::info!(forge.project = %req.project, git.ref = %req.git_ref, launch.phase = last.phase.as_str(), launch.seconds = r.started.elapsed().as_secs_f64(), "launch ended");
    let _ = tx.send(last.clone()).await;
    last
}

async fn run(
    app: &App,
    req: &LaunchRequest,
    r: &Reporter<'_>,
) -> Result<(String, String), LaunchError> {
    let forge = req.forge;
    r.send(Phase::Waiting, format!("Resolving {}", req.git_ref))
        .await;
    let row = app
        .db
        .get_project(forge.name(), &req.project)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            LaunchError::User(format!(
                "nbforge does not know the project {} yet: push to it once with the webhook set up",
                req.project
            ))
        })?;
    let commit = resolve(app, forge, &req.project, &req.git_ref).await?;
    let branch = branch_of(app, forge, &req.project, &req.git_ref, &commit).await;

    r.send(Phase::Fetching, "Fetching the repository").await;
    let project_ref = project_ref(&row);
    let forge_api = app.forges.for_kind(&forge);
    let mirror = app
        .mirrors
        .fetch_project(forge_api.as_ref(), &project_ref, &commit)
        .await
        .map_err(|e| {
            if e.is_permanent() {
                LaunchError::User(format!("the repository could not be fetched: {e}"))
            } else {
                internal(e)
            }
        })?;
    let launch_config = {
        let mirror_path = mirror.path().to_owned();
        let options = app.spec_options();
        let commit_c = commit.clone();
        tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open_bare(&mirror_path).ok()?;
            let tree = crate::repo::tree::CommitTree::open(&repo, &commit_c).ok()?;
            crate::spec::analyze(&tree, &options).ok()?.launch
        })
        .await
        .map_err(internal)?
    };
    let kind = launch_config.as_ref().map(|c| c.kind).unwrap_or_default();
    // Worksheets and dashboards open as worksheets once a version is published: no
    // session needed.
    if matches!(kind, ProjectKind::Worksheet | ProjectKind::Dashboard)
        && req.open == Open::default()
        && app.db.has_releases(&req.project).await.map_err(internal)?
    {
        return Ok((
            crate::urls::worksheet(&req.project, None, None),
            "This project's worksheets are published: opening them".into(),
        ));
    }
    let checkout_bundle = bundle(app, req, &row, mirror.path(), &commit).await?;
    drop(mirror);

    let image = match environment(app, &row, &commit, &branch, req.show_build_log, r).await {
        Ok(image) => image,
        Err(e) => {
            if let Some((path, _)) = &checkout_bundle {
                std::fs::remove_file(path).ok();
            }
            return Err(e);
        }
    };

    let dir = checkout::folder_for(&req.project);
    let name = session_name(&req.project, &commit);
    // A running session of this owner at this commit is opened again, not started twice.
    let existing = app
        .sessions
        .list()
        .await
        .map_err(internal)?
        .into_iter()
        .find(|s| s.owner == req.owner && s.name == name && s.state == SessionState::Running);
    if let Some(s) = existing {
        if let Some((path, _)) = &checkout_bundle {
            std::fs::remove_file(path).ok();
        }
        return Ok((
            format!("{}{}", s.base_url, s.default_url),
            "Your session at this commit is already running".into(),
        ));
    }

    let home = match &req.owner {
        Owner::User { id, .. } => Home::User { user_id: *id },
        Owner::Anonymous { .. } => Home::Throwaway,
    };
    if let Err(refused) = crate::sessions::lifecycle::admit(
        app.sessions.as_ref(),
        &app.settings.lifecycle,
        &req.owner,
        &home,
    )
    .await
    {
        if let Some((path, _)) = &checkout_bundle {
            std::fs::remove_file(path).ok();
        }
        return Err(match refused {
            crate::sessions::lifecycle::Refusal::Unavailable(e) => internal(e),
            refused => LaunchError::User(refused.to_string()),
        });
    }
    r.send(Phase::Launching, "Starting the session").await;
    let default_file = launch_config.as_ref().and_then(|c| c.default.clone());
    let default_url = default_url(kind, &dir, default_file.as_deref(), &req.open)?;
    let anonymous = matches!(req.owner, Owner::Anonymous { .. });
    let mut resources = Resources {
        memory_bytes: launch_config
            .as_ref()
            .and_then(|c| c.resources.memory)
            .unwrap_or(0),
        cpus: launch_config
            .as_ref()
            .and_then(|c| c.resources.cpus)
            .unwrap_or(0.0),
    };
    if anonymous {
        // Visitors get smaller limits, as on mybinder.org.
        let cap = ANONYMOUS_MEMORY.min(app.settings.sessions.memory_max_bytes);
        resources.memory_bytes = match resources.memory_bytes {
            0 => cap,
            n => n.min(cap),
        };
        resources.cpus = match resources.cpus {
            c if c > 0.0 => c.min(ANONYMOUS_CPUS),
            _ => ANONYMOUS_CPUS,
        };
    }
    let checkout = checkout_bundle.as_ref().map(|(path, remote)| Checkout {
        dir: dir.clone(),
        commit: commit.clone(),
        branch: branch.clone(),
        remote_url: remote.clone(),
        bundle: path.clone(),
    });
    let spec = SessionSpec {
        base_url: SessionSpec::base_url_for(&req.owner, &name),
        owner: req.owner.clone(),
        name,
        project: SessionProject {
            forge: forge.name().to_owned(),
            path: req.project.clone(),
            commit: commit.clone(),
        },
        image,
        resources,
        home,
        default_url,
        env: std::collections::BTreeMap::from([(
            "NBFORGE_PROJECT".to_owned(),
            req.project.clone(),
        )]),
        checkout,
    };
    let started = app.sessions.start(&spec).await;
    if let Some((path, _)) = &checkout_bundle {
        std::fs::remove_file(path).ok();
    }
    let info = started.map_err(|e| {
        if e.is_user_error() {
            LaunchError::User(e.to_string())
        } else {
            internal(e)
        }
    })?;
    app.directory.remember(info.clone());
    let message = match (&info.checkout, &checkout_bundle) {
        (Some(outcome), _) => format!("Session ready; the repository in ~/{dir}: {outcome}"),
        (None, None) => "Session ready; the repository was not checked out: log in again to fetch it with your GitLab account".into(),
        (None, Some(_)) => "Session ready".into(),
    };
    Ok((format!("{}{}", info.base_url, info.default_url), message))
}

/// Memory and CPUs of an anonymous visitor's session at most.
const ANONYMOUS_MEMORY: u64 = 1 << 30;
const ANONYMOUS_CPUS: f64 = 1.0;
/// How long a launch waits for its environment's build to start and end, beyond the build
/// timeout itself.
const BUILD_WAIT_MARGIN: Duration = Duration::from_secs(600);

/// The commit `git_ref` names: a commit id as it is, else a branch or tag nbforge has
/// recorded from the project's pushes.
async fn resolve(
    app: &App,
    forge: ForgeKind,
    project: &str,
    git_ref: &str,
) -> Result<String, LaunchError> {
    let hex = |s: &str| matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(git_ref) {
        return Ok(git_ref.to_ascii_lowercase());
    }
    app.db
        .resolve_ref(forge.name(), project, git_ref)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            LaunchError::User(format!(
                "{project} has no branch or tag named {}",
                crate::text::truncate(git_ref, 100)
            ))
        })
}

/// The branch to check out at the commit: the launched ref when it is a branch pointing there.
async fn branch_of(
    app: &App,
    forge: ForgeKind,
    project: &str,
    git_ref: &str,
    commit: &str,
) -> Option<String> {
    let sha = app
        .db
        .ref_sha(forge.name(), project, &format!("refs/heads/{git_ref}"))
        .await
        .ok()
        .flatten()?;
    (sha == commit).then(|| git_ref.to_owned())
}

fn project_ref(row: &ProjectRow) -> ProjectRef {
    ProjectRef {
        forge: row.forge,
        id: row.forge_id,
        path: row.path.clone(),
        web_url: row.web_url.clone(),
        git_http_url: row.git_url.clone(),
        default_branch: row.default_branch.clone(),
        visibility: row.visibility.as_deref().map(Visibility::parse),
    }
}

/// The commit's environment image: the newest build of the commit when it is built, the
/// build followed while it runs, or a build started (as the `prepare-environment` job)
/// when there is none.
async fn environment(
    app: &App,
    row: &ProjectRow,
    commit: &str,
    branch: &Option<String>,
    show_log: bool,
    r: &Reporter<'_>,
) -> Result<String, LaunchError> {
    let forge = row.forge;
    let deadline = Instant::now() + app.settings.environments.build_timeout + BUILD_WAIT_MARGIN;
    let mut enqueued = false;
    let mut followed: Option<i64> = None;
    loop {
        let build = app
            .db
            .latest_build(forge.name(), &row.path, commit)
            .await
            .map_err(internal)?;
        match build {
            Some(b) if b.phase == BuildPhase::Built => {
                let image = b
                    .image
                    .ok_or_else(|| internal("a built environment without an image"))?;
                if app.builder.image_exists(&image).await.map_err(internal)? {
                    return Ok(image);
                }
                if enqueued {
                    return Err(LaunchError::User(
                        "the environment image is missing after its build".into(),
                    ));
                }
                // Pruned since: build it again.
            }
            Some(b) if b.phase.is_final() && followed != Some(b.id) && !enqueued => {
                return Err(LaunchError::User(format!(
                    "the environment of this commit could not be prepared: {}",
                    b.message.as_deref().unwrap_or("see its build log")
                )));
            }
            Some(b) if b.phase.is_final() && followed == Some(b.id) => {
                return Err(LaunchError::User(format!(
                    "the environment could not be prepared: {}",
                    b.message.as_deref().unwrap_or("see its build log")
                )));
            }
            Some(b) if !b.phase.is_final() => {
                if followed != Some(b.id) {
                    followed = Some(b.id);
                    r.send(
                        Phase::Building,
                        format!("Building the environment (build {})", b.id),
                    )
                    .await;
                }
                follow_log(app, b.id, show_log, r).await;
            }
            _ => {}
        }
        let needs_build = match app
            .db
            .latest_build(forge.name(), &row.path, commit)
            .await
            .map_err(internal)?
        {
            None => true,
            Some(b) => b.phase == BuildPhase::Built && !enqueued,
        };
        if needs_build && !enqueued {
            enqueued = true;
            let job = PrepareEnvironment {
                forge,
                project: project_ref(row),
                commit: commit.to_owned(),
                ref_name: branch.clone(),
                key: format!("env:launch:{}:{}:{commit}", forge.name(), row.path),
            };
            app.db
                .enqueue(&Enqueue {
                    supersede: Vec::new(),
                    jobs: vec![job.to_new_job(app.settings.jobs.max_attempts)],
                })
                .await
                .map_err(internal)?;
            app.jobs_ready.notify_waiters();
            r.send(
                Phase::Waiting,
                "Waiting for the environment's build to start",
            )
            .await;
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::User(
                "the environment was not ready in time; try again later".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Sends a running build's log lines as `building` events until it ends (in this process)
/// or, for a build elsewhere, waits a moment.
async fn follow_log(app: &App, build: i64, show: bool, r: &Reporter<'_>) {
    use tokio::sync::broadcast::error::RecvError;
    let Some(mut sub) = app.build_logs.subscribe(build) else {
        tokio::time::sleep(Duration::from_millis(500)).await;
        return;
    };
    if show {
        for line in sub.so_far.lines() {
            r.send(Phase::Building, line).await;
        }
    }
    loop {
        match sub.rx.recv().await {
            Ok(e) => {
                if show {
                    r.send(Phase::Building, e.message).await;
                }
                if e.phase.is_final() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        }
    }
}

/// The repository bundle for the session, and the checkout's remote URL: fetched with the
/// user's own token for GitLab projects, anonymously for public ones, from the mirror for
/// plain-git projects (whose access nbforge decides). `None` when the user's fetch is not
/// possible (no token for a private project): the session starts without a checkout.
async fn bundle(
    app: &App,
    req: &LaunchRequest,
    row: &ProjectRow,
    mirror: &std::path::Path,
    commit: &str,
) -> Result<Option<(std::path::PathBuf, String)>, LaunchError> {
    let scratch = app.settings.data_dir.join("checkouts");
    std::fs::create_dir_all(&scratch).map_err(internal)?;
    let out = scratch.join(format!("{}.bundle", uuid::Uuid::new_v4().simple()));
    let remote = row
        .git_url
        .clone()
        .filter(|u| !u.contains('@'))
        .or_else(|| row.web_url.as_ref().map(|w| format!("{w}.git")))
        .unwrap_or_default();
    let public = row.visibility.as_deref().map(Visibility::parse) == Some(Visibility::Public);
    let token = match (&req.owner, row.forge) {
        (Owner::User { id, .. }, ForgeKind::GitLab) if app.forges.gitlab.is_some() => {
            match app.access.user_token(*id).await {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::info!(user.id = id, "no GitLab token for a checkout: {e}");
                    if !public {
                        return Ok(None);
                    }
                    None
                }
            }
        }
        _ => None,
    };
    let user_fetch = match row.forge {
        // Plain git: nbforge's own repositories, read from the mirror.
        _ if app.forges.gitlab.is_none() && row.forge == ForgeKind::GitLab => false,
        ForgeKind::GitLab | ForgeKind::GitHub => row.git_url.is_some(),
    };
    let url = row.git_url.clone().unwrap_or_default();
    let mirror = mirror.to_owned();
    let commit = commit.to_owned();
    let out_c = out.clone();
    let result = tokio::task::spawn_blocking(move || {
        let fetch = user_fetch.then(|| checkout::UserFetch {
            url: &url,
            credentials: token.as_ref().map(|t| ("oauth2", t)),
            refs: Vec::new(),
        });
        checkout::write_bundle(&mirror, fetch, &scratch, &commit, &out_c)
    })
    .await
    .map_err(internal)?;
    match result {
        Ok(()) => Ok(Some((out, remote))),
        Err(e @ (checkout::CheckoutError::Refused | checkout::CheckoutError::MissingCommit(_))) => {
            std::fs::remove_file(&out).ok();
            Err(LaunchError::User(e.to_string()))
        }
        Err(e) => {
            std::fs::remove_file(&out).ok();
            Err(internal(e))
        }
    }
}

/// A session's name: the project's name and the commit's short id, so that launching the
/// same commit again opens the running session.
pub fn session_name(project: &str, commit: &str) -> String {
    let name: String = checkout::folder_for(project)
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "project" } else { name };
    format!("{name}-{}", &commit[..commit.len().min(8)])
}

/// Percent-encodes a path below the server for `default_url`, segment by segment;
/// `..` and empty segments are refused.
fn encode_path(path: &str) -> Result<String, LaunchError> {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let mut out = Vec::new();
    for seg in path.trim_matches('/').split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg == ".." || seg == "." {
            return Err(LaunchError::User(format!(
                "the path {} leaves the repository",
                crate::text::truncate(path, 200)
            )));
        }
        out.push(percent_encoding::utf8_percent_encode(seg, KEEP).to_string());
    }
    Ok(out.join("/"))
}

/// What the session opens first, below its prefix, from the project's kind and BinderHub's
/// `urlpath` / `labpath` / `filepath` (paths in the repository are below its folder).
pub fn default_url(
    kind: ProjectKind,
    dir: &str,
    default_file: Option<&str>,
    open: &Open,
) -> Result<String, LaunchError> {
    let in_repo = |p: &str| -> Result<String, LaunchError> {
        let p = encode_path(p)?;
        Ok(if p.is_empty() {
            format!("lab/tree/{dir}")
        } else {
            format!("lab/tree/{dir}/{p}")
        })
    };
    if let Some(urlpath) = open.urlpath.as_deref().filter(|u| !u.trim().is_empty()) {
        let path = urlpath.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_start_matches('/');
        // Paths into the file tree are paths in the repository, which is below the home.
        for prefix in ["lab/tree/", "tree/", "notebooks/", "edit/", "doc/tree/"] {
            if let Some(rest) = path.strip_prefix(prefix) {
                let rest = encode_path(rest)?;
                return Ok(format!("{prefix}{dir}/{rest}"));
            }
        }
        return encode_path(path);
    }
    if let Some(p) = open.labpath.as_deref().or(open.filepath.as_deref()) {
        return in_repo(p);
    }
    match kind {
        ProjectKind::Shell => Ok("terminals/1".into()),
        _ => in_repo(default_file.unwrap_or("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binderhub_paths_open_in_the_repository_folder() {
        let open = |u: Option<&str>, l: Option<&str>, f: Option<&str>| Open {
            urlpath: u.map(Into::into),
            labpath: l.map(Into::into),
            filepath: f.map(Into::into),
        };
        let k = ProjectKind::Notebook;
        let none = Open::default();
        assert_eq!(default_url(k, "rna", None, &none).unwrap(), "lab/tree/rna");
        assert_eq!(
            default_url(k, "rna", Some("analysis.ipynb"), &none).unwrap(),
            "lab/tree/rna/analysis.ipynb"
        );
        assert_eq!(
            default_url(
                k,
                "rna",
                None,
                &open(Some("lab/tree/a b.ipynb"), None, None)
            )
            .unwrap(),
            "lab/tree/rna/a%20b.ipynb"
        );
        assert_eq!(
            default_url(
                k,
                "rna",
                None,
                &open(Some("/tree/x/y.ipynb?k=1"), None, None)
            )
            .unwrap(),
            "tree/rna/x/y.ipynb"
        );
        assert_eq!(
            default_url(k, "rna", None, &open(Some("lab"), None, None)).unwrap(),
            "lab"
        );
        assert_eq!(
            default_url(k, "rna", None, &open(None, Some("nb/1.ipynb"), None)).unwrap(),
            "lab/tree/rna/nb/1.ipynb"
        );
        assert_eq!(
            default_url(k, "rna", None, &open(None, None, Some("x.ipynb"))).unwrap(),
            "lab/tree/rna/x.ipynb"
        );
        assert_eq!(
            default_url(ProjectKind::Shell, "rna", None, &none).unwrap(),
            "terminals/1"
        );
        for bad in ["lab/tree/../../etc", "../x"] {
            assert!(default_url(k, "rna", None, &open(Some(bad), None, None)).is_err());
        }
        assert!(default_url(k, "rna", None, &open(None, Some("../x"), None)).is_err());
    }

    #[test]
    fn session_names_are_plain_and_per_commit() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(session_name("lab/RNA_seq", c), "rna-seq-01234567");
        assert_eq!(session_name("lab/...", c), "project-01234567");
        let long = format!("lab/{}", "x".repeat(200));
        assert!(session_name(&long, c).len() <= 63);
    }
}
