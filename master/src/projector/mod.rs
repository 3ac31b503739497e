//! The projector: applies events to etcd in sequence order. One runs among all masters, chosen
//! by an etcd election; its checkpoint (the last applied sequence) lives in etcd and moves in
//! the same txn as the keys it covers, guarded by the leader key, so an event is applied once
//! even across crashes and changes of leader. It only reads committed events: never an etcd
//! write without a PostgreSQL commit.

pub mod drift;
mod error;

use std::time::Duration;

use cronfleet_common::etcd::LeaseKeeper;
use cronfleet_common::values::Request;
use cronfleet_common::{JobName, Keys};
use etcd_client::{Client, Compare, CompareOp, LeaderKey, PutOptions, Txn, TxnOp};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::domain::Event;
use crate::store::{Store, StoreError, StoredEvent};
use drift::Drift;
pub use error::ProjectorError;

/// Events per etcd txn; etcd allows 128 operations per txn.
const BATCH: i64 = 100;
/// How long a resign waits before it sends a refused revoke again.
const REVOKE_RETRY: Duration = Duration::from_millis(250);
/// Lifetime of a kill request in etcd, in seconds: long enough for every worker to see it.
const KILL_TTL_SECS: i64 = 30;
/// Lifetime of a run-now request in etcd: it is dropped if no worker takes it in this time.
const TRIGGER_TTL_SECS: i64 = 60;

/// Applies events to etcd while it leads.
pub struct Projector {
    pub store: Store,
    pub etcd: Client,
    pub keys: Keys,
    pub lease_ttl_secs: i64,
    /// A name for this master in the election.
    pub candidate: String,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("candidate", &self.candidate)
            .finish_non_exhaustive()
    }
}

/// A won election: the leader key, and the lease that holds it.
#[derive(Debug)]
pub struct Leadership {
    pub leader: LeaderKey,
    pub lease: i64,
    keeper: tokio::task::JoinHandle<()>,
    lost: CancellationToken,
}

/// A dropped leadership stops keeping its lease alive, so it lapses within the TTL, as it
/// would if the master had died.
impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

impl Projector {
    /// Campaigns, projects while leading, and campaigns again after losing, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let leadership = tokio::select! {
                won = self.campaign() => won,
                () = shutdown.cancelled() => return,
            };
            let result = match leadership {
                Ok(leadership) => {
                    tracing::info!(candidate = %self.candidate, "projector elected");
                    let result = tokio::select! {
                        result = self.lead(&leadership) => result,
                        () = shutdown.cancelled() => Ok(()),
                    };
                    self.resign(leadership).await;
                    result
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "projector stopped leading; campaigning again");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Waits until this master leads the election.
    #[tracing::instrument(skip_all, fields(candidate = %self.candidate))]
    pub async fn campaign(&mut self) -> Result<Leadership, ProjectorError> {
        let lease = self.etcd.lease_grant(self.lease_ttl_secs, None).await?.id();
        let lost = CancellationToken::new();
        let keeper = tokio::spawn(keep_alive(
            self.etcd.clone(),
            lease,
            self.lease_ttl_secs,
            lost.clone(),
        ));
        let won = self
            .etcd
            .campaign(
                self.keys.projector_election(),
                self.candidate.as_str(),
                lease,
            )
            .await;
        match won.map(|mut response| response.take_leader()) {
            Ok(Some(leader)) => Ok(Leadership {
                leader,
                lease,
                keeper,
                lost,
            }),
            Ok(None) => {
                keeper.abort();
                Err(ProjectorError::LostLeadership)
            }
            Err(e) => {
                keeper.abort();
                Err(e.into())
            }
        }
    }

    /// Gives up leadership (the next candidate takes over at once). The revoke is sent again
    /// while etcd does not take it (a member died, an election is under way), until the
    /// lease would have run out anyway: the election key it leaves behind holds every
    /// campaign, this master's next one included, until it goes.
    pub async fn resign(&mut self, leadership: Leadership) {
        leadership.keeper.abort();
        let ttl = Duration::from_secs(u64::try_from(self.lease_ttl_secs).unwrap_or(0));
        let give_up = tokio::time::Instant::now() + ttl;
        loop {
            match self.etcd.lease_revoke(leadership.lease).await {
                Ok(_) => return,
                // Already gone: it ran out, and took the key with it.
                Err(e) if e.to_string().contains("lease not found") => return,
                Err(e) if tokio::time::Instant::now() >= give_up => {
                    tracing::warn!(error = %e, "could not revoke the election lease; it expires on its own");
                    return;
                }
                Err(e) => {
                    tracing::info!(error = %e, "could not revoke the election lease yet; trying again");
                    tokio::time::sleep(REVOKE_RETRY).await;
                }
            }
        }
    }

    /// Projects, and records writes to `jobs/` made outside the master ([`Drift`]), until
    /// leadership is lost or an error occurs.
    async fn lead(&mut self, leadership: &Leadership) -> Result<(), ProjectorError> {
        let drift = Drift {
            store: self.store.clone(),
            etcd: self.etcd.clone(),
            keys: self.keys.clone(),
        };
        tokio::select! {
            result = self.project(leadership) => result,
            never = drift.run() => match never {},
        }
    }

    /// Projects until leadership is lost or an error occurs.
    async fn project(&mut self, leadership: &Leadership) -> Result<(), ProjectorError> {
        let mut listener = PgListener::connect_with(&self.store.pool)
            .await
            .map_err(StoreError::from)?;
        listener
            .listen("cron_events")
            .await
            .map_err(StoreError::from)?;
        loop {
            if leadership.lost.is_cancelled() {
                return Err(ProjectorError::LostLeadership);
            }
            let applied = self.apply_batch(&leadership.leader).await?;
            if applied == 0 {
                tokio::select! {
                    notification = listener.recv() => { notification.map_err(StoreError::from)?; }
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = leadership.lost.cancelled() => return Err(ProjectorError::LostLeadership),
                }
            }
        }
    }

    /// Applies the next batch of events after the checkpoint; returns how many.
    #[tracing::instrument(skip_all)]
    pub async fn apply_batch(&mut self, leader: &LeaderKey) -> Result<usize, ProjectorError> {
        let (checkpoint, checkpoint_revision) = self.checkpoint().await?;
        let events = self.store.events_after(checkpoint, BATCH).await?;
        let Some(last) = events.first() else {
            return Ok(0);
        };
        let mut last_seq = last.seq;
        let mut ops = Vec::with_capacity(events.len() + 1);
        let mut keys = std::collections::HashSet::new();
        let mut applied = 0;
        let mut short_lease = None;
        // etcd refuses a txn that writes one key twice: a batch ends before the event that
        // would, and that event opens the next batch.
        for event in &events {
            if let Some((key, writes)) = self.operation(event, &mut short_lease).await? {
                if !keys.insert(key) {
                    break;
                }
                ops.extend(writes);
            }
            applied += 1;
            last_seq = event.seq;
        }
        ops.push(TxnOp::put(
            self.keys.projector_checkpoint(),
            last_seq.to_string(),
            None,
        ));
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    self.keys.projector_checkpoint(),
                    CompareOp::Equal,
                    checkpoint_revision,
                ),
                Compare::create_revision(leader.key(), CompareOp::Equal, leader.rev()),
            ])
            .and_then(ops);
        if !self.etcd.txn(txn).await?.succeeded() {
            // Another projector moved the checkpoint, or this one is no longer the leader.
            return Err(ProjectorError::LostLeadership);
        }
        tracing::debug!(through = last_seq, events = applied, "projected");
        Ok(applied)
    }

    /// The checkpoint and its key's mod revision (0 when absent).
    pub async fn checkpoint(&mut self) -> Result<(i64, i64), ProjectorError> {
        let response = self
            .etcd
            .get(self.keys.projector_checkpoint(), None)
            .await?;
        match response.kvs().first() {
            None => Ok((0, 0)),
            Some(kv) => {
                let text = String::from_utf8_lossy(kv.value()).into_owned();
                let seq = text
                    .parse()
                    .map_err(|_| ProjectorError::BadCheckpoint(text))?;
                Ok((seq, kv.mod_revision()))
            }
        }
    }

    /// The etcd writes one event makes, under the job key they are about. Kill and run-now
    /// requests go on a short lease, granted once per batch. Deleting a job also deletes the
    /// attempts of a tick it was retrying, so a job made again under its name starts clean.
    #[tracing::instrument(skip_all, fields(job.name = %event.job_name, seq = event.seq))]
    async fn operation(
        &mut self,
        event: &StoredEvent,
        short_lease: &mut Option<(i64, i64)>,
    ) -> Result<Option<(String, Vec<TxnOp>)>, ProjectorError> {
        let Ok(name) = JobName::parse(&event.job_name) else {
            return Ok(None);
        };
        let (key, value, ttl) = match &event.event {
            Event::JobCreated { after }
            | Event::JobUpdated { after, .. }
            | Event::JobPaused { after, .. }
            | Event::JobResumed { after, .. } => {
                (self.keys.job(&name), after.to_etcd_value(), None)
            }
            Event::JobDeleted { .. } => {
                let key = self.keys.job(&name);
                let writes = vec![
                    TxnOp::delete(key.as_str(), None),
                    TxnOp::delete(self.keys.retry(&name), None),
                ];
                return Ok(Some((key, writes)));
            }
            // etcd already holds what the event records.
            Event::JobChangedOutsideMaster { .. } => return Ok(None),
            Event::RunRequested {
                request_id,
                source_run_id,
            } => {
                let value = request_value(event, request_id, source_run_id.clone());
                (self.keys.trigger(&name), value, Some(TRIGGER_TTL_SECS))
            }
            Event::KillRequested { request_id } => {
                let value = request_value(event, request_id, None);
                (self.keys.killer(&name), value, Some(KILL_TTL_SECS))
            }
        };
        let options = match ttl {
            Some(ttl) => {
                Some(PutOptions::new().with_lease(self.short_lease(short_lease, ttl).await?))
            }
            None => None,
        };
        Ok(Some((key.clone(), vec![TxnOp::put(key, value, options)])))
    }

    async fn short_lease(
        &mut self,
        cached: &mut Option<(i64, i64)>,
        ttl: i64,
    ) -> Result<i64, ProjectorError> {
        if let Some((id, cached_ttl)) = *cached {
            if cached_ttl == ttl {
                return Ok(id);
            }
        }
        let id = self.etcd.lease_grant(ttl, None).await?.id();
        *cached = Some((id, ttl));
        Ok(id)
    }
}

/// Keeps the election lease alive; cancels `lost` when it cannot.
async fn keep_alive(etcd: Client, lease: i64, ttl_secs: i64, lost: CancellationToken) {
    let mut keeper = LeaseKeeper::new(etcd, lease, ttl_secs);
    while keeper.renew().await {
        tokio::time::sleep(keeper.pause()).await;
    }
    lost.cancel();
}

/// The value of a `trigger/<job>` or `killer/<job>` key, naming who sent the request; a
/// chain's run-now names the run that set it off.
fn request_value(event: &StoredEvent, request_id: &str, source_run_id: Option<String>) -> Vec<u8> {
    let request = Request {
        request_id: request_id.to_owned(),
        seq: event.seq,
        source_run_id,
        actor: Some(event.actor.clone()),
    };
    serde_json::to_vec(&request).unwrap_or_default()
}

/// Events appended but not yet in etcd (the projector's checkpoint), or `None` when either
/// side cannot be read.
pub async fn lag(store: &Store, etcd: &Client, keys: &Keys) -> Option<i64> {
    let last = store.last_seq().await.ok()?;
    let response = etcd
        .clone()
        .get(keys.projector_checkpoint(), None)
        .await
        .ok()?;
    let checkpoint = response.kvs().first().map_or(Some(0), |kv| {
        std::str::from_utf8(kv.value()).ok()?.parse::<i64>().ok()
    })?;
    Some(last - checkpoint)
}
