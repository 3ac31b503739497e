//! A slot of the worker's `--slots`: one process a run may have going.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit};

/// One of the worker's `--slots`, held by a tick task from its claim until its process
/// ends. Giving it back wakes the dispatcher, even if the task panics.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    freed: Arc<Notify>,
}

impl Slot {
    pub fn new(permit: OwnedSemaphorePermit, freed: Arc<Notify>) -> Self {
        Self {
            _permit: permit,
            freed,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.freed.notify_one();
    }
}
