//! `nbforge doctor`: checks what the service depends on and says how to fix what is wrong.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Settings, redact_url};

/// One finding.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let checks = vec![
        database(settings).await,
        docker().await,
        gitlab(settings).await,
        secrets(settings),
        transport(settings),
    ];
    let mut failed = 0;
    for c in &checks {
        let mark = if c.ok { "ok     " } else { "PROBLEM" };
        println!("{mark} {:<10} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("        {:<10} fix: {fix}", "");
        }
        failed += usize::from(!c.ok);
    }
    if failed == 0 {
        println!("\neverything nbforge needs is in place");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{failed} problem(s) found");
        Ok(ExitCode::FAILURE)
    }
}

async fn database(settings: &Settings) -> Check {
    let shown = redact_url(&settings.database_url);
    let connect = tokio::time::timeout(
        Duration::from_secs(15),
        crate::storage::Db::connect(&settings.database_url),
    )
    .await;
    match connect {
        Ok(Ok(db)) if db.ping().await => {
            Check::ok("database", format!("{shown} answers; migrations applied"))
        }
        Ok(Ok(_)) => Check::problem(
            "database",
            format!("{shown} does not answer queries"),
            "check the server's logs",
        ),
        Ok(Err(e)) => Check::problem(
            "database",
            format!("{shown}: {e}"),
            "check NBFORGE_DATABASE_URL; for PostgreSQL make sure the server runs and the user may create tables",
        ),
        Err(_) => Check::problem(
            "database",
            format!("{shown}: no answer in 15 s"),
            "is the database server reachable?",
        ),
    }
}

async fn docker() -> Check {
    let docker = match bollard::Docker::connect_with_local_defaults() {
        Ok(d) => d,
        Err(e) => {
            return Check::problem(
                "docker",
                format!("cannot use the Docker engine: {e}"),
                "install a Docker engine and make its socket (DOCKER_HOST or /var/run/docker.sock) reachable",
            );
        }
    };
    let docker = match tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
    {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Check::problem(
                "docker",
                format!("the Docker engine does not answer: {e}"),
                "start it (`dockerd &` or `systemctl start docker`) and check the socket permissions",
            );
        }
        Err(_) => {
            return Check::problem(
                "docker",
                "the Docker engine did not answer in 10 s",
                "is dockerd running?",
            );
        }
    };
    match docker.version().await {
        Ok(v) => Check::ok(
            "docker",
            format!(
                "engine {} (API {})",
                v.version.unwrap_or_default(),
                v.api_version.unwrap_or_default()
            ),
        ),
        Err(e) => Check::problem(
            "docker",
            format!("version query failed: {e}"),
            "check the engine's logs",
        ),
    }
}

async fn gitlab(settings: &Settings) -> Check {
    let (Some(url), Some(token)) = (&settings.forges.gitlab_url, &settings.forges.gitlab_token)
    else {
        return Check::ok(
            "gitlab",
            "not configured: plain-git mode (hooks/post-receive); set NBFORGE_GITLAB_URL and NBFORGE_GITLAB_TOKEN for GitLab",
        );
    };
    let forge = match crate::forge::gitlab::GitLabForge::new(url, token.clone()) {
        Ok(f) => f,
        Err(e) => {
            return Check::problem("gitlab", format!("{url}: {e}"), "check NBFORGE_GITLAB_URL");
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), forge.check_token()).await {
        Ok(Ok(info)) => {
            let scopes = info
                .scopes
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |s| s.join(", "));
            if info.is_ok() {
                Check::ok(
                    "gitlab",
                    format!(
                        "{url} answers; token of {} (scopes: {scopes})",
                        info.username
                    ),
                )
            } else {
                Check::problem(
                    "gitlab",
                    format!("token of {}: {}", info.username, info.problems.join("; ")),
                    "create a token with the `api` scope (statuses and notes need it) for an active user",
                )
            }
        }
        Ok(Err(e)) => Check::problem(
            "gitlab",
            format!("{url}: {e}"),
            "check that the URL is reachable from here and that NBFORGE_GITLAB_TOKEN is valid and not expired",
        ),
        Err(_) => Check::problem(
            "gitlab",
            format!("{url}: no answer in 15 s"),
            "is GitLab reachable from this host?",
        ),
    }
}

fn transport(settings: &Settings) -> Check {
    let warnings = settings.insecure_forge_urls();
    if warnings.is_empty() {
        Check::ok("transport", "forge URLs use https (or this host)")
    } else {
        Check::problem(
            "transport",
            warnings.join("; "),
            "serve GitLab over https and set the URL with https://",
        )
    }
}

fn secrets(settings: &Settings) -> Check {
    let mut missing = Vec::new();
    if settings.forges.gitlab_webhook_secrets.is_empty() {
        missing.push("NBFORGE_GITLAB_WEBHOOK_SECRET (GitLab deliveries are refused without it)");
    }
    if settings.server.admin_token.is_none() {
        missing.push("NBFORGE_ADMIN_TOKEN (the admin API is closed without it)");
    }
    if missing.is_empty() {
        Check::ok("secrets", "webhook secret and admin token are set")
    } else {
        Check::problem(
            "secrets",
            format!("not set: {}", missing.join("; ")),
            "set them in the environment or the TOML file",
        )
    }
}
