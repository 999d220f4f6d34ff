//! Protected metrics on a real API server: the operator binary, running as
//! its own ServiceAccount with the RBAC of `deploy/`, serves /metrics in
//! HTTPS only to bearer tokens the API server authenticates and allows to
//! get /metrics, caches those decisions, and answers probes without a token.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::json;

use crate::{
    harness::{api_requests, http_get, metric_value, service_account_token},
    install::{self, NAME, NAMESPACE},
    runtime::{Replica, https_client, https_get},
    scenarios,
    support::{Ctx, Scenario},
};

pub fn scenarios() -> Vec<Scenario> {
    scenarios![metrics_need_a_token_allowed_to_get_them]
}

/// The ClusterRole that `deploy/` ships for scrapers.
const METRICS_READER: &str = "deploymentchannel-operator-metrics-reader";

/// A certificate authority and a serving certificate for 127.0.0.1 that it
/// signed: (CA in DER, certificate PEM, key PEM).
fn serving_certificate() -> (Vec<u8>, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.der().to_vec(), cert.pem(), key.serialize_pem())
}

/// The number of TokenReviews the operator has sent, from its metrics.
fn token_reviews(metrics: &str) -> u64 {
    api_requests(metrics)
        .iter()
        .filter(|((verb, resource, _), _)| verb == "create" && resource == "tokenreviews")
        .map(|(_, n)| n)
        .sum()
}

async fn metrics_need_a_token_allowed_to_get_them(ctx: Ctx) {
    install::install(&ctx).await;
    let client = ctx.client.clone();
    // Three identities: the operator, a scraper bound to the metrics-reader
    // ClusterRole, and a stranger with no binding.
    let operator_token = service_account_token(&client, NAMESPACE, NAME)
        .await
        .unwrap();
    let scraper_token = service_account_token(&client, &ctx.ns, "scraper")
        .await
        .unwrap();
    let stranger_token = service_account_token(&client, &ctx.ns, "stranger")
        .await
        .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding_name = format!("e2e-metrics-reader-{}", ctx.ns);
    let binding = serde_json::from_value(json!({
        "metadata": {"name": binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": METRICS_READER},
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": ctx.ns}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("the metrics-reader binding");

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("operator.kubeconfig");
    ctx.env
        .kubeconfig_with_token(&operator_token, &kubeconfig)
        .unwrap();
    let (ca, cert, key) = serving_certificate();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("tls.crt"), cert).unwrap();
    std::fs::write(certs.join("tls.key"), key).unwrap();
    // One replica with a mounted certificate (verified here against its CA),
    // one with the self-signed certificate it makes at start.
    let mounted = Replica::start_with(
        &ctx,
        &["--metrics-cert-dir", certs.to_str().unwrap()],
        &kubeconfig,
    );
    let self_signed = Replica::start_with(&ctx, &[], &kubeconfig);

    // Probes answer without a token, in plain HTTP.
    for replica in [&mounted, &self_signed] {
        replica.wait_ok(&ctx, "/healthz").await;
        replica.wait_ok(&ctx, "/readyz").await;
    }
    let address = mounted.metrics_address;
    let scraper = https_client(address, Some(&scraper_token), Some(ca.clone()));
    // The binding and the operator's own RBAC take effect shortly after they are made.
    let body = ctx
        .eventually(
            "the scraper to read /metrics",
            Duration::from_secs(30),
            || async {
                https_get(&scraper, "/metrics")
                    .await
                    .filter(|(code, _)| *code == 200)
                    .map(|(_, body)| body)
            },
        )
        .await;
    assert!(body.ends_with("# EOF\n"), "{body}");
    let body = ctx
        .eventually(
            "the metrics to say the caches are synced",
            Duration::from_secs(30),
            || async {
                let (_, body) = https_get(&scraper, "/metrics").await?;
                (metric_value(&body, "deploymentchannel_operator_caches_synced", "") == 1.0)
                    .then_some(body)
            },
        )
        .await;
    // Repeated scrapes reuse the decision: no further TokenReview.
    let reviews = token_reviews(&body);
    assert!(reviews >= 1, "no TokenReview counted:\n{body}");
    let mut last = body;
    for _ in 0..5 {
        let (code, body) = https_get(&scraper, "/metrics").await.unwrap();
        assert_eq!(code, 200);
        last = body;
    }
    assert_eq!(
        token_reviews(&last),
        reviews,
        "scrapes with a known token sent TokenReviews"
    );

    for (who, token, expected) in [
        ("no token", None, 401),
        (
            "a token the API server did not issue",
            Some("not-a-token"),
            401,
        ),
        (
            "a ServiceAccount without the metrics-reader binding",
            Some(stranger_token.as_str()),
            403,
        ),
    ] {
        let client = https_client(address, token, Some(ca.clone()));
        let (code, body) = https_get(&client, "/metrics").await.unwrap();
        assert_eq!(code, expected, "{who}: {body}");
        assert!(
            !body.contains("deploymentchannel_operator_"),
            "{who} read metrics: {body}"
        );
    }

    // The self-signed replica: the same rules.
    let address = self_signed.metrics_address;
    let (code, body) = https_get(
        &https_client(address, Some(&scraper_token), None),
        "/metrics",
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("deploymentchannel_operator_leader"), "{body}");
    for (token, expected) in [(None, 401), (Some(stranger_token.as_str()), 403)] {
        let (code, _) = https_get(&https_client(address, token, None), "/metrics")
            .await
            .unwrap();
        assert_eq!(code, expected);
    }
    // Plain HTTP on the metrics port gets nothing.
    assert!(
        http_get(address, "/metrics")
            .await
            .is_none_or(|(code, _)| code != 200)
    );

    let _ = bindings
        .delete(&binding_name, &DeleteParams::default())
        .await;
}
