//! Jobs run on every worker (`mode: all`): each live matching worker claims its own run of
//! each tick, against a guard of its own, `tick/<job>/<worker>`, on its session lease.
//!
//! The guard only moves forward (its value starts with the zero-padded planned time, so
//! etcd's byte comparison orders it), so one worker never starts a tick twice, even when it is
//! sent again after a lost answer or restarted under the same id. A worker holds no lock:
//! `forbid` and `replace` act on its own runs of the job, which it knows.

use chrono::{DateTime, Utc};
use cronfleet_common::JobSpec;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use crate::claim::{applied_before, first_kv, Claimed, Claimer, Guard, Holder};
use crate::metrics::TxnResult;

impl Claimer {
    /// Claims this worker's run of tick `planned` of a job run on every worker.
    #[tracing::instrument(skip_all, fields(job.name = %job.name))]
    pub async fn claim_own(
        &mut self,
        job: &JobSpec,
        planned: DateTime<Utc>,
        lease: i64,
        holder: &Holder,
    ) -> Result<Claimed, etcd_client::Error> {
        let planned_ms = planned.timestamp_millis();
        let guard_key = self.keys.worker_tick(&job.name, &holder.worker_id);
        // Every value written for an earlier tick sorts before this prefix.
        let bound = format!("{planned_ms:020}:");
        let mut then = vec![TxnOp::put(
            guard_key.as_str(),
            Guard::encode(planned_ms, job.version, &holder.run_id),
            Some(PutOptions::new().with_lease(lease)),
        )];
        then.extend(self.run_keys(job, holder, lease));
        let otherwise = [
            TxnOp::get(guard_key.as_str(), None),
            TxnOp::get(guard_key.as_str(), None),
            self.own_key(job, holder),
        ];
        for when in [
            Compare::value(guard_key.as_str(), CompareOp::Less, bound.as_str()),
            Compare::create_revision(guard_key.as_str(), CompareOp::Equal, 0),
        ] {
            let txn = Txn::new()
                .when([when])
                .and_then(then.clone())
                .or_else(otherwise.clone());
            let answer = self.send(&job.name, txn).await?;
            if answer.succeeded {
                self.metrics.txn(TxnResult::Won);
                return Ok(start(answer.revision));
            }
            if let Some(revision) = applied_before(&answer.replies, holder) {
                self.metrics.txn(TxnResult::Won);
                return Ok(start(revision));
            }
            // A guard at or past this tick: this worker already had it.
            if first_kv(&answer.replies, 0).is_some() {
                break;
            }
        }
        self.metrics.txn(TxnResult::Lost);
        Ok(Claimed::Lost)
    }
}

fn start(revision: i64) -> Claimed {
    Claimed::Start {
        revision,
        previous: Guard::default(),
        replaced: None,
    }
}
