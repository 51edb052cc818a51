//! `GitLabForge` against the fake GitLab: statuses, notes, refs, files, members,
//! forks and merge requests, token checks, error mapping; and the fake's webhook
//! payload builders.

use nbforge::config::Secret;
use nbforge::forge::gitlab::GitLabForge;
use nbforge::forge::{CommitStatus, Forge, ForgeError, ProjectId, StatusState};

use crate::support::fake_gitlab::{FakeGitLab, MemberEvent, MrAction, SystemProjectEvent};

const ZERO: &str = "0000000000000000000000000000000000000000";

fn forge(fake: &FakeGitLab) -> GitLabForge {
    GitLabForge::new(&fake.url(), fake.token()).expect("forge builds")
}

fn status(state: StatusState, description: &str) -> CommitStatus {
    CommitStatus {
        state,
        name: "nbforge/environment".into(),
        ref_name: Some("main".into()),
        target_url: Some("https://nbforge.example.org/v2/gl/lab%2Fproj/main".into()),
        description: Some(description.into()),
    }
}

fn assert_no_token(err: &ForgeError, token: &str) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(token), "token leaked in error: {text}");
}

#[tokio::test]
async fn commit_status_is_recorded_with_its_fields() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(
        &project,
        "main",
        &[("requirements.txt", b"numpy\n")],
        "first",
    );
    let forge = forge(&fake);

    forge
        .set_commit_status(
            &project.project_path(),
            &sha,
            &status(StatusState::Pending, "building"),
        )
        .await
        .expect("pending status");
    forge
        .set_commit_status(
            &project.project_id(),
            &sha,
            &status(StatusState::Success, "ready"),
        )
        .await
        .expect("success status");

    let statuses = fake.statuses_for(&sha);
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0].state, "pending");
    assert_eq!(statuses[0].description.as_deref(), Some("building"));
    let last = &statuses[1];
    assert_eq!(last.state, "success");
    assert_eq!(last.name, "nbforge/environment");
    assert_eq!(last.ref_name.as_deref(), Some("main"));
    assert_eq!(
        last.target_url.as_deref(),
        Some("https://nbforge.example.org/v2/gl/lab%2Fproj/main")
    );
    assert_eq!(last.description.as_deref(), Some("ready"));
    assert_eq!(last.project_id, project.id);

    // The path form goes over the wire URL-encoded; the id form as a number.
    let paths: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        paths,
        vec![
            format!("/api/v4/projects/lab%2Fproj/statuses/{sha}"),
            format!("/api/v4/projects/{}/statuses/{sha}", project.id),
        ]
    );
}

#[tokio::test]
async fn repeating_an_active_status_is_not_an_error() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let forge = forge(&fake);
    let running = status(StatusState::Running, "building");

    forge
        .set_commit_status(&project.project_id(), &sha, &running)
        .await
        .expect("first running");
    // GitLab answers 400 "Cannot transition status via :run from :running" here.
    forge
        .set_commit_status(&project.project_id(), &sha, &running)
        .await
        .expect("second running is accepted as already done");
    assert_eq!(fake.statuses_for(&sha).len(), 1);
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2, "both calls reached GitLab");
}

#[tokio::test]
async fn long_status_descriptions_are_cut_to_gitlab_limit() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let long = "environment build failed: ".repeat(30);
    forge(&fake)
        .set_commit_status(
            &project.project_id(),
            &sha,
            &status(StatusState::Failed, &long),
        )
        .await
        .expect("status with long description");
    let recorded = fake.statuses_for(&sha)[0].description.clone().unwrap();
    assert!(recorded.len() <= 255, "{} bytes", recorded.len());
    assert!(recorded.starts_with("environment build failed"));
}

#[tokio::test]
async fn status_on_unknown_commit_is_not_found() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let err = forge(&fake)
        .set_commit_status(
            &project.project_id(),
            "1234567890123456789012345678901234567890",
            &status(StatusState::Pending, "x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn note_is_created_then_edited_in_place() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    fake.commit(&project, "feature", &[("b.txt", b"b")], "second");
    let mr = fake.open_merge_request(&project, "feature", &project, "main", "Add b");
    let human = fake.add_user("alice");
    fake.add_note(&project, mr.iid, &human, "Looks good");
    let forge = forge(&fake);
    let pid = project.project_path();

    let created = forge
        .create_merge_request_note(&pid, mr.iid, "Launch: building…")
        .await
        .expect("create note");
    assert_eq!(created.body, "Launch: building…");
    assert_eq!(created.author.as_deref(), Some("nbforge-bot"));

    let edited = forge
        .edit_merge_request_note(&pid, mr.iid, created.id, "Launch: ready")
        .await
        .expect("edit note");
    assert_eq!(edited.id, created.id);
    assert_eq!(edited.body, "Launch: ready");

    let bot_notes: Vec<_> = fake
        .notes_for(&project, mr.iid)
        .into_iter()
        .filter(|n| n.author == "nbforge-bot")
        .collect();
    assert_eq!(bot_notes.len(), 1, "editing must not add a note");
    assert_eq!(bot_notes[0].body, "Launch: ready");
    assert_eq!(bot_notes[0].edits, 1);

    let listed = forge
        .list_merge_request_notes(&pid, mr.iid)
        .await
        .expect("list notes");
    assert_eq!(listed.len(), 2);
    let mine: Vec<_> = listed
        .iter()
        .filter(|n| n.author.as_deref() == Some("nbforge-bot"))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, created.id);
    assert!(listed.iter().any(|n| n.author.as_deref() == Some("alice")));

    // Someone else's note cannot be edited with the bot's token.
    let human_note = listed
        .iter()
        .find(|n| n.author.as_deref() == Some("alice"))
        .unwrap();
    let err = forge
        .edit_merge_request_note(&pid, mr.iid, human_note.id, "hijack")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden(_)), "{err}");

    let err = forge
        .create_merge_request_note(&pid, mr.iid + 5, "nowhere")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn notes_are_listed_across_pages() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    fake.commit(&project, "main", &[("a.txt", b"1")], "one");
    fake.commit(&project, "feature", &[("b.txt", b"b")], "feature");
    let mr = fake.open_merge_request(&project, "feature", &project, "main", "Add b");
    let human = fake.add_user("alice");
    for i in 0..3 {
        fake.add_note(&project, mr.iid, &human, &format!("note {i}"));
    }

    // One item per page, so the list needs several requests.
    let forge = forge(&fake).with_page_size(1);
    let notes = forge
        .list_merge_request_notes(&project.project_path(), mr.iid)
        .await
        .expect("notes");
    let mut bodies: Vec<&str> = notes.iter().map(|n| n.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["note 0", "note 1", "note 2"]);
    let pages = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/notes"))
        .count();
    assert!(pages >= 3, "{pages} note requests");

    // A new note shows up on the next read.
    fake.add_note(&project, mr.iid, &human, "note 3");
    let notes = forge
        .list_merge_request_notes(&project.project_id(), mr.iid)
        .await
        .unwrap();
    assert_eq!(notes.len(), 4);
}

#[tokio::test]
async fn fetch_source_gives_a_fetchable_url_and_oauth2_credentials() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let source = forge(&fake)
        .fetch_source(&project.project_path())
        .await
        .expect("fetch source");
    assert_eq!(source.url, project.http_url_to_repo);
    let (user, token) = source.credentials.clone().expect("credentials");
    assert_eq!(user, "oauth2");
    assert_eq!(token.expose(), fake.token_str());
    assert!(!format!("{source:?}").contains(fake.token_str()));

    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(dir.path()).unwrap();
    repo.remote_anonymous(&source.url)
        .unwrap()
        .fetch(&["+refs/heads/main:refs/heads/main"], None, None)
        .expect("git fetch from the project URL");
    assert_eq!(
        repo.find_reference("refs/heads/main")
            .unwrap()
            .target()
            .unwrap()
            .to_string(),
        sha
    );
}

#[tokio::test]
async fn wrong_token_is_forbidden_and_never_echoed() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let wrong = "glpat-wrong-token-value";
    let forge = GitLabForge::new(&fake.url(), Secret::new(wrong)).unwrap();

    let errors = vec![
        forge.project(&project.project_path()).await.unwrap_err(),
        forge
            .set_commit_status(
                &project.project_id(),
                &sha,
                &status(StatusState::Pending, "x"),
            )
            .await
            .unwrap_err(),
        forge
            .list_merge_request_notes(&project.project_id(), 1)
            .await
            .unwrap_err(),
        forge.fetch_source(&project.project_id()).await.unwrap_err(),
        forge.check_token().await.unwrap_err(),
    ];
    for err in &errors {
        assert!(matches!(err, ForgeError::Forbidden(_)), "{err}");
        assert!(!err.is_transient());
        assert_no_token(err, wrong);
        assert_no_token(err, fake.token_str());
    }
    assert!(fake.statuses_for(&sha).is_empty());
}

#[tokio::test]
async fn outage_is_unavailable_and_transient() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let sha = fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let forge = forge(&fake);

    fake.set_down(true);
    let errors = vec![
        forge
            .set_commit_status(
                &project.project_id(),
                &sha,
                &status(StatusState::Pending, "x"),
            )
            .await
            .unwrap_err(),
        forge
            .list_merge_request_notes(&project.project_id(), 1)
            .await
            .unwrap_err(),
        forge
            .create_merge_request_note(&project.project_id(), 1, "x")
            .await
            .unwrap_err(),
        forge.fetch_source(&project.project_id()).await.unwrap_err(),
    ];
    for err in &errors {
        assert!(matches!(err, ForgeError::Unavailable(_)), "{err}");
        assert!(err.is_transient());
        assert_no_token(err, fake.token_str());
    }

    fake.set_down(false);
    forge
        .set_commit_status(
            &project.project_id(),
            &sha,
            &status(StatusState::Pending, "x"),
        )
        .await
        .expect("works again once GitLab is back");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    // Bind then drop a listener: nothing answers on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let forge = GitLabForge::new(&url, Secret::new("glpat-unreachable")).unwrap();
    let err = forge.project(&ProjectId::Id(1)).await.unwrap_err();
    assert!(matches!(err, ForgeError::Unavailable(_)), "{err}");
    assert!(err.is_transient());
    assert_no_token(&err, "glpat-unreachable");
}

#[tokio::test]
async fn unknown_things_are_not_found() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    fake.commit(&project, "main", &[("a.txt", b"a")], "first");
    let forge = forge(&fake);

    let errors = vec![
        forge
            .project(&ProjectId::Path("lab/missing".into()))
            .await
            .unwrap_err(),
        forge.project(&ProjectId::Id(9999)).await.unwrap_err(),
        forge
            .list_merge_request_notes(&project.project_id(), 1)
            .await
            .unwrap_err(),
        forge
            .fetch_source(&ProjectId::Path("lab/missing".into()))
            .await
            .unwrap_err(),
    ];
    for err in &errors {
        assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
        assert!(!err.is_transient());
        assert_no_token(err, fake.token_str());
    }

    let info = forge
        .project(&project.project_path())
        .await
        .expect("project");
    assert_eq!(info.id, project.id);
    assert_eq!(info.path_with_namespace, "lab/proj");
    assert_eq!(info.web_url, project.web_url);
    assert_eq!(info.default_branch.as_deref(), Some("main"));
}

#[tokio::test]
async fn check_token_reports_user_and_scopes() {
    let fake = FakeGitLab::start().await;
    let forge = forge(&fake);

    let info = forge.check_token().await.expect("token info");
    assert_eq!(info.username, "nbforge-bot");
    assert_eq!(info.user_id, fake.bot().id);
    assert_eq!(info.scopes.as_deref(), Some(&["api".to_owned()][..]));
    assert!(info.is_ok(), "{:?}", info.problems);

    fake.set_token_scopes(Some(&["read_api", "read_repository"]));
    let info = forge.check_token().await.expect("token info");
    assert!(!info.is_ok());
    assert!(
        info.problems
            .iter()
            .any(|p| p.contains("`api` scope") && p.contains("read_api")),
        "{:?}",
        info.problems
    );

    fake.set_token_scopes(None);
    let info = forge
        .check_token()
        .await
        .expect("token info without scopes");
    assert_eq!(info.scopes, None);
    assert_eq!(info.username, "nbforge-bot");
}

#[tokio::test]
async fn push_and_tag_payloads_come_from_real_git() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    let one = fake.commit(&project, "main", &[("a.txt", b"1")], "one");
    let two = fake.commit(
        &project,
        "main",
        &[("a.txt", b"2"), ("b.txt", b"b")],
        "two\n\nbody",
    );
    let three = fake.commit(&project, "main", &[("c/d.txt", b"d")], "three");

    let hook = fake.push_payload(&project, "main", &one, &three);
    assert_eq!(hook.event, "Push Hook");
    let body = &hook.body;
    assert_eq!(body["object_kind"], "push");
    assert_eq!(body["ref"], "refs/heads/main");
    assert_eq!(body["before"], one.as_str());
    assert_eq!(body["after"], three.as_str());
    assert_eq!(body["checkout_sha"], three.as_str());
    assert_eq!(body["project_id"], project.id);
    assert_eq!(body["project"]["path_with_namespace"], "lab/proj");
    assert_eq!(
        body["project"]["git_http_url"],
        project.http_url_to_repo.as_str()
    );
    assert_eq!(body["user_username"], "root");
    assert_eq!(body["total_commits_count"], 2);
    let commits = body["commits"].as_array().unwrap();
    assert_eq!(commits[0]["id"], two.as_str(), "oldest first");
    assert_eq!(commits[0]["title"], "two");
    assert_eq!(commits[0]["added"], serde_json::json!(["b.txt"]));
    assert_eq!(commits[0]["modified"], serde_json::json!(["a.txt"]));
    assert_eq!(commits[1]["id"], three.as_str());
    assert_eq!(commits[1]["added"], serde_json::json!(["c/d.txt"]));

    let new_branch = fake.commit(&project, "topic", &[("t.txt", b"t")], "topic");
    let hook = fake.push_payload(&project, "topic", ZERO, &new_branch);
    assert_eq!(
        hook.body["total_commits_count"], 1,
        "only the commit new to the repo"
    );

    let deleted = fake.push_payload(&project, "topic", &new_branch, ZERO);
    assert_eq!(deleted.body["checkout_sha"], serde_json::Value::Null);
    assert_eq!(deleted.body["commits"], serde_json::json!([]));

    let tag_obj = fake.tag(&project, "v1.0", &two, Some("Release"));
    let hook = fake.tag_push_payload(&project, "v1.0", ZERO, &tag_obj);
    assert_eq!(hook.event, "Tag Push Hook");
    assert_eq!(hook.body["object_kind"], "tag_push");
    assert_eq!(hook.body["ref"], "refs/tags/v1.0");
    assert_eq!(hook.body["after"], tag_obj.as_str());
    assert_eq!(hook.body["checkout_sha"], two.as_str());
}

#[tokio::test]
async fn merge_request_member_and_system_payloads_follow_gitlab_shapes() {
    let fake = FakeGitLab::start().await;
    let project = fake.add_project("lab/proj");
    fake.commit(&project, "main", &[("a.txt", b"1")], "one");
    let tip = fake.commit(&project, "feature", &[("b.txt", b"2")], "two");
    let alice = fake.add_user("alice");
    fake.set_actor(&alice);
    let mr = fake.open_merge_request(&project, "feature", &project, "main", "Feature");

    for action in MrAction::ALL {
        let hook = fake.merge_request_payload(&mr, action, Some(ZERO));
        assert_eq!(hook.event, "Merge Request Hook");
        let attrs = &hook.body["object_attributes"];
        assert_eq!(hook.body["object_kind"], "merge_request");
        assert_eq!(attrs["action"], action.as_str());
        assert_eq!(attrs["iid"], mr.iid);
        assert_eq!(attrs["source_branch"], "feature");
        assert_eq!(attrs["target_project_id"], project.id);
        assert_eq!(attrs["last_commit"]["id"], tip.as_str());
        assert_eq!(attrs["oldrev"], ZERO);
        assert_eq!(hook.body["user"]["username"], "alice");
        let expected_state = match action {
            MrAction::Close => "closed",
            MrAction::Merge => "merged",
            _ => "opened",
        };
        assert_eq!(attrs["state"], expected_state);
    }

    fake.add_member("lab", &alice, 30);
    for (event, name) in [
        (MemberEvent::Add, "user_add_to_group"),
        (MemberEvent::Update, "user_update_for_group"),
        (MemberEvent::Remove, "user_remove_from_group"),
    ] {
        let hook = fake.member_payload("lab", &alice, 30, event);
        assert_eq!(hook.event, "Member Hook");
        assert_eq!(hook.body["event_name"], name);
        assert_eq!(hook.body["group_path"], "lab");
        assert_eq!(hook.body["group_id"], fake.group("lab").unwrap().id);
        assert_eq!(hook.body["user_username"], "alice");
        assert_eq!(hook.body["user_id"], alice.id);
        assert_eq!(hook.body["group_access"], "Developer");
    }

    let created = fake.system_project_payload(&project, SystemProjectEvent::Create);
    assert_eq!(created.event, "System Hook");
    assert_eq!(created.body["event_name"], "project_create");
    assert_eq!(created.body["project_id"], project.id);
    assert_eq!(created.body["path_with_namespace"], "lab/proj");

    let renamed = fake.move_project(&project, "lab/proj2");
    let hook = fake.system_project_payload(
        &renamed,
        SystemProjectEvent::Rename {
            old_path_with_namespace: "lab/proj".into(),
        },
    );
    assert_eq!(hook.body["event_name"], "project_rename");
    assert_eq!(hook.body["path_with_namespace"], "lab/proj2");
    assert_eq!(hook.body["old_path_with_namespace"], "lab/proj");

    let moved = fake.move_project(&renamed, "archive/proj2");
    let hook = fake.system_project_payload(
        &moved,
        SystemProjectEvent::Transfer {
            old_path_with_namespace: "lab/proj2".into(),
        },
    );
    assert_eq!(hook.body["event_name"], "project_transfer");
    assert_eq!(hook.body["path_with_namespace"], "archive/proj2");

    // The API follows the move: the old path is gone, the id still works.
    let forge = forge(&fake);
    let info = forge.project(&ProjectId::Id(project.id)).await.unwrap();
    assert_eq!(info.path_with_namespace, "archive/proj2");
    let err = forge
        .project(&ProjectId::Path("lab/proj".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)));

    fake.remove_project(&moved);
    let hook = fake.system_project_payload(&moved, SystemProjectEvent::Destroy);
    assert_eq!(hook.body["event_name"], "project_destroy");
    assert_eq!(hook.body["project_id"], project.id);
}
