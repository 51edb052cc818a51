//! Worksheet runs when things go wrong, on the real Docker engine: a run container left
//! behind by a job that was given up, a worksheet withdrawn while its run waits, a
//! notebook whose kernel is not in the image, huge outputs, a notebook that forks or
//! fills its disk, a home over its quota. Each has a defined outcome, and nothing is
//! left running.

use std::time::Duration;

use serde_json::json;

use crate::on_both_databases;
use crate::runs::fixture_with;
use crate::sessions::docker_cli;
use crate::support::Backend;
use nbforge::jobs::Job;
use nbforge::runs::engine::{LABEL_RUN, container_name};
use nbforge::sessions::docker::LABEL_OWNER_ID;
use nbforge::storage::{Enqueue, JobId};

fn containers_of(run: &str) -> String {
    let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &format!("label={LABEL_RUN}={run}")]);
    ids.trim().to_owned()
}

/// Runs the scheduled cleanup job now.
async fn cleanup(t: &crate::support::TestApp) {
    t.db()
        .enqueue(&Enqueue {
            supersede: vec![],
            jobs: vec![nbforge::jobs::kinds::Cleanup {}.to_new_job(1)],
        })
        .await
        .unwrap();
    t.run_jobs().await;
}

on_both_databases!(
    the_cleanup_removes_containers_of_runs_whose_job_was_given_up,
    |backend: Backend| async move {
        let Some(f) = fixture_with(backend, |_| {}).await else {
            return;
        };
        let t = &f.t;
        let given_up = f.start("compute.ipynb", json!({})).await;
        let alive = f.start("compute.ipynb", json!({})).await;
        // Both jobs are taken by a worker; each run has a container (one exited, one
        // still running), as a worker would have left them.
        for id in [&given_up, &alive] {
            let job = t
                .db()
                .claim_job("a-worker-that-dies", Duration::from_secs(3600))
                .await
                .unwrap()
                .expect("the run's job");
            assert!(t.db().start_run(id, 10).await.unwrap());
            let command = if *id == given_up { "true" } else { "600" };
            let (ok, out) = docker_cli(&[
                "run",
                "-d",
                "--name",
                &container_name(id),
                "--label",
                &format!("{LABEL_RUN}={id}"),
                "--label",
                &format!("{LABEL_OWNER_ID}={}", f.owner_id),
                "--network",
                "none",
                &f.image,
                if command == "true" { "true" } else { "sleep" },
                command,
            ]);
            assert!(ok, "{out}");
            assert!(!containers_of(id).is_empty());
            let run_id = t.db().get_run(id).await.unwrap().unwrap().job_id.unwrap();
            if *id == given_up {
                assert_eq!(job.id, run_id);
                t.db()
                    .dead_letter_job(JobId(job.id), "a-worker-that-dies", "the worker crashed")
                    .await
                    .unwrap();
            }
        }
        cleanup(t).await;
        assert_eq!(
            containers_of(&given_up),
            "",
            "the given-up run's container is removed"
        );
        let run = f.run(&given_up).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"]
                .as_str()
                .unwrap()
                .contains("the worker crashed"),
            "{run}"
        );
        // A run whose job may still end it keeps its container.
        assert!(!containers_of(&alive).is_empty());
        assert_eq!(f.run(&alive).await["state"], "running");
    }
);
