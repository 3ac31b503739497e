//! Reading execution records in the order they reached MongoDB (`_id`, whose first four bytes
//! are the insert's second) and acting on each exactly once.
//!
//! Each record gets a row in `outcomes`, inserted in the same PostgreSQL transaction as
//! everything it sets off — the job's run of failures, its deliveries, the run-now events of
//! its chains — and the checkpoint; a record whose row exists is skipped. So a crash, a
//! restart, a second notifier for a moment, or reading a record twice neither loses nor
//! repeats anything. The forward read follows the newest `_id` acted on; because `_id`s come
//! from the inserting clients' clocks, a record can land behind it (an upload held back, a
//! clock behind), so every [`SWEEP_EVERY`] the reader goes over the last lookback window again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cronfleet_common::{ExecutionRecord, JobName, JobSpec, NotifyOn};
use mongodb::bson::{oid::ObjectId, RawDocumentBuf};
use mongodb::Collection;
use sqlx::{Postgres, Row, Transaction};

use super::log_reads::{self, at_secs, secs_of};
use super::payload;
use super::rules::{judge, Judgement};
use super::NotifyError;
use crate::domain::{Command, DomainError};
use crate::metrics::Metrics;
use crate::read::{indexes, last_runs, stats};
use crate::store::{execute_in, lock_appends, RequestMeta, Store, StoreError};

/// How far ahead of this master's clock the position may move: a record stamped by a worker
/// whose clock runs ahead does not carry the checkpoint into the future.
const FUTURE_MARGIN_SECS: i64 = 60;
/// How long delivery logs are kept.
const DELIVERY_RETENTION_DAYS: i32 = 30;
/// How often the last lookback window is read again.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How long making sure of the indexes may take. A server that takes longer goes on building
/// them; this leadership reads without waiting for them.
const INDEX_TIMEOUT: Duration = Duration::from_secs(60);

/// The notifier's reading position and what it needs to act.
#[derive(Debug)]
pub struct Reader {
    pub store: Store,
    pub log: Collection<RawDocumentBuf>,
    pub public_url: String,
    pub lookback_secs: u32,
    pub metrics: std::sync::Arc<Metrics>,
    /// The newest `_id` acted on; `None` until read from the checkpoint.
    position: Option<ObjectId>,
    last_sweep: Option<Instant>,
    /// Where the first read of this leadership began; sweeps start no earlier.
    floor_secs: i64,
    /// Whether jobs may be waiting for a row in `last_runs` (see [`last_runs::fill`]).
    unfilled: bool,
    /// Whether this leadership has made sure of the indexes its reads need.
    indexed: bool,
    /// When a read last reached the newest record.
    caught_up: Instant,
}

impl Reader {
    pub fn new(
        store: Store,
        log: Collection<RawDocumentBuf>,
        public_url: String,
        lookback_secs: u32,
        metrics: std::sync::Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            log,
            public_url,
            lookback_secs,
            metrics,
            position: None,
            last_sweep: None,
            floor_secs: 0,
            unfilled: true,
            indexed: false,
            caught_up: Instant::now(),
        }
    }

    /// Forgets the position: the next poll starts from the checkpoint, a lookback behind it
    /// (after a change of leader).
    pub fn reset(&mut self) {
        self.position = None;
        self.last_sweep = None;
        self.unfilled = true;
        self.indexed = false;
    }

    /// Acts on the records that arrived since the last poll (and, when due, on any that
    /// landed behind it); returns how many were new.
    pub async fn poll(&mut self) -> Result<usize, NotifyError> {
        if !self.indexed {
            match tokio::time::timeout(INDEX_TIMEOUT, indexes::ensure(&self.log)).await {
                Ok(Ok(())) => self.indexed = true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not create the indexes the notifier reads by; reading without them")
                }
                Err(_) => {
                    self.indexed = true;
                    tracing::warn!("the indexes the notifier reads by are still being built; reading without them meanwhile");
                }
            }
        }
        let mut acted = 0;
        let position = match self.position {
            Some(position) => position,
            None => {
                let checkpoint = self.checkpoint().await?;
                self.floor_secs = checkpoint.saturating_sub(i64::from(self.lookback_secs));
                let from = at_secs(self.floor_secs);
                acted += self.read_from(from).await?;
                self.last_sweep = Some(Instant::now());
                self.position.unwrap_or(from)
            }
        };
        acted += self.read_from(position).await?;
        if self.last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            let now = chrono::Utc::now().timestamp();
            let from = (now - i64::from(self.lookback_secs)).max(self.floor_secs);
            acted += self.read_from(at_secs(from)).await?;
            self.last_sweep = Some(Instant::now());
            self.prune().await?;
            self.unfilled = true;
        }
        if self.unfilled {
            let filled = log_reads::bounded(last_runs::fill(&self.store.pool, &self.log)).await??;
            self.unfilled = filled >= last_runs::FILL_BATCH;
        }
        self.update_lag();
        Ok(acted)
    }

    async fn read_from(&mut self, mut after: ObjectId) -> Result<usize, NotifyError> {
        let mut acted = 0;
        let ceiling = at_secs(chrono::Utc::now().timestamp() + FUTURE_MARGIN_SECS);
        loop {
            let (batch, last, full) = log_reads::batch(&self.log, after).await?;
            let Some(last) = last else {
                self.caught_up = Instant::now();
                return Ok(acted);
            };
            after = last;
            acted += self.act(&batch).await?;
            let reached = after.min(ceiling);
            if self.position.is_none_or(|position| reached > position) {
                self.position = Some(reached);
            }
            if !full {
                self.caught_up = Instant::now();
                return Ok(acted);
            }
        }
    }

    /// Acts on the records of `batch` not acted on before, in one transaction.
    async fn act(&self, batch: &[(ObjectId, ExecutionRecord)]) -> Result<usize, NotifyError> {
        // Appends (chained run-nows) take the append lock when they come; most batches have
        // none, and job writes are not held up while records are read.
        let mut tx = self.store.pool.begin().await?;
        let run_ids: Vec<&str> = batch.iter().map(|(_, r)| r.run_id.as_str()).collect();
        let jobs: Vec<&str> = batch.iter().map(|(_, r)| r.job_name.as_str()).collect();
        let statuses: Vec<&str> = batch.iter().map(|(_, r)| r.status.as_str()).collect();
        let seconds: Vec<i64> = batch.iter().map(|(id, _)| secs_of(*id)).collect();
        let new: Vec<String> = sqlx::query_scalar(
            "INSERT INTO outcomes (run_id, job_name, status, oid_secs)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
        )
        .bind(&run_ids)
        .bind(&jobs)
        .bind(&statuses)
        .bind(&seconds)
        .fetch_all(&mut *tx)
        .await?;
        let all: Vec<&ExecutionRecord> = batch.iter().map(|(_, record)| record).collect();
        last_runs::record(&mut tx, &all).await?;
        let new: std::collections::HashSet<String> = new.into_iter().collect();
        let fresh: Vec<&ExecutionRecord> = batch
            .iter()
            .map(|(_, record)| record)
            .filter(|record| new.contains(&record.run_id))
            .collect();
        stats::record(&mut tx, &fresh).await?;
        let specs = watched(&mut tx, &fresh).await?;
        // Outputs are read before anything takes the append lock, which job writes wait on.
        let mut outputs = HashMap::new();
        for record in &fresh {
            if specs
                .get(&record.job_name)
                .is_some_and(|spec| !spec.notify.is_empty())
            {
                outputs.insert(
                    record.run_id.clone(),
                    log_reads::output_of(&self.log, &record.run_id).await?,
                );
            }
        }
        for record in &fresh {
            if let Some(spec) = specs.get(&record.job_name) {
                let output = outputs.remove(&record.run_id).unwrap_or_default();
                self.judge_one(&mut tx, record, spec, output).await?;
            }
        }
        if let Some((newest, _)) = batch.last() {
            sqlx::query(
                "INSERT INTO notifier_checkpoint (oid_secs) VALUES ($1)
                 ON CONFLICT (id) DO UPDATE
                 SET oid_secs = greatest(notifier_checkpoint.oid_secs, $1), updated_at = now()",
            )
            .bind(secs_of(*newest).min(chrono::Utc::now().timestamp() + FUTURE_MARGIN_SECS))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for record in &fresh {
            self.metrics.run_recorded(record.status.as_str());
        }
        Ok(fresh.len())
    }

    async fn judge_one(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        record: &ExecutionRecord,
        spec: &JobSpec,
        output: String,
    ) -> Result<(), NotifyError> {
        let before: i32 = sqlx::query_scalar(
            "SELECT failures FROM failure_streaks WHERE job_name = $1 FOR UPDATE",
        )
        .bind(&record.job_name)
        .fetch_optional(&mut **tx)
        .await?
        .unwrap_or(0);
        let judgement = judge(record, spec, u32::try_from(before).unwrap_or(0));
        let Judgement {
            outcome,
            failures,
            notify,
            chain,
        } = judgement;
        let Some(outcome) = outcome else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO failure_streaks (job_name, failures) VALUES ($1, $2)
             ON CONFLICT (job_name) DO UPDATE SET failures = $2",
        )
        .bind(&record.job_name)
        .bind(i32::try_from(failures).unwrap_or(i32::MAX))
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE outcomes SET outcome = $2 WHERE run_id = $1")
            .bind(&record.run_id)
            .bind(outcome.as_str())
            .execute(&mut **tx)
            .await?;
        if !notify.is_empty() {
            let mut full = record.clone();
            full.output = output;
            for (channel, told) in &notify {
                let body = payload::body(&full, *told, &self.public_url);
                sqlx::query(
                    "INSERT INTO deliveries (run_id, job_name, channel, outcome, payload)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, channel) DO NOTHING",
                )
                .bind(&record.run_id)
                .bind(&record.job_name)
                .bind(channel.as_str())
                .bind(told.as_str())
                .bind(&body)
                .execute(&mut **tx)
                .await?;
            }
        }
        for target in &chain {
            run_chained(tx, record, outcome, target).await?;
        }
        Ok(())
    }

    /// The checkpoint's second; on a first start, a lookback ahead of now, so that the read
    /// begins at now and no history is replayed.
    async fn checkpoint(&self) -> Result<i64, NotifyError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT oid_secs FROM notifier_checkpoint WHERE id")
                .fetch_optional(&self.store.pool)
                .await?;
        Ok(found.unwrap_or_else(|| chrono::Utc::now().timestamp() + i64::from(self.lookback_secs)))
    }

    /// Forgets outcome rows no read can reach again (by their `_id` second, which reads go
    /// by), and delivery logs and run statistics past their retention.
    async fn prune(&self) -> Result<(), NotifyError> {
        // No read, now or after a restart, starts before a lookback ago; an hour's margin.
        let reachable = chrono::Utc::now().timestamp() - i64::from(self.lookback_secs) - 3600;
        sqlx::query("DELETE FROM outcomes WHERE oid_secs < $1")
            .bind(reachable)
            .execute(&self.store.pool)
            .await?;
        sqlx::query(
            "DELETE FROM deliveries WHERE state <> 'pending'
               AND created_at < now() - make_interval(days => $1)",
        )
        .bind(DELIVERY_RETENTION_DAYS)
        .execute(&self.store.pool)
        .await?;
        stats::prune(&self.store.pool, chrono::Utc::now()).await?;
        Ok(())
    }

    /// How long, in seconds, since a read last reached the newest record: about zero while
    /// the notifier keeps up, growing while it is behind or its reads fail.
    fn update_lag(&self) {
        self.metrics
            .notifier_lag(i64::try_from(self.caught_up.elapsed().as_secs()).unwrap_or(i64::MAX));
    }
}

/// The specs of the jobs among `records` that notify or chain.
async fn watched(
    tx: &mut Transaction<'static, Postgres>,
    records: &[&ExecutionRecord],
) -> Result<HashMap<String, JobSpec>, NotifyError> {
    if records.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<&str> = records.iter().map(|r| r.job_name.as_str()).collect();
    let rows = sqlx::query(
        "SELECT name, spec FROM jobs WHERE name = ANY($1) AND NOT deleted
           AND (spec ? 'notify' OR spec ? 'onSuccess' OR spec ? 'onFailure')",
    )
    .bind(&names)
    .fetch_all(&mut **tx)
    .await?;
    let mut specs = HashMap::new();
    for row in rows {
        let spec: JobSpec = serde_json::from_value(row.try_get("spec")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        specs.insert(row.try_get("name")?, spec);
    }
    Ok(specs)
}

/// Appends the run-now of `target` that `record`'s outcome sets off; the event's actor names
/// the source run. A target that is gone is logged and skipped.
async fn run_chained(
    tx: &mut Transaction<'static, Postgres>,
    record: &ExecutionRecord,
    outcome: NotifyOn,
    target: &JobName,
) -> Result<(), NotifyError> {
    let meta = RequestMeta {
        actor: format!(
            "chain: {} run {} ({})",
            record.job_name,
            record.run_id,
            outcome.as_str()
        ),
        request_id: uuid::Uuid::now_v7().to_string(),
        idempotency: None,
    };
    let command = Command::RunJobNow {
        request_id: meta.request_id.clone(),
        source_run_id: Some(record.run_id.clone()),
    };
    lock_appends(tx).await?;
    match execute_in(tx, target, command, None, &meta).await {
        Ok(_) => Ok(()),
        Err(StoreError::Domain(DomainError::NotFound(_))) => {
            tracing::warn!(job.name = %record.job_name, target = %target, "chained job is gone; not run");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
