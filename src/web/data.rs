//! The user's own data on the web: `GET /api/data` lists the files of `~/data/`,
//! `POST /api/data?name=…` uploads a file sent as the request body, and `POST /data` takes
//! the upload form of a worksheet page (multipart) and goes back to the page. The file
//! parameters of worksheets pick among these files (see `runs::data`).
//!
//! Uploads are streamed to a temporary file on nbforge's disk (under the data directory)
//! up to `NBFORGE_UPLOAD_MAX_BYTES`, never held in memory; only a complete file within the
//! limit is written into the home. Names are checked (`worksheet::params::file::check_name`):
//! one plain file name, so nothing lands outside `~/data/`. Only logged-in users have a
//! `~/data/`; everyone else gets 401 (the API) or the login page.

use std::path::PathBuf;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::WebError;
use super::form::DataChoice;
use crate::access::{Denied, Viewer};
use crate::app::App;
use crate::runs::data::{Entry, HomeData, UploadError};
use crate::worksheet::params::file::{check_name, container_path, name_in_data};
use crate::worksheet::{FieldError, ParamType, ParamValue, Parameter, Values};

/// The logged-in user's id, or the answer for visitors (401 for the API, else the login).
fn user_id(app: &App, viewer: &Viewer, uri: &Uri) -> Result<i64, WebError> {
    viewer
        .user
        .as_ref()
        .map(|u| u.id)
        .ok_or_else(|| super::auth::deny(app, Denied::NeedsLogin, uri))
}

fn home_data(app: &App) -> Result<HomeData, WebError> {
    HomeData::connect(&app.settings).map_err(WebError::Internal)
}

/// `GET /api/data`: `{"files": [{"name", "size", "modified", "path"}], "upload_max_bytes"}`.
pub async fn api_list(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, WebError> {
    let user = user_id(&app, &viewer, &uri)?;
    let files = home_data(&app)?
        .list(user)
        .await
        .map_err(WebError::Internal)?;
    Ok(Json(json!({
        "files": files,
        "upload_max_bytes": app.settings.runs.upload_max_bytes,
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    replace: Option<String>,
}

fn is_true(flag: Option<&str>) -> bool {
    matches!(flag, Some("1" | "true" | "on" | "yes"))
}

/// `POST /api/data?name=<file name>[&replace=true]` with the file as the body:
/// 201 `{"name", "path", "size", "sha256"}`; 400 for a bad name, 409 when a file of
/// that name exists (without `replace`), 413 over the limit.
pub async fn api_upload(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, WebError> {
    let user = user_id(&app, &viewer, &uri)?;
    let name = q
        .name
        .ok_or_else(|| WebError::BadRequest("name the file: ?name=counts.csv".into()))?;
    check_name(&name).map_err(WebError::BadRequest)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let received = receive(&app, declared, body.into_data_stream()).await?;
    let size = received.size;
    let sha256 = received.sha256.clone();
    store(&app, user, &name, received, is_true(q.replace.as_deref())).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": name,
            "path": container_path(&name),
            "size": size,
            "sha256": sha256,
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct FormQuery {
    next: Option<String>,
}

/// Where to go back after a form upload: a path of this site, else `/`.
fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// `POST /data?next=<page>` (multipart, the worksheet page's upload form: a `file` field,
/// and `replace` to overwrite a file of the same name): stores the file, then 303 back to
/// `next`. The CSRF token comes in the address (`csrf_token`), where the layer checks it
/// without reading the body.
pub async fn form_upload(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<FormQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    let user = user_id(&app, &viewer, &uri)?;
    let mut multipart = multipart.map_err(|e| WebError::BadRequest(e.body_text()))?;
    let bad = |e: axum::extract::multipart::MultipartError| WebError::BadRequest(e.body_text());
    let mut received = None;
    let mut replace = false;
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") if received.is_none() => {
                let name = field.file_name().unwrap_or_default().to_owned();
                check_name(&name).map_err(WebError::BadRequest)?;
                let stream = field.map(|chunk| chunk.map_err(std::io::Error::other));
                received = Some((name, receive(&app, None, stream).await?));
            }
            Some("replace") => replace = true,
            _ => {}
        }
    }
    let (name, received) =
        received.ok_or_else(|| WebError::BadRequest("choose a file to upload".into()))?;
    store(&app, user, &name, received, replace).await?;
    Ok(Redirect::to(&local_next(q.next.as_deref())).into_response())
}

/// A received upload: a temporary file (removed when dropped), its size and SHA-256.
struct Received {
    path: tempfile::TempPath,
    size: u64,
    sha256: String,
}

fn too_large(max: u64) -> WebError {
    WebError::TooLarge(format!(
        "the file is larger than the upload limit of {} ({max} bytes)",
        super::form::human_size(max)
    ))
}

/// Streams a body to a temporary file under the data directory, up to the upload limit.
/// Over it (declared or as it comes), nothing is kept.
async fn receive<E: std::fmt::Display>(
    app: &App,
    declared: Option<u64>,
    stream: impl Stream<Item = Result<Bytes, E>>,
) -> Result<Received, WebError> {
    let max = app.settings.runs.upload_max_bytes;
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let dir: PathBuf = app.settings.data_dir.join("uploads");
    let made = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        std::fs::create_dir_all(&dir)?;
        Ok(tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&dir)?
            .into_parts())
    })
    .await
    .map_err(|e| WebError::Internal(e.into()))?
    .map_err(|e| WebError::Internal(anyhow::Error::new(e).context("making an upload file")))?;
    let (file, path) = made;
    let mut file = tokio::fs::File::from_std(file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| WebError::BadRequest(format!("the upload did not arrive whole: {e}")))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| WebError::Internal(anyhow::Error::new(e).context("writing an upload")))?;
    }
    file.flush()
        .await
        .map_err(|e| WebError::Internal(anyhow::Error::new(e).context("writing an upload")))?;
    drop(file);
    Ok(Received {
        path,
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Writes a received file into the user's `~/data/<name>`; the temporary file goes.
async fn store(
    app: &App,
    user: i64,
    name: &str,
    received: Received,
    replace: bool,
) -> Result<(), WebError> {
    let result = home_data(app)?
        .upload(user, name, &received.path, replace)
        .await;
    drop(received);
    match result {
        Ok(()) => {
            tracing::info!(user.id = user, "uploaded ~/data/{name}");
            Ok(())
        }
        Err(e @ (UploadError::Exists(_) | UploadError::NotAFile(_) | UploadError::NotAFolder)) => {
            Err(WebError::Conflict(e.to_string()))
        }
        Err(UploadError::Engine(e)) => Err(WebError::Internal(e)),
    }
}

/// The viewer's `~/data/` for a form with file parameters; `None` for visitors and forms
/// without one. Files that cannot be listed leave the picker with the default alone.
pub async fn choice(app: &App, viewer: &Viewer, params: &[Parameter]) -> Option<DataChoice> {
    let user = viewer.user.as_ref()?.id;
    if !params.iter().any(|p| p.kind == ParamType::File) {
        return None;
    }
    let files = match HomeData::connect(&app.settings) {
        Ok(data) => data.list(user).await,
        Err(e) => Err(e),
    };
    let files = match files {
        Ok(files) => Some(files.into_iter().map(|f| (f.name, f.size)).collect()),
        Err(e) => {
            tracing::warn!(user.id = user, "listing ~/data: {e:#}");
            None
        }
    };
    Some(DataChoice { files })
}

/// Errors by field for the file parameters whose picked file is not a file of the user's
/// `~/data/` (visitors have none).
pub async fn check_picked(
    app: &App,
    user: Option<i64>,
    params: &[Parameter],
    values: &Values,
) -> Result<Vec<FieldError>, WebError> {
    let mut errors = Vec::new();
    let mut picked = Vec::new();
    for p in params.iter().filter(|p| p.kind == ParamType::File) {
        let Some(ParamValue::Str(path)) = values.get(&p.name) else {
            continue;
        };
        let error = |message: &str| FieldError {
            name: p.name.clone(),
            message: message.to_owned(),
        };
        match (name_in_data(path), user) {
            (None, _) => errors.push(error("not a file of ~/data")),
            (Some(_), None) => errors.push(error("log in to run worksheets on your own files")),
            (Some(name), Some(user)) => picked.push((p.name.clone(), name.to_owned(), user)),
        }
    }
    if picked.is_empty() {
        return Ok(errors);
    }
    let data = home_data(app)?;
    for (parameter, name, user) in picked {
        let message = match data.stat(user, &name).await.map_err(WebError::Internal)? {
            Entry::File { .. } => continue,
            Entry::Missing => format!("there is no file `{name}` in your ~/data: upload it first"),
            Entry::Folder | Entry::Other => format!("`{name}` in your ~/data is not a file"),
        };
        errors.push(FieldError {
            name: parameter,
            message,
        });
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_go_back_only_to_this_site() {
        assert_eq!(
            local_next(Some("/w/lab/x/v1/a.ipynb")),
            "/w/lab/x/v1/a.ipynb"
        );
        for bad in [
            None,
            Some("https://evil.example/"),
            Some("//evil.example/"),
            Some("/\\evil.example"),
            Some("/a\r\nSet-Cookie: x=1"),
        ] {
            assert_eq!(local_next(bad), "/", "{bad:?}");
        }
    }
}
