//! Prometheus metrics of the operator, rendered in the text exposition format.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels naming a kind (`DeploymentChannel`, `PhoneConfiguration`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// Labels of a finished reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    /// `written` (status patched), `unchanged` (nothing to write) or `error`.
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

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub status_writes: Family<KindLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub cached_objects: Family<KindLabels, Gauge>,
    pub channels_by_ready: Family<ReadyLabels, Gauge>,
    pub leader: Gauge<i64, AtomicI64>,
    pub caches_synced: Gauge<i64, AtomicI64>,
    pub watch_events: Family<KindLabels, Counter<u64, AtomicU64>>,
    pub api_requests: Family<ApiRequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("deploymentchannel_operator");
        let reconciles = Family::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile takes, API writes included",
            reconcile_duration.clone(),
        );
        let errors = Family::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and reason",
            errors.clone(),
        );
        let status_writes = Family::default();
        registry.register(
            "status_writes",
            "Status patches sent, by kind",
            status_writes.clone(),
        );
        let events = Family::default();
        registry.register(
            "kubernetes_events",
            "Kubernetes Events published, by reason",
            events.clone(),
        );
        let cached_objects = Family::default();
        registry.register(
            "cached_objects",
            "Objects in the controller's cache, by kind",
            cached_objects.clone(),
        );
        let channels_by_ready = Family::default();
        registry.register(
            "channels",
            "DeploymentChannels in the cache by their Ready condition",
            channels_by_ready.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica leads and reconciles, else 0",
            leader.clone(),
        );
        let caches_synced = Gauge::default();
        registry.register(
            "caches_synced",
            "1 once both caches hold a full list",
            caches_synced.clone(),
        );
        let watch_events = Family::default();
        registry.register(
            "watch_events",
            "Watch events received, by kind",
            watch_events.clone(),
        );
        let api_requests = Family::default();
        registry.register(
            "api_requests",
            "Requests to the Kubernetes API by verb, resource and response code",
            api_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            errors,
            status_writes,
            events,
            cached_objects,
            channels_by_ready,
            leader,
            caches_synced,
            watch_events,
            api_requests,
        }
    }
}

impl Metrics {
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
            .get_or_create(&ReadyLabels { ready: "True" })
            .set(7);
        metrics.leader.set(1);
        let text = metrics.render();
        for line in [
            "# TYPE deploymentchannel_operator_reconciles counter",
            "deploymentchannel_operator_reconciles_total{kind=\"DeploymentChannel\",result=\"written\"} 3",
            "deploymentchannel_operator_channels{ready=\"True\"} 7",
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
}
