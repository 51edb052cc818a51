//! `nbforge serve` killed with SIGKILL while a worksheet run executes: after a restart the
//! run is not left running (it fails with the reason) and its container is gone.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::on_both_databases;
use crate::runs::fixture_with;
use crate::sessions::docker_cli;
use crate::support::Backend;
use crate::support::process::Server;
use nbforge::runs::engine::LABEL_RUN;

fn containers_of(run: &str) -> String {
    let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &format!("label={LABEL_RUN}={run}")]);
    ids.trim().to_owned()
}

on_both_databases!(
    a_run_is_not_left_running_after_nbforge_is_killed,
    |backend: Backend| async move {
        let Some(f) = fixture_with(backend, |_| {}).await else {
            return;
        };
        let id = f.start("sleep.ipynb", json!({"seconds": 600})).await;
        let url = f.t.app.settings.database_url.clone();
        let dir = tempfile::tempdir().unwrap();
        let env = [("NBFORGE_RUN_TIMEOUT_SECS", "900")];
        let mut server = Server::start(&url, dir.path(), &env).await;
        // Wait for the cell to execute in its container.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let run = f.t.db().get_run(&id).await.unwrap().unwrap();
            if run.state == "running" && run.cells_total > 0 {
                break;
            }
            assert!(!run.is_final(), "{run:?}\nlog:\n{}", server.log_text());
            assert!(
                Instant::now() < deadline,
                "the run never started; log:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.kill9();
        // The container outlives nbforge.
        assert!(!containers_of(&id).is_empty());
        assert_eq!(
            f.t.db().get_run(&id).await.unwrap().unwrap().state,
            "running"
        );

        let server = Server::start(&url, dir.path(), &env).await;
        let deadline = Instant::now() + Duration::from_secs(180);
        let run = loop {
            let run = f.t.db().get_run(&id).await.unwrap().unwrap();
            if run.is_final() {
                break run;
            }
            assert!(
                Instant::now() < deadline,
                "the run is still {}; log:\n{}",
                run.state,
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(run.state, "failed", "{run:?}");
        assert!(
            run.error
                .as_deref()
                .unwrap_or_default()
                .contains("interrupted"),
            "{run:?}"
        );
        assert_eq!(containers_of(&id), "", "the run's container is removed");
        drop(server);
    }
);
