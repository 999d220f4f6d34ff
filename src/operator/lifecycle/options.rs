//! The options of `run` (and `dev`), each with an environment-variable twin,
//! beside the code that runs them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use crate::operator::leader_election::LeaseTiming;

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

    /// How long a Lease holds without renewal: a standby takes over this
    /// long after it last saw the Lease change (`15s`, `1500ms`, or seconds).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps retrying a renewal before it stops leading;
    /// shorter than `--lease-duration`, so it stops before a standby may take over.
    #[arg(long, env = "LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub lease_renew_deadline: Duration,

    /// How often the leader renews the Lease and a standby tries to take it;
    /// shorter than `--lease-renew-deadline`.
    #[arg(long, env = "LEASE_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub lease_retry_period: Duration,

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

    /// Longest the API server may take to answer a request (watches excepted:
    /// they end on their own). A request on a connection that stopped
    /// answering then fails and is retried instead of holding a reconcile.
    #[arg(long, env = "API_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub api_request_timeout: Duration,

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

/// A duration as `15s`, `1500ms`, `1m` or plain seconds (`15`, `2.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => {
            return Err(format!(
                "{text:?}: use a number with ms, s or m (for example 15s)"
            ));
        }
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?}: a duration above 0 and at most 1h (for example 15s)"))
}

impl RunArgs {
    /// The leader-election cadence, refused unless retry period < renew
    /// deadline < lease duration (as client-go requires).
    pub fn lease_timing(&self) -> anyhow::Result<LeaseTiming> {
        LeaseTiming::new(
            self.lease_duration,
            self.lease_renew_deadline,
            self.lease_retry_period,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_seconds() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "0s", "-1s", "5h", "s", "1.2.3s", "2h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
