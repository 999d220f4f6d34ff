//! Leader election on a `coordination.k8s.io/v1` Lease with client-go's
//! cadence. The leader renews every retry period and keeps retrying a
//! failed renewal until the renew deadline after the renewal started
//! ([`LeaseTiming::write_window`]), so an API server that freezes for less
//! than that changes nothing. A renewal
//! counts only when the answer names this replica with the renew time it
//! sent; an answer or a read naming another holder ends the term at once.
//! Every write of the Lease carries the resourceVersion it was computed
//! from, so two replicas never both believe they took it.
//!
//! A standby takes the Lease once it has seen the same record for the
//! lease duration (on its own clock, as client-go does: the holder's clock
//! may differ). A replica that stopped leading lets a standby go first.

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio::{
    sync::watch,
    time::{Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

use crate::operator::{lease_fence::LeaseFence, metrics::Metrics};

/// The three durations of client-go's leader election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// A standby takes over this long after it last saw the Lease change.
    pub duration: Duration,
    /// The leader stops leading when a renewal has failed for this long.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby tries to take over.
    pub retry_period: Duration,
}

impl LeaseTiming {
    /// The cadence, refused unless retry period < renew deadline < duration.
    pub fn new(
        duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> anyhow::Result<Self> {
        if retry_period < renew_deadline && renew_deadline < duration {
            return Ok(Self {
                duration,
                renew_deadline,
                retry_period,
            });
        }
        anyhow::bail!(
            "--lease-retry-period ({retry_period:?}) must be shorter than --lease-renew-deadline \
             ({renew_deadline:?}), and that shorter than --lease-duration ({duration:?})"
        )
    }

    /// How long after sending its last confirmed renewal the leader may
    /// write: as in client-go, the renew deadline counts from the start of
    /// the renewal that follows it, a retry period later, so a freeze
    /// shorter than the renew deadline ends before it at any moment of the
    /// cycle. Kept halfway between the renew deadline and the lease
    /// duration at most, so writes stop before a standby may take over.
    pub fn write_window(&self) -> Duration {
        (self.renew_deadline + self.retry_period).min((self.renew_deadline + self.duration) / 2)
    }

    /// The duration as the Lease records it (whole seconds, rounded up).
    fn seconds(&self) -> i32 {
        i32::try_from(self.duration.as_millis().div_ceil(1000)).unwrap_or(i32::MAX)
    }
}

/// Whether this replica leads: the controllers reconcile and record Events
/// only while it does.
#[derive(Clone, Debug)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// Leading for the life of the process (no leader election).
    pub fn always() -> Self {
        Self(watch::Sender::new(true).subscribe())
    }

    /// A leadership that `sender` sets.
    pub fn following(sender: &watch::Sender<bool>) -> Self {
        Self(sender.subscribe())
    }

    pub fn is_leading(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once this replica leads (at once if it does).
    pub fn acquired(&self) -> impl Future<Output = ()> + Send + 'static {
        self.until(true)
    }

    /// Completes once this replica no longer leads (at once if it does not).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.until(false)
    }

    fn until(&self, leading: bool) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            if rx.wait_for(|now| *now == leading).await.is_err() {
                // Nothing will change it any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What one renewal came to.
enum Renewal {
    /// The answer names this replica with the renew time sent at this instant.
    Confirmed(Instant),
    /// The Lease names another holder (empty: none).
    TakenBy(String),
    /// Other writes raced it twice: try again next period.
    Raced,
}

/// Why a term ended.
enum TermEnd {
    /// The process is stopping: release the Lease.
    Stopping,
    /// Not renewed within the renew deadline.
    NotRenewed,
    /// The Lease names another holder.
    TakenBy(String),
}

/// The Lease as this replica last saw it, and since when (on its own clock)
/// it has looked so.
struct Seen {
    lease: Lease,
    since: Instant,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    field_manager: String,
    seen: Option<Seen>,
    /// This replica led and stopped: it waits a retry period longer than a
    /// standby before taking the Lease back.
    stepped_down: bool,
}

impl Elector {
    pub fn new(
        api: Api<Lease>,
        name: &str,
        identity: &str,
        timing: LeaseTiming,
        field_manager: String,
    ) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            timing,
            field_manager,
            seen: None,
            stepped_down: false,
        }
    }

    /// Stands by, leads while it holds the Lease (renewing it and keeping
    /// `fence` open), stands by again when it loses it, and releases it once
    /// `stop` completes. `leading` follows the role.
    pub async fn run(
        mut self,
        leading: watch::Sender<bool>,
        fence: Arc<LeaseFence>,
        metrics: Arc<Metrics>,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            info!(identity = %self.identity, lease = %self.name, "standing by for the lease");
            let Some(sent) = self.stand_by(&mut stop).await else {
                return;
            };
            fence.renewed(sent);
            metrics.leader.set(1);
            leading.send_replace(true);
            info!(identity = %self.identity, "acquired the lease: reconciling");
            let end = self.lead(&fence, &mut stop).await;
            // Writes stop before anything else: a standby may take over soon.
            fence.close();
            leading.send_replace(false);
            metrics.leader.set(0);
            match end {
                TermEnd::Stopping => {
                    self.release().await;
                    return;
                }
                TermEnd::NotRenewed => warn!(
                    identity = %self.identity,
                    renew_deadline = ?self.timing.renew_deadline,
                    "could not renew the lease in time: stopped writing before another replica may take over; standing by with warm caches"
                ),
                TermEnd::TakenBy(holder) => warn!(
                    identity = %self.identity,
                    %holder,
                    "the lease names another holder: stopped writing; standing by with warm caches"
                ),
            }
            self.stepped_down = true;
            if let Some(seen) = &mut self.seen {
                seen.since = Instant::now();
            }
        }
    }

    /// Tries to take the Lease every retry period; answers when the taking
    /// write was sent, or `None` once `stop` completes.
    async fn stand_by(&mut self, stop: &mut (impl Future<Output = ()> + Unpin)) -> Option<Instant> {
        let mut tick = tokio::time::interval(self.timing.retry_period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut *stop => return None,
                _ = tick.tick() => {}
            }
            let attempt = tokio::time::timeout(self.timing.renew_deadline, self.try_take());
            tokio::select! {
                _ = &mut *stop => return None,
                taken = attempt => match taken {
                    Ok(Ok(Some(sent))) => return Some(sent),
                    Ok(Ok(None)) => {}
                    Ok(Err(error)) => warn!(%error, "cannot read or take the lease; retrying"),
                    Err(_) => warn!("taking the lease timed out; retrying"),
                },
            }
        }
    }

    /// Renews every retry period until `stop`, a holder other than this
    /// replica, or the fence's deadline (the write window after the last
    /// confirmed renewal).
    async fn lead(
        &mut self,
        fence: &LeaseFence,
        stop: &mut (impl Future<Output = ()> + Unpin),
    ) -> TermEnd {
        let period = self.timing.retry_period;
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let Some(deadline) = fence.deadline() else {
                return TermEnd::NotRenewed;
            };
            tokio::select! {
                _ = &mut *stop => return TermEnd::Stopping,
                _ = tokio::time::sleep_until(deadline) => return TermEnd::NotRenewed,
                _ = tick.tick() => {}
            }
            tokio::select! {
                _ = &mut *stop => return TermEnd::Stopping,
                _ = tokio::time::sleep_until(deadline) => return TermEnd::NotRenewed,
                renewed = self.renew() => match renewed {
                    Ok(Renewal::Confirmed(sent)) => fence.renewed(sent),
                    Ok(Renewal::TakenBy(holder)) => return TermEnd::TakenBy(holder),
                    Ok(Renewal::Raced) => warn!("renewing the lease raced other writes; retrying"),
                    Err(error) => warn!(%error, "cannot renew the lease; retrying until the renew deadline"),
                },
            }
        }
    }

    /// Records what a read or write of the Lease answered.
    fn observe(&mut self, lease: Lease) {
        let now = Instant::now();
        match &mut self.seen {
            Some(seen) if seen.lease.spec == lease.spec => seen.lease = lease,
            _ => self.seen = Some(Seen { lease, since: now }),
        }
    }

    /// The Lease may be taken now: no holder, this replica's own record
    /// (after a restart), or one unchanged for its duration.
    fn may_take(&self, now: Instant) -> bool {
        let Some(seen) = &self.seen else {
            return true;
        };
        let spec = seen.lease.spec.clone().unwrap_or_default();
        let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
            return true;
        };
        if holder == self.identity && !self.stepped_down {
            return true;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.duration, Duration::from_secs);
        let handicap = if self.stepped_down {
            self.timing.retry_period
        } else {
            Duration::ZERO
        };
        now >= seen.since + duration + handicap
    }

    /// One attempt to take the Lease: `Some(sent)` when the answer names
    /// this replica, `None` while another replica may hold it.
    async fn try_take(&mut self) -> kube::Result<Option<Instant>> {
        let sent = Instant::now();
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let now = micro_now();
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.timing.seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now.clone()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let params = PostParams {
                field_manager: Some(self.field_manager.clone()),
                ..PostParams::default()
            };
            return match self.api.create(&params, &lease).await {
                Ok(answer) => Ok(self.confirmed(answer, &now).then_some(sent)),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
                Err(error) => Err(error),
            };
        };
        self.observe(current);
        if !self.may_take(Instant::now()) {
            return Ok(None);
        }
        let spec = self
            .seen
            .as_ref()
            .and_then(|seen| seen.lease.spec.clone())
            .unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0)
            + i32::from(spec.holder_identity.as_deref() != Some(self.identity.as_str()));
        let now = micro_now();
        let taken = self
            .write(json!({
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.timing.seconds(),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            }))
            .await;
        match taken {
            Ok(answer) => Ok(self.confirmed(answer, &now).then_some(sent)),
            // Someone wrote it since the read: read it again next time.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One renewal; a write that raced another (409) is retried once after a read.
    async fn renew(&mut self) -> kube::Result<Renewal> {
        for _ in 0..2 {
            let sent = Instant::now();
            let now = micro_now();
            let written = self
                .write(json!({
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.timing.seconds(),
                    "renewTime": now,
                }))
                .await;
            match written {
                Ok(answer) => {
                    let holder = holder_of(&answer);
                    return Ok(if self.confirmed(answer, &now) {
                        Renewal::Confirmed(sent)
                    } else {
                        Renewal::TakenBy(holder)
                    });
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let current = self.api.get(&self.name).await?;
                    let holder = holder_of(&current);
                    self.observe(current);
                    if holder != self.identity {
                        return Ok(Renewal::TakenBy(holder));
                    }
                    debug!("the lease changed under this replica's own name; renewing again");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(Renewal::Raced)
    }

    /// Patches the Lease's `spec` on top of the version last seen (a 409 if
    /// it changed since).
    async fn write(&mut self, spec: serde_json::Value) -> kube::Result<Lease> {
        let version = self
            .seen
            .as_ref()
            .and_then(|seen| seen.lease.metadata.resource_version.clone());
        let patch = json!({
            "metadata": { "resourceVersion": version },
            "spec": spec,
        });
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        self.api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
    }

    /// Records `answer` and says whether it names this replica with `renewed`.
    fn confirmed(&mut self, answer: Lease, renewed: &MicroTime) -> bool {
        let ours = names(&answer, &self.identity, renewed);
        self.observe(answer);
        if ours {
            self.stepped_down = false;
        }
        ours
    }

    /// Hands the Lease over at once: no holder, expired. Only on top of the
    /// version this replica wrote last, so a Lease taken meanwhile stays.
    async fn release(&mut self) {
        let released = self
            .write(json!({
                "holderIdentity": null,
                "leaseDurationSeconds": 1,
                "renewTime": micro_now(),
            }))
            .await;
        match released {
            Ok(_) => info!("released the lease"),
            Err(error) => warn!(%error, "could not release the lease; it expires on its own"),
        }
    }
}

/// Whether `lease` names `identity` as holder with renew time `renewed`.
fn names(lease: &Lease, identity: &str, renewed: &MicroTime) -> bool {
    lease.spec.as_ref().is_some_and(|spec| {
        spec.holder_identity.as_deref() == Some(identity)
            && spec.renew_time.as_ref() == Some(renewed)
    })
}

/// The holder a Lease names (empty for none).
fn holder_of(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.holder_identity.clone())
        .unwrap_or_default()
}

/// The current time at the Lease's precision (microseconds), so that an
/// answer can be compared with what was sent.
fn micro_now() -> MicroTime {
    let now = jiff::Timestamp::now();
    MicroTime(jiff::Timestamp::from_microsecond(now.as_microsecond()).expect("now is a valid time"))
}

#[cfg(test)]
mod tests;
