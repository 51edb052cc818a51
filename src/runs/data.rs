//! The user's own data: the files of `~/data/` in their home volume `nbforge-home-<uid>`,
//! listed for the pickers of file parameters, checked before a run, uploaded into, and
//! checksummed for a run's provenance.
//!
//! Everything goes through the Docker engine, with short-lived helper containers from the
//! base image (one nbforge trusts, never a project's) that mount the home as uid 1000 with
//! the hardening of sessions and no network. Files are read and written through the
//! engine's archive API on a helper that is created but never started; only the listing
//! starts one (`find`), because an archive of a folder carries every byte of its files.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder,
    DownloadFromContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Secret, Settings};
use crate::sessions::Resources;
use crate::sessions::docker::{
    self as sessions_docker, DockerSessions, HOME_DIR, LABEL_HOME, LABEL_OWNER_ID,
};
use crate::worksheet::params::file::{DATA_DIR, check_name};
use crate::worksheet::{ParamType, ParamValue, Parameter, Values};

/// The label value of the helper containers (under [`super::engine::LABEL_RUN`]).
const HELPER_LABEL: &str = "data";
/// The most files the picker lists.
pub const MAX_LISTED: usize = 2000;
/// How long listing `~/data/` may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// A file of `~/data/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataFile {
    pub name: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
    /// The path inside runs' and sessions' containers.
    pub path: String,
}

/// What is at a path of `~/data/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File {
        size: u64,
    },
    Folder,
    /// A link, a device, …: not something a run reads as a file.
    Other,
}

/// Why an upload was not written.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "~/data/{0} exists already: give the file another name, or replace it (`replace=true`)"
    )]
    Exists(String),
    #[error("~/data/{0} is a folder or a link, not a file: give the file another name")]
    NotAFile(String),
    #[error("~/data in your home is not a folder")]
    NotAFolder,
    #[error(transparent)]
    Engine(#[from] anyhow::Error),
}

/// The input file of a file parameter at the start of a run, for `provenance.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputFile {
    pub parameter: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Go's `os.FileMode` bits the engine reports in a path's stat.
const MODE_DIR: u32 = 1 << 31;
const MODE_TYPE: u32 =
    (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The users' `~/data/` folders on the Docker engine of sessions and runs.
#[derive(Clone)]
pub struct HomeData {
    sessions: DockerSessions,
    image: String,
}

impl HomeData {
    /// The engine nbforge's settings name; helpers run from the base image.
    pub fn connect(settings: &Settings) -> anyhow::Result<HomeData> {
        let sessions = DockerSessions::connect(
            settings.environments.docker_host.as_deref(),
            settings.sessions.clone(),
            Secret::new(super::new_run_id()),
        )?;
        Ok(HomeData {
            sessions,
            image: settings.environments.base_image.clone(),
        })
    }

    fn docker(&self) -> &Docker {
        self.sessions.docker()
    }

    async fn volume_exists(&self, user_id: i64) -> anyhow::Result<bool> {
        match self
            .docker()
            .inspect_volume(&sessions_docker::home_volume(user_id))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the home volume owned by uid 1000 if nbforge has not yet (as runs do).
    async fn prepare(&self, user_id: i64) -> anyhow::Result<()> {
        let volume = sessions_docker::home_volume(user_id);
        let prepared = self
            .docker()
            .inspect_volume(&volume)
            .await
            .ok()
            .and_then(|v| v.labels.get(LABEL_HOME).cloned())
            == Some(user_id.to_string());
        if !prepared {
            self.sessions
                .prepare_home(
                    &volume,
                    HashMap::from([(LABEL_HOME.to_owned(), user_id.to_string())]),
                    &self.image,
                )
                .await?;
        }
        Ok(())
    }

    /// Creates a helper container with the home mounted (started only with `cmd`).
    async fn helper(&self, user_id: i64, cmd: Option<Vec<String>>) -> anyhow::Result<String> {
        let name = format!("nbforge-data-{}", super::new_run_id());
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: Some(vec![]),
            cmd: Some(cmd.unwrap_or_else(|| vec!["true".into()])),
            user: Some("1000:1000".into()),
            labels: Some(HashMap::from([
                (super::engine::LABEL_RUN.to_owned(), HELPER_LABEL.to_owned()),
                (LABEL_OWNER_ID.to_owned(), user_id.to_string()),
            ])),
            network_disabled: Some(true),
            host_config: Some(sessions_docker::user_code_host_config(
                self.sessions.settings(),
                &Resources {
                    memory_bytes: 256 << 20,
                    cpus: 0.5,
                },
                "none",
                &sessions_docker::home_volume(user_id),
            )),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        self.docker()
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating a helper from {}", self.image))?;
        Ok(name)
    }

    async fn remove(&self, name: &str) {
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

    async fn stat_in(&self, helper: &str, path: &str) -> anyhow::Result<Entry> {
        let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
        match self
            .docker()
            .get_container_archive_info(helper, Some(options))
            .await
        {
            Ok(stat) if stat.file_mode & MODE_DIR != 0 => Ok(Entry::Folder),
            Ok(stat) if stat.file_mode & MODE_TYPE == 0 => Ok(Entry::File {
                size: u64::try_from(stat.size).unwrap_or(0),
            }),
            Ok(_) => Ok(Entry::Other),
            Err(e) if not_found(&e) => Ok(Entry::Missing),
            Err(e) => Err(e.into()),
        }
    }

    /// What `~/data/<name>` is.
    pub async fn stat(&self, user_id: i64, name: &str) -> anyhow::Result<Entry> {
        if check_name(name).is_err() || !self.volume_exists(user_id).await? {
            return Ok(Entry::Missing);
        }
        let helper = self.helper(user_id, None).await?;
        let entry = self.stat_in(&helper, &format!("{DATA_DIR}/{name}")).await;
        self.remove(&helper).await;
        entry
    }

    /// The files of `~/data/` (not its folders, links or hidden files), by name, at most
    /// [`MAX_LISTED`]. An empty list when the home or the folder does not exist yet.
    pub async fn list(&self, user_id: i64) -> anyhow::Result<Vec<DataFile>> {
        if !self.volume_exists(user_id).await? {
            return Ok(Vec::new());
        }
        let cmd = [
            "find",
            DATA_DIR,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "f",
            "-printf",
            "%s %T@ %f\\0",
        ]
        .map(String::from)
        .to_vec();
        let helper = self.helper(user_id, Some(cmd)).await?;
        let listed = tokio::time::timeout(LIST_TIMEOUT, self.run_helper(&helper)).await;
        self.remove(&helper).await;
        let out = match listed {
            Ok(out) => out?,
            Err(_) => anyhow::bail!("listing ~/data took longer than {LIST_TIMEOUT:?}"),
        };
        Ok(parse_listing(&out))
    }

    /// Starts a helper and gives its standard output once it has ended.
    async fn run_helper(&self, helper: &str) -> anyhow::Result<Vec<u8>> {
        self.docker().start_container(helper, None).await?;
        let mut wait = self.docker().wait_container(helper, None);
        while let Some(r) = wait.next().await {
            // A non-zero exit (no `data` folder yet) is an empty listing.
            if let Err(e) = r
                && !matches!(e, bollard::errors::Error::DockerContainerWaitError { .. })
            {
                return Err(e.into());
            }
        }
        let options = LogsOptionsBuilder::new().stdout(true).stderr(false).build();
        let mut logs = self.docker().logs(helper, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = logs.next().await {
            out.extend_from_slice(&chunk?.into_bytes());
            if out.len() > 4 << 20 {
                break;
            }
        }
        Ok(out)
    }

    /// Writes the file at `source` (`size` bytes, on nbforge's disk) to `~/data/<name>`,
    /// streamed into the engine's archive API; `~/data/` is made if missing. An existing
    /// file of that name is kept unless `replace`; a folder or link of that name always is.
    pub async fn upload(
        &self,
        user_id: i64,
        name: &str,
        source: &Path,
        replace: bool,
    ) -> Result<(), UploadError> {
        check_name(name).map_err(|e| UploadError::Engine(anyhow::anyhow!(e)))?;
        self.prepare(user_id).await?;
        let helper = self.helper(user_id, None).await?;
        let result = self.upload_in(&helper, name, source, replace).await;
        self.remove(&helper).await;
        result
    }

    async fn upload_in(
        &self,
        helper: &str,
        name: &str,
        source: &Path,
        replace: bool,
    ) -> Result<(), UploadError> {
        let make_folder = match self.stat_in(helper, DATA_DIR).await? {
            Entry::Missing => true,
            Entry::Folder => false,
            _ => return Err(UploadError::NotAFolder),
        };
        if !make_folder {
            match self.stat_in(helper, &format!("{DATA_DIR}/{name}")).await? {
                Entry::Missing => {}
                Entry::File { .. } if replace => {}
                Entry::File { .. } => return Err(UploadError::Exists(name.to_owned())),
                Entry::Folder | Entry::Other => {
                    return Err(UploadError::NotAFile(name.to_owned()));
                }
            }
        }
        // The archive is made on a blocking thread as the engine reads it.
        let (reader, writer) = tokio::io::duplex(256 << 10);
        let writer = tokio_util::io::SyncIoBridge::new(writer);
        let file = std::fs::File::open(source).context("opening the received file")?;
        let size = file.metadata().context("reading the received file")?.len();
        let entry = if make_folder {
            format!("data/{name}")
        } else {
            name.to_owned()
        };
        let writing = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut tar = tar::Builder::new(writer);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let header = |kind: tar::EntryType, mode: u32, size: u64| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_size(size);
                h.set_mode(mode);
                h.set_uid(1000);
                h.set_gid(1000);
                h.set_mtime(now);
                h
            };
            if make_folder {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, "data/", std::io::empty())?;
            }
            let mut h = header(tar::EntryType::Regular, 0o644, size);
            tar.append_data(&mut h, &entry, file.take(size))?;
            tar.into_inner()?;
            Ok(())
        });
        let path = if make_folder { HOME_DIR } else { DATA_DIR };
        let options = UploadToContainerOptionsBuilder::new()
            .path(path)
            .no_overwrite_dir_non_dir("true")
            .build();
        let sent = self
            .docker()
            .upload_to_container(
                helper,
                Some(options),
                bollard::body_try_stream(tokio_util::io::ReaderStream::new(reader)),
            )
            .await;
        let written = writing.await.context("writing the archive")?;
        sent.context("writing into the home")?;
        written.context("writing the archive")?;
        Ok(())
    }

    /// The size and SHA-256 of a file of the home (`path` inside the container), read
    /// through the archive API as it streams; `None` when it is not a regular file.
    pub async fn checksum(
        &self,
        user_id: i64,
        path: &str,
    ) -> anyhow::Result<Option<(u64, String)>> {
        if !self.volume_exists(user_id).await? {
            return Ok(None);
        }
        let helper = self.helper(user_id, None).await?;
        let result = self.checksum_in(&helper, path).await;
        self.remove(&helper).await;
        result
    }

    async fn checksum_in(&self, helper: &str, path: &str) -> anyhow::Result<Option<(u64, String)>> {
        if !matches!(self.stat_in(helper, path).await?, Entry::File { .. }) {
            return Ok(None);
        }
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let stream = self
            .docker()
            .download_from_container(helper, Some(options))
            .map(|r| r.map_err(std::io::Error::other));
        let reader =
            tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(stream)));
        tokio::task::spawn_blocking(move || -> anyhow::Result<Option<(u64, String)>> {
            let mut archive = tar::Archive::new(reader);
            let Some(entry) = archive.entries()?.next() else {
                return Ok(None);
            };
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                return Ok(None);
            }
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 << 10];
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                hasher.update(&buf[..n]);
            }
            Ok(Some((size, hex::encode(hasher.finalize()))))
        })
        .await?
    }

    /// The input files of a run's file parameters (`paths`: parameter and path inside the
    /// container), checksummed at the run's start. A file that is gone is an error naming it.
    pub async fn inputs(
        &self,
        user_id: i64,
        paths: &[(String, String)],
    ) -> anyhow::Result<Result<Vec<InputFile>, String>> {
        let mut out = Vec::with_capacity(paths.len());
        for (parameter, path) in paths {
            match self.checksum(user_id, path).await? {
                Some((size, sha256)) => out.push(InputFile {
                    parameter: parameter.clone(),
                    path: path.clone(),
                    size,
                    sha256,
                }),
                None => {
                    return Ok(Err(format!(
                        "the input file {} of `{parameter}` is no longer in ~/data",
                        path.strip_prefix(HOME_DIR)
                            .map_or_else(|| path.clone(), |p| format!("~{p}"))
                    )));
                }
            }
        }
        Ok(Ok(out))
    }
}

/// The input files of a run's file parameters (their values in `values`), checksummed as
/// the run starts, for `provenance.json`. `Err` is the run's failure: a file that is gone,
/// or the engine's trouble (logged).
pub async fn run_inputs(
    settings: &Settings,
    run_id: &str,
    user_id: i64,
    params: &[Parameter],
    values: &Values,
) -> Result<Vec<InputFile>, String> {
    let paths: Vec<(String, String)> = params
        .iter()
        .filter(|p| p.kind == ParamType::File)
        .filter_map(|p| match values.get(&p.name) {
            Some(ParamValue::Str(path)) => Some((p.name.clone(), path.clone())),
            _ => None,
        })
        .collect();
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let read = async { HomeData::connect(settings)?.inputs(user_id, &paths).await };
    match read.await {
        Ok(result) => result,
        Err(e) => {
            tracing::warn!(run.id = %run_id, "checksumming the input files of run {run_id}: {e:#}");
            Err("the run's input files could not be read (the service's logs say why)".into())
        }
    }
}

/// `find -printf '%s %T@ %f\0'` output as files, by name, valid names only.
fn parse_listing(out: &[u8]) -> Vec<DataFile> {
    let mut files: Vec<DataFile> = out
        .split(|b| *b == 0)
        .filter_map(|record| {
            let text = std::str::from_utf8(record).ok()?;
            let mut parts = text.splitn(3, ' ');
            let size = parts.next()?.parse().ok()?;
            let modified = parts.next()?.split('.').next()?.parse().ok()?;
            let name = parts.next()?;
            check_name(name).ok()?;
            Some(DataFile {
                name: name.to_owned(),
                size,
                modified,
                path: format!("{DATA_DIR}/{name}"),
            })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files.truncate(MAX_LISTED);
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_folder_is_in_the_home() {
        assert_eq!(DATA_DIR, format!("{HOME_DIR}/data"));
    }

    #[test]
    fn listings_keep_plain_file_names() {
        let out = b"12 1700000000.5 b.csv\x00\
            3 1700000001.0 a name with spaces.tsv\x00\
            1 1700000002.0 .hidden\x00\
            1 1700000002.0 bad\nname\x00\
            x 1 broken\x00";
        let files = parse_listing(out);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a name with spaces.tsv", "b.csv"]);
        assert_eq!(files[1].size, 12);
        assert_eq!(files[1].modified, 1_700_000_000);
        assert_eq!(files[1].path, "/home/jovyan/data/b.csv");
    }
}
