//! Kubernetes Events the operator records, and the one way it records them.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Event;
use tracing::warn;

use super::{Context, Kind};
use crate::{core::index::ObjectKey, operator::metrics::EventLabels};

/// The longest Event note; the API server refuses longer ones.
const NOTE_MAX: usize = 1024;

/// `text` cut to fit an Event note, with `...` where it was cut.
pub(super) fn note(text: &str) -> String {
    if text.len() <= NOTE_MAX {
        return text.to_string();
    }
    let mut end = NOTE_MAX - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Records `event` about `regarding` and counts it under `reason` on
/// `/metrics`. A failure is logged, not retried: the status already says
/// the same. Only the leader records Events.
pub(super) async fn publish(
    ctx: &Context,
    kind: Kind,
    key: &ObjectKey,
    event: &Event,
    regarding: &ObjectReference,
    reason: &'static str,
) {
    if !ctx.leadership.is_leading() {
        return;
    }
    match ctx.recorder.publish(event, regarding).await {
        Ok(()) => {
            ctx.metrics
                .events
                .get_or_create(&EventLabels { reason })
                .inc();
        }
        Err(error) => {
            warn!(kind = kind.as_str(), object = %key, %error, "could not record the Event")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_note_is_cut_on_a_character_boundary() {
        assert_eq!(note("short"), "short");
        let long = "é".repeat(NOTE_MAX);
        let cut = note(&long);
        assert!(cut.len() <= NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert!(long.starts_with(cut.trim_end_matches("...")));
    }
}
