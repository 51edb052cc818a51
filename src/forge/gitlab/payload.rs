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
    Actor, Event, ForgeKind, GroupAction, GroupEvent, MemberAction, MemberEvent, MemberScope,
    MergeRequestAction, MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectEvent,
    ProjectRef, PushEvent, TagPushEvent, UserAction, UserEvent, Visibility, check_object,
    commit_id, decode, is_zero_sha, missing,
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
        "project_create" | "project_destroy" | "project_rename" | "project_transfer"
        | "project_update" => parse_project(&kind, body),
        "group_destroy" | "group_rename" => parse_group(&kind, body),
        "user_destroy" | "user_rename" | "user_failed_login" => parse_user(&kind, body),
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
    /// 0 private, 10 internal, 20 public.
    visibility_level: Option<i64>,
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
            visibility: self
                .visibility_level
                .map(|l| Visibility::parse(&l.to_string())),
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
    let before = commit_id(P, "before", w.before.ok_or_else(|| missing(P, "before"))?)?;
    let after = commit_id(P, "after", w.after.ok_or_else(|| missing(P, "after"))?)?;
    let checkout_sha = w
        .checkout_sha
        .map(|c| commit_id(P, "checkout_sha", c))
        .transpose()?;
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
            checkout_sha.filter(|s| !is_zero_sha(s))
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
    let head_sha = commit_id(P, "object_attributes.last_commit.id", head_sha)?;
    let merge_commit_sha = a
        .merge_commit_sha
        .filter(|s| !s.is_empty())
        .map(|c| commit_id(P, "object_attributes.merge_commit_sha", c))
        .transpose()?;
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
        merge_commit_sha,
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
    /// `private`, `internal` or `public`.
    project_visibility: Option<String>,
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
        "project_update" => ProjectAction::Updated,
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
            visibility: w.project_visibility.as_deref().map(Visibility::parse),
        },
    })))
}

/// `group_destroy` and `group_rename` system hooks.
#[derive(Deserialize)]
struct WireGroupHook {
    group_id: Option<i64>,
    /// The last segment only.
    path: Option<String>,
    full_path: Option<String>,
    old_full_path: Option<String>,
}

fn parse_group(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab group";
    let w: WireGroupHook = decode(P, body)?;
    // GitLab's documented `group_destroy` example has no `full_path` (GitLab sends it
    // today); the last segment is what is left then.
    let full_path = w
        .full_path
        .or(w.path)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| missing(P, "full_path"))?;
    let action = match kind {
        "group_destroy" => GroupAction::Destroyed,
        _ => GroupAction::Renamed {
            old_full_path: w
                .old_full_path
                .filter(|p| !p.is_empty())
                .ok_or_else(|| missing(P, "old_full_path"))?,
        },
    };
    Ok(Parsed::event(Event::Group(GroupEvent {
        action,
        id: w.group_id,
        full_path,
    })))
}

/// `user_destroy`, `user_rename` and `user_failed_login` system hooks.
#[derive(Deserialize)]
struct WireUserHook {
    user_id: Option<i64>,
    username: Option<String>,
    name: Option<String>,
    old_username: Option<String>,
    /// `user_failed_login`: `blocked`, …
    state: Option<String>,
}

fn parse_user(kind: &str, body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitLab user";
    let w: WireUserHook = decode(P, body)?;
    let action = match kind {
        "user_destroy" => UserAction::Destroyed,
        "user_rename" => UserAction::Renamed {
            old_username: w.old_username,
        },
        // A failed login of a user who is not blocked says nothing about access.
        _ if w.state.as_deref() == Some("blocked") => UserAction::Blocked,
        other => return Ok(Parsed::ignored(other)),
    };
    let id = w.user_id.ok_or_else(|| missing(P, "user_id"))?;
    Ok(Parsed::event(Event::User(UserEvent {
        action,
        user: Actor {
            id: Some(id),
            username: w.username,
            name: w.name,
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

/// GitLab's documented example payloads (`tests/data/gitlab`) parsed into domain events.
#[cfg(test)]
mod examples {
    use serde_json::{Value, json};

    use crate::events::testing::{ZERO, bytes, data, event_of, examples, set, value};
    use crate::events::{
        Actor, Event, ForgeKind, GroupAction, GroupEvent, MemberAction, MemberEvent, MemberScope,
        MergeRequestAction, MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectEvent,
        ProjectRef, PushEvent, TagPushEvent, UserAction, UserEvent,
    };
    use crate::forge::gitlab;

    /// The `X-Gitlab-Event` header GitLab sends with example `name`.
    fn header_for(name: &str) -> &'static str {
        match name {
            "push" => "Push Hook",
            "tag_push" => "Tag Push Hook",
            "merge_request" => "Merge Request Hook",
            "wiki_page" => "Wiki Page Hook",
            n if n.starts_with("system_") => "System Hook",
            n if n.starts_with("member_") => "Member Hook",
            n if n.starts_with("group_project_") => "Project Hook",
            other => panic!("no header known for the example {other}"),
        }
    }

    /// Every example, parsed: reviewed snapshots in `snapshots/`.
    #[test]
    fn every_documented_example_parses() {
        let names = examples("gitlab");
        assert!(names.len() >= 20, "{names:?}");
        for name in names {
            let parsed = gitlab::payload::parse(Some(header_for(&name)), &data("gitlab", &name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            insta::assert_json_snapshot!(name.as_str(), parsed);
        }
    }

    fn gl(header: &str, body: &[u8]) -> Event {
        event_of(gitlab::payload::parse(Some(header), body).expect("parses"))
    }

    fn gitlab_project(id: i64, path: &str, name: &str) -> ProjectRef {
        ProjectRef {
            forge: ForgeKind::GitLab,
            id: Some(id),
            path: path.into(),
            web_url: Some(format!("http://example.com/{name}")),
            git_http_url: Some(format!("http://example.com/{name}.git")),
            default_branch: Some("master".into()),
            visibility: Some(crate::events::Visibility::Private),
        }
    }

    fn bare_gitlab_project(id: i64, path: &str, visibility: &str) -> ProjectRef {
        ProjectRef {
            forge: ForgeKind::GitLab,
            id: Some(id),
            path: path.into(),
            web_url: None,
            git_http_url: None,
            default_branch: None,
            visibility: Some(crate::events::Visibility::parse(visibility)),
        }
    }

    // ---------------------------------------------------------------- GitLab: push and tags

    #[test]
    fn gitlab_push_hook() {
        let ev = gl("Push Hook", &data("gitlab", "push"));
        assert_eq!(
            ev,
            Event::Push(PushEvent {
                project: gitlab_project(15, "mike/diaspora", "mike/diaspora"),
                branch: "master".into(),
                before: "95790bf891e76fee5e1747ab589903a6a1f80f22".into(),
                after: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into(),
                created: false,
                deleted: false,
                actor: Some(Actor {
                    id: Some(4),
                    username: Some("jsmith".into()),
                    name: Some("John Smith".into()),
                }),
                total_commits: Some(4),
            })
        );
        assert_eq!(ev.project_path(), Some("mike/diaspora"));
    }

    #[test]
    fn gitlab_push_creating_and_deleting_a_branch() {
        let v = value("gitlab", "push");
        let created = set(v.clone(), "/before", json!(ZERO));
        let Event::Push(e) = gl("Push Hook", &bytes(&created)) else {
            panic!()
        };
        assert!(e.created && !e.deleted);

        let deleted = set(set(v, "/after", json!(ZERO)), "/checkout_sha", Value::Null);
        let Event::Push(e) = gl("Push Hook", &bytes(&deleted)) else {
            panic!()
        };
        assert!(!e.created && e.deleted);
        assert_eq!(e.after, ZERO);
    }

    #[test]
    fn gitlab_tag_push_hook() {
        let ev = gl("Tag Push Hook", &data("gitlab", "tag_push"));
        assert_eq!(
            ev,
            Event::TagPush(TagPushEvent {
                project: gitlab_project(1, "jsmith/example", "jsmith/example"),
                tag: "v1.0.0".into(),
                commit: Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7".into()),
                deleted: false,
                actor: Some(Actor {
                    id: Some(1),
                    username: None,
                    name: Some("John Smith".into()),
                }),
            })
        );
    }

    #[test]
    fn gitlab_tag_deletion() {
        let v = value("gitlab", "tag_push");
        let v = set(
            v,
            "/before",
            json!("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"),
        );
        let v = set(set(v, "/after", json!(ZERO)), "/checkout_sha", Value::Null);
        let Event::TagPush(e) = gl("Tag Push Hook", &bytes(&v)) else {
            panic!()
        };
        assert!(e.deleted);
        assert_eq!(e.commit, None);
        assert_eq!(e.tag, "v1.0.0");
    }

    #[test]
    fn gitlab_system_hook_push_and_tag() {
        // System hooks: no object_kind, project without `id` (top-level project_id instead).
        let Event::Push(e) = gl("System Hook", &data("gitlab", "system_push")) else {
            panic!()
        };
        assert_eq!(e.project.id, Some(15));
        assert_eq!(e.project.path, "mike/diaspora");
        assert_eq!(e.branch, "master");
        assert_eq!(e.after, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        assert_eq!(e.total_commits, Some(1));
        assert_eq!(e.actor.unwrap().username, None);

        let Event::TagPush(e) = gl("System Hook", &data("gitlab", "system_tag_push")) else {
            panic!()
        };
        assert_eq!(e.project.id, Some(1));
        assert_eq!(e.tag, "v1.0.0");
        // The commit is checkout_sha (what the tag points to), not `after`.
        assert_eq!(
            e.commit.as_deref(),
            Some("5937ac0a7beb003549fc5fd26fc247adbce4a52e")
        );
    }

    // ---------------------------------------------------------------- GitLab: merge requests

    fn expected_gitlab_mr() -> MergeRequestEvent {
        MergeRequestEvent {
            project: gitlab_project(1, "gitlabhq/gitlab-test", "gitlabhq/gitlab-test"),
            source_project: gitlab_project(
                14,
                "awesome_space/awesome_project",
                "awesome_space/awesome_project",
            ),
            iid: 1,
            action: MergeRequestAction::Open,
            title: "MS-Viewport".into(),
            state: "opened".into(),
            source_branch: "ms-viewport".into(),
            target_branch: "master".into(),
            head_sha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into(),
            merge_commit_sha: None,
            url: Some("http://example.com/diaspora/merge_requests/1".into()),
            actor: Some(Actor {
                id: Some(1),
                username: Some("root".into()),
                name: Some("Administrator".into()),
            }),
            new_commits: false,
        }
    }

    /// The documented merge request example, whose projects are public (level 20).
    fn public_mr() -> MergeRequestEvent {
        let mut mr = expected_gitlab_mr();
        mr.project.visibility = Some(crate::events::Visibility::Public);
        mr.source_project.visibility = Some(crate::events::Visibility::Public);
        mr
    }

    #[test]
    fn gitlab_merge_request_hook() {
        let ev = gl("Merge Request Hook", &data("gitlab", "merge_request"));
        assert_eq!(ev, Event::MergeRequest(public_mr()));
        assert_eq!(ev.project_path(), Some("gitlabhq/gitlab-test"));
    }

    #[test]
    fn gitlab_system_hook_merge_request() {
        let ev = gl("System Hook", &data("gitlab", "system_merge_request"));
        assert_eq!(ev, Event::MergeRequest(public_mr()));
    }

    #[test]
    fn gitlab_every_merge_request_action() {
        let base = value("gitlab", "merge_request");
        let cases = [
            ("open", MergeRequestAction::Open),
            ("reopen", MergeRequestAction::Reopen),
            ("update", MergeRequestAction::Update),
            ("close", MergeRequestAction::Close),
            ("merge", MergeRequestAction::Merge),
            ("approved", MergeRequestAction::Approved),
            ("unapproved", MergeRequestAction::Unapproved),
            ("approval", MergeRequestAction::Approval),
            ("unapproval", MergeRequestAction::Unapproval),
            ("frobnicate", MergeRequestAction::Other("frobnicate".into())),
        ];
        for (name, want) in cases {
            let v = set(base.clone(), "/object_attributes/action", json!(name));
            let Event::MergeRequest(e) = gl("Merge Request Hook", &bytes(&v)) else {
                panic!("{name}")
            };
            assert_eq!(e.action, want, "{name}");
            assert_eq!(e.action.as_str(), name);
            assert!(!e.new_commits, "{name}");
        }
    }

    #[test]
    fn gitlab_update_with_oldrev_has_new_commits() {
        let v = set(
            value("gitlab", "merge_request"),
            "/object_attributes/action",
            json!("update"),
        );
        let mut with_oldrev = v.clone();
        with_oldrev["object_attributes"]["oldrev"] =
            json!("95790bf891e76fee5e1747ab589903a6a1f80f22");
        let Event::MergeRequest(e) = gl("Merge Request Hook", &bytes(&with_oldrev)) else {
            panic!()
        };
        assert_eq!(e.action, MergeRequestAction::Update);
        assert!(e.new_commits);

        let Event::MergeRequest(e) = gl("Merge Request Hook", &bytes(&v)) else {
            panic!()
        };
        assert!(!e.new_commits, "label/title-only update");
    }

    #[test]
    fn gitlab_merged_merge_request_keeps_merge_commit() {
        let mut v = set(
            value("gitlab", "merge_request"),
            "/object_attributes/action",
            json!("merge"),
        );
        v["object_attributes"]["state"] = json!("merged");
        v["object_attributes"]["merge_commit_sha"] =
            json!("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
        let Event::MergeRequest(e) = gl("Merge Request Hook", &bytes(&v)) else {
            panic!()
        };
        assert_eq!(e.action, MergeRequestAction::Merge);
        assert_eq!(e.state, "merged");
        assert_eq!(
            e.merge_commit_sha.as_deref(),
            Some("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")
        );
    }

    #[test]
    fn gitlab_merge_request_from_deleted_fork_falls_back_to_target() {
        let v = set(
            value("gitlab", "merge_request"),
            "/object_attributes/source",
            Value::Null,
        );
        let Event::MergeRequest(e) = gl("Merge Request Hook", &bytes(&v)) else {
            panic!()
        };
        assert_eq!(e.source_project, e.project);
    }

    // ---------------------------------------------------------------- GitLab: members

    fn group_member(action: MemberAction, access: i64, expires: &str) -> Event {
        Event::Member(MemberEvent {
            action,
            scope: MemberScope::Group {
                id: Some(100),
                path: "webhook-test".into(),
            },
            user: Actor {
                id: Some(64),
                username: Some("test_user".into()),
                name: Some("Test User".into()),
            },
            access_level: Some(access),
            expires_at: Some(expires.into()),
        })
    }

    #[test]
    fn gitlab_group_member_hooks() {
        assert_eq!(
            gl("Member Hook", &data("gitlab", "member_add_to_group")),
            group_member(MemberAction::Added, 10, "2020-12-14T00:00:00Z")
        );
        assert_eq!(
            gl("Member Hook", &data("gitlab", "member_update_for_group")),
            group_member(MemberAction::Updated, 30, "2020-12-20T00:00:00Z")
        );
        let removed = gl("Member Hook", &data("gitlab", "member_remove_from_group"));
        assert_eq!(
            removed,
            group_member(MemberAction::Removed, 10, "2020-12-14T00:00:00Z")
        );
        assert_eq!(removed.project_path(), None);
        assert_eq!(removed.kind(), "member");
    }

    #[test]
    fn gitlab_system_hook_group_members() {
        for (name, action) in [
            ("system_user_add_to_group", MemberAction::Added),
            ("system_user_update_for_group", MemberAction::Updated),
            ("system_user_remove_from_group", MemberAction::Removed),
        ] {
            let ev = gl("System Hook", &data("gitlab", name));
            assert_eq!(
                ev,
                Event::Member(MemberEvent {
                    action,
                    scope: MemberScope::Group {
                        id: Some(78),
                        path: "storecloud".into()
                    },
                    user: Actor {
                        id: Some(41),
                        username: Some("johnsmith".into()),
                        name: Some("John Smith".into()),
                    },
                    access_level: Some(40),
                    expires_at: None,
                }),
                "{name}"
            );
        }
    }

    #[test]
    fn gitlab_system_hook_project_members() {
        for (name, action) in [
            ("system_user_add_to_team", MemberAction::Added),
            ("system_user_update_for_team", MemberAction::Updated),
            ("system_user_remove_from_team", MemberAction::Removed),
        ] {
            let ev = gl("System Hook", &data("gitlab", name));
            assert_eq!(ev.project_path(), Some("jsmith/storecloud"), "{name}");
            let Event::Member(m) = ev else { panic!() };
            assert_eq!(m.action, action);
            assert_eq!(
                m.scope,
                MemberScope::Project {
                    id: Some(74),
                    path: "jsmith/storecloud".into()
                }
            );
            assert_eq!(m.user.id, Some(41));
            assert_eq!(m.user.username.as_deref(), Some("johnsmith"));
            assert_eq!(m.access_level, Some(40), "Maintainer");
        }
    }

    #[test]
    fn gitlab_member_with_custom_role_has_no_level() {
        let v = set(
            value("gitlab", "member_add_to_group"),
            "/group_access",
            json!("Lab Technician"),
        );
        let Event::Member(m) = gl("Member Hook", &bytes(&v)) else {
            panic!()
        };
        assert_eq!(m.access_level, None);
    }

    // ---------------------------------------------------------------- GitLab: projects

    #[test]
    fn gitlab_system_hook_projects() {
        let cases = [
            (
                "system_project_create",
                ProjectAction::Created,
                bare_gitlab_project(74, "jsmith/storecloud", "private"),
            ),
            (
                "system_project_destroy",
                ProjectAction::Destroyed,
                bare_gitlab_project(73, "jsmith/underscore", "internal"),
            ),
            (
                "system_project_rename",
                ProjectAction::Renamed {
                    old_path: "jsmith/overscore".into(),
                },
                bare_gitlab_project(73, "jsmith/underscore", "internal"),
            ),
            (
                "system_project_transfer",
                ProjectAction::Transferred {
                    old_path: "jsmith/overscore".into(),
                },
                bare_gitlab_project(73, "scores/underscore", "internal"),
            ),
        ];
        for (name, action, project) in cases {
            assert_eq!(
                gl("System Hook", &data("gitlab", name)),
                Event::Project(ProjectEvent { action, project }),
                "{name}"
            );
        }
    }

    #[test]
    fn gitlab_system_hook_project_update_carries_visibility() {
        assert_eq!(
            gl("System Hook", &data("gitlab", "system_project_update")),
            Event::Project(ProjectEvent {
                action: ProjectAction::Updated,
                project: bare_gitlab_project(74, "jsmith/storecloud", "private"),
            })
        );
    }

    // ---------------------------------------------------------------- GitLab: groups, users

    #[test]
    fn gitlab_system_hook_groups() {
        assert_eq!(
            gl("System Hook", &data("gitlab", "system_group_rename")),
            Event::Group(GroupEvent {
                action: GroupAction::Renamed {
                    old_full_path: "parent-group/old-name".into()
                },
                id: Some(64),
                full_path: "parent-group/better-name".into(),
            })
        );
        // The documented example has no `full_path`: the path is what is left.
        let destroyed = gl("System Hook", &data("gitlab", "system_group_destroy"));
        assert_eq!(
            destroyed,
            Event::Group(GroupEvent {
                action: GroupAction::Destroyed,
                id: Some(78),
                full_path: "storecloud".into(),
            })
        );
        assert_eq!(
            (destroyed.kind(), destroyed.project_path()),
            ("group", None)
        );
        let with_full = set(
            value("gitlab", "system_group_destroy"),
            "/path",
            json!("storecloud"),
        );
        let mut with_full = with_full;
        with_full["full_path"] = json!("lab/storecloud");
        let Event::Group(g) = gl("System Hook", &bytes(&with_full)) else {
            panic!()
        };
        assert_eq!(g.full_path, "lab/storecloud");
        let mut v = value("gitlab", "system_group_rename");
        v.as_object_mut().unwrap().remove("old_full_path");
        assert!(matches!(
            gitlab::payload::parse(Some("System Hook"), &bytes(&v)),
            Err(PayloadError::MissingField { .. })
        ));
    }

    #[test]
    fn gitlab_system_hook_users() {
        let user = |id: i64, username: &str, name: &str| Actor {
            id: Some(id),
            username: Some(username.into()),
            name: Some(name.into()),
        };
        let destroyed = gl("System Hook", &data("gitlab", "system_user_destroy"));
        assert_eq!(
            destroyed,
            Event::User(UserEvent {
                action: UserAction::Destroyed,
                user: user(41, "js", "John Smith"),
            })
        );
        assert_eq!(destroyed.kind(), "user");
        assert_eq!(
            gl("System Hook", &data("gitlab", "system_user_rename")),
            Event::User(UserEvent {
                action: UserAction::Renamed {
                    old_username: Some("old-boring-name".into())
                },
                user: user(58, "new-exciting-name", "new-name"),
            })
        );
        assert_eq!(
            gl("System Hook", &data("gitlab", "system_user_failed_login")),
            Event::User(UserEvent {
                action: UserAction::Blocked,
                user: user(26, "user4", "John Smith"),
            })
        );
        // A failed login of an active user changes nothing.
        let active = set(
            value("gitlab", "system_user_failed_login"),
            "/state",
            json!("active"),
        );
        assert_eq!(
            gitlab::payload::parse(Some("System Hook"), &bytes(&active)).unwrap(),
            Parsed::ignored("user_failed_login")
        );
        let mut v = value("gitlab", "system_user_destroy");
        v.as_object_mut().unwrap().remove("user_id");
        assert!(matches!(
            gitlab::payload::parse(Some("System Hook"), &bytes(&v)),
            Err(PayloadError::MissingField { .. })
        ));
    }

    #[test]
    fn gitlab_group_project_hooks() {
        assert_eq!(
            gl("Project Hook", &data("gitlab", "group_project_create")),
            Event::Project(ProjectEvent {
                action: ProjectAction::Created,
                project: bare_gitlab_project(22, "group1/project1", "private"),
            })
        );
        assert_eq!(
            gl("Project Hook", &data("gitlab", "group_project_destroy")),
            Event::Project(ProjectEvent {
                action: ProjectAction::Destroyed,
                project: bare_gitlab_project(22, "group1/project1", "private"),
            })
        );
    }

    #[test]
    fn gitlab_rename_without_old_path_is_an_error() {
        let mut v = value("gitlab", "system_project_rename");
        v.as_object_mut().unwrap().remove("old_path_with_namespace");
        let err = gitlab::payload::parse(Some("System Hook"), &bytes(&v)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GitLab project payload: missing field `old_path_with_namespace`"
        );
    }

    // ---------------------------------------------------------------- GitLab: ignored kinds

    #[test]
    fn gitlab_kinds_nbforge_ignores() {
        let cases = [
            (
                "System Hook",
                "system_repository_update",
                "repository_update",
            ),
            ("System Hook", "system_user_create", "user_create"),
            (
                "System Hook",
                "system_user_access_request_to_project",
                "user_access_request_to_project",
            ),
            (
                "Member Hook",
                "member_access_request_to_group",
                "user_access_request_to_group",
            ),
            ("Wiki Page Hook", "wiki_page", "wiki_page"),
        ];
        for (header, name, kind) in cases {
            let parsed = gitlab::payload::parse(Some(header), &data("gitlab", name)).unwrap();
            assert_eq!(
                parsed,
                Parsed {
                    kind: kind.into(),
                    event: None
                },
                "{name}"
            );
        }
        let note =
            br#"{"object_kind":"note","event_type":"note","object_attributes":{"note":"hi"}}"#;
        assert_eq!(
            gitlab::payload::parse(Some("Note Hook"), note).unwrap(),
            Parsed::ignored("note")
        );
        let pipeline = br#"{"object_kind":"pipeline","object_attributes":{"id":31}}"#;
        assert_eq!(
            gitlab::payload::parse(Some("Pipeline Hook"), pipeline)
                .unwrap()
                .kind,
            "pipeline"
        );
        // A kind that is not a tidy label does not leak into metrics.
        let odd = br#"{"object_kind":"Drop Table; --"}"#;
        assert_eq!(
            gitlab::payload::parse(None, odd).unwrap(),
            Parsed::ignored("unknown")
        );
    }

    #[test]
    fn gitlab_body_wins_over_header() {
        // A merge request body under a push header is still a merge request.
        let ev = gl("Push Hook", &data("gitlab", "merge_request"));
        assert_eq!(ev.kind(), "merge_request");
    }
}
