//! The metrics server's TLS: a certificate and key from a directory (as a
//! mounted `kubernetes.io/tls` Secret holds them, reloaded when they are
//! renewed), or a self-signed certificate made at start.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use tracing::{info, warn};

/// File names in the certificate directory, as in a `kubernetes.io/tls` Secret.
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// How often the certificate directory is checked for renewed files.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// A server configuration for a PEM certificate chain and its private key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{CERT_FILE}: not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("{CERT_FILE}: holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow::anyhow!("{KEY_FILE}: not a PEM private key: {e}"))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the certificate and key do not make a TLS identity")?;
    Ok(Arc::new(config))
}

/// A self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> anyhow::Result<Arc<ServerConfig>> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .context("cannot make a self-signed certificate")?;
    server_config(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
}

/// The certificate and key files of `dir`, read.
fn read_pair(dir: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| {
            format!(
                "--metrics-cert-dir (METRICS_CERT_DIR): cannot read {}",
                path.display()
            )
        })
    };
    Ok((read(CERT_FILE)?, read(KEY_FILE)?))
}

/// The server configuration from `dir`'s `tls.crt` and `tls.key`.
pub fn from_dir(dir: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert, key) = read_pair(dir)?;
    server_config(&cert, &key)
        .with_context(|| format!("--metrics-cert-dir (METRICS_CERT_DIR) {}", dir.display()))
}

/// Reloads `config` from `dir` whenever its files change, until `shutdown`;
/// a renewal that does not load is logged and the previous certificate kept.
pub async fn reload_on_change(
    dir: PathBuf,
    config: RustlsConfig,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut loaded = read_pair(&dir).ok();
    let watch = async {
        loop {
            tokio::time::sleep(interval).await;
            let current = match read_pair(&dir) {
                Ok(pair) => pair,
                Err(error) => {
                    warn!(
                        error = format!("{error:#}"),
                        "cannot read the metrics certificate"
                    );
                    continue;
                }
            };
            if loaded.as_ref() == Some(&current) {
                continue;
            }
            match server_config(&current.0, &current.1) {
                Ok(server) => {
                    config.reload_from_config(server);
                    info!(dir = %dir.display(), "reloaded the metrics certificate");
                }
                Err(error) => warn!(
                    error = format!("{error:#}"),
                    "the renewed metrics certificate does not load; keeping the previous one"
                ),
            }
            loaded = Some(current);
        }
    };
    tokio::select! {
        _ = watch => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_pair(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn loads_a_certificate_directory_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let error = format!("{:#}", from_dir(dir.path()).unwrap_err());
        assert!(
            error.contains("--metrics-cert-dir") && error.contains("tls.crt"),
            "{error}"
        );
        let (cert, key) = pem_pair("localhost");
        std::fs::write(dir.path().join(CERT_FILE), &cert).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let error = format!("{:#}", from_dir(dir.path()).unwrap_err());
        assert!(error.contains("tls.key"), "{error}");
        std::fs::write(dir.path().join(KEY_FILE), &key).unwrap();
        from_dir(dir.path()).unwrap();
        let error = format!("{:#}", server_config(b"", key.as_bytes()).unwrap_err());
        assert!(error.contains("no certificate"), "{error}");
    }

    #[test]
    fn makes_a_self_signed_certificate() {
        self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn reloads_a_renewed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair("old.example");
        std::fs::write(dir.path().join(CERT_FILE), &cert).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), &key).unwrap();
        let config = RustlsConfig::from_config(from_dir(dir.path()).unwrap());
        let before = config.get_inner();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reload_on_change(
            dir.path().to_path_buf(),
            config.clone(),
            Duration::from_secs(1),
            async {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(Arc::ptr_eq(&before, &config.get_inner()), "nothing changed");
        let (cert, key) = pem_pair("new.example");
        std::fs::write(dir.path().join(CERT_FILE), &cert).unwrap();
        std::fs::write(dir.path().join(KEY_FILE), &key).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!Arc::ptr_eq(&before, &config.get_inner()), "reloaded");
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
