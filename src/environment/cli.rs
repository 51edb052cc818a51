//! `nbforge build [PATH]`: builds a folder's environment image with the local Docker
//! engine through the same spec analysis, context and builder the service uses.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{BuildRequest, LABEL_KEY, LABEL_REPO, LABEL_VERSION};
use crate::config::Settings;
use crate::repo::DirTree;
use crate::spec::analyze;

#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Repository folder.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Also tag the image with this name.
    #[arg(long)]
    pub tag: Option<String>,
    /// Print every line of the build's output, not only the steps.
    #[arg(long, short)]
    pub verbose: bool,
}

pub async fn run(settings: &Settings, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let stamp = move || format!("[{:>6.1}s]", started.elapsed().as_secs_f64());
    let opts = crate::environment::flow::spec_options(settings);
    let src = DirTree::new(&args.path);
    let analysis = match analyze(&src, &opts) {
        Ok(a) => a,
        Err(e) => {
            for d in e.diagnostics() {
                eprintln!("error: {d}");
            }
            if e.diagnostics().is_empty() {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    for w in &analysis.warnings {
        eprintln!("warning: {w}");
    }
    let context = match analysis.build_context_files(&src, &opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let builder = crate::environment::flow::builder_for(settings);
    let project = args
        .path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "local".into());
    let image = builder.image_for(&format!("local/{project}"), &analysis.environment_key);
    println!(
        "{} {} environment, key {}",
        stamp(),
        analysis.kind,
        analysis.short_key()
    );
    if let Some(note) = analysis.runtime_note() {
        println!("{} note: {note}", stamp());
    }
    if builder.image_exists(&image).await? {
        println!("{} {image} is already built (cache)", stamp());
    } else {
        println!("{} building {image}", stamp());
        // A conda environment's prefix, prepared before the build and removed after it.
        let mut prepared = None;
        if let Some(env) = &analysis.conda {
            let conda = crate::environment::flow::conda_settings(settings);
            let say = move |line: &str| println!("{} {line}", stamp());
            match super::conda::prepare(&conda, env, &say).await {
                Ok(p) => prepared = Some(p),
                Err(e @ super::conda::CondaError::User(_)) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        let req = BuildRequest {
            tag: image.clone(),
            dockerfile: analysis.dockerfile_path(),
            context,
            source: crate::environment::ContextSource::Dir(args.path.clone()),
            folders: prepared
                .iter()
                .map(|p| (crate::spec::conda::CONTEXT_DIR.to_owned(), p.prefix()))
                .collect(),
            labels: HashMap::from([
                (LABEL_REPO.to_owned(), args.path.display().to_string()),
                (LABEL_KEY.to_owned(), analysis.environment_key.clone()),
                (
                    LABEL_VERSION.to_owned(),
                    env!("CARGO_PKG_VERSION").to_owned(),
                ),
            ]),
        };
        let verbose = args.verbose;
        let show = move |line: &str| {
            let base_step = ["making the base image", "debootstrap ", "importing "]
                .iter()
                .any(|p| line.starts_with(p));
            if verbose || line.starts_with("Step ") || base_step {
                println!("{} {line}", stamp());
            }
        };
        // The base image of the environment's Python, made here the first time one needs it.
        if let Some(base) = analysis
            .base_image
            .as_deref()
            .and_then(|image| opts.python_bases.iter().find(|b| b.image == image))
        {
            let made = crate::environment::base::ensure_python_base(
                &builder,
                base,
                &opts.debian_mirror,
                opts.extra_ca.as_deref(),
                &show,
            )
            .await;
            if let Err(e) = made {
                eprintln!("error: making the base image {}: {e}", base.image);
                return Ok(ExitCode::from(2));
            }
        }
        if let Err(e) = builder.build(&req, &show, &CancellationToken::new()).await {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(if e.is_infrastructure() { 2 } else { 1 }));
        }
    }
    if let Some(tag) = &args.tag {
        builder.tag(&image, tag).await?;
        println!("{} tagged {tag}", stamp());
    }
    println!("{} ready: {image}", stamp());
    Ok(ExitCode::SUCCESS)
}

/// `nbforge spec --solve` and `--context DIR` of a conda environment, after the analysis
/// (exit status `code`): `--solve` prints the packages as an `@EXPLICIT` list, solved
/// against the configured channels or read from the lock; `--context` also installs them
/// into the context's `conda/` folder, as the service does before a build.
pub async fn conda(
    settings: &Settings,
    args: &crate::spec::cli::SpecArgs,
    env: &crate::spec::conda::CondaEnvironment,
    code: ExitCode,
) -> anyhow::Result<ExitCode> {
    let conda = crate::environment::flow::conda_settings(settings);
    let say = |line: &str| eprintln!("{line}");
    let failed = |e: super::conda::CondaError| {
        eprintln!("error: {e}");
        ExitCode::from(match e {
            super::conda::CondaError::User(_) => 1,
            super::conda::CondaError::Infrastructure(_) => 2,
        })
    };
    let records = if let Some(dir) = &args.context {
        // Installed straight into the context (linked from the package cache where it can be).
        let target = dir.join(crate::spec::conda::CONTEXT_DIR);
        let installed = match super::conda::install_into(&conda, env, &target, &say).await {
            Ok(i) => i,
            Err(e) => return Ok(failed(e)),
        };
        eprintln!(
            "conda environment: {} packages in {}",
            installed.packages,
            target.display()
        );
        installed.lock
    } else {
        let client = super::conda::client(&conda)?;
        match super::conda::resolve(&conda, &client, env, &say).await {
            Ok((records, _)) => {
                if let Some(p) = records
                    .iter()
                    .find(|r| r.package_record.name.as_normalized() == "python")
                {
                    eprintln!("python: {} (from the channels)", p.package_record.version);
                }
                super::conda::explicit_lock(&records)
            }
            Err(e) => return Ok(failed(e)),
        }
    };
    if args.solve {
        print!("{records}");
    }
    Ok(code)
}
