//! Live build logs: lines and phase changes of running builds, kept in memory and
//! broadcast to Server-Sent-Events readers; the log's chunks are stored in the database
//! when a build ends (and served from there, one chunk at a time).
//!
//! A log is a sequence of chunks of whole lines. It is bounded: the first chunks (the steps
//! that set the build up) and the most recent ones are kept, what lies between is left out
//! and one line says how much. Chunks are shared, not copied: a reader joining a running
//! build gets the chunks so far by reference.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

pub use crate::storage::BuildPhase as Phase;

/// One event of a build's log stream.
#[derive(Debug, Clone, Serialize)]
pub struct LogEvent {
    pub phase: Phase,
    pub message: String,
}

/// The most of a build's log kept, in memory and in the database: the first
/// [`LOG_HEAD_BYTES`] and the most recent part, up to this size in all (give or take a
/// line), with a line saying how much was left out between them. A build that prints
/// without end cannot grow nbforge's memory or its database.
pub const MAX_LOG_BYTES: usize = 2 * 1024 * 1024;
/// The beginning of a log always kept (the steps that set the build up).
pub const LOG_HEAD_BYTES: usize = 256 * 1024;
/// A chunk of a log holds whole lines, closed once it reaches this size; it is the unit
/// kept, dropped, stored (one row) and read back.
pub const LOG_CHUNK_BYTES: usize = 64 * 1024;
/// The longest line kept whole; longer ones are cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

const HEAD_CHUNKS: i64 = (LOG_HEAD_BYTES / LOG_CHUNK_BYTES) as i64;

/// One chunk of a log: whole lines, numbered from 0 in the order written.
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub seq: i64,
    pub text: Arc<str>,
}

/// A log as chunks, in order, the part left out replaced by a chunk saying so.
#[derive(Debug, Clone, Default)]
pub struct LogChunks(pub Vec<LogChunk>);

impl LogChunks {
    /// The lines of the log, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|c| c.text.lines())
    }

    /// The whole text (bounded by [`MAX_LOG_BYTES`]).
    pub fn text(&self) -> String {
        self.0.iter().map(|c| &*c.text).collect()
    }

    /// `(seq, text)` pairs, as stored.
    pub fn rows(&self) -> Vec<(i64, &str)> {
        self.0.iter().map(|c| (c.seq, &*c.text)).collect()
    }
}

/// A log's text, bounded: its first chunks, then its most recent ones.
#[derive(Default)]
struct LogText {
    /// Closed chunks kept, in order: up to [`HEAD_CHUNKS`] first ones, then recent ones.
    closed: VecDeque<LogChunk>,
    /// The chunk being written.
    open: String,
    next_seq: i64,
    /// Bytes in `closed`.
    kept: usize,
    /// Bytes dropped between the head and the recent chunks.
    cut: usize,
}

impl LogText {
    fn push_line(&mut self, line: &str) {
        let line = crate::text::truncate(line, MAX_LINE_BYTES);
        self.open.push_str(&line);
        self.open.push('\n');
        if self.open.len() >= LOG_CHUNK_BYTES {
            self.close_chunk();
        }
    }

    fn close_chunk(&mut self) {
        let text: Arc<str> = Arc::from(std::mem::take(&mut self.open));
        self.kept += text.len();
        self.closed.push_back(LogChunk {
            seq: self.next_seq,
            text,
        });
        self.next_seq += 1;
        // Leave room for the open chunk; drop the oldest chunk after the head (never the
        // newest), so the part left out is one run of chunks.
        while self.kept + LOG_CHUNK_BYTES > MAX_LOG_BYTES {
            let Some(i) = self.closed.iter().position(|c| c.seq >= HEAD_CHUNKS) else {
                break;
            };
            if i + 1 >= self.closed.len() {
                break;
            }
            if let Some(c) = self.closed.remove(i) {
                self.kept -= c.text.len();
                self.cut += c.text.len();
            }
        }
    }

    fn chunks(&self) -> LogChunks {
        let mut out = Vec::with_capacity(self.closed.len() + 2);
        let mut prev: Option<i64> = None;
        for c in &self.closed {
            if prev.is_some_and(|p| c.seq > p + 1) {
                out.push(LogChunk {
                    seq: c.seq - 1,
                    text: Arc::from(format!("[… {} bytes of the log left out …]\n", self.cut)),
                });
            }
            out.push(c.clone());
            prev = Some(c.seq);
        }
        if !self.open.is_empty() {
            out.push(LogChunk {
                seq: self.next_seq,
                text: Arc::from(self.open.as_str()),
            });
        }
        LogChunks(out)
    }
}

struct Live {
    phase: Phase,
    text: LogText,
    tx: broadcast::Sender<LogEvent>,
}

/// The logs of the builds running in this process.
#[derive(Default)]
pub struct LogHub {
    live: Mutex<HashMap<i64, Live>>,
}

/// What a reader gets when it joins a running build: the log so far (its chunks, shared
/// with the build, plus a copy of the chunk being written) and what follows.
pub struct Subscription {
    pub phase: Phase,
    pub so_far: LogChunks,
    pub rx: broadcast::Receiver<LogEvent>,
}

impl LogHub {
    pub fn new() -> LogHub {
        LogHub::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<i64, Live>) -> R) -> R {
        let mut guard = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Starts tracking build `id` in `phase`.
    pub fn start(&self, id: i64, phase: Phase) {
        self.with(|m| {
            let (tx, _) = broadcast::channel(1024);
            m.insert(
                id,
                Live {
                    phase,
                    text: LogText::default(),
                    tx,
                },
            );
        });
    }

    /// Appends a line.
    pub fn line(&self, id: i64, line: &str) {
        self.with(|m| {
            if let Some(live) = m.get_mut(&id) {
                live.text.push_line(line);
                let _ = live.tx.send(LogEvent {
                    phase: live.phase,
                    message: crate::text::truncate(line, MAX_LINE_BYTES).into_owned(),
                });
            }
        });
    }

    /// Moves to a new phase with a message (also appended to the log).
    pub fn phase(&self, id: i64, phase: Phase, message: &str) {
        self.with(|m| {
            if let Some(live) = m.get_mut(&id) {
                live.phase = phase;
                live.text
                    .push_line(&format!("[{}] {message}", phase.as_str()));
                let _ = live.tx.send(LogEvent {
                    phase,
                    message: message.to_owned(),
                });
            }
        });
    }

    /// Stops tracking `id` and returns its log (bounded). Readers see their stream end.
    pub fn finish(&self, id: i64) -> LogChunks {
        self.with(|m| m.remove(&id).map(|l| l.text.chunks()).unwrap_or_default())
    }

    pub fn subscribe(&self, id: i64) -> Option<Subscription> {
        self.with(|m| {
            m.get(&id).map(|l| Subscription {
                phase: l.phase,
                so_far: l.text.chunks(),
                rx: l.tx.subscribe(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build printing without end kept all of its log in memory, and every reader that
    /// joined got a copy of all of it.
    #[test]
    fn build_logs_grow_without_bound() {
        let hub = LogHub::new();
        hub.start(1, Phase::Building);
        hub.line(1, "Step 1/3 : FROM nbforge/base:bookworm");
        let noisy = "x".repeat(1000);
        for _ in 0..20_000 {
            hub.line(1, &noisy);
        }
        hub.line(1, &"y".repeat(10 * MAX_LINE_BYTES));
        hub.line(1, "the last line");
        let chunks = hub.subscribe(1).unwrap().so_far;
        assert!(
            chunks
                .0
                .iter()
                .all(|c| c.text.len() < LOG_CHUNK_BYTES + MAX_LINE_BYTES + 2)
        );
        let so_far = chunks.text();
        assert!(
            so_far.len() <= MAX_LOG_BYTES + MAX_LINE_BYTES + 200,
            "{}",
            so_far.len()
        );
        assert!(so_far.starts_with("Step 1/3 : FROM nbforge/base:bookworm\n"));
        assert!(so_far.contains("bytes of the log left out"));
        assert!(so_far.ends_with("the last line\n"));
        let whole = hub.finish(1).text();
        assert_eq!(whole, so_far);
    }

    #[test]
    fn short_logs_are_kept_whole() {
        let hub = LogHub::new();
        hub.start(2, Phase::Fetching);
        hub.line(2, "one");
        hub.phase(2, Phase::Built, "done");
        assert_eq!(hub.finish(2).text(), "one\n[built] done\n");
    }
}
