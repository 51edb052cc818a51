//! HTTP routes: webhook ingest, health, metrics and the admin JSON API.

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::App;

/// The whole HTTP surface of nbforge.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/hooks/gitlab", post(crate::ingest::gitlab))
        .route("/hooks/github", post(crate::ingest::github))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/deliveries", get(list_deliveries))
        .route("/api/deliveries/{key}", get(get_delivery))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/builds", get(builds::list))
        .route("/api/builds/{id}", get(builds::get))
        .route("/api/builds/{id}/log", get(builds::log))
        .route("/badge_logo.svg", get(badge))
        .route("/", get(pages::landing))
        .route("/v2/{provider}/{project}/{git_ref}", get(launch::launch))
        .route("/w", get(pages::index))
        .route("/w/{*rest}", get(pages::get).post(pages::post))
        .route(
            "/api/projects/{project}/official",
            axum::routing::put(pages::set_official),
        )
        .route("/noop", post(noop))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::worksheet::CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            app.settings.server.max_body_bytes,
        ))
        .with_state(app)
}

pub mod builds;
pub mod launch;
pub mod pages;

/// The launch badge, as BinderHub serves `badge_logo.svg`.
async fn badge() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        BADGE_SVG,
    )
        .into_response()
}

const BADGE_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="109" height="20" role="img" aria-label="launch: nbforge"><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><rect width="109" height="20" rx="3" fill="#555"/><rect x="48" width="61" height="20" rx="3" fill="#2e7d32"/><rect width="109" height="20" rx="3" fill="url(#s)"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="24" y="14">launch</text><text x="77.5" y="14">nbforge</text></g></svg>"##;

/// Answers 204 after reading its body: the baseline for `nbforge bench ingest`.
async fn noop(_body: axum::body::Bytes) -> StatusCode {
    StatusCode::NO_CONTENT
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// A request carrying the admin bearer token.
pub struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(token) = &app.settings.server.admin_token else {
            return Err(api_error(
                StatusCode::FORBIDDEN,
                "the admin API is disabled: set NBFORGE_ADMIN_TOKEN",
            ));
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match presented {
            Some(p) if token.matches(p.as_bytes()) => Ok(Admin),
            _ => Err(api_error(
                StatusCode::UNAUTHORIZED,
                "admin token required (Authorization: Bearer …)",
            )),
        }
    }
}

/// A server-rendered page: the site header and `body`, with the stylesheet and CSP of
/// [`crate::worksheet::page_html`].
pub fn html_page(status: StatusCode, title: &str, body: &str) -> Response {
    let full = format!(
        "<header class=\"site\"><a href=\"/\" class=\"brand\">nbforge</a></header>\n{body}"
    );
    (
        status,
        axum::response::Html(crate::worksheet::page_html(title, &full)),
    )
        .into_response()
}

/// A JSON error answer; the message must be safe to show.
pub fn api_error(code: StatusCode, message: &str) -> Response {
    (code, Json(json!({ "error": message }))).into_response()
}

pub fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "admin API request failed");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub state: Option<String>,
}

async fn list_deliveries(_: Admin, State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    match app
        .db
        .list_deliveries(q.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(rows) => Json(json!({ "deliveries": rows })).into_response(),
        Err(e) => internal(e),
    }
}

async fn get_delivery(_: Admin, State(app): State<App>, Path(key): Path<String>) -> Response {
    match app.db.get_delivery(&key).await {
        Ok(Some(row)) => {
            let jobs = app
                .db
                .jobs_for_delivery(crate::storage::DeliveryId(row.id))
                .await;
            match jobs {
                Ok(jobs) => Json(json!({ "delivery": row, "jobs": jobs })).into_response(),
                Err(e) => internal(e),
            }
        }
        Ok(None) => api_error(StatusCode::NOT_FOUND, "no delivery with that key"),
        Err(e) => internal(e),
    }
}

async fn list_jobs(_: Admin, State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = app.db.list_jobs(q.state.as_deref(), limit).await;
    let counts = app.db.job_counts().await;
    match (rows, counts) {
        (Ok(rows), Ok(counts)) => {
            let counts: serde_json::Map<String, serde_json::Value> =
                counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
            Json(json!({ "counts": counts, "jobs": rows })).into_response()
        }
        (Err(e), _) | (_, Err(e)) => internal(e),
    }
}

async fn get_job(_: Admin, State(app): State<App>, Path(id): Path<i64>) -> Response {
    match app.db.get_job(crate::storage::JobId(id)).await {
        Ok(Some(row)) => Json(json!({ "job": row })).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, "no job with that id"),
        Err(e) => internal(e),
    }
}
