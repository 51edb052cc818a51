//! HTTP routes: webhook ingest, health, metrics, the admin JSON API, launch links, login
//! and the server-rendered pages. `web` owns the page frame (templates, stylesheet, CSP),
//! the answers to errors ([`WebError`]) and the URLs nbforge hands out ([`urls`]).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::App;

pub mod auth;
pub mod badges;
pub mod builds;
pub mod data;
pub mod error;
pub mod form;
pub mod launch;
pub mod me;
pub mod pages;
pub mod proxy;
pub mod reconcile;
pub mod runs;
pub mod runs_again;
pub mod sessions;
pub mod sheets;
pub mod templates;
pub mod visitor_runs;

pub use error::WebError;
pub use templates::{CSP, Templates};

/// The state of the routes: the application and the loaded templates.
#[derive(Clone)]
pub struct Web {
    pub app: App,
    pub templates: Arc<Templates>,
    /// Parsed worksheets.
    pub sheets: Arc<sheets::SheetCache>,
}

impl FromRef<Web> for Arc<sheets::SheetCache> {
    fn from_ref(web: &Web) -> Arc<sheets::SheetCache> {
        web.sheets.clone()
    }
}

impl FromRef<Web> for App {
    fn from_ref(web: &Web) -> App {
        web.app.clone()
    }
}

impl FromRef<Web> for crate::ingest::Ingest {
    fn from_ref(web: &Web) -> crate::ingest::Ingest {
        crate::ingest::Ingest::from_ref(&web.app)
    }
}

impl FromRef<Web> for Arc<Templates> {
    fn from_ref(web: &Web) -> Arc<Templates> {
        web.templates.clone()
    }
}

/// The whole HTTP surface of nbforge.
pub fn router(app: App) -> Router {
    let templates = Arc::new(Templates::new());
    let max_body = app.settings.server.max_body_bytes;
    let web = Web {
        app,
        templates: templates.clone(),
        sheets: Arc::new(sheets::SheetCache::default()),
    };
    Router::new()
        .route("/hooks/gitlab", post(crate::ingest::gitlab))
        .route("/hooks/github", post(crate::ingest::github))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/{key}", get(get_delivery))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/retry", post(retry_job))
        .route("/api/reconcile", post(reconcile::reconcile))
        .route("/api/builds", get(builds::list))
        .route("/api/builds/{id}", get(builds::get))
        .route("/api/builds/{id}/log", get(builds::log))
        .route("/badge_logo.svg", get(badges::launch))
        .route("/badge.svg", get(badges::launch))
        .route(
            "/badge/{provider}/{project}/{git_ref}",
            get(badges::status_gitlab),
        )
        .route(
            "/badge/gh/{owner}/{repo}/{git_ref}",
            get(badges::status_github),
        )
        .route("/", get(pages::landing))
        .route("/login", get(auth::login))
        .route("/oauth/callback", get(auth::callback))
        .route("/logout", post(auth::logout))
        .route("/me", get(me::page).post(me::set_level))
        .route("/api/sessions", get(sessions::list))
        .route("/api/sessions/{id}", axum::routing::delete(sessions::stop))
        .route("/sessions/{id}/stop", post(sessions::stop))
        .route("/v2/{provider}/{project}/{git_ref}", get(launch::launch))
        .route(
            "/v2/gh/{owner}/{repo}/{git_ref}",
            get(launch::launch_github),
        )
        .route("/build/{provider}/{project}/{git_ref}", get(launch::events))
        .route(
            "/build/gh/{owner}/{repo}/{git_ref}",
            get(launch::events_github),
        )
        .route("/static/launch.js", get(launch::script))
        .route("/w", get(pages::index))
        .route("/w/{*rest}", get(pages::get).post(pages::post))
        .route(
            "/api/projects/{project}/official",
            axum::routing::put(pages::set_official),
        )
        .route("/api/runs", get(runs::api_list).post(runs::api_create))
        .route(
            "/api/runs/{id}",
            get(runs::api_get).delete(runs::api_delete),
        )
        .route("/api/runs/{id}/cancel", post(runs::api_cancel))
        .route("/api/runs/{id}/again", post(runs_again::api_again))
        .route("/runs/{id}/again", post(runs_again::again_form))
        .route("/runs/progress.js", get(runs::progress_js))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/events", get(runs::events))
        .route("/runs/{id}/cancel", post(runs::cancel_form))
        .route("/runs/{id}/delete", post(runs::delete_form))
        .route("/runs/{id}/output.ipynb", get(runs::download_notebook))
        .route("/runs/{id}/result.zip", get(runs::download_zip))
        .route("/me/results", get(runs::results))
        // Uploads are bounded by `NBFORGE_UPLOAD_MAX_BYTES` as they are received.
        .route(
            "/api/data",
            get(data::api_list)
                .post(data::api_upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/data",
            post(data::form_upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        // Inside the header layers, so error pages get the same headers.
        .layer(axum::middleware::from_fn_with_state(
            templates.clone(),
            error::answer_errors,
        ))
        // Outside `answer_errors`, so that error pages show who is logged in too.
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::find_viewer,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // Outside the frame's layers: Jupyter's answers keep their own headers (see `proxy`).
        .route("/user/{*rest}", any(proxy::forward))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(web)
}

async fn healthz(State(app): State<App>) -> Response {
    if app.db.ping().await {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    match app.db.job_counts().await {
        Ok(counts) => app.metrics.set_job_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "reading job counts for metrics failed"),
    }
    // Sessions by state from the runtime, like the queue from the database, so that every
    // process reports the same; a runtime that does not answer soon keeps the last counts.
    match tokio::time::timeout(std::time::Duration::from_secs(3), app.sessions.list()).await {
        Ok(Ok(sessions)) => app.metrics.set_session_states(
            sessions
                .iter()
                .map(|s| crate::sessions::lifecycle::state_name(&s.state)),
        ),
        Ok(Err(e)) => tracing::warn!("listing sessions for metrics failed: {e}"),
        Err(_) => tracing::warn!("listing sessions for metrics took too long"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// A request for the admin API: the admin bearer token, or a platform administrator's
/// browser session (`NBFORGE_ADMINS`, `NBFORGE_ADMIN_GROUP`).
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    App: FromRef<S>,
{
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = App::from_ref(state);
        let viewer = crate::access::Viewer::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|never| match never {});
        if app
            .access
            .can_platform(&viewer, crate::access::Action::AdminApi)
        {
            return Ok(Admin);
        }
        if viewer.subject.is_logged_in() {
            return Err(WebError::Forbidden(
                "only platform administrators may do this".into(),
            ));
        }
        if app.settings.server.admin_token.is_none() && !app.access.login_enabled() {
            return Err(WebError::Forbidden(
                "the admin API is disabled: set NBFORGE_ADMIN_TOKEN".into(),
            ));
        }
        Err(WebError::Unauthorized(
            "admin token required (Authorization: Bearer …)".into(),
        ))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub state: Option<String>,
}

impl ListQuery {
    /// The number of rows asked for: 100 by default, at most 1000.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

async fn list_deliveries(
    _: Admin,
    State(app): State<App>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let rows = app.db.list_deliveries(q.limit()).await?;
    Ok(Json(json!({ "deliveries": rows })).into_response())
}

async fn get_delivery(
    _: Admin,
    State(app): State<App>,
    Path(key): Path<String>,
) -> Result<Response, WebError> {
    let row = app
        .db
        .get_delivery(&key)
        .await?
        .ok_or_else(|| WebError::NotFound("no delivery with that key".into()))?;
    let jobs = app
        .db
        .jobs_for_delivery(crate::storage::DeliveryId(row.id))
        .await?;
    Ok(Json(json!({ "delivery": row, "jobs": jobs })).into_response())
}

async fn list_jobs(
    _: Admin,
    State(app): State<App>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let rows = app.db.list_jobs(q.state.as_deref(), q.limit()).await?;
    let counts: serde_json::Map<String, serde_json::Value> = app
        .db
        .job_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s, json!(n)))
        .collect();
    Ok(Json(json!({ "counts": counts, "jobs": rows })).into_response())
}

/// `POST /api/jobs/{id}/retry`: re-drives a dead-lettered or failed job.
async fn retry_job(
    _: Admin,
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let id = crate::storage::JobId(id);
    job_or_404(&app, id).await?;
    if !app.db.redrive_job(id).await? {
        return Err(WebError::Conflict(
            "only dead-lettered or failed jobs can be retried".into(),
        ));
    }
    app.jobs_ready.notify_waiters();
    let row = job_or_404(&app, id).await?;
    Ok(Json(json!({ "job": row })).into_response())
}

/// The job `id`, or a 404.
async fn job_or_404(
    app: &App,
    id: crate::storage::JobId,
) -> Result<crate::storage::JobRow, WebError> {
    app.db
        .get_job(id)
        .await?
        .ok_or_else(|| WebError::NotFound("no job with that id".into()))
}

async fn get_job(
    _: Admin,
    State(app): State<App>,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let row = job_or_404(&app, crate::storage::JobId(id)).await?;
    Ok(Json(json!({ "job": row })).into_response())
}
