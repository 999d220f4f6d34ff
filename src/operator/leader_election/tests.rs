//! The election against a fake Lease endpoint (resourceVersion checks, merge
//! patches) on tokio's paused clock: the cadence, freezes of the API server
//! shorter and longer than the renew deadline, and answers that name
//! another holder.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::{Client, client::Body};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::Instant;
use tower_test::mock;

use super::*;

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op";

fn timing() -> LeaseTiming {
    LeaseTiming::new(
        Duration::from_secs(15),
        Duration::from_secs(10),
        Duration::from_secs(2),
    )
    .unwrap()
}

/// The stored Lease, the writes it took, and until when the server is frozen.
#[derive(Default)]
struct Server {
    lease: Option<Value>,
    version: u64,
    writes: Vec<(String, Value)>,
    frozen_until: Option<Instant>,
    /// Answers to the next patches with this holder instead of the patch's.
    answer_holder: Option<String>,
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn answer(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"})
}

/// Serves the Lease from `server` until the client goes away.
fn serve(server: Arc<Mutex<Server>>) -> Client {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let server = server.clone();
            tokio::spawn(async move {
                let frozen = server.lock().frozen_until;
                if let Some(until) = frozen {
                    tokio::time::sleep_until(until).await;
                }
                let method = request.method().as_str().to_string();
                let path = request.uri().path();
                if method == "POST" {
                    assert_eq!(Some(path), PATH.strip_suffix("/op"));
                } else {
                    assert_eq!(path, PATH, "{method}");
                }
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut server = server.lock();
                let response = match method.as_str() {
                    "GET" => match &server.lease {
                        Some(lease) => answer(200, lease),
                        None => answer(
                            404,
                            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                        ),
                    },
                    "POST" if server.lease.is_none() => {
                        server.writes.push((method, body.clone()));
                        server.version += 1;
                        let mut lease = body;
                        lease["metadata"]["resourceVersion"] = json!(server.version.to_string());
                        server.lease = Some(lease.clone());
                        answer(201, &lease)
                    }
                    "POST" => answer(409, &conflict()),
                    "PATCH" => {
                        server.writes.push((method, body.clone()));
                        let version = body["metadata"]["resourceVersion"]
                            .as_str()
                            .map(String::from);
                        let stored = server.lease.clone().unwrap();
                        if version.as_deref() != stored["metadata"]["resourceVersion"].as_str() {
                            answer(409, &conflict())
                        } else {
                            let mut lease = stored;
                            let mut patch = body.clone();
                            patch["metadata"]
                                .as_object_mut()
                                .unwrap()
                                .remove("resourceVersion");
                            merge(&mut lease, &patch);
                            server.version += 1;
                            lease["metadata"]["resourceVersion"] =
                                json!(server.version.to_string());
                            if let Some(holder) = server.answer_holder.clone() {
                                lease["spec"]["holderIdentity"] = json!(holder);
                            }
                            server.lease = Some(lease.clone());
                            answer(200, &lease)
                        }
                    }
                    other => panic!("unexpected {other}"),
                };
                send.send_response(response);
            });
        }
    });
    Client::new(service, "ops")
}

fn elector(client: &Client, identity: &str) -> Elector {
    Elector::new(
        Api::namespaced(client.clone(), "ops"),
        "op",
        identity,
        timing(),
        format!("manager-{identity}"),
    )
}

fn held_by(holder: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "op", "namespace": "ops", "resourceVersion": "1"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3},
    })
}

fn holder(server: &Mutex<Server>) -> Option<String> {
    server
        .lock()
        .lease
        .as_ref()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
}

#[test]
fn the_cadence_is_refused_unless_retry_is_below_renew_below_duration() {
    let s = Duration::from_secs;
    assert!(LeaseTiming::new(s(15), s(10), s(2)).is_ok());
    for (duration, renew, retry) in [(15, 15, 2), (15, 10, 10), (10, 15, 2), (15, 10, 12)] {
        let error = LeaseTiming::new(s(duration), s(renew), s(retry)).unwrap_err();
        assert!(
            error.to_string().contains("--lease-renew-deadline"),
            "{error}"
        );
    }
    assert_eq!(timing().write_window(), s(12));
    let odd = LeaseTiming::new(Duration::from_millis(4500), s(3), s(1)).unwrap();
    assert_eq!(odd.seconds(), 5, "rounded up");
    // Never up to the lease duration, whatever the retry period.
    let tight = LeaseTiming::new(s(15), s(14), s(2)).unwrap();
    assert_eq!(tight.write_window(), Duration::from_millis(14_500));
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_the_lease_only_once_it_saw_it_unchanged_for_its_duration() {
    let server = Arc::new(Mutex::new(Server {
        lease: Some(held_by("other")),
        version: 1,
        ..Server::default()
    }));
    let mut standby = elector(&serve(server.clone()), "me");
    let started = Instant::now();
    assert_eq!(standby.try_take().await.unwrap(), None);
    tokio::time::sleep(Duration::from_secs(14)).await;
    assert_eq!(standby.try_take().await.unwrap(), None, "not expired yet");
    assert!(server.lock().writes.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = standby.try_take().await.unwrap().expect("taken");
    assert!(sent >= started + Duration::from_secs(15));
    let writes = server.lock().writes.clone();
    assert_eq!(writes.len(), 1);
    let spec = &writes[0].1["spec"];
    assert_eq!(writes[0].1["metadata"]["resourceVersion"], "1");
    assert_eq!(spec["holderIdentity"], "me");
    assert_eq!(spec["leaseTransitions"], 4);
    assert_eq!(spec["leaseDurationSeconds"], 15);
    assert_eq!(spec["acquireTime"], spec["renewTime"]);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_names_another_holder_is_no_renewal() {
    let server = Arc::new(Mutex::new(Server::default()));
    let mut leader = elector(&serve(server.clone()), "me");
    leader.try_take().await.unwrap().expect("created");
    assert!(matches!(
        leader.renew().await.unwrap(),
        Renewal::Confirmed(_)
    ));
    server.lock().answer_holder = Some("racer".into());
    match leader.renew().await.unwrap() {
        Renewal::TakenBy(holder) => assert_eq!(holder, "racer"),
        _ => panic!("an answer naming another holder counted as a renewal"),
    }
}

/// Runs an elector over `server`; answers the leadership, the fence and
/// the task.
fn elect(
    server: &Arc<Mutex<Server>>,
    identity: &str,
) -> (Leadership, Arc<LeaseFence>, tokio::task::JoinHandle<()>) {
    let leading = watch::Sender::new(false);
    let leadership = Leadership::following(&leading);
    let fence = Arc::new(LeaseFence::new(timing().write_window()));
    let task = tokio::spawn(elector(&serve(server.clone()), identity).run(
        leading,
        fence.clone(),
        Arc::new(Metrics::default()),
        std::future::pending(),
    ));
    (leadership, fence, task)
}

/// Waits until the Lease's renew time changes: a renewal just landed.
async fn next_renewal(server: &Mutex<Server>) -> Instant {
    let renewed = |s: &Server| s.lease.as_ref().map(|l| l["spec"]["renewTime"].clone());
    let before = renewed(&server.lock());
    while renewed(&server.lock()) == before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn freezes_shorter_than_the_renew_deadline_change_nothing_at_any_moment() {
    for (offset_ms, freeze_ms) in [(0, 4_000), (1_000, 4_000), (1_990, 9_000), (500, 7_900)] {
        let server = Arc::new(Mutex::new(Server::default()));
        let (leadership, fence, task) = elect(&server, "me");
        leadership.acquired().await;
        let renewed = next_renewal(&server).await;
        tokio::time::sleep_until(renewed + Duration::from_millis(offset_ms)).await;
        let thawed = Instant::now() + Duration::from_millis(freeze_ms);
        server.lock().frozen_until = Some(thawed);
        // Every moment of the freeze and a while after: still leading, fence open.
        while Instant::now() < thawed + Duration::from_secs(12) {
            assert!(
                leadership.is_leading(),
                "offset {offset_ms} ms, freeze {freeze_ms} ms"
            );
            assert!(fence.holds(Instant::now()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(holder(&server).as_deref(), Some("me"));
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_freeze_past_the_renew_deadline_stops_writes_before_the_lease_expires() {
    for freeze in [13, 20, 40] {
        let server = Arc::new(Mutex::new(Server::default()));
        let (leadership, fence, task) = elect(&server, "me");
        leadership.acquired().await;
        let renewed = next_renewal(&server).await;
        tokio::time::sleep_until(renewed + Duration::from_millis(100)).await;
        let thawed = Instant::now() + Duration::from_secs(freeze);
        server.lock().frozen_until = Some(thawed);
        leadership.lost().await;
        // The last renewal was sent at most this long before it landed.
        let stopped = Instant::now();
        // The renewal due a retry period later had the renew deadline: the
        // leader stops 12 s after the last confirmed one, 3 s before a
        // standby may take over.
        // (`renewed` is when the poll above saw the renewal, up to 10 ms late.)
        let window = renewed + Duration::from_secs(12);
        assert!(
            stopped <= window && stopped + Duration::from_millis(20) >= window,
            "{freeze}"
        );
        assert!(!fence.holds(stopped));
        assert!(stopped < renewed + timing().duration);
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_over_a_dead_leader_and_the_stepped_down_one_waits() {
    let server = Arc::new(Mutex::new(Server::default()));
    let (a, _, task_a) = elect(&server, "a");
    a.acquired().await;
    let (b, _, _task_b) = elect(&server, "b");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!b.is_leading(), "the standby waits while the leader renews");
    task_a.abort();
    let died = Instant::now();
    b.acquired().await;
    assert!(died.elapsed() <= timing().duration + timing().retry_period);
    assert_eq!(holder(&server).as_deref(), Some("b"));
}
