//! Reconciles against a mocked API server: the exact requests the operator
//! sends, and that it sends none when nothing changed.

use std::sync::Arc;

use parking_lot::Mutex;

use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{
    Client,
    client::Body,
    runtime::{reflector, watcher},
};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::{
    status_writer::{Current, Written},
    *,
};
use crate::{
    core::api::{
        Capability, ChannelConfiguration, DeploymentChannelSpec, DeploymentType,
        PhoneConfigurationSpec,
    },
    core::desired_status::desired_channel_status,
    core::validation::validate_channel,
    operator::channel_cache::CachedChannel,
};

const NS: &str = "team-a";

fn fixed_now() -> Time {
    Time(jiff::Timestamp::from_second(1_700_000_000).unwrap())
}

fn calls_channel(number: &str) -> DeploymentChannel {
    DeploymentChannel {
        metadata: ObjectMeta {
            name: Some("support".into()),
            namespace: Some(NS.into()),
            generation: Some(2),
            resource_version: Some("41".into()),
            uid: Some("chan-uid".into()),
            creation_timestamp: Some(Time(jiff::Timestamp::from_second(1_600_000_000).unwrap())),
            ..Default::default()
        },
        spec: DeploymentChannelSpec {
            deployment_type: DeploymentType::Calls,
            channel_name: None,
            recording_enabled: true,
            channel_identifier: number.into(),
            configuration: ChannelConfiguration {
                phone_configuration_id: Some("line".into()),
                ..Default::default()
            },
        },
        status: None,
    }
}

fn phone_configuration() -> PhoneConfiguration {
    PhoneConfiguration {
        metadata: ObjectMeta {
            name: Some("line".into()),
            namespace: Some(NS.into()),
            generation: Some(1),
            resource_version: Some("7".into()),
            uid: Some("pc-uid".into()),
            ..Default::default()
        },
        spec: PhoneConfigurationSpec {
            phone_number: "+12125551234".into(),
            provider: "twilio".into(),
            capabilities: vec![Capability::Voice],
            description: None,
        },
        status: None,
    }
}

/// A channel as the cache holds it.
fn cached(channel: &DeploymentChannel) -> Arc<CachedChannel> {
    Arc::new(CachedChannel::of(channel).unwrap())
}

/// A context whose caches hold `channels` and `phones`, over a mocked API.
fn context(
    channels: &[DeploymentChannel],
    phones: &[PhoneConfiguration],
) -> (Arc<Context>, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let channel_cache = ChannelCache::default();
    let (phone_reader, mut phone_writer) = reflector::store::<PhoneConfiguration>();
    let mut index = Index::default();
    for channel in channels {
        channel_cache.insert(CachedChannel::of(channel).unwrap());
        index.apply(channel);
    }
    for phone in phones {
        phone_writer.apply_watcher_event(&watcher::Event::Apply(phone.clone()));
    }
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(ReplicaReadiness::new(metrics.caches_synced.clone()));
    readiness.channels_listed();
    readiness.phone_configurations_listed();
    let mut ctx = Context::new(
        client,
        channel_cache,
        phone_reader,
        Arc::new(Mutex::new(index)),
        readiness,
        metrics,
        Some("test".into()),
    );
    ctx.clock = fixed_now;
    (Arc::new(ctx), handle)
}

/// The status of `channel` resolved to `pc`, as computed at `time`.
fn resolved_status(
    channel: &DeploymentChannel,
    pc: &PhoneConfiguration,
    time: &Time,
) -> DeploymentChannelStatus {
    desired_channel_status(
        channel.placement(),
        &validate_channel(&channel.spec),
        |_, _| Ok(Some(pc)),
        None,
        None,
        time,
    )
}

async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, object: Value) {
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&object).unwrap()))
            .unwrap(),
    );
}

#[tokio::test]
async fn resolved_channel_gets_exactly_one_status_patch() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));

    let (request, send) = handle.next_request().await.expect("a status patch");
    assert_eq!(request.method(), http::Method::PATCH);
    assert_eq!(
        request.uri().to_string(),
        "/apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels/support/status?&force=true&fieldManager=deploymentchannel-operator"
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = body_json(request).await;
    let time = "2023-11-14T22:13:20Z";
    assert_eq!(
        body,
        json!({
            "apiVersion": "interactions.dev/v1alpha1",
            "kind": "DeploymentChannel",
            "metadata": {"resourceVersion": "41"},
            "status": {
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Ready", "message": "the channel is ready",
                     "lastTransitionTime": time, "observedGeneration": 2},
                    {"type": "Valid", "status": "True", "reason": "Valid", "message": "the spec is valid",
                     "lastTransitionTime": time, "observedGeneration": 2},
                    {"type": "PhoneConfigurationResolved", "status": "True", "reason": "Resolved",
                     "message": "using PhoneConfiguration \"line\" (+12125551234)",
                     "lastTransitionTime": time, "observedGeneration": 2},
                ],
                "phoneConfiguration": {"name": "line", "uid": "pc-uid", "phoneNumber": "+12125551234"},
            }
        })
    );
    let mut stored = serde_json::to_value(&channel).unwrap();
    stored["status"] = body["status"].clone();
    respond(send, stored);
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
    // A first readiness is no Event: nothing else was sent.
    drop(ctx);
    assert!(handle.next_request().await.is_none());
}

/// The API server reset the channel's managedFields (a fix of a spec its
/// schema refused), so the apply left the `Stalled` condition written for
/// the broken spec: the status is replaced once, removing it.
#[tokio::test]
async fn status_left_from_before_a_managed_fields_reset_is_replaced() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));

    let (request, send) = handle.next_request().await.expect("a status apply");
    let applied = body_json(request).await["status"].clone();
    let stalled = json!({"type": "Stalled", "status": "True", "reason": "InvalidSpec",
        "message": "spec.channelIdentifier: Invalid value", "lastTransitionTime": "2023-11-14T22:00:00Z",
        "observedGeneration": 1});
    // Another controller's condition, which must stay.
    let audited = json!({"type": "Audited", "status": "True", "reason": "Audited", "message": "",
        "lastTransitionTime": "2023-11-14T22:00:00Z"});
    let mut stored = serde_json::to_value(&channel).unwrap();
    stored["status"] = applied.clone();
    let conditions = stored["status"]["conditions"].as_array_mut().unwrap();
    conditions.push(stalled);
    conditions.push(audited.clone());
    let owns = |types: &[&str]| {
        let conditions: serde_json::Map<String, Value> = types
            .iter()
            .map(|t| {
                (
                    format!("k:{{\"type\":\"{t}\"}}"),
                    json!({".": {}, "f:status": {}}),
                )
            })
            .collect();
        json!({"f:status": {"f:conditions": conditions}})
    };
    stored["metadata"]["managedFields"] = json!([
        {"manager": "deploymentchannel-operator", "operation": "Apply", "subresource": "status",
         "apiVersion": "interactions.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": owns(&["Ready", "Valid"])},
        {"manager": "before-first-apply", "operation": "Update",
         "apiVersion": "interactions.dev/v1alpha1", "fieldsType": "FieldsV1",
         "fieldsV1": owns(&["Ready", "Stalled", "Audited"])},
        {"manager": "audit-controller", "operation": "Apply", "subresource": "status",
         "apiVersion": "interactions.dev/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": owns(&["Audited"])},
    ]);
    respond(send, stored.clone());

    let (request, send) = handle.next_request().await.expect("a status merge patch");
    assert_eq!(request.method(), http::Method::PATCH);
    assert_eq!(
        request.uri().to_string(),
        "/apis/interactions.dev/v1alpha1/namespaces/team-a/deploymentchannels/support/status?&fieldManager=deploymentchannel-operator"
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/merge-patch+json"
    );
    // Only onto the version the apply returned; only the leftover goes.
    let mut kept = applied["conditions"].clone();
    kept.as_array_mut().unwrap().push(audited);
    assert_eq!(
        body_json(request).await,
        json!({"metadata": {"resourceVersion": "41"}, "status": {"conditions": kept}})
    );
    stored["status"]["conditions"] = kept;
    respond(send, stored);
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
    drop(ctx);
    assert!(handle.next_request().await.is_none());
}

/// Without a reset, the status the apply returns is taken as it is: one request.
#[tokio::test]
async fn an_apply_returning_other_conditions_is_not_repeated_without_a_reset() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));
    let (request, send) = handle.next_request().await.expect("a status apply");
    let mut stored = serde_json::to_value(&channel).unwrap();
    stored["status"] = body_json(request).await["status"].clone();
    // Another controller's condition, owned by its own manager.
    stored["status"]["conditions"].as_array_mut().unwrap().push(
        json!({"type": "Audited", "status": "True", "reason": "Audited", "message": "",
                     "lastTransitionTime": "2023-11-14T22:00:00Z"}),
    );
    respond(send, stored);
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
    drop(ctx);
    assert!(handle.next_request().await.is_none());
}

/// Churn: the channel was deleted before its status write reached it.
#[tokio::test]
async fn a_channel_deleted_before_its_write_is_gone_not_an_error() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));
    let (_, send) = handle.next_request().await.expect("a status apply");
    send.send_response(
        Response::builder()
            .status(404)
            .body(Body::from(
                serde_json::to_vec(
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404,
                    "message": "deploymentchannels.interactions.dev \"support\" not found"}),
                )
                .unwrap(),
            ))
            .unwrap(),
    );
    assert_eq!(reconcile.await.unwrap(), None, "no error, no retry");
    let text = ctx.metrics.render();
    assert!(
        text.contains("reconciles_total{kind=\"DeploymentChannel\",result=\"gone\"} 1"),
        "{text}"
    );
    assert!(!text.contains("result=\"error\"} 1"), "{text}");
}

#[tokio::test]
async fn unchanged_status_sends_nothing() {
    let mut channel = calls_channel("+12125551234");
    let pc = phone_configuration();
    // Stored an hour ago: same statuses, so the old transition times stay and nothing is written.
    let earlier = Time(jiff::Timestamp::from_second(1_699_996_400).unwrap());
    channel.status = Some(resolved_status(&channel, &pc, &earlier));
    let (ctx, handle) = context(std::slice::from_ref(&channel), &[pc]);
    // Any request would now fail, and so would the reconcile.
    drop(handle);
    assert_eq!(
        reconcile_channel(cached(&channel), ctx.clone()).await,
        None,
        "no request was needed"
    );
    let text = ctx.metrics.render();
    assert!(
        text.contains("reconciles_total{kind=\"DeploymentChannel\",result=\"unchanged\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn losing_readiness_patches_status_then_records_one_event() {
    let mut channel = calls_channel("+12125551234");
    channel.status = Some(resolved_status(
        &channel,
        &phone_configuration(),
        &fixed_now(),
    ));
    // The PhoneConfiguration is gone from the cache.
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[]);
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));

    let (request, send) = handle.next_request().await.expect("a status patch");
    assert!(
        request
            .uri()
            .path()
            .ends_with("/deploymentchannels/support/status")
    );
    let body = body_json(request).await;
    let ready = &body["status"]["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PhoneConfigurationNotFound");
    assert!(
        body["status"].get("phoneConfiguration").is_none(),
        "the reference is dropped: {body}"
    );
    let mut stored = serde_json::to_value(&channel).unwrap();
    stored["status"] = body["status"].clone();
    respond(send, stored);

    let (request, send) = handle.next_request().await.expect("an Event");
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(
        request.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/team-a/events"
    );
    let event = body_json(request).await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "NotReady");
    assert_eq!(event["regarding"]["name"], "support");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .starts_with("PhoneConfigurationNotFound: PhoneConfiguration \"line\" does not exist")
    );
    respond(send, event);
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
}

/// Runs one reconcile of `channel` whose status patch the API server
/// answers with a 504; what the reconcile answers.
async fn reconcile_failing(
    channel: &DeploymentChannel,
    ctx: &Arc<Context>,
    handle: &mut Handle<Request<Body>, Response<Body>>,
) -> Option<Duration> {
    let reconcile = tokio::spawn(reconcile_channel(cached(channel), ctx.clone()));
    let (_, send) = handle.next_request().await.expect("a status patch");
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "etcd timeout",
                        "reason": "Timeout", "code": 504});
    send.send_response(
        Response::builder()
            .status(504)
            .body(Body::from(serde_json::to_vec(&status).unwrap()))
            .unwrap(),
    );
    reconcile.await.unwrap()
}

#[tokio::test]
async fn api_errors_are_counted_and_retried_with_backoff() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    // Counted, and retried later each time.
    let first = reconcile_failing(&channel, &ctx, &mut handle).await;
    let second = reconcile_failing(&channel, &ctx, &mut handle).await;
    let within = |delay: Option<Duration>, full: u64| {
        let delay = delay.expect("retried");
        assert!(
            (Duration::from_millis(full / 2)..=Duration::from_millis(full)).contains(&delay),
            "{delay:?} not within half of {full} ms and {full} ms"
        );
    };
    within(first, 250);
    within(second, 500);
    assert!(
        ctx.metrics.render().lines().any(|l| l
            == "deploymentchannel_operator_reconcile_retries_total{kind=\"DeploymentChannel\"} 2")
    );
    assert!(ctx.metrics.render().lines().any(|l| l
        == "deploymentchannel_operator_reconcile_errors_total{kind=\"DeploymentChannel\",reason=\"Timeout\"} 2"));
    // A success resets the backoff; a delete forgets it.
    ctx.reset_failures(&ObjectKey::new(NS, "support"));
    within(reconcile_failing(&channel, &ctx, &mut handle).await, 250);
    assert_eq!(ctx.records(), (0, 1));
    ctx.forget_channel(&ObjectKey::new(NS, "support"));
    assert_eq!(ctx.records(), (0, 0));
}

/// A status write the API server never answers (a connection that went
/// half-open) fails at the reconcile timeout and is retried.
#[tokio::test(start_paused = true)]
async fn a_reconcile_that_hangs_times_out_and_is_retried() {
    let channel = calls_channel("+12125551234");
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), &[phone_configuration()]);
    let started = tokio::time::Instant::now();
    let reconcile = tokio::spawn(reconcile_channel(cached(&channel), ctx.clone()));
    let (_request, _unanswered) = handle.next_request().await.expect("a status patch");
    assert!(reconcile.await.unwrap().is_some(), "retried");
    assert_eq!(started.elapsed(), RECONCILE_TIMEOUT);
    assert!(ctx.metrics.render().lines().any(|l| l
        == "deploymentchannel_operator_reconcile_errors_total{kind=\"DeploymentChannel\",reason=\"Timeout\"} 1"));
}

#[test]
fn backoff_doubles_up_to_five_minutes_with_jitter_below_it() {
    let full: Vec<Duration> = (1..=14).map(|n| backoff_delay(n, 1.0)).collect();
    assert_eq!(full[0], Duration::from_millis(250));
    assert_eq!(full[3], Duration::from_secs(2));
    assert_eq!(full[10], Duration::from_secs(256));
    assert_eq!(full[11], Duration::from_secs(300));
    assert_eq!(full[13], Duration::from_secs(300));
    // Jitter takes off up to half, never adds: the cap holds.
    assert_eq!(backoff_delay(3, 0.0), Duration::from_millis(500));
    assert_eq!(backoff_delay(20, 0.5), Duration::from_secs(225));
}

#[tokio::test]
async fn phone_configuration_counts_bound_channels() {
    let channel = calls_channel("+12125551234");
    let pc = phone_configuration();
    let (ctx, mut handle) = context(std::slice::from_ref(&channel), std::slice::from_ref(&pc));
    let reconcile = tokio::spawn(reconcile_phone_configuration(
        Arc::new(pc.clone()),
        ctx.clone(),
    ));
    let (request, send) = handle.next_request().await.expect("a status patch");
    assert_eq!(
        request.uri().to_string(),
        "/apis/interactions.dev/v1alpha1/namespaces/team-a/phoneconfigurations/line/status?&force=true&fieldManager=deploymentchannel-operator"
    );
    let body = body_json(request).await;
    assert_eq!(body["kind"], "PhoneConfiguration");
    assert_eq!(body["status"]["boundChannels"], 1);
    assert_eq!(body["status"]["observedGeneration"], 1);
    assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(body["status"]["conditions"][0]["status"], "True");
    let mut stored = serde_json::to_value(&pc).unwrap();
    stored["status"] = body["status"].clone();
    stored["metadata"]["resourceVersion"] = json!("8");
    respond(send, stored.clone());
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
    assert_eq!(ctx.records(), (1, 0), "the write waits for the cache");

    // The watch brings the write back: its record goes.
    let (_, writer) = reflector::store::<PhoneConfiguration>();
    let (channel_trigger, _channel_triggers) = futures::channel::mpsc::unbounded();
    let (phone_trigger, _phone_triggers) = futures::channel::mpsc::unbounded();
    let (phone_now, mut phone_now_keys) = futures::channel::mpsc::unbounded();
    let written: PhoneConfiguration = serde_json::from_value(stored).unwrap();
    // Then someone else edits the status.
    let mut edited = written.clone();
    edited.metadata.resource_version = Some("9".into());
    edited.status.as_mut().unwrap().bound_channels = 99;
    ingest::phone_configurations(
        futures::stream::iter([
            Ok(watcher::Event::Apply(written)),
            Ok(watcher::Event::Apply(edited)),
        ]),
        writer,
        ingest::PhoneTables {
            // Its spec is known: only the status changes.
            versions: [(ObjectKey::new(NS, "line"), (Some("pc-uid".into()), Some(1)))]
                .into_iter()
                .collect(),
            ctx: ctx.clone(),
        },
        ingest::Triggers {
            channels: channel_trigger,
            phone_configurations: phone_trigger,
            phone_configurations_now: phone_now,
        },
    )
    .await;
    assert_eq!(
        ctx.records(),
        (0, 0),
        "nothing left once the cache shows it"
    );
    // Its own write reconciles nothing; someone else's edit at once.
    let mut now = Vec::new();
    while let Ok(key) = phone_now_keys.try_recv() {
        now.push(key);
    }
    assert_eq!(now, [ObjectKey::new(NS, "line")]);
}

/// A channel named `name` whose Ready condition is `ready` with `reason`, or without a status.
fn channel_with_ready(name: &str, ready: Option<(&str, &str)>) -> DeploymentChannel {
    let mut channel = calls_channel("+12125551234");
    channel.metadata.name = Some(name.into());
    channel.status = ready.map(|(status, reason)| {
        serde_json::from_value(json!({"conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2023-11-14T22:13:20Z"
        }]}))
        .unwrap()
    });
    channel
}

#[tokio::test(start_paused = true)]
async fn channels_are_counted_by_ready_reason_and_failed_watches_are_counted() {
    let (ctx, _handle) = context(&[], &[]);
    let metrics = ctx.metrics.clone();
    let (phones, _) = reflector::store::<PhoneConfiguration>();
    let (channel_trigger, _channel_triggers) = futures::channel::mpsc::unbounded();
    let (phone_trigger, _phone_triggers) = futures::channel::mpsc::unbounded();
    let events = vec![
        Ok(watcher::Event::Init),
        Ok(watcher::Event::InitApply(channel_with_ready(
            "a",
            Some(("True", "Ready")),
        ))),
        Ok(watcher::Event::InitApply(channel_with_ready("b", None))),
        Ok(watcher::Event::InitApply(channel_with_ready(
            "c",
            Some(("False", "SomethingElse")),
        ))),
        Ok(watcher::Event::InitDone),
        Err(watcher::Error::NoResourceVersion),
        Ok(watcher::Event::Apply(channel_with_ready(
            "b",
            Some(("False", "IdentifierConflict")),
        ))),
        Ok(watcher::Event::Delete(channel_with_ready(
            "a",
            Some(("True", "Ready")),
        ))),
        Err(watcher::Error::NoResourceVersion),
    ];
    ingest::channels(
        futures::stream::iter(events),
        ingest::ChannelTables {
            index: ctx.index.clone(),
            tally: ingest::ReadyConditionTally::default(),
            cache: ctx.channels.clone(),
            ctx: ctx.clone(),
        },
        phones,
        ingest::Triggers {
            channels: channel_trigger,
            phone_configurations: phone_trigger,
            phone_configurations_now: futures::channel::mpsc::unbounded().0,
        },
    )
    .await;
    let text = metrics.render();
    for line in [
        "deploymentchannel_operator_channels{ready=\"True\",reason=\"Ready\"} 0",
        "deploymentchannel_operator_channels{ready=\"Unknown\",reason=\"NoStatus\"} 0",
        "deploymentchannel_operator_channels{ready=\"False\",reason=\"IdentifierConflict\"} 1",
        "deploymentchannel_operator_channels{ready=\"False\",reason=\"Other\"} 1",
        "deploymentchannel_operator_watch_restarts_total{kind=\"DeploymentChannel\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

/// Reconciles `channel` once; the API server answers its status write with
/// resourceVersion 42 (the channel is cached at 41).
async fn written_at_42(channel: &DeploymentChannel) -> Arc<Context> {
    let (ctx, mut handle) = context(std::slice::from_ref(channel), &[phone_configuration()]);
    let reconcile = tokio::spawn(reconcile_channel(cached(channel), ctx.clone()));
    let (request, send) = handle.next_request().await.expect("a status apply");
    let mut stored = serde_json::to_value(channel).unwrap();
    stored["status"] = body_json(request).await["status"].clone();
    stored["metadata"]["resourceVersion"] = json!("42");
    respond(send, stored);
    assert_eq!(reconcile.await.unwrap(), None, "reconcile succeeds");
    assert_eq!(ctx.records(), (1, 0), "the write waits for the cache");
    ctx
}

#[tokio::test]
async fn the_watch_event_of_our_own_write_needs_no_reconcile() {
    let ctx = written_at_42(&calls_channel("+12125551234")).await;
    let key = ObjectKey::new(NS, "support");
    // The version the write replaced is no news.
    assert!(!ctx.channel_status.cached(&key, "41"));
    assert_eq!(ctx.records(), (1, 0));
    // The version it made: nothing to reconcile, and nothing left to remember.
    assert!(ctx.channel_status.cached(&key, "42"));
    assert_eq!(ctx.records(), (0, 0));
}

#[tokio::test]
async fn a_version_after_our_write_is_reconciled() {
    let ctx = written_at_42(&calls_channel("+12125551234")).await;
    let key = ObjectKey::new(NS, "support");
    // Someone changed the channel after (or instead of) our write landing.
    assert!(!ctx.channel_status.cached(&key, "43"));
    assert_eq!(ctx.records(), (0, 0));
    assert!(!ctx.channel_status.cached(&key, "42"));
}

/// The channel was deleted and re-created under the same name (or changed
/// by someone else) since its status was computed: the write holds to the
/// version it was computed from, the API server refuses it, and nothing is
/// written or retried (the new version's event brings a reconcile).
#[tokio::test]
async fn a_status_write_never_lands_on_a_re_created_object() {
    let writer = StatusWriter::<DeploymentChannel, DeploymentChannelStatus>::default();
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<DeploymentChannel> = Api::namespaced(Client::new(service, NS), NS);
    let key = ObjectKey::new(NS, "support");
    let answer = async {
        let (request, send) = handle.next_request().await.expect("a status apply");
        assert_eq!(
            body_json(request).await["metadata"],
            json!({"resourceVersion": "41"})
        );
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
            "reason": "Conflict",
            "message": "Operation cannot be fulfilled on deploymentchannels.interactions.dev \"support\": the object has been modified; please apply your changes to the latest version and try again"});
        send.send_response(
            Response::builder()
                .status(409)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    };
    let desired = DeploymentChannelStatus::default();
    let (written, ()) = futures::join!(writer.write(&api, &key, "41", None, &desired), answer);
    assert_eq!(written.unwrap(), Written::Gone);
    assert_eq!(writer.len(), 0);
}

/// Writes `status` to channel "support" through `writer`, computed while
/// the cache showed `version`; the API server answers with `made`.
async fn write_answered(
    writer: &StatusWriter<DeploymentChannel, DeploymentChannelStatus>,
    version: &str,
    status: &DeploymentChannelStatus,
    made: &str,
) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api: Api<DeploymentChannel> = Api::namespaced(Client::new(service, NS), NS);
    let key = ObjectKey::new(NS, "support");
    let answer = async {
        let (request, send) = handle.next_request().await.expect("a status apply");
        let mut stored = serde_json::to_value(calls_channel("+12125551234")).unwrap();
        stored["status"] = body_json(request).await["status"].clone();
        stored["metadata"]["resourceVersion"] = json!(made);
        respond(send, stored);
    };
    let (written, ()) = futures::join!(writer.write(&api, &key, version, None, status), answer);
    assert_eq!(written.unwrap(), Written::Patched);
}

#[tokio::test]
async fn a_second_write_before_the_watch_brings_the_first_keeps_both_ours() {
    let writer = StatusWriter::<DeploymentChannel, DeploymentChannelStatus>::default();
    let key = ObjectKey::new(NS, "support");
    let status = |generation| DeploymentChannelStatus {
        observed_generation: Some(generation),
        ..Default::default()
    };
    // Cached at 41: a write makes 42, and before the watch brings it,
    // another (its inputs changed) makes 43 on top.
    write_answered(&writer, "41", &status(1), "42").await;
    let current = writer.current(&key, "41", None).expect("the first write");
    assert_eq!(current.status, status(1));
    write_answered(&writer, "41", &status(2), "43").await;

    // 42 is our own first write: nothing to reconcile, and the record of
    // the second stays, so a reconcile now starts from it, not from 42.
    assert!(writer.cached(&key, "42"));
    assert_eq!(writer.len(), 1);
    let stale = Current::full(status(1));
    assert_eq!(
        writer
            .current(&key, "42", Some(stale.clone()))
            .unwrap()
            .status,
        status(2)
    );
    // 43 is the last: the record goes.
    assert!(writer.cached(&key, "43"));
    assert_eq!(writer.len(), 0);

    // Someone else's version overtakes a write in flight: reconcile from the cache.
    write_answered(&writer, "43", &status(3), "44").await;
    assert!(!writer.cached(&key, "45"));
    assert_eq!(writer.len(), 0);
    assert_eq!(
        writer.current(&key, "45", Some(stale)).unwrap().status,
        status(1)
    );
}
