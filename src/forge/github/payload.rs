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
    TagPushEvent, Visibility, check_object, commit_id, decode, is_zero_sha, missing,
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
    private: Option<bool>,
    /// `public`, `private` or (GitHub Enterprise) `internal`.
    visibility: Option<String>,
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
            visibility: match (self.visibility.as_deref(), self.private) {
                (Some(v), _) => Some(Visibility::parse(v)),
                (None, Some(true)) => Some(Visibility::Private),
                (None, Some(false)) => Some(Visibility::Public),
                (None, None) => None,
            },
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
    let before = commit_id(P, "before", w.before.ok_or_else(|| missing(P, "before"))?)?;
    let after = commit_id(P, "after", w.after.ok_or_else(|| missing(P, "after"))?)?;
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
        head_sha: commit_id(
            P,
            "pull_request.head.sha",
            head.sha
                .ok_or_else(|| missing(P, "pull_request.head.sha"))?,
        )?,
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

/// GitHub's documented example payloads (`tests/data/github`) parsed into domain events.
#[cfg(test)]
mod examples {
    use serde_json::{Value, json};

    use crate::events::testing::{ZERO, bytes, data, event_of, examples, set, value};
    use crate::events::{
        Actor, Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestAction,
        MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectRef, PushEvent,
        TagPushEvent,
    };
    use crate::forge::github;

    /// The `X-GitHub-Event` header GitHub sends with example `name`.
    fn header_for(name: &str) -> &'static str {
        match name {
            "create_tag" => "create",
            "delete_tag" => "delete",
            "fork" => "fork",
            "ping" => "ping",
            n if n.starts_with("membership_") => "membership",
            n if n.starts_with("member_") => "member",
            n if n.starts_with("pull_request_") => "pull_request",
            n if n.starts_with("push_") => "push",
            other => panic!("no header known for the example {other}"),
        }
    }

    /// Every example, parsed: reviewed snapshots in `snapshots/`.
    #[test]
    fn every_documented_example_parses() {
        let names = examples("github");
        assert!(names.len() >= 16, "{names:?}");
        for name in names {
            let parsed = github::payload::parse(Some(header_for(&name)), &data("github", &name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            insta::assert_json_snapshot!(name.as_str(), parsed);
        }
    }

    fn gh(header: &str, body: &[u8]) -> Event {
        event_of(github::payload::parse(Some(header), body).expect("parses"))
    }

    // ---------------------------------------------------------------- GitHub

    fn hello_world() -> ProjectRef {
        ProjectRef {
            forge: ForgeKind::GitHub,
            id: Some(186853002),
            path: "Codertocat/Hello-World".into(),
            web_url: Some("https://github.com/Codertocat/Hello-World".into()),
            git_http_url: Some("https://github.com/Codertocat/Hello-World.git".into()),
            default_branch: Some("master".into()),
            visibility: Some(crate::events::Visibility::Public),
        }
    }

    fn codertocat() -> Option<Actor> {
        Some(Actor {
            id: Some(21031067),
            username: Some("Codertocat".into()),
            name: None,
        })
    }

    const GH_SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    #[test]
    fn github_push_to_branch() {
        let raw = value("github", "push_branch");
        let commits = raw["commits"].as_array().unwrap().len() as i64;
        assert_eq!(
            gh("push", &data("github", "push_branch")),
            Event::Push(PushEvent {
                project: hello_world(),
                branch: "master".into(),
                before: ZERO.into(),
                after: GH_SHA.into(),
                created: true,
                deleted: false,
                actor: codertocat(),
                total_commits: Some(commits),
            })
        );
    }

    #[test]
    fn github_push_of_tags() {
        assert_eq!(
            gh("push", &data("github", "push_tag")),
            Event::TagPush(TagPushEvent {
                project: hello_world(),
                tag: "simple-tag".into(),
                commit: Some(GH_SHA.into()),
                deleted: false,
                actor: codertocat(),
            })
        );
        let Event::TagPush(e) = gh("push", &data("github", "push_tag_deleted")) else {
            panic!()
        };
        assert!(e.deleted);
        assert_eq!(e.commit, None);
        assert_eq!(e.tag, "simple-tag");
    }

    #[test]
    fn github_create_and_delete_tag() {
        // The `push` that comes with a new tag carries its sha; `create` has none.
        assert_eq!(
            github::payload::parse(Some("create"), &data("github", "create_tag")).unwrap(),
            Parsed::ignored("create")
        );

        let Event::TagPush(e) = gh("delete", &data("github", "delete_tag")) else {
            panic!()
        };
        assert_eq!(e.project, hello_world());
        assert_eq!(e.tag, "simple-tag");
        assert_eq!(e.commit, None);
        assert!(e.deleted);
        assert_eq!(e.actor, codertocat());
    }

    #[test]
    fn github_branch_create_is_ignored() {
        let v = set(value("github", "create_tag"), "/ref_type", json!("branch"));
        assert_eq!(
            github::payload::parse(Some("create"), &bytes(&v)).unwrap(),
            Parsed::ignored("create")
        );
    }

    fn expected_github_pr(action: MergeRequestAction, state: &str) -> MergeRequestEvent {
        MergeRequestEvent {
            project: hello_world(),
            source_project: hello_world(),
            iid: 2,
            action,
            title: "Update the README with new information.".into(),
            state: state.into(),
            source_branch: "changes".into(),
            target_branch: "master".into(),
            head_sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into(),
            merge_commit_sha: None,
            url: Some("https://github.com/Codertocat/Hello-World/pull/2".into()),
            actor: codertocat(),
            new_commits: false,
        }
    }

    #[test]
    fn github_pull_request_actions() {
        assert_eq!(
            gh("pull_request", &data("github", "pull_request_opened")),
            Event::MergeRequest(expected_github_pr(MergeRequestAction::Open, "opened"))
        );
        assert_eq!(
            gh("pull_request", &data("github", "pull_request_reopened")),
            Event::MergeRequest(expected_github_pr(MergeRequestAction::Reopen, "opened"))
        );
        assert_eq!(
            gh("pull_request", &data("github", "pull_request_synchronize")),
            Event::MergeRequest(MergeRequestEvent {
                new_commits: true,
                ..expected_github_pr(MergeRequestAction::Update, "opened")
            })
        );
        // Closed without merging: the example's merge_commit_sha is a test merge, not reported.
        assert_eq!(
            gh("pull_request", &data("github", "pull_request_closed")),
            Event::MergeRequest(expected_github_pr(MergeRequestAction::Close, "closed"))
        );
        assert_eq!(
            gh("pull_request", &data("github", "pull_request_labeled")),
            Event::MergeRequest(expected_github_pr(
                MergeRequestAction::Other("labeled".into()),
                "opened"
            ))
        );
    }

    #[test]
    fn github_pull_request_merged_and_edited() {
        let merged = set(
            value("github", "pull_request_closed"),
            "/pull_request/merged",
            json!(true),
        );
        assert_eq!(
            gh("pull_request", &bytes(&merged)),
            Event::MergeRequest(MergeRequestEvent {
                merge_commit_sha: Some("c4295bd74fb0f4fda03689c3df3f2803b658fd85".into()),
                ..expected_github_pr(MergeRequestAction::Merge, "merged")
            })
        );
        let edited = set(
            value("github", "pull_request_opened"),
            "/action",
            json!("edited"),
        );
        assert_eq!(
            gh("pull_request", &bytes(&edited)),
            Event::MergeRequest(expected_github_pr(MergeRequestAction::Update, "opened"))
        );
    }

    #[test]
    fn github_pull_request_from_a_fork_and_from_a_deleted_fork() {
        let v = value("github", "pull_request_opened");
        let fork = set(
            set(
                v.clone(),
                "/pull_request/head/repo/full_name",
                json!("octo/Hello-World"),
            ),
            "/pull_request/head/repo/id",
            json!(7),
        );
        let Event::MergeRequest(e) = gh("pull_request", &bytes(&fork)) else {
            panic!()
        };
        assert_eq!(e.source_project.path, "octo/Hello-World");
        assert_eq!(e.source_project.id, Some(7));
        assert_eq!(e.project.path, "Codertocat/Hello-World");

        let gone = set(v, "/pull_request/head/repo", Value::Null);
        let Event::MergeRequest(e) = gh("pull_request", &bytes(&gone)) else {
            panic!()
        };
        assert_eq!(e.source_project, hello_world());
    }

    #[test]
    fn github_collaborators() {
        let ev = gh("member", &data("github", "member_added"));
        assert_eq!(
            ev,
            Event::Member(MemberEvent {
                action: MemberAction::Added,
                scope: MemberScope::Project {
                    id: Some(186853002),
                    path: "Codertocat/Hello-World".into()
                },
                user: Actor {
                    id: Some(39652351),
                    username: Some("hacktocat".into()),
                    name: None,
                },
                access_level: None,
                expires_at: None,
            })
        );
        assert_eq!(ev.project_path(), Some("Codertocat/Hello-World"));

        let mut with_role = value("github", "member_added");
        with_role["changes"] = json!({"permission": {"to": "admin"}});
        let Event::Member(m) = gh("member", &bytes(&with_role)) else {
            panic!()
        };
        assert_eq!(m.access_level, Some(50));

        let Event::Member(m) = gh("member", &data("github", "member_edited")) else {
            panic!()
        };
        assert_eq!(m.action, MemberAction::Updated);
        assert_eq!(m.user.username.as_deref(), Some("octocat"));
        assert_eq!(m.user.id, Some(583231));
        assert_eq!(m.access_level, None, "only the old permission is given");

        let removed = set(value("github", "member_added"), "/action", json!("removed"));
        let Event::Member(m) = gh("member", &bytes(&removed)) else {
            panic!()
        };
        assert_eq!(m.action, MemberAction::Removed);
    }

    #[test]
    fn github_team_membership() {
        let expected = |action| {
            Event::Member(MemberEvent {
                action,
                scope: MemberScope::Group {
                    id: Some(3253328),
                    path: "Octocoders/github".into(),
                },
                user: codertocat().unwrap(),
                access_level: None,
                expires_at: None,
            })
        };
        assert_eq!(
            gh("membership", &data("github", "membership_added")),
            expected(MemberAction::Added)
        );
        assert_eq!(
            gh("membership", &data("github", "membership_removed")),
            expected(MemberAction::Removed)
        );
    }

    #[test]
    fn github_fork() {
        let Event::Project(p) = gh("fork", &data("github", "fork")) else {
            panic!()
        };
        assert_eq!(p.project.path, "Octocoders/Hello-World");
        assert_eq!(p.project.id, Some(186853261));
        assert_eq!(
            p.project.git_http_url.as_deref(),
            Some("https://github.com/Octocoders/Hello-World.git")
        );
        let ProjectAction::Forked { from } = p.action else {
            panic!()
        };
        assert_eq!(from.path, "Codertocat/Hello-World");
        assert_eq!(from.id, Some(186853002));
    }

    #[test]
    fn github_kinds_nbforge_ignores() {
        assert_eq!(
            github::payload::parse(Some("ping"), &data("github", "ping")).unwrap(),
            Parsed::ignored("ping")
        );
        assert_eq!(
            github::payload::parse(Some("star"), br#"{"action":"created"}"#).unwrap(),
            Parsed::ignored("star")
        );
        assert_eq!(
            github::payload::parse(Some("Weird Header!"), b"{}").unwrap(),
            Parsed::ignored("unknown")
        );
        // Ignored kinds still have to be valid JSON.
        assert!(matches!(
            github::payload::parse(Some("ping"), b"{\"zen\": }"),
            Err(PayloadError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn github_requires_the_event_header() {
        assert_eq!(
            github::payload::parse(None, &data("github", "push_branch")),
            Err(PayloadError::MissingHeader {
                header: "X-GitHub-Event"
            })
        );
    }

    #[test]
    fn big_bodies_parse() {
        // A push with many commits, each with a long message: parsed, counted, nothing kept.
        let mut v = value("github", "push_branch");
        let commit = v["commits"][0].clone();
        let mut big = commit.clone();
        big["message"] = json!("x".repeat(64 * 1024));
        v["commits"] = Value::Array(vec![big; 200]);
        let body = bytes(&v);
        assert!(body.len() > 10 * 1024 * 1024);
        let Event::Push(e) = gh("push", &body) else {
            panic!()
        };
        assert_eq!(e.total_commits, Some(200));
    }
}
