//! What the operator needs before its controllers can start: both CRDs
//! installed, and permission for every request it makes. Started before the
//! CRDs are installed, or with a ServiceAccount that lacks a verb, it logs
//! one line naming what is missing and the command that fixes it, keeps
//! `/readyz` failing, and checks again with backoff until it can start: no
//! crash loop, and no watch failing over and over.

use std::{fmt, time::Duration};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};
use tracing::{debug, info, warn};

use crate::core::api::{GROUP, VERSION};

/// The command that installs the CRDs.
pub const INSTALL_CRDS: &str = "kubectl apply --server-side -k crds/";
/// The command that installs the operator's RBAC (with the rest of it).
pub const INSTALL_RBAC: &str = "kubectl apply -k deploy/";

/// One request the operator makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    /// `deploymentchannels`, `deploymentchannels/status`, `leases`.
    pub resource: &'static str,
    /// `None`: the watched namespace (or all).
    pub namespace: Option<String>,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (resource, sub) = match self.resource.split_once('/') {
            Some((resource, sub)) => (resource, format!("/{sub}")),
            None => (self.resource, String::new()),
        };
        write!(f, "{} {resource}", self.verb)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        write!(f, "{sub}")?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

/// What the operator lacks; empty when it can start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Names of CRDs that are not served (`deploymentchannels.interactions.dev`).
    pub crds: Vec<String>,
    pub permissions: Vec<Permission>,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.crds.is_empty() && self.permissions.is_empty()
    }

    /// How many things are missing.
    pub fn len(&self) -> usize {
        self.crds.len() + self.permissions.len()
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.crds.is_empty() {
            parts.push(format!(
                "CRD {} not installed: install {} with `{INSTALL_CRDS}`",
                self.crds.join(" and "),
                if self.crds.len() == 1 { "it" } else { "them" }
            ));
        }
        if !self.permissions.is_empty() {
            let list: Vec<String> = self.permissions.iter().map(ToString::to_string).collect();
            parts.push(format!(
                "the operator's credentials may not {}: grant {} with `{INSTALL_RBAC}` (the ClusterRole in deploy/cluster_role.yaml, the Lease Role in deploy/leader_election_role.yaml)",
                list.join(", "),
                if list.len() == 1 { "it" } else { "them" }
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Every request the operator makes, in `namespace` (all when `None`), and
/// on the Lease when it elects a leader.
pub fn needed(namespace: Option<&str>, lease_namespace: Option<&str>) -> Vec<Permission> {
    let scoped = |verb, group, resource| Permission {
        verb,
        group,
        resource,
        namespace: namespace.map(str::to_string),
    };
    let mut needed = Vec::new();
    for resource in ["deploymentchannels", "phoneconfigurations"] {
        for verb in ["list", "watch"] {
            needed.push(scoped(verb, GROUP, resource));
        }
    }
    for resource in ["deploymentchannels/status", "phoneconfigurations/status"] {
        needed.push(scoped("patch", GROUP, resource));
    }
    for verb in ["create", "patch"] {
        needed.push(scoped(verb, "events.k8s.io", "events"));
    }
    if let Some(ns) = lease_namespace {
        for verb in ["get", "create", "patch"] {
            needed.push(Permission {
                verb,
                group: "coordination.k8s.io",
                resource: "leases",
                namespace: Some(ns.to_string()),
            });
        }
    }
    needed
}

/// Asks the API server what is missing.
pub async fn check(client: &Client, needed: &[Permission]) -> Result<Missing, kube::Error> {
    let mut missing = Missing::default();
    let served = match client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
    {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(error) => return Err(error),
    };
    for plural in ["deploymentchannels", "phoneconfigurations"] {
        if !served.iter().any(|name| name == plural) {
            missing.crds.push(format!("{plural}.{GROUP}"));
        }
    }
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    for permission in needed {
        let (resource, subresource) = match permission.resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_string())),
            None => (permission.resource, None),
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(permission.verb.into()),
                    group: Some(permission.group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    namespace: permission.namespace.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = reviews.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.permissions.push(permission.clone());
        }
    }
    Ok(missing)
}

/// Checks until nothing is missing, logging each new finding once and
/// exporting how many things are missing (`/readyz` fails meanwhile).
pub async fn wait_until_ready(
    client: &Client,
    needed: &[Permission],
    metrics: &crate::operator::metrics::Metrics,
) {
    // Not known yet: not ready.
    metrics.missing_requirements.set(1);
    let mut delay = Duration::from_secs(1);
    let mut last: Option<String> = None;
    loop {
        let finding = match check(client, needed).await {
            Ok(missing) if missing.is_empty() => {
                metrics.missing_requirements.set(0);
                if last.is_some() {
                    info!("the CRDs and permissions are in place now: starting");
                }
                return;
            }
            Ok(missing) => {
                metrics.missing_requirements.set(missing.len() as i64);
                format!("cannot start: {missing}")
            }
            Err(error) => {
                metrics.missing_requirements.set(1);
                format!("cannot start: cannot check the CRDs and permissions: {error}")
            }
        };
        if last.as_ref() != Some(&finding) {
            warn!(retry_in = ?delay, "{finding}; checking again with backoff");
        } else {
            debug!(retry_in = ?delay, "{finding}");
        }
        last = Some(finding);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_what_is_missing_and_the_fix() {
        let mut missing = Missing {
            crds: vec!["deploymentchannels.interactions.dev".into()],
            permissions: vec![],
        };
        assert_eq!(
            missing.to_string(),
            "CRD deploymentchannels.interactions.dev not installed: install it with `kubectl apply --server-side -k crds/`"
        );
        missing
            .crds
            .push("phoneconfigurations.interactions.dev".into());
        let needed = needed(Some("team-a"), Some("ops"));
        missing.permissions = vec![needed[1].clone(), needed[10].clone()];
        let line = missing.to_string();
        assert_eq!(
            line,
            "CRD deploymentchannels.interactions.dev and phoneconfigurations.interactions.dev not installed: install them with `kubectl apply --server-side -k crds/`; \
             the operator's credentials may not watch deploymentchannels.interactions.dev in namespace team-a, patch leases.coordination.k8s.io in namespace ops: \
             grant them with `kubectl apply -k deploy/` (the ClusterRole in deploy/cluster_role.yaml, the Lease Role in deploy/leader_election_role.yaml)"
        );
        assert!(!line.contains('\n'));
        assert_eq!(missing.len(), 4);
    }

    #[test]
    fn status_permissions_name_the_subresource() {
        let all = needed(None, None);
        assert_eq!(all.len(), 8, "no Lease without leader election");
        assert_eq!(
            all[4].to_string(),
            "patch deploymentchannels.interactions.dev/status"
        );
        assert_eq!(all[6].to_string(), "create events.events.k8s.io");
    }
}
