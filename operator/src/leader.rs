//! Leader election through a `coordination.k8s.io/v1` Lease, written by
//! hand (as client-go's `leaderelection` does it) because no maintained
//! crate targets kube 5 exactly.
//!
//! The holder renews every third of the lease duration; a standby takes
//! the Lease when it is free (a leader that stepped down clears
//! `holderIdentity`) or expired. Every write is an update carrying the
//! read `resourceVersion`, so two candidates never both win.
//!
//! # Caveats
//! Expiry is judged by the Lease's `renewTime` against this machine's
//! clock, and also by how long this process has watched the record stay
//! unchanged, so a standby takes over a crashed leader no sooner than one
//! lease duration after its last renewal (never two leaders) and, polling
//! every `--retry-period`, at most one retry period later than that (plus
//! the apiserver round trip), even with skewed clocks on the judging side.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// It is free or expired: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait(String),
}

/// The last Lease record this candidate saw, and when it first saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    record: (Option<String>, Option<MicroTime>),
    since: Instant,
}

fn record(lease: &Lease) -> (Option<String>, Option<MicroTime>) {
    let spec = lease.spec.as_ref();
    (
        spec.and_then(|s| s.holder_identity.clone()),
        spec.and_then(|s| s.renew_time.clone()),
    )
}

/// Decides what `me` does with `lease`, read at wall-clock `now` and
/// monotonic `at`; `observed` is updated with the record.
#[must_use]
pub fn decide(
    lease: Option<&Lease>,
    me: &str,
    now: Timestamp,
    at: Instant,
    observed: &mut Option<Observed>,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let rec = record(lease);
    if observed.as_ref().is_none_or(|o| o.record != rec) {
        *observed = Some(Observed {
            record: rec.clone(),
            since: at,
        });
    }
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    let wall_expired = spec.renew_time.is_none_or(|t| {
        let expiry = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
        t.0.saturating_add(expiry).is_ok_and(|end| end < now)
    });
    let watched_expired = observed
        .as_ref()
        .is_some_and(|o| at.saturating_duration_since(o.since) > duration);
    if wall_expired || watched_expired {
        Decision::TakeOver
    } else {
        Decision::Wait(holder)
    }
}

/// A Lease that this process competes for.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    observed: Option<Observed>,
}

impl LeaseLock {
    /// A lock on Lease `namespace/name` for `identity`.
    #[must_use]
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    /// This candidate's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, old: Option<&LeaseSpec>, taking: bool, now: Timestamp) -> LeaseSpec {
        let old = old.cloned().unwrap_or_default();
        let transitions = old.lease_transitions.unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: if taking {
                Some(MicroTime(now))
            } else {
                old.acquire_time.clone()
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if taking { transitions + 1 } else { transitions }),
            ..old
        }
    }

    /// Acquires or renews the Lease. `Ok(true)`: this process holds it
    /// until `duration` from now.
    ///
    /// # Errors
    /// When the apiserver cannot be reached or refuses; a lost race
    /// (409 Conflict) is `Ok(false)`, not an error.
    pub async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let decision = decide(
            current.as_ref(),
            &self.identity,
            now,
            Instant::now(),
            &mut self.observed,
        );
        let result = match (decision, current) {
            (Decision::Wait(_), _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        lease_transitions: Some(0),
                        ..self.spec(None, true, now)
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (d, Some(mut lease)) => {
                lease.spec = Some(self.spec(lease.spec.as_ref(), d == Decision::TakeOver, now));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Steps down: clears `holderIdentity` if this process holds the
    /// Lease, so a standby takes over on its next poll.
    ///
    /// # Errors
    /// When the apiserver cannot be reached or refuses.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
