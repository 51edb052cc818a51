//! Webhook payload parsing: GitLab's and GitHub's documented example payloads
//! (`tests/data/gitlab`, `tests/data/github`) parse into the expected domain events, and
//! bad bodies give clear, body-free errors.

use nbforge::events::{
    Actor, Event, ForgeKind, MemberAction, MemberEvent, MemberScope, MergeRequestAction,
    MergeRequestEvent, Parsed, PayloadError, ProjectAction, ProjectEvent, ProjectRef, PushEvent,
    TagPushEvent,
};
use nbforge::forge::{github, gitlab};
use serde_json::{Value, json};

const ZERO: &str = "0000000000000000000000000000000000000000";

fn data(forge: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/{forge}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn value(forge: &str, name: &str) -> Value {
    serde_json::from_slice(&data(forge, name)).expect("test data is JSON")
}

fn set(mut v: Value, pointer: &str, new: Value) -> Value {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in test data")) = new;
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Parse a GitLab delivery that must yield an event; also checks the event survives a
/// serde round trip (events are stored as JSON in job rows).
fn gl(header: &str, body: &[u8]) -> Event {
    let parsed = gitlab::payload::parse(Some(header), body).expect("parses");
    event_of(parsed)
}

fn gh(header: &str, body: &[u8]) -> Event {
    let parsed = github::payload::parse(Some(header), body).expect("parses");
    event_of(parsed)
}

fn event_of(parsed: Parsed) -> Event {
    let event = parsed.event.clone().expect("an event, not an ignored kind");
    assert_eq!(parsed.kind, event.kind());
    let json = serde_json::to_string(&parsed).unwrap();
    let back: Parsed = serde_json::from_str(&json).unwrap();
    assert_eq!(back, parsed);
    event
}

fn gitlab_project(id: i64, path: &str, name: &str) -> ProjectRef {
    ProjectRef {
        forge: ForgeKind::GitLab,
        id: Some(id),
        path: path.into(),
        web_url: Some(format!("http://example.com/{name}")),
        git_http_url: Some(format!("http://example.com/{name}.git")),
        default_branch: Some("master".into()),
    }
}

fn bare_gitlab_project(id: i64, path: &str) -> ProjectRef {
    ProjectRef {
        forge: ForgeKind::GitLab,
        id: Some(id),
        path: path.into(),
        web_url: None,
        git_http_url: None,
        default_branch: None,
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

#[test]
fn gitlab_merge_request_hook() {
    let ev = gl("Merge Request Hook", &data("gitlab", "merge_request"));
    assert_eq!(ev, Event::MergeRequest(expected_gitlab_mr()));
    assert_eq!(ev.project_path(), Some("gitlabhq/gitlab-test"));
}

#[test]
fn gitlab_system_hook_merge_request() {
    let ev = gl("System Hook", &data("gitlab", "system_merge_request"));
    assert_eq!(ev, Event::MergeRequest(expected_gitlab_mr()));
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
    with_oldrev["object_attributes"]["oldrev"] = json!("95790bf891e76fee5e1747ab589903a6a1f80f22");
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
    v["object_attributes"]["merge_commit_sha"] = json!("82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
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
            bare_gitlab_project(74, "jsmith/storecloud"),
        ),
        (
            "system_project_destroy",
            ProjectAction::Destroyed,
            bare_gitlab_project(73, "jsmith/underscore"),
        ),
        (
            "system_project_rename",
            ProjectAction::Renamed {
                old_path: "jsmith/overscore".into(),
            },
            bare_gitlab_project(73, "jsmith/underscore"),
        ),
        (
            "system_project_transfer",
            ProjectAction::Transferred {
                old_path: "jsmith/overscore".into(),
            },
            bare_gitlab_project(73, "scores/underscore"),
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
fn gitlab_group_project_hooks() {
    assert_eq!(
        gl("Project Hook", &data("gitlab", "group_project_create")),
        Event::Project(ProjectEvent {
            action: ProjectAction::Created,
            project: bare_gitlab_project(22, "group1/project1"),
        })
    );
    assert_eq!(
        gl("Project Hook", &data("gitlab", "group_project_destroy")),
        Event::Project(ProjectEvent {
            action: ProjectAction::Destroyed,
            project: bare_gitlab_project(22, "group1/project1"),
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
        ("System Hook", "system_project_update", "project_update"),
        (
            "System Hook",
            "system_repository_update",
            "repository_update",
        ),
        ("System Hook", "system_user_create", "user_create"),
        ("System Hook", "system_group_rename", "group_rename"),
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
    let note = br#"{"object_kind":"note","event_type":"note","object_attributes":{"note":"hi"}}"#;
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

// ---------------------------------------------------------------- GitHub

fn hello_world() -> ProjectRef {
    ProjectRef {
        forge: ForgeKind::GitHub,
        id: Some(186853002),
        path: "Codertocat/Hello-World".into(),
        web_url: Some("https://github.com/Codertocat/Hello-World".into()),
        git_http_url: Some("https://github.com/Codertocat/Hello-World.git".into()),
        default_branch: Some("master".into()),
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

// ---------------------------------------------------------------- bad bodies

type ParseFn = fn(Option<&str>, &[u8]) -> Result<Parsed, PayloadError>;

const PARSERS: [(&str, ParseFn, &str); 2] = [
    ("Push Hook", gitlab::payload::parse, "gitlab"),
    ("push", github::payload::parse, "github"),
];

#[test]
fn empty_and_non_object_bodies() {
    for (header, parse, _) in PARSERS {
        assert_eq!(parse(Some(header), b""), Err(PayloadError::Empty));
        assert_eq!(parse(Some(header), b" \r\n "), Err(PayloadError::Empty));
        assert_eq!(
            parse(Some(header), br#"[{"object_kind":"push"}]"#),
            Err(PayloadError::NotAnObject)
        );
        assert_eq!(parse(Some(header), b"42"), Err(PayloadError::NotAnObject));
        assert_eq!(parse(Some(header), b"null"), Err(PayloadError::NotAnObject));
    }
}

#[test]
fn truncated_examples_are_malformed_with_position() {
    for (header, parse, forge) in PARSERS {
        let name = if forge == "gitlab" {
            "push"
        } else {
            "push_branch"
        };
        let body = data(forge, name);
        let cut = &body[..body.len() / 2];
        let err = parse(Some(header), cut).unwrap_err();
        let PayloadError::Malformed { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert!(*line > 1 && *column > 0, "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("line {line}")), "{text}");
        assert!(
            !text.contains("Diaspora") && !text.contains("Codertocat"),
            "{text}"
        );
    }
}

#[test]
fn trailing_garbage_is_malformed() {
    let mut body = data("gitlab", "push");
    body.extend_from_slice(b"\n{\"again\": 1}");
    assert!(matches!(
        gitlab::payload::parse(Some("Push Hook"), &body),
        Err(PayloadError::Malformed { .. })
    ));
}

#[test]
fn wrong_types_name_the_expectation_but_not_the_value() {
    let v = set(
        value("gitlab", "merge_request"),
        "/object_attributes/iid",
        json!("SECRET-TOKEN-VALUE, expected nothing"),
    );
    let err = gitlab::payload::parse(Some("Merge Request Hook"), &bytes(&v)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PayloadError::Invalid { .. }), "{err:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("GitLab merge_request"), "{text}");
    assert!(text.contains("i64"), "{text}");

    let v = set(value("github", "push_branch"), "/created", json!("yes"));
    let err = github::payload::parse(Some("push"), &bytes(&v)).unwrap_err();
    assert!(err.to_string().contains("expected a boolean"), "{err}");

    let v = set(
        value("gitlab", "push"),
        "/project",
        json!(["not", "an", "object"]),
    );
    assert!(gitlab::payload::parse(Some("Push Hook"), &bytes(&v)).is_err());
}

#[test]
fn missing_required_fields() {
    let mut v = value("gitlab", "push");
    v.as_object_mut().unwrap().remove("ref");
    assert_eq!(
        gitlab::payload::parse(Some("Push Hook"), &bytes(&v)),
        Err(PayloadError::MissingField {
            payload: "GitLab push",
            field: "ref".into()
        })
    );
    let v = set(value("gitlab", "tag_push"), "/project", Value::Null);
    assert_eq!(
        gitlab::payload::parse(Some("Tag Push Hook"), &bytes(&v))
            .unwrap_err()
            .to_string(),
        "GitLab push payload: missing field `project.path_with_namespace`"
    );
    let mut v = value("github", "pull_request_opened");
    v.as_object_mut().unwrap().remove("number");
    assert_eq!(
        github::payload::parse(Some("pull_request"), &bytes(&v)),
        Err(PayloadError::MissingField {
            payload: "GitHub pull_request",
            field: "number".into()
        })
    );
    let v = set(
        value("gitlab", "member_add_to_group"),
        "/group_path",
        Value::Null,
    );
    assert!(matches!(
        gitlab::payload::parse(Some("Member Hook"), &bytes(&v)),
        Err(PayloadError::MissingField { .. })
    ));
    assert!(matches!(
        github::payload::parse(Some("membership"), br#"{"action":"added","scope":"team"}"#),
        Err(PayloadError::MissingField { .. })
    ));
}

#[test]
fn deeply_nested_garbage_is_an_error_not_a_crash() {
    let depth = 100_000;
    let nested = |open: u8, close: u8, closed: bool| {
        let mut v = std::iter::repeat_n(open, depth).collect::<Vec<u8>>();
        if closed {
            v.extend(std::iter::repeat_n(close, depth));
        }
        v
    };
    let body = |prefix: &str, junk: Vec<u8>| {
        let mut b = prefix.as_bytes().to_vec();
        b.extend(junk);
        b.push(b'}');
        b
    };
    for (header, parse, _) in PARSERS {
        // Unbalanced: malformed, with a position.
        for prefix in [r#"{"object_kind":"push","junk":"#, r#"{"junk":"#] {
            let err = parse(Some(header), &body(prefix, nested(b'[', b']', false))).unwrap_err();
            assert!(matches!(err, PayloadError::Malformed { .. }), "{err:?}");
        }
        // Deep nesting where a field nbforge reads is expected: a type error.
        let err = parse(
            Some(header),
            &body(r#"{"object_kind":"push","ref":"#, nested(b'[', b']', true)),
        )
        .unwrap_err();
        assert!(matches!(err, PayloadError::Invalid { .. }), "{err:?}");
        // Deep but balanced junk in a field nbforge skips: skipped without recursion,
        // then the payload is judged on its own fields.
        let err = parse(
            Some(header),
            &body(r#"{"object_kind":"push","junk":"#, nested(b'[', b']', true)),
        )
        .unwrap_err();
        assert_eq!(
            err,
            PayloadError::MissingField {
                payload: if header == "push" {
                    "GitHub push"
                } else {
                    "GitLab push"
                },
                field: "ref".into()
            }
        );
    }
    let ignored = gitlab::payload::parse(
        Some("Pipeline Hook"),
        &body(
            r#"{"object_kind":"pipeline","junk":"#,
            nested(b'[', b']', true),
        ),
    )
    .unwrap();
    assert_eq!(ignored, Parsed::ignored("pipeline"));
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
