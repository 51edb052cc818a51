//! Prometheus metrics: webhook deliveries, job states and job durations, Jupyter sessions
//! (by state, culls, launches by phase, CPU and memory).
//!
//! Counters and histograms live in one registry in the app state; job-state gauges
//! are read from the database when `/metrics` is scraped, so every process sharing a
//! database reports the same queue. Sessions by state are read from the session runtime
//! at scrape time too; session CPU and memory are set by the `cull-sessions` job, so they
//! come from the process that ran it last. Label sets are bounded: no label names a user
//! or a session unless `NBFORGE_METRICS_PER_USER` is on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::sessions::SessionStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub forge: String,
    pub event: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobRunLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionStateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CullLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaunchPhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OwnerLabels {
    pub owner: String,
}

/// Why the culler stopped a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CullReason {
    /// Its Jupyter server was idle longer than the idle limit.
    Idle,
    /// It ran longer than the maximum age.
    MaxAge,
    /// It had ended on its own and was kept listed long enough.
    Ended,
}

impl CullReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CullReason::Idle => "idle",
            CullReason::MaxAge => "max_age",
            CullReason::Ended => "ended",
        }
    }

    /// For logs.
    pub fn describe(self) -> &'static str {
        match self {
            CullReason::Idle => "idle for longer than the idle limit",
            CullReason::MaxAge => "older than the maximum session age",
            CullReason::Ended => "ended on its own and kept listed long enough",
        }
    }
}

/// A phase of a session launch, timed by the launch flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaunchPhase {
    /// Waiting for a build slot or for another launch's build.
    Waiting,
    /// Fetching the repository.
    Fetching,
    /// Building the environment image.
    Building,
    /// Starting the container until Jupyter answers.
    Launching,
}

impl LaunchPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            LaunchPhase::Waiting => "waiting",
            LaunchPhase::Fetching => "fetching",
            LaunchPhase::Building => "building",
            LaunchPhase::Launching => "launching",
        }
    }
}

/// One running session's use, for [`Metrics::set_session_usage`].
#[derive(Debug, Clone)]
pub struct SessionUsage {
    /// The owner's URL name (a username or `~<visitor>`).
    pub owner: String,
    pub stats: SessionStats,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub jobs: Family<JobStateLabels, Gauge>,
    pub job_duration: Family<JobRunLabels, Histogram>,
    pub sessions: Family<SessionStateLabels, Gauge>,
    pub session_culls: Family<CullLabels, Counter>,
    pub launches: Family<LaunchResultLabels, Counter>,
    pub launch_phases: Family<LaunchPhaseLabels, Histogram>,
    pub sessions_cpu: Gauge<f64, AtomicU64>,
    pub sessions_memory: Gauge,
    pub session_memory_ratio_max: Gauge<f64, AtomicU64>,
    pub session_memory_ratio: Histogram,
    pub owner_cpu: Family<OwnerLabels, Gauge<f64, AtomicU64>>,
    pub owner_memory: Family<OwnerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nbforge");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by forge, event kind and result",
            deliveries.clone(),
        );
        let jobs = Family::<JobStateLabels, Gauge>::default();
        registry.register("jobs", "Jobs in the queue, by state", jobs.clone());
        let job_duration = Family::<JobRunLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 10))
        });
        registry.register(
            "job_duration_seconds",
            "Time spent running a job, by kind and outcome",
            job_duration.clone(),
        );
        let sessions = Family::<SessionStateLabels, Gauge>::default();
        registry.register(
            "sessions",
            "Jupyter sessions, by state (starting, running, stopped, failed)",
            sessions.clone(),
        );
        let session_culls = Family::<CullLabels, Counter>::default();
        registry.register(
            "session_culls",
            "Sessions stopped by the culler, by reason (idle, max_age, ended)",
            session_culls.clone(),
        );
        let launches = Family::<LaunchResultLabels, Counter>::default();
        registry.register(
            "session_launches",
            "Session launches, by result (ok, failed)",
            launches.clone(),
        );
        let launch_phases = Family::<LaunchPhaseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 14))
        });
        registry.register(
            "session_launch_phase_seconds",
            "Time a launch spent in each phase (waiting, fetching, building, launching)",
            launch_phases.clone(),
        );
        let sessions_cpu = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "sessions_cpu_cores",
            "CPUs used by all running sessions together, at the last cull",
            sessions_cpu.clone(),
        );
        let sessions_memory = Gauge::default();
        registry.register(
            "sessions_memory_bytes",
            "Memory used by all running sessions together, at the last cull",
            sessions_memory.clone(),
        );
        let session_memory_ratio_max = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "session_memory_limit_ratio_max",
            "The highest share of its memory limit a running session used, at the last cull",
            session_memory_ratio_max.clone(),
        );
        let session_memory_ratio = Histogram::new([0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0]);
        registry.register(
            "session_memory_limit_ratio",
            "Share of its memory limit each running session used, observed at every cull",
            session_memory_ratio.clone(),
        );
        let owner_cpu = Family::<OwnerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "session_owner_cpu_cores",
            "CPUs used by each owner's sessions (only with NBFORGE_METRICS_PER_USER)",
            owner_cpu.clone(),
        );
        let owner_memory = Family::<OwnerLabels, Gauge>::default();
        registry.register(
            "session_owner_memory_bytes",
            "Memory used by each owner's sessions (only with NBFORGE_METRICS_PER_USER)",
            owner_memory.clone(),
        );
        Metrics {
            registry,
            deliveries,
            jobs,
            job_duration,
            sessions,
            session_culls,
            launches,
            launch_phases,
            sessions_cpu,
            sessions_memory,
            session_memory_ratio_max,
            session_memory_ratio,
            owner_cpu,
            owner_memory,
        }
    }

    /// A launch spent `seconds` in `phase` (called by the launch flow for each phase).
    pub fn launch_phase(&self, phase: LaunchPhase, seconds: f64) {
        self.launch_phases
            .get_or_create(&LaunchPhaseLabels {
                phase: phase.as_str().to_owned(),
            })
            .observe(seconds);
    }

    /// A launch ended: its session answered (`ok`) or it failed.
    pub fn launch_result(&self, ok: bool) {
        self.launches
            .get_or_create(&LaunchResultLabels {
                result: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// The culler stopped a session.
    pub fn session_culled(&self, reason: CullReason) {
        self.session_culls
            .get_or_create(&CullLabels {
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    /// Replaces the sessions-by-state gauges with the states of the sessions there are.
    pub fn set_session_states<'a>(&self, states: impl IntoIterator<Item = &'a str>) {
        let mut counts: std::collections::HashMap<&str, i64> =
            ["starting", "running", "stopped", "failed"]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
        for state in states {
            if let Some(n) = counts.get_mut(state) {
                *n += 1;
            }
        }
        for (state, n) in counts {
            self.sessions
                .get_or_create(&SessionStateLabels {
                    state: state.to_owned(),
                })
                .set(n);
        }
    }

    /// Replaces the session CPU and memory gauges with the running sessions' use; per
    /// owner only when `per_user`.
    pub fn set_session_usage(&self, usage: &[SessionUsage], per_user: bool) {
        let cpu: f64 = usage.iter().map(|u| u.stats.cpu_cores).sum();
        let memory: u64 = usage.iter().map(|u| u.stats.memory_bytes).sum();
        self.sessions_cpu.set(cpu);
        self.sessions_memory
            .set(i64::try_from(memory).unwrap_or(i64::MAX));
        let ratios: Vec<f64> = usage
            .iter()
            .filter(|u| u.stats.memory_limit_bytes > 0)
            .map(|u| u.stats.memory_bytes as f64 / u.stats.memory_limit_bytes as f64)
            .collect();
        for r in &ratios {
            self.session_memory_ratio.observe(*r);
        }
        self.session_memory_ratio_max
            .set(ratios.iter().copied().fold(0.0, f64::max));
        self.owner_cpu.clear();
        self.owner_memory.clear();
        if per_user {
            for u in usage {
                let owner = OwnerLabels {
                    owner: u.owner.clone(),
                };
                self.owner_cpu
                    .get_or_create(&owner)
                    .inc_by(u.stats.cpu_cores);
                self.owner_memory
                    .get_or_create(&owner)
                    .inc_by(i64::try_from(u.stats.memory_bytes).unwrap_or(i64::MAX));
            }
        }
    }

    pub fn delivery(&self, forge: &str, event: &str, result: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                forge: forge.to_owned(),
                event: event.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn job_ran(&self, kind: &str, outcome: &str, seconds: f64) {
        self.job_duration
            .get_or_create(&JobRunLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .observe(seconds);
    }

    /// Replaces the job-state gauges with fresh counts.
    pub fn set_job_counts(&self, counts: &[(String, i64)]) {
        self.jobs.clear();
        for state in [
            "pending",
            "running",
            "done",
            "failed",
            "dead",
            "superseded",
            "canceled",
        ] {
            let n = counts
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.jobs
                .get_or_create(&JobStateLabels {
                    state: state.to_owned(),
                })
                .set(n);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(owner: &str, cpu: f64, memory: u64) -> SessionUsage {
        SessionUsage {
            owner: owner.into(),
            stats: SessionStats {
                cpu_cores: cpu,
                memory_bytes: memory,
                memory_limit_bytes: 1 << 30,
            },
        }
    }

    #[test]
    fn session_metrics_are_totals_unless_per_user_is_on() {
        let m = Metrics::new();
        m.set_session_states(["running", "running", "failed"]);
        m.session_culled(CullReason::Idle);
        m.launch_phase(LaunchPhase::Building, 42.0);
        m.launch_result(true);
        let all = [usage("ada", 0.5, 256 << 20), usage("~v", 1.0, 512 << 20)];
        m.set_session_usage(&all, false);
        let text = m.encode();
        for line in [
            "nbforge_sessions{state=\"running\"} 2",
            "nbforge_sessions{state=\"failed\"} 1",
            "nbforge_sessions{state=\"starting\"} 0",
            "nbforge_session_culls_total{reason=\"idle\"} 1",
            "nbforge_session_launches_total{result=\"ok\"} 1",
            "nbforge_session_launch_phase_seconds_count{phase=\"building\"} 1",
            "nbforge_sessions_cpu_cores 1.5",
            "nbforge_sessions_memory_bytes 805306368",
            "nbforge_session_memory_limit_ratio_max 0.5",
            "nbforge_session_memory_limit_ratio_count 2",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains("ada"), "{text}");
        m.set_session_usage(&all, true);
        let text = m.encode();
        assert!(
            text.contains("nbforge_session_owner_memory_bytes{owner=\"ada\"} 268435456"),
            "{text}"
        );
        // Owners whose sessions went are not reported again.
        m.set_session_usage(&all[1..], true);
        assert!(!m.encode().contains("owner=\"ada\""));
    }
}
