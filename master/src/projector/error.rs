//! What stops the projector, or its watch of `jobs/` ([`super::drift`]), until the next
//! campaign.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("lost the projector election")]
    LostLeadership,
    #[error("the checkpoint in etcd does not parse: {0:?}")]
    BadCheckpoint(String),
    #[error("the watch of jobs/ ended (compacted at revision {0})")]
    WatchEnded(i64),
}
