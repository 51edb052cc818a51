//! The Docker side of a run: one container `nbforge-run-<id>` from the environment image,
//! as uid 1000 with the owner's home volume and the hardening of sessions, no network,
//! executing [`super::RUNNER`]; files go in and out through the engine's archive API.

use std::collections::HashMap;
use std::io::Read;

use anyhow::Context as _;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

use crate::config::{Secret, Settings};
use crate::sessions::Resources;
use crate::sessions::docker::{
    self as sessions_docker, DockerSessions, HOME_DIR, LABEL_HOME, LABEL_OWNER_ID,
};

/// The label naming a run on its container.
pub const LABEL_RUN: &str = "org.nbforge.run";
/// Where the runner and its input go inside the container.
const INPUT_DIR: &str = "/tmp/nbforge-run";

/// How a run's container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    Canceled(String),
}

/// The container name of a run.
pub fn container_name(run_id: &str) -> String {
    format!("nbforge-run-{run_id}")
}

/// Runs on the Docker engine (the engine of sessions).
#[derive(Clone)]
pub struct Engine {
    sessions: DockerSessions,
}

/// What a run's container starts with.
pub struct Launch<'a> {
    pub run_id: &'a str,
    pub owner_user_id: i64,
    pub image: &'a str,
    /// The parameterized notebook.
    pub notebook: &'a [u8],
    /// `parameters.json`.
    pub parameters: &'a [u8],
    /// The result folder, relative to the home.
    pub folder: &'a str,
    pub timeout_secs: u64,
    pub resources: Resources,
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A tar archive of `files` (name, bytes), owned by uid 1000.
fn tar_of(files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        header.set_cksum();
        builder.append_data(&mut header, name, *bytes)?;
    }
    Ok(builder.into_inner()?)
}

impl Engine {
    /// The engine nbforge's settings name (sessions' engine, with their limits).
    pub fn connect(settings: &Settings) -> anyhow::Result<Engine> {
        // Runs never serve Jupyter, so the token key is never used.
        let sessions = DockerSessions::connect(
            settings.environments.docker_host.as_deref(),
            settings.sessions.clone(),
            Secret::new(super::new_run_id()),
        )?;
        Ok(Engine { sessions })
    }

    fn docker(&self) -> &Docker {
        self.sessions.docker()
    }

    /// The id of `image` in the engine, or `None` when it is not there.
    pub async fn image_digest(&self, image: &str) -> anyhow::Result<Option<String>> {
        match self.docker().inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the run's container with its inputs, and starts it.
    pub async fn start(&self, l: &Launch<'_>) -> anyhow::Result<()> {
        let volume = sessions_docker::home_volume(l.owner_user_id);
        self.sessions
            .prepare_home(
                &volume,
                HashMap::from([(LABEL_HOME.to_owned(), l.owner_user_id.to_string())]),
                l.image,
            )
            .await?;
        let name = container_name(l.run_id);
        let host_config = sessions_docker::user_code_host_config(
            self.sessions.settings(),
            &l.resources,
            "none",
            &volume,
        );
        let body = ContainerCreateBody {
            image: Some(l.image.to_owned()),
            cmd: Some(vec![
                super::RUNNER_PYTHON.to_owned(),
                format!("{INPUT_DIR}/runner.py"),
                format!("{INPUT_DIR}/input.ipynb"),
                format!("{HOME_DIR}/{}", l.folder),
                l.timeout_secs.to_string(),
            ]),
            env: Some(vec![
                format!("HOME={HOME_DIR}"),
                "USER=jovyan".to_owned(),
                "NB_USER=jovyan".to_owned(),
                "NB_UID=1000".to_owned(),
                "PYTHONUNBUFFERED=1".to_owned(),
            ]),
            user: Some("1000:1000".into()),
            working_dir: Some(HOME_DIR.into()),
            labels: Some(HashMap::from([
                (LABEL_RUN.to_owned(), l.run_id.to_owned()),
                (LABEL_OWNER_ID.to_owned(), l.owner_user_id.to_string()),
            ])),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker()
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating the run's container from {}", l.image))?;
        let archive = tar_of(&[
            ("nbforge-run/runner.py", super::RUNNER.as_bytes()),
            ("nbforge-run/input.ipynb", l.notebook),
            ("nbforge-run/parameters.json", l.parameters),
        ])?;
        let options = UploadToContainerOptionsBuilder::new().path("/tmp").build();
        self.docker()
            .upload_to_container(&name, Some(options), bollard::body_full(archive.into()))
            .await
            .context("handing the run its notebook")?;
        self.docker()
            .start_container(&name, None)
            .await
            .context("starting the run's container")?;
        Ok(())
    }

    /// The container's standard output as it comes.
    pub fn output(&self, run_id: &str) -> impl Stream<Item = Vec<u8>> + Send + use<> {
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(false)
            .build();
        self.docker()
            .logs(&container_name(run_id), Some(options))
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok().map(|o| o.into_bytes().to_vec())))
    }

    /// The last lines of the container's error output (for a failure's message).
    pub async fn error_tail(&self, run_id: &str) -> String {
        let options = LogsOptionsBuilder::new()
            .stdout(false)
            .stderr(true)
            .tail("15")
            .build();
        let mut logs = self.docker().logs(&container_name(run_id), Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        crate::text::truncate(text.trim(), 2000).into_owned()
    }

    /// Stops the container at once.
    pub async fn kill(&self, run_id: &str) {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        if let Err(e) = self
            .docker()
            .kill_container(&container_name(run_id), Some(options))
            .await
            && !not_found(&e)
        {
            tracing::debug!(run.id = %run_id, "killing the run's container: {e}");
        }
    }

    /// Waits for the container to end; its exit code.
    pub async fn wait(&self, run_id: &str) -> i64 {
        let mut wait = self
            .docker()
            .wait_container(&container_name(run_id), None);
        match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            _ => -1,
        }
    }

    /// A file of the (stopped) container, at most `max` bytes; `None` when missing or larger.
    pub async fn read_file(
        &self,
        run_id: &str,
        path: &str,
        max: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut stream = self
            .docker()
            .download_from_container(&container_name(run_id), Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    archive.extend_from_slice(&c);
                    if archive.len() as u64 > max + (1 << 20) {
                        return Ok(None);
                    }
                }
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        for entry in tar.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type().is_file() {
                if entry.size() > max {
                    return Ok(None);
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                return Ok(Some(bytes));
            }
        }
        Ok(None)
    }

    /// Writes `files` into `dir` of the (stopped) container, owned by uid 1000.
    pub async fn write_files(
        &self,
        run_id: &str,
        dir: &str,
        files: &[(&str, &[u8])],
    ) -> anyhow::Result<()> {
        let archive = tar_of(files)?;
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        self.docker()
            .upload_to_container(
                &container_name(run_id),
                Some(options),
                bollard::body_full(archive.into()),
            )
            .await?;
        Ok(())
    }

    /// Removes the run's container (gone already is fine).
    pub async fn remove(&self, run_id: &str) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self
            .docker()
            .remove_container(&container_name(run_id), Some(options))
            .await
            && !not_found(&e)
        {
            tracing::warn!(run.id = %run_id, "removing the run's container: {e}");
        }
    }

    /// Whether the run's container exists (left by an earlier try).
    pub async fn exists(&self, run_id: &str) -> bool {
        self.docker()
            .inspect_container(&container_name(run_id), None)
            .await
            .is_ok()
    }
}
