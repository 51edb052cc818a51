//! GitHub webhook payloads.
//!
//! Serde structs for the parts of GitHub's documented webhook payloads that nbforge
//! consumes (`push`, `create`, `delete`, `pull_request`, `member`, `membership`, `fork`),
//! and [`parse`], which turns one delivery into forge-neutral [`crate::events`].
//!
//! These are plain serde structs rather than octocrab's `WebhookEvent` types: octocrab
//! decodes whole payloads into strict models (timestamps, URLs, closed action enums), so a
//! new pull request action or an odd field elsewhere in the body fails the delivery, and
//! its `member` / `membership` payloads are untyped `serde_json::Value` trees. Here only the
//! fields nbforge reads are decoded and everything else is skipped without being copied.
//!
//! Mapping: a push to `refs/heads/X` is a [`PushEvent`]; a push to `refs/tags/X`, and a
//! `delete` with `ref_type: tag`, are [`TagPushEvent`]s (GitHub sends both a `push` and a
//! `delete` for a deleted tag, so a deletion may arrive twice). `create` is ignored, for
//! tags as for branches: it carries no sha, and the `push` that comes with it does.
//! Branch `delete` is ignored too: its `push` says the same. `member` (repository collaborators) gives a
//! project-scoped [`MemberEvent`], `membership` (team members) a group-scoped one with
//! path `org/team-slug`, and `fork` a [`ProjectAction::Forked`].

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::events::{
    Actor, Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestAction,
    MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectEvent, ProjectRef, PushEvent,
    TagPushEvent, check_object, decode, is_zero_sha, missing,
};

/// `event_header` is X-GitHub-Event ("push", "create", "delete", "pull_request", "member", "membership", "ping", ...).
pub fn parse(event_header: Option<&str>, body: &[u8]) -> Result<Parsed, PayloadError> {
    check_object(body)?;
    let header = event_header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(PayloadError::MissingHeader {
            header: "X-GitHub-Event",
        })?;
    match header {
        "push" => parse_push(body),
        "create" => parse_ref_event(body, false),
        "delete" => parse_ref_event(body, true),
        "pull_request" => parse_pull_request(body),
        "member" => parse_member(body),
        "membership" => parse_membership(body),
        "fork" => parse_fork(body),
        other => {
            // Still reject malformed JSON for kinds nbforge ignores.
            decode::<IgnoredAny>("GitHub", body)?;
            Ok(Parsed::ignored(other))
        }
    }
}

/// GitLab-like access level for a GitHub repository role or permission:
///
/// | GitHub | level | GitLab role |
/// | --- | --- | --- |
/// | `read`, `pull`, `triage` | 20 | Reporter |
/// | `write`, `push` | 30 | Developer |
/// | `maintain` | 40 | Maintainer |
/// | `admin` | 50 | Owner |
///
/// `triage` can manage issues but not push, so it reads like Reporter. Custom repository
/// roles give `None`.
pub fn access_level_from_permission(permission: &str) -> Option<i64> {
    let level = match permission.trim().to_ascii_lowercase().as_str() {
        "read" | "pull" | "triage" => 20,
        "write" | "push" => 30,
        "maintain" => 40,
        "admin" => 50,
        _ => return None,
    };
    Some(level)
}

#[derive(Deserialize)]
struct WireRepository {
    id: Option<i64>,
    full_name: Option<String>,
    html_url: Option<String>,
    clone_url: Option<String>,
    default_branch: Option<String>,
}

impl WireRepository {
    fn into_ref(self) -> Option<ProjectRef> {
        Some(ProjectRef {
            forge: ForgeKind::GitHub,
            id: self.id,
            path: self.full_name?,
            web_url: self.html_url,
            git_http_url: self.clone_url,
            default_branch: self.default_branch,
        })
    }
}

fn repository(
    payload: &'static str,
    field: &str,
    repo: Option<WireRepository>,
) -> Result<ProjectRef, PayloadError> {
    repo.and_then(WireRepository::into_ref)
        .ok_or_else(|| missing(payload, &format!("{field}.full_name")))
}

#[derive(Deserialize)]
struct WireUser {
    id: Option<i64>,
    login: Option<String>,
    name: Option<String>,
}

impl WireUser {
    fn into_actor(self) -> Option<Actor> {
        Actor::from_parts(self.id, self.login, self.name)
    }
}

#[derive(Deserialize)]
struct WirePusher {
    name: Option<String>,
}

#[derive(Deserialize)]
struct WirePush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    before: Option<String>,
    after: Option<String>,
    created: Option<bool>,
    deleted: Option<bool>,
    /// Only counted; zero-sized elements, nothing is kept.
    commits: Option<Vec<IgnoredAny>>,
    repository: Option<WireRepository>,
    sender: Option<WireUser>,
    pusher: Option<WirePusher>,
}

fn parse_push(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitHub push";
    let w: WirePush = decode(P, body)?;
    let git_ref = w.git_ref.ok_or_else(|| missing(P, "ref"))?;
    let before = w.before.ok_or_else(|| missing(P, "before"))?;
    let after = w.after.ok_or_else(|| missing(P, "after"))?;
    let project = repository(P, "repository", w.repository)?;
    let actor = w.sender.and_then(WireUser::into_actor).or_else(|| {
        w.pusher.and_then(|p| p.name).map(|name| Actor {
            id: None,
            username: Some(name),
            name: None,
        })
    });
    let created = w.created.unwrap_or_else(|| is_zero_sha(&before));
    let deleted = w.deleted.unwrap_or_else(|| is_zero_sha(&after));

    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        return Ok(Parsed::event(Event::Push(PushEvent {
            project,
            branch: branch.to_owned(),
            before,
            after,
            created,
            deleted,
            actor,
            total_commits: w
                .commits
                .map(|c| i64::try_from(c.len()).unwrap_or(i64::MAX)),
        })));
    }
    if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        return Ok(Parsed::event(Event::TagPush(TagPushEvent {
            project,
            tag: tag.to_owned(),
            commit: (!deleted && !is_zero_sha(&after)).then_some(after),
            deleted,
            actor,
        })));
    }
    Ok(Parsed::ignored("push"))
}

/// `create` and `delete` events.
#[derive(Deserialize)]
struct WireRefEvent {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    ref_type: Option<String>,
    repository: Option<WireRepository>,
    sender: Option<WireUser>,
}

fn parse_ref_event(body: &[u8], deleted: bool) -> Result<Parsed, PayloadError> {
    let (p, kind): (&'static str, &str) = if deleted {
        ("GitHub delete", "delete")
    } else {
        ("GitHub create", "create")
    };
    let w: WireRefEvent = decode(p, body)?;
    if !deleted || w.ref_type.as_deref() != Some("tag") {
        // Created refs, deleted branches (and repositories): the accompanying push
        // covers them, with the sha that `create` lacks.
        return Ok(Parsed::ignored(kind));
    }
    let git_ref = w.git_ref.ok_or_else(|| missing(p, "ref"))?;
    let tag = git_ref.strip_prefix("refs/tags/").unwrap_or(&git_ref);
    Ok(Parsed::event(Event::TagPush(TagPushEvent {
        project: repository(p, "repository", w.repository)?,
        tag: tag.to_owned(),
        commit: None,
        deleted,
        actor: w.sender.and_then(WireUser::into_actor),
    })))
}

#[derive(Deserialize)]
struct WireBranch {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    /// `null` when the source repository was deleted.
    repo: Option<WireRepository>,
}

#[derive(Deserialize)]
struct WirePull {
    title: Option<String>,
    state: Option<String>,
    html_url: Option<String>,
    merged: Option<bool>,
    merge_commit_sha: Option<String>,
    head: Option<WireBranch>,
    base: Option<WireBranch>,
}

#[derive(Deserialize)]
struct WirePullRequestEvent {
    action: Option<String>,
    number: Option<i64>,
    pull_request: Option<WirePull>,
    repository: Option<WireRepository>,
    sender: Option<WireUser>,
}

fn parse_pull_request(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitHub pull_request";
    let w: WirePullRequestEvent = decode(P, body)?;
    let pr = w.pull_request.ok_or_else(|| missing(P, "pull_request"))?;
    let head = pr.head.ok_or_else(|| missing(P, "pull_request.head"))?;
    let base = pr.base.ok_or_else(|| missing(P, "pull_request.base"))?;
    let merged = pr.merged.unwrap_or(false);
    let project = match w.repository {
        Some(repo) => repository(P, "repository", Some(repo))?,
        None => repository(P, "pull_request.base.repo", base.repo)?,
    };
    let source_project = head
        .repo
        .and_then(WireRepository::into_ref)
        .unwrap_or_else(|| project.clone());
    let raw_action = w.action.unwrap_or_default();
    let action = match raw_action.as_str() {
        "opened" => MergeRequestAction::Open,
        "reopened" => MergeRequestAction::Reopen,
        "synchronize" | "edited" => MergeRequestAction::Update,
        "closed" if merged => MergeRequestAction::Merge,
        "closed" => MergeRequestAction::Close,
        _ => MergeRequestAction::Other(raw_action.clone()),
    };
    let state = match pr.state.as_deref() {
        Some("open") => "opened".to_owned(),
        Some("closed") if merged => "merged".to_owned(),
        Some(other) => other.to_owned(),
        None => return Err(missing(P, "pull_request.state")),
    };
    Ok(Parsed::event(Event::MergeRequest(MergeRequestEvent {
        project,
        source_project,
        iid: w.number.ok_or_else(|| missing(P, "number"))?,
        action,
        title: pr.title.ok_or_else(|| missing(P, "pull_request.title"))?,
        state,
        source_branch: head
            .git_ref
            .ok_or_else(|| missing(P, "pull_request.head.ref"))?,
        target_branch: base
            .git_ref
            .ok_or_else(|| missing(P, "pull_request.base.ref"))?,
        head_sha: head
            .sha
            .ok_or_else(|| missing(P, "pull_request.head.sha"))?,
        // Before merging, GitHub fills this with a test merge commit; only report real ones.
        merge_commit_sha: pr.merge_commit_sha.filter(|_| merged),
        url: pr.html_url,
        actor: w.sender.and_then(WireUser::into_actor),
        new_commits: raw_action == "synchronize",
    })))
}

#[derive(Deserialize)]
struct WireChangeTo {
    to: Option<String>,
}

#[derive(Deserialize)]
struct WireMemberChanges {
    role_name: Option<WireChangeTo>,
    permission: Option<WireChangeTo>,
}

#[derive(Deserialize)]
struct WireMember {
    action: Option<String>,
    member: Option<WireUser>,
    changes: Option<WireMemberChanges>,
    repository: Option<WireRepository>,
}

fn parse_member(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitHub member";
    let w: WireMember = decode(P, body)?;
    let action = match w.action.as_deref() {
        Some("added") => MemberAction::Added,
        Some("edited") => MemberAction::Updated,
        Some("removed") => MemberAction::Removed,
        _ => return Ok(Parsed::ignored("member")),
    };
    let repo = repository(P, "repository", w.repository)?;
    let user = w
        .member
        .and_then(WireUser::into_actor)
        .ok_or_else(|| missing(P, "member"))?;
    // `role_name` gives the full role (incl. maintain / triage); `permission` is the legacy
    // field that folds maintain into write and triage into read.
    let access_level = match (&action, w.changes) {
        (MemberAction::Removed, _) | (_, None) => None,
        (_, Some(c)) => c
            .role_name
            .and_then(|r| r.to)
            .and_then(|r| access_level_from_permission(&r))
            .or_else(|| {
                c.permission
                    .and_then(|p| p.to)
                    .and_then(|p| access_level_from_permission(&p))
            }),
    };
    Ok(Parsed::event(Event::Member(MemberEvent {
        action,
        scope: MemberScope::Project {
            id: repo.id,
            path: repo.path,
        },
        user,
        access_level,
        expires_at: None,
    })))
}

#[derive(Deserialize)]
struct WireTeam {
    id: Option<i64>,
    slug: Option<String>,
}

#[derive(Deserialize)]
struct WireOrganization {
    login: Option<String>,
}

#[derive(Deserialize)]
struct WireMembership {
    action: Option<String>,
    scope: Option<String>,
    member: Option<WireUser>,
    team: Option<WireTeam>,
    organization: Option<WireOrganization>,
}

fn parse_membership(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitHub membership";
    let w: WireMembership = decode(P, body)?;
    let action = match w.action.as_deref() {
        Some("added") => MemberAction::Added,
        Some("removed") => MemberAction::Removed,
        _ => return Ok(Parsed::ignored("membership")),
    };
    if w.scope.as_deref().is_some_and(|s| s != "team") {
        return Ok(Parsed::ignored("membership"));
    }
    let team = w.team.ok_or_else(|| missing(P, "team"))?;
    let slug = team.slug.ok_or_else(|| missing(P, "team.slug"))?;
    let org = w
        .organization
        .and_then(|o| o.login)
        .ok_or_else(|| missing(P, "organization.login"))?;
    let user = w
        .member
        .and_then(WireUser::into_actor)
        .ok_or_else(|| missing(P, "member"))?;
    Ok(Parsed::event(Event::Member(MemberEvent {
        action,
        scope: MemberScope::Group {
            id: team.id,
            path: format!("{org}/{slug}"),
        },
        user,
        // A team membership carries no role of its own.
        access_level: None,
        expires_at: None,
    })))
}

#[derive(Deserialize)]
struct WireFork {
    forkee: Option<WireRepository>,
    repository: Option<WireRepository>,
}

fn parse_fork(body: &[u8]) -> Result<Parsed, PayloadError> {
    const P: &str = "GitHub fork";
    let w: WireFork = decode(P, body)?;
    Ok(Parsed::event(Event::Project(ProjectEvent {
        action: ProjectAction::Forked {
            from: repository(P, "repository", w.repository)?,
        },
        project: repository(P, "forkee", w.forkee)?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions() {
        assert_eq!(access_level_from_permission("read"), Some(20));
        assert_eq!(access_level_from_permission("pull"), Some(20));
        assert_eq!(access_level_from_permission("triage"), Some(20));
        assert_eq!(access_level_from_permission("write"), Some(30));
        assert_eq!(access_level_from_permission("push"), Some(30));
        assert_eq!(access_level_from_permission("maintain"), Some(40));
        assert_eq!(access_level_from_permission("admin"), Some(50));
        assert_eq!(access_level_from_permission("security-reviewer"), None);
    }

    #[test]
    fn missing_header_is_an_error() {
        assert_eq!(
            parse(None, b"{}").unwrap_err(),
            PayloadError::MissingHeader {
                header: "X-GitHub-Event"
            }
        );
        assert_eq!(
            parse(Some("  "), b"{}").unwrap_err(),
            PayloadError::MissingHeader {
                header: "X-GitHub-Event"
            }
        );
    }

    #[test]
    fn branch_create_is_ignored() {
        let body = br#"{"ref":"dev","ref_type":"branch","repository":{"full_name":"a/b"}}"#;
        assert_eq!(
            parse(Some("create"), body).unwrap(),
            Parsed::ignored("create")
        );
        assert_eq!(
            parse(Some("delete"), body).unwrap(),
            Parsed::ignored("delete")
        );
    }

    #[test]
    fn member_role_name_wins_over_permission() {
        let body = br#"{"action":"added","member":{"id":1,"login":"u"},
            "changes":{"permission":{"to":"write"},"role_name":{"to":"maintain"}},
            "repository":{"id":9,"full_name":"o/r"}}"#;
        let p = parse(Some("member"), body).unwrap();
        let Some(Event::Member(m)) = p.event else {
            panic!("{p:?}")
        };
        assert_eq!(m.access_level, Some(40));
        assert_eq!(
            m.scope,
            MemberScope::Project {
                id: Some(9),
                path: "o/r".into()
            }
        );
    }
}
