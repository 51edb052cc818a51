//! Jupyter sessions as their owners see them: `GET /api/sessions` (the viewer's own; every
//! session for platform administrators), `DELETE /api/sessions/{id}` (its owner or a
//! platform administrator; anyone else gets a 404, so nobody learns which ids exist), and
//! the form `POST /sessions/{id}/stop` behind the buttons of `/me` (checked for CSRF by the
//! access layer). Stopping removes the container and keeps the user's home; a session that
//! ended on its own is dismissed the same way. Anonymous visitors see and stop the sessions
//! of their visitor cookie.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::json;

use super::WebError;
use super::auth::{cookie_names, visitor_key};
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::sessions::lifecycle::{self, ms_rfc3339};
use crate::sessions::{Activity, Owner, SessionError, SessionId, SessionInfo, SessionState};

/// Whose sessions a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every session (platform administrators, the admin token).
    All,
    /// A logged-in user's.
    User(i64),
    /// An anonymous visitor's, by key.
    Visitor(String),
    /// Nobody's (an anonymous request without a visitor cookie).
    Nothing,
}

impl Scope {
    /// What the viewer of a request may see.
    pub fn of(app: &App, viewer: &Viewer, headers: &HeaderMap) -> Scope {
        if app.access.can_platform(viewer, Action::AdminApi) {
            return Scope::All;
        }
        if let Some(user) = &viewer.user {
            return Scope::User(user.id);
        }
        match visitor_key(cookie_names(app), headers) {
            Some(key) => Scope::Visitor(key),
            None => Scope::Nothing,
        }
    }

    pub fn sees(&self, owner: &Owner) -> bool {
        match (self, owner) {
            (Scope::All, _) => true,
            (Scope::User(me), Owner::User { id, .. }) => me == id,
            (Scope::Visitor(me), Owner::Anonymous { visitor }) => me == visitor,
            _ => false,
        }
    }
}

/// A session as the API and `/me` show it (never its token or address).
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    /// The owner's name in URLs: a username, or `~<visitor key>`.
    pub owner: String,
    pub name: String,
    pub forge: String,
    pub project: String,
    pub commit: String,
    /// `starting`, `running`, `stopped` or `failed`.
    pub state: &'static str,
    /// Why it failed, e.g. `killed: out of memory`.
    pub reason: Option<String>,
    /// For people: `running`, `stopped: out of memory`, ….
    pub status: String,
    /// RFC 3339.
    pub created: String,
    pub created_ms: i64,
    /// When it ended on its own (RFC 3339).
    pub ended: Option<String>,
    /// Where it is served: `/user/<owner>/<name>/`.
    pub url: String,
    /// Jupyter's last activity (RFC 3339), when the server answered.
    pub last_activity: Option<String>,
    /// Whether a kernel is computing, when the server answered.
    pub busy: Option<bool>,
}

impl SessionView {
    pub fn of(info: &SessionInfo, activity: Option<&Activity>) -> SessionView {
        let reason = match &info.state {
            SessionState::Failed(r) => Some(r.clone()),
            _ => None,
        };
        let status = match &info.state {
            SessionState::Starting => "starting".to_owned(),
            SessionState::Running if activity.is_some_and(|a| a.busy) => {
                "running (computing)".to_owned()
            }
            SessionState::Running => "running".to_owned(),
            SessionState::Stopped => "stopped".to_owned(),
            SessionState::Failed(r) => {
                format!("stopped: {}", r.strip_prefix("killed: ").unwrap_or(r))
            }
        };
        SessionView {
            id: info.id.0.clone(),
            owner: info.owner.url_name(),
            name: info.name.clone(),
            forge: info.project.forge.clone(),
            project: info.project.path.clone(),
            commit: info.project.commit.clone(),
            state: lifecycle::state_name(&info.state),
            reason,
            status,
            created: ms_rfc3339(info.created_ms),
            created_ms: info.created_ms,
            ended: info.finished_ms.map(ms_rfc3339),
            url: info.base_url.clone(),
            last_activity: activity.map(|a| a.last_activity.clone()),
            busy: activity.map(|a| a.busy),
        }
    }
}

fn unavailable(e: SessionError) -> WebError {
    tracing::error!("session runtime: {e}");
    WebError::Unavailable("Sessions are unavailable right now; try again in a moment.".into())
}

/// The sessions `scope` sees, oldest first, with their activity.
pub async fn visible(app: &App, scope: &Scope) -> Result<Vec<SessionView>, WebError> {
    if *scope == Scope::Nothing {
        return Ok(Vec::new());
    }
    let sessions: Vec<SessionInfo> = app
        .sessions
        .list()
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter(|s| scope.sees(&s.owner))
        .collect();
    let activities = lifecycle::activities(app.sessions.as_ref(), &sessions).await;
    Ok(sessions
        .iter()
        .map(|s| SessionView::of(s, activities.get(&s.id.0)))
        .collect())
}

/// `GET /api/sessions`.
pub async fn list(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let scope = Scope::of(&app, &viewer, &headers);
    let sessions = visible(&app, &scope).await?;
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

/// Stops session `id` when `scope` sees it; a 404 otherwise (also for ids that are not
/// session ids at all, which never reach the runtime).
async fn stop_visible(app: &App, scope: &Scope, id: &str) -> Result<(), WebError> {
    let not_found = || WebError::NotFound("no such session".into());
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(not_found());
    }
    let id = SessionId(id.to_owned());
    let info = app
        .sessions
        .status(&id)
        .await
        .map_err(unavailable)?
        .filter(|s| scope.sees(&s.owner))
        .ok_or_else(not_found)?;
    app.sessions.stop(&id).await.map_err(unavailable)?;
    tracing::info!(
        session.id = %id,
        session.owner = %info.owner.url_name(),
        "session {id} ({}) stopped by {}",
        info.name,
        match scope {
            Scope::All => "a platform administrator",
            _ => "its owner",
        }
    );
    Ok(())
}

/// `DELETE /api/sessions/{id}`: 204 once the container is gone. `POST
/// /sessions/{id}/stop`, the Stop and Dismiss buttons: back to `/me` (visitors: the
/// landing page).
pub async fn stop(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    method: Method,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let scope = Scope::of(&app, &viewer, &headers);
    stop_visible(&app, &scope, &id).await?;
    Ok(match (method, viewer.user.is_some()) {
        (Method::DELETE, _) => StatusCode::NO_CONTENT.into_response(),
        (_, true) => Redirect::to("/me#sessions").into_response(),
        (_, false) => Redirect::to("/").into_response(),
    })
}
