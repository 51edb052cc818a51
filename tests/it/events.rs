//! Every documented example payload (`tests/data/gitlab`, `tests/data/github`) delivered
//! through the real router: stored once, with the kind the parser gives and the jobs it
//! plans; payloads nested past the cap are refused with a clear error and store nothing.
//! The parsing itself is tested (and snapshotted) next to the parsers.

use axum::http::StatusCode;
use nbforge::events::Parsed;
use nbforge::forge::{github, gitlab};

use crate::support::{Backend, TestApp};

/// Each GitLab example with the `X-Gitlab-Event` header GitLab sends it under.
const GITLAB: &[(&str, &str)] = &[
    ("group_project_create", "Project Hook"),
    ("group_project_destroy", "Project Hook"),
    ("member_access_request_to_group", "Member Hook"),
    ("member_add_to_group", "Member Hook"),
    ("member_remove_from_group", "Member Hook"),
    ("member_update_for_group", "Member Hook"),
    ("merge_request", "Merge Request Hook"),
    ("push", "Push Hook"),
    ("system_group_destroy", "System Hook"),
    ("system_group_rename", "System Hook"),
    ("system_merge_request", "System Hook"),
    ("system_project_create", "System Hook"),
    ("system_project_destroy", "System Hook"),
    ("system_project_rename", "System Hook"),
    ("system_project_transfer", "System Hook"),
    ("system_project_update", "System Hook"),
    ("system_push", "System Hook"),
    ("system_repository_update", "System Hook"),
    ("system_tag_push", "System Hook"),
    ("system_user_access_request_to_project", "System Hook"),
    ("system_user_add_to_group", "System Hook"),
    ("system_user_add_to_team", "System Hook"),
    ("system_user_create", "System Hook"),
    ("system_user_destroy", "System Hook"),
    ("system_user_failed_login", "System Hook"),
    ("system_user_remove_from_group", "System Hook"),
    ("system_user_remove_from_team", "System Hook"),
    ("system_user_rename", "System Hook"),
    ("system_user_update_for_group", "System Hook"),
    ("system_user_update_for_team", "System Hook"),
    ("tag_push", "Tag Push Hook"),
    ("wiki_page", "Wiki Page Hook"),
];

/// Each GitHub example with its `X-GitHub-Event` header.
const GITHUB: &[(&str, &str)] = &[
    ("create_tag", "create"),
    ("delete_tag", "delete"),
    ("fork", "fork"),
    ("member_added", "member"),
    ("member_edited", "member"),
    ("membership_added", "membership"),
    ("membership_removed", "membership"),
    ("ping", "ping"),
    ("pull_request_closed", "pull_request"),
    ("pull_request_labeled", "pull_request"),
    ("pull_request_opened", "pull_request"),
    ("pull_request_reopened", "pull_request"),
    ("pull_request_synchronize", "pull_request"),
    ("push_branch", "push"),
    ("push_tag", "push"),
    ("push_tag_deleted", "push"),
];

fn data(forge: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/{forge}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn listed(forge: &str) -> Vec<String> {
    let dir = format!("{}/tests/data/{forge}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// Checks the answer and the stored delivery against what the parser says.
async fn check_ingested(t: &TestApp, key: &str, res: crate::support::TestResponse, parsed: Parsed) {
    assert_eq!(res.status, StatusCode::ACCEPTED, "{key}: {}", res.text());
    let body = res.json();
    let queued = parsed.event.is_some();
    assert_eq!(
        body["status"],
        if queued { "queued" } else { "ignored" },
        "{key}"
    );
    assert_eq!(body["event"], parsed.kind.as_str(), "{key}");
    let jobs = body["jobs"].as_u64().unwrap();
    assert_eq!(jobs > 0, queued, "{key}: {body}");
    let row = t.db().get_delivery(key).await.unwrap().expect("stored");
    assert_eq!(row.event, parsed.kind, "{key}");
}

crate::on_both_databases!(
    every_documented_example_is_ingested_through_the_router,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let names =
            |table: &[(&str, &str)]| table.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(GITLAB),
            listed("gitlab"),
            "every GitLab example is listed"
        );
        assert_eq!(
            names(GITHUB),
            listed("github"),
            "every GitHub example is listed"
        );

        for (name, header) in GITLAB {
            let body = data("gitlab", name);
            let parsed = gitlab::payload::parse(Some(header), &body).unwrap();
            let key = format!("gitlab-{name}");
            let res = t.gitlab(header, &key, body).await;
            check_ingested(&t, &key, res, parsed).await;
        }
        for (name, header) in GITHUB {
            let body = data("github", name);
            let parsed = github::payload::parse(Some(header), &body).unwrap();
            let key = format!("github-{name}");
            let res = t.github(header, &key, body).await;
            check_ingested(&t, &key, res, parsed).await;
        }
        let count = t.db().count_deliveries().await.unwrap();
        assert_eq!(count as usize, GITLAB.len() + GITHUB.len());
    }
);

crate::on_both_databases!(
    a_deeply_nested_delivery_is_refused_with_a_clear_error,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let mut body = br#"{"object_kind":"push","ref":"refs/heads/main","junk":"#.to_vec();
        body.extend(std::iter::repeat_n(b'[', 10_000));
        body.extend(std::iter::repeat_n(b']', 10_000));
        body.push(b'}');
        let limit = format!(
            "the JSON nests deeper than {} levels at line 1",
            nbforge::events::MAX_DEPTH
        );
        for res in [
            t.gitlab("Push Hook", "deep-gitlab", body.clone()).await,
            t.github("push", "deep-github", body.clone()).await,
        ] {
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.text());
            let error = res.json()["error"].as_str().unwrap().to_owned();
            assert!(error.starts_with(&limit), "{error}");
        }
        assert_eq!(t.db().count_deliveries().await.unwrap(), 0);
        t.assert_queue_empty().await;
    }
);
