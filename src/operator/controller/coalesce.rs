//! Batches reconcile requests for PhoneConfigurations: while channels keep
//! arriving (a GitOps sync, a bulk apply), each PhoneConfiguration's status
//! (with its `boundChannels`) is written once when the burst settles, instead
//! of once per channel. Without such a burst a request waits a second.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use futures::{StreamExt, channel::mpsc};

/// Requests held until no new one came for `quiet`, or the oldest has
/// waited `max_wait`.
#[derive(Debug)]
pub struct Coalescer<K> {
    quiet: Duration,
    max_wait: Duration,
    pending: BTreeSet<K>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl<K: Ord> Coalescer<K> {
    pub fn new(quiet: Duration, max_wait: Duration) -> Self {
        Self {
            quiet,
            max_wait,
            pending: BTreeSet::new(),
            first: None,
            last: None,
        }
    }

    /// Holds a request that arrived at `now`.
    pub fn add(&mut self, key: K, now: Instant) {
        self.pending.insert(key);
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// Notes activity at `now` that may bring more requests: held requests
    /// wait for it to settle too.
    pub fn touch(&mut self, now: Instant) {
        if !self.pending.is_empty() {
            self.last = Some(now);
        }
    }

    /// When the held requests are due; `None` while none are held.
    pub fn deadline(&self) -> Option<Instant> {
        Some((self.last? + self.quiet).min(self.first? + self.max_wait))
    }

    /// The held requests, when they are due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        match self.deadline() {
            Some(deadline) if deadline <= now => {
                self.first = None;
                self.last = None;
                std::mem::take(&mut self.pending).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// What [`forward`] receives.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<K> {
    /// Send this key once the batch is due.
    Batch(K),
    /// Activity that may bring more requests: what is held waits for it to settle.
    Activity,
}

/// What [`forward`] wakes up for.
enum Wake<K> {
    Received(Request<K>),
    Due,
    Closed,
}

/// Forwards [`Request::Batch`] keys from `input` to `output` through a
/// [`Coalescer`]. Ends when `input` closes (what is still held is sent then).
pub async fn forward<K: Ord + Send>(
    mut input: mpsc::UnboundedReceiver<Request<K>>,
    output: mpsc::UnboundedSender<K>,
    mut coalescer: Coalescer<K>,
) {
    let received = |request: Option<Request<K>>| request.map_or(Wake::Closed, Wake::Received);
    loop {
        let wake = match coalescer.deadline() {
            Some(deadline) => tokio::select! {
                request = input.next() => received(request),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Due,
            },
            None => received(input.next().await),
        };
        match wake {
            Wake::Received(Request::Batch(key)) => coalescer.add(key, Instant::now()),
            Wake::Received(Request::Activity) => coalescer.touch(Instant::now()),
            Wake::Due => {}
            Wake::Closed => {
                for key in std::mem::take(&mut coalescer.pending) {
                    let _ = output.unbounded_send(key);
                }
                return;
            }
        }
        for key in coalescer.take_due(Instant::now()) {
            let _ = output.unbounded_send(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_secs(1);
    const MAX_WAIT: Duration = Duration::from_secs(30);

    #[test]
    fn a_lone_request_waits_for_quiet() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX_WAIT);
        assert_eq!(c.deadline(), None);
        c.add("pc", t0);
        assert_eq!(c.deadline(), Some(t0 + QUIET));
        assert!(c.take_due(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(c.take_due(t0 + QUIET), vec!["pc"]);
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn a_burst_is_sent_once_when_it_settles() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX_WAIT);
        for i in 0..10u64 {
            c.add(
                ["a", "b"][(i % 2) as usize],
                t0 + Duration::from_millis(500 * i),
            );
            assert!(c.take_due(t0 + Duration::from_millis(500 * i)).is_empty());
        }
        let settled = t0 + Duration::from_millis(4500) + QUIET;
        assert_eq!(c.deadline(), Some(settled));
        assert_eq!(c.take_due(settled), vec!["a", "b"]);
    }

    #[test]
    fn other_activity_delays_held_requests_but_does_not_start_a_wait() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX_WAIT);
        c.touch(t0);
        assert_eq!(c.deadline(), None);
        c.add("pc", t0);
        c.touch(t0 + Duration::from_millis(800));
        assert!(c.take_due(t0 + QUIET).is_empty());
        assert_eq!(c.take_due(t0 + Duration::from_millis(1800)), vec!["pc"]);
    }

    #[test]
    fn a_long_burst_is_sent_at_most_every_max_wait() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(QUIET, MAX_WAIT);
        let mut sent = 0;
        for ms in (0..=60_100u64).step_by(100) {
            let now = t0 + Duration::from_millis(ms);
            c.add(ms % 3, now);
            sent += usize::from(!c.take_due(now).is_empty());
        }
        assert_eq!(
            sent, 2,
            "flushed at 30 s and again 30 s after the next request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn forward_sends_each_key_once_per_burst() {
        let (input, input_rx) = mpsc::unbounded();
        let (output, mut output_rx) = mpsc::unbounded();
        let task = tokio::spawn(forward(input_rx, output, Coalescer::new(QUIET, MAX_WAIT)));
        for key in ["b", "a", "b", "a"] {
            input.unbounded_send(Request::Batch(key)).unwrap();
        }
        input.unbounded_send(Request::Activity).unwrap();
        // The paused clock jumps to the deadline once every task waits.
        assert_eq!(output_rx.next().await, Some("a"));
        assert_eq!(output_rx.next().await, Some("b"));
        input.unbounded_send(Request::Batch("c")).unwrap();
        drop(input);
        assert_eq!(output_rx.next().await, Some("c"));
        assert_eq!(output_rx.next().await, None);
        task.await.unwrap();
    }
}
