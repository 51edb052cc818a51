//! `nbforge base-image`: makes the base image every environment starts from, without any
//! image registry. A minimal Debian root file system is made with `debootstrap`, imported
//! into the engine (`docker import`); Debian's Python and ipykernel are installed on top,
//! and a current JupyterLab and Notebook on jupyter_server (pinned, from PyPI) in their own
//! environment, `/opt/jupyter`, as repo2docker keeps the notebook server apart from the
//! kernel's packages. Extra CA certificates, when configured, are installed into the image
//! the Debian way (`update-ca-certificates`) and trusted by pip.
//!
//! There is one base per Python version nbforge provides, each from the Debian release that
//! ships that Python ([`crate::spec::python`]); [`ensure_python_base`] makes a missing one
//! when a build needs it, once at a time per image.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{BuildError, BuildRequest, Builder};

/// Debian packages every base image has: the kernel's Python and what runs notebooks.
pub const BASE_PACKAGES: &[&str] = &[
    "ca-certificates",
    "git",
    "python3",
    "python3-venv",
    "python3-pip",
    "python3-ipykernel",
    "python3-nbclient",
];

/// The Jupyter server and interfaces, from PyPI into `/opt/jupyter` (pinned).
pub const JUPYTER_PACKAGES: &[&str] = &[
    "jupyterlab==4.6.6",
    "notebook==7.6.5",
    "jupyter_server==2.21.1",
];

/// The last releases that run on Python 3.9 (the current ones need 3.10): the same
/// JupyterLab 4 and Notebook 7 on jupyter_server 2.
pub const JUPYTER_PACKAGES_PY39: &[&str] = &[
    "jupyterlab==4.5.11",
    "notebook==7.5.8",
    "jupyter_server==2.18.2",
];

/// The pinned Jupyter packages for a base whose Python is `python` (major.minor).
pub fn jupyter_packages(python: Option<&str>) -> &'static [&'static str] {
    let minor = python
        .and_then(|p| p.strip_prefix("3."))
        .and_then(|m| m.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m < 10 => JUPYTER_PACKAGES_PY39,
        _ => JUPYTER_PACKAGES,
    }
}

/// Where the Jupyter server lives in the image.
pub const JUPYTER_PREFIX: &str = "/opt/jupyter";

/// The version of what the base image holds, in its `org.nbforge.base` label: an existing
/// image with another version is made again.
pub const BASE_VERSION: &str = "2";
/// The label holding [`BASE_VERSION`].
pub const LABEL_BASE: &str = "org.nbforge.base";

/// File name of the extra CA bundle inside build contexts.
pub const EXTRA_CA_FILE: &str = crate::spec::EXTRA_CA_FILE;

/// How to make a base image.
#[derive(Debug, Clone)]
pub struct BaseImageSpec {
    /// The image to make, e.g. `nbforge/base:bookworm`.
    pub name: String,
    /// Debian suite for debootstrap.
    pub suite: String,
    /// Debian mirror for debootstrap and apt.
    pub mirror: String,
    /// PEM bundle to trust in the image.
    pub extra_ca: Option<Vec<u8>>,
    /// The Python (major.minor) the suite's `python3` must be; checked while the image is made.
    pub python: Option<String>,
}

/// The name of the imported root file system image for a base image name.
pub fn rootfs_name(base: &str) -> String {
    let (repo, tag) = base.rsplit_once(':').unwrap_or((base, "latest"));
    format!("{repo}-rootfs:{tag}")
}

/// The Dockerfile that turns the imported root file system into the base image. With
/// `python`, the build fails unless the suite's `python3` is that version.
pub fn dockerfile(rootfs: &str, extra_ca: bool, python: Option<&str>) -> String {
    let mut d = format!("FROM {rootfs}\n");
    if extra_ca {
        d.push_str(&format!(
            "COPY {EXTRA_CA_FILE} /usr/local/share/ca-certificates/{EXTRA_CA_FILE}\n"
        ));
    }
    d.push_str(
        "RUN apt-get update \\\n    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\\n       ",
    );
    d.push_str(&BASE_PACKAGES.join(" \\\n       "));
    d.push_str(" \\\n    && update-ca-certificates \\\n    && apt-get clean && rm -rf /var/lib/apt/lists/*\n");
    d.push_str("ENV LANG=C.UTF-8 LC_ALL=C.UTF-8\n");
    if let Some(v) = python.filter(|v| v.bytes().all(|b| b.is_ascii_digit() || b == b'.')) {
        d.push_str(&format!(
            "RUN test \"$(python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])')\" = \"{v}\" \\\n    \
             || {{ echo \"python3 is $(python3 --version), not Python {v}\" >&2; exit 1; }}\n"
        ));
    }
    // The server in its own environment; the kernel is Debian's Python (and, in
    // environments, their own), registered where every Jupyter finds it.
    d.push_str(&format!(
        "RUN python3 -m venv {JUPYTER_PREFIX} \\\n    \
         && PIP_CERT=/etc/ssl/certs/ca-certificates.crt {JUPYTER_PREFIX}/bin/pip install --no-cache-dir --disable-pip-version-check \\\n       {} \\\n    \
         && python3 -m ipykernel install --prefix /usr/local --name python3 --display-name \"Python 3 (ipykernel)\" \\\n    \
         && ln -s {JUPYTER_PREFIX}/bin/jupyter {JUPYTER_PREFIX}/bin/jupyter-* /usr/local/bin/ \\\n    \
         && jupyter lab --version\n",
        jupyter_packages(python).join(" ")
    ));
    // `python3` stays Debian's (the kernel's); `jupyter` and its commands are the server's,
    // linked into /usr/local/bin.
    d.push_str("ENV JUPYTER_PATH=/usr/local/share/jupyter\n");
    d.push_str(&format!("LABEL {LABEL_BASE}=\"{BASE_VERSION}\"\n"));
    d
}

/// Makes the base image (skipped when it exists, unless `force`). Progress goes to `log`.
pub async fn ensure_base_image(
    builder: &Builder,
    spec: &BaseImageSpec,
    force: bool,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), BuildError> {
    if !force && builder.image_exists(&spec.name).await? {
        match base_version(builder, &spec.name).await?.as_deref() {
            Some(BASE_VERSION) => {
                log(&format!("{} already exists", spec.name));
                return Ok(());
            }
            other => log(&format!(
                "{} holds base version {}, not {BASE_VERSION}: making it again",
                spec.name,
                other.unwrap_or("none")
            )),
        }
    }
    let rootfs = rootfs_name(&spec.name);
    if force || !builder.image_exists(&rootfs).await? {
        let dir = tempfile::Builder::new()
            .prefix("nbforge-rootfs-")
            .tempdir()
            .map_err(|e| BuildError::Internal(format!("temporary directory: {e}")))?;
        debootstrap(&spec.suite, dir.path(), &spec.mirror, log).await?;
        log(&format!("importing the root file system as {rootfs}"));
        import_rootfs(builder, dir.path(), &rootfs).await?;
    }
    let mut context = vec![(
        "Dockerfile".to_owned(),
        dockerfile(&rootfs, spec.extra_ca.is_some(), spec.python.as_deref()).into_bytes(),
    )];
    if let Some(ca) = &spec.extra_ca {
        context.push((EXTRA_CA_FILE.to_owned(), ca.clone()));
    }
    let req = BuildRequest::in_memory(
        spec.name.clone(),
        "Dockerfile".into(),
        context,
        HashMap::from([(
            super::LABEL_VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )]),
    );
    log(&format!(
        "installing {} and {} into {}",
        BASE_PACKAGES.join(", "),
        jupyter_packages(spec.python.as_deref()).join(", "),
        spec.name
    ));
    builder
        .build_own(&req, log, &CancellationToken::new())
        .await
}

/// The `org.nbforge.base` label of a local image.
async fn base_version(builder: &Builder, image: &str) -> Result<Option<String>, BuildError> {
    let info = builder
        .docker()?
        .inspect_image(image)
        .await
        .map_err(|e| BuildError::Engine(e.to_string()))?;
    Ok(info
        .config
        .and_then(|c| c.labels)
        .and_then(|l| l.get(LABEL_BASE).cloned()))
}

async fn debootstrap(
    suite: &str,
    dir: &Path,
    mirror: &str,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), BuildError> {
    log(&format!(
        "debootstrap --variant=minbase {suite} {} {mirror}",
        dir.display()
    ));
    let out = tokio::process::Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(suite)
        .arg(dir)
        .arg(mirror)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            BuildError::Internal(format!(
                "cannot run debootstrap ({e}); install it (apt-get install debootstrap) and run as root"
            ))
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(BuildError::Internal(format!(
            "debootstrap failed: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    Ok(())
}

/// Longest a root file system import may take.
const IMPORT_TIMEOUT_SECS: u64 = 1800;

/// `tar -C dir -c . | docker import - name`, through the Engine API.
async fn import_rootfs(builder: &Builder, dir: &Path, name: &str) -> Result<(), BuildError> {
    let dir = dir.to_owned();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", &dir)?;
        b.into_inner()
    })
    .await
    .map_err(|e| BuildError::Internal(e.to_string()))?
    .map_err(|e| BuildError::Internal(format!("packing the root file system: {e}")))?;
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .build();
    // Unpacking a root file system can outlast the client's usual two minutes on a busy engine.
    let docker = builder
        .docker()?
        .with_timeout(std::time::Duration::from_secs(IMPORT_TIMEOUT_SECS));
    let mut stream = docker.create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| BuildError::Engine(e.to_string()))?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(BuildError::Engine(format!("import failed: {err}")));
        }
    }
    Ok(())
}

/// Makes the base image of `base` when the engine does not have it (a build needs it now),
/// one at a time per image: a second build waiting for the same base finds it made.
pub async fn ensure_python_base(
    builder: &Builder,
    base: &crate::spec::PythonBase,
    mirror: &str,
    extra_ca: Option<&[u8]>,
    log: &(dyn Fn(&str) + Send + Sync),
) -> Result<bool, BuildError> {
    if builder.image_exists(&base.image).await? {
        return Ok(false);
    }
    let lock = {
        let mut locks = MAKING
            .lock()
            .map_err(|_| BuildError::Internal("base image lock poisoned".into()))?;
        locks
            .entry(base.image.clone())
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Mutex::new(())))
            .clone()
    };
    let _making = lock.lock().await;
    if builder.image_exists(&base.image).await? {
        return Ok(false);
    }
    log(&format!(
        "making the base image {} (Python {} from Debian {}); this happens once",
        base.image, base.python, base.suite
    ));
    let spec = BaseImageSpec {
        name: base.image.clone(),
        suite: base.suite.clone(),
        mirror: mirror.to_owned(),
        extra_ca: extra_ca.map(<[u8]>::to_vec),
        python: Some(base.python.clone()),
    };
    ensure_base_image(builder, &spec, false, log).await?;
    Ok(true)
}

type Locks = HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>;
static MAKING: std::sync::LazyLock<std::sync::Mutex<Locks>> =
    std::sync::LazyLock::new(Default::default);
