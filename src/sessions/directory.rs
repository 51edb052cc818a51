//! The proxy's view of the sessions: which session serves `/user/<owner>/<name>/`, where it
//! is and its token, and the pool of connections to the sessions' Jupyter servers.
//!
//! [`Directory`] keeps what the backend last said about each session in memory, so that a
//! proxied request costs no call to the runtime. A miss re-reads the backend's list (one
//! read at a time; requests that wait for it share its answer), and a name that is still
//! missing is remembered for [`MISSING_FOR`] in a bounded negative cache, so requests for
//! sessions that do not exist cannot make a runtime call each. Sessions started and stopped
//! by other code are found the same way: a miss re-reads, and the proxy calls
//! [`Directory::forget`] when a session's address stops answering, so the next lookup reads
//! the session again. Nothing here is authoritative: the backend's records are.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{SessionBackend, SessionError, SessionInfo, SessionState};

/// How long a name the backend does not know is answered as missing without asking again.
pub const MISSING_FOR: Duration = Duration::from_secs(2);
/// How many missing names are remembered at most.
pub const MISSING_MAX: usize = 4096;
/// How long a session that is not running is believed before it is read again.
pub const NOT_RUNNING_FOR: Duration = Duration::from_millis(500);
/// How long connecting to a session's server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A session's key: the owner's name in URLs ([`super::Owner::url_name`]) and the
/// session's name.
pub type Key = (String, String);

/// The HTTP client the proxy reaches sessions with: HTTP/1.1, pooled, no redirects
/// followed, `Host` left as the request has it.
pub type UpstreamClient = Client<HttpConnector, axum::body::Body>;

struct Entry {
    info: SessionInfo,
    read: Instant,
}

/// Sessions by owner and name, read from a backend. Cheap to share (`Arc`).
pub struct Directory {
    backend: Arc<dyn SessionBackend>,
    found: std::sync::Mutex<HashMap<Key, Entry>>,
    missing: std::sync::Mutex<HashMap<Key, Instant>>,
    /// When the last full read of the backend finished; held while reading.
    listed: tokio::sync::Mutex<Option<Instant>>,
    client: UpstreamClient,
    tunnels: Arc<AtomicUsize>,
}

impl Directory {
    pub fn new(backend: Arc<dyn SessionBackend>) -> Directory {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .set_host(false)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Directory {
            backend,
            found: Default::default(),
            missing: Default::default(),
            listed: tokio::sync::Mutex::new(None),
            client,
            tunnels: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The backend the sessions are read from.
    pub fn backend(&self) -> &Arc<dyn SessionBackend> {
        &self.backend
    }

    /// The pooled client for requests to sessions' servers.
    pub fn client(&self) -> &UpstreamClient {
        &self.client
    }

    /// The session `name` of the owner whose URL name is `owner`, as last read; `None`
    /// when the backend has no such session.
    pub async fn lookup(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<SessionInfo>, SessionError> {
        let key: Key = (owner.to_owned(), name.to_owned());
        let asked = Instant::now();
        if let Some(known) = self.cached(&key) {
            return Ok(Some(known));
        }
        if self.known_missing(&key, asked) {
            return Ok(None);
        }
        // A session not running (or not known) is read again from the backend's list.
        self.reread(asked).await?;
        if let Some(entry) = self.found.lock().expect("directory lock").get(&key) {
            return Ok(Some(entry.info.clone()));
        }
        let mut missing = self.missing.lock().expect("directory lock");
        if missing.len() >= MISSING_MAX {
            missing.retain(|_, at| at.elapsed() < MISSING_FOR);
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
        }
        missing.insert(key, Instant::now());
        Ok(None)
    }

    /// A running session, or one read less than [`NOT_RUNNING_FOR`] ago.
    fn cached(&self, key: &Key) -> Option<SessionInfo> {
        let found = self.found.lock().expect("directory lock");
        let entry = found.get(key)?;
        let fresh = (entry.info.state == SessionState::Running && entry.info.address.is_some())
            || entry.read.elapsed() < NOT_RUNNING_FOR;
        fresh.then(|| entry.info.clone())
    }

    fn known_missing(&self, key: &Key, asked: Instant) -> bool {
        let mut missing = self.missing.lock().expect("directory lock");
        match missing.get(key) {
            Some(at) if asked.duration_since(*at) < MISSING_FOR => true,
            Some(_) => {
                missing.remove(key);
                false
            }
            None => false,
        }
    }

    /// Reads every session from the backend, unless a read that finished after `asked`
    /// already did (requests waiting on one read share it).
    async fn reread(&self, asked: Instant) -> Result<(), SessionError> {
        let mut listed = self.listed.lock().await;
        if listed.is_some_and(|at| at >= asked) {
            return Ok(());
        }
        let sessions = self.backend.list().await?;
        let now = Instant::now();
        let mut found = HashMap::with_capacity(sessions.len());
        for info in sessions {
            let key = (info.owner.url_name(), info.name.clone());
            // Of two sessions with one name (one stopping, one starting), the newest.
            if found
                .get(&key)
                .is_some_and(|e: &Entry| e.info.created_ms > info.created_ms)
            {
                continue;
            }
            found.insert(key, Entry { info, read: now });
        }
        {
            let mut missing = self.missing.lock().expect("directory lock");
            missing.retain(|k, _| !found.contains_key(k));
        }
        *self.found.lock().expect("directory lock") = found;
        *listed = Some(now);
        Ok(())
    }

    /// Makes a session known at once (after starting it), without a read of the backend.
    pub fn remember(&self, info: SessionInfo) {
        let key = (info.owner.url_name(), info.name.clone());
        self.missing.lock().expect("directory lock").remove(&key);
        self.found.lock().expect("directory lock").insert(
            key,
            Entry {
                info,
                read: Instant::now(),
            },
        );
    }

    /// Drops what is known of a session (its address stopped answering, or it was
    /// stopped): the next lookup reads it again.
    pub fn forget(&self, owner: &str, name: &str) {
        self.found
            .lock()
            .expect("directory lock")
            .remove(&(owner.to_owned(), name.to_owned()));
    }

    /// WebSocket connections to sessions open now.
    pub fn open_tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Counts a WebSocket connection while the guard lives.
    pub fn tunnel(&self) -> TunnelGuard {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        TunnelGuard(self.tunnels.clone())
    }
}

/// One open WebSocket connection to a session ([`Directory::open_tunnels`]).
pub struct TunnelGuard(Arc<AtomicUsize>);

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::sessions::{Activity, Owner, SessionId, SessionProject, SessionSpec};
    use async_trait::async_trait;

    /// A backend that counts its reads.
    #[derive(Default)]
    struct Counting {
        sessions: std::sync::Mutex<Vec<SessionInfo>>,
        lists: AtomicUsize,
    }

    #[async_trait]
    impl SessionBackend for Counting {
        async fn start(&self, _: &SessionSpec) -> Result<SessionInfo, SessionError> {
            Err(SessionError::Backend("not here".into()))
        }
        async fn status(&self, id: &SessionId) -> Result<Option<SessionInfo>, SessionError> {
            let sessions = self.sessions.lock().unwrap();
            Ok(sessions.iter().find(|s| &s.id == id).cloned())
        }
        async fn stop(&self, _: &SessionId) -> Result<(), SessionError> {
            Ok(())
        }
        async fn list(&self) -> Result<Vec<SessionInfo>, SessionError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(self.sessions.lock().unwrap().clone())
        }
        async fn activity(&self, _: &SessionId) -> Result<Option<Activity>, SessionError> {
            Ok(None)
        }
    }

    fn info(id: &str, username: &str, name: &str, state: SessionState) -> SessionInfo {
        let owner = Owner::User {
            id: 7,
            username: username.into(),
        };
        SessionInfo {
            id: SessionId(id.into()),
            base_url: SessionSpec::base_url_for(&owner, name),
            owner,
            name: name.into(),
            project: SessionProject {
                forge: "gitlab".into(),
                path: "lab/x".into(),
                commit: "c".into(),
            },
            image: "img".into(),
            default_url: "lab".into(),
            state,
            address: Some("http://10.0.0.2:8888".parse().unwrap()),
            token: Secret::new("t"),
            created_ms: 1,
            finished_ms: None,
            checkout: None,
        }
    }

    #[tokio::test]
    async fn running_sessions_are_read_once_and_missing_ones_are_remembered() {
        let backend = Arc::new(Counting::default());
        backend
            .sessions
            .lock()
            .unwrap()
            .push(info("a", "ada", "one", SessionState::Running));
        let dir = Directory::new(backend.clone());
        for _ in 0..3 {
            let found = dir.lookup("ada", "one").await.unwrap().unwrap();
            assert_eq!(found.id.0, "a");
        }
        assert_eq!(backend.lists.load(Ordering::SeqCst), 1);

        // Many requests for a session nobody has: one read.
        let lookups = (0..50).map(|_| dir.lookup("ada", "nope"));
        for found in futures_util::future::join_all(lookups).await {
            assert!(found.unwrap().is_none());
        }
        assert_eq!(backend.lists.load(Ordering::SeqCst), 2);

        // Started elsewhere: a forgotten entry is read again.
        backend
            .sessions
            .lock()
            .unwrap()
            .push(info("b", "bob", "two", SessionState::Running));
        dir.forget("ada", "one");
        assert!(dir.lookup("bob", "two").await.unwrap().is_some());
        assert!(dir.lookup("ada", "one").await.unwrap().is_some());
        assert_eq!(backend.lists.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_negative_cache_is_bounded_and_sessions_not_running_are_read_again() {
        let backend = Arc::new(Counting::default());
        backend
            .sessions
            .lock()
            .unwrap()
            .push(info("s", "ada", "later", SessionState::Starting));
        let dir = Directory::new(backend.clone());
        for i in 0..(MISSING_MAX + 10) {
            dir.missing
                .lock()
                .unwrap()
                .insert(("x".into(), i.to_string()), Instant::now());
        }
        assert!(dir.lookup("ada", "gone").await.unwrap().is_none());
        assert!(dir.missing.lock().unwrap().len() <= MISSING_MAX);

        let starting = dir.lookup("ada", "later").await.unwrap().unwrap();
        assert_eq!(starting.state, SessionState::Starting);
        backend.sessions.lock().unwrap()[0].state = SessionState::Running;
        tokio::time::sleep(NOT_RUNNING_FOR).await;
        let running = dir.lookup("ada", "later").await.unwrap().unwrap();
        assert_eq!(running.state, SessionState::Running);
    }
}
