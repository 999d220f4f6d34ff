//! Locking shared tables that stay usable after a panic.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, also when another holder panicked: what is shared here are
/// caches, records and counters, each whole after every update.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
