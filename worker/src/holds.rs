//! Why this worker has stopped claiming. A worker that cannot keep a record, or whose clock
//! disagrees with the fleet's, fails closed: it sends no claim (its ticks are taken by other
//! workers or recorded as missed) while it finishes what it runs, and resumes by itself when
//! the cause is gone. The holds are in its registration, its metrics and its log.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;

/// One reason not to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// Records wait in memory: neither the spool's disk nor MongoDB took them.
    RecordsBlocked,
    /// This worker's clock is off the fleet's by more than the allowed skew.
    ClockSkew,
}

impl Hold {
    pub const ALL: [Hold; 2] = [Hold::RecordsBlocked, Hold::ClockSkew];

    pub fn as_str(self) -> &'static str {
        match self {
            Hold::RecordsBlocked => "records_blocked",
            Hold::ClockSkew => "clock_skew",
        }
    }
}

/// The current holds, shared by whoever sets them and whoever obeys them.
#[derive(Debug, Clone)]
pub struct Holds {
    state: Arc<watch::Sender<BTreeSet<Hold>>>,
}

impl Default for Holds {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::channel(BTreeSet::new()).0),
        }
    }
}

impl Holds {
    /// Puts `hold` on or takes it off; says so in the log when that changes anything.
    pub fn set(&self, hold: Hold, on: bool, why: &str) {
        let changed = self.state.send_if_modified(|holds| {
            if on {
                holds.insert(hold)
            } else {
                holds.remove(&hold)
            }
        });
        match (changed, on) {
            (true, true) => {
                tracing::error!(
                    hold = hold.as_str(),
                    why,
                    "not claiming any tick until this clears"
                );
            }
            (true, false) => tracing::info!(hold = hold.as_str(), why, "claiming again"),
            (false, _) => {}
        }
    }

    pub fn current(&self) -> BTreeSet<Hold> {
        self.state.borrow().clone()
    }

    pub fn is_clear(&self) -> bool {
        self.state.borrow().is_empty()
    }

    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<Hold>> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_come_and_go_independently() {
        let holds = Holds::default();
        assert!(holds.is_clear());
        holds.set(Hold::RecordsBlocked, true, "disk full");
        holds.set(Hold::ClockSkew, true, "30 s fast");
        holds.set(Hold::RecordsBlocked, false, "spool writable");
        assert_eq!(holds.current(), BTreeSet::from([Hold::ClockSkew]));
        holds.set(Hold::ClockSkew, false, "in line");
        assert!(holds.is_clear());
    }
}
