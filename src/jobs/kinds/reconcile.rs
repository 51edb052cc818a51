//! `reconcile`: GitLab is the source of truth for memberships and visibility; this job
//! reads them through the API and repairs what hooks missed (lost deliveries, member
//! hooks on a tier without them, changes made while nbforge was down).
//!
//! For each GitLab project nbforge knows (with a forge id), or the one asked for:
//! `GET /projects/:id` gives its visibility and current path (a rename found here moves
//! the project as a rename hook would; a 404 means it is gone and it is deleted), then
//! `GET /projects/:id/members/all` replaces the project's rows. Then, for a full run, each
//! group that has members in nbforge and each group of [`followed_groups`]:
//! `GET /groups/:path/members/all` replaces the group's rows, and a 404 deletes the group's
//! memberships as `group_destroy` would. Rows it writes have `source = 'reconcile'`; the
//! users it meets are recorded (name, avatar, state; a blocked user's sessions end).
//!
//! A refused token (401/403) fails the job at once with a message naming
//! `NBFORGE_GITLAB_TOKEN`: nothing is granted and the rows stay as they were. Rate limits
//! (429) are waited out by the GitLab forge; when they persist the job is retried later.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::project_row;
use crate::config::Settings;
use crate::events::{ForgeKind, ProjectRef};
use crate::forge::{Forge, ForgeError, ForgeMember, ProjectId};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{
    JobKind, MemberRow, ProjectRow, SOURCE_RECONCILE, UserUpdate, group_scope, project_scope,
};

/// The supersede key of a full run; a run for one project has `reconcile:gitlab:<path>`.
const KEY: &str = "reconcile:gitlab";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// Only this project (`namespace/project`); every known project and group when `None`.
    #[serde(default)]
    pub project: Option<String>,
}

/// Groups whose members nbforge follows whether or not it has seen a member of them: the
/// platform administrators' group and the groups that set interface levels.
pub fn followed_groups(settings: &Settings) -> Vec<String> {
    let access = &settings.access;
    let mut groups: Vec<String> = access.admin_group.iter().cloned().collect();
    groups.extend(access.level_groups.iter().map(|(_, g)| g.clone()));
    groups.sort();
    groups.dedup();
    groups
}

/// What one run changed, for its log line.
#[derive(Debug, Default)]
struct Tally {
    projects: usize,
    groups: usize,
    members: usize,
    gone: usize,
}

impl Job for Reconcile {
    const KIND: JobKind = JobKind::Reconcile;

    /// Every project and group of a large instance, within GitLab's rate limits.
    fn time_limit(settings: &crate::config::Settings) -> std::time::Duration {
        settings
            .jobs
            .timeout
            .max(std::time::Duration::from_secs(4 * 3600))
    }

    fn subject(&self) -> Subject {
        Subject {
            project: self.project.clone(),
            ..Subject::default()
        }
    }

    fn supersede_key(&self) -> Option<String> {
        Some(match &self.project {
            Some(p) => format!("{KEY}:{p}"),
            None => KEY.to_owned(),
        })
    }

    async fn run(&self, ctx: &Context, run: &Run) -> Result<(), JobError> {
        let Some(forge) = ctx.forges.gitlab.clone() else {
            return Err(JobError::User(
                "GitLab is not configured (NBFORGE_GITLAB_URL, NBFORGE_GITLAB_TOKEN): nothing to reconcile"
                    .into(),
            ));
        };
        let gitlab = ForgeKind::GitLab.name();
        let projects = match &self.project {
            Some(path) => match ctx.db.get_project(gitlab, path).await? {
                Some(p) if p.forge_id.is_some() => vec![p],
                Some(_) => {
                    return Err(JobError::User(format!(
                        "GitLab project {path} has no known id yet: nothing to reconcile"
                    )));
                }
                None => {
                    return Err(JobError::User(format!(
                        "nbforge knows no GitLab project {path}"
                    )));
                }
            },
            None => ctx
                .db
                .projects_of_forge(gitlab)
                .await?
                .into_iter()
                .filter(|p| p.forge_id.is_some())
                .collect(),
        };
        let mut tally = Tally::default();
        for p in &projects {
            check_canceled(run)?;
            reconcile_project(ctx, forge.as_ref(), p, &mut tally).await?;
        }
        if self.project.is_none() {
            let mut groups: BTreeSet<String> = ctx
                .db
                .member_scopes(ForgeKind::GitLab)
                .await?
                .into_iter()
                .filter_map(|s| s.strip_prefix("group:").map(str::to_owned))
                .collect();
            groups.extend(followed_groups(&ctx.settings));
            for g in &groups {
                check_canceled(run)?;
                reconcile_group(ctx, forge.as_ref(), g, &mut tally).await?;
            }
        }
        tracing::info!(
            "reconcile: {} projects and {} groups read, {} memberships recorded, {} projects or groups gone",
            tally.projects,
            tally.groups,
            tally.members,
            tally.gone
        );
        Ok(())
    }
}

fn check_canceled(run: &Run) -> Result<(), JobError> {
    if run.cancel.is_cancelled() {
        Err(JobError::Canceled)
    } else {
        Ok(())
    }
}

/// A forge error as the job's outcome; a refused token names the setting to fix.
fn failed(e: ForgeError) -> JobError {
    match e {
        ForgeError::Forbidden(what) => JobError::User(format!(
            "GitLab refused nbforge's token ({what}): check NBFORGE_GITLAB_TOKEN (revoked, \
             expired, or missing the `api` or `read_api` scope); memberships were left as \
             they were"
        )),
        other => other.into(),
    }
}

async fn reconcile_project(
    ctx: &Context,
    forge: &dyn Forge,
    p: &ProjectRow,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let gitlab = ForgeKind::GitLab.name();
    let Some(id) = p.forge_id else {
        return Ok(());
    };
    let access = match forge.project_access(&ProjectId::Id(id)).await {
        Ok(a) => a,
        Err(ForgeError::NotFound(_)) => {
            tracing::info!("reconcile: GitLab project {} ({id}) is gone", p.path);
            ctx.db.delete_project(gitlab, &p.path).await?;
            tally.gone += 1;
            return Ok(());
        }
        Err(e) => return Err(failed(e)),
    };
    let now = ProjectRef {
        forge: ForgeKind::GitLab,
        id: Some(access.id),
        path: access.path_with_namespace.clone(),
        web_url: None,
        git_http_url: None,
        default_branch: None,
        visibility: Some(access.visibility),
    };
    if access.path_with_namespace != p.path {
        tracing::info!(
            "reconcile: GitLab project {} moved to {}",
            p.path,
            access.path_with_namespace
        );
        ctx.db
            .rename_project(gitlab, &p.path, &project_row(&now))
            .await?;
    } else {
        ctx.db.upsert_project(&project_row(&now)).await?;
    }
    let members = match forge.project_members(&ProjectId::Id(id)).await {
        Ok(m) => m,
        // Deleted between the two calls: the next run removes it.
        Err(ForgeError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(failed(e)),
    };
    let scope = project_scope(&access.path_with_namespace);
    record(ctx, &scope, &members).await?;
    tally.projects += 1;
    tally.members += members.len();
    Ok(())
}

async fn reconcile_group(
    ctx: &Context,
    forge: &dyn Forge,
    path: &str,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let members = match forge.group_members(path).await {
        Ok(m) => m,
        Err(ForgeError::NotFound(_)) => {
            tracing::info!("reconcile: GitLab group {path} is gone");
            ctx.db.delete_group_members(ForgeKind::GitLab, path).await?;
            tally.gone += 1;
            return Ok(());
        }
        Err(e) => return Err(failed(e)),
    };
    record(ctx, &group_scope(path), &members).await?;
    tally.groups += 1;
    tally.members += members.len();
    Ok(())
}

/// The users, then the scope's rows replaced by `members`.
async fn record(ctx: &Context, scope: &str, members: &[ForgeMember]) -> Result<(), JobError> {
    for m in members {
        ctx.db
            .upsert_user(&UserUpdate {
                id: m.user_id,
                username: &m.username,
                name: m.name.as_deref(),
                avatar_url: m.avatar_url.as_deref(),
                state: None,
            })
            .await?;
        if let Some(state) = m.state.as_deref() {
            let known = ctx.db.get_user(m.user_id).await?;
            if known.is_some_and(|u| u.state != state) {
                // Through `set_user_state`, so that a block ends the user's sessions.
                ctx.db.set_user_state(m.user_id, state).await?;
            }
        }
    }
    let rows: Vec<MemberRow> = members
        .iter()
        .map(|m| MemberRow {
            forge: ForgeKind::GitLab,
            scope: scope.to_owned(),
            user_id: m.user_id,
            access_level: m.access_level,
            expires_at: m.expires_at.clone(),
            source: SOURCE_RECONCILE.into(),
        })
        .collect();
    ctx.db
        .replace_members(ForgeKind::GitLab, scope, &rows)
        .await?;
    Ok(())
}
