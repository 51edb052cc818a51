//! What happens to sessions once they run: admission before a launch, culling, and the
//! retention of sessions that ended on their own.
//!
//! **Admission** (for the launch flow): before starting a session, call
//! [`admit`]`(backend, &settings.lifecycle, &owner, &home)`. `Ok(())` means go ahead;
//! [`Refusal::TooManySessions`] means the owner already has their limit of live sessions
//! (`NBFORGE_SESSIONS_PER_USER`, `NBFORGE_SESSIONS_PER_VISITOR`) and names the session idle
//! the longest, so the page can offer to stop it (`DELETE /api/sessions/{id}` or the form
//! `POST /sessions/{id}/stop`); [`Refusal::OverQuota`] means the user's home holds at least
//! `NBFORGE_HOME_QUOTA` and says how much; [`Refusal::Unavailable`] is the runtime failing
//! (log it, answer 503). The `Display` of the first two is meant for the user. Admission is
//! advisory across processes: two launches at the same instant may both be admitted.
//!
//! **Culling** ([`cull`], run by the `cull-sessions` job every `NBFORGE_SESSION_CULL_PERIOD_SECS`):
//! a running session is stopped when its Jupyter server has been idle longer than
//! `NBFORGE_SESSION_IDLE_SECS` (visitors: `NBFORGE_ANONYMOUS_SESSION_IDLE_SECS`) — a kernel
//! busy computing is never idle — or when it is older than `NBFORGE_SESSION_MAX_AGE_SECS`.
//! A session that ended on its own (killed for memory, exited) stays listed, with why,
//! until its owner dismisses it or `NBFORGE_SESSION_ENDED_RETENTION_SECS` pass; then it is
//! removed. Stopping removes the container, never the user's home. The same pass records
//! sessions by state and their CPU and memory in the metrics, and refreshes the disk use
//! of the homes of users with running sessions.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;

use super::{Activity, Home, Owner, SessionBackend, SessionError, SessionInfo, SessionState};
use crate::config::LifecycleSettings;
use crate::metrics::{CullReason, Metrics, SessionUsage};

/// How old a home's measure may be when a launch checks the quota.
pub const QUOTA_MEASURE_MAX_AGE: Duration = Duration::from_secs(60);
/// How often the culler measures the homes of users with running sessions.
pub const HOME_MEASURE_PERIOD: Duration = Duration::from_secs(600);
/// Sessions whose activity or stats are read at once.
const AT_ONCE: usize = 8;

/// An RFC 3339 time (as Jupyter and Docker write them) in epoch milliseconds.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    // Docker's "not yet" is year 1.
    (t.year() > 1970).then(|| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())?
}

/// Epoch milliseconds as RFC 3339 (UTC).
pub fn ms_rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A size for people: `512 B`, `3.2 MiB`, `10.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a session still runs (or is starting): what counts against the limit.
pub fn is_live(state: &SessionState) -> bool {
    matches!(state, SessionState::Running | SessionState::Starting)
}

/// Whether two owners are the same person: users by id (a renamed user keeps their
/// sessions), visitors by key.
pub fn same_owner(a: &Owner, b: &Owner) -> bool {
    match (a, b) {
        (Owner::User { id: x, .. }, Owner::User { id: y, .. }) => x == y,
        (Owner::Anonymous { visitor: x }, Owner::Anonymous { visitor: y }) => x == y,
        _ => false,
    }
}

/// How long `owner`'s sessions may stay idle.
pub fn idle_limit(settings: &LifecycleSettings, owner: &Owner) -> Duration {
    match owner {
        Owner::User { .. } => settings.idle,
        Owner::Anonymous { .. } => settings.anonymous_idle,
    }
}

/// When a session was last active: Jupyter's last activity, else its start.
pub fn last_active_ms(info: &SessionInfo, activity: Option<&Activity>) -> i64 {
    activity
        .and_then(|a| rfc3339_ms(&a.last_activity))
        .unwrap_or(info.created_ms)
}

/// Why a session should be stopped now, if it should.
pub fn cull_reason(
    info: &SessionInfo,
    activity: Option<&Activity>,
    now_ms: i64,
    settings: &LifecycleSettings,
) -> Option<CullReason> {
    match &info.state {
        SessionState::Stopped | SessionState::Failed(_) => {
            let ended = info.finished_ms.unwrap_or(info.created_ms);
            (now_ms - ended > ms(settings.ended_retention)).then_some(CullReason::Ended)
        }
        SessionState::Running | SessionState::Starting => {
            if now_ms - info.created_ms > ms(settings.max_age) {
                return Some(CullReason::MaxAge);
            }
            // Without an answer from Jupyter (still starting, or hung) only the age counts.
            let activity = activity?;
            let idle = now_ms - last_active_ms(info, Some(activity));
            (!activity.busy && idle > ms(idle_limit(settings, &info.owner)))
                .then_some(CullReason::Idle)
        }
    }
}

/// The session a refusal offers to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdleSession {
    pub id: String,
    pub name: String,
    /// Where it is served: `/user/<owner>/<name>/`.
    pub url: String,
    /// When it was last active (RFC 3339).
    pub last_activity: String,
}

/// Why a session may not start now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The owner has `limit` live sessions already.
    #[error(
        "You already have {limit} running session{}, the most you may have at once. Stop one to start another{}.",
        if *limit == 1 { "" } else { "s" },
        match oldest_idle { Some(s) => format!(" (`{}` has been idle the longest)", s.name), None => String::new() }
    )]
    TooManySessions {
        limit: usize,
        /// The live session idle the longest (none when all are busy computing).
        oldest_idle: Option<IdleSession>,
    },
    /// The user's home holds `used_bytes`, at or over the quota.
    #[error(
        "Your home folder uses {} of its {} quota. Delete some files (in a running session, or ask an administrator) to start a new session.",
        human_bytes(*used_bytes),
        human_bytes(*quota_bytes)
    )]
    OverQuota { used_bytes: u64, quota_bytes: u64 },
    /// The runtime could not be asked (logged, not shown).
    #[error(transparent)]
    Unavailable(#[from] SessionError),
}

/// Whether `owner` may start one more session with `home` now (see the module docs).
pub async fn admit(
    backend: &dyn SessionBackend,
    settings: &LifecycleSettings,
    owner: &Owner,
    home: &Home,
) -> Result<(), Refusal> {
    let limit = match owner {
        Owner::User { .. } => settings.per_user,
        Owner::Anonymous { .. } => settings.per_visitor,
    };
    let live: Vec<SessionInfo> = backend
        .list()
        .await?
        .into_iter()
        .filter(|s| same_owner(&s.owner, owner) && is_live(&s.state))
        .collect();
    if live.len() >= limit {
        let activities = activities(backend, &live).await;
        let oldest_idle = live
            .iter()
            .filter(|s| !activities.get(&s.id.0).is_some_and(|a| a.busy))
            .min_by_key(|s| last_active_ms(s, activities.get(&s.id.0)))
            .map(|s| IdleSession {
                id: s.id.0.clone(),
                name: s.name.clone(),
                url: s.base_url.clone(),
                last_activity: ms_rfc3339(last_active_ms(s, activities.get(&s.id.0))),
            });
        return Err(Refusal::TooManySessions { limit, oldest_idle });
    }
    if let (Some(quota), Home::User { user_id }) = (settings.home_quota, home) {
        match backend.home_usage(*user_id, QUOTA_MEASURE_MAX_AGE).await {
            Ok(Some(usage)) if usage.bytes >= quota => {
                return Err(Refusal::OverQuota {
                    used_bytes: usage.bytes,
                    quota_bytes: quota,
                });
            }
            Ok(_) => {}
            // A home that cannot be measured does not keep its owner out.
            Err(e) => tracing::warn!(user_id, "measuring the home of user {user_id}: {e}"),
        }
    }
    Ok(())
}

/// Runs `each` over `items`, a few at once, keeping the answers that are `Some`. (The
/// futures are boxed first: stream adapters over borrowing closures do not prove `Send`
/// inside the jobs' futures.)
async fn a_few_at_once<'a, T>(
    items: Vec<futures_util::future::BoxFuture<'a, Option<T>>>,
) -> Vec<T> {
    futures_util::stream::iter(items)
        .buffer_unordered(AT_ONCE)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// The activity of each running session that answers, by session id, read a few at once.
pub async fn activities(
    backend: &dyn SessionBackend,
    sessions: &[SessionInfo],
) -> HashMap<String, Activity> {
    let mut reads = Vec::new();
    for s in sessions.iter().filter(|s| s.state == SessionState::Running) {
        reads.push(Box::pin(async move {
            match backend.activity(&s.id).await {
                Ok(Some(a)) => Some((s.id.0.clone(), a)),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(session.id = %s.id, "{e}");
                    None
                }
            }
        }) as futures_util::future::BoxFuture<'_, _>);
    }
    a_few_at_once(reads).await.into_iter().collect()
}

/// What a cull pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CullReport {
    /// Sessions looked at.
    pub sessions: usize,
    /// Sessions stopped (or ended ones removed), with why.
    pub culled: Vec<(super::SessionId, CullReason)>,
}

/// One cull pass over every session of `backend` (see the module docs). A session that
/// cannot be stopped is logged and tried again at the next pass.
pub async fn cull(
    backend: &dyn SessionBackend,
    settings: &LifecycleSettings,
    metrics: &Metrics,
) -> Result<CullReport, SessionError> {
    let sessions = backend.list().await?;
    let activities = activities(backend, &sessions).await;
    let now = now_ms();
    let mut report = CullReport {
        sessions: sessions.len(),
        ..Default::default()
    };
    for s in &sessions {
        let activity = activities.get(&s.id.0);
        let Some(reason) = cull_reason(s, activity, now, settings) else {
            continue;
        };
        let idle_secs = (now - last_active_ms(s, activity)) / 1000;
        let age_secs = (now - s.created_ms) / 1000;
        match backend.stop(&s.id).await {
            Ok(()) => {
                tracing::info!(
                    session.id = %s.id,
                    session.owner = %s.owner.url_name(),
                    forge.project = %s.project.path,
                    cull.reason = reason.as_str(),
                    "session {} ({}) culled: {} (idle {idle_secs} s, age {age_secs} s)",
                    s.id,
                    s.name,
                    reason.describe()
                );
                metrics.session_culled(reason);
                report.culled.push((s.id.clone(), reason));
            }
            Err(e) => tracing::warn!(session.id = %s.id, "culling session {}: {e}", s.id),
        }
    }
    let culled: Vec<&super::SessionId> = report.culled.iter().map(|(id, _)| id).collect();
    let remaining: Vec<&SessionInfo> = sessions
        .iter()
        .filter(|s| !culled.contains(&&s.id))
        .collect();
    metrics.set_session_states(remaining.iter().map(|s| state_name(&s.state)));
    let usage = usage(backend, &remaining).await;
    metrics.set_session_usage(&usage, settings.metrics_per_user);
    // Homes change while their sessions run: measure them now and then, in the
    // background of this pass, so that `/me` and admission find a recent value.
    let mut users: Vec<i64> = remaining
        .iter()
        .filter(|s| is_live(&s.state))
        .filter_map(|s| match s.owner {
            Owner::User { id, .. } => Some(id),
            Owner::Anonymous { .. } => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    for user_id in users {
        if let Err(e) = backend.home_usage(user_id, HOME_MEASURE_PERIOD).await {
            tracing::warn!(user_id, "measuring the home of user {user_id}: {e}");
        }
    }
    Ok(report)
}

/// A session state's name in the API and the metrics.
pub fn state_name(state: &SessionState) -> &'static str {
    match state {
        SessionState::Starting => "starting",
        SessionState::Running => "running",
        SessionState::Stopped => "stopped",
        SessionState::Failed(_) => "failed",
    }
}

/// The CPU and memory of the running sessions, read a few at once.
async fn usage(backend: &dyn SessionBackend, sessions: &[&SessionInfo]) -> Vec<SessionUsage> {
    let mut reads = Vec::new();
    for s in sessions.iter().filter(|s| s.state == SessionState::Running) {
        reads.push(Box::pin(async move {
            match backend.stats(&s.id).await {
                Ok(Some(stats)) => Some(SessionUsage {
                    owner: s.owner.url_name(),
                    stats,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(session.id = %s.id, "reading the stats of session {}: {e}", s.id);
                    None
                }
            }
        }) as futures_util::future::BoxFuture<'_, _>);
    }
    a_few_at_once(reads).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::sessions::{SessionId, SessionProject};

    fn session(owner: Owner, state: SessionState, created_ms: i64) -> SessionInfo {
        SessionInfo {
            id: SessionId("a".repeat(32)),
            owner,
            name: "x".into(),
            project: SessionProject {
                forge: "gitlab".into(),
                path: "lab/x".into(),
                commit: "c".into(),
            },
            image: "i".into(),
            base_url: "/user/ada/x/".into(),
            default_url: "lab".into(),
            state,
            address: None,
            token: Secret::new("t"),
            created_ms,
            finished_ms: None,
            checkout: None,
        }
    }

    fn activity(last_ms: i64, busy: bool) -> Activity {
        Activity {
            last_activity: ms_rfc3339(last_ms),
            connections: 0,
            kernels: 1,
            busy,
        }
    }

    #[test]
    fn idle_old_and_long_ended_sessions_are_culled_busy_ones_are_not() {
        let s = LifecycleSettings::default();
        let user = Owner::User {
            id: 1,
            username: "ada".into(),
        };
        let visitor = Owner::Anonymous {
            visitor: "v".into(),
        };
        let now = 1_800_000_000_000;
        let minute = 60_000;
        let running = session(user.clone(), SessionState::Running, now - 20 * minute);
        assert_eq!(
            cull_reason(&running, Some(&activity(now - 11 * minute, false)), now, &s),
            Some(CullReason::Idle)
        );
        assert_eq!(
            cull_reason(&running, Some(&activity(now - 11 * minute, true)), now, &s),
            None,
            "a busy kernel is activity"
        );
        assert_eq!(
            cull_reason(&running, Some(&activity(now - 9 * minute, false)), now, &s),
            None
        );
        assert_eq!(cull_reason(&running, None, now, &s), None);
        let anonymous = session(visitor, SessionState::Running, now - 20 * minute);
        assert_eq!(
            cull_reason(
                &anonymous,
                Some(&activity(now - 6 * minute, false)),
                now,
                &s
            ),
            Some(CullReason::Idle),
            "visitors' sessions idle sooner"
        );
        let old = session(user.clone(), SessionState::Running, now - 9 * 60 * minute);
        assert_eq!(
            cull_reason(&old, Some(&activity(now, true)), now, &s),
            Some(CullReason::MaxAge)
        );
        let mut oom = session(
            user,
            SessionState::Failed("killed: out of memory".into()),
            now - 60 * minute,
        );
        oom.finished_ms = Some(now - 50 * minute);
        assert_eq!(cull_reason(&oom, None, now, &s), None, "kept a while");
        oom.finished_ms = Some(now - 25 * 60 * minute);
        assert_eq!(cull_reason(&oom, None, now, &s), Some(CullReason::Ended));
    }

    #[test]
    fn times_and_sizes_read_and_print() {
        assert_eq!(
            rfc3339_ms("2026-11-30T20:22:41.123456Z"),
            Some(1_796_070_161_123)
        );
        assert_eq!(rfc3339_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ms("yesterday"), None);
        assert_eq!(
            rfc3339_ms(&ms_rfc3339(1_796_070_161_123)),
            Some(1_796_070_161_123)
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
        let refusal = Refusal::OverQuota {
            used_bytes: 11 << 30,
            quota_bytes: 10 << 30,
        };
        assert!(
            refusal.to_string().contains("11.0 GiB of its 10.0 GiB"),
            "{refusal}"
        );
    }
}
