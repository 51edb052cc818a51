//! `nbforge bench …`: measurements on this machine, printed as a table.
//!
//! `bench ingest` starts the real router on a loopback port in this process (no job
//! workers, so only ingest is measured) and sends signed GitLab push deliveries, each
//! with its own `X-Gitlab-Event-UUID`, and the same bodies to a no-op route (`/noop`,
//! mounted next to the real router for the benchmark only):
//! first as fast as `--concurrency` connections allow (throughput), then open-loop at
//! `--rate` deliveries/s (answer times at that load).

pub mod access;
pub mod conda;
pub mod conda_channel;
pub mod environments;
pub mod runs;
pub mod sessions;
pub mod worksheets;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::app::{App, build_forges};
use crate::config::{Secret, Settings};

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Deliveries per closed-loop phase.
    #[arg(long, default_value_t = 4000)]
    pub deliveries: usize,
    /// Concurrent connections in the closed-loop phases.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Deliveries per second in the open-loop phases.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Length of each open-loop phase in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Database to measure (repeatable). Default: a new SQLite file in a temporary directory.
    /// Use a scratch PostgreSQL database: the bench leaves its deliveries there.
    #[arg(long = "db")]
    pub databases: Vec<String>,
}

const BENCH_SECRET: &str = "bench-secret";

/// A push delivery shaped as GitLab documents it.
fn push_body(n: usize) -> Vec<u8> {
    let after = format!("{:040x}", n as u128 + 1);
    json!({
        "object_kind": "push",
        "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": after,
        "ref": "refs/heads/master",
        "ref_protected": true,
        "checkout_sha": after,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=8://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Diaspora",
            "description": "",
            "web_url": "http://example.com/mike/diaspora",
            "avatar_url": null,
            "git_ssh_url": "git@example.com:mike/diaspora.git",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "namespace": "Mike",
            "visibility_level": 0,
            "path_with_namespace": "mike/diaspora",
            "default_branch": "master",
            "homepage": "http://example.com/mike/diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "ssh_url": "git@example.com:mike/diaspora.git",
            "http_url": "http://example.com/mike/diaspora.git"
        },
        "repository": {
            "name": "Diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "description": "",
            "homepage": "http://example.com/mike/diaspora",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "git_ssh_url": "git@example.com:mike/diaspora.git",
            "visibility_level": 0
        },
        "commits": [{
            "id": after,
            "message": "Update Catalan translation to e38cb41.\n\nSee https://gitlab.com/gitlab-org/gitlab for more information",
            "title": "Update Catalan translation to e38cb41.",
            "timestamp": "2011-12-12T14:27:31+02:00",
            "url": "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "author": { "name": "Jordi Mallach", "email": "jordi@softcatala.org" },
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": []
        }],
        "total_commits_count": 1
    })
    .to_string()
    .into_bytes()
}

/// Answer times and throughput of one phase.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    pub sent: usize,
    pub ok: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The `p` quantile (0 to 1) of sorted times; NaN when there are none.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn phase(name: String, sent: usize, elapsed: Duration, mut times: Vec<f64>, ok: usize) -> Phase {
    times.sort_by(|a, b| a.total_cmp(b));
    Phase {
        name,
        sent,
        ok,
        per_second: sent as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&times, 0.50),
        p99_ms: percentile(&times, 0.99),
        max_ms: times.last().copied().unwrap_or(f64::NAN),
    }
}

struct Target {
    client: reqwest::Client,
    base: String,
    run: String,
}

impl Target {
    async fn send(&self, route: &str, n: usize) -> (f64, bool) {
        let body = push_body(n);
        let started = Instant::now();
        let res = self
            .client
            .post(format!("{}{route}", self.base))
            .header("content-type", "application/json")
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", BENCH_SECRET)
            .header("x-gitlab-event-uuid", format!("{}-{route}-{n}", self.run))
            .body(body)
            .send()
            .await;
        let ok = matches!(&res, Ok(r) if r.status().is_success());
        (started.elapsed().as_secs_f64() * 1000.0, ok)
    }
}

async fn closed_loop(
    target: Arc<Target>,
    route: &'static str,
    total: usize,
    concurrency: usize,
) -> Phase {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let target = target.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut ok = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let (ms, good) = target.send(route, n).await;
                times.push(ms);
                ok += usize::from(good);
            }
            (times, ok)
        }));
    }
    let mut times = Vec::with_capacity(total);
    let mut ok = 0;
    for t in tasks {
        if let Ok((t, k)) = t.await {
            times.extend(t);
            ok += k;
        }
    }
    phase(format!("{route} max"), total, started.elapsed(), times, ok)
}

async fn open_loop(
    target: Arc<Target>,
    route: &'static str,
    rate: u64,
    seconds: u64,
    offset: usize,
) -> Phase {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let target = target.clone();
        tasks.push(tokio::spawn(
            async move { target.send(route, offset + i).await },
        ));
    }
    let mut times = Vec::with_capacity(total);
    let mut ok = 0;
    for t in tasks {
        if let Ok((ms, good)) = t.await {
            times.push(ms);
            ok += usize::from(good);
        }
    }
    phase(
        format!("{route} @{rate}/s"),
        total,
        started.elapsed(),
        times,
        ok,
    )
}

/// Answers 204 after reading its body: the baseline the webhook route is compared with.
async fn noop(_body: axum::body::Bytes) -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}

/// Runs the ingest benchmark against one database and returns its phases.
pub async fn ingest_one(database_url: &str, args: &IngestArgs) -> anyhow::Result<Vec<Phase>> {
    let mut settings = Settings::for_database(database_url);
    settings.forges.gitlab_webhook_secrets = vec![Secret::new(BENCH_SECRET)];
    let db = crate::storage::Db::connect(database_url).await?;
    let forges = build_forges(&settings, &db)?;
    let app = App::with_parts(settings, db, forges)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/noop", axum::routing::post(noop))
        .merge(crate::web::router(app.clone()));
    let server = tokio::spawn(axum::serve(listener, router).into_future());
    let target = Arc::new(Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency.max(1) * 2)
            .build()?,
        base: format!("http://{addr}"),
        run: uuid::Uuid::new_v4().simple().to_string(),
    });
    // Warm up connections and caches.
    closed_loop(target.clone(), "/noop", 200, args.concurrency).await;
    let mut phases = vec![
        closed_loop(target.clone(), "/noop", args.deliveries, args.concurrency).await,
        closed_loop(
            target.clone(),
            "/hooks/gitlab",
            args.deliveries,
            args.concurrency,
        )
        .await,
        open_loop(
            target.clone(),
            "/noop",
            args.rate,
            args.seconds,
            args.deliveries,
        )
        .await,
        open_loop(
            target.clone(),
            "/hooks/gitlab",
            args.rate,
            args.seconds,
            args.deliveries,
        )
        .await,
    ];
    let stored = app.db.count_deliveries().await?;
    let expected = args.deliveries + (args.rate * args.seconds) as usize;
    if (stored as usize) < expected {
        phases.push(Phase {
            name: format!("WARNING: {stored} of {expected} deliveries stored"),
            sent: expected,
            ok: stored as usize,
            per_second: f64::NAN,
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            max_ms: f64::NAN,
        });
    }
    server.abort();
    app.db.close().await;
    Ok(phases)
}

pub async fn ingest(_settings: &Settings, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile_dir()?;
    let mut databases = args.databases.clone();
    if databases.is_empty() {
        databases.push(format!("sqlite://{}", tmp.join("bench.db").display()));
    }
    println!(
        "nbforge bench ingest: {} deliveries x {} connections closed-loop; {}/s for {} s open-loop",
        args.deliveries, args.concurrency, args.rate, args.seconds
    );
    for url in &databases {
        let shown = crate::config::redact_url(url);
        let phases = ingest_one(url, args).await?;
        println!("\ndatabase: {shown}");
        println!(
            "{:<22} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9}",
            "phase", "sent", "2xx", "req/s", "p50 ms", "p99 ms", "max ms"
        );
        for p in &phases {
            println!(
                "{:<22} {:>7} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
                p.name, p.sent, p.ok, p.per_second, p.p50_ms, p.p99_ms, p.max_ms
            );
        }
        if let (Some(noop), Some(hook)) = (phases.first(), phases.get(1)) {
            println!(
                "durable ingest throughput = {:.0}% of the no-op route",
                100.0 * hook.per_second / noop.per_second
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("nbforge-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
