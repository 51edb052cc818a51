//! Worksheet runs of visitors who are not logged in (`NBFORGE_ANONYMOUS_RUNS`, off by
//! default), on the web.
//!
//! - **Who may start one**: a visitor, on an official project (on the landing page's
//!   listing) that is public, when the setting is on ([`may_run`]). Visitors are known by
//!   their visitor cookie, as for anonymous Jupyter sessions: the run stores the cookie's
//!   key (its SHA-256), never the cookie. A visitor without one gets one.
//! - **Limits**: `NBFORGE_RUNS_PER_VISITOR` unfinished runs per visitor and
//!   `NBFORGE_ANONYMOUS_RUNS_MAX` for all visitors together; more are refused with 429 (they
//!   never wait in the queue, so visitors cannot hold every run worker).
//! - **Who may see one**: the link is the capability. A visitor's run page, its API, its
//!   events and its downloads answer whoever presents the run's 128-bit id, with or without
//!   a cookie, until the result expires ([`readable_by_link`]). Users' runs stay their
//!   owner's (and platform administrators').
//! - **Who may cancel or delete one**: the visitor whose cookie made it, and platform
//!   administrators ([`may_change`]); everybody else gets the 404 of a run they cannot see.

use axum::http::HeaderMap;

use super::WebError;
use super::auth::{cookie_names, new_visitor, visitor_key};
use crate::access::{Action, Subject, Viewer};
use crate::app::App;
use crate::events::ForgeKind;
use crate::storage::{NewJob, NewRun, RunRow, VisitorRunRefused};

/// Whether the viewer is a visitor who may run worksheets of the project: not logged in
/// (nor the admin token), `NBFORGE_ANONYMOUS_RUNS` on, allowed `RunWorksheet` there (the
/// project is public), and the project official.
pub async fn may_run(
    app: &App,
    viewer: &Viewer,
    forge: ForgeKind,
    project: &str,
) -> Result<bool, WebError> {
    if !is_visitor(app, viewer) {
        return Ok(false);
    }
    if app
        .access
        .check(viewer, Action::RunWorksheet, forge, project)
        .await?
        .is_err()
    {
        return Ok(false);
    }
    Ok(app.db.project_is_official(forge.name(), project).await?)
}

/// Whether the viewer is a visitor whose runs are possible at all.
pub fn is_visitor(app: &App, viewer: &Viewer) -> bool {
    app.settings.access.anonymous_runs && viewer.subject == Subject::Anonymous
}

/// The visitor's key from their cookie, or a new visitor: the key and the `Set-Cookie`
/// value to send.
pub fn visitor(app: &App, headers: &HeaderMap) -> (String, Option<String>) {
    let names = cookie_names(app);
    match visitor_key(names, headers) {
        Some(key) => (key, None),
        None => {
            let (cookie, key) = new_visitor(names);
            (key, Some(cookie))
        }
    }
}

/// Stores a visitor's run and its job, within the visitors' limits (429 beyond them).
pub async fn create(app: &App, run: &NewRun<'_>, job: &NewJob) -> Result<(), WebError> {
    let limits = &app.settings.visitor_runs;
    let per_visitor = i64::try_from(limits.per_visitor).unwrap_or(i64::MAX);
    let max = i64::try_from(limits.max).unwrap_or(i64::MAX);
    match app
        .db
        .create_visitor_run(run, job, per_visitor, max)
        .await?
    {
        Ok(_) => Ok(()),
        Err(VisitorRunRefused::PerVisitor) => Err(WebError::TooManyRequests(format!(
            "you already have {} run{} waiting or running; wait for {} to finish, or log in",
            limits.per_visitor,
            if limits.per_visitor == 1 { "" } else { "s" },
            if limits.per_visitor == 1 { "it" } else { "one" },
        ))),
        Err(VisitorRunRefused::AllVisitors) => Err(WebError::TooManyRequests(
            "too many visitors' runs are waiting or running; try again in a few minutes, or log in"
                .into(),
        )),
    }
}

/// Whether anyone holding the run's link may read it: a visitor's run.
pub fn readable_by_link(row: &RunRow) -> bool {
    crate::runs::visitors::is_visitors(row)
}

/// Whether the viewer may cancel or delete the run: its owner (the user, or the visitor
/// whose cookie made it) or a platform administrator.
pub fn may_change(app: &App, viewer: &Viewer, headers: &HeaderMap, row: &RunRow) -> bool {
    if app.access.can_platform(viewer, Action::AdminApi) {
        return true;
    }
    if let Some(user) = &viewer.user {
        return Some(user.id) == row.owner_user_id;
    }
    match (&row.owner_visitor, visitor_key(cookie_names(app), headers)) {
        (Some(owner), Some(key)) => row.owner_user_id.is_none() && *owner == key,
        _ => false,
    }
}

/// Removes a deleted visitor's run's throwaway home; what cannot be removed now (its
/// container is still stopping) the next cleanup removes.
pub async fn remove_home(app: &App, row: &RunRow) {
    let Ok(engine) = crate::runs::Engine::connect(&app.settings) else {
        return;
    };
    if let Err(e) = crate::runs::visitors::remove_home(&engine, &row.id).await {
        tracing::info!(run.id = %row.id, "the home of the deleted run {} stays until the next cleanup: {e}", row.id);
    }
}

/// `2026-01-31 12:00 UTC` for epoch milliseconds.
pub fn utc_minute(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}
