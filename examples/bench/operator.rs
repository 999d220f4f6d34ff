//! The operator binary, run as its own process, and what the benchmark
//! reads of it: `/readyz`, `/metrics` and its CPU and memory in `/proc`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{CONCURRENCY, cluster::ControlPlane};

/// The operator binary, run as its own process so its memory is its own.
pub struct Operator {
    pub child: Child,
    probe_address: SocketAddr,
    metrics_address: SocketAddr,
}

impl Operator {
    pub fn start(env: &ControlPlane, ns: &str) -> Result<Self, String> {
        Self::start_with(ns, &env.kubeconfig, &[])
    }

    /// Starts the operator reaching the API server through `kubeconfig`,
    /// with `extra` options.
    pub fn start_with(
        ns: &str,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> Result<Self, String> {
        let free_address = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())
        };
        let (probe_address, metrics_address) = (free_address()?, free_address()?);
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| Some(p.parent()?.parent()?.join("deploymentchannel-operator")))
            .filter(|p| p.exists())
            .ok_or(
                "build the operator first: cargo build --release --bin deploymentchannel-operator",
            )?;
        let child = Command::new(binary)
            .args([
                "run",
                "--namespace",
                ns,
                "--probe-address",
                &probe_address.to_string(),
                "--metrics-address",
                &metrics_address.to_string(),
                // The benchmark measures reconciling, not scrape authentication.
                "--insecure-metrics",
                "--log-level",
                "warn",
            ])
            .args(["--concurrency", &CONCURRENCY.to_string()])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the operator: {e}"))?;
        Ok(Self {
            child,
            probe_address,
            metrics_address,
        })
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let address = if path == "/metrics" {
            self.metrics_address
        } else {
            self.probe_address
        };
        http_get(address, path).await
    }

    /// Waits up to ten minutes: a cold start lists the whole namespace.
    pub async fn wait_ready(&self) -> Result<(), String> {
        for _ in 0..6000 {
            if self
                .get("/readyz")
                .await
                .is_some_and(|(code, _)| code == 200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the operator did not become ready in 10 minutes".into())
    }

    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        metric_value(&body, &format!("deploymentchannel_operator_{name}"), labels)
    }

    pub async fn wait_metric(&self, name: &str, labels: &str, at_least: f64) -> Result<(), String> {
        for _ in 0..1200 {
            if self.metric(name, labels).await >= at_least {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{name}{{{labels}}} did not reach {at_least} in 120s"
        ))
    }

    pub async fn wait_metric_at_most(
        &self,
        name: &str,
        labels: &str,
        at_most: f64,
    ) -> Result<(), String> {
        for _ in 0..1200 {
            if self.metric(name, labels).await <= at_most {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "{name}{{{labels}}} did not come down to {at_most} in 120s"
        ))
    }

    /// Requests by verb (writes by verb and resource).
    pub async fn requests_by_verb(&self) -> BTreeMap<String, f64> {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        let mut by_verb = BTreeMap::new();
        for ((verb, _), count) in api_requests(&body) {
            *by_verb.entry(verb).or_default() += count;
        }
        by_verb
    }

    /// Every request that changes something, renewals of the
    /// leader-election Lease aside.
    pub async fn writes(&self) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        api_requests(&body)
            .iter()
            .filter(|((verb, resource), _)| is_write(verb, resource) && resource != "leases")
            // A fold from 0.0: an empty f64 sum is -0.0.
            .fold(0.0, |sum, (_, n)| sum + n)
    }

    /// CPU seconds (user and system) the operator has used.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        ticks / 100.0
    }

    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    /// Stops the operator as Kubernetes would (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> Result<(), String> {
        kill_process(Pid::from_child(&self.child), Signal::TERM).map_err(|e| e.to_string())?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the operator exited with {status}"))
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` over plain HTTP/1.0 on loopback: (status code, body).
async fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// The sum of the samples of metric `name` whose labels contain `labels`.
fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    samples(text, name)
        .filter(|(sample_labels, _)| sample_labels.contains(labels))
        .fold(0.0, |sum, (_, value)| sum + value)
}

/// The samples of metric `name`: (labels, value).
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.parse().ok()?))
    })
}

/// The value of label `name` in a sample's labels.
fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    labels
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|value| value.split('"').next())
        .unwrap_or_default()
}

/// The operator's API requests by (verb, resource).
fn api_requests(text: &str) -> Vec<((String, String), f64)> {
    samples(text, "deploymentchannel_operator_api_requests_total")
        .map(|(labels, count)| {
            let key = (
                label(labels, "verb").to_string(),
                label(labels, "resource").to_string(),
            );
            (key, count)
        })
        .collect()
}

/// Whether a request changes something. Creating a review (whether a token
/// is valid, whether an identity may do something) stores nothing.
fn is_write(verb: &str, resource: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) && !resource.ends_with("reviews")
}
