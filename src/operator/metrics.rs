//! Prometheus metrics of the operator, rendered in the text exposition format.

pub(crate) mod access;
pub mod api_requests;

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::MetricType,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};

/// The prefix of every metric name.
pub const PREFIX: &str = "deploymentchannel_operator";

/// Labels naming a kind (`DeploymentChannel`, `PhoneConfiguration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Labels of a finished reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    /// `written` (status patched), `unchanged` (nothing to write), `gone`
    /// (deleted before the write reached it) or `error`.
    pub result: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: String,
}

/// Labels of the channel count by readiness.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `True`, `False` or `Unknown` (no status yet).
    pub ready: &'static str,
    /// The Ready condition's reason (`NoStatus` before the first status).
    pub reason: &'static str,
}

/// Labels of a request to the Kubernetes API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: &'static str,
    pub resource: String,
    /// HTTP status code, or `error` when no response came.
    pub code: String,
}

/// Labels of a published Kubernetes Event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub reason: &'static str,
}

/// Labels of a relist: a watch that starts over with a full list.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelistLabels {
    pub kind: &'static str,
    /// `initial` (the first list), `expired` (`410 Gone`: the watch's
    /// resourceVersion is no longer held), `list_failed` (the previous list
    /// failed), `streaming_fallback` (a streaming list under way was
    /// refused by the storage: paged lists from now on; a server that
    /// refuses streaming lists outright makes the first paged list
    /// `initial`) or `watch_failed` (the watch could not be resumed).
    pub cause: &'static str,
}

/// Labels of a table the operator keeps per object.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    /// The name of every series the registry can hold.
    series: Vec<String>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub cached_objects: Family<KindLabels, Gauge>,
    pub channels_by_ready: Family<ReadyLabels, Gauge>,
    pub leader: Gauge<i64, AtomicI64>,
    pub caches_synced: Gauge<i64, AtomicI64>,
    pub watch_events: Family<KindLabels, Counter<u64, AtomicU64>>,
    pub watch_restarts: Family<KindLabels, Counter>,
    pub relists: Family<RelistLabels, Counter>,
    pub retries: Family<KindLabels, Counter>,
    pub pending_retries: Family<KindLabels, Gauge>,
    pub api_requests: Family<ApiRequestLabels, Counter>,
    pub unreadable_objects: Family<KindLabels, Gauge>,
    pub table_entries: Family<TableLabels, Gauge>,
    pub missing_requirements: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let mut series = Vec::new();
        let reconciles = Family::default();
        register(
            &mut registry,
            &mut series,
            "reconciles",
            "Reconciles by kind and result",
            &reconciles,
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        register(
            &mut registry,
            &mut series,
            "reconcile_duration_seconds",
            "Time one reconcile takes, API writes included",
            &reconcile_duration,
        );
        let errors = Family::default();
        register(
            &mut registry,
            &mut series,
            "reconcile_errors",
            "Failed reconciles by kind and reason",
            &errors,
        );
        let events = Family::default();
        register(
            &mut registry,
            &mut series,
            "kubernetes_events",
            "Kubernetes Events published, by reason",
            &events,
        );
        let cached_objects = Family::default();
        register(
            &mut registry,
            &mut series,
            "cached_objects",
            "Objects in the controller's cache, by kind",
            &cached_objects,
        );
        let channels_by_ready = Family::default();
        register(
            &mut registry,
            &mut series,
            "channels",
            "DeploymentChannels in the cache by their Ready condition's status and reason",
            &channels_by_ready,
        );
        let leader = Gauge::default();
        register(
            &mut registry,
            &mut series,
            "leader",
            "1 when this replica leads and reconciles, else 0",
            &leader,
        );
        let caches_synced = Gauge::default();
        register(
            &mut registry,
            &mut series,
            "caches_synced",
            "1 once both caches hold a full list",
            &caches_synced,
        );
        let watch_events = Family::default();
        register(
            &mut registry,
            &mut series,
            "watch_events",
            "Watch events received, by kind",
            &watch_events,
        );
        let watch_restarts = Family::default();
        register(
            &mut registry,
            &mut series,
            "watch_restarts",
            "Watches that failed and were restarted with backoff, by kind",
            &watch_restarts,
        );
        let relists = Family::default();
        register(
            &mut registry,
            &mut series,
            "relists",
            "Full lists a watch started, by kind and cause",
            &relists,
        );
        let retries = Family::default();
        register(
            &mut registry,
            &mut series,
            "reconcile_retries",
            "Retries scheduled after a failed reconcile, by kind (one pending per object)",
            &retries,
        );
        let pending_retries = Family::default();
        register(
            &mut registry,
            &mut series,
            "pending_retries",
            "Objects waiting for a retry after a failed reconcile, by kind",
            &pending_retries,
        );
        let api_requests = Family::default();
        register(
            &mut registry,
            &mut series,
            "api_requests",
            "Requests to the Kubernetes API by verb, resource and response code",
            &api_requests,
        );
        let unreadable_objects = Family::default();
        register(
            &mut registry,
            &mut series,
            "unreadable_objects",
            "Objects whose stored form the operator cannot read, by kind",
            &unreadable_objects,
        );
        let table_entries = Family::default();
        register(
            &mut registry,
            &mut series,
            "table_entries",
            "Entries of the tables the operator keeps per object, by table",
            &table_entries,
        );
        let missing_requirements = Gauge::default();
        register(
            &mut registry,
            &mut series,
            "missing_requirements",
            "CRDs and permissions the operator lacks to start (1 before the first check)",
            &missing_requirements,
        );
        Self {
            registry,
            series,
            reconciles,
            reconcile_duration,
            errors,
            events,
            cached_objects,
            channels_by_ready,
            leader,
            caches_synced,
            watch_events,
            watch_restarts,
            relists,
            retries,
            pending_retries,
            api_requests,
            unreadable_objects,
            table_entries,
            missing_requirements,
        }
    }
}

/// Registers `metric` under `PREFIX_name`, noting the series it exports.
fn register<M: Metric + Clone>(
    registry: &mut Registry,
    series: &mut Vec<String>,
    name: &str,
    help: &str,
    metric: &M,
) {
    let full = format!("{PREFIX}_{name}");
    match metric.metric_type() {
        MetricType::Counter => series.push(format!("{full}_total")),
        MetricType::Histogram => {
            series.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{full}{suffix}")))
        }
        _ => series.push(full),
    }
    registry.register(name, help, metric.clone());
}

impl Metrics {
    /// The name of every series the operator can export (counters with
    /// `_total`, histograms as `_bucket`, `_sum` and `_count`), whether or
    /// not it has samples yet: what alert rules and dashboards may use.
    pub fn series_names(&self) -> &[String] {
        &self.series
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let metrics = Metrics::default();
        metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: "DeploymentChannel",
                result: "written",
            })
            .inc_by(3);
        metrics
            .reconcile_duration
            .get_or_create(&KindLabels {
                kind: "DeploymentChannel",
            })
            .observe(0.002);
        metrics
            .channels_by_ready
            .get_or_create(&ReadyLabels {
                ready: "True",
                reason: "Ready",
            })
            .set(7);
        metrics
            .watch_restarts
            .get_or_create(&KindLabels {
                kind: "PhoneConfiguration",
            })
            .inc();
        metrics.leader.set(1);
        let text = metrics.render();
        for line in [
            "# TYPE deploymentchannel_operator_reconciles counter",
            "deploymentchannel_operator_reconciles_total{kind=\"DeploymentChannel\",result=\"written\"} 3",
            "deploymentchannel_operator_channels{ready=\"True\",reason=\"Ready\"} 7",
            "deploymentchannel_operator_watch_restarts_total{kind=\"PhoneConfiguration\"} 1",
            "deploymentchannel_operator_leader 1",
            "deploymentchannel_operator_reconcile_duration_seconds_count{kind=\"DeploymentChannel\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn series_names_cover_every_sample_rendered() {
        let metrics = Metrics::default();
        let names = metrics.series_names();
        for name in [
            "deploymentchannel_operator_reconciles_total",
            "deploymentchannel_operator_reconcile_duration_seconds_bucket",
            "deploymentchannel_operator_reconcile_duration_seconds_count",
            "deploymentchannel_operator_channels",
            "deploymentchannel_operator_watch_restarts_total",
            "deploymentchannel_operator_leader",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        metrics
            .reconcile_duration
            .get_or_create(&KindLabels {
                kind: "DeploymentChannel",
            })
            .observe(0.1);
        metrics
            .watch_events
            .get_or_create(&KindLabels {
                kind: "DeploymentChannel",
            })
            .inc();
        for line in metrics.render().lines().filter(|l| !l.starts_with('#')) {
            let sample = line.split(['{', ' ']).next().unwrap();
            assert!(
                names.iter().any(|n| n == sample),
                "{sample} not in {names:?}"
            );
        }
    }
}
