//! Live build logs: lines and phase changes of running builds, kept in memory and
//! broadcast to Server-Sent-Events readers; the whole log is stored in the database
//! when a build ends (and served as plain text from there).

use std::collections::HashMap;
use std::sync::Mutex;

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
/// [`LOG_HEAD_BYTES`] and the last part up to this size in all, with a line saying how much
/// was left out between them. A build that prints without end cannot grow nbforge's memory.
pub const MAX_LOG_BYTES: usize = 2 * 1024 * 1024;
/// The beginning of a log always kept (the steps that set the build up).
pub const LOG_HEAD_BYTES: usize = 256 * 1024;
/// The longest line kept whole; longer ones are cut.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A log's text, bounded: its head, then its most recent part.
#[derive(Default)]
struct LogText {
    head: String,
    tail: String,
    /// Bytes dropped between head and tail.
    cut: usize,
}

impl LogText {
    fn push_line(&mut self, line: &str) {
        let line = crate::text::truncate(line, MAX_LINE_BYTES);
        if self.cut == 0 && self.tail.is_empty() && self.head.len() + line.len() < LOG_HEAD_BYTES {
            self.head.push_str(&line);
            self.head.push('\n');
            return;
        }
        self.tail.push_str(&line);
        self.tail.push('\n');
        let budget = MAX_LOG_BYTES - LOG_HEAD_BYTES;
        // Drop whole lines from the front of the tail, a quarter of the budget at a time,
        // so that a long log costs amortized constant work per line.
        if self.tail.len() > budget {
            let mut drop = self.tail.len() - budget + budget / 4;
            drop = self.tail[drop.min(self.tail.len())..]
                .find('\n')
                .map_or(self.tail.len(), |i| drop + i + 1);
            self.cut += drop;
            self.tail.drain(..drop);
        }
    }

    fn text(&self) -> String {
        if self.cut == 0 {
            return format!("{}{}", self.head, self.tail);
        }
        format!(
            "{}[… {} bytes of the log left out …]\n{}",
            self.head, self.cut, self.tail
        )
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

/// What a reader gets when it joins a running build: the log so far and what follows.
pub struct Subscription {
    pub phase: Phase,
    pub so_far: String,
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

    /// Stops tracking `id` and returns its whole log. Readers see their stream end.
    pub fn finish(&self, id: i64) -> String {
        self.with(|m| m.remove(&id).map(|l| l.text.text()).unwrap_or_default())
    }

    /// The log text so far, if the build is running here.
    pub fn text(&self, id: i64) -> Option<String> {
        self.with(|m| m.get(&id).map(|l| l.text.text()))
    }

    pub fn subscribe(&self, id: i64) -> Option<Subscription> {
        self.with(|m| {
            m.get(&id).map(|l| Subscription {
                phase: l.phase,
                so_far: l.text.text(),
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
        let so_far = hub.subscribe(1).unwrap().so_far;
        assert!(so_far.len() <= MAX_LOG_BYTES + 200, "{}", so_far.len());
        assert!(so_far.starts_with("Step 1/3 : FROM nbforge/base:bookworm\n"));
        assert!(so_far.contains("bytes of the log left out"));
        assert!(so_far.ends_with("the last line\n"));
        let whole = hub.finish(1);
        assert_eq!(whole, so_far);
    }

    #[test]
    fn short_logs_are_kept_whole() {
        let hub = LogHub::new();
        hub.start(2, Phase::Fetching);
        hub.line(2, "one");
        hub.phase(2, Phase::Built, "done");
        assert_eq!(hub.finish(2), "one\n[built] done\n");
    }
}
