//! Jupyter sessions on the real Docker engine, from the base image: the token, the
//! container's hardening, the home that outlives a session, sessions found again after a
//! restart, a failed start, and throwaway homes.
//!
//! Each test uses its own session network and owners with random ids, and a [`Cleanup`]
//! guard removes every container, volume and network it made, also when it fails.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use nbforge::config::{Secret, SessionSettings, Settings};
use nbforge::sessions::docker::{self, DockerSessions};
use nbforge::sessions::{
    Home, Owner, Resources, SessionBackend, SessionError, SessionId, SessionInfo, SessionProject,
    SessionSpec, SessionState,
};
use serde_json::Value;

use crate::support::missing_service;

pub(crate) fn docker_cli(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// The base image, or `None` (after saying why) when Docker or the image is missing.
pub(crate) fn base_image() -> Option<String> {
    let base = Settings::for_database("sqlite::memory:")
        .environments
        .base_image;
    let (ok, _) = docker_cli(&["image", "inspect", "--format", "{{.Id}}", &base]);
    if !ok {
        missing_service(&format!(
            "Docker with the base image {base} (nbforge base-image)"
        ));
        return None;
    }
    Some(base)
}

pub(crate) fn random_id() -> i64 {
    // Large ids nobody has, distinct per test.
    i64::from(uuid::Uuid::new_v4().as_fields().0 >> 1) + 1_000_000_000
}

/// Removes what a test made: containers by owner label, homes, the network.
pub(crate) struct Cleanup {
    pub network: String,
    pub images: Vec<String>,
    pub users: Vec<i64>,
    pub visitors: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut filters: Vec<String> = self
            .users
            .iter()
            .map(|u| format!("label={}={u}", docker::LABEL_OWNER_ID))
            .collect();
        filters.extend(
            self.visitors
                .iter()
                .map(|v| format!("label={}={v}", docker::LABEL_VISITOR)),
        );
        let mut volumes: Vec<String> = self.users.iter().map(|u| docker::home_volume(*u)).collect();
        for filter in filters {
            let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &filter]);
            for id in ids.split_whitespace() {
                let (_, home) = docker_cli(&[
                    "inspect",
                    "--format",
                    &format!(
                        "{{{{index .Config.Labels \"{}\"}}}}",
                        docker::LABEL_THROWAWAY_HOME
                    ),
                    id,
                ]);
                if !home.trim().is_empty() {
                    volumes.push(home.trim().to_owned());
                }
                docker_cli(&["rm", "-f", "-v", id]);
            }
        }
        for volume in volumes {
            docker_cli(&["volume", "rm", "-f", &volume]);
        }
        docker_cli(&["network", "rm", &self.network]);
        for image in &self.images {
            docker_cli(&["image", "rm", "-f", image]);
        }
    }
}

struct Fixture {
    sessions: DockerSessions,
    settings: SessionSettings,
    key: Secret,
    image: String,
    cleanup: Cleanup,
}

fn fixture() -> Option<Fixture> {
    let image = base_image()?;
    let settings = SessionSettings {
        memory_max_bytes: 1 << 30,
        cpu_max: 1.0,
        network: format!("nbforge-test-{}", uuid::Uuid::new_v4().simple()),
        start_timeout: Duration::from_secs(120),
    };
    let key = Secret::new(uuid::Uuid::new_v4().simple().to_string());
    let sessions = DockerSessions::connect(None, settings.clone(), key.clone()).unwrap();
    Some(Fixture {
        cleanup: Cleanup {
            network: settings.network.clone(),
            images: Vec::new(),
            users: Vec::new(),
            visitors: Vec::new(),
        },
        sessions,
        settings,
        key,
        image,
    })
}

impl Fixture {
    /// A name for an image the test builds, removed at the end.
    fn test_image(&mut self) -> String {
        let image = format!("nbforge-test/session-env:{}", uuid::Uuid::new_v4().simple());
        self.cleanup.images.push(image.clone());
        image
    }

    fn user(&mut self) -> Owner {
        let id = random_id();
        self.cleanup.users.push(id);
        Owner::User {
            id,
            username: format!("user{id}"),
        }
    }

    fn visitor(&mut self) -> Owner {
        let visitor = uuid::Uuid::new_v4().simple().to_string();
        self.cleanup.visitors.push(visitor.clone());
        Owner::Anonymous { visitor }
    }

    fn spec(&self, owner: &Owner, name: &str) -> SessionSpec {
        spec(owner, name, &self.image)
    }
}

/// A session of `owner` named `name` in `image`, asking for 2 GiB and half a CPU.
pub(crate) fn spec(owner: &Owner, name: &str, image: &str) -> SessionSpec {
    SessionSpec {
        base_url: SessionSpec::base_url_for(owner, name),
        home: match owner {
            Owner::User { id, .. } => Home::User { user_id: *id },
            Owner::Anonymous { .. } => Home::Throwaway,
        },
        owner: owner.clone(),
        name: name.into(),
        project: SessionProject {
            forge: "gitlab".into(),
            path: "lab/rnaseq".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
        },
        image: image.to_owned(),
        resources: Resources {
            memory_bytes: 2 << 30,
            cpus: 0.5,
        },
        default_url: "lab/tree/analysis.ipynb".into(),
        env: BTreeMap::from([("NBFORGE_PROJECT".into(), "lab/rnaseq".into())]),
        checkout: None,
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub(crate) fn url(info: &SessionInfo, path: &str) -> String {
    let address = info
        .address
        .as_ref()
        .expect("a running session has an address");
    format!(
        "{}{}{path}",
        address.as_str().trim_end_matches('/'),
        info.base_url
    )
}

async fn get(info: &SessionInfo, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http().get(url(info, path));
    if let Some(token) = token {
        request = request.header("Authorization", format!("token {token}"));
    }
    request.send().await.unwrap()
}

/// Builds `image` from a Dockerfile without context.
fn build_image(image: &str, dockerfile: &str) {
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", image, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        build
            .stdin
            .take()
            .unwrap()
            .write_all(dockerfile.as_bytes())
            .unwrap();
    }
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a file in the session's home through Jupyter's contents API.
pub(crate) async fn put_file(info: &SessionInfo, path: &str, content: &str) {
    let answer = http()
        .put(url(info, &format!("api/contents/{path}")))
        .header("Authorization", format!("token {}", info.token.expose()))
        .json(&serde_json::json!({"type": "file", "format": "text", "content": content}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
}

fn inspect(id: &SessionId) -> Value {
    let (ok, out) = docker_cli(&["inspect", &format!("nbforge-session-{id}")]);
    assert!(ok, "{out}");
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

pub(crate) fn volume_exists(name: &str) -> bool {
    docker_cli(&["volume", "inspect", name]).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_answers_only_with_its_token_from_a_hardened_container() {
    let Some(mut fx) = fixture() else { return };
    let owner = fx.user();
    let spec = fx.spec(&owner, "rnaseq");
    let info = fx.sessions.start(&spec).await.unwrap();
    assert_eq!(info.state, SessionState::Running);
    assert_eq!(info.base_url, format!("/user/{}/rnaseq/", owner.url_name()));
    assert_eq!(info.owner, owner);
    assert_eq!(info.project, spec.project);
    let token = info.token.expose().to_owned();
    assert_eq!(token.len(), 64);

    let answer = get(&info, "api/status", Some(&token)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(get(&info, "api/status", None).await.status(), 403);
    assert_eq!(
        get(&info, "api/status", Some("not-the-token"))
            .await
            .status(),
        403
    );
    let activity = fx.sessions.activity(&info.id).await.unwrap().unwrap();
    assert_eq!(activity.kernels, 0);
    assert!(!activity.last_activity.is_empty());

    let c = inspect(&info.id);
    let host = &c["HostConfig"];
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert!(host["CapAdd"].is_null(), "{}", host["CapAdd"]);
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(host["PidsLimit"], 512);
    // Asked 2 GiB and 0.5 CPU with a platform maximum of 1 GiB and 1 CPU.
    assert_eq!(host["Memory"], 1 << 30);
    assert_eq!(host["MemorySwap"], 1 << 30);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(host["NetworkMode"], fx.settings.network.as_str());
    assert_eq!(host["Privileged"], false);
    assert!(
        host["PortBindings"]
            .as_object()
            .is_none_or(|p| p.is_empty()),
        "{}",
        host["PortBindings"]
    );
    let ports = &c["NetworkSettings"]["Ports"];
    assert!(
        ports
            .as_object()
            .is_none_or(|p| p.values().all(Value::is_null)),
        "published: {ports}"
    );
    assert_eq!(c["Config"]["User"], "1000:1000");
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels[docker::LABEL_SESSION], info.id.0.as_str());
    let Owner::User { id: user_id, .. } = &owner else {
        unreachable!()
    };
    assert_eq!(labels[docker::LABEL_OWNER_ID], user_id.to_string());
    assert_eq!(labels[docker::LABEL_PROJECT], "lab/rnaseq");
    assert_eq!(
        labels[docker::LABEL_COMMIT],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert!(
        labels[docker::LABEL_CREATED]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    // The token is nowhere in what `docker inspect` shows.
    assert!(
        !c.to_string().contains(&token),
        "the token is in docker inspect"
    );
    // The session network keeps sessions apart.
    let (ok, icc) = docker_cli(&[
        "network",
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.enable_icc\"}}",
        &fx.settings.network,
    ]);
    assert!(ok && icc.trim() == "false", "{icc}");
    // Jupyter runs as uid 1000 with no capabilities.
    let (ok, out) = docker_cli(&[
        "exec",
        &format!("nbforge-session-{}", info.id),
        "sh",
        "-c",
        "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/1/status /proc/self/status",
    ]);
    assert!(ok, "{out}");
    assert!(out.starts_with("1000\n"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");

    fx.sessions.stop(&info.id).await.unwrap();
    assert!(fx.sessions.status(&info.id).await.unwrap().is_none());
    // Stopping again is not an error.
    fx.sessions.stop(&info.id).await.unwrap();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How many containers preparing `volume` were created since `since` (Unix seconds), by
/// the engine's event log.
fn init_containers_since(volume: &str, since: u64) -> usize {
    let (ok, names) = docker_cli(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert!(ok, "{names}");
    names
        .lines()
        .filter(|n| n.starts_with(&format!("{volume}-init-")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_outlives_its_session() {
    let Some(mut fx) = fixture() else { return };
    let owner = fx.user();
    let Owner::User { id: user_id, .. } = &owner else {
        unreachable!()
    };
    let volume = docker::home_volume(*user_id);
    let before_first = unix_now();
    let first = fx.sessions.start(&fx.spec(&owner, "first")).await.unwrap();
    put_file(&first, "notes.txt", "kept\n").await;
    // A new home is made owned by uid 1000 by a short container, once.
    assert_eq!(init_containers_since(&volume, before_first), 1);

    fx.sessions.stop(&first.id).await.unwrap();
    assert!(!docker_cli(&["inspect", &format!("nbforge-session-{}", first.id)]).0);
    assert!(volume_exists(&docker::home_volume(*user_id)));

    let before_second = unix_now();
    let second = fx.sessions.start(&fx.spec(&owner, "second")).await.unwrap();
    assert_eq!(
        init_containers_since(&volume, before_second),
        0,
        "a prepared home is not prepared again"
    );
    assert_ne!(second.id, first.id);
    assert_ne!(second.token.expose(), first.token.expose());
    let answer = get(
        &second,
        "api/contents/notes.txt?content=1",
        Some(second.token.expose()),
    )
    .await;
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["content"], "kept\n");
    fx.sessions.stop(&second.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_found_again_after_a_restart() {
    let Some(mut fx) = fixture() else { return };
    let owner = fx.user();
    let started = fx.sessions.start(&fx.spec(&owner, "kept")).await.unwrap();

    let again = DockerSessions::connect(None, fx.settings.clone(), fx.key.clone()).unwrap();
    let found = again.list().await.unwrap();
    let found = found
        .iter()
        .find(|s| s.id == started.id)
        .expect("the running session is listed");
    assert_eq!(found.state, SessionState::Running);
    assert_eq!(found.owner, owner);
    assert_eq!(found.name, "kept");
    assert_eq!(found.project, started.project);
    assert_eq!(found.created_ms, started.created_ms);
    assert_eq!(found.address, started.address);
    assert_eq!(found.token.expose(), started.token.expose());
    assert_eq!(
        get(found, "api/status", Some(found.token.expose()))
            .await
            .status(),
        200
    );

    // A second session is listed too, and the two cannot reach each other.
    let other = fx.sessions.start(&fx.spec(&owner, "other")).await.unwrap();
    let listed: Vec<SessionId> = again
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert!(
        listed.contains(&started.id) && listed.contains(&other.id),
        "{listed:?}"
    );
    let target = other.address.as_ref().unwrap();
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('{}', {}), timeout=3)\n    print('reached')\nexcept OSError as e:\n    print('refused', e)",
        target.host_str().unwrap(),
        target.port().unwrap()
    );
    let (_, out) = docker_cli(&[
        "exec",
        &format!("nbforge-session-{}", started.id),
        "python3",
        "-c",
        &probe,
    ]);
    assert!(out.starts_with("refused"), "{out}");

    again.stop(&started.id).await.unwrap();
    again.stop(&other.id).await.unwrap();
    assert!(fx.sessions.status(&started.id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_start_says_why_and_leaves_no_container() {
    let Some(mut fx) = fixture() else { return };
    let owner = fx.user();
    let Owner::User { id: user_id, .. } = &owner else {
        unreachable!()
    };
    let mut spec = fx.spec(&owner, "broken");
    // Python cannot start at all: the server exits at once.
    spec.env.insert("PYTHONHOME".into(), "/nonexistent".into());
    let err = fx.sessions.start(&spec).await.unwrap_err();
    let SessionError::StartFailed(reason) = &err else {
        panic!("expected a failed start, got {err:?}")
    };
    assert!(reason.contains("exited with code"), "{reason}");
    assert!(reason.contains("last lines of its log"), "{reason}");
    assert!(err.is_user_error());
    let (ok, left) = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={}={user_id}", docker::LABEL_OWNER_ID),
    ]);
    assert!(ok && left.trim().is_empty(), "containers left: {left}");
    assert!(
        fx.sessions
            .list()
            .await
            .unwrap()
            .iter()
            .all(|s| s.owner != owner)
    );

    // A server that never answers: the start times out and the container goes.
    let silent = fx.test_image();
    build_image(
        &silent,
        &format!(
            "FROM {}\nENTRYPOINT [\"sh\", \"-c\", \"sleep infinity\"]\n",
            fx.image
        ),
    );
    let settings = SessionSettings {
        start_timeout: Duration::from_secs(2),
        ..fx.settings.clone()
    };
    let impatient = DockerSessions::connect(None, settings, fx.key.clone()).unwrap();
    let mut spec = fx.spec(&owner, "silent");
    spec.image = silent;
    let err = impatient.start(&spec).await.unwrap_err();
    assert!(matches!(err, SessionError::StartTimeout(_)), "{err:?}");
    let (ok, left) = docker_cli(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label={}={user_id}", docker::LABEL_OWNER_ID),
    ]);
    assert!(ok && left.trim().is_empty(), "containers left: {left}");

    // A session network that lets containers talk to each other is refused.
    let open = format!("nbforge-test-open-{}", uuid::Uuid::new_v4().simple());
    assert!(docker_cli(&["network", "create", &open]).0);
    let settings = SessionSettings {
        network: open.clone(),
        ..fx.settings.clone()
    };
    let careless = DockerSessions::connect(None, settings, fx.key.clone()).unwrap();
    let refused = careless.start(&fx.spec(&owner, "open")).await;
    docker_cli(&["network", "rm", &open]);
    let Err(SessionError::Backend(reason)) = refused else {
        panic!("a network with inter-container traffic was used: {refused:?}")
    };
    assert!(reason.contains("reach each other"), "{reason}");

    let mut missing = fx.spec(&owner, "missing");
    missing.image = "nbforge/no-such-image:test".into();
    assert!(matches!(
        fx.sessions.start(&missing).await,
        Err(SessionError::ImageMissing(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_session_home_goes_with_it() {
    let Some(mut fx) = fixture() else { return };
    let visitor = fx.visitor();
    let info = fx.sessions.start(&fx.spec(&visitor, "try")).await.unwrap();
    assert_eq!(info.owner, visitor);
    let volume = format!("nbforge-home-session-{}", info.id);
    assert!(volume_exists(&volume));
    put_file(&info, "scratch.txt", "x").await;
    fx.sessions.stop(&info.id).await.unwrap();
    assert!(!volume_exists(&volume), "the throwaway home is removed");
    assert!(fx.sessions.status(&info.id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_image_keeps_its_start_script_and_seeds_a_new_home() {
    let Some(mut fx) = fixture() else { return };
    // Shaped like the environment images nbforge builds: a `jovyan` user with files in its
    // home, a `start` script as the entrypoint, `USER jovyan`, `WORKDIR /home/jovyan`.
    let image = fx.test_image();
    let dockerfile = format!(
        "FROM {}\n\
         RUN groupadd --gid 1000 jovyan \\\n\
         && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/jovyan jovyan \\\n\
         && echo 'from the image' > /home/jovyan/welcome.txt \\\n\
         && chown 1000:1000 /home/jovyan/welcome.txt \\\n\
         && printf '#!/bin/sh\\ndate > \"$HOME/started\"\\nexec \"$@\"\\n' > /usr/local/bin/start \\\n\
         && chmod 0755 /usr/local/bin/start\n\
         ENTRYPOINT [\"/usr/local/bin/start\"]\n\
         USER jovyan\n\
         WORKDIR /home/jovyan\n",
        fx.image
    );
    build_image(&image, &dockerfile);
    fx.image = image;

    let owner = fx.user();
    let info = fx.sessions.start(&fx.spec(&owner, "env")).await.unwrap();
    let token = info.token.expose().to_owned();
    let welcome = get(&info, "api/contents/welcome.txt?content=1", Some(&token)).await;
    assert_eq!(welcome.status(), 200, "the image's home is copied");
    let welcome: Value = welcome.json().await.unwrap();
    assert_eq!(welcome["content"], "from the image\n");
    let started = get(&info, "api/contents/started", Some(&token)).await;
    assert_eq!(started.status(), 200, "the start script ran");
    put_file(&info, "mine.txt", "written by the user").await;
    fx.sessions.stop(&info.id).await.unwrap();
}

/// Commits `text` as `a.txt` on `main` of the non-bare repository at `dir`.
fn commit_text(dir: &std::path::Path, text: &str) -> String {
    let repo = git2::Repository::open(dir)
        .or_else(|_| git2::Repository::init(dir))
        .unwrap();
    let blob = repo.blob(text.as_bytes()).unwrap();
    let mut tb = repo.treebuilder(None).unwrap();
    tb.insert("a.txt", blob, 0o100644).unwrap();
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.org").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
        .unwrap()
        .to_string()
}

/// A checkout of `commit` of the repository at `dir` for a session.
fn checkout_of(dir: &std::path::Path, commit: &str) -> nbforge::sessions::Checkout {
    let bundle = dir.join(format!("{commit}.bundle"));
    nbforge::launch::checkout::write_bundle(&dir.join(".git"), None, dir, commit, &bundle).unwrap();
    nbforge::sessions::Checkout {
        dir: "rnaseq".into(),
        commit: commit.into(),
        branch: Some("main".into()),
        remote_url: "https://gitlab.example.org/lab/rnaseq.git".into(),
        bundle,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_is_cloned_once_then_fast_forwarded_or_left_alone() {
    let Some(mut fx) = fixture() else { return };
    let owner = fx.user();
    let repo = tempfile::tempdir().unwrap();
    let first = commit_text(repo.path(), "one\n");

    let mut spec = fx.spec(&owner, "first");
    spec.checkout = Some(checkout_of(repo.path(), &first));
    let s = fx.sessions.start(&spec).await.unwrap();
    assert_eq!(
        s.checkout.as_deref(),
        Some(format!("cloned at {first}").as_str())
    );
    let answer = get(
        &s,
        "api/contents/rnaseq/a.txt?content=1",
        Some(s.token.expose()),
    )
    .await;
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["content"], "one\n");
    // The remote is the project's URL, and the bundle is gone from the container.
    let (ok, out) = docker_cli(&[
        "exec",
        &format!("nbforge-session-{}", s.id),
        "sh",
        "-c",
        "git -C ~/rnaseq remote get-url origin; git -C ~/rnaseq branch --show-current; ls /tmp",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("https://gitlab.example.org/lab/rnaseq.git\nmain\n"),
        "{out}"
    );
    assert!(!out.contains("nbforge-checkout.bundle"), "{out}");
    fx.sessions.stop(&s.id).await.unwrap();

    // A clean checkout behind the launched commit is fast-forwarded.
    let second = commit_text(repo.path(), "two\n");
    let mut spec = fx.spec(&owner, "second");
    spec.checkout = Some(checkout_of(repo.path(), &second));
    let s = fx.sessions.start(&spec).await.unwrap();
    assert_eq!(
        s.checkout.as_deref(),
        Some(format!("fast-forwarded to {second}").as_str())
    );
    // A checkout with changes is left alone, and the session says so.
    put_file(&s, "rnaseq/a.txt", "mine\n").await;
    fx.sessions.stop(&s.id).await.unwrap();
    let third = commit_text(repo.path(), "three\n");
    let mut spec = fx.spec(&owner, "third");
    spec.checkout = Some(checkout_of(repo.path(), &third));
    let s = fx.sessions.start(&spec).await.unwrap();
    assert_eq!(
        s.checkout.as_deref(),
        Some("left alone: rnaseq has uncommitted changes")
    );
    let answer = get(
        &s,
        "api/contents/rnaseq/a.txt?content=1",
        Some(s.token.expose()),
    )
    .await;
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["content"], "mine\n");
    fx.sessions.stop(&s.id).await.unwrap();
}
