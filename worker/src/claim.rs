//! Claiming a start in etcd, so that each (job, planned tick) starts at most once in the fleet.
//!
//! A scheduled claim is one txn that, in one revision:
//! * checks `tick/<job>` still has the mod revision this worker last saw (the per-tick guard),
//!   and that the guard's planned time is before this tick (checked before the txn);
//! * with `forbid`, checks `lock/<job>` does not exist (`create_revision == 0`, as go-crontab);
//! * writes the guard forward to this tick, `lock/<job>` and `runs/<job>/<run>` on the
//!   worker's lease.
//!
//! Because the guard only moves forward and every writer must have seen its latest revision,
//! two workers whose clocks disagree by seconds cannot both start the same tick: the second
//! finds the guard already at that tick. The txn's revision is the run's fencing token.
//! When the lock is held under `forbid`, the guard still moves forward in a txn of its own, and
//! the worker that wins it records the tick as skipped — once. A tick nobody started by its
//! deadline is given up the same way ([`Claimer::miss_tick`]), and its winner records it as
//! missed — once.
//!
//! While etcd cannot answer, a txn is sent again ([`Batcher`]). When the first sending was
//! applied but its answer lost, the second fails its compare — and finds this worker's own
//! writes: the key its claim created holds its run, or the guard holds the value its miss
//! wrote. So a lost answer neither loses the tick nor leaves a lock nobody runs under.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronfleet_common::{Concurrency, JobName, JobSpec, Keys, Mode};
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use crate::batch::{Answer, Batcher};
use crate::metrics::{Metrics, TxnResult};
pub use cronfleet_common::values::{Guard, Holder};

/// The result of trying to claim a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// This worker starts the run; `revision` is the fencing token. `previous` is the guard
    /// before this claim, `replaced` the holder a `replace` claim took the lock from.
    Start {
        revision: i64,
        previous: Guard,
        replaced: Option<Holder>,
    },
    /// The lock was held under `forbid`; this worker moved the guard and records the skip.
    Skip {
        previous: Guard,
        holder: Option<Holder>,
    },
    /// The lock was held under `forbid` and the caller asked not to skip yet; nothing changed.
    Locked,
    /// Another worker already claimed (or skipped) this tick.
    Lost,
}

/// Claims for one worker, on its session lease.
#[derive(Clone)]
pub struct Claimer {
    pub etcd: Batcher,
    pub keys: Keys,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Claimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

const ATTEMPTS: usize = 5;

impl Claimer {
    /// Claims the scheduled tick `planned` of `job`, starting from the guard this worker saw.
    /// With `skip_when_locked` false, a held lock returns [`Claimed::Locked`] instead of
    /// recording the tick as skipped (used to claim ahead of time without skipping too early).
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn claim_tick(
        &mut self,
        job: &JobSpec,
        planned: DateTime<Utc>,
        mut guard: Guard,
        lease: i64,
        holder: &Holder,
        skip_when_locked: bool,
    ) -> Result<Claimed, etcd_client::Error> {
        let planned_ms = planned.timestamp_millis();
        let tick_key = self.keys.tick(&job.name);
        let lock_key = self.keys.lock(&job.name);
        for _ in 0..ATTEMPTS {
            if guard.planned_ms >= planned_ms {
                return Ok(Claimed::Lost);
            }
            let mut when = vec![Compare::mod_revision(
                tick_key.as_str(),
                CompareOp::Equal,
                guard.mod_revision,
            )];
            when.extend(self.free_lock(job));
            let mut then = vec![TxnOp::get(lock_key.as_str(), None)];
            then.push(TxnOp::put(
                tick_key.as_str(),
                Guard::encode(planned_ms, job.version, &holder.run_id),
                None,
            ));
            then.extend(self.run_keys(job, holder, lease));
            then.extend(self.first_attempt(job, holder));
            let txn = Txn::new().when(when).and_then(then).or_else([
                TxnOp::get(tick_key.as_str(), None),
                TxnOp::get(lock_key.as_str(), None),
                self.own_key(job, holder),
            ]);
            let answer = self.send(&job.name, txn).await?;
            let replies = &answer.replies;
            if answer.succeeded {
                self.metrics.txn(TxnResult::Won);
                let replaced = first_kv(replies, 0)
                    .and_then(|(value, _)| serde_json::from_slice::<Holder>(&value).ok());
                return Ok(Claimed::Start {
                    revision: answer.revision,
                    previous: guard,
                    replaced,
                });
            }
            if let Some(revision) = applied_before(replies, holder) {
                self.metrics.txn(TxnResult::Won);
                return Ok(Claimed::Start {
                    revision,
                    previous: guard,
                    replaced: None,
                });
            }
            let current = first_kv(replies, 0)
                .map(|(value, mod_rev)| Guard::decode(&value, mod_rev))
                .unwrap_or_default();
            if current.mod_revision != guard.mod_revision {
                self.metrics.txn(TxnResult::Lost);
                guard = current;
                continue;
            }
            self.metrics.txn(TxnResult::Locked);
            // The guard was as seen, so the lock is what failed: skip the tick, once.
            if !skip_when_locked {
                return Ok(Claimed::Locked);
            }
            let holder =
                first_kv(replies, 1).and_then(|(value, _)| serde_json::from_slice(&value).ok());
            match self.advance(job, planned_ms, guard).await? {
                Ok(()) => {
                    return Ok(Claimed::Skip {
                        previous: guard,
                        holder,
                    })
                }
                Err(current) => guard = current,
            }
        }
        Ok(Claimed::Lost)
    }

    /// Gives up the scheduled tick `planned` of `job` as missed: moves the guard to it, so that
    /// exactly one worker records it. Returns the guard before the move, or `None` when the
    /// fleet had already settled the tick.
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn miss_tick(
        &mut self,
        job: &JobSpec,
        planned: DateTime<Utc>,
        mut guard: Guard,
    ) -> Result<Option<Guard>, etcd_client::Error> {
        let planned_ms = planned.timestamp_millis();
        for _ in 0..ATTEMPTS {
            if guard.planned_ms >= planned_ms {
                return Ok(None);
            }
            match self.advance(job, planned_ms, guard).await? {
                Ok(()) => return Ok(Some(guard)),
                Err(current) => guard = current,
            }
        }
        Ok(None)
    }

    /// Moves the guard of `job` from `guard` to `planned_ms` without taking the lock. Fails
    /// with the current guard when another worker moved it first.
    async fn advance(
        &mut self,
        job: &JobSpec,
        planned_ms: i64,
        guard: Guard,
    ) -> Result<Result<(), Guard>, etcd_client::Error> {
        let tick_key = self.keys.tick(&job.name);
        let value = Guard::encode(planned_ms, job.version, &uuid::Uuid::now_v7().to_string());
        let txn = Txn::new()
            .when([Compare::mod_revision(
                tick_key.as_str(),
                CompareOp::Equal,
                guard.mod_revision,
            )])
            .and_then([TxnOp::put(tick_key.as_str(), value.as_str(), None)])
            .or_else([TxnOp::get(tick_key.as_str(), None)]);
        let answer = self.send(&job.name, txn).await?;
        let current = first_kv(&answer.replies, 0);
        // Sent again after a lost answer, the txn finds the guard moved — by its first sending.
        let ours = current
            .as_ref()
            .is_some_and(|(stored, _)| stored == value.as_bytes());
        if answer.succeeded || ours {
            self.metrics.txn(TxnResult::Won);
            return Ok(Ok(()));
        }
        self.metrics.txn(TxnResult::Lost);
        Ok(Err(current
            .map(|(value, mod_rev)| Guard::decode(&value, mod_rev))
            .unwrap_or_default()))
    }

    /// Sends one txn on `job`'s keys, timing the answer and counting it when etcd does not
    /// answer.
    pub(crate) async fn send(
        &mut self,
        job: &JobName,
        txn: Txn,
    ) -> Result<Answer, etcd_client::Error> {
        let sent = std::time::Instant::now();
        let in_flight = self.metrics.txn_sent();
        let answer = self.etcd.send(job, txn).await;
        drop(in_flight);
        match answer {
            Ok(_) => self.metrics.claim_answered(sent.elapsed()),
            Err(_) => self.metrics.txn(TxnResult::Failed),
        }
        answer
    }

    /// Releases a run that ended: deletes its `runs/<job>/<run>` key, if it has one, and the
    /// lock if it is still the one this run took at `revision`. One write.
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn release(
        &mut self,
        job: &JobSpec,
        run_id: &str,
        revision: i64,
    ) -> Result<(), etcd_client::Error> {
        let lock_key = self.keys.lock(&job.name);
        let own_key: Vec<TxnOp> = if has_run_key(job) {
            vec![TxnOp::delete(self.keys.run(&job.name, run_id), None)]
        } else {
            Vec::new()
        };
        let mut locked = vec![TxnOp::delete(lock_key.as_str(), None)];
        locked.extend(own_key.iter().cloned());
        let txn = Txn::new()
            .when([Compare::mod_revision(
                lock_key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then(locked)
            .or_else(own_key);
        self.etcd.send(&job.name, txn).await.map(drop)
    }

    /// What a claim of `job` compares besides its guard or request: under `forbid`, that no
    /// run holds the lock and, for a job with retries, that no earlier tick's attempts are
    /// pending or running (`retry/<job>` absent).
    pub(crate) fn free_lock(&self, job: &JobSpec) -> Vec<Compare> {
        if !needs_free_lock(job) {
            return Vec::new();
        }
        let mut when = vec![Compare::create_revision(
            self.keys.lock(&job.name),
            CompareOp::Equal,
            0,
        )];
        if job.retry.is_some() {
            when.push(Compare::create_revision(
                self.keys.retry(&job.name),
                CompareOp::Equal,
                0,
            ));
        }
        when
    }

    /// Undoes a claim whose answer never came (etcd could not answer for as long as it was
    /// sent again): deletes the keys it may have created, where they still hold its run, so a
    /// lock cannot stay behind on this worker's lease.
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn withdraw(
        &mut self,
        job: &JobSpec,
        holder: &Holder,
    ) -> Result<(), etcd_client::Error> {
        let lock_key = self.keys.lock(&job.name);
        let value = serde_json::to_vec(holder).unwrap_or_default();
        let own = TxnOp::delete(self.keys.run(&job.name, &holder.run_id), None);
        let txn = Txn::new()
            .when([Compare::value(lock_key.as_str(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(lock_key.as_str(), None), own.clone()])
            .or_else([own]);
        self.etcd.send(&job.name, txn).await.map(drop)
    }

    /// Reads the key a claim by `holder` creates: its own `runs/` key if it has one, else
    /// the lock.
    pub(crate) fn own_key(&self, job: &JobSpec, holder: &Holder) -> TxnOp {
        let key = if has_run_key(job) {
            self.keys.run(&job.name, &holder.run_id)
        } else {
            self.keys.lock(&job.name)
        };
        TxnOp::get(key, None)
    }

    pub(crate) fn run_keys(&self, job: &JobSpec, holder: &Holder, lease: i64) -> Vec<TxnOp> {
        let value = serde_json::to_vec(holder).unwrap_or_default();
        let on_lease = || Some(PutOptions::new().with_lease(lease));
        let mut ops = Vec::new();
        if has_run_key(job) {
            ops.push(TxnOp::put(
                self.keys.run(&job.name, &holder.run_id),
                value.clone(),
                on_lease(),
            ));
        }
        if takes_lock(job) {
            ops.push(TxnOp::put(self.keys.lock(&job.name), value, on_lease()));
        }
        ops
    }
}

/// Whether a run of `job` has a `runs/<job>/<run>` key of its own. A `forbid` run is the only
/// holder of its job's lock, so the lock is its key; runs that may overlap (`allow`,
/// `replace`, and every worker's run of a job run on all) each have one.
pub(crate) fn has_run_key(job: &JobSpec) -> bool {
    job.mode == Mode::All || job.concurrency != Concurrency::Forbid
}

/// Whether a run of `job` takes go-crontab's `lock/<job>`: one run at a time in the fleet
/// (`forbid`, `replace`). A job run on every worker keeps `forbid` per worker instead.
pub(crate) fn takes_lock(job: &JobSpec) -> bool {
    job.mode == Mode::One && job.concurrency != Concurrency::Allow
}

/// Whether a claim of `job` must find its lock free: `forbid`, one worker at a time.
pub(crate) fn needs_free_lock(job: &JobSpec) -> bool {
    job.mode == Mode::One && job.concurrency == Concurrency::Forbid
}

/// The revision of a claim by `holder` that a txn sent again finds already applied: the key
/// the claim created (the third reply of its failure branch) holds `holder`'s run.
pub(crate) fn applied_before(replies: &[TxnOpResponse], holder: &Holder) -> Option<i64> {
    let TxnOpResponse::Get(get) = replies.get(2)? else {
        return None;
    };
    let kv = get.kvs().first()?;
    let found: Holder = serde_json::from_slice(kv.value()).ok()?;
    (found.run_id == holder.run_id).then(|| kv.create_revision())
}

/// The value and mod revision of the first key of the `index`-th reply, if it is a get that
/// found one.
pub(crate) fn first_kv(replies: &[TxnOpResponse], index: usize) -> Option<(Vec<u8>, i64)> {
    match replies.get(index)? {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
        _ => None,
    }
}
