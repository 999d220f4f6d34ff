//! Reports built from statuses the controller's own pure core computes, and
//! their text views compared with golden files in tests/data/status (write
//! them anew with `UPDATE_GOLDEN=1 cargo test report`, then review the diff).

use k8s_openapi::{
    api::core::v1::{Event, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
};
use serde_json::json;

use super::{advice::ConditionReason, render::Palette, *};
use crate::{
    core::api::{
        Capability, ChannelConfiguration, DeploymentChannel, DeploymentChannelSpec, DeploymentType,
        PhoneConfiguration, PhoneConfigurationSpec, find_condition,
    },
    core::desired_status::{ChannelFacts, ClaimHolder, channel_status, phone_configuration_status},
    core::index::ObjectKey,
    core::validation::{validate_channel, validate_phone_configuration},
};

const NS: &str = "team-a";
const NOW: i64 = 1_700_000_000;

fn at(second: i64) -> Time {
    Time(jiff::Timestamp::from_second(second).unwrap())
}

fn now() -> Time {
    at(NOW)
}

fn meta(name: &str, created: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        generation: Some(1),
        creation_timestamp: Some(at(created)),
        ..Default::default()
    }
}

fn channel(name: &str, ty: DeploymentType, identifier: &str, created: i64) -> DeploymentChannel {
    let phone_configuration_id =
        matches!(ty, DeploymentType::Calls | DeploymentType::Sms).then(|| "support-line".into());
    let configuration = match ty {
        DeploymentType::Mobile => ChannelConfiguration {
            package_name: Some(identifier.into()),
            platform: Some(crate::core::api::MobilePlatform::Android),
            ..Default::default()
        },
        _ => ChannelConfiguration {
            phone_configuration_id,
            ..Default::default()
        },
    };
    DeploymentChannel {
        metadata: meta(name, created),
        spec: DeploymentChannelSpec {
            deployment_type: ty,
            channel_name: None,
            recording_enabled: true,
            channel_identifier: identifier.into(),
            configuration,
        },
        status: None,
    }
}

fn phone(number: &str, capabilities: &[Capability], created: i64) -> PhoneConfiguration {
    let mut pc = PhoneConfiguration {
        metadata: meta("support-line", created),
        spec: PhoneConfigurationSpec {
            phone_number: number.into(),
            provider: "twilio".into(),
            capabilities: capabilities.to_vec(),
            description: None,
        },
        status: None,
    };
    let validation = validate_phone_configuration(&pc.spec);
    pc.status = Some(phone_configuration_status(
        pc.metadata.generation,
        &validation,
        1,
        None,
        &at(created + 1),
    ));
    pc
}

/// Gives `channel` the status the controller computes, as of `when`.
fn reconciled(
    mut channel: DeploymentChannel,
    pc: Option<&PhoneConfiguration>,
    holder: Option<&ClaimHolder>,
    when: i64,
) -> DeploymentChannel {
    let validation = validate_channel(&channel.spec);
    let facts = ChannelFacts {
        namespace: NS,
        generation: channel.metadata.generation,
        validation: &validation,
        phone_configuration_problem: None,
        phone_configuration: pc,
        claim_holder: holder,
    };
    channel.status = Some(channel_status(&facts, None, &at(when)));
    channel
}

fn not_ready_event(channel: &DeploymentChannel, when: i64, count: i32) -> Event {
    let ready = find_condition(&channel.status.as_ref().unwrap().conditions, "Ready").unwrap();
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.{when}",
                channel.metadata.name.as_deref().unwrap()
            )),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("DeploymentChannel".into()),
            name: channel.metadata.name.clone(),
            uid: channel.metadata.uid.clone(),
            ..Default::default()
        },
        type_: Some("Warning".into()),
        reason: Some("NotReady".into()),
        message: Some(format!("{}: {}", ready.reason, ready.message)),
        count: Some(count),
        last_timestamp: Some(at(when)),
        ..Default::default()
    }
}

fn inputs(
    channel: DeploymentChannel,
    pc: Option<Fetched<PhoneConfiguration>>,
    neighbours: Vec<DeploymentChannel>,
    events: Vec<Event>,
) -> ChannelInputs {
    ChannelInputs {
        channel,
        phone_configuration: pc,
        neighbours: Ok(neighbours),
        events: Ok(events),
    }
}

/// Compares `actual` with the golden file `name`, or rewrites it when
/// UPDATE_GOLDEN is set.
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/status")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs; the text view now reads:\n{actual}",
        path.display()
    );
}

fn channel_text(inputs: &ChannelInputs) -> String {
    render::channel(&channel_report(inputs), &now(), &Palette::plain())
}

/// Every `pub const` in `status::reason`, read from the controller's source
/// so that a reason added there shows up here without anyone listing it.
fn reason_constants() -> Vec<String> {
    let source = include_str!("../../../core/desired_status.rs");
    let module = source
        .split("pub mod reason {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("status.rs has `pub mod reason { ... }`");
    module
        .lines()
        .filter_map(|line| {
            let value = line.trim().strip_prefix("pub const ")?.split('"').nth(1)?;
            Some(value.to_string())
        })
        .collect()
}

#[test]
fn every_reason_the_controller_writes_has_advice() {
    let constants = reason_constants();
    assert!(constants.len() >= 9, "found only {constants:?}");
    let pc = phone("+12125551234", &[Capability::Voice], NOW - 100);
    let holder = ObjectKey::new(NS, "older");
    let situation = advice::ChannelSituation {
        namespace: NS,
        deployment_type: DeploymentType::Sms,
        identifier: "+12125551234",
        phone_configuration_name: Some("support-line"),
        phone_configuration: Some(&pc),
        spec_errors: &[],
        holder: Some(&holder),
    };
    for code in &constants {
        let reason = ConditionReason::from_code(code)
            .unwrap_or_else(|| panic!("reason {code:?} in status::reason has no advice"));
        assert_eq!(reason.code(), code);
        assert!(!advice::channel_next_step(reason, &situation).is_empty());
        assert!(!advice::phone_configuration_next_step(reason, &[], 0).is_empty());
    }
    for reason in ConditionReason::ALL {
        assert!(
            constants.iter().any(|c| c == reason.code()),
            "{reason:?} is not a reason the controller writes"
        );
    }
}

#[test]
fn ready_channel_names_its_phone_configuration_and_who_waits() {
    let pc = phone(
        "+12125551234",
        &[Capability::Voice, Capability::Sms],
        NOW - 3600,
    );
    let ready = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 600,
        ),
        Some(&pc),
        None,
        NOW - 590,
    );
    let waiting = reconciled(
        channel(
            "support-sms-2",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 60,
        ),
        Some(&pc),
        Some(&ClaimHolder {
            namespace: NS.into(),
            name: "support-sms".into(),
        }),
        NOW - 59,
    );
    let unrelated = reconciled(
        channel(
            "support-calls",
            DeploymentType::Calls,
            "+12125551234",
            NOW - 30,
        ),
        Some(&pc),
        None,
        NOW - 29,
    );
    let report = channel_report(&inputs(
        ready.clone(),
        Some(Fetched::Found(pc)),
        vec![ready, waiting, unrelated],
        vec![],
    ));
    assert_eq!(report.ready.status, "True");
    assert_eq!(report.waiting, vec![ObjectKey::new(NS, "support-sms-2")]);
    assert_eq!(report.next_step, "nothing to do: the channel is ready");
    golden(
        "channel-ready.txt",
        &render::channel(&report, &now(), &Palette::plain()),
    );
}

#[test]
fn missing_phone_configuration_advises_creating_it() {
    let lost = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 7200,
        ),
        None,
        None,
        NOW - 125,
    );
    let events = vec![
        not_ready_event(&lost, NOW - 125, 1),
        not_ready_event(&lost, NOW - 7000, 3),
    ];
    let inputs = inputs(lost.clone(), Some(Fetched::NotFound), vec![lost], events);
    let report = channel_report(&inputs);
    assert_eq!(
        report.next_step,
        "create PhoneConfiguration \"support-line\" in namespace \"team-a\" with phoneNumber +12125551234 and the SMS capability, or set spec.configuration.phoneConfigurationId to an existing one"
    );
    assert_eq!(report.events.len(), 2);
    assert_eq!(
        report.events[0].last_seen,
        Some(at(NOW - 7000)),
        "oldest first"
    );
    golden(
        "channel-phone-configuration-not-found.txt",
        &channel_text(&inputs),
    );
}

#[test]
fn invalid_phone_configuration_advises_fixing_its_fields() {
    let pc = phone("+99912345678", &[Capability::Voice], NOW - 100);
    let c = reconciled(
        channel(
            "support-calls",
            DeploymentType::Calls,
            "+12125551234",
            NOW - 100,
        ),
        Some(&pc),
        None,
        NOW - 90,
    );
    let inputs = inputs(c.clone(), Some(Fetched::Found(pc)), vec![c], vec![]);
    let report = channel_report(&inputs);
    assert_eq!(
        report.ready.reason.as_deref(),
        Some(crate::core::desired_status::reason::PHONE_CONFIGURATION_NOT_READY)
    );
    assert!(
        report
            .next_step
            .starts_with("fix spec.phoneNumber (+99912345678 is not a valid phone number"),
        "{}",
        report.next_step
    );
    golden(
        "channel-phone-configuration-not-ready.txt",
        &channel_text(&inputs),
    );
}

#[test]
fn missing_capability_advises_adding_it() {
    let pc = phone("+12125551234", &[Capability::Voice], NOW - 100);
    let c = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 100,
        ),
        Some(&pc),
        None,
        NOW - 90,
    );
    let inputs = inputs(c.clone(), Some(Fetched::Found(pc)), vec![c], vec![]);
    assert_eq!(
        channel_report(&inputs).next_step,
        "add the SMS capability to spec.capabilities of PhoneConfiguration \"support-line\", or point spec.configuration.phoneConfigurationId at one that has it"
    );
    golden("channel-capability-missing.txt", &channel_text(&inputs));
}

#[test]
fn number_mismatch_advises_changing_either_number() {
    let pc = phone("+12125559999", &[Capability::Voice], NOW - 100);
    let c = reconciled(
        channel(
            "support-calls",
            DeploymentType::Calls,
            "+12125551234",
            NOW - 100,
        ),
        Some(&pc),
        None,
        NOW - 90,
    );
    let inputs = inputs(c.clone(), Some(Fetched::Found(pc)), vec![c], vec![]);
    assert_eq!(
        channel_report(&inputs).next_step,
        "change spec.phoneNumber of PhoneConfiguration \"support-line\" to +12125551234, or this channel's spec.channelIdentifier to +12125559999"
    );
    golden("channel-phone-number-mismatch.txt", &channel_text(&inputs));
}

#[test]
fn conflict_in_the_namespace_names_the_holder() {
    let holder = reconciled(
        channel(
            "site",
            DeploymentType::Web,
            "https://Example.com/",
            NOW - 900,
        ),
        None,
        None,
        NOW - 899,
    );
    let loser = reconciled(
        channel(
            "site-copy",
            DeploymentType::Web,
            "https://example.com",
            NOW - 60,
        ),
        None,
        Some(&ClaimHolder {
            namespace: NS.into(),
            name: "site".into(),
        }),
        NOW - 59,
    );
    let inputs = inputs(loser.clone(), None, vec![holder, loser], vec![]);
    let report = channel_report(&inputs);
    let conflict = report.conflict.as_ref().expect("a conflict");
    assert_eq!(&*conflict.holder.as_ref().unwrap().name, "site");
    assert_eq!(conflict.identifier, "https://example.com");
    assert!(
        report
            .next_step
            .starts_with("delete DeploymentChannel \"site\"")
    );
    golden("channel-identifier-conflict.txt", &channel_text(&inputs));
}

#[test]
fn conflict_across_namespaces_does_not_blame_a_neighbour_that_also_waits() {
    let elsewhere = ClaimHolder {
        namespace: "team-b".into(),
        name: "app".into(),
    };
    let first = reconciled(
        channel("app", DeploymentType::Mobile, "com.example.app", NOW - 900),
        None,
        Some(&elsewhere),
        NOW - 899,
    );
    let second = reconciled(
        channel("app-2", DeploymentType::Mobile, "com.example.app", NOW - 60),
        None,
        Some(&elsewhere),
        NOW - 59,
    );
    let inputs = inputs(second.clone(), None, vec![first, second], vec![]);
    let report = channel_report(&inputs);
    let conflict = report.conflict.as_ref().expect("a conflict");
    assert_eq!(conflict.holder, None);
    assert!(conflict.held_in_another_namespace);
    assert!(
        report
            .next_step
            .starts_with("the holder is a DeploymentChannel in another namespace")
    );
    golden(
        "channel-identifier-conflict-other-namespace.txt",
        &channel_text(&inputs),
    );
}

#[test]
fn invalid_spec_names_the_field() {
    let c = reconciled(
        channel("nowhere", DeploymentType::Calls, "+99912345678", NOW - 30),
        None,
        None,
        NOW - 29,
    );
    let inputs = inputs(c.clone(), Some(Fetched::NotFound), vec![c], vec![]);
    let report = channel_report(&inputs);
    assert!(
        report
            .next_step
            .starts_with("fix spec.channelIdentifier (+99912345678 is not a valid phone number"),
        "{}",
        report.next_step
    );
    golden("channel-invalid-spec.txt", &channel_text(&inputs));
}

#[test]
fn unreadable_inputs_are_named_and_the_rest_still_shows() {
    let c = reconciled(
        channel("support-sms", DeploymentType::Sms, "+12125551234", NOW - 30),
        None,
        None,
        NOW - 29,
    );
    let inputs = ChannelInputs {
        channel: c,
        phone_configuration: Some(Fetched::Unreadable(
            "you may not get PhoneConfiguration \"support-line\" in namespace \"team-a\"".into(),
        )),
        neighbours: Err("you may not list DeploymentChannels in namespace \"team-a\"".into()),
        events: Ok(vec![]),
    };
    let report = channel_report(&inputs);
    assert_eq!(report.unreadable.len(), 2);
    assert_eq!(
        report.phone_configuration.as_ref().unwrap().lookup,
        Lookup::Unreadable
    );
    golden("channel-unreadable.txt", &channel_text(&inputs));
}

#[test]
fn a_channel_without_status_waits_for_the_operator() {
    let c = channel("fresh", DeploymentType::Web, "https://example.com", NOW - 5);
    let report = channel_report(&inputs(c, None, vec![], vec![]));
    assert_eq!(report.ready.status, "Unknown");
    assert!(
        report
            .next_step
            .starts_with("wait: the operator has not reported")
    );

    let mut stale = reconciled(
        channel(
            "edited",
            DeploymentType::Web,
            "https://example.com",
            NOW - 50,
        ),
        None,
        None,
        NOW - 49,
    );
    stale.metadata.generation = Some(2);
    let report = channel_report(&inputs(stale, None, vec![], vec![]));
    assert!(!report.ready.current);
    assert!(
        report
            .next_step
            .starts_with("wait: the operator has not yet reported on generation 2"),
        "{}",
        report.next_step
    );
}

#[test]
fn channel_json_has_stable_field_names() {
    let lost = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 7200,
        ),
        None,
        None,
        NOW - 125,
    );
    let report = channel_report(&inputs(
        lost.clone(),
        Some(Fetched::NotFound),
        vec![lost.clone()],
        vec![not_ready_event(&lost, NOW - 125, 1)],
    ));
    let value = serde_json::to_value(&report).unwrap();
    let message = "PhoneConfiguration \"support-line\" does not exist in namespace \"team-a\"";
    assert_eq!(
        value,
        json!({
            "kind": "DeploymentChannel",
            "namespace": "team-a",
            "name": "support-sms",
            "type": "SMS",
            "identifier": "+12125551234",
            "generation": 1,
            "observedGeneration": 1,
            "ready": {
                "status": "False",
                "reason": "PhoneConfigurationNotFound",
                "message": message,
                "since": "2023-11-14T22:11:15Z",
                "current": true
            },
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PhoneConfigurationNotFound", "message": message, "lastTransitionTime": "2023-11-14T22:11:15Z"},
                {"type": "Valid", "status": "True", "reason": "Valid", "message": "the spec is valid", "lastTransitionTime": "2023-11-14T22:11:15Z"},
                {"type": "PhoneConfigurationResolved", "status": "False", "reason": "PhoneConfigurationNotFound", "message": message, "lastTransitionTime": "2023-11-14T22:11:15Z"}
            ],
            "phoneConfiguration": {
                "name": "support-line",
                "lookup": "NotFound",
                "phoneNumber": null,
                "provider": null,
                "capabilities": [],
                "ready": null,
                "error": null
            },
            "conflict": null,
            "waiting": [],
            "events": [
                {"type": "Warning", "reason": "NotReady", "message": format!("PhoneConfigurationNotFound: {message}"), "count": 1, "lastSeen": "2023-11-14T22:11:15Z"}
            ],
            "unreadable": [],
            "nextStep": report.next_step
        })
    );
}

#[test]
fn phone_configuration_lists_its_channels() {
    let pc = phone("+12125551234", &[Capability::Voice], NOW - 3600);
    let calls = reconciled(
        channel(
            "support-calls",
            DeploymentType::Calls,
            "+12125551234",
            NOW - 600,
        ),
        Some(&pc),
        None,
        NOW - 599,
    );
    let sms = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 300,
        ),
        Some(&pc),
        None,
        NOW - 299,
    );
    let web = reconciled(
        channel(
            "site",
            DeploymentType::Web,
            "https://example.com",
            NOW - 300,
        ),
        None,
        None,
        NOW - 299,
    );
    let report = phone_configuration_report(&pc, &Ok(vec![sms, web, calls]));
    let names: Vec<&str> = report
        .bound_channels
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["support-calls", "support-sms"]);
    assert_eq!(
        report.next_step,
        "the PhoneConfiguration is ready; 1 bound channel is not: see its reason above"
    );
    golden(
        "phone-configuration.txt",
        &render::phone_configuration(&report, &now(), &Palette::plain()),
    );
}

#[test]
fn invalid_phone_configuration_report_names_the_field() {
    let pc = phone("+99912345678", &[Capability::Voice], NOW - 60);
    let report = phone_configuration_report(
        &pc,
        &Err("you may not list DeploymentChannels in namespace \"team-a\"".into()),
    );
    assert!(
        report.next_step.starts_with("fix spec.phoneNumber ("),
        "{}",
        report.next_step
    );
    golden(
        "phone-configuration-invalid.txt",
        &render::phone_configuration(&report, &now(), &Palette::plain()),
    );
}

fn fleet() -> Vec<DeploymentChannel> {
    let good = phone("+12125551234", &[Capability::Voice], NOW - 86_400);
    vec![
        reconciled(
            channel(
                "calls-ok",
                DeploymentType::Calls,
                "+12125551234",
                NOW - 86_400,
            ),
            Some(&good),
            None,
            NOW - 86_000,
        ),
        reconciled(
            channel("sms-a", DeploymentType::Sms, "+12125551234", NOW - 7200),
            Some(&good),
            None,
            NOW - 7000,
        ),
        reconciled(
            channel("sms-b", DeploymentType::Sms, "+12125551234", NOW - 600),
            None,
            None,
            NOW - 500,
        ),
        reconciled(
            channel("sms-c", DeploymentType::Sms, "+12125551234", NOW - 10_000),
            Some(&good),
            None,
            NOW - 9000,
        ),
        reconciled(
            channel(
                "site",
                DeploymentType::Web,
                "https://example.com",
                NOW - 600,
            ),
            None,
            None,
            NOW - 590,
        ),
        channel("app", DeploymentType::Mobile, "com.example.app", NOW - 3),
    ]
}

#[test]
fn summary_counts_by_type_and_groups_not_ready_oldest_first() {
    let report = summary(
        Some(NS),
        &fleet(),
        &Ok(vec![phone(
            "+12125551234",
            &[Capability::Voice],
            NOW - 86_400,
        )]),
    );
    assert_eq!(
        report.channels,
        Counts {
            total: 6,
            ready: 2,
            not_ready: 3,
            pending: 1
        }
    );
    let groups: Vec<(&str, Vec<&str>)> = report
        .not_ready
        .iter()
        .map(|g| {
            (
                g.reason.as_str(),
                g.channels.iter().map(|c| c.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("CapabilityMissing", vec!["sms-c", "sms-a"]),
            ("PhoneConfigurationNotFound", vec!["sms-b"]),
        ]
    );
    golden(
        "summary.txt",
        &render::summary(&report, &now(), &Palette::plain()),
    );
}

#[test]
fn summary_of_all_namespaces_names_namespaces() {
    let report = summary(
        None,
        &fleet(),
        &Err("you may not list PhoneConfigurations in all namespaces".into()),
    );
    assert_eq!(report.phone_configurations, None);
    golden(
        "summary-all-namespaces.txt",
        &render::summary(&report, &now(), &Palette::plain()),
    );
}

#[test]
fn colour_only_adds_escape_codes() {
    let lost = reconciled(
        channel(
            "support-sms",
            DeploymentType::Sms,
            "+12125551234",
            NOW - 7200,
        ),
        None,
        None,
        NOW - 125,
    );
    let report = channel_report(&inputs(lost, Some(Fetched::NotFound), vec![], vec![]));
    let plain = render::channel(&report, &now(), &Palette::plain());
    let colored = render::channel(&report, &now(), &Palette::colored());
    assert!(!plain.contains('\x1b'));
    assert!(colored.contains("\x1b[31mFalse\x1b[0m"), "{colored:?}");
    let mut stripped = String::new();
    let mut rest = colored.as_str();
    while let Some(start) = rest.find('\x1b') {
        stripped.push_str(&rest[..start]);
        let end = rest[start..]
            .find('m')
            .expect("an SGR sequence ends with m");
        rest = &rest[start + end + 1..];
    }
    stripped.push_str(rest);
    assert_eq!(stripped, plain);
}

#[test]
fn ages_read_like_kubectl() {
    let cases = [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 60, "3h1m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (50 * 3600, "2d2h"),
        (30 * 86_400, "30d"),
        (3 * 365 * 86_400, "3y"),
        (3 * 365 * 86_400 + 86_400, "3y1d"),
        (10 * 365 * 86_400, "10y"),
    ];
    for (seconds, expected) in cases {
        assert_eq!(
            render::age(&at(NOW - seconds), &now()),
            expected,
            "{seconds}s"
        );
    }
    assert_eq!(render::age(&at(NOW + 5), &now()), "0s", "clock skew");
}
