//! Build logs and states: `GET /api/builds`, `GET /api/builds/{id}`, and
//! `GET /api/builds/{id}/log` — Server-Sent Events while the build runs (each event
//! `{"phase": …, "message": …}`, BinderHub's phases), plain text once it has ended (read
//! from the stored chunks one at a time, streamed).

use std::convert::Infallible;

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Admin, ListQuery, WebError};
use crate::access::{Action, Denied, Viewer};
use crate::app::App;
use crate::environment::logs::LogEvent;
use crate::storage::BuildRow;

pub async fn list(
    _: Admin,
    State(app): State<App>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let rows = app.db.list_builds(q.limit()).await?;
    Ok(Json(json!({ "builds": rows })).into_response())
}

fn no_build() -> WebError {
    WebError::NotFound("no build with that id".into())
}

/// The build `id`, when the viewer may read its project's build logs; a 404 otherwise,
/// whether or not it exists.
async fn readable_build(
    app: &App,
    viewer: &Viewer,
    uri: &Uri,
    id: i64,
) -> Result<BuildRow, WebError> {
    let row = app.db.get_build(id).await?.ok_or_else(no_build)?;
    match app
        .access
        .check(viewer, Action::ReadBuildLogs, row.forge, &row.project)
        .await?
    {
        Ok(_) => Ok(row),
        Err(Denied::NeedsLogin) => Err(super::auth::deny(app, Denied::NeedsLogin, uri)),
        Err(Denied::Hidden) => Err(no_build()),
    }
}

pub async fn get(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let row = readable_build(&app, &viewer, &uri, id).await?;
    Ok(Json(json!({ "build": row })).into_response())
}

fn sse_event(e: &LogEvent) -> Result<Event, Infallible> {
    Ok(Event::default().data(json!({ "phase": e.phase, "message": e.message }).to_string()))
}

/// The log so far, then each new line, ending after the final phase. The lines so far are
/// made into events one chunk at a time, as the reader takes them.
fn live_stream(
    sub: crate::environment::logs::Subscription,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let phase = sub.phase;
    let start = stream::iter(sub.so_far.0).flat_map(move |chunk| {
        let events: Vec<_> = chunk
            .text
            .lines()
            .map(|l| {
                sse_event(&LogEvent {
                    phase,
                    message: l.to_owned(),
                })
            })
            .collect();
        stream::iter(events)
    });
    let rest = stream::unfold(Some(sub.rx), |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let done = e.phase.is_final();
                    let item = sse_event(&e);
                    return Some((item, if done { None } else { Some(rx) }));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    start.chain(rest)
}

/// A stored log, read from the database one chunk at a time as the reader takes it.
fn stored_log(
    db: crate::storage::Db,
    id: i64,
    tail: Option<String>,
) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let chunks = stream::unfold((db, None, false), move |(db, after, done)| async move {
        if done {
            return None;
        }
        match db.build_log_chunk(id, after).await {
            Ok(Some((seq, body))) => Some((Ok(bytes::Bytes::from(body)), (db, Some(seq), false))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(build.id = id, error = %e, "reading build {id}'s log failed");
                Some((
                    Err(std::io::Error::other("reading the build log failed")),
                    (db, after, true),
                ))
            }
        }
    });
    chunks.chain(stream::iter(tail.map(|t| Ok(bytes::Bytes::from(t)))))
}

pub async fn log(
    State(app): State<App>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<i64>,
) -> Result<Response, WebError> {
    let row = readable_build(&app, &viewer, &uri, id).await?;
    if let Some(sub) = app.build_logs.subscribe(id) {
        return Ok(Sse::new(live_stream(sub))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let tail = (!row.phase.is_final()).then(|| {
        format!(
            "[{}] the build is running in another nbforge process\n",
            row.phase
        )
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(stored_log(app.db.clone(), id, tail)),
    )
        .into_response())
}
