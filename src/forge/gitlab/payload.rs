//! GitLab webhook payloads.
//!
//! Serde structs for the parts of GitLab's documented webhook and system hook payloads
//! that nbforge consumes ("Webhook events" and "System hooks" in GitLab's documentation),
//! and [`parse`], which turns one delivery into forge-neutral [`crate::events`].
//!
//! Deliveries are classified by the body, not the header: project and group hooks carry
//! `object_kind` (push, tag_push, merge_request, …) and group member / project hooks carry
//! `event_name`; system hooks send pushes, tag pushes and merge requests with the header
//! `System Hook` and `event_name` (push, tag_push) or `object_kind` (merge_request).
//! The body is read twice, never copied into a tree: once for the kind, once into the
//! struct for that kind; fields nbforge does not read are skipped.
//!
//! Forks: GitLab documents no fork hook. Forking a project sends `project_create` like
//! any new project, so GitLab deliveries never yield [`ProjectAction::Forked`]; a merge
//! request from a fork shows as a [`MergeRequestEvent`] whose `source_project` differs
//! from `project`.

use serde::Deserialize;

use crate::events::{
    Actor, Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestAction,
    MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectEvent, ProjectRef, PushEvent,
    TagPushEvent, check_object, decode, is_zero_sha, missing,
};

/// `event_header` is the X-Gitlab-Event header value ("Push Hook", "Tag Push Hook", "Merge Request Hook",
/// "Member Hook", "System Hook", ... or None if absent). Classify by the body's `object_kind` / `event_name` too
/// (system hooks send push/tag_push/merge_request with header "System Hook").
pub fn parse(event_header: Option<&str>, body: &[u8]) -> Result<Parsed, PayloadError> {
    check_object(body)?;
    let probe: Probe = decode("GitLab", body)?;
    let kind = match probe.object_kind.or(probe.event_name) {
        Some(kind) => kind,
        None => {
            // No kind in the body: label by the header ("Note Hook" → "note").
            let label = event_header
                .map(|h| h.trim())
                .map(|h| h.strip_suffix(" Hook").unwrap_or(h))
                .unwrap_or("unknown");
            return Ok(Parsed::ignored(label));
        }
    };
    match kind.as_str() {
        "push" | "tag_push" => parse_push(&kind, body),
        "merge_request" => parse_merge_request(body),
        "user_add_to_group" | "user_update_for_group" | "user_remove_from_group" => {
            parse_group_member(&kind, body)
        }
        "user_add_to_team" | "user_update_for_team" | "user_remove_from_team" => {
            parse_project_member(&kind, body)
        }
        "project_create" | "project_destroy" | "project_rename" | "project_transfer" => {
            parse_project(&kind, body)
        }
        other => Ok(Parsed::ignored(other)),
    }
}

/// GitLab access level for a role name as hooks send it (`group_access`, `access_level`):
/// Minimal Access 5, Guest 10, Planner 15, Reporter 20, Developer 30, Maintainer (formerly
/// Master) 40, Owner 50. `None` for other names (e.g. custom roles).
pub fn access_level_from_role(role: &str) -> Option<i64> {
    let level = match role.trim().to_ascii_lowercase().as_str() {
        "minimal access" | "minimal_access" => 5,
        "guest" => 10,
        "planner" => 15,
        "reporter" => 20,
        "developer" => 30,
        "maintainer" | "master" => 40,
        "owner" => 50,
        _ => return None,
    };
    Some(level)
}

/// Just enough of any payload to classify it.
#[derive(Deserialize)]
struct Probe {
    object_kind: Option<String>,
    event_name: Option<String>,
}

/// The `project` object of push, tag push and merge request hooks (also
/// `object_attributes.source` / `.target`, which lack `id`).
#[derive(Deserialize)]
struct WireProject {
    id: Option<i64>,
    path_with_namespace: Option<String>,
    web_url: Option<String>,
    git_http_url: Option<String>,
    http_url: Option<String>,
    default_branch: Option<String>,
}

impl WireProject {
    fn into_ref(self, fallback_id: Option<i64>) -> Option<ProjectRef> {
        Some(ProjectRef {
            forge: ForgeKind::GitLab,
            id: self.id.or(fallback_id),
            path: self.path_with_namespace?,
            web_url: self.web_url,
            git_http_url: self.git_http_url.or(self.http_url),
            default_branch: self.default_branch,
        })
    }
}

/// Push and tag push hooks (project, group and system hooks share the shape).
#[derive(Deserialize)]
struct WirePush {
    before: Option<String>,
    after: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    checkout_sha: Option<String>,
    user_id: Option<i64>,
    user_name: Option<String>,
    user_username: Option<String>,
    project_id: Option<i64>,
    project: Option<WireProject>,
    total_commits_count: Option<i64>,
}

fn parse_push(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab push";
    let w: WirePush = decode(P, body)?;
    let git_ref = w.git_ref.ok_or_else(|| missing(P, "ref"))?;
    let before = w.before.ok_or_else(|| missing(P, "before"))?;
    let after = w.after.ok_or_else(|| missing(P, "after"))?;
    let project = w
        .project
        .and_then(|p| p.into_ref(w.project_id))
        .ok_or_else(|| missing(P, "project.path_with_namespace"))?;
    let actor = Actor::from_parts(w.user_id, w.user_username, w.user_name);
    let deleted = is_zero_sha(&after);

    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        return Ok(Parsed::event(Event::Push(PushEvent {
            project,
            branch: branch.to_owned(),
            created: is_zero_sha(&before),
            deleted,
            before,
            after,
            actor,
            total_commits: w.total_commits_count,
        })));
    }
    if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        let commit = if deleted {
            None
        } else {
            w.checkout_sha.filter(|s| !is_zero_sha(s))
        };
        return Ok(Parsed::event(Event::TagPush(TagPushEvent {
            project,
            tag: tag.to_owned(),
            commit,
            deleted,
            actor,
        })));
    }
    // Some other ref namespace: nothing nbforge builds from.
    Ok(Parsed::ignored(kind))
}

#[derive(Deserialize)]
struct WireUser {
    id: Option<i64>,
    name: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
struct WireCommit {
    id: Option<String>,
}

#[derive(Deserialize)]
struct WireMrAttributes {
    iid: Option<i64>,
    title: Option<String>,
    state: Option<String>,
    action: Option<String>,
    source_branch: Option<String>,
    target_branch: Option<String>,
    source_project_id: Option<i64>,
    target_project_id: Option<i64>,
    source: Option<WireProject>,
    target: Option<WireProject>,
    last_commit: Option<WireCommit>,
    merge_commit_sha: Option<String>,
    url: Option<String>,
    /// Present only when the update pushed code.
    oldrev: Option<String>,
}

#[derive(Deserialize)]
struct WireMergeRequest {
    user: Option<WireUser>,
    project: Option<WireProject>,
    object_attributes: Option<WireMrAttributes>,
}

fn parse_merge_request(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab merge_request";
    let w: WireMergeRequest = decode(P, body)?;
    let a = w
        .object_attributes
        .ok_or_else(|| missing(P, "object_attributes"))?;
    let project = w
        .project
        .and_then(|p| p.into_ref(a.target_project_id))
        .or_else(|| a.target.and_then(|t| t.into_ref(a.target_project_id)))
        .ok_or_else(|| missing(P, "project.path_with_namespace"))?;
    let source_project = a
        .source
        .and_then(|s| s.into_ref(a.source_project_id))
        .unwrap_or_else(|| project.clone());
    let head_sha = a
        .last_commit
        .and_then(|c| c.id)
        .ok_or_else(|| missing(P, "object_attributes.last_commit.id"))?;
    let actor = w
        .user
        .and_then(|u| Actor::from_parts(u.id, u.username, u.name));
    Ok(Parsed::event(Event::MergeRequest(MergeRequestEvent {
        project,
        source_project,
        iid: a.iid.ok_or_else(|| missing(P, "object_attributes.iid"))?,
        action: MergeRequestAction::from_gitlab(a.action.as_deref().unwrap_or("")),
        title: a
            .title
            .ok_or_else(|| missing(P, "object_attributes.title"))?,
        state: a
            .state
            .ok_or_else(|| missing(P, "object_attributes.state"))?,
        source_branch: a
            .source_branch
            .ok_or_else(|| missing(P, "object_attributes.source_branch"))?,
        target_branch: a
            .target_branch
            .ok_or_else(|| missing(P, "object_attributes.target_branch"))?,
        head_sha,
        merge_commit_sha: a.merge_commit_sha.filter(|s| !s.is_empty()),
        url: a.url,
        actor,
        new_commits: a.oldrev.is_some_and(|s| !s.is_empty()),
    })))
}

/// A role as hooks send it: a name ("Developer"); a number is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireAccess {
    Level(i64),
    Name(String),
}

impl WireAccess {
    fn level(&self) -> Option<i64> {
        match self {
            WireAccess::Level(n) => Some(*n),
            WireAccess::Name(s) => access_level_from_role(s),
        }
    }
}

/// Group member hooks (group webhooks and system hooks share the shape).
#[derive(Deserialize)]
struct WireGroupMember {
    group_id: Option<i64>,
    group_path: Option<String>,
    user_id: Option<i64>,
    user_username: Option<String>,
    user_name: Option<String>,
    group_access: Option<WireAccess>,
    expires_at: Option<String>,
}

/// Project member ("team") system hooks.
#[derive(Deserialize)]
struct WireProjectMember {
    project_id: Option<i64>,
    project_path_with_namespace: Option<String>,
    user_id: Option<i64>,
    user_username: Option<String>,
    user_name: Option<String>,
    access_level: Option<WireAccess>,
    expires_at: Option<String>,
}

fn member_action(event_name: &str) -> MemberAction {
    if event_name.starts_with("user_add_to_") {
        MemberAction::Added
    } else if event_name.starts_with("user_remove_from_") {
        MemberAction::Removed
    } else {
        MemberAction::Updated
    }
}

fn member_user(
    payload: &'static str,
    id: Option<i64>,
    username: Option<String>,
    name: Option<String>,
) -> Result<Actor, PayloadError> {
    if id.is_none() && username.is_none() {
        return Err(missing(payload, "user_id"));
    }
    Ok(Actor { id, username, name })
}

fn parse_group_member(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab group member";
    let w: WireGroupMember = decode(P, body)?;
    let path = w.group_path.ok_or_else(|| missing(P, "group_path"))?;
    Ok(Parsed::event(Event::Member(MemberEvent {
        action: member_action(kind),
        scope: MemberScope::Group {
            id: w.group_id,
            path,
        },
        user: member_user(P, w.user_id, w.user_username, w.user_name)?,
        access_level: w.group_access.as_ref().and_then(WireAccess::level),
        expires_at: w.expires_at,
    })))
}

fn parse_project_member(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab project member";
    let w: WireProjectMember = decode(P, body)?;
    let path = w
        .project_path_with_namespace
        .ok_or_else(|| missing(P, "project_path_with_namespace"))?;
    Ok(Parsed::event(Event::Member(MemberEvent {
        action: member_action(kind),
        scope: MemberScope::Project {
            id: w.project_id,
            path,
        },
        user: member_user(P, w.user_id, w.user_username, w.user_name)?,
        access_level: w.access_level.as_ref().and_then(WireAccess::level),
        expires_at: w.expires_at,
    })))
}

/// Project system hooks and group "Project Hook" events.
#[derive(Deserialize)]
struct WireProjectHook {
    project_id: Option<i64>,
    path_with_namespace: Option<String>,
    old_path_with_namespace: Option<String>,
}

fn parse_project(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab project";
    let w: WireProjectHook = decode(P, body)?;
    let path = w
        .path_with_namespace
        .ok_or_else(|| missing(P, "path_with_namespace"))?;
    let old_path = || {
        w.old_path_with_namespace
            .clone()
            .ok_or_else(|| missing(P, "old_path_with_namespace"))
    };
    let action = match kind {
        "project_create" => ProjectAction::Created,
        "project_destroy" => ProjectAction::Destroyed,
        "project_rename" => ProjectAction::Renamed {
            old_path: old_path()?,
        },
        "project_transfer" => ProjectAction::Transferred {
            old_path: old_path()?,
        },
        other => return Ok(Parsed::ignored(other)),
    };
    Ok(Parsed::event(Event::Project(ProjectEvent {
        action,
        project: ProjectRef {
            forge: ForgeKind::GitLab,
            id: w.project_id,
            path,
            web_url: None,
            git_http_url: None,
            default_branch: None,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_body(git_ref: &str, before: &str, after: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "object_kind": "push",
            "ref": git_ref,
            "before": before,
            "after": after,
            "checkout_sha": after,
            "project": {"id": 3, "path_with_namespace": "a/b"},
        }))
        .unwrap()
    }

    const Z: &str = "0000000000000000000000000000000000000000";
    const A: &str = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7";

    #[test]
    fn branch_created_and_deleted() {
        let p = parse(Some("Push Hook"), &push_body("refs/heads/dev", Z, A)).unwrap();
        let Some(Event::Push(e)) = p.event else {
            panic!("{p:?}")
        };
        assert!(e.created && !e.deleted);
        assert_eq!(e.branch, "dev");
        assert_eq!(e.actor, None);

        let p = parse(Some("Push Hook"), &push_body("refs/heads/dev", A, Z)).unwrap();
        let Some(Event::Push(e)) = p.event else {
            panic!("{p:?}")
        };
        assert!(!e.created && e.deleted);
    }

    #[test]
    fn tag_ref_in_push_hook_is_a_tag_push() {
        let p = parse(Some("Push Hook"), &push_body("refs/tags/v2", Z, A)).unwrap();
        assert_eq!(p.kind, "tag_push");
        let Some(Event::TagPush(e)) = p.event else {
            panic!("{p:?}")
        };
        assert_eq!(e.tag, "v2");
        assert_eq!(e.commit.as_deref(), Some(A));
    }

    #[test]
    fn other_ref_namespaces_are_ignored() {
        let p = parse(None, &push_body("refs/notes/commits", A, A)).unwrap();
        assert_eq!(p, Parsed::ignored("push"));
    }

    #[test]
    fn roles() {
        assert_eq!(access_level_from_role("Guest"), Some(10));
        assert_eq!(access_level_from_role("Planner"), Some(15));
        assert_eq!(access_level_from_role("reporter"), Some(20));
        assert_eq!(access_level_from_role("Developer"), Some(30));
        assert_eq!(access_level_from_role("Maintainer"), Some(40));
        assert_eq!(access_level_from_role("Master"), Some(40));
        assert_eq!(access_level_from_role("Owner"), Some(50));
        assert_eq!(access_level_from_role("Minimal Access"), Some(5));
        assert_eq!(access_level_from_role("Data Steward"), None);
    }

    #[test]
    fn numeric_access_level_accepted() {
        let body = br#"{"event_name":"user_add_to_group","group_id":1,"group_path":"g",
            "user_id":2,"group_access":30}"#;
        let p = parse(Some("Member Hook"), body).unwrap();
        let Some(Event::Member(m)) = p.event else {
            panic!("{p:?}")
        };
        assert_eq!(m.access_level, Some(30));
        assert_eq!(m.expires_at, None);
    }

    #[test]
    fn no_kind_uses_header_label() {
        assert_eq!(
            parse(Some("Note Hook"), b"{}").unwrap(),
            Parsed::ignored("note")
        );
        assert_eq!(parse(None, b"{}").unwrap(), Parsed::ignored("unknown"));
    }

    #[test]
    fn merge_request_without_head_commit_is_an_error() {
        let body = br#"{"object_kind":"merge_request",
            "project":{"id":1,"path_with_namespace":"a/b"},
            "object_attributes":{"iid":1,"title":"t","state":"opened","action":"open",
              "source_branch":"s","target_branch":"m"}}"#;
        assert_eq!(
            parse(None, body).unwrap_err(),
            PayloadError::MissingField {
                payload: "GitLab merge_request",
                field: "object_attributes.last_commit.id".into()
            }
        );
    }
}
