//! The job queue: leases, retries, dead letters, supersession, typed jobs, schedules,
//! cleanup, and the jobs' effects. Time is a manual clock moved forward, never slept.

use std::time::Duration;

use axum::http::StatusCode;
use nbforge::storage::{Clock, Enqueue, JobId, JobKind, NewDelivery, NewJob, StoreOutcome};

use crate::on_both_databases;
use crate::support::{Backend, TestApp, push_payload, sha};

/// A job whose arguments do not read as any job's (the queue does not care).
fn job(kind: JobKind, key: Option<&str>, max_attempts: i64) -> NewJob {
    NewJob {
        kind,
        args: "{}".to_owned(),
        supersede_key: key.map(str::to_owned),
        max_attempts,
    }
}

fn work(jobs: &[NewJob]) -> Enqueue {
    Enqueue {
        supersede: Vec::new(),
        jobs: jobs.to_vec(),
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
    match t.db().store_delivery(&d, &work(jobs)).await.unwrap() {
        StoreOutcome::Stored { jobs, .. } => jobs,
        other => panic!("{other:?}"),
    }
}

/// A test app on a manual clock.
async fn manual(backend: Backend) -> Option<TestApp> {
    TestApp::with_clock(backend, Clock::manual(), |_| {}).await
}

on_both_databases!(
    lease_expiry_hands_the_job_to_another_worker,
    |backend: Backend| async move {
        let Some(t) = manual(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job(JobKind::RecordPush, None, 5)]).await;
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
        t.advance(Duration::from_millis(1001));
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
        let Some(t) = manual(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job(JobKind::RecordPush, None, 2)]).await;
        let db = t.db();
        let j = db
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(
            db.retry_job(j.id(), "w", "forge down", Duration::from_secs(60))
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
        // Due once the delay has passed: the second and last try.
        t.advance(Duration::from_secs(60));
        let again = db
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("due after the delay");
        assert_eq!(again.attempts, 2);
        assert!(db.dead_letter_job(ids[0], "w", "still down").await.unwrap());
        assert_eq!(db.get_job(ids[0]).await.unwrap().unwrap().state, "dead");

        // Backoff doubles per attempt and is capped.
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(600);
        assert_eq!(nbforge::jobs::backoff(base, max, 1), Duration::from_secs(2));
        assert_eq!(nbforge::jobs::backoff(base, max, 2), Duration::from_secs(4));
        assert_eq!(
            nbforge::jobs::backoff(base, max, 4),
            Duration::from_secs(16)
        );
        assert_eq!(nbforge::jobs::backoff(base, max, 40), max);
        // The default ten tries ride out an outage of about twenty minutes.
        let waited: Duration = (1..10).map(|a| nbforge::jobs::backoff(base, max, a)).sum();
        assert!(waited > Duration::from_secs(15 * 60), "{waited:?}");
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
        let first = enqueue(&t, "d1", &[job(JobKind::RecordPush, Some("k"), 5)]).await[0];
        let claimed = t
            .db()
            .claim_job("w", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id(), first);
        enqueue(&t, "d2", &[job(JobKind::RecordPush, Some("k"), 5)]).await;
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
        let ids = enqueue(&t, "d1", &[job(JobKind::RecordPush, None, 5)]).await;
        assert_eq!(t.run_jobs().await, 1);
        let row = t.db().get_job(ids[0]).await.unwrap().unwrap();
        assert_eq!(row.state, "failed");
        assert_eq!(row.attempts, 1);
        let error = row.last_error.unwrap();
        assert!(
            error.contains("arguments of this record-push job do not read"),
            "{error}"
        );
        t.assert_queue_empty().await;
    }
);

on_both_databases!(
    a_released_job_keeps_its_attempt_count,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let ids = enqueue(&t, "d1", &[job(JobKind::RecordPush, None, 5)]).await;
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
            .members(nbforge::events::ForgeKind::GitLab, "group:webhook-test")
            .await
            .unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!((members[0].user_id, members[0].access_level), (64, 10));

        let mut update = add.clone();
        update["event_name"] = "user_update_for_group".into();
        update["group_access"] = "Developer".into();
        t.gitlab("Member Hook", "m2", update.to_string()).await;
        t.run_jobs().await;
        let members = t
            .db()
            .members(nbforge::events::ForgeKind::GitLab, "group:webhook-test")
            .await
            .unwrap();
        assert_eq!(members[0].access_level, 30);

        let mut remove = add.clone();
        remove["event_name"] = "user_remove_from_group".into();
        t.gitlab("Member Hook", "m3", remove.to_string()).await;
        t.run_jobs().await;
        assert!(
            t.db()
                .members(nbforge::events::ForgeKind::GitLab, "group:webhook-test")
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
        let a = work(&[job(JobKind::RecordPush, Some("k"), 5)]);
        let b = work(&[
            job(JobKind::RecordPush, Some("k"), 5),
            job(JobKind::SyncProject, None, 5),
        ]);
        let c = work(&[job(JobKind::RecordPush, Some("k"), 5)]);
        let batch = vec![
            (d("b1", body), &a),
            (d("b2", b"{}"), &b),
            (d("b1", b"{}"), &c),
            (d("b3", body), &c),
        ];
        let out = t.db().store_deliveries(&batch).await.unwrap();
        assert!(matches!(out[0], StoreOutcome::Stored { ref jobs, .. } if jobs.len() == 1));
        assert!(matches!(out[1], StoreOutcome::Stored { ref jobs, .. } if jobs.len() == 2));
        assert_eq!(
            out[2],
            StoreOutcome::Duplicate,
            "a key repeated in the batch"
        );
        let StoreOutcome::Stored { jobs: last, .. } = &out[3] else {
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
            .store_deliveries(&[(d("b3", b"{}"), &c), (d("b4", b"{}"), &c)])
            .await
            .unwrap();
        assert_eq!(again[0], StoreOutcome::Duplicate);
        assert_eq!(t.job_counts().await.get("superseded"), Some(&3));
        assert_eq!(t.db().count_deliveries().await.unwrap(), 4);
    }
);

on_both_databases!(
    a_row_of_an_unknown_kind_fails_with_its_name,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        sqlx::query(
            "INSERT INTO jobs (kind, args, state, attempts, max_attempts, run_at, created_at, updated_at)
             VALUES ('mystery', '{}', 'pending', 0, 5, 0, 0, 0)",
        )
        .execute(t.db().pool())
        .await
        .unwrap();
        assert_eq!(t.run_jobs().await, 1);
        let jobs = t.db().list_jobs(None, 10).await.unwrap();
        assert_eq!(jobs[0].state, "failed");
        assert_eq!(jobs[0].kind_name(), "mystery");
        assert_eq!(
            jobs[0].last_error.as_deref(),
            Some("unknown job kind \"mystery\"")
        );
        // The API shows the stored name.
        let listed = t.admin_get("/api/jobs").await.json();
        assert_eq!(listed["jobs"][0]["kind"], "mystery");
    }
);

on_both_databases!(
    jobs_carry_small_typed_arguments_not_the_event,
    |backend: Backend| async move {
        let Some(t) = TestApp::with_settings(backend, |s| s.environments.enabled = true).await
        else {
            return;
        };
        let res = t
            .gitlab(
                "Push Hook",
                "p1",
                push_payload("lab/x", "main", &sha(1), &sha(2)),
            )
            .await;
        assert_eq!(res.status, StatusCode::ACCEPTED);
        let mut jobs = t.db().list_jobs(None, 10).await.unwrap();
        jobs.reverse();
        let kinds: Vec<_> = jobs.iter().map(|j| j.kind.clone().unwrap()).collect();
        assert_eq!(kinds, [JobKind::RecordPush, JobKind::PrepareEnvironment]);
        let push: nbforge::jobs::kinds::RecordPush = serde_json::from_str(&jobs[0].args).unwrap();
        assert_eq!(
            (push.branch.as_str(), push.after.as_str()),
            ("main", sha(2).as_str())
        );
        assert!(!jobs[0].args.contains("commits"), "{}", jobs[0].args);
        // Keys name the forge.
        assert_eq!(
            jobs[1].supersede_key.as_deref(),
            Some("env:gitlab:lab/x:main")
        );
        let listed = t.admin_get("/api/jobs").await.json();
        assert_eq!(listed["jobs"][0]["kind"], "prepare-environment");
    }
);

on_both_databases!(
    deleting_a_branch_supersedes_its_environment_without_a_job,
    |backend: Backend| async move {
        let Some(t) = TestApp::with_settings(backend, |s| s.environments.enabled = true).await
        else {
            return;
        };
        t.gitlab(
            "Push Hook",
            "p1",
            push_payload("lab/x", "main", &sha(1), &sha(2)),
        )
        .await;
        // Claimed by a worker: a running environment job is asked to stop.
        let owner = "w";
        loop {
            let j = t
                .db()
                .claim_job(owner, Duration::from_secs(60))
                .await
                .unwrap()
                .expect("a job");
            if j.kind == Ok(JobKind::PrepareEnvironment) {
                break;
            }
            t.db().complete_job(j.id(), owner).await.unwrap();
        }
        // A second push leaves a pending environment job behind it.
        t.gitlab(
            "Push Hook",
            "p2",
            push_payload("lab/x", "main", &sha(2), &sha(3)),
        )
        .await;
        let deleted = push_payload("lab/x", "main", &sha(3), &"0".repeat(40));
        t.gitlab("Push Hook", "p3", deleted).await;
        let jobs = t.db().list_jobs(None, 10).await.unwrap();
        let envs: Vec<_> = jobs
            .iter()
            .filter(|j| j.kind == Ok(JobKind::PrepareEnvironment))
            .map(|j| (j.state.as_str(), j.cancel_requested))
            .collect();
        assert_eq!(envs, [("superseded", 0), ("running", 1)], "{jobs:#?}");
        assert_eq!(jobs.len(), 5, "no job of its own: {jobs:#?}");
        // A same-named project on GitHub is another key.
        assert_eq!(
            t.db().supersede(&["env:github:lab/x:main"]).await.unwrap(),
            0
        );
    }
);

on_both_databases!(
    supersession_follows_order_within_a_batch,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let d = |key: &'static str| NewDelivery {
            dedupe_key: key,
            forge: "gitlab",
            event: "push",
            result: "queued",
            body: b"{}",
        };
        let build = work(&[job(JobKind::PrepareEnvironment, Some("env:k"), 5)]);
        let stop = Enqueue {
            supersede: vec!["env:k".into()],
            jobs: Vec::new(),
        };
        // Built, then stopped: nothing left.
        t.db()
            .store_deliveries(&[(d("a1"), &build), (d("a2"), &stop)])
            .await
            .unwrap();
        assert_eq!(t.job_counts().await.get("pending"), None);
        // Stopped, then built again: the build waits.
        t.db()
            .store_deliveries(&[(d("b1"), &stop), (d("b2"), &build)])
            .await
            .unwrap();
        assert_eq!(t.job_counts().await.get("pending"), Some(&1));
        assert_eq!(t.job_counts().await.get("superseded"), Some(&1));
    }
);

on_both_databases!(
    a_schedule_runs_once_per_period_across_processes,
    |backend: Backend| async move {
        let Some(t) = manual(backend).await else {
            return;
        };
        // A second process: its own pool on the same database, the same time.
        let other_db = nbforge::storage::Db::connect(&t.app.settings.database_url)
            .await
            .unwrap()
            .with_clock(t.app.clock.clone());
        let mut other = t.jobs();
        other.db = other_db;
        let hour = Duration::from_secs(3600);
        let schedules = [nbforge::jobs::schedule::Scheduled::every(
            hour,
            nbforge::jobs::kinds::Cleanup {},
            &t.app.settings,
        )];
        let tick = |ctx: nbforge::jobs::Context| {
            let schedules = schedules.clone();
            async move {
                nbforge::jobs::schedule::tick(&ctx, &schedules)
                    .await
                    .unwrap()
            }
        };
        // New: due at once, once, whichever process ticks.
        let (a, b) = tokio::join!(tick(t.jobs()), tick(other.clone()));
        assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
        assert!(tick(t.jobs()).await.is_empty());
        t.advance(hour - Duration::from_secs(1));
        assert!(tick(other.clone()).await.is_empty(), "not yet due");
        t.advance(Duration::from_secs(1));
        let (a, b) = tokio::join!(tick(t.jobs()), tick(other.clone()));
        assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
        // Ten periods of downtime: one run on start, not ten.
        t.advance(hour * 10);
        assert_eq!(tick(other.clone()).await.len(), 1);
        assert!(tick(t.jobs()).await.is_empty());
        // Scheduled jobs are jobs like the others.
        let listed = t.admin_get("/api/jobs").await.json();
        let kinds: Vec<_> = listed["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["kind"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, ["cleanup", "cleanup", "cleanup"]);
        assert_eq!(t.run_jobs().await, 3);
        assert_eq!(t.job_counts().await.get("done"), Some(&3));
    }
);

on_both_databases!(
    cleanup_removes_old_finished_jobs_and_their_deliveries,
    |backend: Backend| async move {
        let Some(t) = manual(backend).await else {
            return;
        };
        for (i, uuid) in ["old1", "old2"].iter().enumerate() {
            let i = i as u64;
            t.gitlab(
                "Push Hook",
                uuid,
                push_payload("lab/x", &format!("b{i}"), &sha(i), &sha(i + 1)),
            )
            .await;
        }
        assert_eq!(t.run_jobs().await, 2);
        // Waiting work is kept however old.
        enqueue(&t, "waiting", &[job(JobKind::SyncProject, None, 5)]).await;
        t.advance(Duration::from_secs(31 * 24 * 3600));
        t.gitlab(
            "Push Hook",
            "recent",
            push_payload("lab/x", "main", &sha(7), &sha(8)),
        )
        .await;
        assert_eq!(t.db().count_deliveries().await.unwrap(), 4);
        let removed = t
            .db()
            .delete_finished_jobs(t.app.settings.jobs.retention.jobs)
            .await
            .unwrap();
        assert_eq!((removed.jobs, removed.deliveries), (2, 2));
        assert!(t.db().get_delivery("old1").await.unwrap().is_none());
        assert!(t.db().get_delivery("waiting").await.unwrap().is_some());
        assert!(t.db().get_delivery("recent").await.unwrap().is_some());
        // The refs they recorded stay.
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/x", "refs/heads/b1")
                .await
                .unwrap(),
            Some(sha(2))
        );
        assert_eq!(t.db().count_ref_updates().await.unwrap(), 0);
    }
);

on_both_databases!(
    cleanup_removes_mirrors_of_deleted_and_idle_projects,
    |backend: Backend| async move {
        let Some(t) = manual(backend).await else {
            return;
        };
        let upstream = t.dir.path().join("upstream");
        let repo = git2::Repository::init(&upstream).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let tree = repo
            .find_tree(repo.index().unwrap().write_tree().unwrap())
            .unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "empty", &tree, &[])
            .unwrap();
        let source = nbforge::forge::FetchSource {
            url: format!("file://{}", upstream.display()),
            credentials: None,
        };
        let mirrors = &t.app.mirrors;
        for path in ["lab/kept", "lab/idle", "lab/gone"] {
            drop(mirrors.fetch("gitlab", path, source.clone()).await.unwrap());
            let mut row = nbforge::storage::ProjectRow {
                forge: nbforge::events::ForgeKind::GitLab,
                path: path.into(),
                forge_id: None,
                web_url: None,
                git_url: None,
                default_branch: None,
                forked_from: None,
                visibility: None,
            };
            row.path = path.into();
            t.db().upsert_project(&row).await.unwrap();
        }
        t.db().delete_project("gitlab", "lab/gone").await.unwrap();
        let retention = t.app.settings.jobs.retention.mirrors;
        t.advance(retention - Duration::from_secs(60));
        drop(
            mirrors
                .fetch("gitlab", "lab/kept", source.clone())
                .await
                .unwrap(),
        );
        t.advance(Duration::from_secs(120));
        let projects = t.db().project_paths().await.unwrap();
        let removed = mirrors.remove_unused(&projects, retention).await.unwrap();
        let key = nbforge::repo::mirror::Mirrors::key;
        let mut expected = vec![key("gitlab", "lab/gone"), key("gitlab", "lab/idle")];
        expected.sort();
        assert_eq!(removed, expected);
        let root = t.app.settings.data_dir.join("mirrors");
        assert!(
            root.join(format!("{}.git", key("gitlab", "lab/kept")))
                .exists()
        );
        assert!(
            !root
                .join(format!("{}.git", key("gitlab", "lab/idle")))
                .exists()
        );
    }
);

on_both_databases!(
    cleanup_removes_unused_labelled_images_only,
    |backend: Backend| async move {
        let prefix = format!("nbforge-cleanup-{}", uuid::Uuid::new_v4().simple());
        let Some(t) = TestApp::with_clock(backend, Clock::manual(), |s| {
            s.environments.enabled = true;
            s.environments.image_prefix = prefix.clone();
        })
        .await
        else {
            return;
        };
        if let Err(e) = t.app.builder.docker().map(|_| ()) {
            crate::support::missing_service(&format!("the Docker engine ({e})"));
            return;
        }
        // Three tiny images with nbforge's label, and one without it.
        let tag = |k: &str| format!("{prefix}/env:{k}");
        // `docker build` now and then fails while other tests use the engine: try again,
        // and say why when it keeps failing.
        let make = |name: String, label: bool| {
            let mut why = String::new();
            for _ in 0..3 {
                let mut cmd = std::process::Command::new("docker");
                cmd.args(["build", "-q", "-t", &name]);
                if label {
                    cmd.args(["--label", &format!("org.nbforge.environment-key={name}")]);
                }
                cmd.arg("-")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                let mut child = cmd.spawn().expect("docker runs");
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(format!("FROM scratch\nLABEL test={name}\n").as_bytes())
                    .unwrap();
                let out = child.wait_with_output().unwrap();
                if out.status.success() {
                    return;
                }
                why = String::from_utf8_lossy(&out.stderr).into_owned();
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            panic!("docker build {name}: {why}");
        };
        if std::process::Command::new("docker")
            .arg("version")
            .output()
            .map_or(true, |o| !o.status.success())
        {
            crate::support::missing_service("the docker command");
            return;
        }
        for k in ["current", "recent", "old"] {
            make(tag(k), true);
        }
        make(tag("unlabelled"), false);
        let db = t.db();
        // `current` is what the branch's latest build uses; long ago.
        let b = db
            .create_build("gitlab", "lab/x", Some("main"), &sha(1), None)
            .await
            .unwrap();
        db.set_build_environment(b, "current", &tag("current"))
            .await
            .unwrap();
        let refs = nbforge::storage::RefUpdateRow {
            job_id: 1,
            forge: nbforge::events::ForgeKind::GitLab,
            project: "lab/x".into(),
            ref_name: "refs/heads/main".into(),
            before_sha: "0".repeat(40),
            after_sha: sha(1),
        };
        let ids = enqueue(&t, "d", &[job(JobKind::RecordPush, None, 5)]).await;
        db.claim_job("w", Duration::from_secs(60)).await.unwrap();
        db.apply_ref_update(ids[0], &refs).await.unwrap();
        assert!(db.complete_job(ids[0], "w").await.unwrap());
        // `old` was built long ago for a commit no ref points at.
        let b = db
            .create_build("gitlab", "lab/x", Some("main"), &sha(9), None)
            .await
            .unwrap();
        db.set_build_environment(b, "old", &tag("old"))
            .await
            .unwrap();
        t.advance(Duration::from_secs(31 * 24 * 3600));
        // `recent` was used by a build since.
        let b = db
            .create_build("gitlab", "lab/y", Some("main"), &sha(5), None)
            .await
            .unwrap();
        db.set_build_environment(b, "recent", &tag("recent"))
            .await
            .unwrap();

        // The session culler is scheduled too; it has tests of its own.
        let schedules: Vec<_> = nbforge::jobs::schedule::schedules(&t.app.settings)
            .into_iter()
            .filter(|s| s.name != "cull-sessions")
            .collect();
        nbforge::jobs::schedule::tick(&t.jobs(), &schedules)
            .await
            .unwrap();
        assert_eq!(t.run_jobs().await, 1, "the cleanup");
        // The push job, finished a month ago, went with it.
        assert_eq!(
            t.job_counts().await.get("done"),
            Some(&1),
            "{:?}",
            t.job_counts().await
        );
        let exists = |name: String| {
            std::process::Command::new("docker")
                .args(["image", "inspect", &name])
                .output()
                .unwrap()
                .status
                .success()
        };
        let left: Vec<bool> = ["current", "recent", "old", "unlabelled"]
            .into_iter()
            .map(|k| exists(tag(k)))
            .collect();
        for k in ["current", "recent", "old", "unlabelled"] {
            let _ = std::process::Command::new("docker")
                .args(["rmi", &tag(k)])
                .output();
        }
        assert_eq!(left, [true, true, false, true]);
    }
);

#[test]
fn subjects_name_the_project_and_commit() {
    let s = nbforge::jobs::Subject {
        project: Some("lab/rnaseq".into()),
        git_ref: Some("refs/heads/main".into()),
        commit: Some("1a2b3c4d5e6f".into()),
    };
    assert_eq!(s.to_string(), "lab/rnaseq@1a2b3c4d");
    let s = nbforge::jobs::Subject { commit: None, ..s };
    assert_eq!(s.to_string(), "lab/rnaseq refs/heads/main");
}

on_both_databases!(
    a_superseded_job_whose_worker_died_is_canceled_when_claimed_again,
    |backend: Backend| async move {
        let Some(t) = manual(backend).await else {
            return;
        };
        t.gitlab(
            "Push Hook",
            "p1",
            push_payload("lab/x", "main", &sha(1), &sha(2)),
        )
        .await;
        let first = t
            .db()
            .claim_job("dead-worker", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        t.gitlab(
            "Push Hook",
            "p2",
            push_payload("lab/x", "main", &sha(2), &sha(3)),
        )
        .await;
        t.advance(Duration::from_secs(2));
        assert_eq!(t.run_jobs().await, 2);
        let row = t.db().get_job(first.id()).await.unwrap().unwrap();
        assert_eq!(row.state, "canceled");
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/x", "refs/heads/main")
                .await
                .unwrap(),
            Some(sha(3))
        );
    }
);

/// A job that hangs on a forge that never answers is stopped at its time limit and
/// retried later, instead of holding a worker (and its lease) for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_a_job_past_its_time_limit_is_stopped_and_retried() {
    use crate::support::scenario::Scenario;
    let Some(t) = Scenario::gitlab_with(Backend::Sqlite, |s| {
        s.jobs.timeout = Duration::from_secs(1);
        s.jobs.max_attempts = 1;
    })
    .await
    else {
        return;
    };
    let fake = t.gitlab_fake();
    fake.add_group("webhook-test");
    fake.set_stall(Some(Duration::from_secs(30)));
    let add = serde_json::json!({
        "created_at": "2020-12-11T04:57:22Z", "updated_at": "2020-12-11T04:57:22Z",
        "group_name": "webhook-test", "group_path": "webhook-test",
        "group_id": fake.group("webhook-test").unwrap().id,
        "user_username": "test_user", "user_name": "Test User", "user_email": "testuser@webhooktest.com",
        "user_id": 64, "group_access": "Developer", "group_plan": null, "expires_at": null,
        "event_name": "user_add_to_group"
    });
    let res = t.gitlab("Member Hook", "stall-1", add.to_string()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    t.app.run_jobs().await;
    let jobs = t.db().list_jobs(None, 10).await.unwrap();
    let job = jobs
        .iter()
        .find(|j| j.kind_name() == "record-member")
        .expect("the member job");
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.contains("longer than 1 s"), "{error}");
    // A transient failure: with tries left it would be retried; this one had one try.
    assert_eq!(job.state, "dead", "{job:?}");
}

on_both_databases!(
    finding_10_build_jobs_have_their_own_workers_and_never_hold_up_the_rest,
    |backend: Backend| async move {
        use nbforge::storage::Pool;
        let Some(t) = manual(backend).await else {
            return;
        };
        let lease = Duration::from_secs(60);
        // Two builds wait before a tag is published.
        let builds = enqueue(
            &t,
            "b1",
            &[
                job(JobKind::PrepareEnvironment, None, 5),
                job(JobKind::PrepareEnvironment, None, 5),
            ],
        )
        .await;
        t.advance(Duration::from_millis(5));
        let publish = enqueue(&t, "p1", &[job(JobKind::PublishTag, None, 5)]).await;
        let db = t.db();
        let general = db
            .claim_job_in("general", lease, Pool::General)
            .await
            .unwrap()
            .expect("the tag's job");
        assert_eq!(general.id(), publish[0], "not the older builds");
        assert!(
            db.claim_job_in("general", lease, Pool::General)
                .await
                .unwrap()
                .is_none(),
            "general workers never take builds"
        );
        let build = db
            .claim_job_in("builder", lease, Pool::Builds)
            .await
            .unwrap()
            .expect("a build");
        assert_eq!(build.id(), builds[0]);
        let build = db
            .claim_job_in("builder", lease, Pool::Builds)
            .await
            .unwrap()
            .expect("the other build");
        assert_eq!(build.id(), builds[1]);
        assert!(
            db.claim_job_in("builder", lease, Pool::Builds)
                .await
                .unwrap()
                .is_none()
        );
    }
);
