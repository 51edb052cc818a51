//! A database outage loses no delivery: with PostgreSQL stopped mid-stream, deliveries are
//! spooled (answered 202 `spooled`), and stored in order, with their jobs, when it returns.
//! The test runs its own PostgreSQL cluster (`pg_createcluster`), so stopping it disturbs
//! no other test.

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::{Backend, TestApp, missing_service, push_payload, sha};

/// A PostgreSQL cluster of this test's own, dropped at the end.
struct Cluster {
    version: String,
    name: String,
    port: u16,
}

impl Cluster {
    fn create() -> Option<Cluster> {
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok();
        let version = versions
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .max();
        let (Some(version), true) = (
            version,
            Command::new("pg_createcluster")
                .arg("--help")
                .output()
                .is_ok(),
        ) else {
            missing_service("PostgreSQL server tools (pg_createcluster)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!(
            "nbforge-spool-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let out = Command::new("pg_createcluster")
            .args([
                &version,
                &name,
                "-p",
                &port.to_string(),
                "--start",
                "--",
                "--auth=trust",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Cluster {
            version,
            name,
            port,
        })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self, action: &str) {
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.args([&self.version, &self.name, action]);
        if action == "stop" {
            cmd.args(["-m", "fast"]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_13_deliveries_sent_while_postgresql_is_down_are_stored_when_it_returns() {
    let Some(cluster) = Cluster::create() else {
        return;
    };
    let url = cluster.url();
    let t = TestApp::with_settings(Backend::Sqlite, move |s| s.database_url = url)
        .await
        .unwrap();
    let push = |n: u64| push_payload("lab/spooled", "main", &sha(n), &sha(n + 1));

    let res = t.gitlab("Push Hook", "before-outage", push(1)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["status"], "queued");

    cluster.ctl("stop");
    for (i, uuid) in ["during-1", "during-2", "during-3"].iter().enumerate() {
        let res = t.gitlab("Push Hook", uuid, push(2 + i as u64)).await;
        assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
        assert_eq!(res.json()["status"], "spooled");
    }
    let spool = t.app.settings.data_dir.join("spool");
    let files = || {
        std::fs::read_dir(&spool)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    };
    assert_eq!(files(), 3);
    // The same delivery sent again while down is spooled again; storing drops the copy.
    let res = t.gitlab("Push Hook", "during-3", push(4)).await;
    assert_eq!(res.json()["status"], "spooled");

    cluster.ctl("start");
    // A delivery after the outage queues behind the spooled ones until they are stored.
    let res = t.gitlab("Push Hook", "after", push(5)).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let deadline = Instant::now() + Duration::from_secs(60);
    while files() > 0 {
        assert!(Instant::now() < deadline, "the spool did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deliveries = t.db().list_deliveries(100).await.unwrap();
    let mut keys: Vec<(i64, String)> = deliveries
        .iter()
        .map(|d| (d.id, d.dedupe_key.clone()))
        .collect();
    keys.sort();
    let keys: Vec<&str> = keys.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "gitlab:before-outage",
            "gitlab:during-1",
            "gitlab:during-2",
            "gitlab:during-3",
            "gitlab:after"
        ]
    );
    // Each stored delivery has its jobs.
    for d in &deliveries {
        let jobs = t
            .db()
            .jobs_for_delivery(nbforge::storage::DeliveryId(d.id))
            .await
            .unwrap();
        assert!(!jobs.is_empty(), "{} has no jobs", d.dedupe_key);
    }
    t.app.db.close().await;
}
