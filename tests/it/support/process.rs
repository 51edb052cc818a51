//! `nbforge serve` as a child process, for tests that kill and restart it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_TOKEN, WEBHOOK_SECRET};

/// A running `nbforge serve`.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: std::path::PathBuf,
}

/// A free loopback port (bound and released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// Starts `nbforge serve` on `database_url` with fast polling and short leases.
    pub async fn start(
        database_url: &str,
        dir: &std::path::Path,
        extra_env: &[(&str, &str)],
    ) -> Server {
        let port = free_port();
        let log = dir.join(format!("serve-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nbforge"));
        cmd.arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NBFORGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("NBFORGE_DATABASE_URL", database_url)
            .env("NBFORGE_GITLAB_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("NBFORGE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("NBFORGE_DATA_DIR", dir.join("data"))
            .env(
                "NBFORGE_GIT_ROOTS",
                format!(
                    "{},{}",
                    dir.canonicalize().expect("test folder").display(),
                    super::shared_git_root().display()
                ),
            )
            .env("NBFORGE_POLL_INTERVAL_MS", "20")
            .env("NBFORGE_JOB_LEASE_SECS", "2")
            .env("NBFORGE_JOB_BACKOFF_MS", "10")
            .env("NBFORGE_SHUTDOWN_GRACE_SECS", "2")
            .env("NBFORGE_ENVIRONMENTS", "false")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("nbforge serve starts");
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            let res = client.get(format!("{}/healthz", self.url)).send().await;
            if res.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nbforge serve did not become healthy; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for nbforge")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
