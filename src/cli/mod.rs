//! The `nbforge` command line: `serve`, `migrate`, `doctor`, `base-image`, `spec`,
//! `render` ([`render`]), `build` and `bench`.

pub mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{
    BaseImageArgs, BuilderArgs, DockerArgs, FileArgs, ForgeArgs, ImageArgs, LogArgs, LogFormat,
    ServerArgs, Settings, SettingsArgs, StorageArgs,
};

/// nbforge: a git-native Jupyter platform driven by GitLab events.
///
/// Settings come from flags, NBFORGE_* environment variables and an optional TOML
/// file (--config), in that order of precedence; each command lists the settings it uses
/// in its own `--help`. With none at all, `nbforge serve` listens on 127.0.0.1:8080 with
/// SQLite in ./nbforge.db.
#[derive(Debug, Parser)]
#[command(name = "nbforge", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; the size does not matter"
)]
pub enum Command {
    /// Run the HTTP service and the job workers in one process.
    Serve(SettingsArgs),
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Check the database, the Docker engine and GitLab, and say how to fix what is wrong.
    Doctor {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        forge: ForgeArgs,
        #[command(flatten)]
        docker: DockerArgs,
    },
    /// Make the base image environments start from, with no registry: debootstrap, import,
    /// then Debian's Python and ipykernel, and JupyterLab on jupyter_server from PyPI. One
    /// base per Python version (NBFORGE_PYTHON_BASES); builds make a missing one themselves.
    BaseImage {
        /// Make it again even if it exists.
        #[arg(long)]
        force: bool,
        /// Make the base of this Python version (e.g. 3.9 from Debian bullseye) instead of
        /// the base image's; repeat for several, or `all` [default: the base image's Python].
        #[arg(long, value_name = "X.Y")]
        python: Vec<String>,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        docker: DockerArgs,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        base: BaseImageArgs,
    },
    /// Analyze a repository's launch spec: kind, files, environment key, Dockerfile.
    Spec {
        #[command(flatten)]
        args: crate::spec::cli::SpecArgs,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Render a notebook as a worksheet (no code, a parameter form), optionally with
    /// parameters set, and write the parameterized notebook.
    Render(render::RenderArgs),
    /// Build a repository folder's environment image with the local Docker engine.
    Build {
        #[command(flatten)]
        args: crate::environment::cli::BuildArgs,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        docker: DockerArgs,
        #[command(flatten)]
        image: ImageArgs,
        #[command(flatten)]
        build: BuilderArgs,
        #[command(flatten)]
        base: BaseImageArgs,
    },
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
    Environments {
        #[command(flatten)]
        args: crate::bench::environments::EnvironmentsArgs,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        docker: DockerArgs,
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Jupyter sessions through the proxy: launch time, HTTP throughput and WebSocket
    /// round trips next to the containers' own addresses, and many sessions at once
    /// (needs Docker and the base image).
    Sessions {
        #[command(flatten)]
        args: crate::bench::sessions::SessionsArgs,
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        docker: DockerArgs,
        #[command(flatten)]
        image: ImageArgs,
    },
    /// Worksheet rendering over a folder of notebooks, next to nbconvert on the same files:
    /// its HTMLExporter in one Python process over the same iterations (in-process), and
    /// `jupyter nbconvert --to html --no-input` run once per notebook (process per notebook).
    Worksheets {
        /// Folder of notebooks (searched recursively).
        #[arg(default_value = "tests/data/notebooks")]
        dir: std::path::PathBuf,
        /// Renders per notebook, for nbforge and for in-process nbconvert.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Skip nbconvert (both ways).
        #[arg(long)]
        no_nbconvert: bool,
    },
    /// Access: the authorization check on a database of many users, projects and
    /// memberships (in-process), and a private worksheet page for a member next to the
    /// same page public (HTTP, same server).
    Access(crate::bench::access::AccessArgs),
    /// Worksheet runs: from the Run post to the first cell executing, and a 20-cell
    /// worksheet's run next to papermill on the same notebook in the same image (needs
    /// Docker and the base image).
    Runs {
        #[command(flatten)]
        args: crate::bench::runs::RunsArgs,
        #[command(flatten)]
        image: ImageArgs,
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

impl Command {
    /// The settings this command was given: its own groups of flags, the rest unset.
    fn settings_args(&self) -> SettingsArgs {
        let none = SettingsArgs::default;
        match self {
            Command::Serve(all) => all.clone(),
            Command::Migrate { file, log, storage } => SettingsArgs {
                file: file.clone(),
                log: log.clone(),
                storage: storage.clone(),
                ..none()
            },
            Command::Doctor {
                file,
                storage,
                server,
                forge,
                docker,
            } => SettingsArgs {
                file: file.clone(),
                storage: storage.clone(),
                server: server.clone(),
                forge: forge.clone(),
                docker: docker.clone(),
                ..none()
            },
            Command::BaseImage {
                file,
                log,
                docker,
                image,
                base,
                ..
            } => SettingsArgs {
                file: file.clone(),
                log: log.clone(),
                docker: docker.clone(),
                image: image.clone(),
                base: base.clone(),
                ..none()
            },
            Command::Spec { file, image, .. } => SettingsArgs {
                file: file.clone(),
                image: image.clone(),
                ..none()
            },
            Command::Build {
                file,
                log,
                docker,
                image,
                build,
                base,
                ..
            } => SettingsArgs {
                file: file.clone(),
                log: log.clone(),
                docker: docker.clone(),
                image: image.clone(),
                build: build.clone(),
                base: base.clone(),
                ..none()
            },
            Command::Bench(
                BenchCommand::Environments {
                    file,
                    docker,
                    image,
                    ..
                }
                | BenchCommand::Sessions {
                    file,
                    docker,
                    image,
                    ..
                },
            ) => SettingsArgs {
                file: file.clone(),
                docker: docker.clone(),
                image: image.clone(),
                ..none()
            },
            Command::Bench(BenchCommand::Runs { image, .. }) => SettingsArgs {
                image: image.clone(),
                ..none()
            },
            Command::Render(_) | Command::Bench(_) => none(),
        }
    }
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
    let settings = match Settings::load(&cli.command.settings_args()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    init_tracing(settings.log_format);
    match cli.command {
        Command::Serve(_) => serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate { .. } => {
            crate::storage::Db::connect(&settings.database_url).await?;
            println!(
                "migrations applied to {}",
                crate::config::redact_url(&settings.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { .. } => crate::doctor::run(&settings).await,
        Command::BaseImage { force, python, .. } => {
            let builder = crate::app::builder_for(&settings);
            let env = &settings.environments;
            let wanted = if python.is_empty() {
                vec![env.base_python.clone()]
            } else if python.iter().any(|p| p == "all") {
                env.python_bases.iter().map(|b| b.python.clone()).collect()
            } else {
                python
            };
            for version in wanted {
                let spec = match env.python_bases.iter().find(|b| b.python == version) {
                    Some(b) => crate::environment::base::BaseImageSpec {
                        name: b.image.clone(),
                        suite: b.suite.clone(),
                        mirror: env.debian_mirror.clone(),
                        extra_ca: env.extra_ca.clone(),
                        python: Some(b.python.clone()),
                    },
                    // A base image whose Debian release is not in the table: bookworm's.
                    None if version == env.base_python => crate::environment::base::BaseImageSpec {
                        name: env.base_image.clone(),
                        suite: "bookworm".into(),
                        mirror: env.debian_mirror.clone(),
                        extra_ca: env.extra_ca.clone(),
                        python: None,
                    },
                    None => {
                        let have: Vec<&str> =
                            env.python_bases.iter().map(|b| b.python.as_str()).collect();
                        eprintln!(
                            "error: no base provides Python {version} (NBFORGE_PYTHON_BASES has {})",
                            have.join(", ")
                        );
                        return Ok(ExitCode::from(1));
                    }
                };
                crate::environment::base::ensure_base_image(&builder, &spec, force, &|line| {
                    println!("{line}")
                })
                .await?;
                println!("base image {} (Python {version}) is ready", spec.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Ingest(args)) => crate::bench::ingest(&settings, &args).await,
        Command::Bench(BenchCommand::Access(args)) => crate::bench::access::run(&args).await,
        Command::Bench(BenchCommand::Runs { args, .. }) => {
            crate::bench::runs::run(&settings, &args).await
        }
        Command::Bench(BenchCommand::Environments { args, .. }) => {
            crate::bench::environments::run(&settings, &args).await
        }
        Command::Bench(BenchCommand::Sessions { args, .. }) => {
            crate::bench::sessions::run(&settings, &args).await
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
            let report = crate::bench::worksheets::bench(&dir, iterations, !no_nbconvert)?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Render(args) => render::run(&args),
        Command::Spec { args, .. } => {
            let (code, conda) =
                crate::spec::cli::run_reading_conda(&args, &crate::app::spec_options(&settings))?;
            match conda {
                Some(env) if args.solve || args.context.is_some() => {
                    crate::environment::cli::conda(&settings, &args, &env, code).await
                }
                _ => Ok(code),
            }
        }
        Command::Build { args, .. } => crate::environment::cli::run(&settings, &args).await,
    }
}

/// Serves HTTP and runs workers until SIGINT or SIGTERM, then shuts down gracefully:
/// the listener stops accepting, workers stop claiming, running jobs get the grace
/// period and are released after it.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
    let app = App::new(settings).await?;
    if app.settings.forges.gitlab_webhook_secrets.is_empty() {
        tracing::warn!("no NBFORGE_GITLAB_WEBHOOK_SECRET: GitLab deliveries will be refused");
    }
    for warning in app.settings.insecure_forge_urls() {
        tracing::warn!("{warning}");
    }
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        database = %crate::config::redact_url(&app.settings.database_url),
        workers = app.settings.jobs.workers,
        "nbforge serving"
    );
    let shutdown = CancellationToken::new();
    let workers = tokio::spawn(crate::jobs::run_workers(app.jobs(), shutdown.clone()));
    let router = crate::web::router(app.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    let http_stop = shutdown.clone();
    // Small writes (WebSocket frames through the session proxy) go out at once.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        tcp.set_nodelay(true).ok();
    });
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn options_of(path: &[&str]) -> Vec<String> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut cur = &cmd;
        for name in path {
            cur = cur.find_subcommand(name).expect("subcommand exists");
        }
        cur.get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn each_command_lists_only_its_own_settings() {
        let render = options_of(&["render"]);
        assert!(
            !render
                .iter()
                .any(|o| o.contains("secret") || o.contains("job"))
        );
        let spec = options_of(&["spec"]);
        assert!(spec.contains(&"base-image".to_owned()));
        assert!(
            !spec
                .iter()
                .any(|o| o.contains("webhook") || o == "database-url")
        );
        let migrate = options_of(&["migrate"]);
        assert!(migrate.contains(&"database-url".to_owned()));
        assert!(
            !migrate
                .iter()
                .any(|o| o.contains("gitlab") || o == "workers")
        );
        let serve = options_of(&["serve"]);
        for o in [
            "database-url",
            "gitlab-webhook-secret",
            "workers",
            "base-image",
        ] {
            assert!(serve.contains(&o.to_owned()), "serve lacks --{o}");
        }
    }
}
