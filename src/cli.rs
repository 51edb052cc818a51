//! The `nbforge` command line: `serve`, `migrate`, `doctor`, `bench`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{LogFormat, Settings, SettingsArgs};

/// nbforge: a git-native Jupyter platform driven by GitLab events.
///
/// Settings come from flags, NBFORGE_* environment variables and an optional TOML
/// file (--config), in that order of precedence. With none at all, `nbforge serve`
/// listens on 127.0.0.1:8080 with SQLite in ./nbforge.db.
#[derive(Debug, Parser)]
#[command(name = "nbforge", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service and the job workers in one process.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the database, the Docker engine and GitLab, and say how to fix what is wrong.
    Doctor,
    /// Make the base image environments start from, with no registry: debootstrap, import,
    /// then Python, a Jupyter server and ipykernel from Debian's packages.
    BaseImage {
        /// Make it again even if it exists.
        #[arg(long)]
        force: bool,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
    },
    /// Analyze a repository's launch spec: kind, files, environment key, Dockerfile.
    Spec(crate::spec::cli::SpecArgs),
    /// Render a notebook as a worksheet (no code, a parameter form), optionally with
    /// parameters set, and write the parameterized notebook.
    Render(crate::worksheet::cli::RenderArgs),
    /// Build a repository folder's environment image with the local Docker engine.
    Build(crate::build::cli::BuildArgs),
    /// Measure nbforge on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Webhook ingest: deliveries/s and answer times for signed push deliveries,
    /// next to a no-op route in the same run.
    Ingest(crate::bench::IngestArgs),
    /// Push to `success` status for a notebook-only change, a requirements change with a
    /// warm layer cache, and a cold build (needs Docker and the base image).
    Environments(crate::bench::environments::EnvironmentsArgs),
    /// Worksheet rendering over a folder of notebooks, next to
    /// `jupyter nbconvert --to html --no-input` on the same files.
    Worksheets {
        /// Folder of notebooks (searched recursively).
        #[arg(default_value = "tests/data/notebooks")]
        dir: std::path::PathBuf,
        /// Renders per notebook.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Skip nbconvert.
        #[arg(long)]
        no_nbconvert: bool,
    },
    /// Launch specs: detection, environment key and Dockerfile per repository of
    /// `binder-specs/`, read from git objects at a commit.
    Spec {
        /// Folder of example repositories.
        #[arg(default_value = "binder-specs")]
        dir: std::path::PathBuf,
        /// Runs per repository.
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
    },
}

/// Sets up logging once: `RUST_LOG` filters (default `info`), text or JSON lines.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = match Settings::load(&cli.settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    init_tracing(settings.log_format);
    match cli.command {
        Command::Serve => serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            crate::db::Db::connect(&settings.database_url).await?;
            println!(
                "migrations applied to {}",
                crate::config::redact_url(&settings.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => crate::doctor::run(&settings).await,
        Command::BaseImage { force, suite } => {
            let builder = crate::app::builder_for(&settings);
            let spec = crate::build::base::BaseImageSpec {
                name: settings.base_image.clone(),
                suite,
                mirror: settings.debian_mirror.clone(),
                extra_ca: settings.extra_ca.clone(),
            };
            crate::build::base::ensure_base_image(&builder, &spec, force, &|line| {
                println!("{line}")
            })
            .await?;
            println!("base image {} is ready", settings.base_image);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ingest(args)) => crate::bench::ingest(&settings, &args).await,
        Command::Bench(BenchCommand::Environments(args)) => {
            crate::bench::environments::run(&settings, &args).await
        }
        Command::Bench(BenchCommand::Spec { dir, iterations }) => {
            let report = crate::spec::bench::bench(&dir, iterations);
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Worksheets {
            dir,
            iterations,
            no_nbconvert,
        }) => {
            let report = crate::worksheet::bench::bench(&dir, iterations, !no_nbconvert)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => crate::worksheet::cli::run(&args),
        Command::Spec(args) => crate::spec::cli::run(&args, &crate::app::spec_options(&settings)),
        Command::Build(args) => crate::build::cli::run(&settings, &args).await,
    }
}

/// Serves HTTP and runs workers until SIGINT or SIGTERM, then shuts down gracefully:
/// the listener stops accepting, workers stop claiming, running jobs get the grace
/// period and are released after it.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let app = App::new(settings).await?;
    if app.settings.gitlab_webhook_secrets.is_empty() {
        tracing::warn!("no NBFORGE_GITLAB_WEBHOOK_SECRET: GitLab deliveries will be refused");
    }
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        database = %crate::config::redact_url(&app.settings.database_url),
        workers = app.settings.workers,
        "nbforge serving"
    );
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn(crate::jobs::run_workers(app.clone(), shutdown.clone()));
    let router = crate::web::router(app.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let http_stop = shutdown.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { http_stop.cancelled().await })
        .await?;
    let _ = workers.await;
    app.db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
