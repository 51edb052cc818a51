//! Job handlers, one per event kind. Each is idempotent: running a job twice (after a
//! crash between its work and its completion) leaves the same state as running it once.

use crate::app::App;
use crate::events::{
    Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestAction,
    MergeRequestEvent, ProjectAction, ProjectEvent, ProjectRef, PushEvent, TagPushEvent,
};
use crate::storage::{JobRow, MembershipRow, MergeRequestRow, ProjectRow, RefUpdateRow};

use super::{JobContext, JobError, JobPayload};
use crate::environment::flow::{self, EnvironmentRequest};
use crate::forge::ForgeError;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Runs the handler for a job's kind.
pub async fn dispatch(app: &App, ctx: &JobContext, job: &JobRow) -> Result<(), JobError> {
    let JobPayload { forge, event } = serde_json::from_str(&job.payload)
        .map_err(|e| JobError::User(format!("job payload is not a known event: {e}")))?;
    if ctx.cancel.is_cancelled() {
        return Err(JobError::Canceled);
    }
    match job.kind.as_str() {
        "environment" => return environment(app, ctx, &forge, &event).await,
        // Its only effect is superseding the environment job it shares a key with.
        "cancel" => return Ok(()),
        _ => {}
    }
    match &event {
        Event::Push(p) => push(app, ctx, p).await,
        Event::TagPush(t) => tag_push(app, ctx, t).await,
        Event::MergeRequest(m) => merge_request(app, &forge, m).await,
        Event::Member(m) => member(app, &forge, m).await,
        Event::Project(p) => project(app, p).await,
    }
}

fn project_row(p: &ProjectRef) -> ProjectRow {
    ProjectRow {
        forge: p.forge.name().to_owned(),
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
                forge: p.project.forge.name().to_owned(),
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
    let forge = t.project.forge.name();
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
    crate::catalog::publish(app, ctx, forge, t).await
}

/// The environment an event asks for: the pushed commit, a merge request's head in its
/// source project, or the merged result on the target branch.
pub fn environment_request(forge: &ForgeKind, event: &Event) -> Option<EnvironmentRequest> {
    let forge_name = forge.name().to_owned();
    match event {
        Event::Push(p) if !p.deleted => Some(EnvironmentRequest {
            forge_name,
            project: p.project.clone(),
            ref_name: Some(p.branch.clone()),
            commit: p.after.clone(),
        }),
        Event::MergeRequest(m) if m.action == MergeRequestAction::Merge => {
            Some(EnvironmentRequest {
                forge_name,
                project: m.project.clone(),
                ref_name: Some(m.target_branch.clone()),
                commit: m
                    .merge_commit_sha
                    .clone()
                    .unwrap_or_else(|| m.head_sha.clone()),
            })
        }
        Event::MergeRequest(m) => Some(EnvironmentRequest {
            forge_name,
            project: m.source_project.clone(),
            ref_name: Some(m.source_branch.clone()),
            commit: m.head_sha.clone(),
        }),
        _ => None,
    }
}

async fn environment(
    app: &App,
    ctx: &JobContext,
    forge: &ForgeKind,
    event: &Event,
) -> Result<(), JobError> {
    let Some(req) = environment_request(forge, event) else {
        return Err(JobError::User(format!(
            "no environment for a {} event",
            event.kind()
        )));
    };
    // The push or merge request job records the project too, but may run after this one;
    // the local forge finds repositories through this row.
    app.db.upsert_project(&project_row(&req.project)).await?;
    match flow::prepare(app, ctx, &req).await {
        Ok(_) => Ok(()),
        Err(JobError::Transient(e)) => {
            flow::report_infrastructure(
                app,
                &req,
                &format!("{e:#}"),
                ctx.attempt,
                ctx.max_attempts,
            )
            .await;
            Err(JobError::Transient(e))
        }
        Err(e) => Err(e),
    }
}

/// Marks nbforge's note on a merge request, so it is found again and edited, never repeated.
pub const NOTE_MARKER: &str = "<!-- nbforge:environment -->";

fn note_body(app: &App, m: &MergeRequestEvent) -> String {
    let short = flow::short_sha(&m.head_sha);
    match m.action {
        MergeRequestAction::Merge => format!(
            "{NOTE_MARKER}\n**nbforge**: merged. [![Launch]({badge})]({launch}) the environment of `{target}`.\n",
            badge = crate::web::urls::badge(&app.settings.server.public_url),
            launch = crate::web::urls::launch(
                &app.settings.server.public_url,
                &m.project.path,
                &m.target_branch
            ),
            target = m.target_branch,
        ),
        MergeRequestAction::Close => {
            format!(
                "{NOTE_MARKER}\n**nbforge**: this merge request is closed; its environment is no longer prepared.\n"
            )
        }
        _ => format!(
            "{NOTE_MARKER}\n**nbforge**: [![Launch]({badge})]({launch}) this merge request at `{short}` \
             (from `{source}:{branch}`).\n\nThe environment's progress is the `{status}` status of the commit; \
             this note follows new commits.\n",
            badge = crate::web::urls::badge(&app.settings.server.public_url),
            launch = crate::web::urls::launch(
                &app.settings.server.public_url,
                &m.source_project.path,
                &m.head_sha
            ),
            source = m.source_project.path,
            branch = m.source_branch,
            status = flow::STATUS_NAME,
        ),
    }
}

/// Creates nbforge's note on a merge request, or edits the one it made before.
async fn upsert_note(
    app: &App,
    forge_kind: &ForgeKind,
    m: &MergeRequestEvent,
    body: &str,
) -> Result<(), JobError> {
    let forge = app.forges.for_kind(forge_kind);
    let name = forge_kind.name();
    let project = flow::forge_project_id(&m.project);
    if let Some(id) = app.db.mr_note(name, &m.project.path, m.iid).await? {
        match forge
            .edit_merge_request_note(&project, m.iid, id, body)
            .await
        {
            Ok(_) => return Ok(()),
            Err(ForgeError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let existing = forge.list_merge_request_notes(&project, m.iid).await?;
    let note = match existing.iter().find(|n| n.body.contains(NOTE_MARKER)) {
        Some(n) => {
            forge
                .edit_merge_request_note(&project, m.iid, n.id, body)
                .await?
        }
        None => {
            forge
                .create_merge_request_note(&project, m.iid, body)
                .await?
        }
    };
    app.db
        .set_mr_note(name, &m.project.path, m.iid, note.id)
        .await?;
    Ok(())
}

async fn merge_request(
    app: &App,
    forge: &ForgeKind,
    m: &MergeRequestEvent,
) -> Result<(), JobError> {
    app.db.upsert_project(&project_row(&m.project)).await?;
    if m.source_project.path != m.project.path {
        let mut fork = project_row(&m.source_project);
        fork.forked_from = Some(m.project.path.clone());
        app.db.upsert_project(&fork).await?;
    }
    app.db
        .upsert_merge_request(&MergeRequestRow {
            forge: m.project.forge.name().to_owned(),
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
    let wants_note = match &m.action {
        MergeRequestAction::Open | MergeRequestAction::Reopen => true,
        MergeRequestAction::Update => m.new_commits,
        MergeRequestAction::Close | MergeRequestAction::Merge => app
            .db
            .mr_note(forge.name(), &m.project.path, m.iid)
            .await?
            .is_some(),
        _ => false,
    };
    if wants_note && app.settings.environments.enabled {
        match upsert_note(app, forge, m, &note_body(app, m)).await {
            Err(JobError::Transient(e))
                if e.downcast_ref::<ForgeError>()
                    .is_some_and(|f| matches!(f, ForgeError::Unsupported(_))) => {}
            other => other?,
        }
    }
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
    let forge = forge.name();
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
    let forge = p.project.forge.name();
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
