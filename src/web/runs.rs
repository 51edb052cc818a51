//! Worksheet runs on the web: starting one (the worksheet form's Run, `POST /api/runs`),
//! following it (`/runs/{id}` with Server-Sent Events, `GET /api/runs/{id}`), the list of
//! one's results (`/me/results`, `GET /api/runs`), cancel, delete, and downloads of the
//! executed notebook and of the result folder as a zip.
//!
//! A run is seen only by its owner and platform administrators; everyone else gets a
//! 404, whether the run exists or not. Starting one needs `Action::RunWorksheet` in the
//! worksheet's project and a login, except for visitors' runs of official public
//! worksheets when `NBFORGE_ANONYMOUS_RUNS` is on: those are read by whoever holds their
//! link (see [`super::visitor_runs`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use minijinja::value::{Serde, Value as TemplateValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::WebError;
use super::auth::require;
use super::templates::{Templates, notebook_html};
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::jobs::Job;
use crate::jobs::kinds::RunWorksheet;
use crate::runs::{self, Engine};
use crate::storage::{NewRun, RunFilter, RunRow};
use crate::urls;
use crate::worksheet::{FieldError, validate};

/// The policy of the progress page: nbforge's own script and its event stream, and no
/// notebook output on the page.
pub const PROGRESS_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; \
object-src 'none'; frame-src 'none'; frame-ancestors 'none'";

/// The script of the progress page (served at `/runs/progress.js`).
const PROGRESS_JS: &str = include_str!("templates/run_progress.js");

/// What was asked to run.
pub struct Request<'a> {
    pub project: &'a str,
    pub tag: &'a str,
    pub path: &'a str,
    /// The key of the visitor asking, when they are not logged in (see
    /// [`super::visitor_runs`]).
    pub visitor: Option<&'a str>,
}

/// Creates a run of a published worksheet with `form` values (as the form sends them) for
/// a logged-in viewer allowed to run it. The values' errors, if any.
pub async fn start(
    app: &App,
    cache: &super::sheets::SheetCache,
    viewer: &Viewer,
    uri: &Uri,
    what: &Request<'_>,
    form: &HashMap<String, String>,
) -> Result<Result<RunRow, Vec<FieldError>>, WebError> {
    let Some(forge) = app.db.release_forge(what.project).await? else {
        return Err(WebError::NotFound("No worksheet here.".into()));
    };
    require(app, viewer, uri, Action::RunWorksheet, forge, what.project).await?;
    let visitor = match (&viewer.user, what.visitor) {
        (Some(_), _) => None,
        (None, Some(visitor))
            if super::visitor_runs::may_run(app, viewer, forge, what.project).await? =>
        {
            Some(visitor)
        }
        (None, Some(_)) => {
            return Err(WebError::Unauthorized(
                "visitors may run official worksheets only; log in to run this one".into(),
            ));
        }
        (None, None) => {
            return Err(WebError::Unauthorized("log in to run worksheets".into()));
        }
    };
    let sheet = super::pages::load(app, cache, what.project, what.tag, what.path).await?;
    let parsed = sheet
        .parsed
        .as_ref()
        .ok_or_else(|| WebError::NotFound("No worksheet here.".into()))?;
    let values = match validate(&parsed.params, form) {
        Ok(v) => v,
        Err(errors) => return Ok(Err(errors)),
    };
    let missing = super::data::check_picked(
        app,
        viewer.user.as_ref().map(|u| u.id),
        &parsed.params,
        &values,
    )
    .await?;
    if !missing.is_empty() {
        return Ok(Err(missing));
    }
    let release = app
        .db
        .releases(what.project)
        .await?
        .into_iter()
        .find(|r| r.tag == what.tag)
        .ok_or_else(|| WebError::NotFound("No worksheet here.".into()))?;
    let id = runs::new_run_id();
    let folder = runs::result_folder(what.project, what.path, crate::storage::now_ms(), &id);
    let values_json = runs::values_to_json(&values);
    let job = RunWorksheet {
        run_id: id.clone(),
        project: what.project.to_owned(),
    };
    let new_run = NewRun {
        id: &id,
        owner_user_id: viewer.user.as_ref().map(|u| u.id),
        owner_visitor: visitor,
        forge: forge.name(),
        project: what.project,
        tag: what.tag,
        worksheet: what.path,
        commit_sha: &release.commit_sha,
        values_json: &values_json,
        result_folder: &folder,
    };
    let new_job = job.to_new_job(app.settings.jobs.max_attempts);
    if visitor.is_some() {
        super::visitor_runs::create(app, &new_run, &new_job).await?;
    } else {
        app.db.create_run(&new_run, &new_job).await?;
    }
    app.jobs_ready.notify_waiters();
    let row = app
        .db
        .get_run(&id)
        .await?
        .ok_or_else(|| WebError::Internal(anyhow::anyhow!("a new run is missing")))?;
    Ok(Ok(row))
}

/// The run `id` if the viewer may see it (its owner, or a platform administrator; anyone
/// for a visitor's run); otherwise a 404 that says nothing about whether it exists. A run whose job ended
/// without ending the run (the job was given up) is marked failed here.
pub(super) async fn visible(app: &App, viewer: &Viewer, id: &str) -> Result<RunRow, WebError> {
    let not_found = || WebError::NotFound("No such run.".into());
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let row = app.db.get_run(id).await?.ok_or_else(not_found)?;
    let owner = viewer
        .user
        .as_ref()
        .is_some_and(|u| Some(u.id) == row.owner_user_id);
    if !owner
        && !app.access.can_platform(viewer, Action::AdminApi)
        && !super::visitor_runs::readable_by_link(&row)
    {
        return Err(not_found());
    }
    repair(app, row).await
}

/// The run `id` if the viewer may cancel or delete it (see
/// [`super::visitor_runs::may_change`]); otherwise the same 404 as [`visible`].
async fn changeable(
    app: &App,
    viewer: &Viewer,
    headers: &HeaderMap,
    id: &str,
) -> Result<RunRow, WebError> {
    let row = visible(app, viewer, id).await?;
    if !super::visitor_runs::may_change(app, viewer, headers, &row) {
        return Err(WebError::NotFound("No such run.".into()));
    }
    Ok(row)
}

/// A run whose job has ended for good without ending it fails with the job's reason.
async fn repair(app: &App, row: RunRow) -> Result<RunRow, WebError> {
    if row.is_final() {
        return Ok(row);
    }
    let Some(job_id) = row.job_id else {
        return Ok(row);
    };
    let job = app.db.get_job(crate::storage::JobId(job_id)).await?;
    let ended = job.as_ref().is_none_or(|j| {
        matches!(
            j.state.as_str(),
            "done" | "failed" | "dead" | "canceled" | "superseded"
        )
    });
    if !ended {
        return Ok(row);
    }
    let reason = match job.and_then(|j| j.last_error) {
        Some(e) => format!("the run was given up: {}", crate::text::truncate(&e, 500)),
        None => "the run was given up".into(),
    };
    app.db
        .finish_run(&row.id, "failed", Some(&reason), None)
        .await?;
    Ok(app.db.get_run(&row.id).await?.unwrap_or(row))
}

/// A run as the API and the pages show it.
#[derive(Serialize)]
pub struct RunView {
    pub id: String,
    pub url: String,
    pub state: String,
    pub project: String,
    pub tag: String,
    pub worksheet: String,
    pub worksheet_url: String,
    pub commit: String,
    pub image: Option<String>,
    pub values: Value,
    /// The values as `name`, JSON text, for pages.
    pub values_shown: Vec<(String, String)>,
    /// The result folder's own name (`<UTC time>-<short id>`).
    pub name: String,
    pub error: Option<String>,
    pub message: Option<String>,
    pub result_folder: String,
    pub result_url: Option<String>,
    pub progress: Progress,
    pub queue_position: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Seconds from start to end (or to now while running).
    pub duration_secs: Option<i64>,
    /// A visitor's run: kept in a throwaway home, readable by whoever has its link.
    pub anonymous: bool,
    /// When a visitor's result expires (epoch milliseconds), once the run has ended.
    pub expires_at: Option<i64>,
}

#[derive(Serialize)]
pub struct Progress {
    pub cells_done: i64,
    pub cells_total: i64,
    pub heading: Option<String>,
}

async fn view(app: &App, row: &RunRow) -> Result<RunView, WebError> {
    let queue_position = if row.state == "queued" {
        Some(app.db.run_queue_position(row).await?)
    } else {
        None
    };
    let now = crate::storage::now_ms();
    let values: Value = serde_json::from_str(&row.values_json).unwrap_or(json!({}));
    Ok(RunView {
        id: row.id.clone(),
        url: format!("/runs/{}", row.id),
        state: row.state.clone(),
        project: row.project.clone(),
        tag: row.tag.clone(),
        worksheet: row.worksheet.clone(),
        worksheet_url: urls::worksheet(&row.project, Some(&row.tag), Some(&row.worksheet)),
        commit: row.commit_sha.clone(),
        image: row.image.clone(),
        values: values.clone(),
        values_shown: values
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default(),
        name: row
            .result_folder
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned(),
        error: row.error.clone(),
        message: row.message.clone(),
        result_folder: format!("~/{}", row.result_folder),
        result_url: row
            .is_final()
            .then(|| format!("/runs/{}/output.ipynb", row.id)),
        progress: Progress {
            cells_done: row.cells_done,
            cells_total: row.cells_total,
            heading: row.heading.clone(),
        },
        queue_position,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        duration_secs: row
            .started_at
            .map(|s| (row.finished_at.unwrap_or(now) - s) / 1000),
        anonymous: runs::visitors::is_visitors(row),
        expires_at: runs::visitors::expires_at(&app.settings, row),
    })
}

// ---------------------------------------------------------------------- JSON API

#[derive(Deserialize)]
pub struct NewRunBody {
    /// `/w/<namespace>/<project>/<tag>/<path>` (or the full URL).
    worksheet: String,
    #[serde(default)]
    values: Map<String, Value>,
}

/// `POST /api/runs`: 201 `{"id", "url"}`; 422 `{"error", "errors": {field: message}}`.
pub async fn api_create(
    State(app): State<App>,
    State(cache): State<Arc<super::sheets::SheetCache>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Json<NewRunBody>, JsonRejection>,
) -> Result<Response, WebError> {
    let Json(body) = body?;
    let path = match url::Url::parse(&body.worksheet) {
        Ok(u) => u.path().to_owned(),
        Err(_) => body.worksheet.clone(),
    };
    let rest = path
        .strip_prefix("/w/")
        .ok_or_else(|| WebError::BadRequest("`worksheet` is not a /w/… address".into()))?;
    let rest = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| WebError::BadRequest("`worksheet` is not UTF-8".into()))?;
    let (project, tag, path) = match super::pages::resolve(&app, &rest).await? {
        (p, Some(t), Some(path)) => (p, t, path),
        _ => return Err(WebError::NotFound("No worksheet here.".into())),
    };
    let form = runs::form_from_json(&body.values);
    let (visitor, new_cookie) = if super::visitor_runs::is_visitor(&app, &viewer) {
        let (key, cookie) = super::visitor_runs::visitor(&app, &headers);
        (Some(key), cookie)
    } else {
        (None, None)
    };
    let what = Request {
        project: &project,
        tag: &tag,
        path: &path,
        visitor: visitor.as_deref(),
    };
    match start(&app, &cache, &viewer, &uri, &what, &form).await? {
        Ok(row) => {
            let url = format!("/runs/{}", row.id);
            let mut res = (
                StatusCode::CREATED,
                [(header::LOCATION, url.clone())],
                Json(json!({ "id": row.id, "url": url })),
            )
                .into_response();
            set_cookie(&mut res, new_cookie.as_deref());
            Ok(res)
        }
        Err(errors) => {
            let by_field: Map<String, Value> = errors
                .iter()
                .map(|e| (e.name.clone(), Value::String(e.message.clone())))
                .collect();
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "some values are not valid", "errors": by_field })),
            )
                .into_response())
        }
    }
}

/// Adds a new visitor's cookie to the response.
pub fn set_cookie(res: &mut Response, cookie: Option<&str>) {
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    project: Option<String>,
    worksheet: Option<String>,
    limit: Option<i64>,
}

/// Runs the viewer may list: their own, or everyone's for platform administrators.
async fn listed(
    app: &App,
    viewer: &Viewer,
    q: &ListQuery,
    all: bool,
) -> Result<Vec<RunRow>, WebError> {
    let admin = app.access.can_platform(viewer, Action::AdminApi);
    let owner = match (&viewer.user, admin && all) {
        (_, true) => None,
        (Some(u), false) => Some(u.id),
        (None, false) => return Err(WebError::Unauthorized("log in first".into())),
    };
    let project = q.project.as_deref().filter(|p| !p.is_empty());
    let worksheet = q.worksheet.as_deref().filter(|p| !p.is_empty());
    let rows = app
        .db
        .list_runs(&RunFilter {
            owner_user_id: owner,
            project,
            worksheet,
            limit: q.limit.unwrap_or(200).clamp(1, 1000),
        })
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(repair(app, row).await?);
    }
    Ok(out)
}

/// `GET /api/runs`: the viewer's runs, newest first (platform administrators: all).
pub async fn api_list(
    State(app): State<App>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let rows = listed(&app, &viewer, &q, true).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(view(&app, row).await?);
    }
    Ok(Json(json!({ "runs": views })).into_response())
}

/// `GET /api/runs/{id}`.
pub async fn api_get(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = visible(&app, &viewer, &id).await?;
    Ok(Json(json!({ "run": view(&app, &row).await? })).into_response())
}

/// `POST /api/runs/{id}/cancel`.
pub async fn api_cancel(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = changeable(&app, &viewer, &headers, &id).await?;
    let row = app.db.cancel_run(&row.id).await?.unwrap_or(row);
    Ok(Json(json!({ "run": view(&app, &row).await? })).into_response())
}

/// `DELETE /api/runs/{id}`: forgets the run (a running one is stopped first); the
/// result folder stays in the home.
pub async fn api_delete(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = changeable(&app, &viewer, &headers, &id).await?;
    delete(&app, &row).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete(app: &App, row: &RunRow) -> Result<(), WebError> {
    if !row.is_final() {
        app.db.cancel_run(&row.id).await?;
        if let Ok(engine) = Engine::connect(&app.settings) {
            engine.kill(&row.id).await;
        }
    }
    app.db.delete_run(&row.id).await?;
    if runs::visitors::is_visitors(row) {
        super::visitor_runs::remove_home(app, row).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------- pages

/// `GET /runs/{id}`: progress while the run waits or executes, then its result.
pub async fn page(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = visible(&app, &viewer, &id).await?;
    let may_cancel = super::visitor_runs::may_change(&app, &viewer, &headers, &row);
    let run = view(&app, &row).await?;
    let title = format!("{} ({})", row.worksheet, row.state);
    let again = runs::form_from_json(run.values.as_object().unwrap_or(&Map::new()));
    let mut again: Vec<(String, String)> = again.into_iter().collect();
    again.sort();
    let in_progress = !row.is_final();
    let newest = super::runs_again::newest_tag(&app, &row).await?;
    let ctx = context! {
        title,
        run => Serde(&run),
        again => Serde(&again),
        newest_url => newest.as_ref().map(|t| urls::worksheet(&row.project, Some(t), Some(&row.worksheet))),
        newest_tag => newest,
        in_progress,
        may_cancel,
        expires => run.expires_at.map(super::visitor_runs::utc_minute),
        result => row.result_html.clone().map(notebook_html),
    };
    // While in progress the page runs nbforge's progress script (and shows no outputs).
    let ctx = if in_progress {
        let csp = PROGRESS_CSP.replace("; frame-ancestors 'none'", "");
        context! { meta_csp => TemplateValue::from_safe_string(csp), ..ctx }
    } else {
        ctx
    };
    let mut res = templates.page(StatusCode::OK, "run.html", ctx)?;
    if in_progress {
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PROGRESS_CSP),
        );
    }
    Ok(res)
}

/// `GET /runs/progress.js`.
pub async fn progress_js() -> Response {
    super::launch::script_response(PROGRESS_JS, "no-cache")
}

/// `GET /runs/{id}/events`: the run's progress as Server-Sent Events (`progress` with
/// the run's JSON, whenever it changes), ending with `end` once the run has ended.
pub async fn events(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = visible(&app, &viewer, &id).await?;
    struct Follow {
        app: App,
        id: String,
        last: Option<String>,
        ended: bool,
        first: bool,
    }
    let state = Follow {
        app,
        id: row.id,
        last: None,
        ended: false,
        first: true,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        loop {
            if !s.first {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            s.first = false;
            let row = match s.app.db.get_run(&s.id).await {
                Ok(Some(r)) => r,
                _ => {
                    s.ended = true;
                    return Some((
                        Ok::<_, Infallible>(Event::default().event("end").data("{}")),
                        s,
                    ));
                }
            };
            let Ok(row) = repair(&s.app, row).await else {
                return None;
            };
            let Ok(v) = view(&s.app, &row).await else {
                return None;
            };
            let text = serde_json::to_string(&v).unwrap_or_default();
            if row.is_final() {
                s.ended = true;
                return Some((Ok(Event::default().event("end").data(text)), s));
            }
            if s.last.as_deref() != Some(text.as_str()) {
                s.last = Some(text.clone());
                return Some((Ok(Event::default().event("progress").data(text)), s));
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `POST /runs/{id}/cancel` (the Cancel button).
pub async fn cancel_form(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = changeable(&app, &viewer, &headers, &id).await?;
    app.db.cancel_run(&row.id).await?;
    Ok(Redirect::to(&format!("/runs/{}", row.id)).into_response())
}

/// `POST /runs/{id}/delete` (the Delete button on `/me/results`).
pub async fn delete_form(
    State(app): State<App>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    _form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Response, WebError> {
    let row = changeable(&app, &viewer, &headers, &id).await?;
    delete(&app, &row).await?;
    Ok(Redirect::to("/me/results").into_response())
}

/// `GET /me/results`: the viewer's runs, newest first, filtered by project and worksheet.
pub async fn results(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    if viewer.user.is_none() {
        return Err(super::auth::deny(
            &app,
            crate::access::Denied::NeedsLogin,
            &uri,
        ));
    }
    let rows = listed(&app, &viewer, &q, false).await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in &rows {
        views.push(view(&app, row).await?);
    }
    templates.page(
        StatusCode::OK,
        "results.html",
        context! {
            title => "My results",
            runs => Serde(&views),
            project => q.project.as_deref().unwrap_or(""),
            worksheet => q.worksheet.as_deref().unwrap_or(""),
        },
    )
}

// ---------------------------------------------------------------------- downloads

/// `GET /runs/{id}/output.ipynb`: the executed notebook from the owner's home, streamed.
pub async fn download_notebook(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = visible(&app, &viewer, &id).await?;
    let engine = Engine::connect(&app.settings).map_err(WebError::Internal)?;
    let stream = engine
        .stream_home_file(&row, "output.ipynb")
        .await
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("This run has no output.ipynb.".into()))?;
    let name = format!("output-{}.ipynb", &row.id[..8]);
    Ok(attachment(
        "application/x-ipynb+json",
        &name,
        Body::from_stream(stream),
    ))
}

/// A download named `name` (ASCII: a short id and a fixed extension).
fn attachment(content_type: &'static str, name: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /runs/{id}/result.zip`: the result folder as a zip, streamed.
pub async fn download_zip(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let row = visible(&app, &viewer, &id).await?;
    let engine = Engine::connect(&app.settings).map_err(WebError::Internal)?;
    let stream = engine
        .zip_home_folder(&row)
        .await
        .map_err(WebError::Internal)?;
    let name = format!("result-{}.zip", &row.id[..8]);
    Ok(attachment(
        "application/zip",
        &name,
        Body::from_stream(stream),
    ))
}
