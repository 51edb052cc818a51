//! Which jobs a webhook event causes, and what they supersede.
//!
//! - push: `record-push` and, unless the branch was deleted, `prepare-environment` for the
//!   pushed commit; a deleted branch supersedes its environment work instead;
//! - merge request opened, reopened or updated with new commits: `sync-merge-request` and
//!   `prepare-environment` for the source branch's head; closed: `sync-merge-request`, and
//!   its environment work is superseded; merged: the same, plus `prepare-environment` for
//!   the target branch;
//! - tag push: `publish-tag`; member: `record-member`; project: `sync-project`;
//!   group deleted or renamed: `sync-group`; user deleted, renamed or blocked: `sync-user`.

use super::Job;
use super::kinds::{
    PrepareEnvironment, PublishTag, RecordMember, RecordPush, SyncGroup, SyncMergeRequest,
    SyncProject, SyncUser, ZERO_SHA,
};
use crate::events::{Event, ForgeKind, MergeRequestAction};
use crate::storage::Enqueue;

/// What decides which jobs events cause.
#[derive(Debug, Clone, Copy)]
pub struct Planning {
    pub max_attempts: u32,
    /// Prepare environment images for pushes and merge requests.
    pub environments: bool,
}

/// The jobs `event` from `forge` causes, and the keys whose older work it supersedes.
pub fn plan(forge: ForgeKind, event: &Event, planning: Planning) -> Enqueue {
    let n = planning.max_attempts;
    let mut jobs = Vec::new();
    let envs = planning.environments;
    let mut supersede = Vec::new();
    match event {
        Event::Push(p) => {
            let push = RecordPush {
                forge,
                project: p.project.clone(),
                branch: p.branch.clone(),
                before: p.before.clone(),
                after: if p.deleted {
                    ZERO_SHA.to_owned()
                } else {
                    p.after.clone()
                },
            };
            jobs.push(push.to_new_job(n));
            let key = PrepareEnvironment::branch_key(forge, &p.project.path, &p.branch);
            if envs && !p.deleted {
                let env = PrepareEnvironment {
                    forge,
                    project: p.project.clone(),
                    commit: p.after.clone(),
                    ref_name: Some(p.branch.clone()),
                    key,
                };
                jobs.push(env.to_new_job(n));
            } else if envs {
                supersede.push(key);
            }
        }
        Event::TagPush(t) => {
            let tag = PublishTag {
                forge,
                project: t.project.clone(),
                tag: t.tag.clone(),
                commit: t.commit.clone().filter(|_| !t.deleted),
            };
            jobs.push(tag.to_new_job(n));
        }
        Event::MergeRequest(m) => {
            let sync = SyncMergeRequest {
                forge,
                project: m.project.clone(),
                source_project: m.source_project.clone(),
                iid: m.iid,
                action: m.action.clone(),
                title: m.title.clone(),
                state: m.state.clone(),
                source_branch: m.source_branch.clone(),
                target_branch: m.target_branch.clone(),
                head_sha: m.head_sha.clone(),
                new_commits: m.new_commits,
            };
            jobs.push(sync.to_new_job(n));
            let mr_key = PrepareEnvironment::merge_request_key(forge, &m.project.path, m.iid);
            let source_env = || PrepareEnvironment {
                forge,
                project: m.source_project.clone(),
                commit: m.head_sha.clone(),
                ref_name: Some(m.source_branch.clone()),
                key: mr_key.clone(),
            };
            match &m.action {
                MergeRequestAction::Open | MergeRequestAction::Reopen if envs => {
                    let env = source_env();
                    jobs.push(env.to_new_job(n));
                }
                MergeRequestAction::Update if envs && m.new_commits => {
                    let env = source_env();
                    jobs.push(env.to_new_job(n));
                }
                MergeRequestAction::Close if envs => supersede.push(mr_key.clone()),
                MergeRequestAction::Merge if envs => {
                    supersede.push(mr_key.clone());
                    let env = PrepareEnvironment {
                        forge,
                        project: m.project.clone(),
                        commit: m
                            .merge_commit_sha
                            .clone()
                            .unwrap_or_else(|| m.head_sha.clone()),
                        ref_name: Some(m.target_branch.clone()),
                        key: PrepareEnvironment::branch_key(
                            forge,
                            &m.project.path,
                            &m.target_branch,
                        ),
                    };
                    jobs.push(env.to_new_job(n));
                }
                _ => {}
            }
        }
        Event::Member(m) => {
            let member = RecordMember {
                forge,
                action: m.action,
                scope: m.scope.clone(),
                user_id: m.user.id,
                username: m.user.username.clone(),
                access_level: m.access_level,
                expires_at: m.expires_at.clone(),
            };
            jobs.push(member.to_new_job(n));
        }
        Event::Project(p) => {
            let project = SyncProject {
                action: p.action.clone(),
                project: p.project.clone(),
            };
            jobs.push(project.to_new_job(n));
        }
        Event::Group(g) => {
            let group = SyncGroup {
                forge,
                action: g.action.clone(),
                full_path: g.full_path.clone(),
            };
            jobs.push(group.to_new_job(n));
        }
        Event::User(u) => {
            // The parser refuses user events without an id.
            if let Some(user_id) = u.user.id {
                let user = SyncUser {
                    forge,
                    action: u.action.clone(),
                    user_id,
                    username: u.user.username.clone(),
                    name: u.user.name.clone(),
                };
                jobs.push(user.to_new_job(n));
            }
        }
    }
    Enqueue { supersede, jobs }
}
