//! Launch links: `/v2/gl/<namespace%2Fproject>/<ref>` (BinderHub's URL scheme, so existing
//! badges work by changing the host). The page starts the launch and follows its progress
//! (a script served by nbforge reading `/build/…`), then opens the session; below, it shows
//! the state of the environment for that ref: ready (with its image), being built (with
//! the live log), or failed (with the reason).
//!
//! `GET /build/<provider>/<project>/<ref>` is the launch itself as Server-Sent Events in
//! BinderHub's shape (`{"phase": …, "message": …}`, then `ready` with `url` or `failed`),
//! so BinderHub clients can drive nbforge.

use std::sync::Arc;

use std::convert::Infallible;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use minijinja::value::Serde;

use super::WebError;
use super::auth::{cookie_names, new_visitor, require, visitor_key};
use super::templates::Templates;
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::events::ForgeKind;
use crate::launch::{LaunchRequest, Open, Phase, Progress};
use crate::sessions::Owner;
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
    start: &Start,
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
    let (events_url, login_url) = match start {
        Start::Launch(url) => (Some(url.as_str()), None),
        Start::LogIn(url) => (None, Some(url.as_str())),
        Start::No => (None, None),
    };
    let ctx = context! {
        title => format!("{project} at {git_ref}"),
        commit,
        short_commit => commit.map(crate::environment::flow::short_sha),
        build => Serde(build),
        state,
        snippets => Serde(snippets),
        events_url,
        login_url,
    };
    match start {
        Start::Launch(_) if commit.is_some() => {
            templates.page_with_scripts(status, "launch.html", ctx)
        }
        _ => templates.page(
            status,
            "launch.html",
            context! { events_url => None::<&str>, ..ctx },
        ),
    }
}

/// What the launch page offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Launch now, following this event stream.
    Launch(String),
    /// The viewer must log in first (this login link).
    LogIn(String),
    /// Nothing: the viewer may see the page but not launch.
    No,
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

/// The forge a BinderHub provider name stands for: `gl` (GitLab) and `git` (plain-git
/// repositories, whose deliveries are GitLab-shaped) with the project path escaped as one
/// segment; `gh` for GitHub.
fn provider_forge(provider: &str) -> Option<ForgeKind> {
    match provider {
        "gl" | "git" => Some(ForgeKind::GitLab),
        "gh" => Some(ForgeKind::GitHub),
        _ => None,
    }
}

/// The project a `git` provider's segment names: a repository URL nbforge knows (as
/// BinderHub's `/v2/git/<url-escaped URL>/<ref>`), or else a project path.
async fn project_for(
    app: &App,
    provider: &str,
    project: String,
) -> Result<(Option<ForgeKind>, String), WebError> {
    if provider == "git" && project.contains("://") {
        return Ok(match app.db.project_by_url(&project).await? {
            Some(row) => (Some(row.forge), row.path),
            None => (Some(ForgeKind::GitLab), project),
        });
    }
    Ok((provider_forge(provider), project))
}

/// `GET /v2/{provider}/{project}/{ref}`.
pub async fn launch(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path((provider, project, git_ref)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let (forge, project) = project_for(&app, &provider, project).await?;
    let Some(forge) = forge else {
        return unknown_provider(&templates);
    };
    require(&app, &viewer, &uri, Action::ViewLaunchPage, forge, &project).await?;
    show(
        &app, &templates, &viewer, &headers, &uri, forge, &project, &git_ref,
    )
    .await
}

/// `GET /v2/gh/{owner}/{repo}/{ref}`: a GitHub repository, as BinderHub spells it.
pub async fn launch_github(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    headers: HeaderMap,
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
    show(
        &app,
        &templates,
        &viewer,
        &headers,
        &uri,
        ForgeKind::GitHub,
        &project,
        &git_ref,
    )
    .await
}

#[expect(clippy::too_many_arguments, reason = "one request's parts")]
async fn show(
    app: &App,
    templates: &Templates,
    viewer: &Viewer,
    headers: &HeaderMap,
    uri: &Uri,
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
    let may_launch = app
        .access
        .check(viewer, Action::LaunchSession, forge, &project)
        .await?
        .is_ok();
    let start = if may_launch {
        let path = uri.path().replacen("/v2/", "/build/", 1);
        Start::Launch(match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        })
    } else if viewer.user.is_none() && app.access.login_enabled() {
        Start::LogIn(super::auth::login_path(uri))
    } else {
        Start::No
    };
    let mut res = launch_page(
        templates,
        &project,
        &git_ref,
        commit.as_deref(),
        build.as_ref(),
        &snippets,
        &start,
    )?;
    // A visitor who may launch gets the key their sessions are known by.
    let names = cookie_names(app);
    if may_launch && viewer.user.is_none() && visitor_key(names, headers).is_none() {
        let (cookie, _) = new_visitor(names);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// `GET /build/{provider}/{project}/{ref}`: starts the launch and streams its progress.
pub async fn events(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path((provider, project, git_ref)): Path<(String, String, String)>,
    Query(open): Query<Open>,
) -> Result<Response, WebError> {
    let (forge, project) = project_for(&app, &provider, project).await?;
    let Some(forge) = forge else {
        return Err(WebError::NotFound(format!(
            "unknown provider `{}`: use gl, gh or git",
            crate::text::truncate(&provider, 40)
        )));
    };
    start_events(&app, &viewer, &headers, &uri, forge, project, git_ref, open).await
}

/// `GET /build/gh/{owner}/{repo}/{ref}`.
pub async fn events_github(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
    Query(open): Query<Open>,
) -> Result<Response, WebError> {
    let project = format!("{owner}/{repo}");
    start_events(
        &app,
        &viewer,
        &headers,
        &uri,
        ForgeKind::GitHub,
        project,
        git_ref,
        open,
    )
    .await
}

#[expect(clippy::too_many_arguments, reason = "one request's parts")]
async fn start_events(
    app: &App,
    viewer: &Viewer,
    headers: &HeaderMap,
    uri: &Uri,
    forge: ForgeKind,
    project: String,
    git_ref: String,
    open: Open,
) -> Result<Response, WebError> {
    // A launch starts a container as the user: another site may not start one by
    // sending the browser here (clients that are not browsers send no such header).
    if matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("cross-site" | "same-site")
    ) {
        return Err(WebError::Forbidden(
            "launches start from nbforge's own launch page".into(),
        ));
    }
    require(app, viewer, uri, Action::LaunchSession, forge, &project).await?;
    let names = cookie_names(app);
    let mut new_cookie = None;
    let owner = match &viewer.user {
        Some(user) => Owner::User {
            id: user.id,
            username: user.username.clone(),
        },
        None => {
            let visitor = match visitor_key(names, headers) {
                Some(key) => key,
                None => {
                    let (cookie, key) = new_visitor(names);
                    new_cookie = Some(cookie);
                    key
                }
            };
            Owner::Anonymous { visitor }
        }
    };
    let show_build_log = app
        .access
        .check(viewer, Action::ReadBuildLogs, forge, &project)
        .await?
        .is_ok();
    let request = LaunchRequest {
        forge,
        project,
        git_ref,
        owner,
        open,
        show_build_log,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Progress>(256);
    let task_app = app.clone();
    tokio::spawn(async move {
        crate::launch::launch(&task_app, request, tx).await;
    });
    let public = app.settings.server.public_url.clone();
    let stream = futures_util::stream::unfold(Some(rx), move |rx| {
        let public = public.clone();
        async move {
            let mut rx = rx?;
            let mut p = rx.recv().await?;
            let done = matches!(p.phase, Phase::Ready | Phase::Failed);
            if let Some(url) = &p.url {
                p.url = public
                    .join(url.trim_start_matches('/'))
                    .ok()
                    .map(String::from);
            }
            let event = Event::default().data(serde_json::to_string(&p).unwrap_or_default());
            Some((Ok::<_, Infallible>(event), (!done).then_some(rx)))
        }
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = new_cookie
        && let Ok(v) = HeaderValue::from_str(&cookie)
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// `GET /static/launch.js`: the launch page's script.
pub async fn script() -> Response {
    script_response(include_str!("static/launch.js"), "public, max-age=300")
}

/// One of nbforge's own scripts (the only ones its pages run), with its caching.
pub fn script_response(body: &'static str, cache_control: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, cache_control),
        ],
        body,
    )
        .into_response()
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
            conda_lock: None,
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
                &Start::No,
            )
            .unwrap();
            let (status, page) = text(res).await;
            assert_eq!(status, expected);
            shown.push_str(main(&page));
        }
        let (status, page) = text(
            launch_page(
                &t,
                "lab/growth",
                "main",
                commit,
                None,
                &snippets(),
                &Start::No,
            )
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        shown.push_str(main(&page));
        let (status, page) = text(
            launch_page(
                &t,
                "lab/growth",
                "nope",
                None,
                None,
                &snippets(),
                &Start::No,
            )
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        shown.push_str(main(&page));
        let (status, page) = text(unknown_provider(&t).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        shown.push_str(main(&page));
        insta::assert_snapshot!(shown);
    }

    #[tokio::test]
    async fn the_launch_page_runs_only_its_own_script() {
        let t = Templates::new();
        let commit = Some("0123456789abcdef0123456789abcdef01234567");
        let start = Start::Launch("/build/gl/lab%2Fgrowth/main?urlpath=lab".into());
        let res = launch_page(&t, "lab/growth", "main", commit, None, &snippets(), &start).unwrap();
        let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        let (_, page) = text(res).await;
        assert!(page.contains(r#"<script src="/static/launch.js"></script>"#));
        assert!(page.contains(r#"data-events="/build/gl/lab%2Fgrowth/main?urlpath=lab""#));
        assert!(page.contains("script-src 'self'; connect-src 'self'"));
        // No inline script anywhere.
        assert_eq!(page.matches("<script").count(), 1);
        // Without a commit, nothing to launch; a visitor who must log in gets the link.
        let res = launch_page(&t, "lab/growth", "nope", None, None, &snippets(), &start).unwrap();
        assert!(!res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let (_, page) = text(res).await;
        assert!(!page.contains("<script"));
        let login = Start::LogIn("/login?next=%2Fv2%2Fgl%2Flab%252Fgrowth%2Fmain".into());
        let (_, page) =
            text(launch_page(&t, "lab/growth", "main", commit, None, &snippets(), &login).unwrap())
                .await;
        assert!(
            page.contains(
                r#"<a href="/login?next=%2Fv2%2Fgl%2Flab%252Fgrowth%2Fmain">Log in</a> to launch"#
            ),
            "{page}"
        );
        assert!(page.contains("script-src 'none'"));
    }
}
