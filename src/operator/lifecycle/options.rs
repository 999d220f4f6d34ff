//! The options of `run` (and `dev`), each with an environment-variable twin,
//! beside the code that runs them.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};

/// Options of `run`; each has an environment-variable twin.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the plain HTTP server for the probes, /healthz and /readyz.
    #[arg(long, env = "PROBE_ADDRESS", default_value = "0.0.0.0:8081")]
    pub probe_address: SocketAddr,

    /// Address of the HTTPS server for /metrics.
    #[arg(long, env = "METRICS_ADDRESS", default_value = "0.0.0.0:8443")]
    pub metrics_address: SocketAddr,

    /// Directory holding the metrics server's certificate (`tls.crt`) and key
    /// (`tls.key`), reloaded when they change (default: a self-signed certificate made at start).
    #[arg(long, env = "METRICS_CERT_DIR", value_name = "DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Serve /metrics in plain HTTP to anyone who can connect, without
    /// authentication or authorization: for local development only.
    #[arg(long, env = "INSECURE_METRICS", conflicts_with = "metrics_cert_dir")]
    pub insecure_metrics: bool,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log level or filter directives (for example `info` or `info,kube=debug`).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Elect a leader among replicas with a Lease; only the leader reconciles.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "deploymentchannel-operator")]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader holds the Lease without renewing it; a standby takes over after this.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_seconds: u64,

    /// This replica's identity in the Lease and on Events (default: the pod name, else the
    /// host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// Reconciles of one kind that run at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,

    /// Longest a PhoneConfiguration's boundChannels waits during a long burst of channel
    /// changes: it is written once changes settle for a second, and at least this often
    /// while they go on (each refresh is one more status write per PhoneConfiguration).
    #[arg(long, env = "BOUND_CHANNELS_REFRESH_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub bound_channels_refresh_seconds: u64,

    /// Seconds to let in-flight reconciles finish on SIGTERM or SIGINT.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}
