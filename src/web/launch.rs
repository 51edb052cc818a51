//! Launch links: `/v2/gl/<namespace%2Fproject>/<ref>` (BinderHub's URL scheme, so existing
//! badges work by changing the host). The page shows the state of the environment for
//! that ref: ready (with its image), being built (with the live log), or failed (with the
//! reason).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::html_page as page;
use crate::app::App;
use crate::storage::BuildPhase;
use crate::worksheet::render::escape;

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /v2/{provider}/{project}/{ref}`.
pub async fn launch(
    State(app): State<App>,
    Path((provider, project, git_ref)): Path<(String, String, String)>,
) -> Response {
    if provider != "gl" && provider != "gh" && provider != "git" {
        return page(
            StatusCode::NOT_FOUND,
            "Unknown provider",
            "<h1>Unknown provider</h1>\n<p>Use <code>/v2/gl/…</code>.</p>\n",
        );
    }
    let commit = if is_sha(&git_ref) {
        Some(git_ref.to_lowercase())
    } else {
        match app.db.resolve_ref(&project, &git_ref).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "resolving a launch ref failed");
                return page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    "<h1>Something went wrong</h1>\n",
                );
            }
        }
    };
    let title = format!("{project} at {git_ref}");
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    let Some(commit) = commit else {
        body.push_str("<p>nbforge has not seen this branch or tag yet. Push to it, and its environment is prepared.</p>\n");
        return page(StatusCode::NOT_FOUND, &title, &body);
    };
    let build = app.db.latest_build(&project, &commit).await.ok().flatten();
    let log = |id: i64| format!("/api/builds/{id}/log");
    match build {
        None => body.push_str(&format!(
            "<p>No environment has been prepared for commit <code>{}</code> yet.</p>\n",
            escape(crate::environment::flow::short_sha(&commit))
        )),
        Some(b) if b.phase == BuildPhase::Built => {
            let image = b.image.unwrap_or_default();
            body.push_str(&format!(
                "<p class=\"ok\" role=\"status\">The environment is ready{}.</p>\n\
                 <dl><dt>Commit</dt><dd><code>{}</code></dd><dt>Image</dt><dd><code>{}</code></dd></dl>\n\
                 <p>Run it with Docker: <code>docker run --rm -p 8888:8888 {}</code></p>\n\
                 <p><a href=\"{}\">Build log</a></p>\n",
                if b.cached.0 { " (from the cache)" } else { "" },
                escape(&commit),
                escape(&image),
                escape(&image),
                escape(&log(b.id)),
            ));
        }
        Some(b) if matches!(b.phase, BuildPhase::Failed | BuildPhase::Canceled) => body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">The environment could not be prepared: {}</p>\n<p><a href=\"{}\">Build log</a></p>\n",
            escape(b.message.as_deref().unwrap_or(b.phase.as_str())),
            escape(&log(b.id)),
        )),
        Some(b) => body.push_str(&format!(
            "<p role=\"status\">The environment is being prepared ({}). <a href=\"{}\">Follow the build log</a>.</p>\n",
            escape(b.phase.as_str()),
            escape(&log(b.id)),
        )),
    }
    page(StatusCode::OK, &title, &body)
}
