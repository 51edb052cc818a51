//! `POST /api/reconcile[?project=<path>]` (admin token): enqueues the membership
//! reconciler now, for every known GitLab project and group or for one project, and
//! answers `202 Accepted` with the job's id. The job itself is
//! [`crate::jobs::kinds::reconcile`].

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, WebError};
use crate::app::App;
use crate::events::ForgeKind;
use crate::jobs::Job;
use crate::jobs::kinds::Reconcile;
use crate::storage::Enqueue;

#[derive(Deserialize)]
pub struct ReconcileQuery {
    /// `namespace/project`: only this project.
    pub project: Option<String>,
}

pub async fn reconcile(
    _: Admin,
    State(app): State<App>,
    Query(q): Query<ReconcileQuery>,
) -> Result<Response, WebError> {
    if app.forges.gitlab.is_none() {
        return Err(WebError::Conflict(
            "GitLab is not configured (NBFORGE_GITLAB_URL, NBFORGE_GITLAB_TOKEN): nothing to reconcile"
                .into(),
        ));
    }
    let project = q
        .project
        .map(|p| p.trim_matches('/').to_owned())
        .filter(|p| !p.is_empty());
    if let Some(path) = &project {
        let known = app.db.get_project(ForgeKind::GitLab.name(), path).await?;
        if known.is_none_or(|p| p.forge_id.is_none()) {
            return Err(WebError::NotFound(
                "nbforge knows no GitLab project with that path".into(),
            ));
        }
    }
    let job = Reconcile { project }.to_new_job(app.settings.jobs.max_attempts);
    let ids = app
        .db
        .enqueue(&Enqueue {
            supersede: Vec::new(),
            jobs: vec![job],
        })
        .await?;
    app.jobs_ready.notify_waiters();
    let id = ids.first().map(|id| id.0);
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": id }))).into_response())
}
