//! DeploymentChannel operator: validates interaction channels declared as
//! Kubernetes custom resources, resolves their PhoneConfiguration references,
//! detects identifier conflicts and reports status conditions.
//!
//! The pure core (`api`, `validation`, `status`, `index`) does no I/O; the
//! shell (`controller`, `runtime`, `http`, `cli`) wires it to the Kubernetes
//! API, the metrics and probe endpoints and the command line.

pub mod admission;
pub mod api;
pub mod api_metrics;
pub mod cli;
pub mod compatibility;
pub mod controller;
pub mod crdgen;
pub mod decoding;
pub mod dev;
pub mod field_error;
pub mod http;
pub mod identity;
pub mod index;
pub mod lease_fence;
pub mod local_cluster;
pub mod manifests;
pub mod metrics;
pub mod metrics_auth;
pub mod preflight;
pub mod runtime;
pub mod status;
pub mod tls;
pub mod validation;
