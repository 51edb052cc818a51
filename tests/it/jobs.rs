//! The job queue: leases, retries, dead letters, supersession, handlers' effects.

use std::time::Duration;

use axum::http::StatusCode;
use nbforge::storage::{JobId, NewDelivery, NewJob};

use crate::on_both_databases;
use crate::support::{Backend, TestApp, push_payload, sha};

fn job(kind: &str, key: Option<&str>, max_attempts: i64) -> NewJob {
    NewJob {
        kind: kind.to_owned(),
        payload: "{}".to_owned(),
        supersede_key: key.map(str::to_owned),
        max_attempts,
    }
}

async fn enqueue(t: &TestApp, key: &str, jobs: &[NewJob]) -> Vec<JobId> {
    let d = NewDelivery {
        dedupe_key: key,
        forge: "gitlab",
        event: "test",
        result: "queued",
        body: b"{}",
    };
    match t.db().store_delivery(&d, jobs).await.unwrap() {
        nbforge::storage::StoreOutcome::Stored { jobs, .. } => jobs,
        other => panic!("{other:?}"),
    }
}

on_both_databases!(
    lease_expiry_hands_the_job_to_another_worker,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job("push", None, 5)]).await;
        let db = t.db();
        let a = db
            .claim_job("worker-a", Duration::from_millis(1000))
            .await
            .unwrap()
            .expect("claimed");
        assert_eq!(a.id(), ids[0]);
        assert_eq!(a.attempts, 1);
        // Nobody else gets it while the lease holds.
        assert!(
            db.claim_job("worker-b", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let b = db
            .claim_job("worker-b", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("reclaimed");
        assert_eq!(b.id(), ids[0]);
        assert_eq!(b.attempts, 2);
        // The first worker lost it: it can neither heartbeat nor complete.
        assert_eq!(
            db.heartbeat(ids[0], "worker-a", Duration::from_secs(1))
                .await
                .unwrap(),
            nbforge::storage::Heartbeat::Lost
        );
        assert!(!db.complete_job(ids[0], "worker-a").await.unwrap());
        assert!(db.complete_job(ids[0], "worker-b").await.unwrap());
        assert_eq!(db.get_job(ids[0]).await.unwrap().unwrap().state, "done");
    }
);

on_both_databases!(
    retries_back_off_then_dead_letter,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job("push", None, 2)]).await;
        let db = t.db();
        let j = db
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        let later = nbforge::storage::now_ms() + 60_000;
        assert!(
            db.retry_job(j.id(), "w", "forge down", later)
                .await
                .unwrap()
        );
        // Not due yet.
        assert!(
            db.claim_job("w", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none()
        );
        let row = db.get_job(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (row.state.as_str(), row.last_error.as_deref()),
            ("pending", Some("forge down"))
        );
        assert!(
            db.dead_letter_job(ids[0], "w", "x")
                .await
                .is_ok_and(|moved| !moved),
            "only running jobs move"
        );

        // Backoff doubles per attempt and is capped.
        let base = Duration::from_secs(2);
        assert_eq!(nbforge::jobs::backoff(base, 1), Duration::from_secs(2));
        assert_eq!(nbforge::jobs::backoff(base, 2), Duration::from_secs(4));
        assert_eq!(nbforge::jobs::backoff(base, 4), Duration::from_secs(16));
        assert_eq!(nbforge::jobs::backoff(base, 40), Duration::from_secs(3600));
    }
);

on_both_databases!(
    a_newer_push_supersedes_pending_older_ones,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        for (i, uuid) in ["s1", "s2", "s3"].iter().enumerate() {
            let i = i as u64;
            let res = t
                .gitlab(
                    "Push Hook",
                    uuid,
                    push_payload("lab/x", "main", &sha(i), &sha(i + 1)),
                )
                .await;
            assert_eq!(res.status, StatusCode::ACCEPTED);
        }
        // Another branch is not affected.
        t.gitlab(
            "Push Hook",
            "other",
            push_payload("lab/x", "dev", &sha(10), &sha(11)),
        )
        .await;
        let counts = t.job_counts().await;
        assert_eq!(counts.get("superseded"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("pending"), Some(&2), "{counts:?}");
        assert_eq!(t.run_jobs().await, 2);
        t.assert_queue_empty().await;
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/x", "refs/heads/main")
                .await
                .unwrap(),
            Some(sha(3))
        );
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/x", "refs/heads/dev")
                .await
                .unwrap(),
            Some(sha(11))
        );
    }
);

on_both_databases!(
    a_running_job_is_asked_to_stop_when_superseded,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let first = enqueue(&t, "d1", &[job("push", Some("k"), 5)]).await[0];
        let claimed = t
            .db()
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id(), first);
        enqueue(&t, "d2", &[job("push", Some("k"), 5)]).await;
        assert_eq!(
            t.db()
                .heartbeat(first, "w", Duration::from_secs(60))
                .await
                .unwrap(),
            nbforge::storage::Heartbeat::Held { cancel: true }
        );
    }
);

on_both_databases!(
    a_job_with_a_broken_payload_fails_without_retry,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job("push", None, 5)]).await;
        assert_eq!(t.run_jobs().await, 1);
        let row = t.db().get_job(ids[0]).await.unwrap().unwrap();
        assert_eq!(row.state, "failed");
        assert_eq!(row.attempts, 1);
        assert!(row.last_error.unwrap().contains("not a known event"));
        t.assert_queue_empty().await;
    }
);

on_both_databases!(
    a_released_job_keeps_its_attempt_count,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job("push", None, 5)]).await;
        let j = t
            .db()
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(t.db().release_job(j.id(), "w").await.unwrap());
        let row = t.db().get_job(ids[0]).await.unwrap().unwrap();
        assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
    }
);

on_both_databases!(
    member_and_project_events_update_state,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let add = serde_json::json!({
            "created_at": "2020-12-11T04:57:22Z", "updated_at": "2020-12-11T04:57:22Z",
            "group_name": "webhook-test", "group_path": "webhook-test", "group_id": 100,
            "user_username": "test_user", "user_name": "Test User", "user_email": "testuser@webhooktest.com",
            "user_id": 64, "group_access": "Guest", "group_plan": null, "expires_at": "2020-12-14T00:00:00Z",
            "event_name": "user_add_to_group"
        });
        let res = t.gitlab("Member Hook", "m1", add.to_string()).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
        t.run_jobs().await;
        let members = t
            .db()
            .memberships("gitlab", "group:webhook-test")
            .await
            .unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(
            (members[0].username.as_str(), members[0].access_level),
            ("test_user", 10)
        );

        let mut update = add.clone();
        update["event_name"] = "user_update_for_group".into();
        update["group_access"] = "Developer".into();
        t.gitlab("Member Hook", "m2", update.to_string()).await;
        t.run_jobs().await;
        let members = t
            .db()
            .memberships("gitlab", "group:webhook-test")
            .await
            .unwrap();
        assert_eq!(members[0].access_level, 30);

        let mut remove = add.clone();
        remove["event_name"] = "user_remove_from_group".into();
        t.gitlab("Member Hook", "m3", remove.to_string()).await;
        t.run_jobs().await;
        assert!(
            t.db()
                .memberships("gitlab", "group:webhook-test")
                .await
                .unwrap()
                .is_empty()
        );
        t.assert_queue_empty().await;
    }
);

on_both_databases!(
    a_batch_stores_in_order_supersedes_and_dedupes,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let big = vec![b'x'; 20_000];
        let d = |key: &'static str, body: &'static [u8]| NewDelivery {
            dedupe_key: key,
            forge: "gitlab",
            event: "push",
            result: "queued",
            body,
        };
        let body: &'static [u8] = Box::leak(big.into_boxed_slice());
        let a = [job("push", Some("k"), 5)];
        let b = [job("push", Some("k"), 5), job("other", None, 5)];
        let c = [job("push", Some("k"), 5)];
        let batch = vec![
            (d("b1", body), &a[..]),
            (d("b2", b"{}"), &b[..]),
            (d("b1", b"{}"), &c[..]),
            (d("b3", body), &c[..]),
        ];
        let out = t.db().store_deliveries(&batch).await.unwrap();
        assert!(
            matches!(out[0], nbforge::storage::StoreOutcome::Stored { ref jobs, .. } if jobs.len() == 1)
        );
        assert!(
            matches!(out[1], nbforge::storage::StoreOutcome::Stored { ref jobs, .. } if jobs.len() == 2)
        );
        assert_eq!(
            out[2],
            nbforge::storage::StoreOutcome::Duplicate,
            "a key repeated in the batch"
        );
        let nbforge::storage::StoreOutcome::Stored { jobs: last, .. } = &out[3] else {
            panic!("{:?}", out[3])
        };
        // Only the newest job with key `k` is pending.
        let pending = t.db().list_jobs(Some("pending"), 10).await.unwrap();
        let pending_k: Vec<_> = pending
            .iter()
            .filter(|j| j.supersede_key.as_deref() == Some("k"))
            .collect();
        assert_eq!(pending_k.len(), 1);
        assert_eq!(pending_k[0].id(), last[0]);
        assert_eq!(t.job_counts().await.get("superseded"), Some(&2));
        // A later batch supersedes across batches, and a stored key stays a duplicate.
        let again = t
            .db()
            .store_deliveries(&[(d("b3", b"{}"), &c[..]), (d("b4", b"{}"), &c[..])])
            .await
            .unwrap();
        assert_eq!(again[0], nbforge::storage::StoreOutcome::Duplicate);
        assert_eq!(t.job_counts().await.get("superseded"), Some(&3));
        assert_eq!(t.db().count_deliveries().await.unwrap(), 4);
    }
);
