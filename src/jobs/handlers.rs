//! Job handlers, one per event kind. Each is idempotent: running a job twice (after a
//! crash between its work and its completion) leaves the same state as running it once.

use crate::app::App;
use crate::db::{JobRow, MembershipRow, MergeRequestRow, ProjectRow, RefUpdateRow};
use crate::events::{
    Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestEvent, ProjectAction,
    ProjectEvent, ProjectRef, PushEvent, TagPushEvent,
};

use super::{JobContext, JobError, JobPayload};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Runs the handler for a job's kind.
pub async fn dispatch(app: &App, ctx: &JobContext, job: &JobRow) -> Result<(), JobError> {
    let JobPayload { forge, event } = serde_json::from_str(&job.payload)
        .map_err(|e| JobError::User(format!("job payload is not a known event: {e}")))?;
    if ctx.cancel.is_cancelled() {
        return Err(JobError::Canceled);
    }
    match &event {
        Event::Push(p) => push(app, ctx, p).await,
        Event::TagPush(t) => tag_push(app, ctx, t).await,
        Event::MergeRequest(m) => merge_request(app, m).await,
        Event::Member(m) => member(app, &forge, m).await,
        Event::Project(p) => project(app, p).await,
    }
}

pub fn forge_name(kind: &ForgeKind) -> &'static str {
    match kind {
        ForgeKind::GitLab => "gitlab",
        ForgeKind::GitHub => "github",
    }
}

fn project_row(p: &ProjectRef) -> ProjectRow {
    ProjectRow {
        forge: forge_name(&p.forge).to_owned(),
        path: p.path.clone(),
        forge_id: p.id,
        web_url: p.web_url.clone(),
        git_url: p.git_http_url.clone(),
        default_branch: p.default_branch.clone(),
        forked_from: None,
    }
}

async fn push(app: &App, ctx: &JobContext, p: &PushEvent) -> Result<(), JobError> {
    app.db.upsert_project(&project_row(&p.project)).await?;
    let after = if p.deleted {
        ZERO_SHA.to_owned()
    } else {
        p.after.clone()
    };
    app.db
        .apply_ref_update(
            ctx.id,
            &RefUpdateRow {
                job_id: ctx.id.0,
                forge: forge_name(&p.project.forge).to_owned(),
                project: p.project.path.clone(),
                ref_name: format!("refs/heads/{}", p.branch),
                before_sha: p.before.clone(),
                after_sha: after,
            },
        )
        .await?;
    Ok(())
}

async fn tag_push(app: &App, ctx: &JobContext, t: &TagPushEvent) -> Result<(), JobError> {
    app.db.upsert_project(&project_row(&t.project)).await?;
    let after = match (&t.commit, t.deleted) {
        (Some(c), false) => c.clone(),
        _ => ZERO_SHA.to_owned(),
    };
    let ref_name = format!("refs/tags/{}", t.tag);
    let forge = forge_name(&t.project.forge);
    let before = app
        .db
        .ref_sha(forge, &t.project.path, &ref_name)
        .await?
        .unwrap_or_else(|| ZERO_SHA.to_owned());
    app.db
        .apply_ref_update(
            ctx.id,
            &RefUpdateRow {
                job_id: ctx.id.0,
                forge: forge.to_owned(),
                project: t.project.path.clone(),
                ref_name,
                before_sha: before,
                after_sha: after,
            },
        )
        .await?;
    Ok(())
}

async fn merge_request(app: &App, m: &MergeRequestEvent) -> Result<(), JobError> {
    app.db.upsert_project(&project_row(&m.project)).await?;
    if m.source_project.path != m.project.path {
        let mut fork = project_row(&m.source_project);
        fork.forked_from = Some(m.project.path.clone());
        app.db.upsert_project(&fork).await?;
    }
    app.db
        .upsert_merge_request(&MergeRequestRow {
            forge: forge_name(&m.project.forge).to_owned(),
            project: m.project.path.clone(),
            iid: m.iid,
            source_project: m.source_project.path.clone(),
            source_branch: m.source_branch.clone(),
            target_branch: m.target_branch.clone(),
            head_sha: m.head_sha.clone(),
            state: m.state.clone(),
            title: m.title.clone(),
        })
        .await?;
    Ok(())
}

/// The membership scope key: `group:<path>` or `project:<path>`.
pub fn scope_key(scope: &MemberScope) -> String {
    match scope {
        MemberScope::Group { path, .. } => format!("group:{path}"),
        MemberScope::Project { path, .. } => format!("project:{path}"),
    }
}

async fn member(app: &App, forge: &ForgeKind, m: &MemberEvent) -> Result<(), JobError> {
    let forge = forge_name(forge);
    let Some(username) = m.user.username.clone() else {
        return Err(JobError::User("member event without a username".into()));
    };
    let scope = scope_key(&m.scope);
    match m.action {
        MemberAction::Removed => app.db.delete_membership(forge, &scope, &username).await?,
        MemberAction::Added | MemberAction::Updated => {
            let Some(level) = m.access_level else {
                return Err(JobError::User(
                    "member event without an access level".into(),
                ));
            };
            app.db
                .upsert_membership(&MembershipRow {
                    forge: forge.to_owned(),
                    scope,
                    user_id: m.user.id,
                    username,
                    access_level: level,
                    expires_at: m.expires_at.clone(),
                })
                .await?
        }
    }
    Ok(())
}

async fn project(app: &App, p: &ProjectEvent) -> Result<(), JobError> {
    let forge = forge_name(&p.project.forge);
    match &p.action {
        ProjectAction::Created => app.db.upsert_project(&project_row(&p.project)).await?,
        ProjectAction::Destroyed => app.db.delete_project(forge, &p.project.path).await?,
        ProjectAction::Renamed { old_path } | ProjectAction::Transferred { old_path } => {
            app.db
                .rename_project(forge, old_path, &project_row(&p.project))
                .await?
        }
        ProjectAction::Forked { from } => {
            let mut row = project_row(&p.project);
            row.forked_from = Some(from.path.clone());
            app.db.upsert_project(&row).await?
        }
    }
    Ok(())
}
