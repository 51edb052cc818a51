//! The time storage and the job queue read "now" from: the system clock in production, a
//! manual clock in tests, so that leases, backoff and schedules are tested by moving time
//! forward instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of the current time, in Unix epoch milliseconds. Cheap to clone; clones of a
/// manual clock share its time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// A time that moves only when told to.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at the system's current time.
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(system_ms())))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => system_ms(),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(millis(by), Ordering::SeqCst);
        }
    }
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}
