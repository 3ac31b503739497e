//! Retries: the attempts of one tick, kept in `retry/<job>` ([`Chain`]) without a lease, so
//! that the chain outlives any worker.
//!
//! * The claim that starts a tick of a job with a retry policy writes the chain (attempt 1,
//!   running) in its own txn. Under `forbid`, claims also require the chain to be absent: a
//!   tick that falls due while an earlier tick's attempts are pending or running is skipped,
//!   as Kubernetes skips a schedule while a job is active.
//! * When an attempt ends, its worker moves the chain — only if it still names that attempt —
//!   to the next attempt (pending, with the backoff delay) or deletes it. A survivor does the
//!   same for an attempt whose worker died, and a worker that finds a chain naming a run
//!   nobody holds (no survivor saw it die) does it at its snapshot.
//! * Every worker that may run the job queues a pending attempt for its due time; whoever's
//!   txn on the chain's mod revision lands first runs it, with its own fencing token. An
//!   attempt not started by its deadline is given up, once, the same way.

use cronfleet_common::values::Chain;
use cronfleet_common::{JobName, JobSpec, RunStatus};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use crate::claim::{first_kv, needs_free_lock, Claimed, Claimer, Holder};

impl Claimer {
    /// The put that starts a job's chain with `holder`'s run as attempt 1, for jobs with a
    /// retry policy. A new tick under `allow` or `replace` supersedes an older tick's chain.
    pub(crate) fn first_attempt(&self, job: &JobSpec, holder: &Holder) -> Option<TxnOp> {
        job.retry.as_ref()?;
        let chain = Chain {
            tick_id: holder.tick_id.clone(),
            planned_at: holder.planned_at,
            trigger: holder.trigger,
            job_version: holder.job_version,
            attempt: 1,
            run_id: holder.run_id.clone(),
            pending: false,
            not_before: 0,
            source_run_id: holder.source_run_id.clone(),
            request_id: holder.request_id.clone(),
            requested_by: holder.requested_by.clone(),
        };
        Some(TxnOp::put(
            self.keys.retry(&job.name),
            serde_json::to_vec(&chain).unwrap_or_default(),
            None,
        ))
    }

    /// Claims the pending attempt `chain` found at mod revision `revision`: one txn marks it
    /// running under `holder`'s run and takes the run's keys. Under `forbid`, a lock held
    /// by another run (a run-now, a go-crontab worker) skips the attempt, which ends the chain.
    #[tracing::instrument(skip_all, fields(job.name = %job.name, attempt = chain.attempt))]
    pub async fn claim_attempt(
        &mut self,
        job: &JobSpec,
        (chain, revision): (&Chain, i64),
        lease: i64,
        holder: &Holder,
    ) -> Result<Claimed, etcd_client::Error> {
        let retry_key = self.keys.retry(&job.name);
        let running = Chain {
            run_id: holder.run_id.clone(),
            pending: false,
            ..chain.clone()
        };
        let take = vec![TxnOp::put(
            retry_key.as_str(),
            serde_json::to_vec(&running).unwrap_or_default(),
            None,
        )];
        let free = if needs_free_lock(job) {
            vec![Compare::create_revision(
                self.keys.lock(&job.name),
                CompareOp::Equal,
                0,
            )]
        } else {
            Vec::new()
        };
        self.claim_request(job, (retry_key, revision), take, free, (lease, holder))
            .await
    }

    /// Deletes `retry/<job>` if it is still at `revision`; whether this call did.
    pub async fn end_chain_at(
        &mut self,
        job: &JobName,
        revision: i64,
    ) -> Result<bool, etcd_client::Error> {
        let retry_key = self.keys.retry(job);
        self.delete_at(job, &retry_key, revision).await
    }

    /// After attempt `run_id` of `job` ended with `status` at `now_ms`: schedules the next
    /// attempt if the policy retries it and attempts are left, else ends the chain — only if
    /// the chain still names that attempt (a newer tick, or a survivor, may have moved it).
    /// `jitter` (0..1) spreads the delay. Returns the next attempt's chain, if one was set.
    #[tracing::instrument(skip_all, fields(job.name = %job.name, run.id = %run_id))]
    pub async fn after_attempt(
        &mut self,
        job: &JobSpec,
        run_id: &str,
        (status, now_ms, jitter): (RunStatus, i64, f64),
    ) -> Result<Option<Chain>, etcd_client::Error> {
        let retry_key = self.keys.retry(&job.name);
        let Some((value, revision)) = self.read_chain(job).await? else {
            return Ok(None);
        };
        let Ok(chain) = serde_json::from_slice::<Chain>(&value) else {
            return Ok(None);
        };
        if chain.pending || chain.run_id != run_id {
            return Ok(None);
        }
        let next = job
            .retry
            .as_ref()
            .filter(|policy| policy.retries(status) && chain.attempt < policy.max_attempts)
            .map(|policy| Chain {
                attempt: chain.attempt + 1,
                pending: true,
                not_before: now_ms + policy.delay_ms(chain.attempt + 1, jitter),
                ..chain.clone()
            });
        let op = match &next {
            Some(next) => TxnOp::put(
                retry_key.as_str(),
                serde_json::to_vec(next).unwrap_or_default(),
                None,
            ),
            None => TxnOp::delete(retry_key.as_str(), None),
        };
        let txn = Txn::new()
            .when([Compare::mod_revision(
                retry_key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([op]);
        let answer = self.send(&job.name, txn).await?;
        Ok(next.filter(|_| answer.succeeded))
    }

    async fn read_chain(
        &mut self,
        job: &JobSpec,
    ) -> Result<Option<(Vec<u8>, i64)>, etcd_client::Error> {
        let retry_key = self.keys.retry(&job.name);
        let txn = Txn::new().and_then([TxnOp::get(retry_key.as_str(), None)]);
        let answer = self.send(&job.name, txn).await?;
        Ok(first_kv(&answer.replies, 0))
    }
}
