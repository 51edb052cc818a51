//! Worksheet runs when things go wrong, on the real Docker engine: a run container left
//! behind by a job that was given up, a worksheet withdrawn while its run waits, a
//! notebook whose kernel is not in the image, huge outputs, a notebook that forks or
//! fills its home past its quota, a home over its quota. Each has a defined outcome, and
//! nothing is left running.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::catalog::publish;
use crate::on_both_databases;
use crate::runs::{code, fixture_with, home_file, json_of, notebook, parameters, send};
use crate::sessions::docker_cli;
use crate::support::Backend;
use nbforge::jobs::Job;
use nbforge::runs::engine::{LABEL_RUN, container_name};
use nbforge::sessions::docker::{LABEL_OWNER_ID, home_volume};
use nbforge::storage::{BuildPhase, Enqueue, JobId};

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
                "sleep",
                if *id == given_up { "0" } else { "600" },
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

const BAD_LAUNCH: &str = r#"kind = "worksheet"

[resources]
memory = "1G"

[[worksheet]]
path = "kernel.ipynb"

[[worksheet]]
path = "huge.ipynb"

[[worksheet]]
path = "forks.ipynb"

[[worksheet]]
path = "fills.ipynb"
"#;

/// Publishes `v2` with worksheets that misbehave, its environment the base image.
async fn publish_bad(f: &crate::runs::Fixture) {
    let mut kernel: serde_json::Value =
        serde_json::from_slice(&notebook(vec![code("print('never')")])).unwrap();
    kernel["metadata"]["kernelspec"] = json!({"name": "ir", "display_name": "R", "language": "R"});
    let kernel = serde_json::to_vec(&kernel).unwrap();
    let huge = notebook(vec![
        parameters("megabytes = 120"),
        code(
            "from IPython.display import display\ndisplay({'text/plain': 'x' * (megabytes << 20)}, raw=True)",
        ),
    ]);
    let forks = notebook(vec![
        parameters("processes = 5000"),
        code(
            "import subprocess\nchildren = [subprocess.Popen(['sleep', '600']) for _ in range(processes)]",
        ),
    ]);
    // Writes 4 MiB every quarter of a second, up to `megabytes`.
    let fills = notebook(vec![
        parameters("megabytes = 400"),
        code(
            "import os, time\nchunk = os.urandom(4 << 20)\nwith open('fill.bin', 'wb') as f:\n    for _ in range(megabytes // 4):\n        f.write(chunk)\n        f.flush()\n        time.sleep(0.25)\nprint('filled')",
        ),
    ]);
    let p = f._fake.project("lab/runs").unwrap();
    let sha = publish(
        &f.t,
        &f._fake,
        &p,
        "v2",
        &[
            ("launch.toml", BAD_LAUNCH.as_bytes()),
            ("kernel.ipynb", &kernel),
            ("huge.ipynb", &huge),
            ("forks.ipynb", &forks),
            ("fills.ipynb", &fills),
        ],
    )
    .await;
    let db = f.t.db();
    let build = db
        .create_build("gitlab", "lab/runs", Some("main"), &sha, None)
        .await
        .unwrap();
    db.set_build_environment(build, "bad-key", &f.image)
        .await
        .unwrap();
    db.set_build_phase(build, BuildPhase::Built, None, true, None)
        .await
        .unwrap();
}

/// Starts a run of a `v2` worksheet.
async fn start_v2(f: &crate::runs::Fixture, worksheet: &str) -> String {
    let res = send(
        &f.t,
        Some(&f.owner),
        "POST",
        "/api/runs",
        Some(json!({"worksheet": format!("/w/lab/runs/v2/{worksheet}"), "values": {}})),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    json_of(&res)["id"].as_str().unwrap().to_owned()
}

on_both_databases!(
    bad_worksheets_end_with_a_reason_and_leave_nothing_running,
    |backend: Backend| async move {
        let Some(f) = fixture_with(backend, |s| {
            s.runs.timeout = Duration::from_secs(600);
        })
        .await
        else {
            return;
        };
        let t = &f.t;
        publish_bad(&f).await;

        // Withdrawn (its tag deleted: the release is removed) while the run waits.
        let waiting = f.start("compute.ipynb", json!({})).await;
        t.db()
            .delete_release("gitlab", "lab/runs", "v1")
            .await
            .unwrap();
        t.run_jobs().await;
        let run = f.run(&waiting).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"].as_str().unwrap().starts_with("withdrawn"),
            "{run}"
        );
        assert!(run["started_at"].is_null(), "nothing started: {run}");

        // A kernel the image does not have.
        let kernel = start_v2(&f, "kernel.ipynb").await;
        t.run_jobs().await;
        let run = f.run(&kernel).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"]
                .as_str()
                .unwrap()
                .contains("the notebook's kernel 'ir' (r) is not in this environment image"),
            "{run}"
        );

        // Forking past the pids limit: the cell fails, and no process is left.
        let forks = start_v2(&f, "forks.ipynb").await;
        t.run_jobs().await;
        let run = f.run(&forks).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"]
                .as_str()
                .unwrap()
                .contains("Resource temporarily unavailable"),
            "{run}"
        );

        // 120 MiB of output: kept whole in the home, not rendered.
        let huge = start_v2(&f, "huge.ipynb").await;
        t.run_jobs().await;
        let run = f.run(&huge).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        let page = send(t, Some(&f.owner), "GET", &format!("/runs/{huge}"), None).await;
        assert!(
            page.text()
                .contains("is larger than 32 MiB and is not shown"),
            "{}",
            &page.text()[..page.text().len().min(4000)]
        );
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/");
        let (ok, size) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{}:/home/jovyan", home_volume(f.owner_id)),
            &f.image,
            "stat",
            "-c",
            "%s",
            &format!("/home/jovyan/{folder}/output.ipynb"),
        ]);
        assert!(ok, "{size}");
        assert!(size.trim().parse::<u64>().unwrap() > 120 << 20, "{size}");
        // The download streams the whole file.
        let download = send(
            t,
            Some(&f.owner),
            "GET",
            &format!("/runs/{huge}/output.ipynb"),
            None,
        )
        .await;
        assert_eq!(download.status, StatusCode::OK);
        assert_eq!(download.body.len().to_string(), size.trim());
        let (ok, html) = home_file(f.owner_id, &f.image, &format!("{folder}/output.html"));
        assert!(ok && html.contains("is not shown"), "{ok}");

        for id in [&waiting, &kernel, &forks, &huge] {
            assert_eq!(containers_of(id), "", "nothing left of {id}");
        }
    }
);

on_both_databases!(
    a_home_over_its_quota_runs_nothing,
    |backend: Backend| async move {
        let Some(f) = fixture_with(backend, |s| s.lifecycle.home_quota = Some(1 << 20)).await
        else {
            return;
        };
        let t = &f.t;
        // A home already holding 2 MiB, over its 1 MiB quota.
        let (ok, out) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{}:/home/jovyan", home_volume(f.owner_id)),
            &f.image,
            "sh",
            "-c",
            "head -c 2097152 /dev/zero > /home/jovyan/big.bin",
        ]);
        assert!(ok, "{out}");
        let second = f.start("compute.ipynb", json!({})).await;
        t.run_jobs().await;
        let run = f.run(&second).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(run["error"].as_str().unwrap().contains("quota"), "{run}");
        assert!(run["started_at"].is_null(), "nothing started: {run}");
    }
);

on_both_databases!(
    a_run_that_fills_the_home_past_its_quota_is_stopped,
    |backend: Backend| async move {
        let Some(f) = fixture_with(backend, |s| s.lifecycle.home_quota = Some(40 << 20)).await
        else {
            return;
        };
        publish_bad(&f).await;
        let id = start_v2(&f, "fills.ipynb").await;
        f.t.run_jobs().await;
        let run = f.run(&id).await;
        assert_eq!(run["state"], "failed", "{run}");
        let error = run["error"].as_str().unwrap();
        assert!(error.contains("filled your home folder past its"), "{run}");
        assert!(containers_of(&id).is_empty(), "nothing left running");
        // Stopped on the way: the file is over the quota, far from the 400 MiB asked.
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/")
            .to_owned();
        let (_, listing) = docker_cli(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{}:/home/jovyan", home_volume(f.owner_id)),
            &f.image,
            "stat",
            "-c",
            "%s",
            &format!("/home/jovyan/{folder}/fill.bin"),
        ]);
        let bytes: u64 = listing.trim().parse().unwrap_or(0);
        assert!(
            bytes > 40 << 20 && bytes < 400 << 20,
            "the run wrote {bytes} bytes before it was stopped"
        );
    }
);
