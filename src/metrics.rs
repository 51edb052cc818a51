//! Prometheus metrics: webhook deliveries, job states and job durations.
//!
//! Counters and histograms live in one registry in the app state; job-state gauges
//! are read from the database when `/metrics` is scraped, so every process sharing a
//! database reports the same queue.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub jobs: Family<JobStateLabels, Gauge>,
    pub job_duration: Family<JobRunLabels, Histogram>,
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
        Metrics {
            registry,
            deliveries,
            jobs,
            job_duration,
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
