//! Build logs and states: `GET /api/builds`, `GET /api/builds/{id}`, and
//! `GET /api/builds/{id}/log` — Server-Sent Events while the build runs (each event
//! `{"phase": …, "message": …}`, BinderHub's phases), plain text once it has ended.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Admin, ListQuery, api_error, internal};
use crate::app::App;
use crate::environment::logs::LogEvent;

pub async fn list(_: Admin, State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    match app
        .db
        .list_builds(q.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(rows) => Json(json!({ "builds": rows })).into_response(),
        Err(e) => internal(e),
    }
}

pub async fn get(State(app): State<App>, Path(id): Path<i64>) -> Response {
    match app.db.get_build(id).await {
        Ok(Some(row)) => Json(json!({ "build": row })).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, "no build with that id"),
        Err(e) => internal(e),
    }
}

fn sse_event(e: &LogEvent) -> Result<Event, Infallible> {
    Ok(Event::default().data(json!({ "phase": e.phase, "message": e.message }).to_string()))
}

/// The log so far, then each new line, ending after the final phase.
fn live_stream(
    sub: crate::environment::logs::Subscription,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = stream::iter(
        sub.so_far
            .lines()
            .map(|l| {
                sse_event(&LogEvent {
                    phase: sub.phase,
                    message: l.to_owned(),
                })
            })
            .collect::<Vec<_>>(),
    );
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

pub async fn log(State(app): State<App>, Path(id): Path<i64>) -> Response {
    if let Some(sub) = app.build_logs.subscribe(id) {
        return Sse::new(live_stream(sub))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    match app.db.get_build(id).await {
        Ok(Some(row)) => {
            let mut text = app
                .db
                .build_log(id)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            if !row.phase.is_final() {
                text.push_str(&format!(
                    "[{}] the build is running in another nbforge process\n",
                    row.phase
                ));
            }
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Ok(None) => api_error(StatusCode::NOT_FOUND, "no build with that id"),
        Err(e) => internal(e),
    }
}
