//! The operator process: watches both kinds into caches and the index, runs
//! the reconciles and writes status; around them leader election, the probe
//! and metrics servers and the start-up checks. It uses [`crate::core`] for
//! every decision, and nothing of [`crate::commands`].

pub mod channel_cache;
pub mod compatibility;
pub mod controller;
pub(crate) mod identity;
pub(crate) mod leader_election;
pub(crate) mod lease_fence;
pub(crate) mod lifecycle;
pub mod metrics;
pub(crate) mod preflight;
pub mod replica_readiness;
pub mod request_timeout;
pub(crate) mod servers;
pub(crate) mod tls;
