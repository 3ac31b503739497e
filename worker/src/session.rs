//! The worker's session: one lease, kept alive, that carries its registration, its locks and
//! its run keys. When the lease is lost the worker stops claiming, stops the runs whose locks
//! went with it, and starts a new session.

use std::sync::Arc;
use std::time::Duration;

use cronfleet_common::etcd::LeaseKeeper;
use etcd_client::{Client, PutOptions};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::holds::Holds;
use crate::runs::{Runs, StopReason};
pub use cronfleet_common::values::Registration;

/// Keeps the lease and the registration.
pub struct Session {
    pub client: Client,
    pub key: String,
    pub ttl_secs: i64,
    pub registration: Registration,
    pub runs: Runs,
    pub holds: Holds,
    /// The worker's clock: the heartbeat is its reading, which peers compare with theirs.
    pub clock: Clock,
    /// Wakes the session to write the registration now (a worker appeared).
    pub reregister: Arc<Notify>,
    /// The current lease id, `None` while there is no valid lease.
    pub lease: watch::Sender<Option<i64>>,
    /// Until when etcd promised to keep the lease, at its last answer; runs' supervisors are
    /// told so they can end a run before the lease can run out unconfirmed.
    pub lease_until: watch::Sender<Option<Instant>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// How often the registration is rewritten even when nothing changed: its heartbeat is how
/// the other workers check their clocks against this one's.
const REFRESH: Duration = Duration::from_secs(5);

impl Session {
    /// Holds a session until `stop`, then revokes the lease (removing registration and locks).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !stop.is_cancelled() {
            match self.open().await {
                Ok(lease) => {
                    backoff = Duration::from_millis(200);
                    self.lease.send_replace(Some(lease));
                    tracing::info!(lease, "registered in etcd");
                    let lost = self.keep(lease, &stop).await;
                    self.lease.send_replace(None);
                    self.lease_until.send_replace(None);
                    if !lost {
                        if let Err(e) = self.client.lease_revoke(lease).await {
                            tracing::warn!(error = %e, "could not revoke the lease; it expires on its own");
                        }
                        return;
                    }
                    let stopped = self.runs.stop_all(StopReason::LeaseLost);
                    tracing::error!(
                        stopped,
                        "lost the etcd lease; stopped runs and opening a new session"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "could not open an etcd session; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn open(&mut self) -> Result<i64, etcd_client::Error> {
        let lease = self.client.lease_grant(self.ttl_secs, None).await?.id();
        self.register(lease).await?;
        Ok(lease)
    }

    async fn register(&mut self, lease: i64) -> Result<(), etcd_client::Error> {
        self.registration.running = self.runs.summaries();
        self.registration.holds = self.holds.current().into_iter().collect();
        self.registration.heartbeat_at = self.clock.now();
        let value = serde_json::to_vec(&self.registration).unwrap_or_default();
        self.client
            .put(
                self.key.as_str(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map(drop)
    }

    /// Keeps `lease` alive until `stop` (returns false) or until it is lost (returns true),
    /// rewriting the registration when the running runs change or it grows old.
    async fn keep(&mut self, lease: i64, stop: &CancellationToken) -> bool {
        let mut keeper = LeaseKeeper::new(self.client.clone(), lease, self.ttl_secs);
        let mut registered_at = Instant::now();
        let mut asked = false;
        let mut holds = self.holds.subscribe();
        let mut registered = (self.runs.summaries().len(), self.holds.current());
        loop {
            if !keeper.renew().await {
                return true;
            }
            let until = Some(keeper.alive_until());
            self.lease_until.send_if_modified(|known| {
                let changed = *known != until;
                *known = until;
                changed
            });
            let now = (self.runs.summaries().len(), self.holds.current());
            let stale = asked || now != registered || registered_at.elapsed() >= REFRESH;
            if stale && self.register(lease).await.is_ok() {
                registered_at = Instant::now();
                registered = now;
                asked = false;
            }
            tokio::select! {
                () = tokio::time::sleep(keeper.pause()) => {}
                Ok(()) = holds.changed() => {}
                () = self.reregister.notified() => asked = true,
                () = stop.cancelled() => return false,
            }
        }
    }
}
