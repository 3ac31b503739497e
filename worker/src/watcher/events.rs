//! What one watch response changes, as the scheduler hears it.

use std::collections::HashSet;
use std::sync::Arc;

use cronfleet_common::keys::KeyKind;
use cronfleet_common::values::Request;
use etcd_client::{EventType, KeyValue};

use super::{parse_job, request, Change, Watcher};
use crate::claim::{Guard, Holder};
use crate::legacy::LegacyWorkers;

impl Watcher {
    /// Turns one watch response into changes, pairing run deletions with the deletion of their
    /// worker's registration in the same revision (a lease that expired).
    pub(super) fn translate(&mut self, events: &[etcd_client::Event]) -> Vec<Change> {
        let mine_ms = self.clock.now_ms();
        let mut out = Vec::new();
        let clock = |worker: &str, theirs_ms: i64, out: &mut Vec<Change>| {
            out.push(Change::PeerClock {
                worker: worker.to_owned(),
                theirs_ms,
                mine_ms,
            });
        };
        let mut dead_workers: HashSet<(i64, String)> = HashSet::new();
        let mut deleted_runs: Vec<(i64, Holder, i64, i64)> = Vec::new();
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let put = event.event_type() == EventType::Put;
            match (self.keys.kind(kv.key()), put) {
                (KeyKind::Job, true) => {
                    out.extend(parse_job(kv, self.local).map(|spec| Change::JobPut(Box::new(spec))))
                }
                (KeyKind::Job, false) => out.extend(self.job_of(kv).map(Change::JobDeleted)),
                (KeyKind::Killer, true) => out.extend(
                    self.job_of(kv)
                        .map(|job| Change::Kill(job, kv.mod_revision(), actor(kv))),
                ),
                (KeyKind::Trigger, true) => out.extend(
                    self.job_of(kv)
                        .map(|job| Change::Trigger(job, kv.mod_revision(), request(kv))),
                ),
                (KeyKind::Trigger, false) => out.extend(
                    self.job_of(kv)
                        .map(|job| Change::TriggerConsumed(job, kv.mod_revision())),
                ),
                (KeyKind::Lock, true) => {
                    self.remember(kv);
                    if let (Some(job), Ok(holder)) = (
                        self.job_of(kv),
                        serde_json::from_slice::<Holder>(kv.value()),
                    ) {
                        clock(&holder.worker_id, holder.claimed_at, &mut out);
                        out.push(Change::LockTaken {
                            job,
                            run_id: holder.run_id,
                            revision: kv.mod_revision(),
                        });
                    }
                }
                (KeyKind::Tick, true) => {
                    if let Some(job) = self.job_of(kv) {
                        out.push(Change::Guard(
                            job,
                            Guard::decode(kv.value(), kv.mod_revision()),
                        ));
                    }
                }
                // A worker that holds its claims leaves the order, so nobody waits a hand-off
                // for it; it comes back when it claims again.
                (KeyKind::Worker, true) if LegacyWorkers::is_legacy(kv.value()) => {
                    out.extend(self.worker_id_of(kv).map(Change::LegacyWorkerUp));
                }
                (KeyKind::Retry, true) => out.extend(
                    self.chain_of(kv)
                        .map(|(job, chain)| Change::Chain(job, chain, kv.mod_revision())),
                ),
                (KeyKind::Retry, false) => out.extend(
                    self.job_of(kv)
                        .map(|job| Change::ChainEnded(job, kv.mod_revision())),
                ),
                (KeyKind::Worker, true) => {
                    if let Some((id, claiming, labels)) = self.registered_worker(kv) {
                        if let Some(at) = heartbeat_ms(kv) {
                            clock(&id, at, &mut out);
                        }
                        out.push(if claiming {
                            Change::WorkerUp(id, labels)
                        } else {
                            Change::WorkerDown(id)
                        });
                    }
                }
                (KeyKind::Worker, false) => {
                    if let Some(id) = self.worker_id_of(kv) {
                        self.registrations.remove(&id);
                        dead_workers.insert((kv.mod_revision(), id.clone()));
                        out.push(Change::WorkerDown(id));
                    }
                }
                (KeyKind::Run, true) => {
                    if let Ok(holder) = serde_json::from_slice::<Holder>(kv.value()) {
                        clock(&holder.worker_id, holder.claimed_at, &mut out);
                    }
                    self.remember(kv);
                }
                (KeyKind::Lock | KeyKind::Run, false) => {
                    if let Some((holder, token, lease)) = self.holders.remove(kv.key()) {
                        deleted_runs.push((kv.mod_revision(), holder, token, lease));
                    }
                }
                _ => {}
            }
        }
        // A run's keys went with its worker's lease when the registration went in the same
        // revision, or when the worker is registered again on another lease (it restarted
        // under the same id before the old lease expired). A run of `allow` or `replace`
        // concurrency has a lock and a run key: one record.
        let mut abandoned = HashSet::new();
        for (revision, holder, fencing_token, lease) in deleted_runs {
            let died = dead_workers.contains(&(revision, holder.worker_id.clone()))
                || self
                    .registrations
                    .get(&holder.worker_id)
                    .is_some_and(|current| lease != 0 && *current != lease);
            if died && abandoned.insert(holder.run_id.clone()) {
                out.push(Change::Abandoned {
                    holder,
                    fencing_token,
                });
            }
        }
        out
    }
}

/// When a registration was written, by its worker's clock.
fn heartbeat_ms(kv: &KeyValue) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_slice(kv.value()).ok()?;
    let at = chrono::DateTime::parse_from_rfc3339(value.get("heartbeatAt")?.as_str()?).ok()?;
    Some(at.timestamp_millis())
}

/// Who sent a kill request, if its value says.
fn actor(kv: &KeyValue) -> Option<Arc<str>> {
    serde_json::from_slice::<Request>(kv.value())
        .ok()?
        .actor
        .map(Arc::from)
}
