//! "Run again exactly" against the real Docker engine: a run repeated after its release's
//! tag has moved to a commit with another environment executes in the image (by id) and
//! at the commit of the run it repeats; "run again on the newest version" uses the tag's
//! image today; and the cleanup keeps an image while a stored run refers to it.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::catalog::publish;
use crate::on_both_databases;
use crate::runs::{
    Fixture, code, fixture_with, home_file, json_of, markdown, notebook, parameters, send,
};
use crate::sessions::{docker_cli, random_id};
use crate::support::Backend;
use nbforge::jobs::Job;
use nbforge::storage::{BuildPhase, Enqueue};

const MOVED_LAUNCH: &str = "kind = \"worksheet\"\n\n[[worksheet]]\npath = \"compute.ipynb\"\n";

/// Environment images made for one test (the base image with another label, so another
/// image id), removed at the end.
struct Images {
    prefix: String,
}

impl Images {
    /// `<prefix>/env:<key>` labelled as an environment image; its id.
    fn make(&self, base: &str, key: &str) -> (String, String) {
        let tag = format!("{}/env:{key}", self.prefix);
        let (ok, container) = docker_cli(&["create", base, "true"]);
        assert!(ok, "{container}");
        let container = container.trim().to_owned();
        let (ok, out) = docker_cli(&[
            "commit",
            "--change",
            &format!("LABEL {}={key}", nbforge::environment::LABEL_KEY),
            &container,
            &tag,
        ]);
        docker_cli(&["rm", "-f", &container]);
        assert!(ok, "{out}");
        (tag.clone(), image_id(&tag).expect("the image just made"))
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let (_, ids) = docker_cli(&[
            "images",
            "-q",
            "--filter",
            &format!("reference={}/env:*", self.prefix),
        ]);
        for id in ids.split_whitespace() {
            docker_cli(&["rmi", "-f", id]);
        }
    }
}

fn image_id(reference: &str) -> Option<String> {
    let (ok, id) = docker_cli(&["image", "inspect", "--format", "{{.Id}}", reference]);
    ok.then(|| id.trim().to_owned())
}

/// Records `image` as the built environment of `sha` (newer than any earlier build).
async fn built(f: &Fixture, sha: &str, image: &str) {
    let db = f.t.db();
    let build = db
        .create_build("gitlab", "lab/runs", Some("main"), sha, None)
        .await
        .unwrap();
    db.set_build_environment(build, &format!("key-{}", random_id()), image)
        .await
        .unwrap();
    db.set_build_phase(build, BuildPhase::Built, None, true, None)
        .await
        .unwrap();
}

async fn digest_of(f: &Fixture, id: &str) -> String {
    f.t.db()
        .get_run(id)
        .await
        .unwrap()
        .unwrap()
        .image_digest
        .expect("the run recorded its image")
}

fn output(f: &Fixture, run: &Value) -> String {
    let folder = run["result_folder"]
        .as_str()
        .unwrap()
        .trim_start_matches("~/");
    let (ok, text) = home_file(f.owner_id, &f.image, &format!("{folder}/output.ipynb"));
    assert!(ok, "{text}");
    text
}

/// Runs the cleanup job with environment images handled and no retention.
async fn cleanup(f: &Fixture) {
    let mut ctx = f.t.jobs();
    let mut settings = (*ctx.settings).clone();
    settings.environments.enabled = true;
    settings.jobs.retention.images = Duration::ZERO;
    ctx.settings = Arc::new(settings);
    ctx.db
        .enqueue(&Enqueue {
            supersede: vec![],
            jobs: vec![nbforge::jobs::kinds::Cleanup {}.to_new_job(1)],
        })
        .await
        .unwrap();
    nbforge::jobs::run_until_idle(&ctx).await.unwrap();
}

on_both_databases!(
    run_again_exactly_uses_the_same_image_after_the_tag_moved,
    |backend: Backend| async move {
        let prefix = format!("nbforge-test-again{}", random_id());
        let images = Images {
            prefix: prefix.clone(),
        };
        let Some(f) = fixture_with(backend, move |s| {
            s.environments.image_prefix = prefix;
        })
        .await
        else {
            return;
        };
        let t = &f.t;
        let (first_image, first_id) = images.make(&f.image, "first");
        let (second_image, second_id) = images.make(&f.image, "second");
        let (_, unused_id) = images.make(&f.image, "unused");
        assert_ne!(first_id, second_id);
        let v1 = t.db().releases("lab/runs").await.unwrap()[0]
            .commit_sha
            .clone();
        built(&f, &v1, &first_image).await;

        let first = f.start("compute.ipynb", json!({"rate": 2})).await;
        t.run_jobs().await;
        let run = f.run(&first).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(digest_of(&f, &first).await, first_id);

        // The tag moves to a commit whose notebook and environment differ.
        let fake = &f._fake;
        let p = fake.project("lab/runs").unwrap();
        let changed = notebook(vec![
            markdown("# Growth"),
            parameters("rate = 1.5\nname = \"none\""),
            code("print(f\"result={rate * 3}\")"),
        ]);
        fake.delete_tag(&p, "v1");
        let v1_moved = publish(
            t,
            fake,
            &p,
            "v1",
            &[
                ("launch.toml", MOVED_LAUNCH.as_bytes()),
                ("requirements.txt", b"numpy\n"),
                ("compute.ipynb", &changed),
            ],
        )
        .await;
        assert_ne!(v1, v1_moved);
        built(&f, &v1_moved, &second_image).await;

        // Again exactly: the first run's image and notebook.
        let res = send(
            t,
            Some(&f.owner),
            "POST",
            &format!("/api/runs/{first}/again"),
            Some(json!({})),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let exact = json_of(&res)["id"].as_str().unwrap().to_owned();
        t.run_jobs().await;
        let run = f.run(&exact).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["commit"], v1.as_str());
        assert_eq!(digest_of(&f, &exact).await, first_id);
        assert!(output(&f, &run).contains("result=4.0"), "{run}");
        let folder = run["result_folder"]
            .as_str()
            .unwrap()
            .trim_start_matches("~/");
        let (ok, provenance) =
            home_file(f.owner_id, &f.image, &format!("{folder}/provenance.json"));
        assert!(ok, "{provenance}");
        let provenance: Value = serde_json::from_str(&provenance).unwrap();
        assert_eq!(provenance["image_digest"], first_id.as_str());
        assert_eq!(provenance["commit"], v1.as_str());

        // Again with these values on the newest version: the tag's image today.
        let res = send(
            t,
            Some(&f.owner),
            "POST",
            &format!("/api/runs/{first}/again"),
            Some(json!({"exactly": false})),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
        let newest = json_of(&res)["id"].as_str().unwrap().to_owned();
        t.run_jobs().await;
        let run = f.run(&newest).await;
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["commit"], v1_moved.as_str());
        assert_eq!(digest_of(&f, &newest).await, second_id);
        assert!(output(&f, &run).contains("result=6.0"), "{run}");

        // The buttons: on the run page, and on My results.
        let page = send(t, Some(&f.owner), "GET", &format!("/runs/{first}"), None).await;
        assert!(page.text().contains("Run again exactly"), "{}", page.text());
        assert!(
            page.text()
                .contains("Run again with these values on the newest version")
        );
        let results = send(t, Some(&f.owner), "GET", "/me/results", None).await;
        assert!(
            results.text().contains(&format!("/runs/{first}/again")),
            "{}",
            results.text()
        );
        let res = send(
            t,
            Some(&f.owner),
            "POST",
            &format!("/runs/{exact}/again"),
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.text());
        let location = res.headers["location"].to_str().unwrap().to_owned();
        let again = location.trim_start_matches("/runs/").to_owned();
        assert_eq!(digest_of(&f, &again).await, first_id);
        // Nobody else may repeat my run.
        let res = send(
            t,
            Some(&f.other),
            "POST",
            &format!("/api/runs/{first}/again"),
            Some(json!({})),
        )
        .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        t.run_jobs().await;

        // The cleanup keeps the image runs refer to, and removes the one nothing uses.
        cleanup(&f).await;
        assert_eq!(image_id(&first_id).as_deref(), Some(first_id.as_str()));
        assert_eq!(image_id(&unused_id), None, "the unused image is removed");
        // Once no run refers to it, it goes too.
        for id in [&first, &exact, &again] {
            let res = send(
                t,
                Some(&f.owner),
                "DELETE",
                &format!("/api/runs/{id}"),
                None,
            )
            .await;
            assert_eq!(res.status, StatusCode::NO_CONTENT);
        }
        cleanup(&f).await;
        assert_eq!(image_id(&first_id), None, "no run refers to it any more");
        assert!(image_id(&second_id).is_some(), "the tag's image is kept");
    }
);
