//! The Docker side of a run: one container `nbforge-run-<id>` from the environment image,
//! as uid 1000 with the owner's home volume and the hardening of sessions, no network,
//! executing [`super::RUNNER`]; files go in and out through the engine's archive API.

use std::collections::HashMap;
use std::io::{Read, Write as _};

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
use crate::sessions::docker::{self as sessions_docker, DockerSessions, HOME_DIR};
use crate::storage::RunRow;

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
    /// The image that reads a home when a run's own image is gone.
    base_image: String,
}

/// What a run's container starts with.
pub struct Launch<'a> {
    pub run_id: &'a str,
    /// The owner's home, or a visitor's throwaway one.
    pub home: super::visitors::RunHome,
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
        Ok(Engine {
            sessions,
            base_image: settings.environments.base_image.clone(),
        })
    }

    pub fn docker(&self) -> &Docker {
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
        let volume = l.home.volume();
        // Only a new home costs a container start (`prepare_home`); a throwaway home is new.
        self.sessions
            .prepare_home(&volume, l.home.volume_labels(), l.image)
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
                l.home.owner_label(),
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
        let mut wait = self.docker().wait_container(&container_name(run_id), None);
        match wait.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            _ => -1,
        }
    }

    /// The size of a file of the run's (stopped) container, `None` when it is missing.
    pub async fn file_size(&self, run_id: &str, path: &str) -> anyhow::Result<Option<u64>> {
        let options = bollard::query_parameters::ContainerArchiveInfoOptionsBuilder::new()
            .path(path)
            .build();
        match self
            .docker()
            .get_container_archive_info(&container_name(run_id), Some(options))
            .await
        {
            Ok(stat) => Ok(u64::try_from(stat.size).ok()),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A file of the run's (stopped) container, at most `max` bytes; `None` when missing
    /// or larger.
    pub async fn read_file(
        &self,
        run_id: &str,
        path: &str,
        max: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        self.read_container_file(&container_name(run_id), path, max)
            .await
    }

    async fn read_container_file(
        &self,
        container: &str,
        path: &str,
        max: u64,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self
            .docker()
            .download_from_container(container, Some(options));
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
        self.remove_named(&container_name(run_id)).await;
    }

    /// Every container carrying [`LABEL_RUN`], running or not: (container id, the label's
    /// value — a run id, or `reader` —, when it was created, in seconds since the epoch).
    pub async fn run_containers(&self) -> anyhow::Result<Vec<(String, String, i64)>> {
        let filters = HashMap::from([("label".to_owned(), vec![LABEL_RUN.to_owned()])]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker().list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let run = c.labels.as_ref()?.get(LABEL_RUN)?.clone();
                Some((c.id?, run, c.created.unwrap_or(0)))
            })
            .collect())
    }

    /// Removes a container by id or name (gone already is fine).
    pub async fn remove_container(&self, container: &str) {
        self.remove_named(container).await;
    }
}

/// Reading a run's result folder from the owner's home after the run: a container that
/// is never started, with the home mounted, read through the archive API.
impl Engine {
    async fn home_reader(&self, row: &RunRow) -> anyhow::Result<String> {
        let home = super::visitors::RunHome::of(row).context("the run has no home")?;
        let image = match &row.image {
            Some(i) if self.image_digest(i).await?.is_some() => i.clone(),
            _ => self.base_image.clone(),
        };
        let name = format!("nbforge-run-read-{}", super::new_run_id());
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(vec!["true".into()]),
            user: Some("1000:1000".into()),
            labels: Some(HashMap::from([
                (LABEL_RUN.to_owned(), "reader".to_owned()),
                home.owner_label(),
            ])),
            network_disabled: Some(true),
            host_config: Some(sessions_docker::user_code_host_config(
                self.sessions.settings(),
                &Resources {
                    memory_bytes: 0,
                    cpus: 0.0,
                },
                "none",
                &home.volume(),
            )),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker().create_container(Some(options), body).await?;
        Ok(name)
    }

    async fn remove_named(&self, name: &str) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        if let Err(e) = self.docker().remove_container(name, Some(options)).await
            && !not_found(&e)
        {
            tracing::warn!("removing the container {name}: {e}");
        }
    }

    /// A file of a run's result folder (at most 256 MiB), `None` when it is not there.
    pub async fn read_home_file(
        &self,
        row: &RunRow,
        name: &str,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let reader = self.home_reader(row).await?;
        let path = format!("{HOME_DIR}/{}/{name}", row.result_folder);
        let read = self.read_container_file(&reader, &path, 256 << 20).await;
        self.remove_named(&reader).await;
        read
    }

    /// `path` of the run's home as the engine's tar archive, read as it comes (never held
    /// whole) through a reader container that is removed once the archive is read or
    /// dropped. The engine's error (404 for a missing path) when the first chunk fails.
    async fn home_archive(
        &self,
        row: &RunRow,
        path: &str,
    ) -> anyhow::Result<impl std::io::Read + Send + 'static> {
        let reader = self.home_reader(row).await?;
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut tar_stream = self
            .docker()
            .download_from_container(&reader, Some(options));
        // The first chunk tells whether the path is there.
        let first = match tar_stream.next().await {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                self.remove_named(&reader).await;
                return Err(e.into());
            }
            None => bytes::Bytes::new(),
        };
        let engine = self.clone();
        let (tar_tx, mut tar_rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        tokio::spawn(async move {
            if tar_tx.send(Ok(first)).await.is_ok() {
                while let Some(chunk) = tar_stream.next().await {
                    let chunk = chunk.map_err(std::io::Error::other);
                    let stop = chunk.is_err();
                    if tar_tx.send(chunk).await.is_err() || stop {
                        break;
                    }
                }
            }
            drop(tar_tx);
            engine.remove_named(&reader).await;
        });
        Ok(async_stream_reader(futures_util::stream::poll_fn(
            move |cx| tar_rx.poll_recv(cx),
        )))
    }

    /// A run's result folder as a zip archive (entries stored, not compressed), made as
    /// it is sent: the engine's tar stream is rewritten entry by entry on a blocking thread.
    pub async fn zip_home_folder(
        &self,
        row: &RunRow,
    ) -> anyhow::Result<impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + use<>> {
        let input = self
            .home_archive(row, &format!("{HOME_DIR}/{}", row.result_folder))
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let out = ChannelWriter(tx.clone());
            if let Err(e) = tar_to_zip(input, out) {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        Ok(futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        }))
    }
}

impl Engine {
    /// A file of a run's result folder as it is read from the home, in chunks (nbforge
    /// never holds it whole); `None` when it is not there.
    pub async fn stream_home_file(
        &self,
        row: &RunRow,
        name: &str,
    ) -> anyhow::Result<Option<impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + use<>>>
    {
        let path = format!("{HOME_DIR}/{}/{name}", row.result_folder);
        let input = match self.home_archive(row, &path).await {
            Ok(input) => input,
            Err(e)
                if e.downcast_ref::<bollard::errors::Error>()
                    .is_some_and(not_found) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter(tx.clone());
            let copy = || -> std::io::Result<()> {
                let mut archive = tar::Archive::new(input);
                for entry in archive.entries()? {
                    let mut entry = entry?;
                    if entry.header().entry_type().is_file() {
                        let mut buffered = std::io::BufWriter::with_capacity(64 << 10, &mut out);
                        std::io::copy(&mut entry, &mut buffered)?;
                        buffered.flush()?;
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = copy() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Some(futures_util::stream::poll_fn({
            let mut rx = rx;
            move |cx| rx.poll_recv(cx)
        })))
    }
}

fn async_stream_reader(
    stream: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static,
) -> impl std::io::Read + Send + 'static {
    tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream))
}

/// A writer whose bytes go to a channel (the response body).
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download stopped")
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rewrites a tar archive (of one folder) as a zip, folder and file names as in the tar.
fn tar_to_zip(input: impl std::io::Read, out: impl std::io::Write) -> anyhow::Result<()> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new_stream(std::io::BufWriter::with_capacity(64 << 10, out));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            zip.add_directory(name, options)?;
        } else if kind.is_file() {
            zip.start_file(name, options.unix_permissions(0o644))?;
            std::io::copy(&mut entry, &mut zip)?;
        }
    }
    zip.finish()?.flush()?;
    Ok(())
}
