//! `record-member`: a user added to, changed in or removed from a group or project.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, MemberAction, MemberScope};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, MemberRow, UserUpdate, group_scope, project_scope};

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
        let scope = scope_key(&self.scope);
        match self.action {
            MemberAction::Removed => ctx.db.delete_member(self.forge, &scope, user_id).await?,
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
                        source: "hook".into(),
                    })
                    .await?
            }
        }
        Ok(())
    }
}
