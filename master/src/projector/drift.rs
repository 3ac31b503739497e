//! Writes to `jobs/` that the projector did not make — a go-crontab master saving a job,
//! `etcdctl` — recorded in the log, so the audit log and the read model follow what the
//! workers run. Runs beside the projector, on the master that leads.
//!
//! The projector writes job keys only in txns that also move its checkpoint, so a write to
//! `jobs/` at a revision where the checkpoint did not move is someone else's. Such a write,
//! when it is still the key's latest and differs from the read model, becomes a
//! `JobChangedOutsideMaster` event (actor `etcd`, with the value seen), which the projector
//! does not write back. On taking the lead the etcd side is compared with the read model once
//! (jobs with events not yet projected aside), which also adopts jobs that exist only in etcd
//! — so `rebuild` keeps them.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use cronfleet_common::{JobName, JobSpec, Keys};
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use serde_json::Value;

use super::error::ProjectorError;
use crate::domain::{Command, DomainError};
use crate::store::{JobRow, RequestMeta, Store, StoreError};

/// First pause before following `jobs/` again after a failure; it doubles up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The actor of events that record writes found in etcd.
pub const ACTOR: &str = "etcd";

/// Follows writes to `jobs/`.
pub struct Drift {
    pub store: Store,
    pub etcd: Client,
    pub keys: Keys,
}

impl std::fmt::Debug for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drift")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Drift {
    /// Compares etcd with the read model, then follows the watch; when either fails (an etcd
    /// member died, the watch was compacted) it starts over after a pause, so it never stops
    /// the projector's lead. Runs until dropped.
    pub async fn run(mut self) -> Infallible {
        let mut pause = RETRY;
        loop {
            let result = match self.reconcile().await {
                Ok(revision) => self.follow(revision + 1).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => pause = RETRY,
                Err(e) => {
                    tracing::warn!(error = %e, "following jobs/ for outside writes failed; starting over");
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// Records every difference between `jobs/` and the read model at one revision, except
    /// for jobs whose events the projector has not written yet. Returns the revision.
    pub async fn reconcile(&mut self) -> Result<i64, ProjectorError> {
        let found = self
            .etcd
            .get(self.keys.jobs(), Some(GetOptions::new().with_prefix()))
            .await?;
        let revision = found.header().map_or(0, |h| h.revision());
        let through = self
            .checkpoint(GetOptions::new().with_revision(revision))
            .await?;
        // The read model first: an event committed after it is read shows in `pending`.
        let mut live = self.store.live_jobs().await?;
        let pending = self.store.jobs_changed_after(through).await?;
        let mut in_etcd = HashSet::new();
        for kv in found.kvs() {
            let Some(name) = self.keys.job_of(kv.key()) else {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "a key under jobs/ is not a job name; left alone");
                continue;
            };
            in_etcd.insert(name.to_string());
            let known = live.remove(name.as_str());
            if pending.contains(name.as_str())
                || !differs(known.as_ref().map(|row| &row.spec), Some(kv.value()))
            {
                continue;
            }
            let version = match &known {
                Some(row) => version_of(row),
                None => self.store.stream_version(&name).await?,
            };
            self.record(&name, Some(kv.value()), revision, version)
                .await?;
        }
        for (name, row) in live {
            if pending.contains(&name) || in_etcd.contains(&name) {
                continue;
            }
            if let Ok(name) = JobName::parse(&name) {
                self.record(&name, None, revision, version_of(&row)).await?;
            }
        }
        Ok(revision)
    }

    async fn follow(&mut self, start: i64) -> Result<(), ProjectorError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = self.etcd.watch(self.keys.jobs(), Some(options)).await?;
        while let Some(response) = stream.message().await? {
            if response.canceled() || response.compact_revision() > 0 {
                return Err(ProjectorError::WatchEnded(response.compact_revision()));
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let Some(name) = self.keys.job_of(kv.key()) else {
                    continue;
                };
                let revision = kv.mod_revision();
                if self.projected_at(revision).await? {
                    continue;
                }
                let value = (event.event_type() == EventType::Put).then(|| kv.value());
                self.settle(&name, value, revision).await?;
            }
        }
        Ok(())
    }

    /// Whether the write at `revision` was the projector's: its txn moved the checkpoint.
    async fn projected_at(&mut self, revision: i64) -> Result<bool, ProjectorError> {
        let at = self
            .etcd
            .get(
                self.keys.projector_checkpoint(),
                Some(GetOptions::new().with_revision(revision)),
            )
            .await;
        match at {
            Ok(found) => Ok(found
                .kvs()
                .first()
                .is_some_and(|kv| kv.mod_revision() == revision)),
            // Compacted: the comparison with the read model decides.
            Err(etcd_client::Error::GRpcStatus(status))
                if status.message().contains("compacted") =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a write to `name` seen at `revision`, if it is still the key's latest, the
    /// projector has nothing left to write for the job (it would overwrite the key), and the
    /// read model differs from it.
    async fn settle(
        &mut self,
        name: &JobName,
        value: Option<&[u8]>,
        revision: i64,
    ) -> Result<(), ProjectorError> {
        let now = self.etcd.get(self.keys.job(name), None).await?;
        let latest = match now.kvs().first() {
            Some(kv) => value.is_some() && kv.mod_revision() == revision,
            None => value.is_none(),
        };
        if !latest {
            return Ok(());
        }
        // The read model before the pending check: an event committed in between shows there.
        let known = self.store.job(name).await?;
        if self.pending(name).await? || !differs(known.as_ref().map(|row| &row.spec), value) {
            return Ok(());
        }
        let version = match &known {
            Some(row) => version_of(row),
            None => self.store.stream_version(name).await?,
        };
        self.record(name, value, revision, version).await
    }

    /// Whether `name` has events the projector has not written yet.
    async fn pending(&mut self, name: &JobName) -> Result<bool, ProjectorError> {
        let through = self.checkpoint(GetOptions::new()).await?;
        Ok(self
            .store
            .jobs_changed_after(through)
            .await?
            .contains(name.as_str()))
    }

    /// The projector's checkpoint (0 before its first batch), as `options` read it.
    async fn checkpoint(&mut self, options: GetOptions) -> Result<i64, ProjectorError> {
        let found = self
            .etcd
            .get(self.keys.projector_checkpoint(), Some(options))
            .await?;
        Ok(found
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Appends the outside change, if the job is still at `version` (the state it was
    /// compared with); a job changed since is left to its own write.
    async fn record(
        &mut self,
        name: &JobName,
        value: Option<&[u8]>,
        revision: i64,
        version: u64,
    ) -> Result<(), ProjectorError> {
        let seen = value.map_or(Value::Null, |bytes| {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        });
        // What workers make of it: a value that does not parse, or names another job, is one
        // they skip.
        let spec = value
            .and_then(|bytes| JobSpec::from_etcd_value(bytes).ok())
            .filter(|spec| &spec.name == name);
        let meta = RequestMeta {
            actor: ACTOR.to_owned(),
            request_id: format!("etcd-revision-{revision}"),
            idempotency: None,
        };
        match self
            .store
            .execute(
                name,
                Command::RecordOutsideChange { seen, spec },
                Some(version),
                &meta,
            )
            .await
        {
            Ok(written) if !written.events.is_empty() => {
                tracing::warn!(job.name = %name, revision, "jobs/ was written outside the master; recorded");
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(StoreError::Domain(DomainError::VersionConflict { .. })) => {
                tracing::info!(job.name = %name, revision, "the job changed while an outside write was compared; left to the newer write");
                Ok(())
            }
            Err(StoreError::Domain(e @ DomainError::NameMismatch { .. })) => {
                tracing::warn!(job.name = %name, error = %e, "an outside write could not be recorded");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn version_of(row: &JobRow) -> u64 {
    u64::try_from(row.version).unwrap_or_default()
}

/// Whether etcd's `value` (`None`: no key) differs from what the projector would write for
/// `known` (`None`: no live job).
fn differs(known: Option<&JobSpec>, value: Option<&[u8]>) -> bool {
    match (known, value) {
        (None, None) => false,
        (Some(spec), Some(value)) => {
            let ours = serde_json::from_slice::<Value>(&spec.to_etcd_value()).ok();
            let theirs = serde_json::from_slice::<Value>(value).ok();
            ours.is_none() || ours != theirs
        }
        _ => true,
    }
}
