//! The life of Jupyter sessions after they start, on the real Docker engine from the base
//! image: culling of idle and old sessions (a busy kernel keeps its session), admission
//! (the per-owner limit names the oldest idle session; the home quota says how much),
//! `/api/sessions` and `/me` for owners, others and administrators, a session killed for
//! memory that says so until dismissed, and sessions found again by a restarted nbforge.
//!
//! Each test runs its own app on its own session network; a [`Cleanup`] guard removes the
//! containers, homes and network it made. Waits poll with generous deadlines.

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use nbforge::config::{LifecycleSettings, SessionSettings};
use nbforge::sessions::lifecycle::{self, Refusal};
use nbforge::sessions::{Home, Owner, SessionId, SessionInfo, SessionState};
use serde_json::Value;

use crate::on_both_databases;
use crate::sessions::{
    Cleanup, base_image, docker_cli, http, put_file, random_id, spec, url, volume_exists,
};
use crate::support::{ADMIN_TOKEN, Backend, TestApp, TestResponse};

/// How long any wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(180);

struct Lab {
    t: TestApp,
    image: String,
    cleanup: Cleanup,
}

/// An app whose sessions run on a network of their own, with `tweak`ed lifecycle settings.
async fn lab(backend: Backend, tweak: impl FnOnce(&mut LifecycleSettings)) -> Option<Lab> {
    let image = base_image()?;
    let network = format!("nbforge-test-{}", uuid::Uuid::new_v4().simple());
    let sessions = SessionSettings {
        memory_max_bytes: 1 << 30,
        cpu_max: 1.0,
        network: network.clone(),
        start_timeout: Duration::from_secs(120),
    };
    let t = TestApp::with_settings(backend, |s| {
        s.sessions = sessions;
        tweak(&mut s.lifecycle);
    })
    .await?;
    Some(Lab {
        t,
        image,
        cleanup: Cleanup {
            network,
            images: Vec::new(),
            users: Vec::new(),
            visitors: Vec::new(),
        },
    })
}

/// A logged-in user: the owner, and the cookie and CSRF token of a browser session.
struct User {
    owner: Owner,
    id: i64,
    cookie: String,
    csrf: String,
}

impl Lab {
    async fn user(&mut self) -> User {
        let id = random_id();
        self.cleanup.users.push(id);
        let username = format!("user{id}");
        let (value, csrf) = self.t.web_session(id, &username).await;
        User {
            owner: Owner::User { id, username },
            id,
            cookie: format!("nbforge_session={value}"),
            csrf,
        }
    }

    fn visitor(&mut self) -> Owner {
        let visitor = uuid::Uuid::new_v4().simple().to_string();
        self.cleanup.visitors.push(visitor.clone());
        Owner::Anonymous { visitor }
    }

    async fn start(&self, owner: &Owner, name: &str) -> SessionInfo {
        self.start_with(owner, name, |_| {}).await
    }

    async fn start_with(
        &self,
        owner: &Owner,
        name: &str,
        tweak: impl FnOnce(&mut nbforge::sessions::SessionSpec),
    ) -> SessionInfo {
        let mut spec = spec(owner, name, &self.image);
        tweak(&mut spec);
        self.t.app.sessions.start(&spec).await.unwrap()
    }

    async fn send(&self, who: Option<&User>, method: &str, path: &str) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(u) = who {
            req = req
                .header("cookie", u.cookie.as_str())
                .header("x-csrf-token", u.csrf.as_str());
        }
        self.t.request(req.body(Body::empty()).unwrap()).await
    }

    async fn cull(&self) -> lifecycle::CullReport {
        self.cull_with(&self.t.app.settings.lifecycle).await
    }

    async fn cull_with(&self, settings: &LifecycleSettings) -> lifecycle::CullReport {
        lifecycle::cull(self.t.app.sessions.as_ref(), settings, &self.t.app.metrics)
            .await
            .unwrap()
    }

    async fn activity(&self, id: &SessionId) -> nbforge::sessions::Activity {
        let activity = self.t.app.sessions.activity(id).await.unwrap();
        activity.expect("the session answers")
    }

    async fn state(&self, id: &SessionId) -> Option<SessionState> {
        self.t
            .app
            .sessions
            .status(id)
            .await
            .unwrap()
            .map(|s| s.state)
    }
}

/// Polls `check` until it gives a value, failing after [`DEADLINE`].
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn container_exists(id: &SessionId) -> bool {
    docker_cli(&["inspect", &format!("nbforge-session-{id}")]).0
}

/// Starts a kernel through Jupyter's REST API and runs a long cell through the kernel's
/// WebSocket, from inside the session (Jupyter's own Python has tornado): returns once
/// the kernel said it is busy. The cell sleeps for ten minutes without output.
fn run_long_cell(info: &SessionInfo) {
    let script = r#"
import json, os, uuid
from tornado import httpclient, ioloop, websocket

async def main():
    base, auth = os.environ["BASE"], {"Authorization": "token " + os.environ["TOKEN"]}
    r = await httpclient.AsyncHTTPClient().fetch(
        "http://127.0.0.1:8888" + base + "api/kernels", method="POST", body="{}", headers=auth)
    kernel = json.loads(r.body)["id"]
    ws = await websocket.websocket_connect(httpclient.HTTPRequest(
        "ws://127.0.0.1:8888" + base + "api/kernels/" + kernel + "/channels", headers=auth))
    header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex,
              "msg_type": "execute_request", "version": "5.3"}
    ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {},
        "channel": "shell", "buffers": [],
        "content": {"code": "import time; time.sleep(600)", "silent": False,
                    "store_history": False, "user_expressions": {}, "allow_stdin": False,
                    "stop_on_error": True}}))
    while True:
        m = await ws.read_message()
        if m is None:
            raise SystemExit("the kernel's socket closed")
        m = json.loads(m)
        if (m.get("msg_type") == "status" and m["content"]["execution_state"] == "busy"
                and m["parent_header"].get("msg_id") == header["msg_id"]):
            print("busy", kernel)
            break
    ws.close()

ioloop.IOLoop.current().run_sync(main, timeout=120)
"#;
    let (ok, out) = docker_cli(&[
        "exec",
        "-e",
        &format!("BASE={}", info.base_url),
        "-e",
        &format!("TOKEN={}", info.token.expose()),
        &format!("nbforge-session-{}", info.id),
        "/opt/jupyter/bin/python",
        "-c",
        script,
    ]);
    assert!(ok && out.starts_with("busy"), "{out}");
}

on_both_databases!(
    an_idle_session_is_culled_while_a_busy_kernel_keeps_its_own,
    |backend: Backend| async move {
        let Some(mut lab) = lab(backend, |l| {
            l.idle = Duration::from_secs(3);
            l.cull_period = Duration::from_secs(1);
        })
        .await
        else {
            return;
        };
        let ada = lab.user().await;
        let idle = lab.start(&ada.owner, "idle").await;
        let busy = lab.start(&ada.owner, "busy").await;
        run_long_cell(&busy);
        let activity = lab.activity(&busy.id).await;
        assert!(activity.busy, "{activity:?}");
        assert_eq!(activity.kernels, 1);

        // Through the schedule and the job queue, as `serve` runs it.
        let ctx = lab.t.jobs();
        let schedules = nbforge::jobs::schedule::schedules(&lab.t.app.settings);
        assert!(
            schedules.iter().any(|s| s.name == "cull-sessions"),
            "the culler is scheduled"
        );
        eventually("the idle session is culled", || async {
            nbforge::jobs::schedule::tick(&ctx, &schedules)
                .await
                .unwrap();
            lab.t.run_jobs().await;
            lab.state(&idle.id).await.is_none().then_some(())
        })
        .await;
        assert!(!container_exists(&idle.id));
        // The busy one ran idle of messages as long, and is kept.
        assert_eq!(lab.state(&busy.id).await, Some(SessionState::Running));
        let activity = lab.activity(&busy.id).await;
        assert!(activity.busy, "still computing: {activity:?}");
        let report = lab.cull().await;
        assert!(report.culled.is_empty(), "{report:?}");

        let jobs = lab.t.admin_get("/api/jobs?state=done").await.json();
        assert!(
            jobs["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| j["kind"] == "cull-sessions"),
            "{jobs}"
        );
        let listed = lab.send(Some(&ada), "GET", "/api/sessions").await.json();
        let listed = listed["sessions"].as_array().unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["name"], "busy");
        assert_eq!(listed[0]["busy"], true);
        assert!(listed[0]["last_activity"].is_string());

        let metrics = lab.t.get("/metrics").await.text();
        assert!(
            metrics.contains("nbforge_session_culls_total{reason=\"idle\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("nbforge_sessions{state=\"running\"}"),
            "{metrics}"
        );
        assert!(
            metrics.contains("nbforge_sessions_memory_bytes "),
            "{metrics}"
        );
        assert!(
            !metrics.contains(&format!("user{}", ada.id)),
            "no per-user labels"
        );
        lab.t.app.sessions.stop(&busy.id).await.unwrap();
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nbforge_finds_sessions_stops_old_ones_and_keeps_homes() {
    let Some(mut lab) = lab(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let ada = lab.user().await;
    let info = lab.start(&ada.owner, "kept").await;
    put_file(&info, "notes.txt", "kept\n").await;
    assert!(lab.cull().await.culled.is_empty(), "young and fresh");

    // A second nbforge over the same database, data directory (so the same token key)
    // and engine, whose sessions may live one second.
    let mut settings = (*lab.t.app.settings).clone();
    settings.lifecycle.max_age = Duration::from_secs(1);
    let db = nbforge::storage::Db::connect(&settings.database_url)
        .await
        .unwrap();
    let forges = nbforge::app::build_forges(&settings, &db).unwrap();
    let again = nbforge::app::App::with_parts(settings, db, forges).unwrap();
    let listed = nbforge::web::router(again.clone());
    let res = tower::ServiceExt::oneshot(
        listed,
        Request::get("/api/sessions")
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let found = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == info.id.0.as_str())
        .unwrap_or_else(|| panic!("the session is listed again: {body}"))
        .clone();
    assert_eq!(found["state"], "running");
    assert_eq!(found["name"], "kept");
    assert_eq!(found["owner"], format!("user{}", ada.id));
    assert_eq!(found["project"], "lab/rnaseq");
    assert_eq!(found["commit"], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(found["url"], format!("/user/user{}/kept/", ada.id));
    assert!(
        found["last_activity"].is_string(),
        "the token still works: {found}"
    );
    assert!(!body.to_string().contains(info.token.expose()), "no tokens");

    let culled = eventually("the old session is culled", || async {
        let report = lifecycle::cull(
            again.sessions.as_ref(),
            &again.settings.lifecycle,
            &again.metrics,
        )
        .await
        .unwrap();
        report
            .culled
            .into_iter()
            .find(|(id, _)| *id == info.id)
            .map(|(_, why)| why)
    })
    .await;
    assert_eq!(culled, nbforge::metrics::CullReason::MaxAge);
    assert!(!container_exists(&info.id));
    assert!(lab.state(&info.id).await.is_none());
    assert!(
        again
            .metrics
            .encode()
            .contains("nbforge_session_culls_total{reason=\"max_age\"} 1")
    );
    // The home stays, with the file in it.
    let volume = nbforge::sessions::docker::home_volume(ada.id);
    assert!(volume_exists(&volume));
    let (ok, out) = docker_cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/h:ro"),
        "--entrypoint",
        "cat",
        &lab.image,
        "/h/notes.txt",
    ]);
    assert!(ok && out == "kept\n", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_limit_names_the_oldest_idle_and_the_quota_says_how_much() {
    let Some(mut lab) = lab(Backend::Sqlite, |l| {
        l.per_user = 2;
        l.per_visitor = 1;
        l.home_quota = Some(1 << 20);
    })
    .await
    else {
        return;
    };
    let backend = lab.t.app.sessions.clone();
    let settings = lab.t.app.settings.lifecycle.clone();
    let ada = lab.user().await;
    let home = Home::User { user_id: ada.id };
    lifecycle::admit(backend.as_ref(), &settings, &ada.owner, &home)
        .await
        .expect("no sessions and no home yet");
    let first = lab.start(&ada.owner, "first").await;
    let second = lab.start(&ada.owner, "second").await;
    let refused = lifecycle::admit(backend.as_ref(), &settings, &ada.owner, &home).await;
    let Err(Refusal::TooManySessions { limit, oldest_idle }) = &refused else {
        panic!("a third session was admitted: {refused:?}")
    };
    assert_eq!(*limit, 2);
    let oldest = oldest_idle.as_ref().expect("an idle session to offer");
    assert_eq!(oldest.id, first.id.0);
    assert_eq!(oldest.name, "first");
    assert_eq!(oldest.url, first.base_url);
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("`first`") && message.contains('2'),
        "{message}"
    );

    // Within the limit again, the home is over its quota of 1 MiB.
    lab.t.app.sessions.stop(&second.id).await.unwrap();
    put_file(&first, "big.txt", &"x".repeat(2 << 20)).await;
    let refused = lifecycle::admit(backend.as_ref(), &settings, &ada.owner, &home).await;
    let Err(Refusal::OverQuota {
        used_bytes,
        quota_bytes,
    }) = &refused
    else {
        panic!("over quota but admitted: {refused:?}")
    };
    assert!(*used_bytes >= 2 << 20, "{used_bytes}");
    assert_eq!(*quota_bytes, 1 << 20);
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("of its 1.0 MiB quota"), "{message}");
    // `/me` shows it.
    let me = lab.send(Some(&ada), "GET", "/me").await;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.text();
    assert!(me.contains("Home folder: 2.0 MiB used of 1.0 MiB"), "{me}");
    assert!(me.contains("Over quota"), "{me}");
    assert!(me.contains(&format!("/sessions/{}/stop", first.id)), "{me}");
    assert!(me.contains(&format!("href=\"{}\"", first.base_url)), "{me}");

    // Anonymous visitors have one session each.
    let visitor = lab.visitor();
    let throwaway = lab.start(&visitor, "try").await;
    let refused = lifecycle::admit(backend.as_ref(), &settings, &visitor, &Home::Throwaway).await;
    assert!(
        matches!(refused, Err(Refusal::TooManySessions { limit: 1, .. })),
        "{refused:?}"
    );
    let other = lab.visitor();
    lifecycle::admit(backend.as_ref(), &settings, &other, &Home::Throwaway)
        .await
        .expect("another visitor has none");
    lab.t.app.sessions.stop(&throwaway.id).await.unwrap();
    lab.t.app.sessions.stop(&first.id).await.unwrap();
}

on_both_databases!(
    owners_see_and_stop_their_own_sessions_others_get_404,
    |backend: Backend| async move {
        let Some(mut lab) = lab(backend, |_| {}).await else {
            return;
        };
        let ada = lab.user().await;
        let bob = lab.user().await;
        let info = lab.start(&ada.owner, "mine").await;

        let mine = lab.send(Some(&ada), "GET", "/api/sessions").await;
        assert_eq!(mine.status, StatusCode::OK);
        let mine = mine.json();
        let mine = mine["sessions"].as_array().unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0]["id"], info.id.0.as_str());
        assert_eq!(mine[0]["state"], "running");
        assert!(mine[0]["created"].as_str().unwrap().ends_with('Z'));
        let theirs = lab.send(Some(&bob), "GET", "/api/sessions").await.json();
        assert_eq!(theirs["sessions"], serde_json::json!([]));
        let all = lab.t.admin_get("/api/sessions").await.json();
        assert!(
            all["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == info.id.0.as_str()),
            "{all}"
        );

        let path = format!("/api/sessions/{}", info.id);
        let res = lab.send(Some(&bob), "DELETE", &path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        let res = lab.send(None, "DELETE", &path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        let res = lab
            .send(Some(&bob), "POST", &format!("/sessions/{}/stop", info.id))
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        assert!(container_exists(&info.id), "others cannot stop it");
        assert_eq!(
            http()
                .get(url(&info, "api/status"))
                .header("Authorization", format!("token {}", info.token.expose()))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );

        let res = lab.send(Some(&ada), "DELETE", &path).await;
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
        assert!(!container_exists(&info.id));
        assert!(volume_exists(&nbforge::sessions::docker::home_volume(
            ada.id
        )));
        let res = lab.send(Some(&ada), "DELETE", &path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "gone");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_for_memory_says_so_until_dismissed() {
    let Some(mut lab) = lab(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let ada = lab.user().await;
    let info = lab
        .start_with(&ada.owner, "hungry", |s| {
            s.resources.memory_bytes = 256 << 20
        })
        .await;
    // The Jupyter server is made the out-of-memory killer's first choice (raising one's
    // own processes' score needs no privilege), then a process takes more than the limit.
    let script = "import os\n\
        for pid in os.listdir('/proc'):\n\
        \x20   try:\n\
        \x20       if pid.isdigit() and b'jupyter' in open(f'/proc/{pid}/cmdline', 'rb').read() and int(pid) != os.getpid():\n\
        \x20           open(f'/proc/{pid}/oom_score_adj', 'w').write('1000')\n\
        \x20   except OSError:\n\
        \x20       pass\n\
        chunks = [bytearray(32 << 20) for _ in range(32)]\n";
    let (_, out) = docker_cli(&[
        "exec",
        &format!("nbforge-session-{}", info.id),
        "python3",
        "-c",
        script,
    ]);
    let state = eventually("the session is killed", || async {
        lab.state(&info.id)
            .await
            .filter(|s| !matches!(s, SessionState::Running | SessionState::Starting))
    })
    .await;
    assert_eq!(
        state,
        SessionState::Failed("killed: out of memory".into()),
        "{out}"
    );

    let listed = lab.send(Some(&ada), "GET", "/api/sessions").await.json();
    let listed = &listed["sessions"][0];
    assert_eq!(listed["state"], "failed");
    assert_eq!(listed["reason"], "killed: out of memory");
    assert_eq!(listed["status"], "stopped: out of memory");
    assert!(listed["ended"].is_string(), "{listed}");
    let me = lab.send(Some(&ada), "GET", "/me").await.text();
    assert!(me.contains("stopped: out of memory"), "{me}");
    assert!(me.contains("Dismiss"), "{me}");

    // The culler keeps it listed within the retention, and removes it after.
    assert!(lab.cull().await.culled.is_empty());
    assert!(container_exists(&info.id));
    let report = lab
        .cull_with(&LifecycleSettings {
            ended_retention: Duration::from_millis(1),
            ..lab.t.app.settings.lifecycle.clone()
        })
        .await;
    assert_eq!(
        report.culled,
        vec![(info.id.clone(), nbforge::metrics::CullReason::Ended)]
    );
    assert!(!container_exists(&info.id));

    // Dismissing with the button does the same at once.
    let again = lab
        .start_with(&ada.owner, "again", |s| {
            s.resources.memory_bytes = 256 << 20
        })
        .await;
    docker_cli(&["kill", &format!("nbforge-session-{}", again.id)]);
    eventually("the second session ends", || async {
        lab.state(&again.id)
            .await
            .filter(|s| matches!(s, SessionState::Failed(_)))
    })
    .await;
    let res = lab
        .send(Some(&ada), "POST", &format!("/sessions/{}/stop", again.id))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
    assert!(!container_exists(&again.id));
}
