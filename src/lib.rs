//! DeploymentChannel operator: validates interaction channels declared as
//! Kubernetes custom resources, resolves their PhoneConfiguration references,
//! detects identifier conflicts and reports status conditions.
//!
//! The pure core (`api`, `validation`, `status`, `index`) does no I/O; the
//! shell (`controller`, `cli`) wires it to the Kubernetes API.

pub mod admission;
pub mod api;
pub mod controller;
pub mod crdgen;
pub mod field_error;
pub mod index;
pub mod metrics;
pub mod status;
pub mod validation;
