//! The requests an in-process operator made, read from its own
//! `api_requests_total` metric, so tests can assert on writes and on
//! requests the API server refused.

use std::{collections::BTreeMap, sync::Arc};

use deploymentchannel_operator::operator::metrics::Metrics;

/// A view of one operator's request counters.
#[derive(Clone)]
pub struct RequestCounts(pub Arc<Metrics>);

impl RequestCounts {
    fn by_code(&self) -> BTreeMap<(String, String, String), u64> {
        crate::harness::api_requests(&self.0.render())
    }

    /// Requests by (verb, resource).
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        let mut counts = BTreeMap::new();
        for ((verb, resource, _), n) in self.by_code() {
            *counts.entry((verb, resource)).or_default() += n;
        }
        counts
    }

    /// Requests that change something (create, update, patch, delete).
    pub fn writes(&self) -> u64 {
        self.matching(crate::harness::is_write)
    }

    /// Status writes to either kind.
    pub fn status_writes(&self) -> u64 {
        self.matching(|verb, resource| {
            matches!(verb, "update" | "patch") && resource.ends_with("/status")
        })
    }

    pub fn matching(&self, f: impl Fn(&str, &str) -> bool) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((v, r), _)| f(v, r))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests answered 403 Forbidden, by (verb, resource).
    pub fn forbidden_snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.by_code()
            .into_iter()
            .filter(|((_, _, code), _)| code == "403")
            .map(|((verb, resource, _), n)| ((verb, resource), n))
            .collect()
    }
}
