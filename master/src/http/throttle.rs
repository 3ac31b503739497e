//! Sign-in throttling per user name.

use std::time::{Duration, Instant};

/// Counts failed sign-ins per user name; five within 15 minutes block that name for the rest
/// of the window (on this master). Only well-formed names (64 bytes at most) are counted, and
/// at most [`THROTTLE_NAMES`] of them: when the table is full, the name counted longest ago
/// makes room.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, Instant)>>,
}

const THROTTLE_FAILURES: u32 = 5;
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most user names the throttle remembers at once (a few hundred bytes each).
pub const THROTTLE_NAMES: usize = 10_000;

impl LoginThrottle {
    fn table(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, Instant)>> {
        // Each critical section is one map update; a poisoned lock still holds consistent data.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn blocked(&self, user: &str) -> bool {
        let mut table = self.table();
        table.retain(|_, (_, first)| first.elapsed() < THROTTLE_WINDOW);
        table
            .get(&user.to_lowercase())
            .is_some_and(|(count, _)| *count >= THROTTLE_FAILURES)
    }

    pub fn failed(&self, user: &str) {
        let mut table = self.table();
        let user = user.to_lowercase();
        if !table.contains_key(&user) && table.len() >= THROTTLE_NAMES {
            table.retain(|_, (_, first)| first.elapsed() < THROTTLE_WINDOW);
            if table.len() >= THROTTLE_NAMES {
                let oldest = table
                    .iter()
                    .min_by_key(|(_, (_, first))| *first)
                    .map(|(name, _)| name.clone());
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        table.entry(user).or_insert((0, Instant::now())).0 += 1;
    }

    pub fn succeeded(&self, user: &str) {
        self.table().remove(&user.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_blocks_a_name_and_stays_bounded_by_dropping_the_oldest() {
        let throttle = LoginThrottle::default();
        for _ in 0..THROTTLE_FAILURES {
            throttle.failed("Victim");
        }
        assert!(throttle.blocked("victim"));
        for i in 0..THROTTLE_NAMES {
            throttle.failed(&format!("flood-{i}"));
        }
        assert!(
            !throttle.blocked("victim"),
            "a full table makes room by forgetting the name counted longest ago"
        );
        assert!(throttle.table().len() <= THROTTLE_NAMES);
    }
}
