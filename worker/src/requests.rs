//! Claims of a start someone asked for through a key: a run-now request (`trigger/<job>`,
//! written by the master) or a pending attempt (`retry/<job>`, see [`crate::chain`]). Whoever's
//! txn finds the key at the revision it saw takes the run; under `forbid`, when only the lock
//! stood in the way, the worker that deletes the key at that revision records the skip.

use cronfleet_common::{JobName, JobSpec};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use crate::claim::{applied_before, first_kv, Claimed, Claimer, Guard, Holder};
use crate::metrics::TxnResult;

impl Claimer {
    /// Claims a run-now request: whoever deletes `trigger/<job>` at `trigger_revision` runs it.
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn claim_trigger(
        &mut self,
        job: &JobSpec,
        trigger_revision: i64,
        lease: i64,
        holder: &Holder,
    ) -> Result<Claimed, etcd_client::Error> {
        let trigger_key = self.keys.trigger(&job.name);
        let take = TxnOp::delete(trigger_key.as_str(), None);
        let mut then = vec![take];
        then.extend(self.first_attempt(job, holder));
        let free = self.free_lock(job);
        self.claim_request(
            job,
            (trigger_key, trigger_revision),
            then,
            free,
            (lease, holder),
        )
        .await
    }

    /// Claims what `key` held at `revision` (a run-now request, a pending attempt): one txn
    /// that finds the key unchanged and the lock free as `free` asks, applies `take` to the
    /// key and takes the run's keys. When only the lock stood in the way (`forbid`), the key
    /// is deleted at `revision` — by one worker, which records the skip.
    pub(crate) async fn claim_request(
        &mut self,
        job: &JobSpec,
        (key, revision): (String, i64),
        take: Vec<TxnOp>,
        free: Vec<Compare>,
        (lease, holder): (i64, &Holder),
    ) -> Result<Claimed, etcd_client::Error> {
        let lock_key = self.keys.lock(&job.name);
        let mut when = vec![Compare::mod_revision(
            key.as_str(),
            CompareOp::Equal,
            revision,
        )];
        when.extend(free);
        let mut then = vec![TxnOp::get(lock_key.as_str(), None)];
        then.extend(take);
        then.extend(self.run_keys(job, holder, lease));
        let txn = Txn::new().when(when).and_then(then).or_else([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(lock_key.as_str(), None),
            self.own_key(job, holder),
        ]);
        let answer = self.send(&job.name, txn).await?;
        let replies = &answer.replies;
        if answer.succeeded {
            self.metrics.txn(TxnResult::Won);
            let replaced =
                first_kv(replies, 0).and_then(|(value, _)| serde_json::from_slice(&value).ok());
            return Ok(Claimed::Start {
                revision: answer.revision,
                previous: Guard::default(),
                replaced,
            });
        }
        if let Some(revision) = applied_before(replies, holder) {
            self.metrics.txn(TxnResult::Won);
            return Ok(Claimed::Start {
                revision,
                previous: Guard::default(),
                replaced: None,
            });
        }
        if first_kv(replies, 0).map(|(_, mod_rev)| mod_rev) != Some(revision) {
            self.metrics.txn(TxnResult::Lost);
            return Ok(Claimed::Lost);
        }
        self.metrics.txn(TxnResult::Locked);
        let holder =
            first_kv(replies, 1).and_then(|(value, _)| serde_json::from_slice(&value).ok());
        if self.delete_at(&job.name, &key, revision).await? {
            return Ok(Claimed::Skip {
                previous: Guard::default(),
                holder,
            });
        }
        Ok(Claimed::Lost)
    }

    /// Deletes `key` (of `job`) if it is still at mod revision `revision`; whether this call
    /// did.
    pub(crate) async fn delete_at(
        &mut self,
        job: &JobName,
        key: &str,
        revision: i64,
    ) -> Result<bool, etcd_client::Error> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, revision)])
            .and_then([TxnOp::delete(key, None)]);
        let won = self.send(job, txn).await?.succeeded;
        self.metrics
            .txn(if won { TxnResult::Won } else { TxnResult::Lost });
        Ok(won)
    }
}
