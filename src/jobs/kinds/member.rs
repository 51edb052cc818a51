//! `record-member`: a user added to, changed in or removed from a group or project.
//!
//! Member hooks name a group by its last path segment (`group_path`); with GitLab
//! configured, the group's full path is read by its id (`GET /groups/:id`), so that a
//! subgroup's members land on `group:lab/sub`. Without it (or when the group is gone)
//! the hook's path is used.
//!
//! A membership for a project nbforge has not seen, or for a user it does not know, is
//! stored all the same (the user is recorded): it grants nothing until the project is
//! known, since every page looks the project up first.
//!
//! Leaving a group (or dropping to a lower level in it) also drops that user's rows
//! written by the reconciler under the group: `/members/all` does not say whether they
//! were inherited from the group, so when in doubt they go until the next reconcile.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, MemberAction, MemberScope};
use crate::forge::ForgeError;
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, MemberRow, SOURCE_HOOK, UserUpdate, group_scope, project_scope};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordMember {
    pub forge: ForgeKind,
    pub action: MemberAction,
    pub scope: MemberScope,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub access_level: Option<i64>,
    pub expires_at: Option<String>,
}

/// The membership scope key: `group:<path>` or `project:<path>`.
pub fn scope_key(scope: &MemberScope) -> String {
    match scope {
        MemberScope::Group { path, .. } => group_scope(path),
        MemberScope::Project { path, .. } => project_scope(path),
    }
}

impl RecordMember {
    /// The group's full path: asked of GitLab by id when it can answer, else the hook's.
    async fn group_path(
        &self,
        ctx: &Context,
        id: Option<i64>,
        path: &str,
    ) -> Result<String, JobError> {
        let (Some(id), ForgeKind::GitLab, Some(forge)) = (id, self.forge, &ctx.forges.gitlab)
        else {
            return Ok(path.to_owned());
        };
        match forge.group_full_path(id).await {
            Ok(full) => Ok(full),
            Err(ForgeError::NotFound(_) | ForgeError::Unsupported(_)) => Ok(path.to_owned()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Job for RecordMember {
    const KIND: JobKind = JobKind::RecordMember;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(scope_key(&self.scope)),
            ..Subject::default()
        }
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let Some(user_id) = self.user_id else {
            return Err(JobError::User("member event without a user id".into()));
        };
        if let Some(username) = &self.username {
            ctx.db
                .upsert_user(&UserUpdate {
                    id: user_id,
                    username,
                    name: None,
                    avatar_url: None,
                    state: None,
                })
                .await?;
        }
        let (scope, group) = match &self.scope {
            MemberScope::Group { id, path } => {
                let full = self.group_path(ctx, *id, path).await?;
                (group_scope(&full), Some(full))
            }
            MemberScope::Project { path, .. } => (project_scope(path), None),
        };
        match self.action {
            MemberAction::Removed => {
                ctx.db.delete_member(self.forge, &scope, user_id).await?;
                if let Some(group) = &group {
                    ctx.db
                        .drop_reconciled_under_group(self.forge, user_id, group, None)
                        .await?;
                }
            }
            MemberAction::Added | MemberAction::Updated => {
                let Some(level) = self.access_level else {
                    return Err(JobError::User(
                        "member event without an access level".into(),
                    ));
                };
                ctx.db
                    .upsert_member(&MemberRow {
                        forge: self.forge,
                        scope,
                        user_id,
                        access_level: level,
                        expires_at: self.expires_at.clone(),
                        source: SOURCE_HOOK.into(),
                    })
                    .await?;
                if let (Some(group), MemberAction::Updated) = (&group, self.action) {
                    ctx.db
                        .drop_reconciled_under_group(self.forge, user_id, group, Some(level))
                        .await?;
                }
            }
        }
        Ok(())
    }
}
