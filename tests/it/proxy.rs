//! The proxy to Jupyter sessions, against the real Docker engine and a real nbforge server
//! on a loopback port: a user logged in through the fake GitLab reaches their session's
//! REST API, runs code in a kernel and a shell in a terminal over WebSockets; others,
//! visitors and forged cookies get 404; paths leaving the prefix get 400; the browser's
//! `Authorization` never reaches Jupyter; a stopped session is a 503; a second server over
//! the same database and engine finds the session again.
//!
//! Each test runs its sessions on a network of its own, with throwaway homes, and a
//! [`Sessions`] guard removes the containers, homes and network also when it fails.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nbforge::app::App;
use nbforge::bench::sessions::{connect, execute};
use nbforge::sessions::docker;
use nbforge::sessions::{Home, Owner, Resources, SessionInfo, SessionProject, SessionSpec};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::access::{log_in, with_login};
use crate::on_both_databases;
use crate::sessions::{base_image, docker_cli};
use crate::support::Backend;

/// A session network of the test's own; dropping it removes the sessions on it, their
/// throwaway homes and the network.
pub(crate) struct Sessions {
    pub network: String,
    pub image: String,
}

impl Sessions {
    pub(crate) fn new() -> Option<Sessions> {
        Some(Sessions {
            image: base_image()?,
            network: format!("nbforge-test-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Starts `name` for `owner` through the app's backend, with a throwaway home.
    pub(crate) async fn start(&self, app: &App, owner: Owner, name: &str) -> SessionInfo {
        assert_eq!(app.settings.sessions.network, self.network);
        let spec = SessionSpec {
            base_url: SessionSpec::base_url_for(&owner, name),
            owner,
            name: name.into(),
            project: SessionProject {
                forge: "gitlab".into(),
                path: "lab/rnaseq".into(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            },
            image: self.image.clone(),
            resources: Resources {
                memory_bytes: 1 << 30,
                cpus: 1.0,
            },
            home: Home::Throwaway,
            default_url: "lab".into(),
            env: Default::default(),
            checkout: None,
        };
        app.sessions.start(&spec).await.expect("the session starts")
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        let filter = format!("network={}", self.network);
        let (_, ids) = docker_cli(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            let (_, home) = docker_cli(&[
                "inspect",
                "--format",
                &format!(
                    "{{{{index .Config.Labels \"{}\"}}}}",
                    docker::LABEL_THROWAWAY_HOME
                ),
                id,
            ]);
            docker_cli(&["rm", "-f", "-v", id]);
            if !home.trim().is_empty() {
                docker_cli(&["volume", "rm", "-f", home.trim()]);
            }
        }
        docker_cli(&["network", "rm", &self.network]);
    }
}

/// A real nbforge server for `app` on a loopback port; its base URL.
async fn serve(app: &App) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = nbforge::web::router(app.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    (base, server)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A GET with the browser's cookies.
async fn get_as(url: &str, cookie: &str) -> reqwest::Response {
    http()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A POST of JSON with the browser's cookies; the JSON answered.
async fn post_as(url: &str, cookie: &str, body: &str) -> Value {
    let res = http()
        .post(url)
        .header("cookie", cookie)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "POST {url}: {}", res.status());
    res.json().await.unwrap()
}

async fn get(url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = http().get(url);
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The status of a GET of `path` exactly as written (HTTP clients resolve `..` first).
async fn raw_get(base: &str, path: &str, cookie: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: nbforge.test\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {answer}"))
}

/// This process's peak resident memory in bytes (`VmHWM`).
fn peak_memory() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn ws(url: &str) -> String {
    url.replacen("http://", "ws://", 1)
}

/// Reads a terminal's output until it shows `want`.
async fn terminal_shows(socket: &mut nbforge::bench::sessions::KernelSocket, want: &str) -> bool {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
        if let Message::Text(t) = frame {
            let msg: Value = serde_json::from_str(t.as_str()).unwrap();
            if msg[0] == "stdout" {
                seen.push_str(msg[1].as_str().unwrap_or_default());
                if seen.contains(want) {
                    return true;
                }
            }
        }
    }
    eprintln!("terminal output: {seen:?}");
    false
}

on_both_databases!(
    the_owner_reaches_their_session_and_nobody_else_does,
    |backend: Backend| async move {
        let Some(sessions) = Sessions::new() else {
            return;
        };
        let network = sessions.network.clone();
        let Some(t) = with_login(backend, |s| s.sessions.network = network).await else {
            return;
        };
        let fake = t.gitlab_fake();
        let ada = fake.add_user("ada");
        let bob = fake.add_user("bob");
        let ada_cookie = format!("nbforge_session={}", log_in(&t, &ada, "/").await);
        let bob_cookie = format!("nbforge_session={}", log_in(&t, &bob, "/").await);
        let owner = Owner::User {
            id: ada.id,
            username: "ada".into(),
        };
        // Names of the test's own: other tests' sessions run on the same engine.
        let name = format!("rnaseq-{}", &sessions.network[13..21]);
        let info = sessions.start(&t.app.app, owner, &name).await;
        let names = nbforge::web::auth::cookie_names(&t.app.app);
        let (visitor_cookie, visitor) = nbforge::web::auth::new_visitor(names);
        let visitor_cookie = visitor_cookie.split(';').next().unwrap().to_owned();
        let try_it = sessions
            .start(&t.app.app, Owner::Anonymous { visitor }, &name)
            .await;
        let (base, server) = serve(&t.app.app).await;
        let prefix = format!("{base}{}", info.base_url);

        // The owner: Jupyter's REST API, with Jupyter's own headers.
        let res = get_as(&format!("{prefix}api/status"), &ada_cookie).await;
        let found = t.app.app.directory.lookup("ada", &name).await.unwrap();
        assert_eq!(res.status(), 200, "{:?}", found.map(|i| (i.owner, i.state)));
        assert!(
            res.headers().get("x-frame-options").is_none(),
            "nbforge's frame headers stay off Jupyter's answers"
        );
        let status: Value = res.json().await.unwrap();
        assert!(status.get("last_activity").is_some(), "{status}");
        // Jupyter's own pages keep Jupyter's CSP.
        let lab = get_as(&format!("{prefix}lab"), &ada_cookie).await;
        assert_eq!(lab.status(), 200);
        let csp = lab.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(csp, nbforge::web::CSP);
        assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
        // Redirects from Jupyter reach the browser as they are; so does the prefix without its slash.
        let root = get_as(&prefix, &ada_cookie).await;
        assert!(root.status().is_redirection(), "{}", root.status());
        let location = root.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with(&format!("{}lab", info.base_url)),
            "{location}"
        );
        let bare = get_as(prefix.trim_end_matches('/'), &ada_cookie).await;
        assert_eq!(bare.status(), 307);
        assert_eq!(bare.headers()["location"], info.base_url.as_str());

        // A wrong token from the browser is replaced by the session's.
        let res = http()
            .get(format!("{prefix}api/status"))
            .header("cookie", &ada_cookie)
            .header("authorization", "token not-the-sessions")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);

        // A kernel over the REST API and its WebSocket.
        let kernel = post_as(
            &format!("{prefix}api/kernels"),
            &ada_cookie,
            r#"{"name": "python3"}"#,
        )
        .await;
        let kernel = kernel["id"].as_str().expect("a kernel id").to_owned();
        let channels = ws(&format!("{prefix}api/kernels/{kernel}/channels"));
        let mut socket = connect(&channels, &[("cookie", &ada_cookie)])
            .await
            .unwrap();
        assert_eq!(execute(&mut socket, "1+1").await.unwrap(), "2");
        // With Jupyter's subprotocol, the handshake passes it through.
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                channels.as_str(),
            )
            .unwrap();
        req.headers_mut()
            .insert("cookie", ada_cookie.parse().unwrap());
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "v1.kernel.websocket.jupyter.org".parse().unwrap(),
        );
        let (v1, answer) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            answer.headers()["sec-websocket-protocol"],
            "v1.kernel.websocket.jupyter.org"
        );
        assert!(t.app.app.directory.open_tunnels() >= 2);
        drop(v1);
        // Closed in the middle of a message: the other side closes too.
        socket
            .send(Message::text(
                nbforge::bench::sessions::execute_request("import time; time.sleep(1)").0,
            ))
            .await
            .unwrap();
        drop(socket);

        // A large download streams through: nbforge's memory does not grow by its size.
        let mut socket = connect(&channels, &[("cookie", &ada_cookie)])
            .await
            .unwrap();
        let size: usize = 256 << 20;
        execute(
            &mut socket,
            "with open('big.bin', 'wb') as f:\n    for _ in range(256): f.write(bytes(1 << 20))",
        )
        .await
        .unwrap();
        socket.close(None).await.ok();
        let before = peak_memory();
        let mut download = get_as(&format!("{prefix}files/big.bin"), &ada_cookie).await;
        assert_eq!(download.status(), 200);
        let mut received = 0;
        while let Some(chunk) = download.chunk().await.unwrap() {
            received += chunk.len();
        }
        assert_eq!(received, size);
        let grown = peak_memory().saturating_sub(before);
        assert!(
            grown < size / 4,
            "nbforge's peak memory grew by {grown} bytes"
        );

        // A terminal over its WebSocket.
        let terminal = post_as(&format!("{prefix}api/terminals"), &ada_cookie, "{}").await;
        let name = terminal["name"].as_str().expect("a terminal name");
        let mut term = connect(
            &ws(&format!("{prefix}terminals/websocket/{name}")),
            &[("cookie", &ada_cookie)],
        )
        .await
        .unwrap();
        term.send(Message::text(r#"["stdin","echo hi$((40+2))\r"]"#))
            .await
            .unwrap();
        assert!(terminal_shows(&mut term, "hi42").await);
        term.close(None).await.ok();
        drop(term);
        let mut open = usize::MAX;
        for _ in 0..100 {
            open = t.app.app.directory.open_tunnels();
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(open, 0, "every WebSocket to the session was closed");

        // Everyone else: the same 404 as for a session that does not exist.
        let missing = get(
            &format!("{base}/user/ada/nothing/api/status"),
            Some(&ada_cookie),
        )
        .await;
        assert_eq!(missing.0, 404);
        let forged = format!(
            "nbforge_session={}",
            nbforge::access::service::random_token()
        );
        for (who, cookie) in [
            ("bob", Some(bob_cookie.as_str())),
            ("anonymous", None),
            ("a visitor", Some(visitor_cookie.as_str())),
            ("a forged cookie", Some(forged.as_str())),
        ] {
            for path in ["api/status", "lab", ""] {
                let (status, body) = get(&format!("{prefix}{path}"), cookie).await;
                assert_eq!(status, 404, "{who} {path}");
                let nothing = get(&format!("{base}/user/ada/nothing-{name}/{path}"), cookie).await;
                assert_eq!(
                    body, nothing.1,
                    "{who} {path}: the same page as for no session"
                );
                assert!(!body.contains(info.token.expose()));
            }
            let refused = connect(
                &channels,
                &cookie.map(|c| vec![("cookie", c)]).unwrap_or_default(),
            )
            .await;
            assert!(refused.is_err(), "{who} opened the kernel's WebSocket");
        }

        // The visitor reaches their own session, and nobody else does.
        let visitor_prefix = format!("{base}{}", try_it.base_url);
        assert_eq!(
            get(
                &format!("{visitor_prefix}api/status"),
                Some(&visitor_cookie)
            )
            .await
            .0,
            200
        );
        assert_eq!(
            get(&format!("{visitor_prefix}api/status"), Some(&ada_cookie))
                .await
                .0,
            404
        );
        let (other_visitor, _) = nbforge::web::auth::new_visitor(names);
        let other_visitor = other_visitor.split(';').next().unwrap();
        assert_eq!(
            get(&format!("{visitor_prefix}api/status"), Some(other_visitor))
                .await
                .0,
            404
        );

        // Paths that would leave the prefix.
        for path in [
            "../../",
            "x/%2e%2e/%2e%2e/",
            "api%2Fstatus",
            "api%2fstatus",
            "%2E%2E/",
        ] {
            let status = raw_get(&base, &format!("{}{path}", info.base_url), &ada_cookie).await;
            assert_eq!(status, 400, "{path}");
        }

        // A second server over the same database and engine finds the session again.
        let again = App::with_parts(
            (*t.app.app.settings).clone(),
            t.app.app.db.clone(),
            t.app.app.forges.clone(),
        )
        .unwrap();
        let (base2, server2) = serve(&again).await;
        let (status, _) = get(
            &format!("{base2}{}api/status", info.base_url),
            Some(&ada_cookie),
        )
        .await;
        assert_eq!(status, 200);

        // A stopped session: a 503 that says so.
        let container = format!("nbforge-session-{}", info.id);
        assert!(docker_cli(&["stop", "-t", "1", &container]).0);
        let (status, body) = get(&format!("{prefix}api/status"), Some(&ada_cookie)).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("stopped"), "{body}");
        assert!(!body.contains(info.token.expose()));
        t.app.app.sessions.stop(&info.id).await.unwrap();
        t.app.app.sessions.stop(&try_it.id).await.unwrap();
        let (status, _) = get(
            &format!("{base2}{}api/status", info.base_url),
            Some(&ada_cookie),
        )
        .await;
        assert_eq!(status, 404, "a removed session is gone");
        server.abort();
        server2.abort();
    }
);
