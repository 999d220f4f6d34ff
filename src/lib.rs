//! DeploymentChannel operator: validates interaction channels declared as
//! Kubernetes custom resources, resolves their PhoneConfiguration references,
//! detects identifier conflicts and reports status conditions.
//!
//! Three layers, each a folder:
//!
//! - [`core`]: the API types and the rules about them, with no I/O.
//! - [`operator`]: the long-running process that wires the core to the
//!   Kubernetes API: watches, caches, reconciles, status writes, leader
//!   election, probe and metrics servers, start-up checks.
//! - [`commands`]: the command line and each command (`run`, `dev`, `crd`,
//!   `validate`, `status`).
//!
//! Imports point down only: `commands` may use `operator` and `core`,
//! `operator` may use `core`, and `core` uses neither (`tests/layers.rs`
//! fails when it does). docs/architecture.md maps the modules and follows
//! one change through them.

pub mod commands;
pub mod core;
pub mod operator;
