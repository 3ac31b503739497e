//! When this worker last started a run, so that work which can wait gives the CPU to starts.
//!
//! Under a burst the box's cores are the bottleneck: every run costs a supervisor and a shell,
//! and the records of the first runs to end go to MongoDB while the rest are still starting.
//! Uploading them then costs the server (and the worker) CPU the starts need — measured on a
//! burst of 1,000 on 2 cores, the MongoDB-wire server took a quarter of a core during the
//! second the starts took. Records are safe in the spool from the moment a run ends, so the
//! uploader waits for a quiet moment ([`Starts::quiet`]) before it sends them, for a bounded
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The time of this worker's latest run start (or supervisor preparation).
#[derive(Debug)]
pub struct Starts {
    base: Instant,
    /// Milliseconds from `base` to the latest start, plus one; 0 while nothing started.
    latest: AtomicU64,
}

impl Default for Starts {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            latest: AtomicU64::new(0),
        }
    }
}

impl Starts {
    /// A run (or its supervisor) is being started now.
    pub fn mark(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.latest
            .fetch_max(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// When the latest start was, if any.
    fn latest(&self) -> Option<Instant> {
        match self.latest.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }

    /// Waits until nothing has started for `gap`, or `at_most` has passed.
    pub async fn quiet(&self, gap: Duration, at_most: Duration) {
        let give_up = Instant::now() + at_most;
        while let Some(quiet_at) = self.latest().map(|latest| latest + gap) {
            let now = Instant::now();
            if quiet_at <= now || give_up <= now {
                return;
            }
            tokio::time::sleep_until(quiet_at.min(give_up)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_a_gap_in_the_starts_within_a_bound() {
        let gap = Duration::from_millis(100);
        let at_most = Duration::from_secs(1);
        let starts = std::sync::Arc::new(Starts::default());
        let began = Instant::now();
        starts.quiet(gap, at_most).await;
        assert_eq!(began.elapsed(), Duration::ZERO, "nothing started yet");

        starts.mark();
        tokio::time::sleep(Duration::from_millis(30)).await;
        starts.quiet(gap, at_most).await;
        assert_eq!(began.elapsed(), gap, "a gap after the start");

        // Starts every 50 ms for 3 s: the wait ends at its bound.
        let busy = std::sync::Arc::clone(&starts);
        let marking = tokio::spawn(async move {
            for _ in 0..60 {
                busy.mark();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        tokio::task::yield_now().await;
        let waiting = Instant::now();
        starts.quiet(gap, at_most).await;
        assert_eq!(waiting.elapsed(), at_most);
        marking.await.unwrap();
        let waiting = Instant::now();
        starts.quiet(gap, at_most).await;
        assert_eq!(
            waiting.elapsed(),
            Duration::from_millis(50),
            "the last start was 50 ms ago"
        );
    }
}
