//! Webhook ingest through the real router: verification, limits, dedupe, storage.

use axum::http::StatusCode;

use crate::on_both_databases;
use crate::support::{Backend, TestApp, WEBHOOK_SECRET, push_payload, sha};

on_both_databases!(
    push_is_stored_with_its_job_and_deduplicated,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));

        let first = t.gitlab("Push Hook", "uuid-1", body.clone()).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text());
        assert_eq!(first.json()["jobs"], 1);
        assert_eq!(first.json()["event"], "push");

        let again = t.gitlab("Push Hook", "uuid-1", body).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text());
        assert_eq!(again.json()["status"], "duplicate");

        assert_eq!(t.db().count_deliveries().await.unwrap(), 1);
        let counts = t.job_counts().await;
        assert_eq!(counts.get("pending"), Some(&1), "{counts:?}");

        // The stored delivery and its job are visible in the admin API.
        let d = t.admin_get("/api/deliveries/uuid-1").await;
        assert_eq!(d.status, StatusCode::OK);
        let d = d.json();
        assert_eq!(d["delivery"]["forge"], "gitlab");
        assert_eq!(d["delivery"]["event"], "push");
        assert_eq!(d["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(d["jobs"][0]["kind"], "record-push");

        assert_eq!(t.run_jobs().await, 1);
        t.assert_queue_empty().await;
        let sha_now = t
            .db()
            .ref_sha("gitlab", "lab/rnaseq", "refs/heads/main")
            .await
            .unwrap();
        assert_eq!(sha_now, Some(sha(2)));
    }
);

on_both_databases!(
    wrong_or_missing_secret_stores_nothing,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
        let wrong = t
            .gitlab_with(
                "Push Hook",
                body.clone(),
                &[("x-gitlab-token", "nope"), ("x-gitlab-event-uuid", "u1")],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(!wrong.text().contains(WEBHOOK_SECRET));
        let missing = t
            .gitlab_with("Push Hook", body, &[("x-gitlab-event-uuid", "u2")])
            .await;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert_eq!(t.db().count_deliveries().await.unwrap(), 0);
        assert!(t.job_counts().await.is_empty());
    }
);

#[tokio::test]
async fn every_rotated_secret_is_accepted() {
    let t = TestApp::sqlite().await;
    let body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
    let old = t
        .gitlab_with(
            "Push Hook",
            body.clone(),
            &[
                ("x-gitlab-token", "old-rotated-secret"),
                ("x-gitlab-event-uuid", "a"),
            ],
        )
        .await;
    assert_eq!(old.status, StatusCode::ACCEPTED);
    let new = t.gitlab("Push Hook", "b", body).await;
    assert_eq!(new.status, StatusCode::ACCEPTED);
    assert_eq!(t.db().count_deliveries().await.unwrap(), 2);
}

#[tokio::test]
async fn no_configured_secret_refuses_gitlab() {
    let t = TestApp::with_settings(Backend::Sqlite, |s| s.forges.gitlab_webhook_secrets.clear())
        .await
        .unwrap();
    let res = t
        .gitlab(
            "Push Hook",
            "a",
            push_payload("a/b", "main", &sha(1), &sha(2)),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        res.text().contains("no GitLab webhook secret"),
        "{}",
        res.text()
    );
}

#[tokio::test]
async fn oversized_body_is_413_and_stores_nothing() {
    let t = TestApp::sqlite().await;
    // GitLab's own limit: 25 MiB. One byte more is refused.
    let mut body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
    body.resize(25 * 1024 * 1024 + 1, b' ');
    let res = t.gitlab("Push Hook", "big", body).await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.text());
    assert_eq!(t.db().count_deliveries().await.unwrap(), 0);

    // Just under the limit is fine (trailing JSON whitespace).
    let mut body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
    body.resize(25 * 1024 * 1024, b' ');
    let res = t.gitlab("Push Hook", "just-fits", body).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
}

on_both_databases!(
    malformed_json_is_400_with_a_reason,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        for (i, body) in [
            &b"{not json"[..],
            b"",
            b"[1,2,3]",
            b"{\"object_kind\": \"push\", \"ref\": 42}",
        ]
        .iter()
        .enumerate()
        {
            let res = t
                .gitlab("Push Hook", &format!("bad-{i}"), body.to_vec())
                .await;
            assert_eq!(
                res.status,
                StatusCode::BAD_REQUEST,
                "body {i}: {}",
                res.text()
            );
            let reason = res.json()["error"].as_str().unwrap_or_default().to_owned();
            assert!(!reason.is_empty(), "a reason is given");
        }
        assert_eq!(t.db().count_deliveries().await.unwrap(), 0);
    }
);

on_both_databases!(
    unknown_events_are_stored_and_ignored,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let body = br#"{"object_kind":"pipeline","object_attributes":{"id":31}}"#.to_vec();
        let res = t.gitlab("Pipeline Hook", "pipe-1", body).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
        assert_eq!(res.json()["status"], "ignored");
        assert_eq!(res.json()["jobs"], 0);
        let d = t.admin_get("/api/deliveries/pipe-1").await.json();
        assert_eq!(d["delivery"]["result"], "ignored");
        assert!(t.job_counts().await.is_empty());
    }
);

#[tokio::test]
async fn dedupe_key_prefers_idempotency_key() {
    let t = TestApp::sqlite().await;
    let body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
    let h = |uuid: &'static str| {
        [
            ("x-gitlab-token", WEBHOOK_SECRET),
            ("idempotency-key", "idem-1"),
            ("x-gitlab-event-uuid", uuid),
        ]
    };
    let a = t.gitlab_with("Push Hook", body.clone(), &h("u-a")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    // Same Idempotency-Key, different event UUID: still a repeat.
    let b = t.gitlab_with("Push Hook", body, &h("u-b")).await;
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(
        t.admin_get("/api/deliveries/idem-1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.admin_get("/api/deliveries/u-a").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn github_signature_is_checked() {
    let t = TestApp::sqlite().await;
    let body = br#"{"zen":"Keep it logically awesome.","hook_id":1}"#.to_vec();
    let ok = t.github("ping", "gh-1", body.clone()).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.text());

    let req = axum::http::Request::post("/hooks/github")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "gh-2")
        .header(
            "x-hub-signature-256",
            nbforge::ingest::github_signature("wrong", &body),
        )
        .body(axum::body::Body::from(body))
        .unwrap();
    let bad = t.request(req).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.db().count_deliveries().await.unwrap(), 1);
}

#[tokio::test]
async fn admin_api_needs_the_token() {
    let t = TestApp::sqlite().await;
    assert_eq!(
        t.get("/api/deliveries").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.get("/api/jobs").await.status, StatusCode::UNAUTHORIZED);
    let req = axum::http::Request::get("/api/jobs")
        .header("authorization", "Bearer wrong")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(t.request(req).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.admin_get("/api/deliveries").await.status, StatusCode::OK);
    assert_eq!(
        t.admin_get("/api/deliveries/nope").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deliveries_are_listed_newest_first() {
    let t = TestApp::sqlite().await;
    for i in 0..3u64 {
        let res = t
            .gitlab(
                "Push Hook",
                &format!("list-{i}"),
                push_payload("a/b", "main", &sha(i), &sha(i + 1)),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED);
    }
    let list = t.admin_get("/api/deliveries?limit=2").await.json();
    let keys: Vec<_> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dedupe_key"].clone())
        .collect();
    // Stored under the forge: ids are unique per sender only.
    assert_eq!(keys, vec!["gitlab:list-2", "gitlab:list-1"]);
    assert!(
        list["deliveries"][0].get("body").is_none(),
        "bodies are not listed"
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let t = TestApp::sqlite().await;
    assert_eq!(t.get("/healthz").await.status, StatusCode::OK);
    t.gitlab(
        "Push Hook",
        "m-1",
        push_payload("a/b", "main", &sha(1), &sha(2)),
    )
    .await;
    t.gitlab_with("Push Hook", b"{}".to_vec(), &[("x-gitlab-token", "wrong")])
        .await;
    let m = t.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.text();
    assert!(
        text.contains(
            r#"nbforge_webhook_deliveries_total{forge="gitlab",event="push",result="queued"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"result="unauthorized"} 1"#), "{text}");
    assert!(
        text.contains(r#"nbforge_jobs{state="pending"} 1"#),
        "{text}"
    );
    t.run_jobs().await;
    let text = t.get("/metrics").await.text();
    assert!(text.contains(r#"nbforge_jobs{state="done"} 1"#), "{text}");
    assert!(
        text.contains(
            "nbforge_job_duration_seconds_count{kind=\"record-push\",outcome=\"done\"} 1"
        ),
        "{text}"
    );

    // With the database gone, health says so.
    t.db().close().await;
    assert_eq!(
        t.get("/healthz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn secrets_never_appear_in_answers_or_debug_output() {
    let t = TestApp::sqlite().await;
    let dbg = format!("{:?}", t.app.settings);
    assert!(
        !dbg.contains(WEBHOOK_SECRET) && !dbg.contains(crate::support::ADMIN_TOKEN),
        "{dbg}"
    );
    let res = t
        .gitlab_with(
            "Push Hook",
            b"{".to_vec(),
            &[("x-gitlab-token", WEBHOOK_SECRET)],
        )
        .await;
    assert!(!res.text().contains(WEBHOOK_SECRET));
}

/// Delivery ids are chosen by the sender: the same id from two forges is two deliveries,
/// and the admin API finds each by the id it was sent with.
#[tokio::test]
async fn delivery_ids_are_unique_per_forge() {
    let t = TestApp::sqlite().await;
    let gitlab = t
        .gitlab(
            "Push Hook",
            "shared-id",
            push_payload("lab/x", "main", &sha(1), &sha(2)),
        )
        .await;
    assert_eq!(gitlab.status, StatusCode::ACCEPTED, "{}", gitlab.text());
    assert_eq!(gitlab.json()["delivery"], "shared-id");
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/github/ping.json"
    ))
    .unwrap();
    let github = t.github("ping", "shared-id", body).await;
    assert_eq!(github.status, StatusCode::ACCEPTED, "{}", github.text());
    // Each forge's repeat is still a repeat.
    let again = t
        .gitlab(
            "Push Hook",
            "shared-id",
            push_payload("lab/x", "main", &sha(1), &sha(2)),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let found = t.admin_get("/api/deliveries/shared-id").await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.json()["delivery"]["forge"], "gitlab");
    assert_eq!(
        t.admin_get("/api/deliveries/github:shared-id").await.json()["delivery"]["forge"],
        "github"
    );
}
