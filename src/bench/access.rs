//! `nbforge bench access`: the authorization check on a populated database, and the cost
//! of access on a page.
//!
//! The database gets `--users` users, `--projects` projects (a third each public,
//! internal and private, ten per group) and `--memberships` memberships (half in groups,
//! half in projects, random levels). Then:
//!
//! - **check**: `Access::check` (the project's visibility, the user's level through the
//!   project and every group above it, `Policy::can`) for random users and projects,
//!   in-process, one at a time; p50 and p99.
//! - **page**: the real router on a loopback port; the same published worksheet page asked
//!   for as fast as `--concurrency` connections allow, first of a public project by
//!   anonymous visitors, then of a private project by a member with a session cookie
//!   (session lookup, user, level, membership and the check on every request). Both are
//!   whole HTTP requests through the same server in this process.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use super::percentile;
use crate::access::service::{digest, random_token};
use crate::access::{Action, Viewer};
use crate::app::{App, build_forges};
use crate::config::Settings;
use crate::events::ForgeKind;
use crate::storage::{Db, NewWorksheet, ReleaseRow};

#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    #[arg(long, default_value_t = 1_000)]
    pub projects: usize,
    #[arg(long, default_value_t = 100_000)]
    pub memberships: usize,
    /// Checks timed.
    #[arg(long, default_value_t = 20_000)]
    pub checks: usize,
    /// Page requests per phase.
    #[arg(long, default_value_t = 4_000)]
    pub requests: usize,
    /// Concurrent connections in the page phases.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Database to measure (repeatable). Default: a new SQLite file in a temporary
    /// directory. Use a scratch PostgreSQL database: the bench fills it.
    #[arg(long = "db")]
    pub databases: Vec<String>,
}

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn project_path(i: usize) -> String {
    format!("g{}/p{i}", i / 10)
}

fn visibility(i: usize) -> &'static str {
    ["public", "internal", "private"][i % 3]
}

/// Fills the database: users, projects with their visibility, memberships.
async fn populate(db: &Db, args: &AccessArgs) -> anyhow::Result<()> {
    let now = db.clock().now_ms();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pool = db.pool();
    let mut tx = pool.begin().await?;
    for id in 0..args.users {
        sqlx::query(
            "INSERT INTO users (id, username, name, state, created_at, updated_at)
             VALUES ($1, $2, '', 'active', $3, $3)",
        )
        .bind(id as i64 + 1)
        .bind(format!("user{id}"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    for i in 0..args.projects {
        sqlx::query(
            "INSERT INTO projects (forge, path, visibility, updated_at) VALUES ('gitlab', $1, $2, $3)",
        )
        .bind(project_path(i))
        .bind(visibility(i))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let groups = args.projects.div_ceil(10).max(1);
    let levels = [10_i64, 20, 30, 40, 50];
    let mut inserted = 0;
    while inserted < args.memberships {
        let user = rng.below(args.users) as i64 + 1;
        let scope = if rng.below(2) == 0 {
            format!("group:g{}", rng.below(groups))
        } else {
            format!("project:{}", project_path(rng.below(args.projects)))
        };
        let res = sqlx::query(
            "INSERT INTO members (forge, scope, user_id, access_level, source, updated_at)
             VALUES ('gitlab', $1, $2, $3, 'hook', $4) ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(user)
        .bind(levels[rng.below(levels.len())])
        .bind(now)
        .execute(&mut *tx)
        .await?;
        inserted += res.rows_affected() as usize;
    }
    tx.commit().await?;
    Ok(())
}

/// A published worksheet for `project`.
async fn publish(db: &Db, project: &str) -> anyhow::Result<()> {
    let notebook = br##"{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Growth"]}, {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": null, "outputs": [], "source": ["rate = 0.5\n"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"##;
    db.publish_release(
        &ReleaseRow {
            forge: ForgeKind::GitLab,
            project: project.into(),
            tag: "v1".into(),
            commit_sha: "0".repeat(40),
            title: Some("Bench".into()),
            area: None,
            error: None,
            published_at: 0,
        },
        &[NewWorksheet {
            path: "growth.ipynb".into(),
            title: "Growth".into(),
            description: None,
            body_html: "<section><h1>Growth</h1><p>A worksheet body of modest size.</p></section>"
                .repeat(20),
            notebook: notebook.to_vec(),
            error: None,
        }],
    )
    .await?;
    Ok(())
}

/// `requests` GETs of `path` over `concurrency` connections; (requests/s, p99 ms, 200s).
async fn pages(
    base: &str,
    path: &str,
    cookie: Option<String>,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<(f64, f64, usize)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?;
    let url = format!("{base}{path}");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, next, cookie) =
            (client.clone(), url.clone(), next.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut ok = 0;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                let t = Instant::now();
                let mut req = client.get(&url);
                if let Some(c) = &cookie {
                    req = req.header("cookie", c);
                }
                if let Ok(res) = req.send().await {
                    ok += usize::from(res.status().is_success());
                    let _ = res.bytes().await;
                }
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (times, ok)
        }));
    }
    let mut times = Vec::new();
    let mut ok = 0;
    for t in tasks {
        let (t, k) = t.await?;
        times.extend(t);
        ok += k;
    }
    let secs = started.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    Ok((requests as f64 / secs, percentile(&times, 0.99), ok))
}

async fn one(url: &str, args: &AccessArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let mut settings = Settings::for_database(url);
    settings.data_dir = data_dir.to_path_buf();
    settings.forges.gitlab_token = Some(crate::config::Secret::new("bench-token-not-used"));
    let db = Db::connect(url).await?;
    let forges = build_forges(&settings, &db)?;
    let app = App::with_parts(settings, db.clone(), forges)?;
    let t = Instant::now();
    populate(&db, args).await?;
    println!(
        "populated {} users, {} projects, {} memberships in {:.1} s",
        args.users,
        args.projects,
        args.memberships,
        t.elapsed().as_secs_f64()
    );

    // The check, in-process.
    let mut rng = Rng(42);
    let mut viewers = Vec::new();
    for _ in 0..256 {
        let id = rng.below(args.users) as i64 + 1;
        let user = db.get_user(id).await?.expect("a populated user");
        viewers.push(app.access.user_viewer(user).await?);
    }
    viewers.push(Viewer::anonymous());
    let mut times = Vec::with_capacity(args.checks);
    let mut allowed = 0;
    for _ in 0..args.checks {
        let viewer = &viewers[rng.below(viewers.len())];
        let path = project_path(rng.below(args.projects));
        let t = Instant::now();
        let ok = app
            .access
            .check(viewer, Action::ViewWorksheets, ForgeKind::GitLab, &path)
            .await?
            .is_ok();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        allowed += usize::from(ok);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "check (in-process, {} checks, {allowed} allowed): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        args.checks,
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 1.0)
    );

    // The same page, public and anonymous vs private with a member's session.
    let (public, private) = (project_path(0), project_path(2));
    assert_eq!((visibility(0), visibility(2)), ("public", "private"));
    publish(&db, &public).await?;
    publish(&db, &private).await?;
    let member = args.users as i64 + 1;
    sqlx::query(
        "INSERT INTO users (id, username, name, state, created_at, updated_at)
         VALUES ($1, 'member', '', 'active', 0, 0)",
    )
    .bind(member)
    .execute(db.pool())
    .await?;
    db.upsert_member(&crate::storage::MemberRow {
        forge: ForgeKind::GitLab,
        scope: format!("project:{private}"),
        user_id: member,
        access_level: 20,
        expires_at: None,
        source: "hook".into(),
    })
    .await?;
    let session = random_token();
    db.create_web_session(
        &digest(&["session", &session]),
        member,
        &random_token(),
        db.clock().now_ms() + 3_600_000,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, crate::web::router(app.clone())).into_future());
    let public_page = format!("/w/{public}/v1/growth.ipynb");
    let private_page = format!("/w/{private}/v1/growth.ipynb");
    // Warm up.
    pages(&base, &public_page, None, 200, args.concurrency).await?;
    let (pub_rate, pub_p99, pub_ok) =
        pages(&base, &public_page, None, args.requests, args.concurrency).await?;
    let (priv_rate, priv_p99, priv_ok) = pages(
        &base,
        &private_page,
        Some(format!("nbforge_session={session}")),
        args.requests,
        args.concurrency,
    )
    .await?;
    server.abort();
    println!(
        "{:<40} {:>8} {:>10} {:>9}",
        "page (HTTP, same server)", "200s", "req/s", "p99 ms"
    );
    println!(
        "{:<40} {:>8} {:>10.0} {:>9.2}",
        "public worksheet, anonymous", pub_ok, pub_rate, pub_p99
    );
    println!(
        "{:<40} {:>8} {:>10.0} {:>9.2}",
        "private worksheet, member's session", priv_ok, priv_rate, priv_p99
    );
    println!(
        "private page throughput = {:.0}% of the public page's",
        100.0 * priv_rate / pub_rate
    );
    db.close().await;
    Ok(())
}

pub async fn run(args: &AccessArgs) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!(
        "nbforge-bench-access-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut databases = args.databases.clone();
    if databases.is_empty() {
        databases.push(format!("sqlite://{}", dir.join("bench.db").display()));
    }
    for url in &databases {
        println!("\ndatabase: {}", crate::config::redact_url(url));
        one(url, args, &dir).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}
