//! What a tick leaves in etcd after its claim — a claim whose answer never came, the run's
//! keys, the chain of attempts — is moved on again and again while etcd cannot take it, until
//! it does or the session's lease, which holds the keys, is gone.

use cronfleet_common::{JobSpec, RunStatus};

use super::Context;
use crate::claim::Holder;

/// Pause between attempts to write while etcd cannot answer.
const RELEASE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Releases a run's keys, again and again while etcd cannot take it: a lock left behind on a
/// lease this worker keeps alive would stop its job. Gives up only when the lease is gone,
/// which took the keys with it.
pub(super) async fn release(
    context: &Context,
    job: &JobSpec,
    run_id: &str,
    (revision, lease): (i64, i64),
) {
    let mut claimer = context.claimer.clone();
    loop {
        match claimer.release(job, run_id, revision).await {
            Ok(()) => return,
            Err(_) if *context.lease.borrow() != Some(lease) => {
                tracing::info!("the session's lease ended, and the run's keys with it");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not release the run's keys yet; trying again");
                tokio::time::sleep(RELEASE_RETRY).await;
            }
        }
    }
}

/// Moves the tick's chain on after an attempt ended with `status`: to its next attempt, or to
/// its end. Sent again while etcd cannot take it, before the run's lock is released, so a
/// `forbid` tick cannot slip in between. Whether a next attempt was scheduled (the record's
/// `willRetry`); `None` when the lease ended first and a survivor decides.
pub(super) async fn next_attempt(
    context: &Context,
    job: &JobSpec,
    run_id: &str,
    status: RunStatus,
    lease: i64,
) -> Option<bool> {
    let mut claimer = context.claimer.clone();
    loop {
        let now = context.clock.now_ms();
        match claimer
            .after_attempt(job, run_id, (status, now, jitter()))
            .await
        {
            Ok(Some(next)) => {
                tracing::info!(
                    attempt = next.attempt,
                    not_before = next.not_before,
                    "next attempt scheduled"
                );
                return Some(true);
            }
            Ok(None) => return Some(false),
            Err(_) if *context.lease.borrow() != Some(lease) => {
                tracing::warn!("the session's lease ended; a surviving worker moves the chain on");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not schedule the next attempt yet; trying again");
                tokio::time::sleep(RELEASE_RETRY).await;
            }
        }
    }
}

/// A number in 0..1 to spread retry delays, from a fresh UUID's random bits.
pub fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64 >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// Withdraws a claim whose answer never came, until etcd takes it or the lease is gone.
pub(super) async fn withdraw(context: &Context, job: &JobSpec, holder: &Holder, lease: i64) {
    let mut claimer = context.claimer.clone();
    while let Err(e) = claimer.withdraw(job, holder).await {
        if *context.lease.borrow() != Some(lease) {
            return;
        }
        tracing::warn!(error = %e, "could not withdraw the claim yet; trying again");
        tokio::time::sleep(RELEASE_RETRY).await;
    }
}
