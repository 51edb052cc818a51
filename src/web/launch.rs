//! Launch links: `/v2/gl/<namespace%2Fproject>/<ref>` (BinderHub's URL scheme, so existing
//! badges work by changing the host). The page shows the state of the environment for
//! that ref: ready (with its image), being built (with the live log), or failed (with the
//! reason).

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use minijinja::value::Serde;

use super::WebError;
use super::auth::require;
use super::templates::Templates;
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::events::ForgeKind;
use crate::storage::{BuildPhase, BuildRow};

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The launch page of `project` at `git_ref`: the commit it resolved to, if any, and the
/// newest build of that commit.
pub fn launch_page(
    templates: &Templates,
    project: &str,
    git_ref: &str,
    commit: Option<&str>,
    build: Option<&BuildRow>,
    snippets: &Snippets,
) -> Result<Response, WebError> {
    let status = if commit.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    let state = build.map(|b| match b.phase {
        BuildPhase::Built => "ready",
        BuildPhase::Failed | BuildPhase::Canceled => "failed",
        _ => "preparing",
    });
    templates.page(
        status,
        "launch.html",
        context! {
            title => format!("{project} at {git_ref}"),
            commit,
            short_commit => commit.map(crate::environment::flow::short_sha),
            build => Serde(build),
            state,
            snippets => Serde(snippets),
        },
    )
}

/// What to paste in a README: the launch badge linking here, and the environment's
/// status badge, in Markdown and reStructuredText.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snippets {
    pub markdown: String,
    pub rst: String,
    pub status_markdown: String,
}

impl Snippets {
    pub fn new(public: &url::Url, forge: ForgeKind, project: &str, git_ref: &str) -> Snippets {
        let launch = crate::urls::launch(public, forge, project, git_ref);
        let badge = crate::urls::badge(public);
        let status = crate::urls::status_badge(public, forge, project, git_ref);
        Snippets {
            markdown: format!("[![launch]({badge})]({launch})"),
            rst: format!(".. image:: {badge}\n   :target: {launch}"),
            status_markdown: format!("[![environment]({status})]({launch})"),
        }
    }
}

/// The answer to `/v2/<provider>/…` for a provider other than `gl`, `gh` or `git`.
fn unknown_provider(templates: &Templates) -> Result<Response, WebError> {
    templates.page(
        StatusCode::NOT_FOUND,
        "unknown_provider.html",
        context! { title => "Unknown provider" },
    )
}

/// `GET /v2/{provider}/{project}/{ref}`: `gl` (GitLab, and plain-git repositories, whose
/// deliveries are GitLab-shaped) with the project path escaped as one segment.
pub async fn launch(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((provider, project, git_ref)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let forge = match provider.as_str() {
        "gl" | "git" => ForgeKind::GitLab,
        "gh" => ForgeKind::GitHub,
        _ => return unknown_provider(&templates),
    };
    require(&app, &viewer, &uri, Action::ViewLaunchPage, forge, &project).await?;
    show(&app, &templates, forge, &project, &git_ref).await
}

/// `GET /v2/gh/{owner}/{repo}/{ref}`: a GitHub repository, as BinderHub spells it.
pub async fn launch_github(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let project = format!("{owner}/{repo}");
    require(
        &app,
        &viewer,
        &uri,
        Action::ViewLaunchPage,
        ForgeKind::GitHub,
        &project,
    )
    .await?;
    show(&app, &templates, ForgeKind::GitHub, &project, &git_ref).await
}

async fn show(
    app: &App,
    templates: &Templates,
    forge: ForgeKind,
    project: &str,
    git_ref: &str,
) -> Result<Response, WebError> {
    let (project, git_ref) = (project.to_owned(), git_ref.to_owned());
    let commit = if is_sha(&git_ref) {
        Some(git_ref.to_lowercase())
    } else {
        app.db.resolve_ref(forge.name(), &project, &git_ref).await?
    };
    let build = match &commit {
        Some(commit) => app
            .db
            .latest_build(forge.name(), &project, commit)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let snippets = Snippets::new(&app.settings.server.public_url, forge, &project, &git_ref);
    launch_page(
        templates,
        &project,
        &git_ref,
        commit.as_deref(),
        build.as_ref(),
        &snippets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::templates::testing::{main, text};

    fn build(phase: BuildPhase, message: Option<&str>) -> BuildRow {
        BuildRow {
            id: 7,
            forge: crate::events::ForgeKind::GitLab,
            project: "lab/growth".into(),
            ref_name: Some("main".into()),
            commit_sha: "0123456789abcdef0123456789abcdef01234567".into(),
            environment_key: Some("k1".into()),
            image: Some("nbforge/env:k1".into()),
            phase,
            cached: crate::storage::Flag(true),
            message: message.map(Into::into),
            job_id: None,
            created_at: 0,
            updated_at: 0,
            finished_at: None,
        }
    }

    fn snippets() -> Snippets {
        Snippets::new(
            &"https://nbforge.example.org/".parse().unwrap(),
            ForgeKind::GitLab,
            "lab/growth",
            "main",
        )
    }

    #[test]
    fn snippets_link_the_badges_to_the_launch_page() {
        let s = snippets();
        assert_eq!(
            s.markdown,
            "[![launch](https://nbforge.example.org/badge_logo.svg)](https://nbforge.example.org/v2/gl/lab%2Fgrowth/main)"
        );
        assert!(
            s.rst
                .starts_with(".. image:: https://nbforge.example.org/badge_logo.svg\n   :target: ")
        );
        assert!(
            s.status_markdown
                .contains("https://nbforge.example.org/badge/gl/lab%2Fgrowth/main.svg"),
            "{}",
            s.status_markdown
        );
    }

    #[tokio::test]
    async fn launch_page_in_each_state() {
        let t = Templates::new();
        let commit = Some("0123456789abcdef0123456789abcdef01234567");
        let mut shown = String::new();
        for (build, expected) in [
            (Some(build(BuildPhase::Built, None)), StatusCode::OK),
            (
                Some(build(BuildPhase::Failed, Some("apt.txt:2:1: <bad> name"))),
                StatusCode::OK,
            ),
            (Some(build(BuildPhase::Building, None)), StatusCode::OK),
        ] {
            let res = launch_page(
                &t,
                "lab/growth",
                "main",
                commit,
                build.as_ref(),
                &snippets(),
            )
            .unwrap();
            let (status, page) = text(res).await;
            assert_eq!(status, expected);
            shown.push_str(main(&page));
        }
        let (status, page) =
            text(launch_page(&t, "lab/growth", "main", commit, None, &snippets()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        shown.push_str(main(&page));
        let (status, page) =
            text(launch_page(&t, "lab/growth", "nope", None, None, &snippets()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        shown.push_str(main(&page));
        let (status, page) = text(unknown_provider(&t).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        shown.push_str(main(&page));
        insta::assert_snapshot!(shown);
    }
}
