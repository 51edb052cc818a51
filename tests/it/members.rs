//! Memberships follow GitLab: member, group, user and project hooks through the real
//! webhook endpoint and jobs, and the reconciler (on demand and scheduled) repairing what
//! hooks missed, over the fake GitLab's `/members/all` — pagination, rate limits, a
//! revoked token, projects and groups deleted in GitLab.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use nbforge::events::ForgeKind;
use nbforge::storage::{Clock, JobId, JobRow, MemberRow, ProjectRow};

use crate::on_both_databases;
use crate::support::fake_gitlab::{
    FakeGitLab, FakeHook, FakeProject, FakeUser, MemberEvent, SystemGroupEvent, SystemProjectEvent,
    SystemUserEvent, TeamEvent,
};
use crate::support::{ADMIN_TOKEN, Backend, TestApp};

const GL: ForgeKind = ForgeKind::GitLab;

/// A fake GitLab and an app talking to it, on a manual clock.
async fn start(backend: Backend) -> Option<(FakeGitLab, TestApp)> {
    let fake = FakeGitLab::start().await;
    let (url, token) = (fake.url(), fake.token());
    let t = TestApp::with_clock(backend, Clock::manual(), move |s| {
        s.forges.gitlab_url = Some(url);
        s.forges.gitlab_token = Some(token);
    })
    .await?;
    Some((fake, t))
}

/// Makes `user` a member of group `group` in GitLab, and says so by member hook.
async fn join(t: &TestApp, fake: &FakeGitLab, group: &str, user: &FakeUser, level: i64) {
    fake.add_member(group, user, level);
    deliver(t, fake.member_payload(group, user, level, MemberEvent::Add)).await;
}

/// Delivers `hook` through the webhook endpoint and runs the jobs it caused.
async fn deliver(t: &TestApp, hook: FakeHook) {
    let key = uuid::Uuid::new_v4().to_string();
    let res = t.gitlab(hook.event, &key, hook.bytes()).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["status"], "queued", "{}", res.text());
    t.run_jobs().await;
}

/// Tells nbforge about `project` as GitLab's `project_create` system hook does.
async fn known(t: &TestApp, fake: &FakeGitLab, project: &FakeProject) {
    deliver(
        t,
        fake.system_project_payload(project, SystemProjectEvent::Create),
    )
    .await;
    assert!(
        stored_project(t, &project.path_with_namespace)
            .await
            .is_some()
    );
}

async fn stored_project(t: &TestApp, path: &str) -> Option<ProjectRow> {
    t.db().get_project("gitlab", path).await.unwrap()
}

async fn member_rows(t: &TestApp, scope: &str) -> Vec<MemberRow> {
    t.db().members(GL, scope).await.unwrap()
}

async fn level(t: &TestApp, user: &FakeUser, project: &str) -> Option<i64> {
    t.db().access_level(GL, user.id, project).await.unwrap()
}

/// `POST /api/reconcile[?project=…]` with the admin token; the job's id.
async fn reconcile(t: &TestApp, query: &str) -> JobId {
    let req = Request::post(format!("/api/reconcile{query}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let res = t.request(req).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    JobId(res.json()["job"].as_i64().expect("a job id"))
}

async fn job(t: &TestApp, id: JobId) -> JobRow {
    t.db().get_job(id).await.unwrap().expect("job exists")
}

/// Asserts every job so far ended done.
async fn all_done(t: &TestApp) {
    let counts = t.job_counts().await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["done"], "{counts:?}");
}

on_both_databases!(
    member_hooks_add_update_remove_with_group_inheritance,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/sub/rnaseq");
        known(&t, &fake, &project).await;
        let alice = fake.add_user("alice");
        let bob = fake.add_user("bob");
        let carol = fake.add_user("carol");

        // A member of the parent group is a member of its subgroup's project.
        join(&t, &fake, "lab", &alice, 30).await;
        assert_eq!(level(&t, &alice, "lab/sub/rnaseq").await, Some(30));
        assert_eq!(
            t.db()
                .group_access_level(GL, alice.id, "lab/sub")
                .await
                .unwrap(),
            Some(30)
        );
        let user = t
            .db()
            .get_user(alice.id)
            .await
            .unwrap()
            .expect("user recorded");
        assert_eq!(user.username, "alice");

        fake.add_member("lab", &alice, 40);
        deliver(
            &t,
            fake.member_payload("lab", &alice, 40, MemberEvent::Update),
        )
        .await;
        assert_eq!(level(&t, &alice, "lab/sub/rnaseq").await, Some(40));

        // A subgroup's hook names it `sub`; its full path comes from GitLab.
        fake.add_member("lab/sub", &carol, 20);
        deliver(
            &t,
            fake.member_payload("lab/sub", &carol, 20, MemberEvent::Add),
        )
        .await;
        let sub = member_rows(&t, "group:lab/sub").await;
        assert_eq!(sub.len(), 1, "{sub:?}");
        assert_eq!((sub[0].user_id, sub[0].source.as_str()), (carol.id, "hook"));
        assert_eq!(level(&t, &carol, "lab/sub/rnaseq").await, Some(20));
        assert_eq!(level(&t, &carol, "lab/other").await, None);

        // Project members come by system hook.
        deliver(
            &t,
            fake.team_member_payload(&project, &bob, 20, TeamEvent::Add),
        )
        .await;
        assert_eq!(level(&t, &bob, "lab/sub/rnaseq").await, Some(20));
        deliver(
            &t,
            fake.team_member_payload(&project, &bob, 30, TeamEvent::Update),
        )
        .await;
        assert_eq!(level(&t, &bob, "lab/sub/rnaseq").await, Some(30));
        deliver(
            &t,
            fake.team_member_payload(&project, &bob, 30, TeamEvent::Remove),
        )
        .await;
        assert_eq!(level(&t, &bob, "lab/sub/rnaseq").await, None);

        fake.remove_member("lab", &alice);
        deliver(
            &t,
            fake.member_payload("lab", &alice, 40, MemberEvent::Remove),
        )
        .await;
        assert_eq!(level(&t, &alice, "lab/sub/rnaseq").await, None);
        all_done(&t).await;
    }
);

on_both_databases!(
    members_of_unknown_projects_and_users_are_kept_but_grant_nothing_yet,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        // GitLab knows the project and the user; nbforge has heard of neither.
        let unseen = fake.add_project("lab/unseen");
        let dave = fake.add_user("dave");
        assert!(t.db().get_user(dave.id).await.unwrap().is_none());
        deliver(
            &t,
            fake.team_member_payload(&unseen, &dave, 30, TeamEvent::Add),
        )
        .await;
        all_done(&t).await;
        let user = t
            .db()
            .get_user(dave.id)
            .await
            .unwrap()
            .expect("user recorded");
        assert_eq!(user.username, "dave");
        let rows = member_rows(&t, "project:lab/unseen").await;
        assert_eq!(rows.len(), 1, "the membership is stored");
        // Pages look the project up first: unknown, it grants nothing.
        assert!(stored_project(&t, "lab/unseen").await.is_none());
        // Once the project is known, the membership counts.
        known(&t, &fake, &unseen).await;
        assert_eq!(level(&t, &dave, "lab/unseen").await, Some(30));
    }
);

on_both_databases!(
    groups_deleted_or_renamed_and_projects_made_private,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/sub/rnaseq");
        fake.set_visibility(&project, "public");
        known(&t, &fake, &project).await;
        let stored = |t: &TestApp| {
            let db = t.db().clone();
            async move {
                db.get_project("gitlab", "lab/sub/rnaseq")
                    .await
                    .unwrap()
                    .unwrap()
                    .visibility
            }
        };
        assert_eq!(stored(&t).await.as_deref(), Some("public"));
        fake.set_visibility(&project, "private");
        deliver(
            &t,
            fake.system_project_payload(&project, SystemProjectEvent::Update),
        )
        .await;
        assert_eq!(stored(&t).await.as_deref(), Some("private"));

        let alice = fake.add_user("alice");
        let bob = fake.add_user("bob");
        fake.add_member("lab/sub", &alice, 30);
        deliver(
            &t,
            fake.member_payload("lab/sub", &alice, 30, MemberEvent::Add),
        )
        .await;
        deliver(
            &t,
            fake.team_member_payload(&project, &bob, 20, TeamEvent::Add),
        )
        .await;

        // `lab/sub` renamed `lab/omics`: its memberships and its projects' move along.
        fake.add_group("lab/omics");
        deliver(
            &t,
            fake.system_group_payload(
                "lab/omics",
                SystemGroupEvent::Rename {
                    old_full_path: "lab/sub".into(),
                },
            ),
        )
        .await;
        assert!(member_rows(&t, "group:lab/sub").await.is_empty());
        assert_eq!(member_rows(&t, "group:lab/omics").await.len(), 1);
        assert_eq!(level(&t, &bob, "lab/omics/rnaseq").await, Some(20));
        // The project moved with its group, visibility and all.
        assert!(stored_project(&t, "lab/sub/rnaseq").await.is_none());
        let moved = stored_project(&t, "lab/omics/rnaseq").await.expect("moved");
        assert_eq!(moved.visibility.as_deref(), Some("private"));
        assert_eq!(level(&t, &alice, "lab/omics/rnaseq").await, Some(30));

        // `lab` deleted: every membership at or under it goes.
        join(&t, &fake, "lab", &alice, 50).await;
        let destroyed = fake.system_group_payload("lab", SystemGroupEvent::Destroy);
        fake.remove_group("lab");
        deliver(&t, destroyed).await;
        for user in [&alice, &bob] {
            let left = t.db().memberships_of_user(GL, user.id).await.unwrap();
            assert!(left.is_empty(), "{left:?}");
        }
        all_done(&t).await;
    }
);

on_both_databases!(
    users_deleted_blocked_or_renamed,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        fake.add_group("lab");
        let alice = fake.add_user("alice");
        let bob = fake.add_user("bob");
        for u in [&alice, &bob] {
            join(&t, &fake, "lab", u, 30).await;
        }
        let far = t.app.clock.now_ms() + 86_400_000;
        t.db()
            .create_web_session("alice-session", alice.id, "csrf", far)
            .await
            .unwrap();
        t.db()
            .create_web_session("bob-session", bob.id, "csrf", far)
            .await
            .unwrap();

        deliver(
            &t,
            fake.system_user_payload(&alice, SystemUserEvent::Destroy),
        )
        .await;
        let gone = t.db().get_user(alice.id).await.unwrap().unwrap();
        assert_eq!(gone.state, "deleted");
        assert!(
            t.db()
                .get_web_session("alice-session")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            t.db()
                .memberships_of_user(GL, alice.id)
                .await
                .unwrap()
                .is_empty()
        );

        deliver(
            &t,
            fake.system_user_payload(&bob, SystemUserEvent::FailedLogin),
        )
        .await;
        assert_eq!(
            t.db().get_user(bob.id).await.unwrap().unwrap().state,
            "blocked"
        );
        assert!(
            t.db()
                .get_web_session("bob-session")
                .await
                .unwrap()
                .is_none()
        );

        let mut renamed = bob.clone();
        renamed.username = "robert".into();
        deliver(
            &t,
            fake.system_user_payload(
                &renamed,
                SystemUserEvent::Rename {
                    old_username: "bob".into(),
                },
            ),
        )
        .await;
        assert_eq!(
            t.db().get_user(bob.id).await.unwrap().unwrap().username,
            "robert"
        );
        // Memberships are by id: the rename keeps them.
        assert_eq!(level(&t, &bob, "lab/x").await, Some(30));
        all_done(&t).await;
    }
);

on_both_databases!(
    a_lost_removal_is_repaired_on_demand_and_on_schedule,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/rnaseq");
        known(&t, &fake, &project).await;
        let alice = fake.add_user("alice");
        let bob = fake.add_user("bob");
        join(&t, &fake, "lab", &alice, 30).await;
        fake.add_member("lab/rnaseq", &bob, 20);
        assert_eq!(level(&t, &alice, "lab/rnaseq").await, Some(30));

        // Removed in GitLab; the hook never came.
        fake.remove_member("lab", &alice);
        assert_eq!(level(&t, &alice, "lab/rnaseq").await, Some(30), "stale");
        let id = reconcile(&t, "").await;
        assert_eq!(t.run_jobs().await, 1);
        assert_eq!(job(&t, id).await.state, "done");
        assert_eq!(level(&t, &alice, "lab/rnaseq").await, None);
        // A member the hooks never told of is found too.
        assert_eq!(level(&t, &bob, "lab/rnaseq").await, Some(20));
        let rows = member_rows(&t, "project:lab/rnaseq").await;
        assert!(rows.iter().all(|r| r.source == "reconcile"), "{rows:?}");
        assert_eq!(
            t.db().get_user(bob.id).await.unwrap().unwrap().name,
            bob.name
        );

        // One project on demand.
        fake.remove_member("lab/rnaseq", &bob);
        reconcile(&t, "?project=lab/rnaseq").await;
        assert_eq!(t.run_jobs().await, 1);
        assert_eq!(level(&t, &bob, "lab/rnaseq").await, None);

        // Scheduled: a new schedule is due at once, then every interval.
        // The session culler is scheduled too; it has tests of its own.
        let schedules: Vec<_> = nbforge::jobs::schedule::schedules(&t.app.settings)
            .into_iter()
            .filter(|s| s.name != "cull-sessions")
            .collect();
        let ctx = t.jobs();
        let tick = || nbforge::jobs::schedule::tick(&ctx, &schedules);
        assert_eq!(tick().await.unwrap().len(), 2, "cleanup and reconcile");
        assert_eq!(t.run_jobs().await, 2);
        join(&t, &fake, "lab", &alice, 40).await;
        fake.remove_member("lab", &alice);
        assert!(tick().await.unwrap().is_empty(), "not due yet");
        t.advance(std::time::Duration::from_secs(3600));
        assert_eq!(tick().await.unwrap().len(), 2);
        t.run_jobs().await;
        assert_eq!(level(&t, &alice, "lab/rnaseq").await, None);
        assert!(member_rows(&t, "group:lab").await.is_empty());
        all_done(&t).await;
    }
);

on_both_databases!(
    leaving_a_group_drops_what_the_reconciler_found_under_it,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/sub/rnaseq");
        known(&t, &fake, &project).await;
        let alice = fake.add_user("alice");
        let bob = fake.add_user("bob");
        fake.add_member("lab", &alice, 40);
        fake.add_member("lab", &bob, 40);
        fake.add_member("lab/sub/rnaseq", &bob, 30);
        reconcile(&t, "").await;
        t.run_jobs().await;
        // `/members/all` of the project lists them, inherited or not.
        let rows = member_rows(&t, "project:lab/sub/rnaseq").await;
        assert_eq!(rows.len(), 2, "{rows:?}");

        // Removed from `lab`: the project's row may have come from `lab`, so it goes too.
        fake.remove_member("lab", &alice);
        deliver(
            &t,
            fake.member_payload("lab", &alice, 40, MemberEvent::Remove),
        )
        .await;
        assert_eq!(level(&t, &alice, "lab/sub/rnaseq").await, None);

        // Lowered in `lab`: rows above the new level go until the next reconcile says.
        fake.add_member("lab", &bob, 10);
        deliver(
            &t,
            fake.member_payload("lab", &bob, 10, MemberEvent::Update),
        )
        .await;
        assert_eq!(level(&t, &bob, "lab/sub/rnaseq").await, Some(10));
        reconcile(&t, "").await;
        t.run_jobs().await;
        assert_eq!(level(&t, &bob, "lab/sub/rnaseq").await, Some(30));
        all_done(&t).await;
    }
);

on_both_databases!(
    reconcile_pages_through_members_and_waits_out_rate_limits,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/big");
        known(&t, &fake, &project).await;
        for i in 0..150 {
            let u = fake.add_user(&format!("user{i:03}"));
            fake.add_member("lab", &u, 20);
        }
        // Rate limited once (`Retry-After: 1`), then answered.
        fake.rate_limit(1, 1);
        let id = reconcile(&t, "").await;
        t.run_jobs().await;
        assert_eq!(job(&t, id).await.state, "done");
        let rows = member_rows(&t, "project:lab/big").await;
        assert_eq!(rows.len(), 150);
        let pages: Vec<Option<String>> = fake
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/members/all"))
            .map(|r| r.query)
            .collect();
        assert!(
            pages
                .iter()
                .any(|q| q.as_deref().is_some_and(|q| q.contains("page=2"))),
            "{pages:?}"
        );

        // GitLab keeps refusing: the job is retried later with a clear reason.
        fake.rate_limit(1000, 0);
        let id = reconcile(&t, "").await;
        assert!(nbforge::jobs::run_one(&t.jobs()).await.unwrap());
        let row = job(&t, id).await;
        assert_eq!(row.state, "pending", "{row:?}");
        let error = row.last_error.unwrap_or_default();
        assert!(error.contains("HTTP 429"), "{error}");
        assert_eq!(member_rows(&t, "project:lab/big").await.len(), 150);
        fake.rate_limit(0, 0);
    }
);

on_both_databases!(
    a_revoked_token_fails_clearly_and_leaves_the_rows,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let project = fake.add_project("lab/rnaseq");
        known(&t, &fake, &project).await;
        let alice = fake.add_user("alice");
        join(&t, &fake, "lab", &alice, 30).await;
        fake.remove_member("lab", &alice);

        fake.revoke_token(true);
        let id = reconcile(&t, "").await;
        assert_eq!(t.run_jobs().await, 1);
        let row = job(&t, id).await;
        assert_eq!(row.state, "failed", "{row:?}");
        let error = row.last_error.unwrap_or_default();
        assert!(error.contains("NBFORGE_GITLAB_TOKEN"), "{error}");
        assert!(!error.contains(fake.token_str()), "{error}");
        assert!(!error.contains("message"), "no remote body: {error}");
        // Nothing changed: the rows stay until GitLab can be read again.
        assert_eq!(level(&t, &alice, "lab/rnaseq").await, Some(30));
        assert!(stored_project(&t, "lab/rnaseq").await.is_some());
    }
);

on_both_databases!(
    projects_and_groups_gone_from_gitlab_are_removed_by_reconcile,
    |backend: Backend| async move {
        let Some((fake, t)) = start(backend).await else {
            return;
        };
        let kept = fake.add_project("lab/kept");
        let gone = fake.add_project("lab/gone");
        let moved = fake.add_project("lab/old-name");
        for p in [&kept, &gone, &moved] {
            known(&t, &fake, p).await;
        }
        let alice = fake.add_user("alice");
        fake.add_member("lab/gone", &alice, 30);
        fake.add_member("lab/old-name", &alice, 40);
        fake.add_group("other/sub");
        fake.add_member("other/sub", &alice, 20);
        deliver(
            &t,
            fake.member_payload("other/sub", &alice, 20, MemberEvent::Add),
        )
        .await;
        reconcile(&t, "").await;
        t.run_jobs().await;
        assert_eq!(level(&t, &alice, "lab/gone").await, Some(30));
        assert_eq!(member_rows(&t, "group:other/sub").await.len(), 1);

        // Deleted, renamed and a group deleted, all without hooks.
        fake.remove_project(&gone);
        fake.move_project(&moved, "lab/new-name");
        fake.remove_group("other");
        reconcile(&t, "").await;
        t.run_jobs().await;
        assert!(stored_project(&t, "lab/gone").await.is_none());
        assert!(member_rows(&t, "project:lab/gone").await.is_empty());
        assert!(stored_project(&t, "lab/old-name").await.is_none());
        let renamed = stored_project(&t, "lab/new-name").await;
        assert_eq!(renamed.and_then(|p| p.forge_id), Some(moved.id));
        assert_eq!(level(&t, &alice, "lab/new-name").await, Some(40));
        assert!(member_rows(&t, "group:other/sub").await.is_empty());
        assert!(stored_project(&t, "lab/kept").await.is_some());
        all_done(&t).await;
    }
);

on_both_databases!(
    reconcile_on_demand_needs_the_admin_token_and_a_known_project,
    |backend: Backend| async move {
        let Some((_fake, t)) = start(backend).await else {
            return;
        };
        let res = t
            .request(Request::post("/api/reconcile").body(Body::empty()).unwrap())
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
        let req = Request::post("/api/reconcile?project=lab/nothing")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(t.request(req).await.status, StatusCode::NOT_FOUND);
        t.assert_queue_empty().await;
    }
);
