//! The GitLab CI template `ci-templates/nbforge.gitlab-ci.yml`: its YAML shape (jobs, stage,
//! rules, variables, artifacts), and its job scripts run for real with `sh` on this machine:
//! `nbforge spec` writing the analysis and the build context of a commit, the skip on a
//! launch spec that cannot be built, and, with a Docker engine and the base image, the build
//! job's `docker build`. Where `docker-registry` is installed, the build job runs whole
//! against a local registry: login, cache check, build, push, then a cache hit.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::support::missing_service;

const TEMPLATE: &str = include_str!("../../ci-templates/nbforge.gitlab-ci.yml");

/// The template's top level. Unknown keys are refused: a `stages:` or `workflow:` in an
/// included file would replace the including project's own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Template {
    variables: BTreeMap<String, Variable>,
    #[serde(rename = "nbforge-spec")]
    spec: Job,
    #[serde(rename = "nbforge-environment")]
    environment: Job,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Variable {
    value: String,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    stage: String,
    image: Image,
    #[serde(default)]
    services: Vec<Service>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    rules: Vec<Rule>,
    #[serde(default)]
    needs: Vec<Need>,
    allow_failure: Option<AllowFailure>,
    script: Vec<String>,
    artifacts: Option<Artifacts>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Image {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        entrypoint: Vec<String>,
    },
}

impl Image {
    fn name(&self) -> &str {
        match self {
            Image::Name(n) | Image::Full { name: n, .. } => n,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    name: String,
    alias: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(rename = "if")]
    condition: String,
    when: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Need {
    job: String,
    artifacts: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFailure {
    exit_codes: Vec<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Artifacts {
    when: String,
    expire_in: String,
    paths: Vec<String>,
}

fn template() -> Template {
    match serde_saphyr::from_str(TEMPLATE) {
        Ok(t) => t,
        Err(e) => panic!("ci-templates/nbforge.gitlab-ci.yml does not parse: {e}"),
    }
}

fn nbforge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nbforge"))
}

fn base_image() -> String {
    std::env::var("NBFORGE_BASE_IMAGE").unwrap_or_else(|_| "nbforge/base:bookworm".into())
}

/// Copies a `binder-specs/` example into `dir` and commits it with the `git` CLI, as a
/// runner's checkout would have it; returns the commit.
fn checkout(example: &str, dir: &Path) -> String {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("binder-specs")
        .join(example);
    copy_tree(&from, dir);
    commit_all(dir)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_all(dir: &Path) -> String {
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q", "-b", "main"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "environment"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A job's script as GitLab runs it: every entry in one shell, stopping at the first
/// failing command. Returns the exit code and the output (stdout and stderr together).
fn run_job(job: &Job, dir: &Path, env: &[(&str, String)]) -> (i32, String) {
    run_lines(&job.script, dir, env)
}

fn run_lines(lines: &[String], dir: &Path, env: &[(&str, String)]) -> (i32, String) {
    let script = format!("exec 2>&1\nset -e\n{}\n", lines.join("\n"));
    let bin_dir = nbforge_bin().parent().expect("binary folder").to_path_buf();
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut all = vec![bin_dir];
            all.extend(std::env::split_paths(&p));
            std::env::join_paths(all).expect("PATH")
        }
        None => bin_dir.into_os_string(),
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sh runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `nbforge spec DIR --json` run directly (from the files on disk), for comparison.
fn spec_json(dir: &Path) -> serde_json::Value {
    let out = Command::new(nbforge_bin())
        .args(["spec", "--json"])
        .arg(dir)
        .env("NBFORGE_BASE_IMAGE", base_image())
        .output()
        .expect("nbforge spec runs");
    serde_json::from_slice(&out.stdout).expect("nbforge spec --json prints JSON")
}

/// The CI variables the spec job reads, for a checkout at `sha`.
fn spec_env(sha: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CI_COMMIT_SHA", sha.to_owned()),
        ("NBFORGE_BASE_IMAGE", base_image()),
    ]
}

#[test]
fn template_has_the_two_jobs_the_variables_and_matching_rules() {
    let t = template();

    // Both jobs in `build`, a default stage of every GitLab pipeline; the template lists
    // no stages of its own (refused above), so an including project keeps its list.
    assert_eq!(t.spec.stage, "build");
    assert_eq!(t.environment.stage, "build");

    // Documented variables, each with a description.
    for name in [
        "NBFORGE_TOOL_IMAGE",
        "NBFORGE_BASE_IMAGE",
        "NBFORGE_DOCKER_IMAGE",
        "NBFORGE_DIND_IMAGE",
        "NBFORGE_INSECURE_REGISTRY",
    ] {
        let v = t
            .variables
            .get(name)
            .unwrap_or_else(|| panic!("variable {name} is missing"));
        assert!(!v.value.is_empty(), "{name} has no value");
        assert!(v.description.len() > 20, "{name} is not described");
    }
    // An empty NBFORGE_EXTRA_CA_CERTS would be read as a file name: it is left to a
    // "File" CI/CD variable, never defined here.
    assert!(!t.variables.contains_key("NBFORGE_EXTRA_CA_CERTS"));
    assert!(
        t.variables["NBFORGE_BASE_IMAGE"]
            .value
            .starts_with("$CI_REGISTRY/"),
        "the base image must be pullable by runners"
    );

    // The spec job runs in the tool image, with no entrypoint in the way.
    assert_eq!(t.spec.image.name(), "$NBFORGE_TOOL_IMAGE");
    if let Image::Full { entrypoint, .. } = &t.spec.image {
        assert_eq!(entrypoint, &vec![String::new()]);
    }
    let spec_script = t.spec.script.join("\n");
    assert!(spec_script.contains("nbforge spec . --ref \"$CI_COMMIT_SHA\" --json --context nbforge-context > nbforge-spec.json"));
    let artifacts = t.spec.artifacts.as_ref().expect("spec job artifacts");
    assert_eq!(artifacts.when, "always");
    assert!(!artifacts.expire_in.is_empty());
    for p in [
        "nbforge-spec.json",
        "nbforge-context/",
        "nbforge-version.txt",
    ] {
        assert!(artifacts.paths.iter().any(|a| a == p), "artifact {p}");
    }

    // The build job: Docker-in-Docker, the spec job's artifacts, the registry image name.
    assert_eq!(t.environment.image.name(), "$NBFORGE_DOCKER_IMAGE");
    assert_eq!(t.environment.services.len(), 1);
    assert_eq!(t.environment.services[0].name, "$NBFORGE_DIND_IMAGE");
    assert_eq!(t.environment.services[0].alias, "docker");
    assert_eq!(
        t.environment
            .variables
            .get("DOCKER_TLS_CERTDIR")
            .map(String::as_str),
        Some("/certs")
    );
    assert_eq!(t.environment.needs.len(), 1);
    assert_eq!(t.environment.needs[0].job, "nbforge-spec");
    assert!(t.environment.needs[0].artifacts);
    let build_script = t.environment.script.join("\n");
    for needle in [
        "\"$CI_REGISTRY_IMAGE/env:$NBFORGE_KEY\"",
        "docker login --username \"$CI_REGISTRY_USER\" --password-stdin \"$CI_REGISTRY\"",
        "\"$CI_JOB_TOKEN\"",
        "docker manifest inspect",
        "docker build",
        "docker push \"$NBFORGE_IMAGE\"",
    ] {
        assert!(build_script.contains(needle), "build job lacks {needle}");
    }
    assert!(!build_script.contains("jq"), "the key is read without jq");

    // Same rules on both jobs, or `needs` could name a job that is not in the pipeline.
    assert_eq!(t.spec.rules, t.environment.rules);
    let conditions: Vec<&str> = t.spec.rules.iter().map(|r| r.condition.as_str()).collect();
    assert!(
        conditions
            .iter()
            .any(|c| c.contains("$CI_PIPELINE_SOURCE == \"merge_request_event\""))
    );
    assert!(
        t.spec
            .rules
            .iter()
            .any(|r| r.condition.contains("$CI_COMMIT_BRANCH") && r.when.is_none()),
        "branch pushes run the jobs"
    );
}

#[test]
fn allowed_exit_codes_are_exactly_nbforges_not_buildable_codes() {
    let t = template();
    let allowed = &t
        .spec
        .allow_failure
        .as_ref()
        .expect("allow_failure")
        .exit_codes;
    let tmp = tempfile::tempdir().expect("tempdir");

    // Invalid spec: 1. A kind nbforge cannot build: 3. Not a repository: 2.
    let invalid = tmp.path().join("invalid");
    std::fs::create_dir_all(&invalid).expect("mkdir");
    std::fs::write(invalid.join("apt.txt"), "a;b\n").expect("write");
    std::fs::write(invalid.join("requirements.txt"), "numpy\n").expect("write");
    let invalid_sha = commit_all(&invalid);
    let julia = tmp.path().join("julia");
    let julia_sha = checkout("julia", &julia);
    let not_repo = tmp.path().join("plain");
    std::fs::create_dir_all(&not_repo).expect("mkdir");

    let code = |dir: &Path, sha: &str| {
        Command::new(nbforge_bin())
            .args(["spec", ".", "--ref", sha, "--json"])
            .current_dir(dir)
            .output()
            .expect("nbforge runs")
            .status
            .code()
    };
    let invalid_code = code(&invalid, &invalid_sha).expect("exit code");
    let julia_code = code(&julia, &julia_sha).expect("exit code");
    let internal_code = code(&not_repo, "HEAD").expect("exit code");
    assert_eq!((invalid_code, julia_code, internal_code), (1, 3, 2));
    assert!(allowed.contains(&invalid_code) && allowed.contains(&julia_code));
    assert!(!allowed.contains(&internal_code));
    assert!(!allowed.contains(&0));
}

#[test]
fn spec_job_writes_the_analysis_and_context_of_the_commit() {
    let t = template();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let sha = checkout("pip", &repo);
    let committed = spec_json(&repo);

    // Files not committed change nothing: the job reads the commit.
    std::fs::write(repo.join("requirements.txt"), "requests\n").expect("write");
    std::fs::write(repo.join("untracked.py"), "print(1)\n").expect("write");

    let (code, log) = run_job(&t.spec, &repo, &spec_env(&sha));
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("environment key: "), "{log}");
    assert!(
        std::fs::read_to_string(repo.join("nbforge-version.txt"))
            .expect("version file")
            .starts_with("nbforge "),
    );
    let text = std::fs::read_to_string(repo.join("nbforge-spec.json")).expect("spec JSON");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(json["kind"], "python");
    assert_eq!(json["buildable"], true);
    assert_eq!(json["environment_key"], committed["environment_key"]);
    let key = json["environment_key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64);
    assert!(log.contains(&key), "{log}");

    // The context: the generated Dockerfile and only the environment inputs, as committed.
    let ctx = repo.join("nbforge-context");
    let dockerfile = std::fs::read_to_string(ctx.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains(&format!("FROM {}\n", base_image())),
        "{dockerfile}"
    );
    assert!(dockerfile.contains(&key));
    assert_eq!(
        std::fs::read_to_string(ctx.join("repo/requirements.txt")).expect("requirements"),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("binder-specs/pip/requirements.txt")
        )
        .expect("example"),
    );
    // The extra CA bundle the spec was run with (NBFORGE_EXTRA_CA_CERTS) travels along.
    let ca = ctx.join("nbforge-extra-ca.crt");
    match std::env::var_os("NBFORGE_EXTRA_CA_CERTS") {
        Some(path) => {
            assert_eq!(
                std::fs::read(&ca).expect("CA bundle in the context"),
                std::fs::read(path).expect("NBFORGE_EXTRA_CA_CERTS")
            );
            assert!(dockerfile.contains("update-ca-certificates"));
        }
        None => assert!(!ca.exists()),
    }
    assert!(!ctx.join("repo/analysis.ipynb").exists());
    assert!(!ctx.join("repo/untracked.py").exists());
    assert!(!ctx.join("repo/README.md").exists());

    // The build job's key and Dockerfile lines read the same from the JSON, without jq.
    let probe: Vec<String> = t
        .environment
        .script
        .iter()
        .filter(|l| l.starts_with("NBFORGE_KEY=") || l.starts_with("NBFORGE_SPEC_DIR="))
        .cloned()
        .chain(["echo \"key=$NBFORGE_KEY dir=$NBFORGE_SPEC_DIR.\"".to_owned()])
        .collect();
    assert_eq!(
        probe.len(),
        3,
        "the build job reads the key and spec folder"
    );
    let (code, out) = run_lines(&probe, &repo, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("key={key} dir=."));
}

#[test]
fn a_spec_that_cannot_be_built_warns_and_the_build_job_skips() {
    let t = template();
    let allowed = &t
        .spec
        .allow_failure
        .as_ref()
        .expect("allow_failure")
        .exit_codes;
    let tmp = tempfile::tempdir().expect("tempdir");

    let invalid = tmp.path().join("invalid");
    std::fs::create_dir_all(&invalid).expect("mkdir");
    std::fs::write(invalid.join("apt.txt"), "a;b\n").expect("write");
    std::fs::write(invalid.join("requirements.txt"), "numpy\n").expect("write");
    let invalid_sha = commit_all(&invalid);
    let julia = tmp.path().join("julia");
    let julia_sha = checkout("julia", &julia);

    for (dir, sha, expected) in [
        (&invalid, invalid_sha, "apt.txt:1:1:"),
        (&julia, julia_sha, "cannot build yet"),
    ] {
        let (code, log) = run_job(&t.spec, dir, &spec_env(&sha));
        assert!(
            allowed.contains(&code),
            "exit {code} fails the pipeline:\n{log}"
        );
        assert!(log.contains(expected), "{log}");
        assert!(
            log.contains(&format!("the launch spec at {sha} cannot be built")),
            "{log}"
        );

        // The build job stops before Docker: no engine is reachable at this address.
        let env = vec![
            ("CI_COMMIT_SHA", sha.clone()),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned()),
        ];
        let (code, log) = run_job(&t.environment, dir, &env);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("nbforge: skipped:"), "{log}");
        assert!(!log.contains("building"), "{log}");
    }
}

/// Whether the `docker` command reaches an engine that has the base image.
fn docker_ready() -> bool {
    match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            missing_service(&format!(
                "the Docker engine (docker info: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return false;
        }
        Err(e) => {
            missing_service(&format!("the docker command ({e})"));
            return false;
        }
    }
    let base = base_image();
    let has_base = Command::new("docker")
        .args(["image", "inspect", &base])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_base {
        missing_service(&format!("the base image {base} (nbforge base-image)"));
    }
    has_base
}

/// A local registry (`docker-registry serve`) on a free port, stopped on drop.
pub(crate) struct Registry {
    child: Child,
    pub(crate) address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub(crate) fn start() -> Option<Registry> {
        if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
        {
            crate::support::missing_service(
                "docker-registry, for the registry steps of the build job (apt-get install docker-registry)",
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.status("/v2/") != Some(200) {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(registry)
    }

    /// The HTTP status of a HEAD request to the registry's API.
    pub(crate) fn status(&self, path: &str) -> Option<u16> {
        use std::io::{Read as _, Write as _};
        let mut s = TcpStream::connect(&self.address).ok()?;
        let request = format!(
            "HEAD {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n",
            self.address
        );
        s.write_all(request.as_bytes()).ok()?;
        let mut head = String::new();
        s.read_to_string(&mut head).ok()?;
        head.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image_label(image: &str, label: &str) -> String {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            &format!("{{{{ index .Config.Labels \"{label}\" }}}}"),
            image,
        ])
        .output()
        .expect("docker image inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn build_job_builds_the_environment_image_from_the_context() {
    if !docker_ready() {
        return;
    }
    let t = template();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let sha = checkout("pip", &repo);
    let (code, log) = run_job(&t.spec, &repo, &spec_env(&sha));
    assert_eq!(code, 0, "{log}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("nbforge-spec.json")).expect("spec JSON"),
    )
    .expect("JSON");
    let key = json["environment_key"].as_str().expect("key").to_owned();

    // `docker login` writes credentials: keep them in a folder of this test.
    let docker_config = tmp.path().join("docker-config");
    std::fs::create_dir_all(&docker_config).expect("mkdir");
    let registry = Registry::start();
    let (registry_address, project_image) = match &registry {
        Some(r) => (
            r.address.clone(),
            format!("{}/lab/pip-{}", r.address, &sha[..8]),
        ),
        None => (
            "registry.invalid".to_owned(),
            format!("nbforge-ci-test/pip-{}", &sha[..8]),
        ),
    };
    let image = format!("{project_image}/env:{key}");
    let env = vec![
        ("CI_COMMIT_SHA", sha.clone()),
        ("CI_PROJECT_PATH", "lab/pip".to_owned()),
        ("CI_REGISTRY", registry_address),
        ("CI_REGISTRY_IMAGE", project_image.clone()),
        ("CI_REGISTRY_USER", "gitlab-ci-token".to_owned()),
        ("CI_JOB_TOKEN", "job-token".to_owned()),
        ("NBFORGE_INSECURE_REGISTRY", "true".to_owned()),
        ("DOCKER_CONFIG", docker_config.display().to_string()),
    ];

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &registry {
        Some(r) => {
            let manifest = format!(
                "/v2/{}/env/manifests/{key}",
                &project_image[r.address.len() + 1..]
            );
            assert_eq!(r.status(&manifest), Some(404));
            let (code, log) = run_job(&t.environment, &repo, &env);
            assert_eq!(code, 0, "{log}");
            assert!(log.contains(&format!("nbforge: building {image}")), "{log}");
            assert!(log.contains(&format!("nbforge: pushed {image}")), "{log}");
            assert_eq!(r.status(&manifest), Some(200), "pushed to the registry");

            // Once in the registry, the next pipeline builds nothing.
            let (code, log) = run_job(&t.environment, &repo, &env);
            assert_eq!(code, 0, "{log}");
            assert!(
                log.contains("is already in the registry (cache); nothing to build"),
                "{log}"
            );
            assert!(!log.contains("nbforge: building"), "{log}");
        }
        None => {
            // Without a registry: the same script less its login, cache check and push.
            let local: Vec<String> = t
                .environment
                .script
                .iter()
                .filter(|l| {
                    !(l.contains("docker login")
                        || l.contains("docker manifest inspect")
                        || l.contains("docker push"))
                })
                .cloned()
                .collect();
            assert_eq!(local.len(), t.environment.script.len() - 3);
            let (code, log) = run_lines(&local, &repo, &env);
            assert_eq!(code, 0, "{log}");
            assert!(log.contains(&format!("nbforge: building {image}")), "{log}");
        }
    }));

    // The image is labelled like the service's, and its environment works.
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_eq!(image_label(&image, "org.nbforge.environment-key"), key);
        assert_eq!(image_label(&image, "org.nbforge.commit"), sha);
        assert_eq!(image_label(&image, "org.nbforge.repo"), "lab/pip");
        assert_eq!(
            image_label(&image, "org.nbforge.version"),
            env!("CARGO_PKG_VERSION")
        );
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                &image,
                "python",
                "-c",
                "import numpy, pandas, matplotlib; print('environment ok')",
            ])
            .output()
            .expect("docker run");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("environment ok"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }));
    let _ = Command::new("docker")
        .args(["image", "rm", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = result.and(checks) {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn build_job_finds_a_repositorys_own_dockerfile_in_the_context() {
    let t = template();
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let sha = checkout("dockerfile", &repo);
    let (code, log) = run_job(&t.spec, &repo, &spec_env(&sha));
    assert_eq!(code, 0, "{log}");

    // The build job's lines that choose the Dockerfile, run on the spec job's output.
    let mut probe: Vec<String> = t
        .environment
        .script
        .iter()
        .filter(|l| l.starts_with("NBFORGE_SPEC_DIR=") || l.contains("NBFORGE_DOCKERFILE="))
        .cloned()
        .collect();
    assert_eq!(probe.len(), 3, "{probe:?}");
    probe.push("echo \"$NBFORGE_DOCKERFILE\"".to_owned());
    let (code, out) = run_lines(&probe, &repo, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "binder/Dockerfile");
    let ctx = repo.join("nbforge-context");
    assert_eq!(
        std::fs::read(ctx.join(out.trim())).expect("the Dockerfile in the context"),
        std::fs::read(repo.join("binder/Dockerfile")).expect("the repository's Dockerfile")
    );
    assert!(ctx.join("binder/environment.txt").exists());
    assert!(!ctx.join("Dockerfile").exists());
    assert!(!ctx.join("README.md").exists());
}
