//! Badges for READMEs: the launch badge (`/badge_logo.svg`, as BinderHub serves it, and
//! `/badge.svg`) and a project's environment status at a ref
//! (`/badge/gl/<namespace%2Fproject>/<ref>.svg`, `/badge/gh/<owner>/<repo>/<ref>.svg`):
//! ready, building, failed or unknown. A badge of a project the viewer may not see is a 404,
//! like its launch page.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::WebError;
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::events::ForgeKind;
use crate::storage::BuildPhase;

/// What a status badge says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ready,
    Building,
    Failed,
    Unknown,
}

impl Status {
    fn text(self) -> (&'static str, &'static str) {
        match self {
            Status::Ready => ("ready", "#2e7d32"),
            Status::Building => ("building", "#1565c0"),
            Status::Failed => ("failed", "#c62828"),
            Status::Unknown => ("unknown", "#757575"),
        }
    }
}

/// A flat two-part badge; `label` and `message` are nbforge's own words (no escaping
/// needed, checked by a test).
pub fn svg(label: &str, message: &str, color: &str) -> String {
    // Verdana 11px is about 7px a character, with 10px of padding each side.
    let width = |s: &str| 10 + 7 * s.chars().count();
    let (l, m) = (width(label), width(message));
    let total = l + m;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {message}"><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><rect width="{total}" height="20" rx="3" fill="#555"/><rect x="{l}" width="{m}" height="20" rx="3" fill="{color}"/><rect width="{total}" height="20" rx="3" fill="url(#s)"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{mx}" y="14">{message}</text></g></svg>"##,
        lx = l / 2,
        mx = l + m / 2,
    )
}

fn image(svg: String, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, cache),
        ],
        svg,
    )
        .into_response()
}

/// `GET /badge_logo.svg`, `GET /badge.svg`: the launch badge.
pub async fn launch() -> Response {
    image(svg("launch", "nbforge", "#2e7d32"), "public, max-age=86400")
}

/// `GET /badge/gl/{project}/{ref}.svg` (also `git`).
pub async fn status_gitlab(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((provider, project, git_ref)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    if !matches!(provider.as_str(), "gl" | "git") {
        return Err(WebError::NotFound("Unknown provider.".into()));
    }
    status(&app, &viewer, &uri, ForgeKind::GitLab, &project, &git_ref).await
}

/// `GET /badge/gh/{owner}/{repo}/{ref}.svg`.
pub async fn status_github(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path((owner, repo, git_ref)): Path<(String, String, String)>,
) -> Result<Response, WebError> {
    let project = format!("{owner}/{repo}");
    status(&app, &viewer, &uri, ForgeKind::GitHub, &project, &git_ref).await
}

async fn status(
    app: &App,
    viewer: &Viewer,
    _uri: &axum::http::Uri,
    forge: ForgeKind,
    project: &str,
    git_ref: &str,
) -> Result<Response, WebError> {
    let Some(git_ref) = git_ref.strip_suffix(".svg") else {
        return Err(WebError::NotFound("Badges end in .svg.".into()));
    };
    // An image cannot send anyone to log in: a badge nobody may see is simply not there.
    if app
        .access
        .check(viewer, Action::ViewLaunchPage, forge, project)
        .await?
        .is_err()
    {
        return Err(WebError::NotFound("Nothing here.".into()));
    }
    let commit = if crate::events::is_commit_id(git_ref) {
        Some(git_ref.to_ascii_lowercase())
    } else {
        app.db.resolve_ref(forge.name(), project, git_ref).await?
    };
    let build = match &commit {
        Some(c) => app.db.latest_build(forge.name(), project, c).await?,
        None => None,
    };
    let state = match build.map(|b| b.phase) {
        None => Status::Unknown,
        Some(BuildPhase::Built) => Status::Ready,
        Some(BuildPhase::Failed | BuildPhase::Canceled) => Status::Failed,
        Some(_) => Status::Building,
    };
    let (message, color) = state.text();
    let mut res = image(svg("environment", message, color), "no-cache");
    *res.status_mut() = StatusCode::OK;
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn badges_are_svg_sized_to_their_words() {
        let short = svg("environment", "ready", "#2e7d32");
        let long = svg("environment", "building", "#1565c0");
        assert!(short.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(short.contains(">ready</text>"));
        let width = |s: &str| {
            s.split("width=\"")
                .nth(1)
                .and_then(|w| w.split('"').next())
                .and_then(|w| w.parse::<usize>().ok())
                .unwrap()
        };
        assert!(width(&long) > width(&short));
        for s in [
            Status::Ready,
            Status::Building,
            Status::Failed,
            Status::Unknown,
        ] {
            let (m, _) = s.text();
            assert!(
                m.chars().all(|c| c.is_ascii_lowercase()),
                "no escaping needed"
            );
        }
    }
}
