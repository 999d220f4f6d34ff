//! What the decoding tells the reporter, at most one entry per object.
//!
//! A later notice for an object replaces the one the reporter has not taken
//! yet, so a burst of updates to an unreadable object, a relist, or a
//! standby's wait for leadership keeps one entry per object (its problem,
//! reference and status: what the report needs) and never a queue of
//! whole objects.

use std::sync::Arc;

use foldhash::HashMap;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

use crate::core::{decoding::Stored, field_error::FieldError, index::ObjectKey};

/// What the report of an unreadable object needs of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    pub problem: FieldError,
    /// The object, for the Event's `regarding`.
    pub reference: ObjectReference,
    /// The resourceVersion it was seen at: the one a status write must land on.
    pub version: String,
    pub generation: Option<i64>,
    /// Its status as stored (no spec, no metadata).
    pub status: Option<Value>,
}

impl Sighting {
    /// Keeps what the report needs of an object that cannot be read.
    pub fn of<K: Resource<DynamicType = ()>>(problem: FieldError, mut stored: Stored<K>) -> Self {
        Self {
            problem,
            reference: stored.object_ref(&()),
            version: stored.metadata.resource_version.take().unwrap_or_default(),
            generation: stored.metadata.generation,
            status: stored.rest.remove("status"),
        }
    }
}

/// The latest news of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// The object cannot be read: report the problem.
    Unreadable(Box<Sighting>),
    /// The object can be read again: its report is over.
    Readable,
    /// The object is gone: every table kept for it forgets it.
    Gone,
    /// Try a failed report again.
    Retry,
}

/// One object's entry: its latest notice, and whether it was gone since
/// the reporter last looked (a re-created object's notice replaces the
/// `Gone`, but the tables kept for the old one must still forget it).
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub forget: bool,
    pub notice: Notice,
}

/// The notices not taken yet, one per object.
#[derive(Clone, Default)]
pub struct Mailbox {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
    wake: Notify,
}

impl Mailbox {
    /// Leaves `notice` for `key`, replacing the one not taken yet. A retry
    /// replaces nothing: whatever is pending is reported anyway.
    pub fn send(&self, key: ObjectKey, notice: Notice) {
        {
            let mut pending = self.shared.pending.lock();
            match pending.get_mut(&key) {
                Some(_) if notice == Notice::Retry => {}
                Some(entry) => {
                    entry.forget |= notice == Notice::Gone;
                    entry.notice = notice;
                }
                None => {
                    let forget = notice == Notice::Gone;
                    pending.insert(key, Pending { forget, notice });
                }
            }
        }
        self.shared.wake.notify_one();
    }

    /// Takes every pending entry, waiting for one when there is none.
    /// Cancel-safe: nothing is taken until it returns.
    pub async fn take(&self) -> HashMap<ObjectKey, Pending> {
        loop {
            let taken = std::mem::take(&mut *self.shared.pending.lock());
            if !taken.is_empty() {
                return taken;
            }
            self.shared.wake.notified().await;
        }
    }

    /// How many objects have an entry not taken yet.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shared.pending.lock().len()
    }

    /// Whether every entry was taken.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sighting(field: &str, version: &str) -> Notice {
        Notice::Unreadable(Box::new(Sighting {
            problem: FieldError::required(field, "bad"),
            reference: ObjectReference::default(),
            version: version.into(),
            generation: Some(1),
            status: None,
        }))
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[tokio::test]
    async fn a_burst_of_notices_keeps_the_latest_one_per_object() {
        let mailbox = Mailbox::default();
        for version in 0..1000 {
            mailbox.send(key("a"), sighting("spec.a", &version.to_string()));
        }
        mailbox.send(key("b"), Notice::Readable);
        assert_eq!(mailbox.len(), 2);
        let taken = mailbox.take().await;
        assert_eq!(
            taken[&key("a")],
            Pending {
                forget: false,
                notice: sighting("spec.a", "999")
            }
        );
        assert_eq!(taken[&key("b")].notice, Notice::Readable);
        assert!(mailbox.is_empty());
    }

    #[tokio::test]
    async fn a_retry_never_replaces_news_and_a_re_created_object_still_forgets() {
        let mailbox = Mailbox::default();
        mailbox.send(key("a"), sighting("spec.a", "1"));
        mailbox.send(key("a"), Notice::Retry);
        mailbox.send(key("b"), Notice::Gone);
        mailbox.send(key("b"), sighting("spec.b", "7"));
        mailbox.send(key("c"), Notice::Retry);
        let taken = mailbox.take().await;
        assert_eq!(taken[&key("a")].notice, sighting("spec.a", "1"));
        assert_eq!(
            taken[&key("b")],
            Pending {
                forget: true,
                notice: sighting("spec.b", "7")
            }
        );
        assert_eq!(taken[&key("c")].notice, Notice::Retry);
    }

    #[tokio::test]
    async fn take_waits_for_a_notice_sent_later() {
        let mailbox = Mailbox::default();
        let waiting = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.take().await }
        });
        tokio::task::yield_now().await;
        mailbox.send(key("a"), Notice::Gone);
        let taken = waiting.await.unwrap();
        assert_eq!(taken.len(), 1);
        assert!(taken[&key("a")].forget);
    }
}
