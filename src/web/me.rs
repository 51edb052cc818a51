//! `/me`: who I am, the interface level I chose (within what my roles allow), my groups
//! and projects with my access in each, from the membership table, and my Jupyter
//! sessions (running ones to open or stop, ended ones with why, to dismiss) with the disk
//! my home uses.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

use super::WebError;
use super::auth::{choosable_levels, deny};
use super::sessions::{Scope, visible};
use super::templates::Templates;
use crate::access::{AccessLevel, Denied, UserLevel, Viewer};
use crate::app::App;
use crate::events::ForgeKind;

#[derive(Serialize)]
struct LevelChoice {
    value: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct Membership {
    path: String,
    group: bool,
    url: Option<String>,
    access: &'static str,
    role: &'static str,
}

fn level_label(level: &str) -> &'static str {
    match level {
        "end-user" => "End user: run worksheets, keep my results",
        "script-author" => "Script author: also notebook sessions, save and share",
        "developer" => "Developer: also terminals, git details and build logs",
        _ => "Public",
    }
}

/// GitLab's name of an access level.
pub fn access_name(level: i64) -> &'static str {
    match level {
        l if l >= 50 => "owner",
        l if l >= 40 => "maintainer",
        l if l >= 30 => "developer",
        l if l >= 20 => "reporter",
        l if l >= 15 => "planner",
        l if l >= 10 => "guest",
        _ => "minimal access",
    }
}

/// `GET /me`.
pub async fn page(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    OriginalUri(uri): OriginalUri,
    viewer: Viewer,
) -> Result<Response, WebError> {
    let Some(user) = viewer.user.clone() else {
        return Err(deny(&app, Denied::NeedsLogin, &uri));
    };
    let gitlab = app.settings.forges.gitlab_url.clone();
    let link = |path: &str| {
        gitlab
            .as_ref()
            .and_then(|g| g.join(path).ok())
            .map(|u| u.to_string())
    };
    let mut projects = Vec::new();
    for m in app
        .db
        .memberships_of_user(ForgeKind::GitLab, user.id)
        .await?
    {
        let (group, path) = match m.scope.split_once(':') {
            Some(("group", p)) => (true, p.to_owned()),
            Some((_, p)) => (false, p.to_owned()),
            None => continue,
        };
        projects.push(Membership {
            url: link(&path),
            path,
            group,
            access: access_name(m.access_level),
            role: app.access.role_for(AccessLevel(m.access_level)).as_str(),
        });
    }
    let levels: Vec<LevelChoice> = choosable_levels(&viewer)
        .into_iter()
        .map(|value| LevelChoice {
            value,
            label: level_label(value),
        })
        .collect();
    // The rest of the page is still worth showing when the session runtime is down.
    let (sessions, sessions_unavailable) = match visible(&app, &Scope::User(user.id)).await {
        Ok(s) => (s, false),
        Err(_) => (Vec::new(), true),
    };
    let home = home_usage(&app, user.id).await;
    templates.page(
        StatusCode::OK,
        "me.html",
        context! {
            title => "My page",
            username => user.username.as_str(),
            name => user.name.as_str(),
            profile_url => link(&user.username),
            admin => viewer.is_platform_admin(),
            level => viewer.level.as_str(),
            levels => Serde(levels),
            csrf_token => viewer.csrf_token.as_deref().unwrap_or_default(),
            projects => Serde(projects),
            sessions => Serde(sessions),
            sessions_unavailable,
            home => Serde(home),
        },
    )
}

/// How long `/me` waits for a home to be measured; the measure goes on without it.
const HOME_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);
/// How old a home's measure `/me` shows may be.
const HOME_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// What `/me` says of the home's disk use.
#[derive(Serialize)]
struct HomeView {
    /// `measured`, `measuring`, `none` (no home yet) or `unknown`.
    state: &'static str,
    used: Option<String>,
    quota: Option<String>,
    over_quota: bool,
}

/// The home's disk use: the last measure when recent, else a new one, waited for a
/// moment only (it carries on in the background and fills the cache for the next visit).
async fn home_usage(app: &App, user_id: i64) -> HomeView {
    let sessions = app.sessions.clone();
    let measuring = tokio::spawn(async move { sessions.home_usage(user_id, HOME_MAX_AGE).await });
    let quota = app.settings.lifecycle.home_quota;
    let view = |state, used: Option<u64>| HomeView {
        state,
        used: used.map(crate::sessions::lifecycle::human_bytes),
        quota: quota.map(crate::sessions::lifecycle::human_bytes),
        over_quota: matches!((used, quota), (Some(u), Some(q)) if u >= q),
    };
    match tokio::time::timeout(HOME_WAIT, measuring).await {
        Ok(Ok(Ok(Some(usage)))) => view("measured", Some(usage.bytes)),
        Ok(Ok(Ok(None))) => view("none", None),
        Ok(Ok(Err(e))) => {
            tracing::warn!(user_id, "measuring the home of user {user_id}: {e}");
            view("unknown", None)
        }
        Ok(Err(e)) => {
            tracing::warn!(user_id, "measuring the home of user {user_id}: {e}");
            view("unknown", None)
        }
        Err(_) => view("measuring", None),
    }
}

/// `POST /me`: choose an interface level (CSRF-checked by the layer).
pub async fn set_level(
    State(app): State<App>,
    OriginalUri(uri): OriginalUri,
    viewer: Viewer,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let Some(user) = &viewer.user else {
        return Err(deny(&app, Denied::NeedsLogin, &uri));
    };
    let wanted = form
        .get("level")
        .and_then(|l| UserLevel::parse(l))
        .filter(|l| choosable_levels(&viewer).contains(&l.as_str()))
        .ok_or_else(|| WebError::BadRequest("That level is not one you can choose.".into()))?;
    app.db
        .set_chosen_level(user.id, Some(wanted.as_str()))
        .await?;
    Ok(Redirect::to("/me").into_response())
}
