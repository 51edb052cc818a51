//! Whole features as scenarios (see `support::scenario`): publishing on tag push,
//! environment statuses on push, and the one merge request note.

use axum::http::StatusCode;

use crate::catalog::{make_official, release_files};
use crate::support::Backend;
use crate::support::scenario::Scenario;

const EXPRESSION: &[u8] = include_bytes!("../data/notebooks/expression_report.ipynb");

crate::on_both_databases!(
    a_tag_publishes_worksheets_and_the_landing_page_lists_them,
    |backend: Backend| async move {
        let Some(t) = Scenario::gitlab(backend).await else {
            return;
        };
        t.push("lab/growth", &release_files()).await;
        t.tag("lab/growth", "v1").await;
        t.run_jobs().await;

        // Not official yet: the landing page lists nothing, but the project's pages exist.
        let landing = t.get("/").await;
        assert_eq!(landing.status, StatusCode::OK);
        assert!(
            landing.text().contains("No official worksheets"),
            "{}",
            landing.text()
        );
        let project = t.get("/w/lab/growth").await;
        assert_eq!(project.status, StatusCode::OK);
        let text = project.text();
        assert!(
            text.contains("Growth curve") && text.contains("v1</a> (newest)"),
            "{text}"
        );
        // The broken notebook fails alone, with its reason.
        assert!(
            text.contains("Not published") && text.contains("broken.ipynb"),
            "{text}"
        );

        make_official(&t, "lab/growth").await;
        let text = t.get("/").await.text();
        assert!(text.contains("<h2>Microbiology</h2>"), "{text}");
        assert!(
            text.contains("href=\"/w/lab/growth/v1/growth.ipynb\""),
            "{text}"
        );
        assert!(text.contains("Logistic growth of a culture"), "{text}");
        assert!(
            !text.contains("Broken one"),
            "failed worksheets are not cards"
        );

        // A newer tag becomes the default everywhere.
        t.push("lab/growth", &[("expression.ipynb", EXPRESSION)])
            .await;
        t.tag("lab/growth", "v2").await;
        t.run_jobs().await;
        let text = t.get("/").await.text();
        assert!(
            text.contains("href=\"/w/lab/growth/v2/growth.ipynb\""),
            "{text}"
        );
        assert!(!text.contains("/v1/"), "{text}");
        let text = t.get("/w/lab/growth").await.text();
        assert!(
            text.contains("v2</a> (newest)") && text.contains(">v1<"),
            "{text}"
        );
        // v1 stays readable.
        assert_eq!(
            t.get("/w/lab/growth/v1/growth.ipynb").await.status,
            StatusCode::OK
        );

        // Search by title.
        assert!(t.get("/?q=growth").await.text().contains("Growth curve"));
        let none = t.get("/?q=zebrafish").await.text();
        assert!(
            none.contains("No worksheet matches") && !none.contains("Growth curve"),
            "{none}"
        );

        // Deleting a tag withdraws that version.
        t.delete_tag("lab/growth", "v2").await;
        t.run_jobs().await;
        assert_eq!(
            t.get("/w/lab/growth/v2/growth.ipynb").await.status,
            StatusCode::NOT_FOUND
        );
        assert!(
            t.get("/")
                .await
                .text()
                .contains("/w/lab/growth/v1/growth.ipynb")
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_error_fails_the_status_with_the_users_message() {
    let t = Scenario::gitlab(Backend::Sqlite)
        .await
        .expect("SQLite")
        .with_environments();
    let sha = t
        .push(
            "lab/broken",
            &[
                ("launch.toml", b"kind = \"notebook\"\ncolour = \"blue\"\n"),
                ("requirements.txt", b"numpy\n"),
            ],
        )
        .await;
    t.run_jobs().await;
    t.expect_statuses(&sha, &["pending", "failed"]);
    let (_, description) = t.last_status(&sha);
    assert!(description.contains("launch.toml:2:1"), "{description}");
    assert!(description.contains("colour"), "{description}");
    // Not retried: the spec is the user's to fix.
    let jobs = t.db().list_jobs(Some("failed"), 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind.as_str(), jobs[0].attempts),
        ("environment", 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_request_gets_exactly_one_note_across_pushes() {
    let t = Scenario::gitlab(Backend::Sqlite)
        .await
        .expect("SQLite")
        .with_environments();
    if !t.docker_ready().await {
        return;
    }
    t.push("lab/mr-demo", &[("requirements.txt", b"tomli-w\n")])
        .await;
    let mr = t
        .open_mr(
            "lab/mr-demo",
            "feature",
            &[("a.ipynb", b"{}")],
            "My analysis",
        )
        .await;
    t.run_jobs().await;
    let mut head = String::new();
    for i in 0..3 {
        head = t
            .update_mr(&mr, &[("a.ipynb", format!("{{\"v\": {i}}}").as_bytes())])
            .await;
        t.run_jobs().await;
    }
    let notes = t.notes(&mr);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(&head[..8]),
        "the note follows the newest commit: {}",
        notes[0]
    );
    assert!(notes[0].contains("badge_logo.svg"));
    assert_eq!(t.last_status(&head).0, "success");

    // Merged: the same note says so.
    t.merge_mr(&mr).await;
    t.run_jobs().await;
    let notes = t.notes(&mr);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].contains("merged"), "{}", notes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_merge_request_cancels_its_pending_environment() {
    let t = Scenario::gitlab(Backend::Sqlite)
        .await
        .expect("SQLite")
        .with_environments();
    t.push("lab/close-demo", &[("requirements.txt", b"tomli-w\n")])
        .await;
    t.run_jobs().await;
    let mr = t
        .open_mr("lab/close-demo", "feature", &[("a.ipynb", b"{}")], "Draft")
        .await;
    t.close_mr(&mr).await;
    let jobs = t.db().list_jobs(None, 10).await.unwrap();
    let env = jobs
        .iter()
        .find(|j| j.kind == "environment" && j.state != "failed" && j.state != "done")
        .expect("the merge request's environment job");
    assert_eq!(env.state, "superseded");
    assert!(
        jobs.iter()
            .any(|j| j.kind == "cancel" && j.state == "pending")
    );
}
