//! Regression tests for the findings of a security review, one per finding, named after it.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use futures_util::StreamExt as _;

use nbforge::config::{
    FileArgs, ForgeArgs, ImageArgs, ServerArgs, Settings, SettingsArgs, redact_url,
};

use crate::on_both_databases;
use crate::support::{Backend, TestApp, WEBHOOK_SECRET, push_payload, sha};

fn load_toml(toml: &str) -> Result<Settings, String> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let args = SettingsArgs {
        file: FileArgs {
            config: Some(file.path().to_owned()),
        },
        ..Default::default()
    };
    Settings::load(&args).map_err(|e| e.to_string())
}

/// Finding 5: an empty secret in a rotation list, or an empty GitHub secret, switched
/// authentication off. Both are refused at start-up, and so is a short one.
#[test]
fn finding_5_empty_secrets_disable_authentication() {
    let err = load_toml(r#"gitlab_webhook_secret = ["", "a-long-enough-new-secret"]"#)
        .expect_err("an empty secret in the list is refused");
    assert!(err.contains("gitlab_webhook_secret"), "{err}");
    assert!(err.contains("shorter than 16"), "{err}");

    let args = SettingsArgs {
        forge: ForgeArgs {
            github_webhook_secret: Some("".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Settings::load(&args).expect_err("an empty GitHub secret is refused");
    assert!(err.to_string().contains("github_webhook_secret"), "{err}");

    let args = SettingsArgs {
        server: ServerArgs {
            admin_token: Some("short".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = Settings::load(&args).expect_err("a short admin token is refused");
    assert!(err.to_string().contains("admin_token"), "{err}");

    // The secrets themselves never appear in the message.
    let err = load_toml(r#"gitlab_webhook_secret = ["tiny-secret"]"#).unwrap_err();
    assert!(!err.contains("tiny-secret"), "{err}");

    load_toml(r#"gitlab_webhook_secret = ["a-long-enough-new-secret", "an-older-long-secret"]"#)
        .expect("long secrets are accepted");
}

/// Finding 5, at the door: an empty `X-Gitlab-Token` never matches, whatever is configured.
#[tokio::test]
async fn finding_5_empty_presented_token_is_refused() {
    let t = TestApp::sqlite().await;
    let body = push_payload("lab/rnaseq", "main", &sha(1), &sha(2));
    let res = t
        .gitlab_with(
            "Push Hook",
            body.clone(),
            &[("x-gitlab-token", ""), ("x-gitlab-event-uuid", "u-empty")],
        )
        .await;
    assert_eq!(res.status, 401, "{}", res.text());
    let res = t
        .gitlab_with(
            "Push Hook",
            body,
            &[
                ("x-gitlab-token", WEBHOOK_SECRET),
                ("x-gitlab-event-uuid", "u-right"),
            ],
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
}

/// Finding 9: the `event` label of the delivery metric came from the request header and
/// was recorded before authentication, so every new header value made a new series.
#[tokio::test]
async fn finding_9_unbounded_metric_series() {
    let t = TestApp::sqlite().await;
    for n in 0..300 {
        let res = t
            .gitlab_with(
                &format!("Made Up Hook {n}"),
                b"{}".to_vec(),
                &[("x-gitlab-token", "wrong")],
            )
            .await;
        assert_eq!(res.status, 401);
    }
    let metrics = t.get("/metrics").await.text();
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("nbforge_webhook_deliveries"))
        .collect();
    assert!(!series.is_empty(), "the metric is exported:\n{metrics}");
    assert!(
        series.len() < 5,
        "300 made-up event names made {} series:\n{}",
        series.len(),
        series.join("\n")
    );
    assert!(!metrics.contains("made_up_hook"), "{metrics}");
}

/// Finding 20: a `?password=` in the database URL was printed at start.
#[test]
fn finding_20_database_url_query_password_is_printed() {
    for url in [
        "postgres://db.example/nbforge?user=nb&password=hunter2",
        "postgres://nb:hunter2@db.example/nbforge",
        "postgresql://db.example/nbforge?sslmode=require&PASSWORD=hunter2",
    ] {
        let shown = redact_url(url);
        assert!(!shown.contains("hunter2"), "{url} shown as {shown}");
        let settings = Settings::for_database(url);
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}

/// Finding 23: the extra CA file was copied verbatim into images, private keys included.
#[test]
fn finding_23_extra_ca_file_is_copied_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let bundle = format!(
        "# local CA\n{cert}-----BEGIN PRIVATE KEY-----\nTUlJRXZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCS2N3Z2dTakFnRUFBb0lCQVFD\n-----END PRIVATE KEY-----\n{cert}"
    );
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, bundle).unwrap();
    let args = SettingsArgs {
        image: ImageArgs {
            extra_ca_certs: Some(path.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = Settings::load(&args).expect("a bundle with certificates loads");
    let kept = String::from_utf8(settings.environments.extra_ca.unwrap()).unwrap();
    assert_eq!(kept, format!("{cert}{cert}"));
    assert!(!kept.contains("PRIVATE KEY"));
    assert!(!kept.contains("# local CA"));

    std::fs::write(
        &path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = Settings::load(&args).expect_err("a file without certificates is refused");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

/// Finding 17: `hooks/post-receive` passed the secret as a curl argument (visible in `ps`)
/// and read it from the repository's world-readable config.
#[test]
fn finding_17_post_receive_secret_on_curl_command_line() {
    if Command::new("git").arg("--version").output().is_err() {
        panic!("git is needed");
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // A curl that records its arguments and the config files it was given.
    let log = dir.path().join("curl.log");
    let fake_curl = format!(
        "#!/bin/sh\nprintf 'ARGS %s\\n' \"$*\" >> {log}\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = -K ]; then cat \"$2\" >> {log}; fi\n  shift\ndone\ncat >/dev/null\nprintf 202\n",
        log = log.display()
    );
    let curl = bin.join("curl");
    std::fs::write(&curl, fake_curl).unwrap();
    std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let bare = dir.path().join("lab").join("rnaseq.git");
    std::fs::create_dir_all(&bare).unwrap();
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env_remove("NBFORGE_GITLAB_WEBHOOK_SECRET")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/hooks/post-receive"),
        bare.join("hooks/post-receive"),
    )
    .unwrap();
    let secret = "a-long-webhook-secret-for-the-hook";
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    git(
        &bare,
        &[
            "config",
            "nbforge.secretFile",
            secret_file.to_str().unwrap(),
        ],
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("a.txt"), "1").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-qm", "one"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);

    // A secret file others can read is refused, and nothing is sent.
    let stderr = git(&work, &["push", "-q", "origin", "main"]);
    assert!(stderr.contains("readable by others"), "{stderr}");
    assert!(!log.exists(), "nothing is sent with an exposed secret");

    // With mode 600 the delivery goes out, the secret only inside curl's config file.
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(work.join("a.txt"), "2").unwrap();
    git(&work, &["commit", "-qam", "two"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let recorded = std::fs::read_to_string(&log).expect("curl ran");
    let args: Vec<&str> = recorded
        .lines()
        .filter(|l| l.starts_with("ARGS "))
        .collect();
    assert_eq!(args.len(), 1, "{recorded}");
    assert!(
        !args[0].contains(secret),
        "secret on the command line: {}",
        args[0]
    );
    assert!(
        recorded.contains(&format!("header = \"X-Gitlab-Token: {secret}\"")),
        "{recorded}"
    );
    // The repository's config names a file, never the secret itself.
    let config = std::fs::read_to_string(bare.join("config")).unwrap();
    assert!(!config.contains(secret));
}

/// Finding 4: builds ran with no memory or CPU limit, so one repository's build could take
/// the machine. A step that allocates past the build's memory limit now fails the build.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_builds_run_without_limits() {
    use nbforge::environment::{BuildError, BuildRequest, Builder, BuilderSettings};
    let base = Settings::for_database("sqlite::memory:")
        .environments
        .base_image;
    let builder = Builder::connect(BuilderSettings {
        memory_bytes: 96 * 1024 * 1024,
        cpus: 0.5,
        ..BuilderSettings::new("nbforge-test")
    });
    match builder.image_exists(&base).await {
        Ok(true) => {}
        _ => {
            crate::support::missing_service(&format!(
                "the Docker engine with the base image {base}"
            ));
            return;
        }
    }
    let dockerfile = format!(
        "FROM {base}\nRUN python3 -c \"x = bytearray(400 * 1024 * 1024); print(len(x))\"\n"
    );
    let req = BuildRequest::in_memory(
        format!("nbforge-test/limits:{}", uuid::Uuid::new_v4().simple()),
        "Dockerfile".into(),
        vec![("Dockerfile".into(), dockerfile.into_bytes())],
        Default::default(),
    );
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let log = |l: &str| lines.lock().unwrap().push(l.to_owned());
    let result = builder
        .build(&req, &log, &tokio_util::sync::CancellationToken::new())
        .await;
    let log = lines.lock().unwrap().join("\n");
    assert!(
        matches!(&result, Err(BuildError::Failed(m)) if m.contains("137")),
        "a step over the memory limit is killed (exit 137): {result:?}\n{log}"
    );
    let _ = builder
        .docker()
        .unwrap()
        .remove_image(
            &req.tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

/// Finding 4: build steps could reach the host's own services (nbforge, its database,
/// anything listening on the host). On the build network made by `scripts/build-network`
/// they cannot, while on the engine's default bridge they can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_4_build_steps_reach_host_services() {
    use nbforge::environment::{BuildError, BuildRequest, Builder, BuilderSettings};
    const NETWORK: &str = "nbforge-build";
    let base = Settings::for_database("sqlite::memory:")
        .environments
        .base_image;
    let open = Builder::connect(BuilderSettings::new("nbforge-test"));
    if !matches!(open.image_exists(&base).await, Ok(true)) {
        crate::support::missing_service(&format!("the Docker engine with the base image {base}"));
        return;
    }
    let docker = open.docker().unwrap();
    let gateway = |name: &'static str| {
        let docker = docker.clone();
        async move {
            let net = docker
                .inspect_network(
                    name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .ok()?;
            let config = net.ipam?.config?.first()?.clone();
            // The default bridge names only its subnet; its gateway is the subnet's first host.
            config.gateway.or_else(|| {
                let subnet = config.subnet?;
                let ip: std::net::Ipv4Addr = subnet.split_once('/')?.0.parse().ok()?;
                Some(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
            })
        }
    };
    let Some(build_gateway) = gateway(NETWORK).await else {
        crate::support::missing_service("the build network (scripts/build-network)");
        return;
    };
    let bridge_gateway = gateway("bridge")
        .await
        .expect("the default bridge has a gateway");

    // A service on this host, on every address.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });

    let attempt = |builder: Builder, gateway: String| {
        let base = base.clone();
        async move {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let dockerfile = format!(
                "FROM {base}\nRUN python3 -c \"import socket; socket.create_connection(('{gateway}', {port}), timeout=4); print('{token} reached the host')\"\n"
            );
            let req = BuildRequest::in_memory(
                format!("nbforge-test/network:{token}"),
                "Dockerfile".into(),
                vec![("Dockerfile".into(), dockerfile.into_bytes())],
                Default::default(),
            );
            let result = builder
                .build(&req, &|_| {}, &tokio_util::sync::CancellationToken::new())
                .await;
            let _ = builder
                .docker()
                .unwrap()
                .remove_image(
                    &req.tag,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
            result
        }
    };
    let isolated = Builder::connect(BuilderSettings {
        network: Some(NETWORK.into()),
        ..BuilderSettings::new("nbforge-test")
    });
    let blocked = attempt(isolated, build_gateway).await;
    assert!(
        matches!(blocked, Err(BuildError::Failed(_))),
        "a build step on the build network reached the host: {blocked:?}"
    );
    let reached = attempt(open, bridge_gateway).await;
    assert!(
        reached.is_ok(),
        "on the default bridge the same step reaches the host (the test's control): {reached:?}"
    );
}

/// Finding 14: `/w/…` looked up one candidate project per path segment, so a URL of 32,000
/// segments cost as many queries. Such a URL is now refused before any lookup.
#[tokio::test]
async fn finding_14_worksheet_paths_cost_a_query_per_segment() {
    let t = TestApp::sqlite().await;
    let long = format!("/w/{}", "a/".repeat(32_000));
    let res = t.get(&long).await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("too many parts"), "{}", res.text());
    // An ordinary unknown worksheet is still a plain 404.
    assert_eq!(t.get("/w/lab/unknown/v1/a.ipynb").await.status, 404);
}

/// Finding 22: a tag holding `/` was published but its worksheets could not be reached
/// under `/w`.
#[tokio::test]
async fn finding_22_tags_with_a_slash_cannot_be_reached() {
    let Some(t) = crate::support::scenario::Scenario::gitlab(crate::support::Backend::Sqlite).await
    else {
        return;
    };
    t.push("lab/growth", &crate::catalog::release_files()).await;
    t.tag("lab/growth", "release/2026.1").await;
    t.run_jobs().await;
    let project = t.get("/w/lab/growth").await;
    assert_eq!(project.status, 200, "{}", project.text());
    let release = t.get("/w/lab/growth/release/2026.1").await;
    assert_eq!(release.status, 200, "{}", release.text());
    assert!(
        release.text().contains("growth.ipynb"),
        "{}",
        release.text()
    );
    let sheet = t.get("/w/lab/growth/release/2026.1/growth.ipynb").await;
    assert_eq!(sheet.status, 200, "{}", sheet.text());
    assert!(sheet.text().contains("Growth curve"), "{}", sheet.text());
}

/// Finding 11: refs and builds were looked up by project path whatever the forge, so a
/// GitHub repository and a GitLab project with the same path mixed on launch pages.
#[tokio::test]
async fn finding_11_same_named_projects_on_two_forges_mix() {
    let t = TestApp::sqlite().await;
    let gitlab_sha = "a1".repeat(20);
    let res = t
        .gitlab(
            "Push Hook",
            "gl-1",
            push_payload("octo/growth", "main", &sha(0), &gitlab_sha),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    let mut body: serde_json::Value =
        serde_json::from_str(include_str!("../data/github/push_branch.json")).unwrap();
    let github_sha = "b2".repeat(20);
    body["ref"] = "refs/heads/main".into();
    body["after"] = github_sha.clone().into();
    body["repository"]["full_name"] = "octo/growth".into();
    body["repository"]["name"] = "growth".into();
    body["repository"]["owner"]["login"] = "octo".into();
    body["repository"]["owner"]["name"] = "octo".into();
    let res = t
        .github("push", "gh-1", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    t.run_jobs().await;

    let gl = t.get("/v2/gl/octo%2Fgrowth/main").await.text();
    let gh = t.get("/v2/gh/octo/growth/main").await.text();
    assert!(
        gl.contains(&gitlab_sha[..8]) && !gl.contains(&github_sha[..8]),
        "{gl}"
    );
    assert!(
        gh.contains(&github_sha[..8]) && !gh.contains(&gitlab_sha[..8]),
        "{gh}"
    );
}

/// Finding 7: bodies were read whole before the sender was authenticated, so anyone could
/// make nbforge buffer 25 MB per request. A delivery without the right token is now refused
/// without reading its body.
#[tokio::test]
async fn finding_7_bodies_are_read_before_authentication() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let t = TestApp::sqlite().await;
    for (token, expected) in [(None, 401), (Some("wrong-but-long-enough-token"), 401)] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let chunks = futures_util::stream::iter(0..20).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024 * 1024]))
        });
        let mut req = axum::http::Request::post("/hooks/gitlab")
            .header("content-type", "application/json")
            .header("x-gitlab-event", "Push Hook");
        if let Some(token) = token {
            req = req.header("x-gitlab-token", token);
        }
        let res = t
            .request(req.body(axum::body::Body::from_stream(chunks)).unwrap())
            .await;
        assert_eq!(res.status, expected, "{}", res.text());
        assert!(
            pulled.load(Ordering::SeqCst) <= 1,
            "{} MiB of an unauthenticated body were read",
            pulled.load(Ordering::SeqCst)
        );
    }
}

/// Finding 24: a deleted or renamed project stayed published under its old path, which
/// someone else could take later. Destroying withdraws it; renaming moves it.
#[tokio::test]
async fn finding_24_deleted_and_renamed_projects_stay_published() {
    use crate::support::Backend;
    use crate::support::scenario::Scenario;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(t) = Scenario::gitlab(backend).await else {
            continue;
        };
        for path in ["lab/growth", "lab/doomed"] {
            t.push(path, &crate::catalog::release_files()).await;
            t.tag(path, "v1").await;
        }
        t.run_jobs().await;
        assert_eq!(t.get("/w/lab/growth/v1/growth.ipynb").await.status, 200);

        let system_hook = |file: &str, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut body: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            edit(&mut body);
            serde_json::to_vec(&body).unwrap()
        };
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gitlab/");
        let rename = system_hook(&format!("{data}system_project_rename.json"), &|b| {
            b["path_with_namespace"] = "biolab/growth".into();
            b["old_path_with_namespace"] = "lab/growth".into();
            b["project_visibility"] = "public".into();
        });
        let destroy = system_hook(&format!("{data}system_project_destroy.json"), &|b| {
            b["path_with_namespace"] = "lab/doomed".into();
        });
        let res = t.app.gitlab("System Hook", "rename-1", rename).await;
        assert_eq!(res.status, 202, "{}", res.text());
        let res = t.app.gitlab("System Hook", "destroy-1", destroy).await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;

        assert_eq!(t.get("/w/lab/growth/v1/growth.ipynb").await.status, 404);
        let moved = t.get("/w/biolab/growth/v1/growth.ipynb").await;
        assert_eq!(moved.status, 200, "{}", moved.text());
        assert_eq!(t.get("/w/lab/doomed").await.status, 404);
        assert_eq!(t.get("/w/lab/doomed/v1/growth.ipynb").await.status, 404);
    }
}

/// Finding 12: a few quick tries dead-lettered every job in flight during a short forge or
/// Docker restart, with no way to re-drive them; a forge's refusal was retried as if it
/// were an outage. Dead letters can now be retried through the admin API, the backoff rides
/// out about twenty minutes, and refusals fail at once.
#[tokio::test]
async fn finding_12_dead_letters_cannot_be_redriven() {
    use nbforge::forge::ForgeError;
    use nbforge::jobs::JobError;
    use std::time::Duration;

    let t = TestApp::sqlite().await;
    let res = t
        .gitlab(
            "Push Hook",
            "redrive-1",
            push_payload("lab/x", "main", &sha(1), &sha(2)),
        )
        .await;
    assert_eq!(res.status, 202);
    let db = t.db();
    let job = db
        .claim_job("w", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the push's job");
    assert!(
        db.dead_letter_job(job.id(), "w", "GitLab down")
            .await
            .unwrap()
    );

    let post = |path: String, token: Option<&str>| {
        let mut req = axum::http::Request::post(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        t.request(req.body(axum::body::Body::empty()).unwrap())
    };
    let path = format!("/api/jobs/{}/retry", job.id().0);
    assert_eq!(post(path.clone(), None).await.status, 401);
    let res = post(path.clone(), Some(crate::support::ADMIN_TOKEN)).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let row = db.get_job(job.id()).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
    let res = post(path, Some(crate::support::ADMIN_TOKEN)).await;
    assert_eq!(res.status, 409, "only dead or failed jobs: {}", res.text());
    let res = post(
        "/api/jobs/999999/retry".into(),
        Some(crate::support::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(res.status, 404);
    assert_eq!(t.run_jobs().await, 1, "the re-driven job runs");

    // A refusal (HTTP 400/409/422) is final; an outage or a refused token is retried.
    let refused: JobError = ForgeError::Rejected("target_url is too long".into()).into();
    assert!(matches!(refused, JobError::User(_)), "{refused}");
    let outage: JobError = ForgeError::Unavailable("502".into()).into();
    assert!(matches!(outage, JobError::Transient(_)));
    let token: JobError = ForgeError::Forbidden("401".into()).into();
    assert!(matches!(token, JobError::Transient(_)));
    let defaults = Settings::for_database("sqlite::memory:").jobs;
    let waited: Duration = (1..i64::from(defaults.max_attempts))
        .map(|a| nbforge::jobs::backoff(defaults.backoff, defaults.backoff_max, a))
        .sum();
    assert!(waited >= Duration::from_secs(15 * 60), "{waited:?}");
}

/// Finding 1, in part: `checkout_sha`/`after` were never checked to be commit ids, so
/// `main~1` was accepted and stored as a "sha". Payload commits must now be 40 or 64
/// hexadecimal digits.
#[tokio::test]
async fn finding_1_payload_commits_are_not_checked_to_be_ids() {
    let t = TestApp::sqlite().await;
    for (n, bad) in ["main~1", "HEAD", &"g".repeat(40), &"a".repeat(39)]
        .into_iter()
        .enumerate()
    {
        let res = t
            .gitlab(
                "Push Hook",
                &format!("bad-{n}"),
                push_payload("lab/x", "main", &sha(1), bad),
            )
            .await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text());
        assert!(res.text().contains("is not a commit id"), "{}", res.text());
    }
    let res = t
        .gitlab(
            "Push Hook",
            "good",
            push_payload("lab/x", "main", &sha(1), &"ab".repeat(32)),
        )
        .await;
    assert_eq!(
        res.status,
        202,
        "a SHA-256 id is a commit id: {}",
        res.text()
    );
    assert_eq!(t.run_jobs().await, 1);
}

/// Finding 18: the GitLab client followed redirects, and its `PRIVATE-TOKEN` header went
/// along to whatever host the answer named.
#[tokio::test]
async fn finding_18_forge_tokens_follow_redirects_to_other_hosts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nbforge::forge::{CommitStatus, Forge, ProjectId, StatusState};

    // Another host, which must never see the token.
    let stolen = Arc::new(AtomicUsize::new(0));
    let seen = stolen.clone();
    let thief = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        async move {
            if headers.contains_key("private-token") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            "{}"
        }
    });
    let thief_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let thief_addr = thief_listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(thief_listener, thief).await });
    // A "GitLab" that redirects every request there.
    let redirector = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::FOUND,
            [(
                axum::http::header::LOCATION,
                format!("http://{thief_addr}/steal"),
            )],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, redirector).await });

    let forge = nbforge::forge::gitlab::GitLabForge::new(
        &format!("http://{addr}").parse().unwrap(),
        nbforge::config::Secret::new("glpat-must-stay-home"),
    )
    .unwrap();
    let status = CommitStatus {
        state: StatusState::Pending,
        name: "nbforge/environment".into(),
        ref_name: None,
        target_url: None,
        description: None,
    };
    let result = forge
        .set_commit_status(&ProjectId::Path("lab/x".into()), &sha(1), &status)
        .await;
    assert!(result.is_err(), "a redirect is not followed: {result:?}");
    assert_eq!(
        stolen.load(Ordering::SeqCst),
        0,
        "the token reached another host"
    );
}

/// A bare repository at `<root>/<place>.git` whose `main` holds `files`, tagged `v1`;
/// returns the commit.
pub(crate) fn bare_with_files(
    root: &std::path::Path,
    place: &str,
    files: &[(&str, &[u8])],
) -> String {
    let repo = git2::Repository::init_bare(root.join(format!("{place}.git"))).unwrap();
    let mut tree = repo.treebuilder(None).unwrap();
    for (name, content) in files {
        let blob = repo.blob(content).unwrap();
        tree.insert(name, blob, 0o100644).unwrap();
    }
    let tree = repo.find_tree(tree.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.org").unwrap();
    let commit = repo
        .commit(Some("refs/heads/main"), &sig, &sig, "release", &tree, &[])
        .unwrap();
    // Tagged `v1`, as the repository is when its tag push is delivered.
    repo.reference("refs/tags/v1", commit, true, "v1").unwrap();
    commit.to_string()
}

/// A `Tag Push Hook` as `hooks/post-receive` sends it: no project id, the clone URL given.
pub(crate) fn plain_tag_payload(path: &str, url: &str, tag: &str, commit: &str) -> Vec<u8> {
    let zero = "0".repeat(40);
    serde_json::to_vec(&serde_json::json!({
        "object_kind": "tag_push", "event_name": "tag_push",
        "before": zero, "after": commit, "ref": format!("refs/tags/{tag}"),
        "checkout_sha": commit, "user_id": null, "user_name": "ada", "user_username": "ada",
        "project_id": null,
        "project": {
            "id": null, "name": path.rsplit('/').next().unwrap(), "web_url": url,
            "git_http_url": url, "git_ssh_url": url, "path_with_namespace": path,
            "default_branch": "main", "url": url, "http_url": url
        },
        "repository": {"name": path, "url": url, "git_http_url": url, "homepage": url},
        "commits": [], "total_commits_count": 0
    }))
    .unwrap()
}

/// The one job a test ran, which must have failed for good at its first try.
async fn failed_once(t: &TestApp) -> String {
    let jobs = t.db().list_jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.state, "failed", "{job:?}");
    assert_eq!(job.attempts, 1, "no retries: {job:?}");
    job.last_error.clone().unwrap_or_default()
}

// Finding 1: the webhook payload decided what was cloned and where it was published. In
// GitLab mode, the payload's numeric id chose what the token read while its path named the
// publication, never compared: a delivery naming another project's id under a made-up path
// published that project there. The path must now be GitLab's path for that id.
on_both_databases!(
    finding_1_payloads_choose_the_project_and_its_clone_url,
    |backend: Backend| async move {
        let fake = crate::support::fake_gitlab::FakeGitLab::start().await;
        let (url, token) = (fake.url(), fake.token());
        let Some(t) = TestApp::with_settings(backend, move |s| {
            s.forges.gitlab_url = Some(url);
            s.forges.gitlab_token = Some(token);
        })
        .await
        else {
            return;
        };
        let victim = fake.add_project("lab/private-growth");
        fake.set_visibility(&victim, "private");
        let sha = fake.commit(&victim, "main", &crate::catalog::release_files(), "release");
        fake.tag(&victim, "v1", &sha, Some("release"));
        let mut hook = fake.tag_push_payload(&victim, "v1", &"0".repeat(40), &sha);
        hook.body["project"]["path_with_namespace"] = "evil/copy".into();
        hook.body["project"]["git_http_url"] = "http://127.0.0.1:9/x.git".into();
        let res = t.gitlab(hook.event, "forged-1", hook.bytes()).await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        let error = failed_once(&t).await;
        assert!(
            error.contains("`evil/copy`") && error.contains("`lab/private-growth`"),
            "{error}"
        );
        for path in ["evil/copy", "lab/private-growth"] {
            assert!(t.db().releases(path).await.unwrap().is_empty(), "{path}");
            assert!(
                t.db().get_project("gitlab", path).await.unwrap().is_none(),
                "{path}"
            );
        }
        assert_eq!(t.get("/w/evil/copy/v1").await.status, 404);

        // The honest delivery publishes, with GitLab's id, clone URL and visibility recorded.
        let hook = fake.tag_push_payload(&victim, "v1", &"0".repeat(40), &sha);
        let mut body = hook.body.clone();
        body["project"]["git_http_url"] = "http://127.0.0.1:9/x.git".into();
        body["project"]["visibility_level"] = 20.into();
        // Without an id, the project is looked up by its path.
        body["project"]["id"] = serde_json::Value::Null;
        body["project_id"] = serde_json::Value::Null;
        let res = t
            .gitlab(hook.event, "honest-1", serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        assert_eq!(
            t.db().releases("lab/private-growth").await.unwrap().len(),
            1
        );
        let row = t
            .db()
            .get_project("gitlab", "lab/private-growth")
            .await
            .unwrap()
            .expect("recorded");
        assert_eq!(row.visibility.as_deref(), Some("private"));
        assert_eq!(row.forge_id, Some(victim.id));
        assert_eq!(row.git_url, Some(victim.http_url_to_repo.clone()));
    }
);

// Finding 1, without GitLab: the local forge cloned whatever URL the payload gave, so a
// `file://` URL of another repository published it under a made-up path, and an
// `http://127.0.0.1:PORT` URL made nbforge probe an internal address (its error text told
// open ports from closed ones). Only bare repositories under the git roots are read now,
// at the place the project's path names, and nothing else is even tried.
on_both_databases!(
    finding_1_plain_git_payloads_fetch_any_url,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let files = crate::catalog::release_files();
        // A repository outside the roots.
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = bare_with_files(elsewhere.path(), "secret", &files);
        let outside_url = format!("file://{}/secret.git", elsewhere.path().display());
        // A repository under the root, at `lab/real`.
        let real = bare_with_files(&t.git_root(), "lab/real", &files);
        let real_url = format!("file://{}/lab/real.git", t.git_root().display());
        let dotted_url = format!("file://{}/lab/../lab/real.git", t.git_root().display());
        // A listener that must hear nothing.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let http_url = format!("http://127.0.0.1:{port}/lab/x.git");

        let cases = [
            (
                "lab/secret",
                outside_url.as_str(),
                outside.as_str(),
                "outside the git roots",
            ),
            (
                "lab/x",
                http_url.as_str(),
                real.as_str(),
                "not a file:// URL",
            ),
            (
                "lab/other",
                real_url.as_str(),
                real.as_str(),
                "project `lab/real`",
            ),
            (
                "evil/real",
                dotted_url.as_str(),
                real.as_str(),
                "project `lab/real`",
            ),
        ];
        for (n, (path, url, commit, why)) in cases.into_iter().enumerate() {
            let res = t
                .gitlab(
                    "Tag Push Hook",
                    &format!("forged-{n}"),
                    plain_tag_payload(path, url, "v1", commit),
                )
                .await;
            assert_eq!(res.status, 202, "{}", res.text());
            t.run_jobs().await;
            let failed = t.db().list_jobs(Some("failed"), 10).await.unwrap();
            let error = failed
                .iter()
                .find(|j| j.args.contains(&format!("\"{path}\"")))
                .and_then(|j| j.last_error.clone())
                .unwrap_or_else(|| panic!("{path}: no failed job in {failed:?}"));
            assert!(error.contains(why), "{path}: {error}");
            assert!(error.contains(&format!("`{path}`")), "{path}: {error}");
            assert!(
                !error.contains(&port.to_string()) && !error.contains("127.0.0.1"),
                "{path}: the error echoes the address: {error}"
            );
            assert!(t.db().releases(path).await.unwrap().is_empty(), "{path}");
        }
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "nbforge connected to the payload's address"
        );
        assert!(t.db().list_jobs(Some("done"), 10).await.unwrap().is_empty());

        // The repository at its own place publishes.
        let res = t
            .gitlab(
                "Tag Push Hook",
                "honest",
                plain_tag_payload("lab/real", &dotted_url, "v1", &real),
            )
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        assert_eq!(t.db().releases("lab/real").await.unwrap().len(), 1);
    }
);

// Finding 1, commits: a payload's commit id was published without being looked for in the
// fetched repository, and a missing one was retried until dead-lettered. It now fails at
// once, saying so.
on_both_databases!(
    finding_1_payload_commits_need_not_exist,
    |backend: Backend| async move {
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        bare_with_files(&t.git_root(), "lab/real", &crate::catalog::release_files());
        let url = format!("file://{}/lab/real.git", t.git_root().display());
        let missing = "c0ffee".repeat(6) + "c0ff";
        let res = t
            .gitlab(
                "Tag Push Hook",
                "missing",
                plain_tag_payload("lab/real", &url, "v1", &missing),
            )
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        let error = failed_once(&t).await;
        assert!(
            error.contains(&format!(
                "commit {missing} is not in the repository of lab/real"
            )),
            "{error}"
        );
        assert!(t.db().releases("lab/real").await.unwrap().is_empty());
    }
);

// Finding 1, commits, for environments: a pushed commit missing from the repository fails
// its environment at once, with a failed status that says why.
on_both_databases!(
    finding_1_pushed_commits_need_not_exist,
    |backend: Backend| async move {
        let Some(t) = TestApp::with_settings(backend, |s| s.environments.enabled = true).await
        else {
            return;
        };
        bare_with_files(&t.git_root(), "lab/real", &crate::catalog::release_files());
        let url = format!("file://{}/lab/real.git", t.git_root().display());
        let missing = "c0ffee".repeat(6) + "c0ff";
        let mut body: serde_json::Value =
            serde_json::from_slice(&plain_tag_payload("lab/real", &url, "v1", &missing)).unwrap();
        body["object_kind"] = "push".into();
        body["event_name"] = "push".into();
        body["ref"] = "refs/heads/main".into();
        let res = t
            .gitlab("Push Hook", "missing", serde_json::to_vec(&body).unwrap())
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        let failed = t.db().list_jobs(Some("failed"), 10).await.unwrap();
        assert_eq!(failed.len(), 1, "only the environment fails: {failed:?}");
        assert_eq!(failed[0].attempts, 1, "no retries: {failed:?}");
        let error = failed[0].last_error.clone().unwrap_or_default();
        let expected = format!("commit {missing} is not in the repository of lab/real");
        assert!(error.contains(&expected), "{error}");
        let statuses = t.db().local_statuses("lab/real", &missing).await.unwrap();
        let last = statuses.last().expect("a status");
        assert_eq!(last.state, "failed", "{statuses:?}");
        assert!(
            last.description
                .as_deref()
                .unwrap_or("")
                .contains(&expected),
            "{statuses:?}"
        );
    }
);

/// Finding 16: a replayed old push (or one arriving late) moved a branch back to an older
/// commit. A push whose `before` is not the recorded tip now moves the branch only when
/// its commit is not already in the recorded tip's history; a late deletion of a tip the
/// branch has since left is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_16_a_replayed_push_moves_a_branch_back() {
    use crate::support::Backend;
    use crate::support::scenario::Scenario;
    const ZERO: &str = "0000000000000000000000000000000000000000";
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(t) = Scenario::gitlab(backend).await else {
            continue;
        };
        let fake = t.gitlab_fake();
        let p = fake.add_project("lab/replay");
        let branch = |t: &Scenario| {
            let db = t.db().clone();
            async move {
                db.ref_sha("gitlab", "lab/replay", "refs/heads/main")
                    .await
                    .unwrap()
            }
        };
        let deliver = |before: String, after: String, id: &'static str| {
            let hook = fake.push_payload(&p, "main", &before, &after);
            let t = &t;
            async move {
                let res = t.app.gitlab(hook.event, id, hook.bytes()).await;
                assert_eq!(res.status, 202, "{}", res.text());
                t.run_jobs().await;
            }
        };
        let a = fake.commit(&p, "main", &[("a.txt", b"a")], "a");
        deliver(ZERO.into(), a.clone(), "push-a").await;
        let b = fake.commit(&p, "main", &[("b.txt", b"b")], "b");
        deliver(a.clone(), b.clone(), "push-b").await;
        assert_eq!(branch(&t).await.as_deref(), Some(b.as_str()));

        // The first push again, under a new delivery id: the branch stays at b.
        deliver(ZERO.into(), a.clone(), "push-a-again").await;
        assert_eq!(
            branch(&t).await.as_deref(),
            Some(b.as_str()),
            "not moved back"
        );

        // Two pushes delivered out of order: c then d arrive as d first.
        let c = fake.commit(&p, "main", &[("c.txt", b"c")], "c");
        let d = fake.commit(&p, "main", &[("d.txt", b"d")], "d");
        deliver(c.clone(), d.clone(), "push-d").await;
        assert_eq!(branch(&t).await.as_deref(), Some(d.as_str()));
        deliver(b.clone(), c.clone(), "push-c-late").await;
        assert_eq!(
            branch(&t).await.as_deref(),
            Some(d.as_str()),
            "the late one is older"
        );

        // A force push back to a is a push from the recorded tip: it moves the branch.
        fake.set_branch(&p, "main", &a);
        deliver(d.clone(), a.clone(), "force-a").await;
        assert_eq!(branch(&t).await.as_deref(), Some(a.as_str()));
        // A late deletion of a tip the branch has left since is ignored.
        deliver(b.clone(), ZERO.into(), "delete-b-late").await;
        assert_eq!(branch(&t).await.as_deref(), Some(a.as_str()));
        // A deletion of the recorded tip deletes the branch.
        deliver(a.clone(), ZERO.into(), "delete-a").await;
        assert_eq!(branch(&t).await, None);
    }
}

/// Finding 16, tags: a replayed tag push republished a tag deleted (or moved) since. A tag
/// is published only when the repository's tag still points at the delivery's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_16_a_replayed_tag_push_republishes_a_deleted_tag() {
    use crate::support::Backend;
    use crate::support::scenario::Scenario;
    const ZERO: &str = "0000000000000000000000000000000000000000";
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(t) = Scenario::gitlab(backend).await else {
            continue;
        };
        let first = t.push("lab/tags", &crate::catalog::release_files()).await;
        t.tag("lab/tags", "v1").await;
        t.run_jobs().await;
        assert_eq!(t.get("/w/lab/tags/v1/growth.ipynb").await.status, 200);
        t.delete_tag("lab/tags", "v1").await;
        t.run_jobs().await;
        assert_eq!(t.get("/w/lab/tags/v1/growth.ipynb").await.status, 404);

        // The first tag push again, under a new delivery id.
        let fake = t.gitlab_fake();
        let p = fake.project("lab/tags").unwrap();
        let replay = fake.tag_push_payload(&p, "v1", ZERO, &first);
        let res = t
            .app
            .gitlab(replay.event, "tag-replay", replay.bytes())
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        assert_eq!(
            t.get("/w/lab/tags/v1/growth.ipynb").await.status,
            404,
            "the deleted tag stays withdrawn"
        );
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/tags", "refs/tags/v1")
                .await
                .unwrap(),
            None,
            "and unrecorded"
        );

        // The tag made again: a replay of its old deletion withdraws nothing.
        t.tag("lab/tags", "v1").await;
        t.run_jobs().await;
        assert_eq!(t.get("/w/lab/tags/v1/growth.ipynb").await.status, 200);
        let deletion = fake.tag_push_payload(&p, "v1", &first, ZERO);
        let res = t
            .app
            .gitlab(deletion.event, "tag-deletion-replay", deletion.bytes())
            .await;
        assert_eq!(res.status, 202, "{}", res.text());
        t.run_jobs().await;
        assert_eq!(
            t.get("/w/lab/tags/v1/growth.ipynb").await.status,
            200,
            "the tag made again stays published"
        );
        assert_eq!(
            t.db()
                .ref_sha("gitlab", "lab/tags", "refs/tags/v1")
                .await
                .unwrap()
                .as_deref(),
            Some(first.as_str()),
            "and recorded"
        );
    }
}

/// Finding 22: a project path longer than a mirror's folder name may be failed every fetch
/// and was retried until dead-lettered.
#[tokio::test]
async fn finding_22_a_very_long_project_path_cannot_be_fetched() {
    let Some(t) = crate::support::scenario::Scenario::gitlab(crate::support::Backend::Sqlite).await
    else {
        return;
    };
    let path = format!("lab/{}growth", "deeply-nested-subgroup/".repeat(9));
    assert!(path.len() > 200);
    t.push(&path, &crate::catalog::release_files()).await;
    t.tag(&path, "v1").await;
    t.run_jobs().await;
    let counts = t.job_counts().await;
    assert_eq!(counts.get("dead").copied().unwrap_or(0), 0, "{counts:?}");
    assert_eq!(counts.get("failed").copied().unwrap_or(0), 0, "{counts:?}");
    let sheet = t.get(&format!("/w/{path}/v1/growth.ipynb")).await;
    assert_eq!(sheet.status, 200, "{}", sheet.text());
}

// Finding 1, on GitHub: the repository a GitHub delivery named was recorded and published
// as the delivery described it. Its name must now be GitHub's name for the repository's id.
on_both_databases!(
    finding_1_github_payloads_choose_the_repository,
    |backend: Backend| async move {
        let Some(t) = crate::support::scenario::Scenario::github(backend).await else {
            return;
        };
        let fake = t.github_fake();
        let victim = fake.add_repo("octo-lab/private-growth");
        let sha = fake.commit(&victim, "main", &crate::catalog::release_files(), "release");
        fake.tag(&victim, "v1", &sha, Some("release"));
        let mut hook = fake.tag_push_payload(&victim, "v1", &"0".repeat(40), &sha);
        hook.body["repository"]["full_name"] = "evil/copy".into();
        hook.body["repository"]["name"] = "copy".into();
        hook.body["repository"]["owner"]["login"] = "evil".into();
        hook.body["repository"]["owner"]["name"] = "evil".into();
        let res = t.app.github(hook.event, "forged-gh-1", hook.bytes()).await;
        assert!(res.status.is_success(), "{}", res.text());
        t.run_jobs().await;
        let error = failed_once(&t.app).await;
        assert!(
            error.contains("`evil/copy`") && error.contains("`octo-lab/private-growth`"),
            "{error}"
        );
        for path in ["evil/copy", "octo-lab/private-growth"] {
            assert!(t.db().releases(path).await.unwrap().is_empty(), "{path}");
        }
        assert_eq!(t.get("/w/evil/copy/v1").await.status, 404);

        // The honest delivery publishes, with GitHub's id and visibility recorded.
        let hook = fake.tag_push_payload(&victim, "v1", &"0".repeat(40), &sha);
        let res = t.app.github(hook.event, "honest-gh-1", hook.bytes()).await;
        assert!(res.status.is_success(), "{}", res.text());
        t.run_jobs().await;
        assert_eq!(
            t.db()
                .releases("octo-lab/private-growth")
                .await
                .unwrap()
                .len(),
            1
        );
        let row = t
            .db()
            .get_project("github", "octo-lab/private-growth")
            .await
            .unwrap()
            .expect("recorded");
        assert_eq!(row.forge_id, Some(victim.id));
        assert_eq!(row.visibility.as_deref(), Some("public"));
    }
);

// Finding 8, build logs: a build's log was one database row and every reader of a running
// build got a copy of all of it. The log is now stored as chunks (at most a few MiB per
// build: the beginning and the end, with a line saying what was left out between), read
// back one chunk at a time, and readers of a running build share its chunks.
on_both_databases!(
    finding_8_build_log_is_stored_in_bounded_chunks,
    |backend: Backend| async move {
        use nbforge::environment::Phase;
        use nbforge::environment::logs::{LOG_CHUNK_BYTES, MAX_LINE_BYTES, MAX_LOG_BYTES};
        use nbforge::storage::BuildPhase;
        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let id = t
            .db()
            .create_build("gitlab", "lab/x", Some("main"), &"a".repeat(40), None)
            .await
            .unwrap();
        let logs = t.app.build_logs.clone();
        logs.start(id, Phase::Building);
        logs.line(id, "Step 1/3 : FROM nbforge/base:bookworm");
        let noisy = "x".repeat(1000);
        for _ in 0..20_000 {
            logs.line(id, &noisy);
        }
        logs.line(id, &"y".repeat(10 * MAX_LINE_BYTES));
        logs.line(id, "the last line");

        // Two readers of the running build share its closed chunks, never copy them.
        let a = logs.subscribe(id).unwrap().so_far;
        let b = logs.subscribe(id).unwrap().so_far;
        let shared =
            a.0.iter()
                .zip(&b.0)
                .filter(|(x, y)| std::sync::Arc::ptr_eq(&x.text, &y.text))
                .count();
        assert!(shared + 2 >= a.0.len(), "{shared} of {}", a.0.len());
        assert!(a.text().len() <= MAX_LOG_BYTES + MAX_LINE_BYTES + 200);
        drop((a, b));

        let log = logs.finish(id);
        t.db().append_build_log(id, &log.rows()).await.unwrap();
        t.db()
            .set_build_phase(id, BuildPhase::Built, Some("image built"), false, None)
            .await
            .unwrap();

        let sizes = t.db().build_log_chunk_sizes(id).await.unwrap();
        assert!(
            sizes.len() <= MAX_LOG_BYTES / LOG_CHUNK_BYTES + 2,
            "{} chunks",
            sizes.len()
        );
        assert!(
            sizes
                .iter()
                .all(|(_, n)| (*n as usize) < LOG_CHUNK_BYTES + MAX_LINE_BYTES + 2),
            "{sizes:?}"
        );
        let stored: i64 = sizes.iter().map(|(_, n)| n).sum();
        assert!(
            stored as usize <= MAX_LOG_BYTES + MAX_LINE_BYTES + 200,
            "{stored}"
        );

        let res = t.get(&format!("/api/builds/{id}/log")).await;
        assert_eq!(res.status, 200);
        let text = res.text();
        assert_eq!(text.chars().count() as i64, stored);
        assert!(text.starts_with("Step 1/3 : FROM nbforge/base:bookworm\n"));
        assert_eq!(text.matches("bytes of the log left out").count(), 1);
        assert!(text.ends_with("the last line\n"));
    }
);

// Finding 8, build contexts: a build's context was read whole into memory, then copied
// into a tar, then sent. The repository's files are now read one at a time as the engine
// takes the tar, which is sent in pieces; a context over `NBFORGE_BUILD_CONTEXT_MAX_MB` is
// the repository's error, naming the file that went over.
on_both_databases!(
    finding_8_build_context_is_streamed_and_capped,
    |backend: Backend| async move {
        use nbforge::environment::{
            CONTEXT_PIECE_BYTES, ContextData, ContextSource, context_stream,
        };
        let Some(t) = TestApp::with_settings(backend, |s| {
            s.environments.enabled = true;
            s.environments.build_context_max_bytes = 1024 * 1024;
        })
        .await
        else {
            return;
        };
        let big = vec![b'x'; 3 * 1024 * 1024];
        let files: [(&str, &[u8]); 2] = [
            ("Dockerfile", b"FROM nbforge/base:bookworm\nCOPY . /srv\n"),
            ("data.bin", &big),
        ];
        let commit = bare_with_files(&t.git_root(), "lab/big", &files);
        let repository = t.git_root().join("lab/big.git");

        // Under the limit: only what nbforge made is in memory; the tar comes in pieces.
        let repo = git2::Repository::open_bare(&repository).unwrap();
        let src = nbforge::repo::CommitTree::open(&repo, &commit).unwrap();
        let mut opts = nbforge::spec::Options {
            max_context_bytes: 8 * 1024 * 1024,
            ..Default::default()
        };
        let analysis = nbforge::spec::analyze(&src, &opts).unwrap();
        let context = analysis.build_context_files(&src, &opts).unwrap();
        let in_memory: usize = context
            .iter()
            .map(|f| match &f.data {
                ContextData::Bytes(b) => b.len(),
                ContextData::Source { .. } => 0,
            })
            .sum();
        assert!(
            in_memory < 4096,
            "{in_memory} bytes of the context in memory"
        );
        let source = ContextSource::Git {
            repository: repository.clone(),
            commit: commit.clone(),
        };
        let pieces: Vec<bytes::Bytes> = context_stream(context, source, Vec::new())
            .map(|p| p.unwrap())
            .collect()
            .await;
        assert!(pieces.len() >= 12, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= CONTEXT_PIECE_BYTES));
        let tar = pieces.concat();
        let mut archive = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert!(
            entries.contains(&("data.bin".to_owned(), big.len() as u64)),
            "{entries:?}"
        );

        // Over the limit: refused, naming the file.
        opts.max_context_bytes = 1024 * 1024;
        let error = analysis
            .build_context_files(&src, &opts)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("data.bin") && error.contains("limit of 1 MiB"),
            "{error}"
        );

        // Pushed: the environment fails at once, its status saying why.
        let description = push_fails_at_once(&t, "big", &repository, &commit).await;
        assert!(
            description.contains("data.bin") && description.contains("limit of 1 MiB"),
            "{description}"
        );
    }
);

// Finding 8, publishing: all of a release's notebooks were read, rendered and held in
// memory, then written in one transaction. Each worksheet is now stored as soon as it is
// rendered (under a staging tag no URL names) and the release is switched to them at the
// end in one short transaction that moves rows without reading them.
on_both_databases!(
    finding_8_publishing_holds_one_notebook_at_a_time,
    |backend: Backend| async move {
        // Collecting hands each worksheet on and keeps none.
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in crate::catalog::release_files() {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let mut handed = Vec::new();
        let p =
            nbforge::catalog::collect_each(&nbforge::repo::DirTree::new(dir.path()), &mut |s| {
                handed.push(s.path);
                true
            });
        assert!(p.sheets.is_empty());
        assert_eq!(p.count, handed.len());
        assert!(handed.len() >= 2, "{handed:?}");

        let Some(t) = TestApp::new(backend).await else {
            return;
        };
        let commit = bare_with_files(&t.git_root(), "lab/pub", &crate::catalog::release_files());
        let url = format!("file://{}/lab/pub.git", t.git_root().display());
        for delivery in ["first", "again"] {
            let res = t
                .gitlab(
                    "Tag Push Hook",
                    delivery,
                    plain_tag_payload("lab/pub", &url, "v1", &commit),
                )
                .await;
            assert_eq!(res.status, 202, "{}", res.text());
            t.run_jobs().await;
        }
        let sheets = t.db().worksheets("lab/pub", "v1").await.unwrap();
        assert_eq!(sheets.len(), handed.len(), "{sheets:?}");
        let (all,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM worksheets WHERE project = $1")
            .bind("lab/pub")
            .fetch_one(t.db().pool())
            .await
            .unwrap();
        assert_eq!(all as usize, handed.len(), "nothing is left staged");
    }
);

// Finding 22, file names: git allows any bytes in a file name, and a whole-tree build of a
// repository holding a name that is not UTF-8 failed in an undefined way. Such a build now
// fails at once (not retried) with a status naming the file, its bytes escaped, and saying
// what to do; worksheets are still found and published beside such a file.
on_both_databases!(
    finding_22_non_utf8_file_names_fail_whole_tree_builds_by_name,
    |backend: Backend| async move {
        use std::os::unix::ffi::OsStrExt as _;
        let Some(t) = TestApp::with_settings(backend, |s| s.environments.enabled = true).await
        else {
            return;
        };
        let repository = t.git_root().join("lab/names.git");
        let repo = git2::Repository::init_bare(&repository).unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        let dockerfile = repo
            .blob(b"FROM nbforge/base:bookworm\nCOPY . /srv\n")
            .unwrap();
        root.insert("Dockerfile", dockerfile, 0o100644).unwrap();
        let mut data = repo.treebuilder(None).unwrap();
        let odd = repo.blob(b"bytes\n").unwrap();
        data.insert(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"), odd, 0o100644)
            .unwrap();
        root.insert("data", data.write().unwrap(), 0o040000)
            .unwrap();
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.org").unwrap();
        let commit = repo
            .commit(Some("refs/heads/main"), &sig, &sig, "odd name", &tree, &[])
            .unwrap()
            .to_string();

        let description = push_fails_at_once(&t, "names", &repository, &commit).await;
        assert!(
            description.contains(r"data/caf\xe9.txt") && description.contains("not UTF-8"),
            "{description}"
        );

        // Finding worksheets leaves the file out rather than failing the release.
        let src = nbforge::repo::CommitTree::open(&repo, &commit).unwrap();
        let p = nbforge::catalog::collect(&src);
        assert_eq!(p.error, None);
    }
);

// Finding 3: a private project's worksheets, notebooks (code included), build logs and
// launch pages were readable by anyone. An anonymous visitor now gets none of them, while
// the same pages of a public project answer.
on_both_databases!(
    finding_3_private_content_is_not_world_readable,
    |backend: Backend| async move {
        let fake = crate::support::fake_gitlab::FakeGitLab::start().await;
        let (url, token) = (fake.url(), fake.token());
        let Some(t) = TestApp::with_settings(backend, move |s| {
            s.forges.gitlab_url = Some(url);
            s.forges.gitlab_token = Some(token);
        })
        .await
        else {
            return;
        };
        for (path, visibility) in [("lab/open", "public"), ("lab/closed", "private")] {
            let project = fake.add_project(path);
            fake.set_visibility(&project, visibility);
            let sha = fake.commit(
                &project,
                "main",
                &crate::catalog::release_files(),
                "release",
            );
            fake.tag(&project, "v1", &sha, Some("release"));
            let hook = fake.tag_push_payload(&project, "v1", &"0".repeat(40), &sha);
            let res = t
                .gitlab(hook.event, &format!("tag-{path}"), hook.bytes())
                .await;
            assert_eq!(res.status, 202, "{}", res.text());
            t.run_jobs().await;
            assert_eq!(t.db().releases(path).await.unwrap().len(), 1, "{path}");
        }
        for (path, public) in [("lab/open", true), ("lab/closed", false)] {
            let build = t
                .db()
                .create_build("gitlab", path, Some("main"), &"a".repeat(40), None)
                .await
                .unwrap();
            let sheet = format!("/w/{path}/v1/growth.ipynb");
            for url in [
                sheet.clone(),
                format!("{sheet}?format=ipynb"),
                format!("/api/builds/{build}"),
            ] {
                let res = t.get(&url).await;
                if public {
                    assert_eq!(res.status, 200, "{url}: {}", res.text());
                } else {
                    assert_ne!(res.status, 200, "{url}");
                    assert!(!res.text().contains("growth"), "{url}: {}", res.text());
                }
            }
        }
    }
);

/// Pushes `commit` of the plain git `repository` to `main` of `lab/<name>`, runs the jobs,
/// and checks that the environment failed at once (one failed job, no retries) with a
/// `failed` status: that status's description.
async fn push_fails_at_once(
    t: &TestApp,
    name: &str,
    repository: &std::path::Path,
    commit: &str,
) -> String {
    let project = format!("lab/{name}");
    let url = format!("file://{}", repository.display());
    let mut body: serde_json::Value =
        serde_json::from_slice(&plain_tag_payload(&project, &url, "v1", commit)).unwrap();
    body["object_kind"] = "push".into();
    body["event_name"] = "push".into();
    body["ref"] = "refs/heads/main".into();
    let res = t
        .gitlab("Push Hook", name, serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    t.run_jobs().await;
    let failed = t.db().list_jobs(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].attempts, 1, "no retries: {failed:?}");
    let statuses = t.db().local_statuses(&project, commit).await.unwrap();
    let last = statuses.last().expect("a status");
    assert_eq!(last.state, "failed", "{statuses:?}");
    last.description.clone().unwrap_or_default()
}
