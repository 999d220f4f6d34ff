//! Runs the reconciles of one kind: each object at most once at a time,
//! queued once however often it is triggered, at most `concurrency` at once,
//! and retried after the delay its failure asks for, with one pending retry
//! per object: a trigger while it waits runs it now and drops the timer,
//! so relists and index changes never start a second chain of retries.
//!
//! Objects are named by their [`ObjectKey`], whose strings the cache and the
//! index share, so a queue of every channel (after a relist) costs a few
//! words per channel.

use std::{
    collections::{BTreeSet, VecDeque},
    future::Future,
    pin::pin,
    time::Duration,
};

use foldhash::{HashMap, HashSet};
use futures::{Stream, StreamExt, stream::FusedStream, stream::FuturesUnordered};
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::core::index::ObjectKey;

/// What is queued, running, and to run again.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
    running: HashSet<ObjectKey>,
    /// Running, and triggered again meanwhile: queued when it finishes.
    again: HashSet<ObjectKey>,
}

impl Queue {
    fn trigger(&mut self, key: ObjectKey) {
        if self.running.contains(&key) {
            self.again.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.waiting.push_back(key);
        }
    }

    /// The next object to reconcile, when fewer than `limit` run.
    fn next(&mut self, limit: usize) -> Option<ObjectKey> {
        if self.running.len() >= limit {
            return None;
        }
        let key = self.waiting.pop_front()?;
        self.queued.remove(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    /// `key` finished; whether it was triggered while it ran.
    fn finished(&mut self, key: &ObjectKey) -> bool {
        self.running.remove(key);
        if self.again.remove(key) {
            self.trigger(key.clone());
            true
        } else {
            false
        }
    }
}

/// The retries waiting for their time: at most one per object.
#[derive(Default)]
struct Retries {
    due: HashMap<ObjectKey, Instant>,
    order: BTreeSet<(Instant, ObjectKey)>,
}

impl Retries {
    /// Retries `key` at `at`, in place of a retry it already waits for.
    fn schedule(&mut self, key: ObjectKey, at: Instant) {
        self.cancel(&key);
        self.order.insert((at, key.clone()));
        self.due.insert(key, at);
    }

    /// Drops the retry `key` waits for, if any.
    fn cancel(&mut self, key: &ObjectKey) {
        if let Some(at) = self.due.remove(key) {
            self.order.remove(&(at, key.clone()));
        }
    }

    /// When the next retry is due.
    fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// The retries due at `now`, which are no longer waiting.
    fn take_due(&mut self, now: Instant) -> Vec<ObjectKey> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.order.first()
            && *at <= now
        {
            let (_, key) = self.order.pop_first().expect("checked above");
            self.due.remove(&key);
            due.push(key);
        }
        due
    }

    fn len(&self) -> usize {
        self.due.len()
    }
}

/// Reconciles every key `triggers` sends with `reconcile`, which answers
/// how long to wait before trying again (`None`: done). `pending` shows how
/// many objects wait for a retry. When `shutdown` completes no new
/// reconcile starts; the function returns once the running ones finish (or
/// when `triggers` ends and nothing is left to do).
pub async fn run<F, R>(
    triggers: impl Stream<Item = ObjectKey>,
    concurrency: usize,
    mut reconcile: F,
    pending: Gauge,
    shutdown: impl Future<Output = ()>,
) where
    F: FnMut(ObjectKey) -> R,
    R: Future<Output = Option<Duration>>,
{
    let concurrency = concurrency.max(1);
    let mut triggers = pin!(triggers.fuse());
    let mut shutdown = pin!(shutdown);
    let mut stopping = false;
    let mut queue = Queue::default();
    let mut running = FuturesUnordered::new();
    let mut retries = Retries::default();
    loop {
        pending.set(retries.len() as i64);
        if !stopping {
            while let Some(key) = queue.next(concurrency) {
                let done = reconcile(key.clone());
                running.push(async move { (key, done.await) });
            }
        }
        if stopping && running.is_empty() {
            return;
        }
        if triggers.is_terminated()
            && running.is_empty()
            && retries.len() == 0
            && queue.waiting.is_empty()
        {
            return;
        }
        tokio::select! {
            // An end of the triggers is noticed here, and checked above.
            key = triggers.next(), if !stopping && !triggers.is_terminated() => {
                if let Some(key) = key {
                    // Runs now: the retry it waited for would only repeat it.
                    retries.cancel(&key);
                    queue.trigger(key);
                }
            }
            Some((key, retry)) = running.next() => {
                if !queue.finished(&key)
                    && let Some(delay) = retry
                {
                    retries.schedule(key, Instant::now() + delay);
                }
            }
            () = sleep_until(retries.next()), if !stopping && retries.len() > 0 => {
                for key in retries.take_due(Instant::now()) {
                    queue.trigger(key);
                }
            }
            () = &mut shutdown, if !stopping => stopping = true,
            else => return,
        }
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures::channel::mpsc;
    use tokio::sync::Notify;

    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn a_key_is_queued_once_however_often_it_is_triggered() {
        let mut queue = Queue::default();
        for name in ["a", "b", "a", "a", "b"] {
            queue.trigger(key(name));
        }
        assert_eq!(queue.next(10), Some(key("a")));
        assert_eq!(queue.next(10), Some(key("b")));
        assert_eq!(queue.next(10), None);
    }

    #[test]
    fn a_key_triggered_while_it_runs_runs_again_after_and_not_twice_at_once() {
        let mut queue = Queue::default();
        queue.trigger(key("a"));
        assert_eq!(queue.next(10), Some(key("a")));
        queue.trigger(key("a"));
        queue.trigger(key("a"));
        assert_eq!(queue.next(10), None, "not while it runs");
        assert!(queue.finished(&key("a")));
        assert_eq!(queue.next(10), Some(key("a")));
        assert!(!queue.finished(&key("a")));
        assert_eq!(queue.next(10), None);
    }

    #[test]
    fn no_more_than_the_limit_run_at_once() {
        let mut queue = Queue::default();
        for name in ["a", "b", "c"] {
            queue.trigger(key(name));
        }
        assert!(queue.next(2).is_some());
        assert!(queue.next(2).is_some());
        assert_eq!(queue.next(2), None);
        queue.finished(&key("a"));
        assert_eq!(queue.next(2), Some(key("c")));
    }

    /// Runs the scheduler over `sent`, with reconciles that record their
    /// key and fail (retry after 1 s) the first `failures` times per key.
    async fn reconciled(sent: &[&str], failures: usize) -> Vec<String> {
        let (tx, rx) = mpsc::unbounded();
        for name in sent {
            tx.unbounded_send(key(name)).unwrap();
        }
        drop(tx);
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = log.clone();
        run(
            rx,
            2,
            move |key: ObjectKey| {
                let log = seen.clone();
                async move {
                    let mut log = log.lock().unwrap();
                    log.push(key.name.to_string());
                    let tries = log.iter().filter(|n| **n == *key.name).count();
                    (tries <= failures).then_some(Duration::from_secs(1))
                }
            },
            Gauge::default(),
            futures::future::pending(),
        )
        .await;
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn every_trigger_is_reconciled_and_failures_are_retried_after_their_delay() {
        let mut log = reconciled(&["a", "b"], 0).await;
        log.sort();
        assert_eq!(log, ["a", "b"]);
        let started = tokio::time::Instant::now();
        let mut log = reconciled(&["a", "b"], 2).await;
        log.sort();
        assert_eq!(log, ["a", "a", "a", "b", "b", "b"]);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    /// An object that always fails (retry after 10 s), triggered again at
    /// 1 s while it waits, and again at 15 s: each trigger takes the place
    /// of the pending retry, so it runs at 0, 1, 11, 15 and 25 s, never as
    /// two chains.
    #[tokio::test(start_paused = true)]
    async fn a_trigger_while_a_retry_waits_replaces_it() {
        let (tx, rx) = mpsc::unbounded();
        let runs = Arc::new(Mutex::new(Vec::<u64>::new()));
        let pending = Gauge::default();
        let started = tokio::time::Instant::now();
        let scheduler = {
            let runs = runs.clone();
            tokio::spawn(run(
                rx,
                2,
                move |_key: ObjectKey| {
                    let runs = runs.clone();
                    async move {
                        runs.lock().unwrap().push(started.elapsed().as_secs());
                        Some(Duration::from_secs(10))
                    }
                },
                pending.clone(),
                tokio::time::sleep(Duration::from_millis(30_500)),
            ))
        };
        tx.unbounded_send(key("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(pending.get(), 1, "one retry waits");
        tx.unbounded_send(key("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(14)).await;
        tx.unbounded_send(key("a")).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(pending.get(), 1, "still one retry");
        scheduler.await.unwrap();
        assert_eq!(*runs.lock().unwrap(), [0, 1, 11, 15, 25]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_running_reconciles_finish_and_starts_none() {
        let (tx, rx) = mpsc::unbounded();
        let release = Arc::new(Notify::new());
        let started = Arc::new(Mutex::new(Vec::<String>::new()));
        let finished = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(Notify::new());
        let scheduler = {
            let (release, started, finished, stop) = (
                release.clone(),
                started.clone(),
                finished.clone(),
                stop.clone(),
            );
            tokio::spawn(run(
                rx,
                1,
                move |key: ObjectKey| {
                    let (release, started, finished) =
                        (release.clone(), started.clone(), finished.clone());
                    async move {
                        started.lock().unwrap().push(key.name.to_string());
                        release.notified().await;
                        finished.lock().unwrap().push(key.name.to_string());
                        None
                    }
                },
                Gauge::default(),
                async move { stop.notified().await },
            ))
        };
        tx.unbounded_send(key("a")).unwrap();
        tx.unbounded_send(key("b")).unwrap();
        while started.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        stop.notify_one();
        tokio::task::yield_now().await;
        release.notify_one();
        scheduler.await.unwrap();
        assert_eq!(*started.lock().unwrap(), ["a"]);
        assert_eq!(*finished.lock().unwrap(), ["a"]);
    }
}
