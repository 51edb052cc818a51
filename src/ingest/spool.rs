//! The delivery spool: where webhook deliveries wait while the database cannot be reached,
//! so that an outage loses nothing GitLab sent (GitLab does not retry, and disables a hook
//! after four failures in a row).
//!
//! Each spooled delivery is one file in the spool folder, named by a sequence number and
//! written as `<n>.tmp`, fsynced, renamed to `<n>.json`, and the folder fsynced: a crash
//! leaves either the whole file or a `.tmp` that is ignored (and removed), never half a
//! delivery. The folder is bounded (`NBFORGE_SPOOL_MAX_BYTES`); a delivery that does not fit
//! is refused with 503, as before the spool. While anything is spooled, new deliveries are
//! spooled behind it, and one drainer stores them in order when the database answers again,
//! removing each file once its transaction committed (a delivery stored twice is caught by
//! the usual deduplication).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::storage::{Enqueue, JobKind, NewJob};

/// One delivery as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spooled {
    pub dedupe_key: String,
    pub forge: String,
    pub event: String,
    pub result: String,
    /// The raw body, base64.
    pub body: String,
    pub supersede: Vec<String>,
    pub jobs: Vec<SpooledJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledJob {
    pub kind: String,
    pub args: String,
    pub supersede_key: Option<String>,
    pub max_attempts: i64,
}

impl Spooled {
    pub fn new(
        dedupe_key: &str,
        forge: &str,
        event: &str,
        result: &str,
        body: &[u8],
        work: &Enqueue,
    ) -> Spooled {
        Spooled {
            dedupe_key: dedupe_key.to_owned(),
            forge: forge.to_owned(),
            event: event.to_owned(),
            result: result.to_owned(),
            body: STANDARD.encode(body),
            supersede: work.supersede.clone(),
            jobs: work
                .jobs
                .iter()
                .map(|j| SpooledJob {
                    kind: j.kind.as_str().to_owned(),
                    args: j.args.clone(),
                    supersede_key: j.supersede_key.clone(),
                    max_attempts: j.max_attempts,
                })
                .collect(),
        }
    }

    pub fn body(&self) -> Result<Vec<u8>, SpoolError> {
        STANDARD
            .decode(&self.body)
            .map_err(|e| SpoolError::Damaged(e.to_string()))
    }

    pub fn work(&self) -> Result<Enqueue, SpoolError> {
        let mut jobs = Vec::with_capacity(self.jobs.len());
        for j in &self.jobs {
            jobs.push(NewJob {
                kind: JobKind::parse(&j.kind).map_err(|e| SpoolError::Damaged(e.to_string()))?,
                args: j.args.clone(),
                supersede_key: j.supersede_key.clone(),
                max_attempts: j.max_attempts,
            });
        }
        Ok(Enqueue {
            supersede: self.supersede.clone(),
            jobs,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the delivery spool is full ({used} of {max} bytes)")]
    Full { used: u64, max: u64 },
    #[error("delivery spool {path}: {message}")]
    Io { path: String, message: String },
    #[error("a spooled delivery is damaged: {0}")]
    Damaged(String),
}

struct State {
    next: u64,
    /// Bytes of the `.json` files.
    used: u64,
    /// Spooled files not yet stored, oldest first.
    pending: std::collections::VecDeque<(u64, u64)>,
}

/// The spool folder.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn io_error(path: &Path, e: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

impl Spool {
    /// Opens (making it if needed) the spool at `dir`, finding what a previous run left:
    /// `.json` files wait to be stored; `.tmp` files were never acknowledged and are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let mut pending = Vec::new();
        let mut used = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                std::fs::remove_file(&path).ok();
                continue;
            }
            let Some(n) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            used += size;
            pending.push((n, size));
        }
        pending.sort_unstable();
        let next = pending.last().map_or(1, |(n, _)| n + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            max_bytes,
            state: Mutex::new(State {
                next,
                used,
                pending: pending.into(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n:020}.json"))
    }

    /// Whether deliveries wait in the spool.
    pub fn is_empty(&self) -> bool {
        self.state().pending.is_empty()
    }

    /// The number of the oldest delivery waiting.
    pub fn front(&self) -> Option<u64> {
        self.state().pending.front().map(|(n, _)| *n)
    }

    /// Deliveries waiting.
    pub fn len(&self) -> usize {
        self.state().pending.len()
    }

    /// Spools a delivery durably (fsynced) behind those already there.
    pub fn push(&self, d: &Spooled) -> Result<(), SpoolError> {
        let bytes = serde_json::to_vec(d).map_err(|e| SpoolError::Damaged(e.to_string()))?;
        let size = bytes.len() as u64;
        // The number is taken, and the space reserved, under the lock; the file is
        // written outside it and becomes visible to the drainer only when renamed.
        let n = {
            let mut s = self.state();
            if s.used + size > self.max_bytes {
                return Err(SpoolError::Full {
                    used: s.used,
                    max: self.max_bytes,
                });
            }
            s.used += size;
            let n = s.next;
            s.next += 1;
            n
        };
        let written = (|| {
            let tmp = self.dir.join(format!("{n:020}.tmp"));
            {
                use std::io::Write as _;
                let mut f = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
                f.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
                f.sync_all().map_err(|e| io_error(&tmp, e))?;
            }
            std::fs::rename(&tmp, self.path(n)).map_err(|e| io_error(&tmp, e))?;
            sync_dir(&self.dir)
        })();
        let mut s = self.state();
        match written {
            Ok(()) => {
                // Kept in number order: a later number can finish writing first.
                let at = s.pending.partition_point(|(m, _)| *m < n);
                s.pending.insert(at, (n, size));
                Ok(())
            }
            Err(e) => {
                s.used -= size;
                Err(e)
            }
        }
    }

    /// The oldest spooled delivery, with its number.
    pub fn oldest(&self) -> Result<Option<(u64, Spooled)>, SpoolError> {
        let Some((n, _)) = self.state().pending.front().copied() else {
            return Ok(None);
        };
        let path = self.path(n);
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        let d = serde_json::from_slice(&bytes).map_err(|e| SpoolError::Damaged(e.to_string()))?;
        Ok(Some((n, d)))
    }

    /// Removes delivery `n` once it is stored.
    pub fn remove(&self, n: u64) -> Result<(), SpoolError> {
        let path = self.path(n);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
        sync_dir(&self.dir)?;
        self.forget(n);
        Ok(())
    }

    /// Drops delivery `n` from what waits, and its size from what is used.
    fn forget(&self, n: u64) {
        let mut s = self.state();
        if let Some(at) = s.pending.iter().position(|(m, _)| *m == n)
            && let Some((_, size)) = s.pending.remove(at)
        {
            s.used = s.used.saturating_sub(size);
        }
    }

    /// Sets a damaged delivery aside (`<n>.damaged`), so that it does not block the others.
    pub fn set_aside(&self, n: u64) -> Result<(), SpoolError> {
        let path = self.path(n);
        let aside = self.dir.join(format!("{n:020}.damaged"));
        std::fs::rename(&path, &aside).map_err(|e| io_error(&path, e))?;
        self.forget(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &str) -> Spooled {
        let work = Enqueue {
            supersede: vec!["env:gitlab:lab/x:main".into()],
            jobs: vec![NewJob {
                kind: JobKind::parse("record-push").unwrap(),
                args: "{\"a\":1}".into(),
                supersede_key: None,
                max_attempts: 5,
            }],
        };
        Spooled::new(key, "gitlab", "push", "queued", b"{\"x\":\xff}", &work)
    }

    #[test]
    fn deliveries_come_back_in_order_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(spool.is_empty());
        for key in ["a", "b", "c"] {
            spool.push(&delivery(key)).unwrap();
        }
        // A crash while writing leaves a .tmp, which is not a delivery.
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"{half").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 3);
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
        let (n, first) = spool.oldest().unwrap().unwrap();
        assert_eq!(first.dedupe_key, "a");
        assert_eq!(first.body().unwrap(), b"{\"x\":\xff}");
        assert_eq!(first.work().unwrap(), {
            let d = delivery("a");
            d.work().unwrap()
        });
        spool.remove(n).unwrap();
        assert_eq!(spool.oldest().unwrap().unwrap().1.dedupe_key, "b");
        // New deliveries go behind the ones left.
        spool.push(&delivery("d")).unwrap();
        let mut keys = Vec::new();
        while let Some((n, d)) = spool.oldest().unwrap() {
            keys.push(d.dedupe_key);
            spool.remove(n).unwrap();
        }
        assert_eq!(keys, ["b", "c", "d"]);
        assert!(spool.is_empty());
    }

    #[test]
    fn a_full_spool_refuses_and_recovers_its_space() {
        let dir = tempfile::tempdir().unwrap();
        let size = serde_json::to_vec(&delivery("a")).unwrap().len() as u64;
        let spool = Spool::open(dir.path(), size * 2).unwrap();
        spool.push(&delivery("a")).unwrap();
        spool.push(&delivery("b")).unwrap();
        assert!(matches!(
            spool.push(&delivery("c")),
            Err(SpoolError::Full { .. })
        ));
        let (n, _) = spool.oldest().unwrap().unwrap();
        spool.remove(n).unwrap();
        spool.push(&delivery("c")).unwrap();
    }

    #[test]
    fn a_damaged_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(&delivery("a")).unwrap();
        spool.push(&delivery("b")).unwrap();
        let (n, _) = spool.oldest().unwrap().unwrap();
        std::fs::write(spool.path(n), b"not json").unwrap();
        assert!(matches!(spool.oldest(), Err(SpoolError::Damaged(_))));
        spool.set_aside(n).unwrap();
        assert_eq!(spool.oldest().unwrap().unwrap().1.dedupe_key, "b");
    }
}
