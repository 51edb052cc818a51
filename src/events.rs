//! Forge-neutral domain events parsed from GitLab and GitHub webhook payloads.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    #[serde(rename = "gitlab")]
    GitLab,
    #[serde(rename = "github")]
    GitHub,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRef {
    pub forge: ForgeKind,
    pub id: Option<i64>,
    pub path: String,
    pub web_url: Option<String>,
    pub git_http_url: Option<String>,
    pub default_branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub id: Option<i64>,
    pub username: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Push(PushEvent),
    TagPush(TagPushEvent),
    MergeRequest(MergeRequestEvent),
    Member(MemberEvent),
    Project(ProjectEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushEvent {
    pub project: ProjectRef,
    pub branch: String,
    pub before: String,
    pub after: String,
    pub created: bool,
    pub deleted: bool,
    pub actor: Option<Actor>,
    pub total_commits: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagPushEvent {
    pub project: ProjectRef,
    pub tag: String,
    pub commit: Option<String>,
    pub deleted: bool,
    pub actor: Option<Actor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MergeRequestAction {
    Open,
    Reopen,
    Update,
    Close,
    Merge,
    Approved,
    Unapproved,
    Approval,
    Unapproval,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRequestEvent {
    pub project: ProjectRef,
    pub source_project: ProjectRef,
    pub iid: i64,
    pub action: MergeRequestAction,
    pub title: String,
    pub state: String,
    pub source_branch: String,
    pub target_branch: String,
    pub head_sha: String,
    pub merge_commit_sha: Option<String>,
    pub url: Option<String>,
    pub actor: Option<Actor>,
    pub new_commits: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemberAction {
    Added,
    Updated,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MemberScope {
    Group { id: Option<i64>, path: String },
    Project { id: Option<i64>, path: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEvent {
    pub action: MemberAction,
    pub scope: MemberScope,
    pub user: Actor,
    pub access_level: Option<i64>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProjectAction {
    Created,
    Destroyed,
    Renamed { old_path: String },
    Transferred { old_path: String },
    Forked { from: ProjectRef },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectEvent {
    pub action: ProjectAction,
    pub project: ProjectRef,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Push(_) => "push",
            Event::TagPush(_) => "tag_push",
            Event::MergeRequest(_) => "merge_request",
            Event::Member(_) => "member",
            Event::Project(_) => "project",
        }
    }
}

pub struct Parsed {
    pub kind: String,
    pub event: Option<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{0}")]
    Invalid(String),
}
