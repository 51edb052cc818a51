//! Running a worksheet run again: **exactly** (the same commit's notebook, in the very
//! image the run used, by image id, whatever the release's tag builds today) or **on the
//! newest version** (the same values, on the newest published release of the worksheet).
//! `POST /api/runs/{id}/again` and the buttons of the run page and My results
//! (`POST /runs/{id}/again`). Only who may see the run, and may still run the worksheet,
//! may run it again.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, OriginalUri, Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::WebError;
use super::auth::require;
use super::runs::{Request, start, visible};
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::jobs::Job;
use crate::jobs::kinds::RunWorksheet;
use crate::runs;
use crate::storage::{NewRun, RunRow};
use crate::worksheet::FieldError;

/// Creates a run that repeats `original` exactly: same commit, same values, and its image
/// by id. A run that never got an image (it did not start) cannot be repeated exactly.
pub async fn again_exactly(
    app: &App,
    viewer: &Viewer,
    uri: &Uri,
    original: &RunRow,
) -> Result<RunRow, WebError> {
    let Some(forge) = app.db.release_forge(&original.project).await? else {
        return Err(WebError::NotFound(
            "This worksheet is no longer published.".into(),
        ));
    };
    require(
        app,
        viewer,
        uri,
        Action::RunWorksheet,
        forge,
        &original.project,
    )
    .await?;
    let Some(user) = &viewer.user else {
        return Err(WebError::Unauthorized("log in to run worksheets".into()));
    };
    if original.image_digest.is_none() {
        return Err(WebError::Conflict(
            "this run never started, so there is no image to run it again in exactly; run it again on the newest version".into(),
        ));
    }
    if app
        .db
        .worksheet_notebook(&original.project, &original.tag, &original.worksheet)
        .await?
        .is_none()
    {
        return Err(WebError::NotFound(
            "This worksheet is no longer published.".into(),
        ));
    }
    let id = runs::new_run_id();
    let folder = runs::result_folder(
        &original.project,
        &original.worksheet,
        crate::storage::now_ms(),
        &id,
    );
    let job = RunWorksheet {
        run_id: id.clone(),
        project: original.project.clone(),
    };
    app.db
        .create_run_again_exactly(
            &NewRun {
                id: &id,
                owner_user_id: Some(user.id),
                owner_visitor: None,
                forge: &original.forge,
                project: &original.project,
                tag: &original.tag,
                worksheet: &original.worksheet,
                commit_sha: &original.commit_sha,
                values_json: &original.values_json,
                result_folder: &folder,
            },
            &job.to_new_job(app.settings.jobs.max_attempts),
            original,
        )
        .await?;
    app.jobs_ready.notify_waiters();
    app.db
        .get_run(&id)
        .await?
        .ok_or_else(|| WebError::Internal(anyhow::anyhow!("a new run is missing")))
}

/// The newest published release (its tag) that holds the run's worksheet.
pub async fn newest_tag(app: &App, run: &RunRow) -> Result<Option<String>, WebError> {
    for release in app.db.releases(&run.project).await? {
        if release.forge.name() != run.forge || release.error.is_some() {
            continue;
        }
        if app
            .db
            .worksheet_notebook(&run.project, &release.tag, &run.worksheet)
            .await?
            .is_some()
        {
            return Ok(Some(release.tag));
        }
    }
    Ok(None)
}

/// Creates a run of the newest version of the run's worksheet with its values (checked
/// against that version's parameters: errors by field).
async fn again_newest(
    app: &App,
    cache: &super::sheets::SheetCache,
    viewer: &Viewer,
    uri: &Uri,
    original: &RunRow,
) -> Result<Result<RunRow, Vec<FieldError>>, WebError> {
    let tag = newest_tag(app, original)
        .await?
        .ok_or_else(|| WebError::NotFound("This worksheet is no longer published.".into()))?;
    let values: Value = serde_json::from_str(&original.values_json).unwrap_or(json!({}));
    let form = runs::form_from_json(values.as_object().unwrap_or(&Map::new()));
    let what = Request {
        project: &original.project,
        tag: &tag,
        path: &original.worksheet,
        // Running again is for logged-in users; a visitor sends the form again.
        visitor: None,
    };
    start(app, cache, viewer, uri, &what, &form).await
}

#[derive(Deserialize)]
pub struct AgainBody {
    /// `true` (the default): the same image and commit; `false`: the newest version.
    #[serde(default = "yes")]
    exactly: bool,
}

fn yes() -> bool {
    true
}

fn created(row: &RunRow) -> Response {
    let url = format!("/runs/{}", row.id);
    (
        StatusCode::CREATED,
        [(header::LOCATION, url.clone())],
        Json(json!({ "id": row.id, "url": url })),
    )
        .into_response()
}

/// `POST /api/runs/{id}/again` (`{"exactly": true}` by default, `false` for the newest
/// version): 201 `{"id", "url"}`; 409 when a run to repeat exactly never started; 422 when
/// the values do not fit the newest version.
pub async fn api_again(
    State(app): State<App>,
    State(cache): State<Arc<super::sheets::SheetCache>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Result<Json<AgainBody>, JsonRejection>,
) -> Result<Response, WebError> {
    let original = visible(&app, &viewer, &id).await?;
    let body = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => AgainBody { exactly: true },
        Err(e) => return Err(e.into()),
    };
    if body.exactly {
        return Ok(created(
            &again_exactly(&app, &viewer, &uri, &original).await?,
        ));
    }
    match again_newest(&app, &cache, &viewer, &uri, &original).await? {
        Ok(row) => Ok(created(&row)),
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

/// `POST /runs/{id}/again` (the "Run again exactly" button): to the new run's page.
pub async fn again_form(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    _form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Response, WebError> {
    let original = visible(&app, &viewer, &id).await?;
    let row = again_exactly(&app, &viewer, &uri, &original).await?;
    Ok(Redirect::to(&format!("/runs/{}", row.id)).into_response())
}
