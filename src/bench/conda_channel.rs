//! A local conda channel for benchmarks and tests, where anaconda.org cannot be reached: real
//! packages (`.tar.bz2` archives with `info/index.json` and `info/paths.json`) written into
//! `noarch/` and `linux-64/`, indexed into `repodata.json`, and served over HTTP on loopback.
//!
//! [`LocalChannel::add_python_stand_in`] adds a `python` package that is a virtual
//! environment of the image's own Python 3.11 (a `pyvenv.cfg` and links to `/usr/bin`), and an
//! `ipykernel` package that needs it: enough for a real kernel in the environment without
//! conda-forge's binaries. conda-forge and bioconda are used the same way, through their URLs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One file of a package.
pub enum Content {
    Text(String),
    /// A symbolic link to this target.
    Link(String),
}

/// A package to write.
pub struct Package {
    pub name: String,
    pub version: String,
    pub build: String,
    /// `noarch` or `linux-64`.
    pub subdir: String,
    pub depends: Vec<String>,
    /// A `noarch: python` package (its files under `site-packages/`).
    pub noarch_python: bool,
    pub files: Vec<(String, Content)>,
}

impl Package {
    pub fn noarch(name: &str, version: &str, depends: &[&str]) -> Self {
        Package {
            name: name.into(),
            version: version.into(),
            build: "0".into(),
            subdir: "noarch".into(),
            depends: depends.iter().map(|d| (*d).to_owned()).collect(),
            noarch_python: false,
            files: Vec::new(),
        }
    }

    /// A `noarch: python` package holding one module, `module`, with `text` as its
    /// `__init__.py`.
    pub fn python_module(name: &str, version: &str, module: &str, text: &str) -> Self {
        Package {
            noarch_python: true,
            build: "py_0".into(),
            files: vec![(
                format!("site-packages/{module}/__init__.py"),
                Content::Text(text.to_owned()),
            )],
            ..Package::noarch(name, version, &["python >=3.8"])
        }
    }

    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.tar.bz2", self.name, self.version, self.build)
    }
}

/// A channel folder being written.
pub struct LocalChannel {
    pub dir: PathBuf,
    /// subdir → file name → repodata record.
    records: BTreeMap<String, BTreeMap<String, Value>>,
}

fn hex_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl LocalChannel {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        for sub in ["noarch", "linux-64"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let mut records = BTreeMap::new();
        records.insert("noarch".to_owned(), BTreeMap::new());
        records.insert("linux-64".to_owned(), BTreeMap::new());
        Ok(LocalChannel {
            dir: dir.to_owned(),
            records,
        })
    }

    /// Writes the package archive and records it; returns the archive's path.
    pub fn add(&mut self, p: &Package) -> std::io::Result<PathBuf> {
        let stage = tempfile::tempdir()?;
        let root = stage.path();
        std::fs::create_dir_all(root.join("info"))?;
        let mut paths = Vec::new();
        let mut entries = Vec::new();
        for (path, content) in &p.files {
            let target = root.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match content {
                Content::Text(t) => {
                    std::fs::write(&target, t)?;
                    entries.push(json!({"_path": path, "path_type": "hardlink",
                        "sha256": hex_of(t.as_bytes()), "size_in_bytes": t.len()}));
                }
                Content::Link(to) => {
                    std::os::unix::fs::symlink(to, &target)?;
                    entries.push(json!({"_path": path, "path_type": "softlink"}));
                }
            }
            paths.push(target);
        }
        let mut index = json!({
            "name": p.name, "version": p.version, "build": p.build, "build_number": 0,
            "depends": p.depends, "subdir": p.subdir, "license": "MIT", "timestamp": 1_700_000_000_000u64,
        });
        if p.subdir == "noarch" {
            index["noarch"] = json!(if p.noarch_python { "python" } else { "generic" });
        } else {
            index["arch"] = json!("x86_64");
            index["platform"] = json!("linux");
        }
        std::fs::write(root.join("info/index.json"), index.to_string())?;
        std::fs::write(
            root.join("info/paths.json"),
            json!({"paths": entries, "paths_version": 1}).to_string(),
        )?;
        paths.push(root.join("info/index.json"));
        paths.push(root.join("info/paths.json"));
        if p.noarch_python {
            std::fs::write(
                root.join("info/link.json"),
                json!({"noarch": {"type": "python"}, "package_metadata_version": 1}).to_string(),
            )?;
            paths.push(root.join("info/link.json"));
        }
        let file = self.dir.join(&p.subdir).join(p.file_name());
        let mut out = std::fs::File::create(&file)?;
        rattler_package_streaming::write::write_tar_bz2_package(
            &mut out,
            root,
            &paths,
            rattler_conda_types::compression_level::CompressionLevel::Default,
            None,
            None,
        )?;
        drop(out);
        let bytes = std::fs::read(&file)?;
        let mut record = index;
        record["sha256"] = json!(hex_of(&bytes));
        record["md5"] = json!(hex::encode(md5_of(&bytes)));
        record["size"] = json!(bytes.len());
        self.record(&p.subdir, &p.file_name(), record);
        Ok(file)
    }

    /// Records a package that has no archive (repodata of a realistic size, or a record that
    /// claims a size).
    pub fn record(&mut self, subdir: &str, file_name: &str, record: Value) {
        self.records
            .entry(subdir.to_owned())
            .or_default()
            .insert(file_name.to_owned(), record);
    }

    /// The repodata record of a package file written or recorded.
    pub fn record_of(&self, subdir: &str, file_name: &str) -> Option<&Value> {
        self.records.get(subdir)?.get(file_name)
    }

    /// Writes `repodata.json` of every subdir.
    pub fn write_index(&self) -> std::io::Result<()> {
        for (sub, packages) in &self.records {
            let body = json!({
                "info": {"subdir": sub}, "packages": packages, "packages.conda": {},
                "repodata_version": 1,
            });
            std::fs::create_dir_all(self.dir.join(sub))?;
            std::fs::write(self.dir.join(sub).join("repodata.json"), body.to_string())?;
        }
        Ok(())
    }

    /// A `python` 3.11.2 package that is a virtual environment of the image's Debian Python
    /// (with its system packages, among them ipykernel and pip), and `ipykernel` and `pip`
    /// packages needing it.
    pub fn add_python_stand_in(&mut self) -> std::io::Result<()> {
        let python = Package {
            name: "python".into(),
            version: "3.11.2".into(),
            build: "0_nbforge".into(),
            subdir: "linux-64".into(),
            depends: Vec::new(),
            noarch_python: false,
            files: vec![
                (
                    "pyvenv.cfg".into(),
                    Content::Text(
                        "home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11.2\n"
                            .into(),
                    ),
                ),
                (
                    "bin/python3.11".into(),
                    Content::Link("/usr/bin/python3.11".into()),
                ),
                ("bin/python3".into(), Content::Link("python3.11".into())),
                ("bin/python".into(), Content::Link("python3.11".into())),
                (
                    "lib/python3.11/site-packages/nbforge-stand-in.txt".into(),
                    Content::Text("site-packages of the python stand-in\n".into()),
                ),
            ],
        };
        self.add(&python)?;
        self.add(&Package::noarch("ipykernel", "6.20.2", &["python"]))?;
        self.add(&Package::noarch("pip", "23.0.1", &["python"]))?;
        Ok(())
    }
}

fn md5_of(bytes: &[u8]) -> rattler_digest::Md5Hash {
    rattler_digest::compute_bytes_digest::<rattler_digest::Md5>(bytes)
}

/// How the server answers, changed while it runs.
#[derive(Default)]
pub struct Behaviour {
    /// Requests still to answer with 503.
    pub fail_next: AtomicU32,
    /// Accept requests and never answer.
    pub hang: AtomicBool,
}

/// Serves `dir` on a loopback port until the task is dropped.
pub async fn serve(
    dir: PathBuf,
    behaviour: Arc<Behaviour>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let dir = dir.clone();
        let behaviour = behaviour.clone();
        async move {
            if behaviour.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if behaviour
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let path = uri.path().trim_start_matches('/');
            if path.split('/').any(|c| c == ".." || c.is_empty()) {
                return StatusCode::NOT_FOUND.into_response();
            }
            match tokio::fs::read(dir.join(path)).await {
                Ok(bytes) => bytes.into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}
