//! Sessions as containers on the local Docker engine (bollard).
//!
//! Each session is one container named `nbforge-session-<id>` running `jupyter lab` from
//! the environment image, as uid 1000 with no capabilities, `no-new-privileges`, a pids
//! limit, the session's memory and CPUs (capped by the platform's maximum), on the
//! session network (one bridge with traffic between its containers off) and with no port
//! published on the host: only nbforge reaches it, at the container's address. The home is
//! the named volume `nbforge-home-<user id>` (kept) or `nbforge-home-session-<id>` (removed
//! with the session), made owned by uid 1000 by a short-lived container before the first
//! session mounts it. Everything the backend needs to find a session again is in the
//! container's labels; the Jupyter token is derived from a key and the session id, so it
//! is never written anywhere (it reaches Jupyter on its standard input).
//!
//! For the lifecycle: activity is Jupyter's `api/status` and `api/kernels` (a busy kernel
//! keeps its session), usage is the engine's container stats, and a home's disk use is
//! measured by a short-lived container from the base image running `du -sb` on the volume
//! (uid 1000, no network, read-only mount) and cached, so that pages never wait on it for
//! long.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerState, ContainerStateStatusEnum,
    HostConfig, Mount, MountType, MountVolumeOptions, NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use tokio::io::AsyncWriteExt;

use super::checkout::CHECKOUT_SCRIPT;
use super::{
    Activity, Home, HomeUsage, Owner, SessionBackend, SessionError, SessionId, SessionInfo,
    SessionProject, SessionSpec, SessionState, SessionStats,
};
use crate::config::{Secret, SessionSettings};

/// Label keys on session containers (and on the volumes nbforge makes for them).
pub const LABEL_SESSION: &str = "org.nbforge.session";
pub const LABEL_OWNER_ID: &str = "org.nbforge.owner-id";
pub const LABEL_OWNER: &str = "org.nbforge.owner";
pub const LABEL_VISITOR: &str = "org.nbforge.visitor";
pub const LABEL_NAME: &str = "org.nbforge.session-name";
pub const LABEL_FORGE: &str = "org.nbforge.forge";
pub const LABEL_PROJECT: &str = "org.nbforge.project";
pub const LABEL_COMMIT: &str = "org.nbforge.commit";
pub const LABEL_CREATED: &str = "org.nbforge.created";
pub const LABEL_BASE_URL: &str = "org.nbforge.base-url";
pub const LABEL_DEFAULT_URL: &str = "org.nbforge.default-url";
/// On a volume: the user whose home it is, or `session` for a throwaway home.
pub const LABEL_HOME: &str = "org.nbforge.home";
/// On a container: the throwaway home volume to remove with it.
pub const LABEL_THROWAWAY_HOME: &str = "org.nbforge.throwaway-home";

/// The bridge driver's option that lets containers on one network talk to each other.
const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// The port Jupyter listens on inside the container.
pub const JUPYTER_PORT: u16 = 8888;
/// Where the home is mounted, as in Jupyter's Docker stacks and repo2docker images.
pub const HOME_DIR: &str = "/home/jovyan";
/// Processes a session may run at once.
pub const PIDS_LIMIT: i64 = 512;
/// Where a session's repository bundle is put before it starts (removed once checked out).
const CHECKOUT_BUNDLE: &str = "/tmp/nbforge-checkout.bundle";
/// Lines of a failed start's log shown in the error.
const FAILED_LOG_LINES: usize = 20;

/// The name of a user's persistent home volume.
pub fn home_volume(user_id: i64) -> String {
    format!("nbforge-home-{user_id}")
}

fn throwaway_volume(id: &SessionId) -> String {
    format!("nbforge-home-session-{id}")
}

fn container_name(id: &SessionId) -> String {
    format!("nbforge-session-{id}")
}

fn backend(e: bollard::errors::Error) -> SessionError {
    SessionError::Backend(e.to_string())
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sessions on a Docker engine.
#[derive(Clone)]
pub struct DockerSessions {
    docker: Docker,
    settings: SessionSettings,
    token_key: Secret,
    http: reqwest::Client,
    network_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Homes' disk use as last measured, by user id.
    home_usage: std::sync::Arc<std::sync::Mutex<HashMap<i64, HomeUsage>>>,
    /// One measure of a home at a time.
    measuring: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The image whose `du` measures homes: one nbforge trusts (the base image), never a
    /// project's, whose `du` its owner could make lie about their quota.
    measure_image: Option<String>,
}

impl DockerSessions {
    /// Sessions on the engine at `docker_host` (`unix://…`, `tcp://…`; `None`: `DOCKER_HOST`
    /// or the local socket). `token_key` derives each session's Jupyter token from its id:
    /// keep it stable across restarts (it is derived from nbforge's secret key) so that
    /// sessions found again after a restart can still be reached.
    pub fn connect(
        docker_host: Option<&str>,
        settings: SessionSettings,
        token_key: Secret,
    ) -> Result<DockerSessions, SessionError> {
        let docker = match docker_host {
            None => Docker::connect_with_local_defaults(),
            Some(h) if h.starts_with("unix://") || h.starts_with('/') => Docker::connect_with_unix(
                h.trim_start_matches("unix://"),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            Some(h) => Docker::connect_with_http(h, 120, bollard::API_DEFAULT_VERSION),
        }
        .map_err(backend)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| SessionError::Backend(e.to_string()))?;
        Ok(DockerSessions {
            docker,
            settings,
            token_key,
            http,
            network_lock: Default::default(),
            home_usage: Default::default(),
            measuring: Default::default(),
            measure_image: None,
        })
    }

    /// Measures homes' disk use with `du` from `image` (the base image); without it,
    /// [`SessionBackend::home_usage`] has no answer.
    pub fn measure_homes_with(mut self, image: impl Into<String>) -> DockerSessions {
        self.measure_image = Some(image.into());
        self
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The engine's client (worksheet runs use the same engine).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The Jupyter token of a session: HMAC-SHA256 of its id under the token key.
    pub fn token_for(&self, id: &SessionId) -> Secret {
        let mut mac =
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(self.token_key.expose().as_bytes())
                .expect("HMAC takes keys of any length");
        mac.update(b"nbforge jupyter session token\0");
        mac.update(id.0.as_bytes());
        Secret::new(hex::encode(mac.finalize().into_bytes()))
    }

    /// Makes the session network if it is missing: a bridge whose containers cannot reach
    /// each other. One that exists must have been made so (`enable_icc=false`); any other
    /// is refused rather than used. Checked on every start, so a network removed while
    /// nbforge runs is made again.
    async fn ensure_network(&self) -> Result<(), SessionError> {
        let name = &self.settings.network;
        let _one_at_a_time = self.network_lock.lock().await;
        match self.docker.inspect_network(name, None).await {
            Ok(network) => {
                let icc = network
                    .options
                    .as_ref()
                    .and_then(|o| o.get(ICC_OPTION))
                    .map(String::as_str);
                return if icc == Some("false") {
                    Ok(())
                } else {
                    Err(SessionError::Backend(format!(
                        "the session network {name} lets its containers reach each other; \
                         remove it (nbforge makes it again) or make it with -o {ICC_OPTION}=false"
                    )))
                };
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(backend(e)),
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            options: Some(HashMap::from([(ICC_OPTION.to_owned(), "false".to_owned())])),
            labels: Some(HashMap::from([(
                LABEL_SESSION.to_owned(),
                "network".to_owned(),
            )])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Made by another process meanwhile.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// Makes the home volume (if new) and owned by uid 1000: a fresh volume is root-owned,
    /// or holds a copy of the image's home. A short-lived container from the session's
    /// image, as root with only `CAP_CHOWN` and no network, changes the owner of the
    /// volume's top directory (never recursively: what is inside is the user's).
    /// Worksheet runs prepare the homes they mount through this too.
    ///
    /// A volume that exists with the same labels was prepared before (a volume whose
    /// preparation fails is removed again), so only a new home costs that container.
    pub async fn prepare_home(
        &self,
        volume: &str,
        labels: HashMap<String, String>,
        image: &str,
    ) -> Result<(), SessionError> {
        let existing = match self.docker.inspect_volume(volume).await {
            Ok(v) => Some(v),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(backend(e)),
        };
        if let Some(v) = &existing
            && !labels.is_empty()
            && labels.iter().all(|(k, val)| v.labels.get(k) == Some(val))
        {
            return Ok(());
        }
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(volume.to_owned()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(backend)?;
        let name = format!("{volume}-init-{}", uuid::Uuid::new_v4().simple());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            user: Some("0:0".into()),
            entrypoint: Some(vec!["chown".into()]),
            cmd: Some(vec!["1000:1000".into(), HOME_DIR.into()]),
            labels: Some(HashMap::from([(
                LABEL_SESSION.to_owned(),
                "init".to_owned(),
            )])),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                cap_add: Some(vec!["CHOWN".into()]),
                network_mode: Some("none".into()),
                mounts: Some(vec![home_mount(volume, true)]),
                ..confined()
            }),
            ..Default::default()
        };
        let prepared = match self.run_to_end(&name, body).await {
            Ok((0, _)) => Ok(()),
            Ok((code, log)) => Err(SessionError::Backend(format!(
                "preparing the home volume {volume} exited with code {code}: {log}"
            ))),
            Err(e) => Err(e),
        };
        if prepared.is_err()
            && existing.is_none()
            && let Err(e) = self.remove_volume(volume).await
        {
            tracing::warn!("removing the home volume {volume} that could not be prepared: {e}");
        }
        prepared
    }

    /// Runs a short-lived container to its end, then removes it: its exit code and the
    /// last lines of its output.
    async fn run_to_end(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(i64, String), SessionError> {
        self.create(name, body).await.map_err(backend)?;
        let result = async {
            self.docker
                .start_container(name, None)
                .await
                .map_err(backend)?;
            let mut wait = self.docker.wait_container(name, None);
            let code = match wait.next().await {
                Some(Ok(r)) => r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(backend(e)),
                None => -1,
            };
            Ok((code, self.last_log_lines(name, None).await))
        }
        .await;
        self.remove_container(name).await?;
        result
    }

    async fn create(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<(), bollard::errors::Error> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map(drop)
    }

    async fn remove_container(&self, name: &str) -> Result<(), SessionError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Already being removed.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn remove_volume(&self, volume: &str) -> Result<(), SessionError> {
        match self
            .docker
            .remove_volume(
                volume,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    /// The last lines of a container's output, capped, with the token masked.
    async fn last_log_lines(&self, name: &str, token: Option<&Secret>) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&FAILED_LOG_LINES.to_string())
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if text.len() > 16 * 1024 {
                break;
            }
        }
        if let Some(token) = token {
            text = text.replace(token.expose(), "…");
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(FAILED_LOG_LINES)..].join("\n");
        crate::text::truncate(&tail, 4000).into_owned()
    }

    async fn inspect(
        &self,
        id: &SessionId,
    ) -> Result<Option<ContainerInspectResponse>, SessionError> {
        match self
            .docker
            .inspect_container(&container_name(id), None)
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// The session a container is, if it is one.
    fn info(&self, container: &ContainerInspectResponse) -> Option<SessionInfo> {
        let labels = container.config.as_ref()?.labels.as_ref()?;
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let id = SessionId(labels.get(LABEL_SESSION)?.clone());
        if container.name.as_deref().map(|n| n.trim_start_matches('/'))
            != Some(&container_name(&id))
        {
            return None;
        }
        let owner = match labels.get(LABEL_OWNER_ID).and_then(|v| v.parse().ok()) {
            Some(user_id) => Owner::User {
                id: user_id,
                username: label(LABEL_OWNER),
            },
            None => Owner::Anonymous {
                visitor: label(LABEL_VISITOR),
            },
        };
        let state = session_state(container.state.as_ref());
        let address = container
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(&self.settings.network))
            .and_then(|e| e.ip_address.as_deref())
            .filter(|ip| {
                !ip.is_empty() && matches!(state, SessionState::Running | SessionState::Starting)
            })
            .and_then(|ip| url::Url::parse(&format!("http://{ip}:{JUPYTER_PORT}")).ok());
        Some(SessionInfo {
            token: self.token_for(&id),
            id,
            owner,
            name: label(LABEL_NAME),
            project: SessionProject {
                forge: label(LABEL_FORGE),
                path: label(LABEL_PROJECT),
                commit: label(LABEL_COMMIT),
            },
            image: container
                .config
                .as_ref()
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            base_url: label(LABEL_BASE_URL),
            default_url: label(LABEL_DEFAULT_URL),
            finished_ms: matches!(state, SessionState::Stopped | SessionState::Failed(_))
                .then(|| {
                    container
                        .state
                        .as_ref()
                        .and_then(|s| s.finished_at.as_deref())
                        .and_then(super::lifecycle::rfc3339_ms)
                })
                .flatten(),
            state,
            address,
            created_ms: label(LABEL_CREATED).parse().unwrap_or(0),
            checkout: None,
        })
    }

    /// `GET <address><base_url><path>` with the token, read as JSON; `None` for an answer
    /// other than success.
    async fn get_jupyter<T: serde::de::DeserializeOwned>(
        &self,
        info: &SessionInfo,
        path: &str,
    ) -> Result<Option<T>, reqwest::Error> {
        let Some(address) = &info.address else {
            return Ok(None);
        };
        let url = format!(
            "{}{}{path}",
            address.as_str().trim_end_matches('/'),
            info.base_url
        );
        let answer = self
            .http
            .get(url)
            .header("Authorization", format!("token {}", info.token.expose()))
            .send()
            .await?;
        if !answer.status().is_success() {
            return Ok(None);
        }
        answer.json::<T>().await.map(Some)
    }

    /// `GET <address><base_url>api/status` with the token.
    async fn get_status(&self, info: &SessionInfo) -> Result<Option<Activity>, reqwest::Error> {
        self.get_jupyter(info, "api/status").await
    }

    /// The server's status, with its kernels read too (`api/kernels`): whether one is
    /// busy, and the latest of their last activity.
    async fn get_activity(&self, info: &SessionInfo) -> Result<Option<Activity>, reqwest::Error> {
        let Some(mut activity) = self.get_status(info).await? else {
            return Ok(None);
        };
        let kernels: Vec<KernelModel> = self
            .get_jupyter(info, "api/kernels")
            .await?
            .unwrap_or_default();
        activity.busy = kernels.iter().any(|k| k.execution_state == "busy");
        let mut latest = super::lifecycle::rfc3339_ms(&activity.last_activity);
        for k in &kernels {
            let at = k
                .last_activity
                .as_deref()
                .and_then(super::lifecycle::rfc3339_ms);
            if at > latest {
                latest = at;
                activity.last_activity = k.last_activity.clone().unwrap_or_default();
            }
        }
        Ok(Some(activity))
    }

    /// Measures the disk use of `volume` with `du -sb` in a short-lived container from
    /// `image`: uid 1000, no capabilities, no network, the volume mounted read-only.
    async fn measure_volume(&self, volume: &str, image: &str) -> Result<u64, SessionError> {
        let name = format!("{volume}-du-{}", uuid::Uuid::new_v4().simple());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            user: Some("1000:1000".into()),
            entrypoint: Some(vec!["du".into()]),
            cmd: Some(vec!["-sb".into(), HOME_DIR.into()]),
            labels: Some(HashMap::from([(
                LABEL_SESSION.to_owned(),
                "measure".to_owned(),
            )])),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    read_only: Some(true),
                    ..home_mount(volume, false)
                }]),
                memory: Some(64 << 20),
                pids_limit: Some(16),
                ..confined()
            }),
            ..Default::default()
        };
        // `du` exits 1 when it could not read something (a folder the user made
        // unreadable); what it could read is still counted, and the total comes last.
        let (_, out) = self.run_to_end(&name, body).await?;
        out.lines()
            .filter_map(|l| l.split_whitespace().next())
            .find_map(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                SessionError::Backend(format!(
                    "measuring the home volume {volume}: no size in `du`'s output: {out}"
                ))
            })
    }

    /// The image homes are measured with (see [`DockerSessions::measure_homes_with`]),
    /// when the user has a home.
    async fn measuring_image(&self, user_id: i64) -> Result<Option<String>, SessionError> {
        let Some(image) = &self.measure_image else {
            return Ok(None);
        };
        match self.docker.inspect_volume(&home_volume(user_id)).await {
            Ok(_) => Ok(Some(image.clone())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// Waits until Jupyter answers, the container ends, or the start timeout passes.
    async fn wait_ready(&self, id: &SessionId) -> Result<SessionInfo, SessionError> {
        let deadline = tokio::time::Instant::now() + self.settings.start_timeout;
        loop {
            let Some(container) = self.inspect(id).await? else {
                return Err(SessionError::StartFailed(
                    "the container was removed".into(),
                ));
            };
            let info = self.info(&container).ok_or_else(|| {
                SessionError::Backend("the session container lost its labels".into())
            })?;
            match &info.state {
                SessionState::Running => {
                    if let Ok(Some(_)) = self.get_status(&info).await {
                        return Ok(info);
                    }
                }
                SessionState::Starting => {}
                SessionState::Stopped | SessionState::Failed(_) => {
                    let reason = match &info.state {
                        SessionState::Failed(r) => r.clone(),
                        _ => "exited".into(),
                    };
                    let log = self
                        .last_log_lines(&container_name(id), Some(&info.token))
                        .await;
                    return Err(SessionError::StartFailed(if log.is_empty() {
                        reason
                    } else {
                        format!("{reason}; last lines of its log:\n{log}")
                    }));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SessionError::StartTimeout(self.settings.start_timeout));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Puts the checkout's bundle at [`CHECKOUT_BUNDLE`] in a created container, readable
    /// by the session's user.
    async fn put_bundle(&self, name: &str, bundle: &std::path::Path) -> Result<(), SessionError> {
        let bytes = tokio::fs::read(bundle)
            .await
            .map_err(|e| SessionError::Backend(format!("reading the repository bundle: {e}")))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_mtime(0);
        header.set_cksum();
        let mut tar = tar::Builder::new(Vec::new());
        let file = CHECKOUT_BUNDLE.trim_start_matches("/tmp/");
        tar.append_data(&mut header, file, bytes.as_slice())
            .map_err(|e| SessionError::Backend(e.to_string()))?;
        let tar = tar
            .into_inner()
            .map_err(|e| SessionError::Backend(e.to_string()))?;
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path("/tmp")
            .build();
        self.docker
            .upload_to_container(name, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(backend)
    }

    /// The checkout's outcome line from the start of a session's log.
    async fn checkout_outcome(&self, id: &SessionId) -> Option<String> {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(&container_name(id), Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            if let Some(found) = super::checkout::outcome(&text) {
                return Some(found);
            }
            if text.len() > 64 * 1024 {
                break;
            }
        }
        None
    }

    /// Creates and starts the container, handing it the token on its standard input.
    async fn create_and_start(
        &self,
        id: &SessionId,
        spec: &SessionSpec,
        home_volume: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), SessionError> {
        let name = container_name(id);
        let mut env = vec![
            format!("HOME={HOME_DIR}"),
            "USER=jovyan".to_owned(),
            "NB_USER=jovyan".to_owned(),
            "NB_UID=1000".to_owned(),
            "SHELL=/bin/bash".to_owned(),
        ];
        env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        if let Some(c) = &spec.checkout {
            env.extend([
                format!("NBFORGE_CHECKOUT_DIR={}", c.dir),
                format!("NBFORGE_CHECKOUT_COMMIT={}", c.commit),
                format!(
                    "NBFORGE_CHECKOUT_BRANCH={}",
                    c.branch.as_deref().unwrap_or("")
                ),
                format!("NBFORGE_CHECKOUT_REMOTE={}", c.remote_url),
            ]);
        }
        // The token is read from standard input into the environment of `jupyter lab`
        // only: it is not in the container's configuration, where `docker inspect` shows it.
        // The repository is checked out first, from the bundle put into the container.
        let script = format!(
            "IFS= read -r JUPYTER_TOKEN || exit 64\n{CHECKOUT_SCRIPT}\n\
             if [ -f {CHECKOUT_BUNDLE} ]; then nbforge_checkout {CHECKOUT_BUNDLE}; rm -f {CHECKOUT_BUNDLE}; fi\n\
             export JUPYTER_TOKEN; exec jupyter lab \"$@\""
        );
        let mut cmd = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script,
            "jupyter-lab".to_owned(),
        ];
        cmd.extend([
            "--no-browser".to_owned(),
            "--ip=0.0.0.0".to_owned(),
            format!("--port={JUPYTER_PORT}"),
            format!("--ServerApp.base_url={}", spec.base_url),
            format!(
                "--ServerApp.default_url={}{}",
                spec.base_url, spec.default_url
            ),
            format!("--ServerApp.root_dir={HOME_DIR}"),
            "--ServerApp.quit_button=False".to_owned(),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // The image's entrypoint stays: an environment's `start` script runs first and
            // ends with `exec "$@"`, as in repo2docker.
            cmd: Some(cmd),
            env: Some(env),
            user: Some("1000:1000".into()),
            working_dir: Some(HOME_DIR.into()),
            labels: Some(labels),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            host_config: Some(user_code_host_config(
                &self.settings,
                &spec.resources,
                &self.settings.network,
                home_volume,
            )),
            ..Default::default()
        };
        self.create(&name, body).await.map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => SessionError::ImageMissing(spec.image.clone()),
            e => backend(e),
        })?;
        if let Some(c) = &spec.checkout {
            self.put_bundle(&name, &c.bundle).await?;
        }
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdin(true)
            .build();
        let mut attached = self
            .docker
            .attach_container(&name, Some(attach))
            .await
            .map_err(backend)?;
        self.docker
            .start_container(&name, None)
            .await
            .map_err(backend)?;
        let token = self.token_for(id);
        let mut line = Vec::with_capacity(token.expose().len() + 1);
        line.extend_from_slice(token.expose().as_bytes());
        line.push(b'\n');
        attached
            .input
            .write_all(&line)
            .await
            .map_err(|e| SessionError::Backend(format!("handing the session its token: {e}")))?;
        attached.input.flush().await.ok();
        attached.input.shutdown().await.ok();
        Ok(())
    }
}

/// A session's state from its container's.
fn session_state(state: Option<&ContainerState>) -> SessionState {
    let Some(state) = state else {
        return SessionState::Failed("no state".into());
    };
    match state.status {
        Some(ContainerStateStatusEnum::RUNNING) => SessionState::Running,
        Some(ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::RESTARTING) => {
            SessionState::Starting
        }
        _ if state.oom_killed == Some(true) => SessionState::Failed("killed: out of memory".into()),
        _ => match state.exit_code {
            Some(0) => SessionState::Stopped,
            Some(137) => SessionState::Failed("killed".into()),
            Some(code) => SessionState::Failed(format!("exited with code {code}")),
            None => SessionState::Failed("ended".into()),
        },
    }
}

/// The host configuration of a container running users' code with their home (sessions
/// and worksheet runs): [`confined`], uid 1000's limits ([`PIDS_LIMIT`], the memory and
/// CPUs asked for, capped by the platform's maxima), an init process, no published port,
/// on `network`, with `home_volume` at [`HOME_DIR`].
pub fn user_code_host_config(
    settings: &SessionSettings,
    resources: &super::Resources,
    network: &str,
    home_volume: &str,
) -> HostConfig {
    let memory = match resources.memory_bytes {
        0 => settings.memory_max_bytes,
        n => n.min(settings.memory_max_bytes),
    };
    let memory = i64::try_from(memory).unwrap_or(i64::MAX);
    let cpus = if resources.cpus > 0.0 {
        resources.cpus.min(settings.cpu_max)
    } else {
        settings.cpu_max
    };
    HostConfig {
        pids_limit: Some(PIDS_LIMIT),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((cpus * 1e9) as i64),
        init: Some(true),
        network_mode: Some(network.to_owned()),
        publish_all_ports: Some(false),
        mounts: Some(vec![home_mount(home_volume, false)]),
        ..confined()
    }
}

/// What every container nbforge runs for sessions starts from: no capabilities, and no
/// way to gain privileges (setuid binaries, file capabilities).
fn confined() -> HostConfig {
    HostConfig {
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        ..Default::default()
    }
}

/// The home volume at [`HOME_DIR`]. The first mount (`copy`: the preparing container)
/// copies the image's home into a new volume, as Docker does; sessions mount it with
/// `nocopy`, or Docker would copy the owner of the directory it made for the working
/// directory (root) onto a home that is still empty.
fn home_mount(volume: &str, copy: bool) -> Mount {
    Mount {
        target: Some(HOME_DIR.into()),
        source: Some(volume.into()),
        typ: Some(MountType::VOLUME),
        volume_options: (!copy).then(|| MountVolumeOptions {
            no_copy: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[async_trait]
impl SessionBackend for DockerSessions {
    async fn start(&self, spec: &SessionSpec) -> Result<SessionInfo, SessionError> {
        spec.validate()?;
        match self.docker.inspect_image(&spec.image).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                return Err(SessionError::ImageMissing(spec.image.clone()));
            }
            Err(e) => return Err(backend(e)),
        }
        self.ensure_network().await?;
        let id = SessionId(uuid::Uuid::new_v4().simple().to_string());
        let mut labels = HashMap::from([
            (LABEL_SESSION.to_owned(), id.0.clone()),
            (LABEL_NAME.to_owned(), spec.name.clone()),
            (LABEL_FORGE.to_owned(), spec.project.forge.clone()),
            (LABEL_PROJECT.to_owned(), spec.project.path.clone()),
            (LABEL_COMMIT.to_owned(), spec.project.commit.clone()),
            (LABEL_CREATED.to_owned(), now_ms().to_string()),
            (LABEL_BASE_URL.to_owned(), spec.base_url.clone()),
            (LABEL_DEFAULT_URL.to_owned(), spec.default_url.clone()),
        ]);
        match &spec.owner {
            Owner::User { id, username } => {
                labels.insert(LABEL_OWNER_ID.to_owned(), id.to_string());
                labels.insert(LABEL_OWNER.to_owned(), username.clone());
            }
            Owner::Anonymous { visitor } => {
                labels.insert(LABEL_VISITOR.to_owned(), visitor.clone());
            }
        }
        let (volume, throwaway) = match spec.home {
            Home::User { user_id } => (home_volume(user_id), false),
            Home::Throwaway => (throwaway_volume(&id), true),
        };
        let volume_labels = HashMap::from([(
            LABEL_HOME.to_owned(),
            match spec.home {
                Home::User { user_id } => user_id.to_string(),
                Home::Throwaway => "session".to_owned(),
            },
        )])
        .into_iter()
        .chain(throwaway.then(|| (LABEL_SESSION.to_owned(), id.0.clone())))
        .chain(throwaway.then(|| (LABEL_CREATED.to_owned(), now_ms().to_string())))
        .collect();
        if throwaway {
            labels.insert(LABEL_THROWAWAY_HOME.to_owned(), volume.clone());
        }
        let started = async {
            self.prepare_home(&volume, volume_labels, &spec.image)
                .await?;
            self.create_and_start(&id, spec, &volume, labels).await?;
            let mut info = self.wait_ready(&id).await?;
            if spec.checkout.is_some() {
                info.checkout = self.checkout_outcome(&id).await;
            }
            Ok(info)
        }
        .await;
        match started {
            Ok(info) => {
                tracing::info!(session.id = %id, session.owner = %spec.owner.url_name(), forge.project = %spec.project.path, git.commit = %spec.project.commit, "session {id} started");
                Ok(info)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove_container(&container_name(&id)).await {
                    tracing::warn!(session.id = %id, "removing the session {id} that did not start: {cleanup}");
                }
                if throwaway && let Err(cleanup) = self.remove_volume(&volume).await {
                    tracing::warn!(session.id = %id, "removing the home of session {id}: {cleanup}");
                }
                Err(e)
            }
        }
    }

    async fn status(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError> {
        Ok(self.inspect(id).await?.and_then(|c| self.info(&c)))
    }

    async fn stop(&self, id: &SessionId) -> Result<(), SessionError> {
        let Some(container) = self.inspect(id).await? else {
            return Ok(());
        };
        let throwaway = container
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(LABEL_THROWAWAY_HOME).cloned());
        let name = container_name(id);
        // Jupyter shuts its kernels down on SIGTERM; then the container goes.
        let options = StopContainerOptionsBuilder::new().t(10).build();
        match self.docker.stop_container(&name, Some(options)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => return Err(backend(e)),
        }
        self.remove_container(&name).await?;
        if let Some(volume) = throwaway {
            self.remove_volume(&volume).await?;
        }
        tracing::info!(session.id = %id, "session {id} stopped");
        Ok(())
    }

    /// The sessions on this backend's network.
    async fn list(&self) -> Result<Vec<SessionInfo>, SessionError> {
        let filters = HashMap::from([("label", vec![LABEL_SESSION.to_owned()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(backend)?;
        let mut sessions = Vec::new();
        for summary in containers {
            let Some(id) = summary.labels.as_ref().and_then(|l| l.get(LABEL_SESSION)) else {
                continue;
            };
            // This backend's sessions are those on its network: another nbforge sharing
            // the engine (with a network of its own) keeps, lists and culls its own.
            let network = summary
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref());
            if network != Some(self.settings.network.as_str()) {
                continue;
            }
            let id = SessionId(id.clone());
            if let Some(info) = self.status(&id).await? {
                sessions.push(info);
            }
        }
        sessions.sort_by_key(|s| s.created_ms);
        Ok(sessions)
    }

    async fn activity(&self, id: &SessionId) -> Result<Option<Activity>, SessionError> {
        let Some(info) = self.status(id).await? else {
            return Ok(None);
        };
        if info.state != SessionState::Running {
            return Ok(None);
        }
        self.get_activity(&info).await.map_err(|e| {
            SessionError::Backend(format!(
                "reading the status of session {id}: {}",
                e.without_url()
            ))
        })
    }

    async fn stats(&self, id: &SessionId) -> Result<Option<SessionStats>, SessionError> {
        // Not one-shot: the engine samples twice, a second apart, which gives the CPU rate.
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(false)
            .build();
        let mut stats = self.docker.stats(&container_name(id), Some(options));
        let stats = match stats.next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) if is_not_found(&e) => return Ok(None),
            Some(Err(e)) => return Err(backend(e)),
            None => return Ok(None),
        };
        Ok(session_stats(&stats))
    }

    async fn home_usage(
        &self,
        user_id: i64,
        max_age: Duration,
    ) -> Result<Option<HomeUsage>, SessionError> {
        let fresh = |usage: &HomeUsage| {
            let age_ms = now_ms().saturating_sub(usage.measured_ms);
            u128::try_from(age_ms).unwrap_or(0) <= max_age.as_millis()
        };
        let cached = || {
            self.home_usage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&user_id)
                .copied()
        };
        if let Some(usage) = cached().filter(fresh) {
            return Ok(Some(usage));
        }
        let _one_at_a_time = self.measuring.lock().await;
        // Measured by another caller while this one waited.
        if let Some(usage) = cached().filter(fresh) {
            return Ok(Some(usage));
        }
        let Some(image) = self.measuring_image(user_id).await? else {
            return Ok(None);
        };
        let bytes = self.measure_volume(&home_volume(user_id), &image).await?;
        let usage = HomeUsage {
            bytes,
            measured_ms: now_ms(),
        };
        self.home_usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user_id, usage);
        Ok(Some(usage))
    }
}

/// A kernel as Jupyter's `api/kernels` lists it.
#[derive(Debug, serde::Deserialize)]
struct KernelModel {
    #[serde(default)]
    execution_state: String,
    last_activity: Option<String>,
}

/// A container's stats as a session's: the CPU rate between the engine's two samples,
/// and the memory in use less the page cache (as `docker stats` shows it).
fn session_stats(stats: &bollard::models::ContainerStatsResponse) -> Option<SessionStats> {
    let cpu = stats.cpu_stats.as_ref()?;
    let pre = stats.precpu_stats.as_ref();
    let total = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0)
    };
    let cpu_delta = total(Some(cpu)).saturating_sub(total(pre));
    let system_delta = cpu
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(pre.and_then(|p| p.system_cpu_usage).unwrap_or(0));
    let online = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
    let cpu_cores = if system_delta > 0 && total(pre) > 0 {
        cpu_delta as f64 / system_delta as f64 * online
    } else {
        0.0
    };
    let memory = stats.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    let cache = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Some(SessionStats {
        cpu_cores,
        memory_bytes: usage.saturating_sub(cache),
        memory_limit_bytes: memory.and_then(|m| m.limit).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ContainerStateStatusEnum, oom: bool, code: i64) -> SessionState {
        session_state(Some(&ContainerState {
            status: Some(status),
            oom_killed: Some(oom),
            exit_code: Some(code),
            ..Default::default()
        }))
    }

    #[test]
    fn container_states_read_as_session_states() {
        use ContainerStateStatusEnum::*;
        assert_eq!(state(RUNNING, false, 0), SessionState::Running);
        assert_eq!(state(CREATED, false, 0), SessionState::Starting);
        assert_eq!(state(EXITED, false, 0), SessionState::Stopped);
        assert_eq!(
            state(EXITED, true, 137),
            SessionState::Failed("killed: out of memory".into())
        );
        assert_eq!(
            state(EXITED, false, 1),
            SessionState::Failed("exited with code 1".into())
        );
        assert_eq!(
            state(DEAD, false, 137),
            SessionState::Failed("killed".into())
        );
    }
}
