//! The command line ([`cli`]) and each command: `run` (the operator,
//! [`crate::operator`]), `dev` (the operator against a throwaway control
//! plane), `crd` (the CRDs from the types), `validate` (manifests judged by
//! the core) and `status` (why a channel is or is not ready).

pub mod cli;
pub mod crdgen;
pub(crate) mod dev;
pub mod local_cluster;
pub(crate) mod status;
pub mod validate;
