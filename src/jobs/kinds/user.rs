//! `sync-user`: a user deleted, renamed or found blocked (GitLab `user_destroy`,
//! `user_rename`, `user_failed_login` with `state: blocked`).
//!
//! A deleted user is marked `deleted` (which ends their browser sessions) and loses every
//! membership; a blocked one is marked `blocked` (sessions end too, memberships stay for
//! when they are unblocked; access checks read the state). A rename updates the username:
//! nbforge keys users by id.

use serde::{Deserialize, Serialize};

use crate::events::{ForgeKind, UserAction};
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, UserUpdate};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncUser {
    pub forge: ForgeKind,
    pub action: UserAction,
    pub user_id: i64,
    pub username: Option<String>,
    pub name: Option<String>,
}

impl Job for SyncUser {
    const KIND: JobKind = JobKind::SyncUser;

    fn subject(&self) -> Subject {
        Subject {
            project: Some(format!(
                "user {}",
                self.username.as_deref().unwrap_or("(unnamed)")
            )),
            ..Subject::default()
        }
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let db = &ctx.db;
        match &self.action {
            UserAction::Destroyed => {
                db.set_user_state(self.user_id, "deleted").await?;
                db.delete_memberships_of_user(self.forge, self.user_id)
                    .await?;
            }
            UserAction::Blocked => db.set_user_state(self.user_id, "blocked").await?,
            UserAction::Renamed { .. } => {
                let Some(username) = &self.username else {
                    return Err(JobError::User("user rename without a username".into()));
                };
                db.upsert_user(&UserUpdate {
                    id: self.user_id,
                    username,
                    name: self.name.as_deref(),
                    avatar_url: None,
                    state: None,
                })
                .await?;
            }
        }
        Ok(())
    }
}
