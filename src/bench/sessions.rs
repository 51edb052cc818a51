//! `nbforge bench sessions`: Jupyter sessions through nbforge's proxy, on this machine's
//! Docker engine, in-process (the real router on a loopback port, a logged-in user):
//! (a) launch time, from `start()` with the image cached to the first 200 from
//! `api/status` through the proxy; (b) `GET api/status` throughput through the proxy next to
//! the container's own address in the same run; (c) the round trip of a kernel's
//! `execute_request` over the WebSocket, through the proxy and direct; (d) many sessions
//! running at once with small limits: their launches, and the proxy's answer times
//! across them.
//!
//! The helpers for Jupyter's kernel messages ([`execute`]) are public for the tests.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::percentile;
use crate::app::{App, build_forges};
use crate::config::Settings;
use crate::sessions::{
    Home, Owner, Resources, SessionInfo, SessionProject, SessionSpec, SessionState,
};

#[derive(Debug, Clone, clap::Args)]
pub struct SessionsArgs {
    /// Launches to time (a).
    #[arg(long, default_value_t = 5)]
    pub launches: usize,
    /// `GET api/status` requests per way (b).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Concurrent connections for (b) and (d).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// `execute_request` round trips per way (c).
    #[arg(long, default_value_t = 300)]
    pub executes: usize,
    /// Sessions running at once (d).
    #[arg(long, default_value_t = 20)]
    pub sessions: usize,
    /// The environment image to run [default: the base image].
    #[arg(long)]
    pub image: Option<String>,
}

/// An `execute_request` for `code` on the shell channel, in Jupyter's JSON WebSocket
/// framing (no subprotocol), and its message id.
pub fn execute_request(code: &str) -> (String, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let msg = json!({
        "header": {
            "msg_id": id,
            "msg_type": "execute_request",
            "username": "nbforge",
            "session": "nbforge-bench",
            "version": "5.3",
            "date": "2026-01-01T00:00:00.000000Z",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": false,
            "store_history": false,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": true,
        },
        "channel": "shell",
        "buffers": [],
    });
    (msg.to_string(), id)
}

/// A kernel WebSocket.
pub type KernelSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket (kernel channels, terminals) at `url` (`ws://…`) with extra headers.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<KernelSocket> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes())?,
            v.parse()?,
        );
    }
    // Without Nagle's algorithm, as browsers do: a frame goes out at once.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    Ok(ws)
}

/// Runs `code` in the kernel and returns the `text/plain` of its `execute_result`
/// (empty without one), once both the shell channel's `execute_reply` and the iopub
/// channel's `idle` for the request arrived (the two channels are not ordered).
pub async fn execute(ws: &mut KernelSocket, code: &str) -> anyhow::Result<String> {
    let (msg, id) = execute_request(code);
    ws.send(Message::text(msg)).await?;
    let (mut result, mut replied, mut idle) = (String::new(), false, false);
    while let Some(frame) = ws.next().await {
        let text = match frame? {
            Message::Text(t) => t.as_str().to_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        let msg: Value = serde_json::from_str(&text)?;
        if msg["parent_header"]["msg_id"] != id.as_str() {
            continue;
        }
        match msg["header"]["msg_type"].as_str() {
            Some("execute_result") => {
                result = msg["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            Some("error") => anyhow::bail!("the kernel failed: {}", msg["content"]["ename"]),
            Some("execute_reply") => replied = true,
            Some("status") if msg["content"]["execution_state"] == "idle" => idle = true,
            _ => {}
        }
        if replied && idle {
            return Ok(result);
        }
    }
    anyhow::bail!("the kernel WebSocket closed before the reply")
}

/// The benchmark's world: an app, its server, a logged-in user.
struct Bench {
    app: App,
    base: String,
    cookie: String,
    owner: Owner,
    image: String,
    http: reqwest::Client,
    started: Vec<SessionInfo>,
}

impl Bench {
    fn spec(&self, name: &str, resources: Resources) -> SessionSpec {
        SessionSpec {
            base_url: SessionSpec::base_url_for(&self.owner, name),
            owner: self.owner.clone(),
            name: name.into(),
            project: SessionProject {
                forge: "local".into(),
                path: "bench/sessions".into(),
                commit: "0".repeat(40),
            },
            image: self.image.clone(),
            resources,
            home: Home::Throwaway,
            default_url: "lab".into(),
            env: Default::default(),
            checkout: None,
        }
    }

    /// Starts a session and waits for its first 200 through the proxy.
    async fn launch(&mut self, name: &str, resources: Resources) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let info = self.app.sessions.start(&self.spec(name, resources)).await?;
        self.started.push(info.clone());
        let url = self.proxied(&info, "api/status");
        loop {
            let res = self
                .http
                .get(&url)
                .header("cookie", &self.cookie)
                .send()
                .await?;
            if res.status() == 200 {
                return Ok(t0.elapsed());
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(120),
                "{name} answered {} through the proxy",
                res.status()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn proxied(&self, info: &SessionInfo, path: &str) -> String {
        format!("{}{}{path}", self.base, info.base_url)
    }

    fn direct(info: &SessionInfo, path: &str) -> String {
        let address = info.address.as_ref().map_or("", |a| a.as_str());
        format!("{}{}{path}", address.trim_end_matches('/'), info.base_url)
    }

    async fn stop_all(&mut self) {
        for info in self.started.drain(..) {
            if let Err(e) = self.app.sessions.stop(&info.id).await {
                eprintln!("stopping session {}: {e}", info.id);
            }
        }
    }
}

/// Answer times of `total` GETs over `concurrency` connections, and the rate.
async fn closed_loop(
    http: &reqwest::Client,
    urls: Arc<Vec<(String, (&'static str, String))>>,
    total: usize,
    concurrency: usize,
) -> (f64, Vec<f64>, usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (http, urls, next) = (http.clone(), urls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut times, mut failed) = (Vec::new(), 0);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let (url, (name, value)) = &urls[n % urls.len()];
                let t = Instant::now();
                let ok = match http.get(url).header(*name, value).send().await {
                    Ok(res) => res.status() == 200 && res.bytes().await.is_ok(),
                    Err(_) => false,
                };
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                failed += usize::from(!ok);
            }
            (times, failed)
        }));
    }
    let (mut times, mut failed) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((t, f)) = task.await {
            times.extend(t);
            failed += f;
        }
    }
    let rate = total as f64 / t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    (rate, times, failed)
}

async fn round_trips(ws: &mut KernelSocket, n: usize) -> anyhow::Result<Vec<f64>> {
    for _ in 0..10 {
        execute(ws, "1+1").await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = execute(ws, "1+1").await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(out == "2", "1+1 gave {out}");
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn ms(sorted: &[f64], p: f64) -> String {
    format!("{:.2} ms", percentile(sorted, p))
}

pub async fn run(settings: &Settings, args: &SessionsArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let mut s = Settings::for_database(&url);
    s.environments.docker_host = settings.environments.docker_host.clone();
    s.data_dir = dir.path().join("data");
    s.sessions.network = format!("nbforge-bench-{}", uuid::Uuid::new_v4().simple());
    let image = args
        .image
        .clone()
        .unwrap_or_else(|| settings.environments.base_image.clone());
    let network = s.sessions.network.clone();
    let db = crate::storage::Db::connect(&url).await?;
    let forges = build_forges(&s, &db)?;
    let app = App::with_parts(s, db, forges)?;

    let user_id = 900_000_001;
    app.db
        .upsert_user(&crate::storage::UserUpdate {
            id: user_id,
            username: "bench",
            name: None,
            avatar_url: None,
            state: None,
        })
        .await?;
    let value = crate::access::service::random_token();
    app.db
        .create_web_session(
            &crate::access::service::digest(&["session", &value]),
            user_id,
            &crate::access::service::random_token(),
            crate::storage::now_ms() + 3_600_000,
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(axum::serve(listener, crate::web::router(app.clone())).into_future());
    let mut bench = Bench {
        cookie: format!("{}={value}", crate::web::auth::cookie_names(&app).session),
        app,
        base,
        owner: Owner::User {
            id: user_id,
            username: "bench".into(),
        },
        image,
        http: reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(64)
            .timeout(Duration::from_secs(30))
            .build()?,
        started: Vec::new(),
    };
    let outcome = measure(&mut bench, args).await;
    bench.stop_all().await;
    server.abort();
    if let Ok(docker) = bollard::Docker::connect_with_defaults()
        && let Err(e) = docker.remove_network(&network).await
    {
        eprintln!("removing network {network}: {e}");
    }
    outcome?;
    Ok(ExitCode::SUCCESS)
}

async fn measure(bench: &mut Bench, args: &SessionsArgs) -> anyhow::Result<()> {
    let small = Resources {
        memory_bytes: 256 << 20,
        cpus: 0.25,
    };
    let normal = Resources {
        memory_bytes: 1 << 30,
        cpus: 1.0,
    };
    println!("nbforge bench sessions: image {}", bench.image);

    // (a) launch time.
    let mut launches = Vec::new();
    for i in 0..args.launches {
        let took = bench.launch(&format!("launch-{i}"), normal).await?;
        launches.push(took.as_secs_f64());
        bench.stop_all().await;
    }
    launches.sort_by(f64::total_cmp);
    println!(
        "(a) launch, start() to the first 200 through the proxy, {} launches: median {:.2} s, min {:.2} s, max {:.2} s (target < 3 s)",
        launches.len(),
        percentile(&launches, 0.5),
        launches.first().copied().unwrap_or(f64::NAN),
        launches.last().copied().unwrap_or(f64::NAN),
    );

    // (b) HTTP throughput, proxied and direct, on one session.
    bench.launch("main", normal).await?;
    let info = bench.started.last().cloned().context("the main session")?;
    let proxied = Arc::new(vec![(
        bench.proxied(&info, "api/status"),
        ("cookie", bench.cookie.clone()),
    )]);
    let direct = Arc::new(vec![(
        Bench::direct(&info, "api/status"),
        ("authorization", format!("token {}", info.token.expose())),
    )]);
    closed_loop(&bench.http, direct.clone(), 200, args.concurrency).await;
    closed_loop(&bench.http, proxied.clone(), 200, args.concurrency).await;
    let (d_rate, d_times, d_failed) =
        closed_loop(&bench.http, direct, args.requests, args.concurrency).await;
    let (p_rate, p_times, p_failed) =
        closed_loop(&bench.http, proxied, args.requests, args.concurrency).await;
    println!(
        "(b) GET api/status x{} over {} connections: direct {d_rate:.0}/s (p50 {}, p99 {}, {d_failed} failed); proxied {p_rate:.0}/s (p50 {}, p99 {}, {p_failed} failed): {:.0}% of direct (target >= 70%)",
        args.requests,
        args.concurrency,
        ms(&d_times, 0.5),
        ms(&d_times, 0.99),
        ms(&p_times, 0.5),
        ms(&p_times, 0.99),
        100.0 * p_rate / d_rate,
    );

    // (c) kernel round trips over the WebSocket.
    let kernel: Value = bench
        .http
        .post(bench.proxied(&info, "api/kernels"))
        .header("cookie", &bench.cookie)
        .json(&json!({"name": "python3"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let kernel = kernel["id"].as_str().context("a kernel id")?.to_owned();
    let channels = format!("api/kernels/{kernel}/channels");
    let mut via_proxy = connect(
        &bench
            .proxied(&info, &channels)
            .replacen("http://", "ws://", 1),
        &[("cookie", &bench.cookie)],
    )
    .await?;
    let token = format!("token {}", info.token.expose());
    let mut direct = connect(
        &Bench::direct(&info, &channels).replacen("http://", "ws://", 1),
        &[("authorization", &token)],
    )
    .await?;
    let d = round_trips(&mut direct, args.executes).await?;
    let p = round_trips(&mut via_proxy, args.executes).await?;
    println!(
        "(c) execute_request 1+1 round trip x{}: direct p50 {} p99 {}; proxied p50 {} p99 {}; proxy adds {:.2} ms at p50 (target within 1 ms)",
        args.executes,
        ms(&d, 0.5),
        ms(&d, 0.99),
        ms(&p, 0.5),
        ms(&p, 0.99),
        percentile(&p, 0.5) - percentile(&d, 0.5),
    );
    via_proxy.close(None).await.ok();
    direct.close(None).await.ok();
    bench.stop_all().await;

    // (d) many sessions at once, with small limits.
    let mut starts = Vec::new();
    let mut failures = 0;
    for i in 0..args.sessions {
        match bench.launch(&format!("many-{i}"), small).await {
            Ok(took) => starts.push(took.as_secs_f64()),
            Err(e) => {
                failures += 1;
                eprintln!("launch many-{i}: {e:#}");
            }
        }
    }
    starts.sort_by(f64::total_cmp);
    let running: Vec<SessionInfo> = bench
        .started
        .iter()
        .filter(|s| s.state == SessionState::Running)
        .cloned()
        .collect();
    let urls: Vec<_> = running
        .iter()
        .map(|s| {
            (
                bench.proxied(s, "api/status"),
                ("cookie", bench.cookie.clone()),
            )
        })
        .collect();
    let (rate, times, failed) = if urls.is_empty() {
        (f64::NAN, Vec::new(), 0)
    } else {
        closed_loop(&bench.http, Arc::new(urls), args.requests, args.concurrency).await
    };
    println!(
        "(d) {} sessions at 256 MiB / 0.25 CPU: {} launched ({failures} failed), launch median {:.2} s, max {:.2} s (the last with {} running); proxied GET api/status across them x{}: {rate:.0}/s, p50 {}, p99 {} ({failed} failed; target p99 < 50 ms)",
        args.sessions,
        starts.len(),
        percentile(&starts, 0.5),
        starts.last().copied().unwrap_or(f64::NAN),
        starts.len().saturating_sub(1),
        args.requests,
        ms(&times, 0.5),
        ms(&times, 0.99),
    );
    Ok(())
}
