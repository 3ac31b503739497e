//! Keeps the worker's view of etcd current: a snapshot of everything under the prefix at one
//! revision, then a watch from the next revision, so no change falls between the two. A
//! compacted or broken watch takes a new snapshot and carries on.
//!
//! The watch does not ask etcd for the previous value of each key (every watcher of a busy
//! fleet would cost etcd a read per event): the watcher remembers who holds each `lock/` and
//! `runs/` key from the puts it saw, which is all a deletion needs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use cronfleet_common::keys::KeyKind;
use cronfleet_common::values::{Chain, Request};
use cronfleet_common::{JobName, JobSpec, Keys, Labels};
use etcd_client::{Client, GetOptions, KeyValue, WatchOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::claim::{Guard, Holder};
use crate::clock::Clock;
use crate::legacy::{self, LegacyWorkers};

mod events;

/// Keys fetched per page of a snapshot; keeps each response far below gRPC's message limit.
const PAGE: i64 = 2_000;

/// A change the scheduler must act on.
#[derive(Debug)]
pub enum Change {
    /// The full state at one revision; replaces everything known before.
    Snapshot {
        jobs: Vec<JobSpec>,
        guards: HashMap<JobName, Guard>,
        triggers: Vec<(JobName, i64, Option<Arc<Request>>)>,
        /// Ids and labels of the cronfleet workers registered under `workers/` that claim now.
        workers: Vec<(String, Labels)>,
        /// The attempts of ticks being retried, at their mod revisions.
        chains: Vec<(JobName, Chain, i64)>,
        /// The runs holding a `lock/` or `runs/` key.
        live_runs: HashSet<String>,
        /// Addresses of the go-crontab workers registered under `workers/`.
        legacy: Vec<String>,
    },
    JobPut(Box<JobSpec>),
    JobDeleted(JobName),
    /// A kill request for `job`, written at `revision`, and who sent it.
    Kill(JobName, i64, Option<Arc<str>>),
    /// A run-now request for `job`, at its mod revision.
    Trigger(JobName, i64, Option<Arc<Request>>),
    /// The run-now requests of `job` written before this revision were consumed (or expired).
    TriggerConsumed(JobName, i64),
    /// `lock/<job>` was written by `run_id` at `revision`.
    LockTaken {
        job: JobName,
        run_id: String,
        revision: i64,
    },
    Guard(JobName, Guard),
    /// A cronfleet worker registered (or refreshed its registration) and claims, with its
    /// labels.
    WorkerUp(String, Labels),
    /// `retry/<job>` was written at this mod revision.
    Chain(JobName, Chain, i64),
    /// `retry/<job>` was deleted at this revision: the tick's attempts are over.
    ChainEnded(JobName, i64),
    /// A go-crontab worker registered, at this address.
    LegacyWorkerUp(String),
    /// A worker's registration went away (it stopped, or its lease expired), or it holds its
    /// claims.
    WorkerDown(String),
    /// Another worker wrote a time by its clock (a heartbeat, a claim), which this worker saw
    /// at `mine_ms` by its own: a sample of how far apart the two clocks are.
    PeerClock {
        worker: String,
        theirs_ms: i64,
        mine_ms: i64,
    },
    /// A run whose worker died: its lease took the run key and the registration together.
    Abandoned {
        holder: Holder,
        fencing_token: i64,
    },
}

/// Watches everything under the prefix.
pub struct Watcher {
    client: Client,
    keys: Keys,
    clock: Clock,
    /// Holder, revision (the fencing token) and lease of every live `lock/` and `runs/` key.
    holders: HashMap<Vec<u8>, (Holder, i64, i64)>,
    /// The lease each registered worker's registration is on.
    registrations: HashMap<String, i64>,
    /// The zone go-crontab's job values are read in: this machine's.
    local: Tz,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub fn new(client: Client, keys: Keys, clock: Clock) -> Self {
        Self {
            client,
            keys,
            clock,
            holders: HashMap::new(),
            registrations: HashMap::new(),
            local: legacy::local_timezone(),
        }
    }

    pub async fn run(
        mut self,
        changes: mpsc::Sender<Change>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = async {
                let revision = self.snapshot(&changes).await?;
                backoff = Duration::from_millis(100);
                self.follow(revision + 1, &changes).await
            };
            let result = tokio::select! {
                result = round => result,
                () = shutdown.cancelled() => return Ok(()),
            };
            if changes.is_closed() {
                return Ok(());
            }
            match result {
                Ok(()) => tracing::warn!("etcd watch ended; taking a new snapshot"),
                Err(e) => tracing::warn!(error = %e, "etcd watch failed; taking a new snapshot"),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Reads everything under the prefix at one revision, page by page; returns the revision.
    async fn snapshot(&mut self, changes: &mpsc::Sender<Change>) -> anyhow::Result<i64> {
        let prefix = self.keys.prefix().to_owned();
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.into_bytes();
        let mut revision = 0;
        let (mut jobs, mut guards, mut triggers) = (Vec::new(), HashMap::new(), Vec::new());
        let (mut workers, mut legacy, mut chains) = (Vec::new(), Vec::new(), Vec::new());
        self.holders.clear();
        self.registrations.clear();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = self.client.get(from.clone(), Some(options)).await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                match self.keys.kind(kv.key()) {
                    KeyKind::Job => jobs.extend(parse_job(kv, self.local)),
                    KeyKind::Tick => {
                        if let Some(job) = self.job_of(kv) {
                            guards.insert(job, Guard::decode(kv.value(), kv.mod_revision()));
                        }
                    }
                    KeyKind::Trigger => triggers.extend(
                        self.job_of(kv)
                            .map(|job| (job, kv.mod_revision(), request(kv))),
                    ),
                    KeyKind::Worker if LegacyWorkers::is_legacy(kv.value()) => {
                        legacy.extend(self.worker_id_of(kv));
                    }
                    KeyKind::Worker => workers.extend(
                        self.registered_worker(kv)
                            .filter(|(_, claiming, _)| *claiming)
                            .map(|(id, _, labels)| (id, labels)),
                    ),
                    KeyKind::Retry => chains.extend(
                        self.chain_of(kv)
                            .map(|(job, chain)| (job, chain, kv.mod_revision())),
                    ),
                    KeyKind::Lock | KeyKind::Run => self.remember(kv),
                    _ => {}
                }
            }
            match (response.more(), response.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        tracing::info!(jobs = jobs.len(), revision, "etcd snapshot loaded");
        let live_runs = self
            .holders
            .values()
            .map(|(holder, _, _)| holder.run_id.clone())
            .collect();
        changes
            .send(Change::Snapshot {
                jobs,
                guards,
                triggers,
                workers,
                legacy,
                chains,
                live_runs,
            })
            .await?;
        Ok(revision)
    }

    /// Records the holder of a `lock/` or `runs/` key that was written.
    fn remember(&mut self, kv: &KeyValue) {
        if let Ok(holder) = serde_json::from_slice::<Holder>(kv.value()) {
            self.holders
                .insert(kv.key().to_vec(), (holder, kv.mod_revision(), kv.lease()));
        }
    }

    fn job_of(&self, kv: &KeyValue) -> Option<JobName> {
        self.keys.job_of(kv.key())
    }

    /// The id of a cronfleet worker's registration, whether it claims now (its `holds` are
    /// empty), and its labels. go-crontab's workers register with an empty value; they take
    /// no part in cronfleet's order of preference.
    fn registered_worker(&mut self, kv: &KeyValue) -> Option<(String, bool, Labels)> {
        let id = self.worker_id_of(kv)?;
        self.registrations.insert(id.clone(), kv.lease());
        let value: serde_json::Value = serde_json::from_slice(kv.value()).ok()?;
        let claiming = value
            .get("holds")
            .and_then(serde_json::Value::as_array)
            .is_none_or(Vec::is_empty);
        let labels = value
            .get("labels")
            .and_then(|labels| serde_json::from_value(labels.clone()).ok())
            .unwrap_or_default();
        (value.get("id")?.as_str()? == id).then_some((id, claiming, labels))
    }

    /// The job and attempts of a `retry/<job>` key.
    fn chain_of(&self, kv: &KeyValue) -> Option<(JobName, Chain)> {
        let chain = serde_json::from_slice(kv.value())
            .inspect_err(|e| tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "skipping an unreadable retry key"))
            .ok()?;
        Some((self.job_of(kv)?, chain))
    }

    fn worker_id_of(&self, kv: &KeyValue) -> Option<String> {
        let key = std::str::from_utf8(kv.key()).ok()?;
        key.strip_prefix(&self.keys.workers()).map(str::to_owned)
    }

    /// Follows the watch from `start` until it breaks or is compacted (an error: the caller
    /// takes a new snapshot).
    pub async fn follow(
        &mut self,
        start: i64,
        changes: &mpsc::Sender<Change>,
    ) -> anyhow::Result<()> {
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = self.client.watch(self.keys.prefix(), Some(options)).await?;
        while let Some(response) = stream.message().await? {
            if response.canceled() || response.compact_revision() > 0 {
                anyhow::bail!(
                    "watch cancelled at compacted revision {} ({})",
                    response.compact_revision(),
                    response.cancel_reason()
                );
            }
            for change in self.translate(response.events()) {
                changes.send(change).await?;
            }
        }
        Ok(())
    }
}

/// A run-now request as the master wrote it; `None` when it cannot be read (the request
/// still runs, only without its request id and sender on the record).
fn request(kv: &KeyValue) -> Option<Arc<Request>> {
    serde_json::from_slice::<Request>(kv.value())
        .ok()
        .map(Arc::new)
}

fn parse_job(kv: &KeyValue, local: Tz) -> Option<JobSpec> {
    let key_name = kv.key().rsplit(|b| *b == b'/').next().unwrap_or_default();
    match JobSpec::from_etcd_value_in(kv.value(), local) {
        Ok(spec) if spec.name.as_str().as_bytes() == key_name => Some(spec),
        Ok(spec) => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), name = %spec.name, "skipping a job whose name differs from its key");
            None
        }
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(kv.key()), error = %e, "skipping a job whose value does not parse");
            None
        }
    }
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
