//! Where the memory goes, per cached object: `cargo run --release --example
//! memory [-- N]` (default 10000) builds the objects the benchmark's
//! workload ends with, as the API server sends them (status and
//! managedFields included), feeds them through the operator's cache
//! handling and counts the bytes allocated at each step. No cluster needed.
//!
//! The bytes are what the program asks the allocator for; the allocator
//! adds its own overhead per allocation (about 8–16 bytes with glibc), so
//! the allocation count is printed too.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicIsize, Ordering::Relaxed},
    },
};

use deploymentchannel_operator::{
    core::api::{DeploymentChannel, DeploymentChannelStatus, PhoneConfiguration},
    core::desired_status::desired_channel_status,
    core::index::{Index, ObjectKey},
    core::validation::validate_channel,
    operator::channel_cache::{CachedChannel, ChannelCache},
    operator::controller::{cached_form, now},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as isize, Relaxed);
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as isize, Relaxed);
        ALLOCATIONS.fetch_sub(1, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes and allocations live now.
fn live() -> (isize, isize) {
    (BYTES.load(Relaxed), ALLOCATIONS.load(Relaxed))
}

/// One channel as the API server sends it once the operator wrote its status.
fn stored_channel(i: usize, phone: &PhoneConfiguration) -> Value {
    let ns = "bench";
    let (name, spec) = match i % 4 {
        0 => (
            format!("pc-{:05}-calls-0", i / 4),
            json!({"deploymentType": "CALLS", "channelIdentifier": phone.spec.phone_number,
                   "configuration": {"phoneConfigurationId": phone.metadata.name}}),
        ),
        1 => (
            format!("web-{i:05}"),
            json!({"deploymentType": "WEB", "channelIdentifier": format!("https://site-{i}.example.com"), "configuration": {}}),
        ),
        2 => (
            format!("app-{i:05}"),
            json!({"deploymentType": "MOBILE", "channelIdentifier": format!("com.example.app{i}"),
                   "configuration": {"packageName": format!("com.example.app{i}"), "platform": "ANDROID"}}),
        ),
        _ => (
            format!("pc-{:05}-sms-1", i / 4),
            json!({"deploymentType": "SMS", "channelIdentifier": phone.spec.phone_number,
                   "configuration": {"phoneConfigurationId": phone.metadata.name}}),
        ),
    };
    let mut channel: DeploymentChannel = serde_json::from_value(json!({
        "apiVersion": "interactions.dev/v1alpha1", "kind": "DeploymentChannel",
        "metadata": {"name": name, "namespace": ns}, "spec": spec}))
    .expect("a workload channel");
    channel.metadata.generation = Some(1);
    let status: DeploymentChannelStatus = desired_channel_status(
        channel.placement(),
        &validate_channel(&channel.spec),
        |_, _| Ok(Some(phone)),
        None,
        None,
        &now(),
    );
    let time = "2026-11-26T20:00:00Z";
    let mut value = serde_json::to_value(&channel).expect("serializable");
    value["metadata"] = json!({
        "name": name, "namespace": ns, "uid": format!("6f1c2a4e-3b5d-4c7e-9f80-{i:012}"),
        "resourceVersion": format!("{}", 100_000 + i), "generation": 1,
        "creationTimestamp": time,
        "managedFields": [
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "interactions.dev/v1alpha1",
             "time": time, "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {".": {}, "f:channelIdentifier": {}, "f:configuration": {".": {}, "f:phoneConfigurationId": {}}, "f:deploymentType": {}}}},
            {"manager": "deploymentchannel-operator", "operation": "Apply", "apiVersion": "interactions.dev/v1alpha1",
             "time": time, "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
                                                        "k:{\"type\":\"Valid\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                                      "f:observedGeneration": {}}}}
        ]
    });
    value["status"] = serde_json::to_value(&status).expect("serializable");
    value
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let phones: Vec<PhoneConfiguration> = (0..n / 10 + 1)
        .map(|p| {
            serde_json::from_value(json!({
                "apiVersion": "interactions.dev/v1alpha1", "kind": "PhoneConfiguration",
                "metadata": {"name": format!("pc-{p:05}"), "namespace": "bench", "uid": format!("0a1b2c3d-0000-4000-8000-{p:012}")},
                "spec": {"phoneNumber": format!("+1212{}{:04}", 200 + p / 10_000, p % 10_000), "provider": "bench", "capabilities": ["VOICE", "SMS"]}}))
            .expect("a PhoneConfiguration")
        })
        .collect();
    let texts: Vec<String> = (0..n)
        .map(|i| stored_channel(i, &phones[(i / 4) % phones.len()]).to_string())
        .collect();
    let json_bytes: usize = texts.iter().map(String::len).sum();

    let mut rows: Vec<(&str, (isize, isize))> = Vec::new();
    let measure = |rows: &mut Vec<(&'static str, (isize, isize))>, what, before: (isize, isize)| {
        let after = live();
        rows.push((what, (after.0 - before.0, after.1 - before.1)));
    };

    // The objects as decoded, then as the cache keeps them.
    let before = live();
    let mut channels: Vec<DeploymentChannel> = texts
        .iter()
        .map(|t| serde_json::from_str(t).expect("a stored channel"))
        .collect();
    let decoded = live();
    for channel in &mut channels {
        cached_form(channel);
    }
    measure(&mut rows, "object as the cache keeps it", before);
    let (decoded_bytes, _) = (decoded.0 - before.0, decoded.1 - before.1);

    // Its parts, each decoded on its own from the stripped form.
    let stripped: Vec<Value> = channels
        .iter()
        .map(|c| serde_json::to_value(c).expect("serializable"))
        .collect();
    for (what, part) in [
        ("  metadata", "metadata"),
        ("  spec", "spec"),
        ("  status", "status"),
    ] {
        let before = live();
        let kept: Vec<Box<dyn std::any::Any>> = stripped
            .iter()
            .map(|v| -> Box<dyn std::any::Any> {
                match part {
                    "metadata" => Box::new(
                        serde_json::from_value::<ObjectMeta>(v[part].clone()).expect("metadata"),
                    ),
                    "spec" => Box::new(
                        serde_json::from_value::<
                            deploymentchannel_operator::core::api::DeploymentChannelSpec,
                        >(v[part].clone())
                        .expect("spec"),
                    ),
                    _ => Box::new(
                        serde_json::from_value::<DeploymentChannelStatus>(v[part].clone())
                            .expect("status"),
                    ),
                }
            })
            .collect();
        measure(&mut rows, what, before);
        drop(kept);
    }
    drop(stripped);

    // The cache before: each stripped object behind an Arc in kube's
    // reflector store, keyed by an ObjectRef.
    let (store, mut writer) = reflector::store::<DeploymentChannel>();
    let before = live();
    writer.apply_watcher_event(&watcher::Event::Init);
    for channel in &channels {
        writer.apply_watcher_event(&watcher::Event::InitApply(channel.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    measure(
        &mut rows,
        "before: cache entry (stripped object, Arc, ObjectRef key)",
        before,
    );
    assert_eq!(store.len(), n);
    drop((store, writer));

    // The cache now: the compact form, found by its own key.
    let cache = ChannelCache::default();
    let before = live();
    for channel in &channels {
        cache.insert(CachedChannel::of(channel).expect("named"));
    }
    measure(&mut rows, "cache entry (compact form, its key)", before);
    assert_eq!(cache.len(), n);

    // The index of claims and references, sharing the cache's keys.
    let before = live();
    let mut index = Index::default();
    for channel in &channels {
        let key = cache
            .get(&ObjectKey::of(channel).expect("named"))
            .expect("cached")
            .key
            .clone();
        index.apply_keyed(key, channel);
    }
    measure(&mut rows, "index entry", before);
    assert_eq!(index.len(), n);

    // The per-object keys of the other tables (readiness tally, status writes).
    let before = live();
    let keys: Vec<ObjectKey> = channels.iter().filter_map(ObjectKey::of).collect();
    measure(&mut rows, "one ObjectKey (for scale)", before);
    drop(keys);
    drop(channels);

    println!("per DeploymentChannel, N={n}:");
    println!(
        "  stored JSON as the API server sends it: {:.0} bytes",
        json_bytes as f64 / n as f64
    );
    println!(
        "  decoded, before dropping what the operator never reads: {:.0} bytes",
        decoded_bytes as f64 / n as f64
    );
    println!();
    println!("| part | bytes per object | allocations per object |");
    println!("|---|---:|---:|");
    for (what, (bytes, allocations)) in rows {
        println!(
            "| {what} | {:.0} | {:.1} |",
            bytes as f64 / n as f64,
            allocations as f64 / n as f64
        );
    }
    drop((cache, index, Arc::new(())));
}
