//! Runs of visitors who are not logged in (`NBFORGE_ANONYMOUS_RUNS`): where they keep
//! their result, their stricter limits, and how their results expire.
//!
//! A visitor's run executes with a throwaway home of its own, the volume
//! `nbforge-home-run-<run id>` (labelled `org.nbforge.home=run`), which holds its result
//! until the result expires: `NBFORGE_ANONYMOUS_RESULT_HOURS` after the run ended, the
//! `cleanup` job deletes the run and its volume ([`expire`]); deleting the run removes it
//! at once. The same job removes the throwaway homes of visitors' Jupyter sessions that no
//! session container uses any more (nbforge stopped before it could remove them). Run
//! homes are only ever removed with their run, as found in this nbforge's database: another
//! nbforge sharing the engine keeps its own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveVolumeOptions,
};

use super::Engine;
use crate::config::Settings;
use crate::jobs::{Context, JobError};
use crate::sessions::Resources;
use crate::sessions::docker::{
    LABEL_CREATED, LABEL_HOME, LABEL_OWNER_ID, LABEL_SESSION, LABEL_VISITOR,
};
use crate::storage::{RunRow, millis};

/// The value of [`LABEL_HOME`] on a visitor's run home (sessions' throwaway homes have
/// `session`, users' homes the user's id).
pub const RUN_HOME: &str = "run";
/// On a visitor's run home: the run it belongs to.
pub const LABEL_HOME_RUN: &str = "org.nbforge.home-run";

/// A throwaway home younger than this is never removed as unused: its session may be
/// starting (the volume is made before the container).
const UNUSED_HOME_GRACE: Duration = Duration::from_secs(3600);
/// Expired runs removed by one cleanup, at most.
const EXPIRE_BATCH: i64 = 500;

/// The home a run executes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunHome {
    /// The owner's own home, `nbforge-home-<user id>`.
    User(i64),
    /// A visitor's throwaway home, one per run.
    Throwaway { run_id: String, visitor: String },
}

/// The throwaway home volume of a visitor's run.
pub fn home_volume(run_id: &str) -> String {
    format!("nbforge-home-run-{run_id}")
}

impl RunHome {
    /// The home of a stored run; `None` for a run with no owner at all.
    pub fn of(row: &RunRow) -> Option<RunHome> {
        match (row.owner_user_id, &row.owner_visitor) {
            (Some(id), _) => Some(RunHome::User(id)),
            (None, Some(visitor)) => Some(RunHome::Throwaway {
                run_id: row.id.clone(),
                visitor: visitor.clone(),
            }),
            (None, None) => None,
        }
    }

    pub fn volume(&self) -> String {
        match self {
            RunHome::User(id) => crate::sessions::docker::home_volume(*id),
            RunHome::Throwaway { run_id, .. } => home_volume(run_id),
        }
    }

    /// The labels of the home volume nbforge makes.
    pub fn volume_labels(&self) -> HashMap<String, String> {
        match self {
            RunHome::User(id) => HashMap::from([(LABEL_HOME.to_owned(), id.to_string())]),
            RunHome::Throwaway { run_id, .. } => HashMap::from([
                (LABEL_HOME.to_owned(), RUN_HOME.to_owned()),
                (LABEL_HOME_RUN.to_owned(), run_id.clone()),
                (
                    LABEL_CREATED.to_owned(),
                    crate::storage::now_ms().to_string(),
                ),
            ]),
        }
    }

    /// The label naming the owner on the run's containers.
    pub fn owner_label(&self) -> (String, String) {
        match self {
            RunHome::User(id) => (LABEL_OWNER_ID.to_owned(), id.to_string()),
            RunHome::Throwaway { visitor, .. } => (LABEL_VISITOR.to_owned(), visitor.clone()),
        }
    }
}

/// Whether the run is a visitor's.
pub fn is_visitors(row: &RunRow) -> bool {
    row.owner_user_id.is_none() && row.owner_visitor.is_some()
}

/// How long the run may execute: `NBFORGE_RUN_TIMEOUT_SECS`, and for a visitor's run at
/// most `NBFORGE_ANONYMOUS_RUN_TIMEOUT_SECS`.
pub fn timeout(settings: &Settings, row: &RunRow) -> Duration {
    if is_visitors(row) {
        settings.visitor_runs.timeout.min(settings.runs.timeout)
    } else {
        settings.runs.timeout
    }
}

/// The memory and CPUs of the run: what the worksheet asks for, and for a visitor's run at
/// most `NBFORGE_ANONYMOUS_RUN_MEMORY` and `NBFORGE_ANONYMOUS_RUN_CPUS` (the session
/// maxima cap both later).
pub fn resources(settings: &Settings, row: &RunRow, asked: Resources) -> Resources {
    if !is_visitors(row) {
        return asked;
    }
    let caps = &settings.visitor_runs;
    Resources {
        memory_bytes: match asked.memory_bytes {
            0 => caps.memory_bytes,
            n => n.min(caps.memory_bytes),
        },
        cpus: if asked.cpus > 0.0 {
            asked.cpus.min(caps.cpus)
        } else {
            caps.cpus
        },
    }
}

/// When a visitor's run's result expires (epoch milliseconds); `None` for users' runs and
/// runs that have not ended.
pub fn expires_at(settings: &Settings, row: &RunRow) -> Option<i64> {
    if !is_visitors(row) {
        return None;
    }
    row.finished_at
        .map(|end| end.saturating_add(millis(settings.visitor_runs.retention)))
}

/// What one cleanup removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Visitors' runs whose results expired (rows and homes).
    pub runs: usize,
    /// Sessions' throwaway homes no session used.
    pub homes: usize,
}

/// Deletes visitors' runs that ended more than `NBFORGE_ANONYMOUS_RESULT_HOURS` ago with
/// their homes, then throwaway homes that nothing uses. A run whose home cannot be removed
/// (the engine is unreachable) is kept for the next cleanup.
pub async fn expire(ctx: &Context) -> Result<Expired, JobError> {
    let now = ctx.clock.now_ms();
    let before = now - millis(ctx.settings.visitor_runs.retention);
    let ids = ctx
        .db
        .visitor_runs_ended_before(before, EXPIRE_BATCH)
        .await?;
    let mut expired = Expired::default();
    let engine = match Engine::connect(&ctx.settings) {
        Ok(e) => e,
        Err(e) => {
            if !ids.is_empty() {
                tracing::warn!("cleanup kept {} expired visitors' runs: {e:#}", ids.len());
            }
            return Ok(expired);
        }
    };
    for id in &ids {
        match remove_home(&engine, id).await {
            Ok(()) => {
                ctx.db.delete_run(id).await?;
                expired.runs += 1;
            }
            Err(e) => tracing::warn!(run.id = %id, "cleanup kept the expired run {id}: {e}"),
        }
    }
    match remove_unused_homes(&engine).await {
        Ok(n) => expired.homes = n,
        Err(e) => tracing::warn!("cleanup could not look for unused throwaway homes: {e}"),
    }
    Ok(expired)
}

/// Removes a visitor's run's container and throwaway home (gone already is fine). The
/// engine refuses while a container still has the home; the next cleanup removes it then.
pub async fn remove_home(engine: &Engine, run_id: &str) -> Result<(), bollard::errors::Error> {
    engine.remove(run_id).await;
    remove_volume(engine, &home_volume(run_id)).await
}

async fn remove_volume(engine: &Engine, volume: &str) -> Result<(), bollard::errors::Error> {
    match engine
        .docker()
        .remove_volume(volume, None::<RemoveVolumeOptions>)
        .await
    {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        other => other,
    }
}

/// Removes sessions' throwaway homes older than [`UNUSED_HOME_GRACE`] whose session
/// container is gone (of this nbforge or another on the engine). How many it removed.
///
/// A home's age is by the wall clock, as the engine's times are: its `org.nbforge.created`
/// label (epoch milliseconds, on the homes nbforge makes), or else when the engine made it.
async fn remove_unused_homes(engine: &Engine) -> Result<usize, bollard::errors::Error> {
    let now = crate::storage::now_ms();
    let docker = engine.docker();
    let filters = HashMap::from([("label", vec![format!("{LABEL_HOME}=session")])]);
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await?
        .volumes
        .unwrap_or_default();
    let filters = HashMap::from([("label", vec![LABEL_SESSION.to_owned()])]);
    let sessions: HashSet<String> = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await?
        .into_iter()
        .filter_map(|c| c.labels.and_then(|mut l| l.remove(LABEL_SESSION)))
        .collect();
    let grace = millis(UNUSED_HOME_GRACE);
    let mut removed = 0;
    for volume in volumes {
        let label = |k: &str| volume.labels.get(k).cloned().unwrap_or_default();
        let created = label(LABEL_CREATED).parse::<i64>().ok().or_else(|| {
            volume
                .created_at
                .as_deref()
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
        });
        let old = created.is_some_and(|c| c < now - grace);
        let session = label(LABEL_SESSION);
        if !old || session.is_empty() || sessions.contains(&session) {
            continue;
        }
        // The engine refuses to remove a volume a container still has.
        match remove_volume(engine, &volume.name).await {
            Ok(()) => {
                tracing::info!("cleanup removed the unused throwaway home {}", volume.name);
                removed += 1;
            }
            Err(e) => tracing::warn!("cleanup kept the throwaway home {}: {e}", volume.name),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: Option<i64>, visitor: Option<&str>) -> RunRow {
        RunRow {
            id: "0123456789abcdef0123456789abcdef".into(),
            owner_user_id: user,
            owner_visitor: visitor.map(str::to_owned),
            forge: "gitlab".into(),
            project: "lab/p".into(),
            tag: "v1".into(),
            worksheet: "w.ipynb".into(),
            commit_sha: "c".into(),
            image: None,
            image_digest: None,
            values_json: "{}".into(),
            state: "succeeded".into(),
            message: None,
            error: None,
            result_folder: "results/lab/p/w/x".into(),
            result_html: None,
            cells_done: 0,
            cells_total: 0,
            heading: None,
            cancel_requested: 0,
            job_id: None,
            created_at: 1_000,
            started_at: Some(2_000),
            finished_at: Some(3_000),
            again_of: None,
        }
    }

    #[test]
    fn visitors_runs_get_their_own_home_and_stricter_limits() {
        let settings = Settings::for_database("sqlite::memory:");
        let user = row(Some(7), None);
        let visitor = row(None, Some("abc"));
        assert_eq!(RunHome::of(&user), Some(RunHome::User(7)));
        assert_eq!(RunHome::of(&user).unwrap().volume(), "nbforge-home-7");
        let home = RunHome::of(&visitor).unwrap();
        assert_eq!(
            home.volume(),
            "nbforge-home-run-0123456789abcdef0123456789abcdef"
        );
        assert_eq!(home.volume_labels()[LABEL_HOME], RUN_HOME);
        assert_eq!(
            home.owner_label(),
            (LABEL_VISITOR.to_owned(), "abc".to_owned())
        );
        assert_eq!(RunHome::of(&row(None, None)), None);

        let asked = Resources {
            memory_bytes: 0,
            cpus: 0.0,
        };
        assert_eq!(resources(&settings, &user, asked), asked);
        let capped = resources(&settings, &visitor, asked);
        assert_eq!(capped.memory_bytes, 1 << 30);
        assert_eq!(capped.cpus, 1.0);
        let small = Resources {
            memory_bytes: 256 << 20,
            cpus: 0.5,
        };
        assert_eq!(resources(&settings, &visitor, small), small);

        assert_eq!(timeout(&settings, &user), settings.runs.timeout);
        assert_eq!(timeout(&settings, &visitor), Duration::from_secs(600));
        assert_eq!(expires_at(&settings, &user), None);
        assert_eq!(
            expires_at(&settings, &visitor),
            Some(3_000 + 24 * 3600 * 1000)
        );
    }
}
