//! Whether this worker's clock agrees with the fleet's.
//!
//! Every registration carries the time its worker wrote it (`heartbeatAt`, rewritten every few
//! seconds), and every lock and run key the time its worker claimed (`claimedAt`). As such a
//! value arrives through the watch, `their time − my time` is a sample of how far that worker's
//! clock is from mine, less the time the write took to reach me; so the largest recent sample
//! of a worker is its estimate. The fleet's clock is the median of the live workers' clocks,
//! this one included (at 0). When the median is more than the allowed skew from this clock,
//! this worker is the outlier and holds its scheduled claims until it is back within the bound.
//!
//! With fewer than three clocks nobody can tell which one is wrong: a disagreement is logged
//! and nothing is held. A worker that starts where two or more others are registered waits
//! until it has heard from two of them (each writes a fresh heartbeat when it first hears
//! from a worker),
//! for at most [`STARTUP_WAIT`], so a wrong clock never claims a tick early on its first
//! second either.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long a sample counts (a worker that left stops counting after this).
const WINDOW: Duration = Duration::from_secs(30);

/// Samples kept per worker.
const KEEP: usize = 16;

/// Longest a starting worker waits to hear from its peers before it trusts its clock.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// How often a disagreement nobody can settle (two clocks) is logged again.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What the samples say about this worker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the bound of the fleet's clock (or nobody to compare with).
    InLine,
    /// The fleet's clock is this many milliseconds from this one: beyond the bound.
    Outlier(i64),
    /// Starting, and not heard from enough peers yet.
    Unverified,
}

/// The samples and the rule.
#[derive(Debug)]
pub struct ClockCheck {
    bound_ms: i64,
    samples: HashMap<String, VecDeque<(Instant, i64)>>,
    started: Instant,
    /// Peers registered when this worker took its first snapshot.
    expected: usize,
    warned: Option<Instant>,
}

impl ClockCheck {
    pub fn new(bound_ms: i64) -> Self {
        Self {
            bound_ms,
            samples: HashMap::new(),
            started: Instant::now(),
            expected: 0,
            warned: None,
        }
    }

    /// How many peers were registered at the first snapshot.
    pub fn expect(&mut self, peers: usize) {
        self.expected = peers;
    }

    /// Another worker wrote `theirs_ms` by its clock; this worker saw it at `mine_ms`.
    /// Whether it is the first sample of that worker (a worker that appeared).
    pub fn sample(&mut self, worker: &str, theirs_ms: i64, mine_ms: i64) -> bool {
        let samples = self.samples.entry(worker.to_owned()).or_default();
        let first = samples.is_empty();
        if samples.len() == KEEP {
            samples.pop_front();
        }
        samples.push_back((Instant::now(), theirs_ms - mine_ms));
        first
    }

    /// The verdict on the samples of the last [`WINDOW`].
    pub fn verdict(&mut self) -> Verdict {
        let now = Instant::now();
        self.samples.retain(|_, samples| {
            samples.retain(|(at, _)| now.duration_since(*at) < WINDOW);
            !samples.is_empty()
        });
        let mut clocks: Vec<i64> = self
            .samples
            .values()
            .filter_map(|samples| samples.iter().map(|(_, offset)| *offset).max())
            .collect();
        if clocks.len() < 2 {
            if self.expected >= 2 && now.duration_since(self.started) < STARTUP_WAIT {
                return Verdict::Unverified;
            }
            if let Some(offset) = clocks.first().filter(|o| o.abs() > self.bound_ms) {
                if self
                    .warned
                    .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
                {
                    self.warned = Some(now);
                    tracing::warn!(
                        offset_ms = offset,
                        "this worker's clock and its only peer's disagree; with two workers \
                         neither can be known to be wrong, so both keep claiming"
                    );
                }
            }
            return Verdict::InLine;
        }
        clocks.push(0);
        clocks.sort_unstable();
        let middle = clocks.len() / 2;
        let median = if clocks.len() % 2 == 1 {
            clocks[middle]
        } else {
            (clocks[middle - 1] + clocks[middle]) / 2
        };
        if median.abs() > self.bound_ms {
            Verdict::Outlier(median)
        } else {
            Verdict::InLine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outlier_of_three_is_the_one_whose_clock_is_off() {
        // This worker runs 30 s fast: both peers' times look 30 s behind.
        let mut fast = ClockCheck::new(1_000);
        assert!(fast.sample("a", 1_000, 31_000));
        fast.sample("b", 1_000, 31_010);
        assert_eq!(fast.verdict(), Verdict::Outlier(-30_000));
        // A correct worker sees one peer in line and one 30 s ahead: the median is its own.
        let mut correct = ClockCheck::new(1_000);
        correct.sample("b", 1_000, 1_005);
        correct.sample("fast", 31_000, 1_003);
        assert_eq!(correct.verdict(), Verdict::InLine);
    }

    #[test]
    fn the_largest_recent_sample_counts_since_delivery_only_makes_clocks_look_behind() {
        let mut check = ClockCheck::new(1_000);
        // The same peer, seen 5 ms and 1.4 s after it wrote (a slow moment): in line.
        check.sample("a", 10_000, 10_005);
        assert!(
            !check.sample("a", 20_000, 21_400),
            "not the first sample of a"
        );
        check.sample("b", 10_000, 10_002);
        assert_eq!(check.verdict(), Verdict::InLine);
    }

    #[test]
    fn two_clocks_cannot_name_an_outlier_and_a_starting_worker_waits_for_two_peers() {
        let mut pair = ClockCheck::new(1_000);
        pair.sample("other", 50_000, 1_000);
        assert_eq!(pair.verdict(), Verdict::InLine);

        let mut starting = ClockCheck::new(1_000);
        starting.expect(2);
        assert_eq!(starting.verdict(), Verdict::Unverified);
        starting.sample("a", 1_000, 1_001);
        assert_eq!(starting.verdict(), Verdict::Unverified);
        starting.sample("b", 1_000, 1_002);
        assert_eq!(starting.verdict(), Verdict::InLine);
    }
}
