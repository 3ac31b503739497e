//! Why this worker has stopped claiming. A worker that cannot keep a record, or whose clock is
//! off the fleet's, fails closed: it sends no claim (its ticks are taken by other workers or
//! recorded as missed) while it finishes what it runs, and resumes by itself when the cause is
//! gone. The holds are in its registration, its metrics and its log.

use std::collections::BTreeSet;
use std::sync::Arc;

pub use cronfleet_common::values::Hold;
use tokio::sync::watch;

use crate::skew::Verdict;

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
    /// Holds scheduled claims while `verdict` puts this worker's clock off the fleet's (or
    /// it is not checked yet), and lifts the hold when the clock is back within the bound.
    pub fn follow_clock(&self, verdict: Verdict) {
        match verdict {
            Verdict::Outlier(offset) => self.set(
                Hold::ClockSkew,
                true,
                &format!("the fleet's clock is {offset} ms from this worker's"),
            ),
            Verdict::Unverified if !self.has(Hold::ClockSkew) => self.set(
                Hold::ClockSkew,
                true,
                "checking this worker's clock against its peers' first",
            ),
            Verdict::Unverified => {}
            Verdict::InLine => self.set(
                Hold::ClockSkew,
                false,
                "this worker's clock agrees with the fleet's",
            ),
        }
    }

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
                tracing::warn!(
                    hold = hold.as_str(),
                    why,
                    "holding claims until this clears"
                );
            }
            (true, false) => tracing::info!(hold = hold.as_str(), why, "claiming again"),
            (false, _) => {}
        }
    }

    pub fn has(&self, hold: Hold) -> bool {
        self.state.borrow().contains(&hold)
    }

    pub fn current(&self) -> BTreeSet<Hold> {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<Hold>> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_comes_and_goes_and_wakes_whoever_watches() {
        let holds = Holds::default();
        let mut watching = holds.subscribe();
        assert!(holds.current().is_empty());
        holds.set(Hold::RecordsBlocked, true, "disk full");
        assert!(watching.has_changed().unwrap());
        assert_eq!(
            *watching.borrow_and_update(),
            BTreeSet::from([Hold::RecordsBlocked])
        );
        // Setting what is already set changes nothing and wakes nobody.
        holds.set(Hold::RecordsBlocked, true, "still full");
        assert!(!watching.has_changed().unwrap());
        holds.set(Hold::RecordsBlocked, false, "spool writable");
        assert!(holds.current().is_empty());
    }
}
