//! The unreadable objects of one kind and what is wrong with each.

use std::sync::Arc;

use foldhash::HashMap;
use parking_lot::Mutex;

use crate::{
    core::{field_error::FieldError, index::ObjectKey},
    operator::{
        controller::Kind,
        metrics::{KindLabels, Metrics},
    },
};

/// The unreadable objects of one kind and what is wrong with each; the
/// count is exported as `unreadable_objects`.
pub struct UnreadableRegistry {
    kind: Kind,
    problems: Mutex<HashMap<ObjectKey, FieldError>>,
    metrics: Arc<Metrics>,
}

impl UnreadableRegistry {
    pub fn new(kind: Kind, metrics: Arc<Metrics>) -> Self {
        let registry = Self {
            kind,
            problems: Mutex::default(),
            metrics,
        };
        registry.export(0);
        registry
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What is wrong with an object, when it cannot be read.
    pub fn problem(&self, key: &ObjectKey) -> Option<FieldError> {
        self.problems.lock().get(key).cloned()
    }

    /// How many objects cannot be read.
    pub fn len(&self) -> usize {
        self.problems.lock().len()
    }

    /// Whether every object can be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn keys(&self) -> Vec<ObjectKey> {
        self.problems.lock().keys().cloned().collect()
    }

    pub(super) fn set(&self, key: ObjectKey, problem: FieldError) {
        let mut problems = self.problems.lock();
        problems.insert(key, problem);
        self.export(problems.len());
    }

    /// Forgets an object; whether it was unreadable.
    pub(super) fn clear(&self, key: &ObjectKey) -> bool {
        let mut problems = self.problems.lock();
        let was = problems.remove(key).is_some();
        self.export(problems.len());
        was
    }

    fn export(&self, count: usize) {
        self.metrics
            .unreadable_objects
            .get_or_create(&KindLabels {
                kind: self.kind.as_str(),
            })
            .set(count as i64);
    }
}
