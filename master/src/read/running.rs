//! Runs in progress, from the workers' keys: a `forbid` run holds `lock/<job>`, runs that may
//! overlap also have `runs/<job>/<run>`; both hold a [`Holder`]. A run is listed once by its
//! run id. A lock whose value is not a holder is go-crontab's (it locks with its own value):
//! listed as a run of that job with no worker.

use std::collections::BTreeMap;

use cronfleet_common::values::Holder;
use cronfleet_common::Keys;
use etcd_client::GetOptions;

use super::ReadError;

/// One run in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub job: String,
    pub run_id: String,
    /// What the worker wrote; `None` for a go-crontab worker's lock.
    pub holder: Option<Holder>,
}

/// Every run in progress, oldest claim first (go-crontab's last), from one read of each
/// prefix.
pub async fn all(etcd: &etcd_client::Client, keys: &Keys) -> Result<Vec<Running>, ReadError> {
    let mut etcd = etcd.clone();
    let runs = etcd
        .get(keys.runs(), Some(GetOptions::new().with_prefix()))
        .await?;
    let locks = etcd
        .get(keys.locks(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut found: BTreeMap<(String, String), Option<Holder>> = BTreeMap::new();
    for kv in runs.kvs() {
        if let Some((job, run_id)) = keys.run_of(kv.key()) {
            let holder = serde_json::from_slice::<Holder>(kv.value()).ok();
            found.insert((job.to_string(), run_id), holder);
        }
    }
    for kv in locks.kvs() {
        if let Some(job) = keys.job_of(kv.key()) {
            match serde_json::from_slice::<Holder>(kv.value()) {
                Ok(holder) => {
                    found.insert((job.to_string(), holder.run_id.clone()), Some(holder));
                }
                Err(_) => {
                    let run_id = String::from_utf8_lossy(kv.key()).into_owned();
                    found.entry((job.to_string(), run_id)).or_insert(None);
                }
            }
        }
    }
    let mut running: Vec<Running> = found
        .into_iter()
        .map(|((job, run_id), holder)| Running {
            job,
            run_id,
            holder,
        })
        .collect();
    running.sort_by_key(|run| {
        (
            run.holder.is_none(),
            run.holder.as_ref().map_or(0, |h| h.claimed_at),
        )
    });
    Ok(running)
}
