//! `record-member`: a user added to, changed in or removed from a group or project.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, MemberAction, MemberScope};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, MembershipRow};

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
        MemberScope::Group { path, .. } => format!("group:{path}"),
        MemberScope::Project { path, .. } => format!("project:{path}"),
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
        let forge = self.forge.name();
        let Some(username) = self.username.clone() else {
            return Err(JobError::User("member event without a username".into()));
        };
        let scope = scope_key(&self.scope);
        match self.action {
            MemberAction::Removed => ctx.db.delete_membership(forge, &scope, &username).await?,
            MemberAction::Added | MemberAction::Updated => {
                let Some(level) = self.access_level else {
                    return Err(JobError::User(
                        "member event without an access level".into(),
                    ));
                };
                ctx.db
                    .upsert_membership(&MembershipRow {
                        forge: self.forge,
                        scope,
                        user_id: self.user_id,
                        username,
                        access_level: level,
                        expires_at: self.expires_at.clone(),
                    })
                    .await?
            }
        }
        Ok(())
    }
}
