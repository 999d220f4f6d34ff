//! DeploymentChannel operator: validates interaction channels declared as
//! Kubernetes custom resources, resolves their PhoneConfiguration references,
//! detects identifier conflicts and reports status conditions.
//!
//! The pure core (`api`, `validation`, `status`, `index`, `admission`,
//! `diagnosis`) does no I/O; the shell (`controller`, `runtime`, `http`,
//! `cli`, `status_command`) wires it to the Kubernetes API, the metrics and
//! probe endpoints and the command line.
//! README.md, section "Architecture", follows one change through them.
//!
//! Public are only the modules the binary, the tests and the benchmark use.

// The pure core.
mod admission;
pub mod api;
pub mod cached;
mod decoding;
mod diagnosis;
mod field_error;
pub mod index;
pub mod status;
pub mod validation;

// The offline tools around it.
pub mod crdgen;
pub mod manifests;

// The shell.
pub mod api_metrics;
pub mod cli;
pub mod compatibility;
pub mod controller;
mod dev;
mod http;
mod identity;
mod lease_fence;
pub mod local_cluster;
pub mod metrics;
mod metrics_auth;
mod preflight;
pub mod readiness;
mod runtime;
mod status_command;
mod sync;
mod tls;
