//! `cronfleet-master rebuild`: replays the whole event log into a fresh read model and etcd.
//! It takes the projector election first, so no projector writes etcd meanwhile; etcd gets
//! only the difference, so workers see no job vanish and come back.

use std::collections::HashMap;

use etcd_client::{GetOptions, Txn, TxnOp};

use crate::projector::{Projector, ProjectorError};

/// Operations per etcd txn.
const CHUNK: usize = 100;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    pub jobs: usize,
    pub written: usize,
    pub deleted: usize,
    pub through_seq: i64,
}

/// Rebuilds the read model and etcd; `projector` supplies the store, etcd and election.
pub async fn rebuild(projector: &mut Projector) -> Result<Rebuilt, ProjectorError> {
    let leadership = projector.campaign().await?;
    let result = replay(projector).await;
    projector.resign(leadership).await;
    result
}

async fn replay(projector: &mut Projector) -> Result<Rebuilt, ProjectorError> {
    let (jobs, through_seq) = projector.store.rebuild().await?;
    let keys = projector.keys.clone();
    let current = projector
        .etcd
        .get(keys.jobs(), Some(GetOptions::new().with_prefix()))
        .await?;
    let mut existing: HashMap<Vec<u8>, Vec<u8>> = current
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect();
    let mut ops = Vec::new();
    let mut written = 0;
    for spec in &jobs {
        let key = keys.job(&spec.name);
        let value = spec.to_etcd_value();
        if existing.remove(key.as_bytes()).as_deref() != Some(value.as_slice()) {
            ops.push(TxnOp::put(key, value, None));
            written += 1;
        }
    }
    let deleted = existing.len();
    ops.extend(existing.into_keys().map(|key| TxnOp::delete(key, None)));
    for chunk in ops.chunks(CHUNK) {
        projector
            .etcd
            .txn(Txn::new().and_then(chunk.to_vec()))
            .await?;
    }
    projector
        .etcd
        .put(keys.projector_checkpoint(), through_seq.to_string(), None)
        .await?;
    Ok(Rebuilt {
        jobs: jobs.len(),
        written,
        deleted,
        through_seq,
    })
}
