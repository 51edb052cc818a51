//! GitHub end to end: signed deliveries shaped like GitHub's, the GitHub forge on
//! octocrab against the fake GitHub, and what it was told (commit statuses, the one
//! pull request comment), plus the forge's own error mapping.

use axum::http::StatusCode;
use nbforge::config::Secret;
use nbforge::forge::github::GitHubForge;
use nbforge::forge::{CommitStatus, Forge, ForgeError, ProjectId, StatusState};

use crate::catalog::release_files;
use crate::support::Backend;
use crate::support::fake_github::{BOT_LOGIN, FakeGitHub};
use crate::support::scenario::Scenario;

const NOTEBOOK: &[u8] = br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;

/// Every file under `dir`, read as text where it is text.
fn all_text_under(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_ends_with_a_success_status() {
    let t = Scenario::github(Backend::Sqlite)
        .await
        .expect("SQLite")
        .with_environments();
    if !t.docker_ready().await {
        return;
    }
    // No dependencies: the environment is the base one, cached after the first build.
    let sha = t
        .push("octo-lab/cells", &[("analysis.ipynb", NOTEBOOK)])
        .await;
    t.run_jobs().await;
    let states: Vec<String> = t.statuses(&sha).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states.first().map(String::as_str),
        Some("pending"),
        "{states:?}"
    );
    assert_eq!(
        states.last().map(String::as_str),
        Some("success"),
        "{states:?}"
    );
    let token = t.github_fake().token_str().to_owned();
    assert!(!all_text_under(&t.app.app.settings.data_dir).contains(&token));
}

crate::on_both_databases!(
    a_spec_error_on_github_is_a_failure_status_and_the_token_stays_out_of_sight,
    |backend: Backend| async move {
        let Some(t) = Scenario::github(backend).await else {
            return;
        };
        let t = t.with_environments();
        let sha = t
            .push(
                "octo-lab/broken",
                &[
                    ("launch.toml", b"kind = \"notebook\"\ncolour = \"blue\"\n"),
                    ("requirements.txt", b"numpy\n"),
                ],
            )
            .await;
        t.run_jobs().await;
        // Fetched into the mirror with the token, then read: GitHub's words for the states.
        t.expect_statuses(&sha, &["pending", "failure"]);
        let (_, description) = t.last_status(&sha);
        assert!(description.contains("launch.toml:2:1"), "{description}");
        assert!(description.contains("colour"), "{description}");
        let fake = t.github_fake();
        let status = fake.statuses_for(&sha).pop().unwrap();
        assert_eq!(status.repo, "octo-lab/broken");
        // The token went in the Authorization header, nowhere else.
        let token = fake.token_str().to_owned();
        assert!(!all_text_under(&t.app.app.settings.data_dir).contains(&token));
        for job in t.db().list_jobs(None, 20).await.unwrap() {
            assert!(!job.last_error.unwrap_or_default().contains(&token));
        }
        assert!(fake.requests().iter().all(
            |r| !r.path.contains(&token) && !r.query.as_deref().unwrap_or("").contains(&token)
        ));
    }
);

crate::on_both_databases!(
    a_pull_request_gets_one_comment_that_follows_synchronize,
    |backend: Backend| async move {
        // The comment does not wait for the image; an absent engine keeps this test
        // independent of Docker.
        let Some(t) = Scenario::github_with(backend, |s| {
            s.environments.enabled = true;
            s.environments.docker_host = Some("unix:///nonexistent/docker.sock".into());
            s.jobs.max_attempts = 1;
        })
        .await
        else {
            return;
        };
        t.push("octo-lab/pr-demo", &[("requirements.txt", b"tomli-w\n")])
            .await;
        let mr = t
            .open_mr(
                "octo-lab/pr-demo",
                "changes",
                &[("a.ipynb", NOTEBOOK)],
                "My analysis",
            )
            .await;
        t.run_jobs().await;
        let notes = t.notes(&mr);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let fake = t.github_fake();
        let first = fake.comments_for(&fake.repo("octo-lab/pr-demo").unwrap(), mr.iid());
        assert_eq!(first[0].author, BOT_LOGIN);

        // Someone else comments; nbforge's comment is still found by its marker.
        fake.add_comment(
            &fake.repo("octo-lab/pr-demo").unwrap(),
            mr.iid(),
            "alice",
            "Looks good",
        );
        let mut head = String::new();
        for i in 0..2 {
            head = t
                .update_mr(&mr, &[("a.ipynb", format!("{{\"v\": {i}}}").as_bytes())])
                .await;
            t.run_jobs().await;
        }
        let comments = fake.comments_for(&fake.repo("octo-lab/pr-demo").unwrap(), mr.iid());
        let ours: Vec<_> = comments.iter().filter(|c| c.author == BOT_LOGIN).collect();
        assert_eq!(ours.len(), 1, "{comments:?}");
        assert_eq!(ours[0].id, first[0].id, "edited in place");
        assert_eq!(ours[0].edits, 2);
        assert!(ours[0].body.contains(&head[..8]), "{}", ours[0].body);
        assert!(ours[0].body.contains("badge_logo.svg"));

        t.merge_mr(&mr).await;
        t.run_jobs().await;
        let notes = t.notes(&mr);
        assert_eq!(notes.len(), 2, "ours and alice's: {notes:?}");
        assert!(notes[0].contains("merged"), "{}", notes[0]);
    }
);

crate::on_both_databases!(
    a_github_tag_publishes_worksheets,
    |backend: Backend| async move {
        let Some(t) = Scenario::github(backend).await else {
            return;
        };
        t.push("octo-lab/growth", &release_files()).await;
        // GitHub sends both a `push` and a `create` for a new tag: published once, and
        // the `create` (which has no sha) does not withdraw it.
        t.tag("octo-lab/growth", "v1").await;
        t.run_jobs().await;
        let page = t.get("/w/octo-lab/growth").await;
        assert_eq!(page.status, StatusCode::OK);
        let text = page.text();
        assert!(
            text.contains("Growth curve") && text.contains("v1</a> (newest)"),
            "{text}"
        );
        assert_eq!(text.matches("v1</a>").count(), 1, "{text}");
        assert_eq!(
            t.get("/w/octo-lab/growth/v1/growth.ipynb").await.status,
            StatusCode::OK
        );

        t.delete_tag("octo-lab/growth", "v1").await;
        t.run_jobs().await;
        assert_eq!(
            t.get("/w/octo-lab/growth/v1/growth.ipynb").await.status,
            StatusCode::NOT_FOUND
        );
    }
);

fn status(state: StatusState, description: &str) -> CommitStatus {
    CommitStatus {
        state,
        name: "nbforge/environment".into(),
        ref_name: Some("main".into()),
        target_url: Some("https://nbforge.example.org/build/1".into()),
        description: Some(description.into()),
    }
}

#[tokio::test]
async fn the_forge_speaks_githubs_rest_api() {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo/cells");
    let sha = fake.commit(&repo, "main", &[("a.txt", b"a")], "first");
    let pull = fake.open_pull(&repo, &repo, "main", "main", "PR");
    let forge = GitHubForge::new(Some(fake.url()), fake.token()).unwrap();
    let by_id = ProjectId::Id(repo.id);
    let by_path = ProjectId::Path("octo/cells".into());

    // Statuses: GitHub's states, its 140-character descriptions.
    forge
        .set_commit_status(
            &by_id,
            &sha,
            &status(StatusState::Running, &"y".repeat(300)),
        )
        .await
        .expect("status");
    forge
        .set_commit_status(&by_path, &sha, &status(StatusState::Failed, "no"))
        .await
        .expect("status");
    let got = fake.statuses_for(&sha);
    assert_eq!(
        got.iter().map(|s| s.state.as_str()).collect::<Vec<_>>(),
        ["pending", "failure"]
    );
    assert_eq!(got[0].context, "nbforge/environment");
    let description = got[0].description.as_deref().unwrap();
    assert!(description.chars().count() <= 140, "{description}");
    assert!(description.ends_with('…'), "{description}");
    assert_eq!(
        got[0].target_url.as_deref(),
        Some("https://nbforge.example.org/build/1")
    );
    let err = forge
        .set_commit_status(&by_id, &"f".repeat(40), &status(StatusState::Pending, "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ForgeError::Rejected(_)) && err.is_permanent(),
        "an unknown commit is refused, not retried: {err}"
    );

    // Comments, listed across pages.
    for i in 0..120 {
        fake.add_comment(&repo, pull.number, "alice", &format!("comment {i}"));
    }
    let note = forge
        .create_merge_request_note(&by_id, pull.number, "building")
        .await
        .unwrap();
    assert_eq!(note.author.as_deref(), Some(BOT_LOGIN));
    let edited = forge
        .edit_merge_request_note(&by_id, pull.number, note.id, "ready")
        .await
        .unwrap();
    assert_eq!(edited.id, note.id);
    let notes = forge
        .list_merge_request_notes(&by_path, pull.number)
        .await
        .unwrap();
    assert_eq!(notes.len(), 121);
    assert_eq!(notes.last().unwrap().body, "ready");
    let pages = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/comments"))
        .count();
    assert_eq!(pages, 2, "two pages of 100");

    // Someone else's comment, a missing comment, a missing pull request.
    let alice = notes[0].id;
    let err = forge
        .edit_merge_request_note(&by_id, pull.number, alice, "hijack")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Forbidden(_)), "{err}");
    let err = forge
        .edit_merge_request_note(&by_id, pull.number, 999_999, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
    let err = forge
        .list_merge_request_notes(&by_id, pull.number + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err}");

    // Where to fetch from: the repository's clone URL, the token beside it.
    let source = forge.fetch_source(&by_id).await.unwrap();
    assert_eq!(source.url, repo.clone_url);
    let (user, password) = source.credentials.clone().unwrap();
    assert_eq!(user, "x-access-token");
    assert_eq!(password.expose(), fake.token_str());
    assert!(!format!("{source:?}").contains(fake.token_str()));
    let err = forge
        .fetch_source(&ProjectId::Path("octo/missing".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_wrong_token_is_forbidden_and_never_echoed() {
    let fake = FakeGitHub::start().await;
    let repo = fake.add_repo("octo/cells");
    let sha = fake.commit(&repo, "main", &[("a.txt", b"a")], "first");
    let wrong = "ghp_wrongtokenvalue";
    let forge = GitHubForge::new(Some(fake.url()), Secret::new(wrong)).unwrap();
    let errors = [
        forge
            .set_commit_status(
                &ProjectId::Path("octo/cells".into()),
                &sha,
                &status(StatusState::Pending, "x"),
            )
            .await
            .unwrap_err(),
        forge
            .fetch_source(&ProjectId::Id(repo.id))
            .await
            .unwrap_err(),
    ];
    for err in &errors {
        assert!(matches!(err, ForgeError::Forbidden(_)), "{err}");
        assert!(!err.is_transient());
        assert!(!err.to_string().contains(wrong), "{err}");
        assert!(!err.to_string().contains(fake.token_str()), "{err}");
    }
    assert!(fake.statuses_for(&sha).is_empty());
}

#[tokio::test]
async fn an_unreachable_github_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let forge = GitHubForge::new(Some(url), Secret::new("ghp_unreachable")).unwrap();
    let err = forge
        .fetch_source(&ProjectId::Path("octo/cells".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, ForgeError::Unavailable(_)), "{err}");
    assert!(err.is_transient());
    assert!(!err.to_string().contains("ghp_unreachable"));
}
