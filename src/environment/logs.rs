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

struct Live {
    phase: Phase,
    text: String,
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
                    text: String::new(),
                    tx,
                },
            );
        });
    }

    /// Appends a line.
    pub fn line(&self, id: i64, line: &str) {
        self.with(|m| {
            if let Some(live) = m.get_mut(&id) {
                live.text.push_str(line);
                live.text.push('\n');
                let _ = live.tx.send(LogEvent {
                    phase: live.phase,
                    message: line.to_owned(),
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
                    .push_str(&format!("[{}] {message}\n", phase.as_str()));
                let _ = live.tx.send(LogEvent {
                    phase,
                    message: message.to_owned(),
                });
            }
        });
    }

    /// Stops tracking `id` and returns its whole log. Readers see their stream end.
    pub fn finish(&self, id: i64) -> String {
        self.with(|m| m.remove(&id).map(|l| l.text).unwrap_or_default())
    }

    /// The log text so far, if the build is running here.
    pub fn text(&self, id: i64) -> Option<String> {
        self.with(|m| m.get(&id).map(|l| l.text.clone()))
    }

    pub fn subscribe(&self, id: i64) -> Option<Subscription> {
        self.with(|m| {
            m.get(&id).map(|l| Subscription {
                phase: l.phase,
                so_far: l.text.clone(),
                rx: l.tx.subscribe(),
            })
        })
    }
}
